# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests of the host facts against libvirt's test:///default driver (no mocks)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest

libvirt = pytest.importorskip('libvirt')

from ansible_collections.virtops.libvirt.plugins.module_utils import _host  # noqa: E402
from ansible_collections.virtops.libvirt.plugins.module_utils._libvirt import VirtError  # noqa: E402

URI = 'test:///default'

DOMCAPS_XML = """<domainCapabilities>
  <path>/usr/bin/qemu-system-x86_64</path>
  <domain>qemu</domain>
  <machine>pc-q35-7.2</machine>
  <arch>x86_64</arch>
  <vcpu max='288'/>
  <os supported='yes'>
    <enum name='firmware'><value>efi</value></enum>
    <loader supported='yes'>
      <enum name='type'><value>rom</value><value>pflash</value></enum>
    </loader>
  </os>
  <cpu>
    <mode name='host-passthrough' supported='no'/>
    <mode name='maximum' supported='yes'/>
    <mode name='custom' supported='yes'>
      <model usable='yes' vendor='unknown'>qemu64</model>
      <model usable='no' vendor='AMD'>EPYC</model>
    </mode>
  </cpu>
  <devices>
    <disk supported='yes'>
      <enum name='bus'><value>virtio</value><value>sata</value></enum>
    </disk>
  </devices>
</domainCapabilities>
"""


def test_host_info_on_the_test_driver(conn):
    info = _host.host_info(conn)
    assert info['driver'] == 'TEST'
    assert info['uri'] == URI
    assert info['hostname']
    assert info['libvirt_version'].count('.') == 2
    assert info['node'] == dict(arch='i686', memory=3072 * 1024 * 1024, cpus=16, mhz=1400, numa_nodes=2,
                                sockets=2, cores=2, threads=2)
    host = info['capabilities']['host']
    assert host['arch'] == 'i686'
    assert [c['id'] for c in host['numa_cells']] == [0, 1]
    assert host['numa_cells'][0]['memory'] == 2 * 1024 ** 3
    assert host['numa_cells'][0]['cpus'] == 8
    guests = info['capabilities']['guests']
    assert any(g['arch'] == 'i686' and 'test' in g['domain_types'] for g in guests)
    assert info['capabilities']['xml'].lstrip().startswith('<capabilities>')
    assert [c['cell'] for c in info['numa_free_memory']] == [0, 1]
    assert all(isinstance(c['free'], int) for c in info['numa_free_memory'])
    assert isinstance(info['free_memory'], int)
    # The test driver has no domain capabilities.
    assert info['domain_capabilities'] is None
    assert info['cpu_models_arch'] == 'i686'
    assert 'pentium' in info['cpu_models']


def test_without_domain_capabilities(conn):
    assert _host.host_info(conn, with_domain_capabilities=False)['domain_capabilities'] is None


def test_cpu_models_for_another_arch(conn):
    assert 'qemu64' in _host.cpu_models(conn.conn, 'x86_64')
    assert _host.cpu_models(conn.conn, None) is None


def test_parse_domain_capabilities():
    parsed = _host.parse_domain_capabilities(DOMCAPS_XML)
    assert parsed == dict(
        path='/usr/bin/qemu-system-x86_64', domain='qemu', machine='pc-q35-7.2', arch='x86_64', vcpu_max=288,
        firmware=['efi'], loader_types=['rom', 'pflash'], cpu_modes=['maximum', 'custom'],
        cpu_models=[dict(name='qemu64', usable='yes', vendor='unknown'),
                    dict(name='EPYC', usable='no', vendor='AMD')],
        disk_buses=['virtio', 'sata'])


def test_parse_capabilities_of_a_qemu_host():
    xml = """<capabilities>
  <host>
    <uuid>746e6df3-2968-421c-8750-c1866f650e83</uuid>
    <cpu><arch>x86_64</arch><model>Broadwell</model><vendor>Intel</vendor>
      <topology sockets='1' dies='1' cores='2' threads='1'/></cpu>
    <topology><cells num='1'><cell id='0'><memory unit='KiB'>1024</memory>
      <cpus num='2'><cpu id='0'/><cpu id='1'/></cpus></cell></cells></topology>
    <secmodel><model>dac</model></secmodel>
  </host>
  <guest>
    <os_type>hvm</os_type>
    <arch name='x86_64'>
      <wordsize>64</wordsize>
      <emulator>/usr/bin/qemu-system-x86_64</emulator>
      <machine>pc-i440fx-7.2</machine>
      <machine canonical='pc-i440fx-7.2'>pc</machine>
      <domain type='qemu'/>
      <domain type='kvm'/>
    </arch>
  </guest>
</capabilities>"""
    parsed = _host.parse_capabilities(xml)
    assert parsed['host'] == dict(
        uuid='746e6df3-2968-421c-8750-c1866f650e83', arch='x86_64', cpu_model='Broadwell', cpu_vendor='Intel',
        topology=dict(sockets=1, dies=1, cores=2, threads=1),
        numa_cells=[dict(id=0, memory=1024 * 1024, cpus=2)], secmodels=['dac'])
    assert parsed['guests'] == [dict(os_type='hvm', arch='x86_64', wordsize=64,
                                     emulator='/usr/bin/qemu-system-x86_64',
                                     machines=['pc-i440fx-7.2', 'pc'], domain_types=['qemu', 'kvm'])]


def test_bad_xml_is_explained():
    with pytest.raises(VirtError) as err:
        _host.parse_capabilities('<capabilities')
    assert 'not well-formed' in err.value.msg
