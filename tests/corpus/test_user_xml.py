# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""XML as people and tools write it, through the same corpus steps as libvirt's test XML
(corpuslib): user-xml/tests/<libvirt's directory names>/ holds virt-install 4.1 output
(--print-xml: q35, pc, UEFI, TPM, cloud-init CD-ROM, channels, host-model/passthrough, virtiofs,
Windows 11), `virsh dumpxml` of defined domains (inactive) and of running ones (live),
`virsh net-dumpxml` of the default network, `virsh nwfilter-dumpxml` of every built-in filter,
and Jinja-rendered templates (memory in GiB, volumes in a pool, NAT/route/open/bridge networks
with DHCP hosts, DNS and IPv6; dir/logical/netfs pools; filters with variables). Seconds."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

import pytest

import corpuslib

USER_XML = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'user-xml')


@pytest.fixture(scope='module')
def root_only():
    if os.geteuid() != 0:
        pytest.skip('the corpus test defines objects on qemu:///system: run it as root')


@pytest.mark.parametrize('kind', corpuslib.KIND_NAMES)
def test_user_xml(kind, root_only, corpus_reports):
    report = corpuslib.run_kind(kind, data=USER_XML)
    corpus_reports.append(report)
    print(report.summary_line())
    c = report.counts()
    assert c['accepted'] == c['files'], 'libvirt refused user XML:\n%s' % report.rejected_text()
    assert not report.failures, '%d %s files failed:\n%s' % (
        len(report.failures), kind, report.failure_text(show_diff=True))
