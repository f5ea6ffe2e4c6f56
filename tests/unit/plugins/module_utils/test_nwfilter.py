# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests of virt_nwfilter logic. libvirt's test:///default driver has no network filter
driver, so the comparison is tested on XML here, the driver's refusal is checked to be a clear
failure, and defining/removing filters is covered by the virt_nwfilter integration target."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest

libvirt = pytest.importorskip('libvirt')
pytest.importorskip('lxml')

from ansible_collections.virtops.libvirt.plugins.module_utils import _nwfilter  # noqa: E402
from ansible_collections.virtops.libvirt.plugins.module_utils._nwfilter_profile import NWFILTER  # noqa: E402
from ansible_collections.virtops.libvirt.plugins.module_utils.xml import _compare, _document  # noqa: E402
from ansible_collections.virtops.libvirt.plugins.module_utils._libvirt import (  # noqa: E402
    Connection,
    VirtError,
)

DESIRED = """
<filter name='f1' chain='ipv4'>
  <filterref filter='no-ip-spoofing'/>
  <rule action='accept' direction='in'><tcp dstportstart='22'/></rule>
  <rule action='drop' direction='inout'><all/></rule>
</filter>
"""

# What libvirt returns after defining DESIRED: uuid, chain priority and rule priorities added.
LIVE = """
<filter name='f1' chain='ipv4' priority='-700'>
  <uuid>2DA14DC9-E03C-4F1A-BA8E-F38708AFDB09</uuid>
  <filterref filter='no-ip-spoofing'/>
  <rule action='accept' direction='in' priority='500'>
    <tcp dstportstart='22'/>
  </rule>
  <rule action='drop' direction='inout' priority='500'>
    <all/>
  </rule>
</filter>
"""


def compare(desired, live=LIVE):
    return _compare.compare(desired, live, NWFILTER)


def test_what_libvirt_adds_is_no_change():
    assert not compare(DESIRED).changed
    assert not compare(LIVE).changed


def test_a_changed_rule_is_a_change():
    intent = compare(DESIRED.replace("'22'", "'2222'"))
    assert intent.changed
    assert intent.summary() == ['rule/tcp@dstportstart: 22, wanted 2222']
    assert 'dstportstart="22"' in intent.before and 'dstportstart="2222"' in intent.after


def test_a_rule_left_out_is_removed():
    intent = compare(DESIRED.replace("<rule action='drop' direction='inout'><all/></rule>", ''))
    assert intent.changed
    assert 'present, not wanted' in intent.summary()[0]


def test_rule_order_matters():
    swapped = """
    <filter name='f1' chain='ipv4'>
      <filterref filter='no-ip-spoofing'/>
      <rule action='drop' direction='inout'><all/></rule>
      <rule action='accept' direction='in'><tcp dstportstart='22'/></rule>
    </filter>"""
    assert compare(swapped).changed


def test_mac_addresses_compare_in_any_case():
    live = LIVE.replace('<all/>', "<mac srcmacaddr='52:54:00:aa:bb:cc'/>")
    desired = DESIRED.replace('<all/>', "<mac srcmacaddr='52:54:00:AA:BB:CC'/>")
    assert not compare(desired, live).changed


def test_new_filter():
    intent = compare(DESIRED, None)
    assert intent.changed and intent.before == '' and '<filter name="f1"' in intent.after


def test_desired_filter_name_rules():
    assert _nwfilter.DesiredFilter(DESIRED).name == 'f1'
    assert _nwfilter.DesiredFilter(DESIRED, 'f1').name == 'f1'
    unnamed = DESIRED.replace(" name='f1'", '')
    assert _nwfilter.DesiredFilter(unnamed, 'f2').root.get('name') == 'f2'
    with pytest.raises(VirtError, match='must agree'):
        _nwfilter.DesiredFilter(DESIRED, 'f3')
    with pytest.raises(VirtError, match='no name'):
        _nwfilter.DesiredFilter(unnamed)
    with pytest.raises(VirtError, match='not well-formed'):
        _nwfilter.DesiredFilter('<filter name="x">')
    with pytest.raises(VirtError, match='expected <filter>'):
        _nwfilter.DesiredFilter('<network name="x"/>')


def test_existing_uuid_is_kept():
    desired = _nwfilter.DesiredFilter(DESIRED)
    xml = desired.xml_for_define('2da14dc9-e03c-4f1a-ba8e-f38708afdb09')
    root = _document.parse(xml)
    assert root[0].tag == 'uuid' and root[0].text == '2da14dc9-e03c-4f1a-ba8e-f38708afdb09'
    assert desired.root.find('uuid') is None  # the desired XML itself is untouched
    own = _nwfilter.DesiredFilter(LIVE)
    assert own.uuid == '2da14dc9-e03c-4f1a-ba8e-f38708afdb09'
    assert own.xml_for_define('11111111-2222-3333-4444-555555555555').count('<uuid>') == 1


def test_rule_facts():
    root = _document.parse(LIVE)
    assert [_nwfilter.rule_facts(r) for r in root.findall('rule')] == [
        dict(action='accept', direction='in', priority=500, protocol='tcp'),
        dict(action='drop', direction='inout', priority=500, protocol='all'),
    ]


def test_a_driver_without_filters_fails_clearly():
    conn = Connection('test:///default')
    try:
        manager = _nwfilter.NwfilterManager(conn, dict(name=None, xml=DESIRED, state='present'),
                                            check_mode=True)
        with pytest.raises(VirtError, match='looking up on network filter f1 failed: .*not supported'):
            manager.run()
        with pytest.raises(VirtError, match='listing network filters'):
            _nwfilter.nwfilters_info(conn)
    finally:
        conn.close()
