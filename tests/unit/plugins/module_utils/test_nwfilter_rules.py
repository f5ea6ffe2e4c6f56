# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The NWFILTER profile's canonical forms (what libvirt writes back for every rule attribute,
found with libvirt's own test XML, see tests/corpus) and the reference-loop check of check
mode: pure XML (test:///default has no network filter driver)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest

pytest.importorskip('lxml')

from ansible_collections.virtops.libvirt.plugins.module_utils import _nwfilter, _nwfilter_profile  # noqa: E402
from ansible_collections.virtops.libvirt.plugins.module_utils.xml import _compare, _document  # noqa: E402


def changed(desired, live):
    return _compare.compare(desired, live, _nwfilter_profile.NWFILTER).changed


def rule(attrs, proto='tcp', rule_attrs=''):
    return ("<filter name='f' chain='root'><rule action='accept' direction='out'%s><%s %s/>"
            "</rule></filter>" % (rule_attrs, proto, attrs))


@pytest.mark.parametrize('written, stored, different', [
    # MAC addresses zero-padded, in lower case
    ("srcmacaddr='1:2:3:A:b:C'", "srcmacaddr='01:02:03:0a:0b:0c'", "srcmacaddr='01:02:03:0a:0b:0d'"),
    # dotted masks as prefix lengths
    ("dstipaddr='10.1.2.3' dstipmask='255.255.255.255'", "dstipaddr='10.1.2.3' dstipmask='32'",
     "dstipaddr='10.1.2.3' dstipmask='24'"),
    ("srcipmask='255.255.252.0'", "srcipmask='22'", "srcipmask='23'"),
    # numbers: decimal without leading zeros, hexadecimal as 0x%x
    ("srcportstart='080'", "srcportstart='80'", "srcportstart='81'"),
    ("dscp='0X0A'", "dscp='0xa'", "dscp='11'"),
    # variable references: blanks gone, the default iterator [@0] left out
    ("srcipaddr='$A[ 0]' srcportstart='$B[  @0 ] '", "srcipaddr='$A[0]' srcportstart='$B'",
     "srcipaddr='$A[1]' srcportstart='$B'"),
    ("srcportstart='$B[ @2 ]'", "srcportstart='$B[@2]'", "srcportstart='$B[2]'"),
    # connection states as a set
    ("state='established,NEW'", "state='NEW,ESTABLISHED'", "state='NEW'"),
    # ipset flags in lower case, in the user's order
    ("ipset='tck' ipsetflags='SRC,DST'", "ipset='tck' ipsetflags='src,dst'",
     "ipset='tck' ipsetflags='dst,src'"),
    # IPv6 addresses compressed
    ("srcipaddr='2001:DB8:0::1'", "srcipaddr='2001:db8::1'", "srcipaddr='2001:db8::2'"),
])
def test_canonical_forms(written, stored, different):
    proto = 'tcp-ipv6' if '2001' in written else 'tcp'
    assert not changed(rule(written, proto), rule(stored, proto))
    assert changed(rule(written, proto), rule(different, proto))


def test_match_yes_and_statematch_true_are_left_out_by_libvirt():
    assert not changed(rule("match='yes' dstportstart='22'", rule_attrs=" statematch='yes'"),
                       rule("dstportstart='22'"))
    assert not changed(rule("dstportstart='22'", rule_attrs=" statematch='0'"),
                       rule("dstportstart='22'", rule_attrs=" statematch='false'"))
    assert changed(rule("match='no' dstportstart='22'"), rule("dstportstart='22'"))
    assert changed(rule("dstportstart='22'", rule_attrs=" statematch='false'"),
                   rule("dstportstart='22'"))


def test_priority_of_a_filter_without_chain_is_ignored_by_libvirt():
    live = "<filter name='f' chain='root'><uuid>c4e6f4a3-2f41-4c9e-9f8e-3b0c2a1d0e55</uuid></filter>"
    assert not changed("<filter name='f' priority='-300'/>", live)
    assert changed("<filter name='f' chain='root' priority='-300'/>", live)
    assert not changed("<filter name='f' chain='root' priority='-300'/>",
                       live.replace("chain='root'", "chain='root' priority='-300'"))
    # priority 0 is the one libvirt does not write
    assert not changed("<filter name='f' chain='root' priority='0'/>", live)


def test_normalizers():
    assert _nwfilter_profile.variable('$IP') == '$IP'
    assert _nwfilter_profile.variable('$IP[ @0 ]') == '$IP'
    assert _nwfilter_profile.variable(' $IP[ 03 ] ') == '$IP[3]'
    assert _nwfilter_profile.variable('10.0.0.1') is None
    assert _nwfilter_profile.mask('255.255.255.0') == '24'
    assert _nwfilter_profile.mask('ffff:ffff:ffff:ffff::') == '64'
    assert _nwfilter_profile.mask('255.0.255.0') == '255.0.255.0'  # not a mask: left for libvirt to refuse
    assert _nwfilter_profile.number('0x0800') == '0x800'
    assert _nwfilter_profile.number('ipv4') == 'ipv4'
    assert _nwfilter_profile.flag_set('syn,ack/ALL') == 'ACK,SYN/ALL'
    assert _nwfilter_profile.statematch('FALSE') == 'false' and _nwfilter_profile.statematch('no') == 'true'


def test_reference_loop():
    refs = {'a': ['b'], 'b': ['c'], 'c': [], 'd': ['self-ref-free']}
    root = _document.parse("<filter name='c'><filterref filter='a'/></filter>")
    # c -> a -> b -> c: a loop once c references a
    assert _nwfilter.reference_loop('c', root, refs.get)
    root = _document.parse("<filter name='x'><filterref filter='a'/><filterref filter='d'/></filter>")
    assert not _nwfilter.reference_loop('x', root, refs.get)
    root = _document.parse("<filter name='x'><filterref filter='x'/></filter>")
    assert _nwfilter.reference_loop('x', root, refs.get)
