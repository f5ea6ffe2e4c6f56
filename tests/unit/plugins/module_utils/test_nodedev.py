# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests of the node device facts against libvirt's test driver (no mocks): the built-in
test:///default host, and a test driver host loaded from an XML file with the device kinds a
real host has (a NIC with SR-IOV, its VF, a USB device, a disk, a GPU with mdev types...)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest

libvirt = pytest.importorskip('libvirt')

from ansible_collections.virtops.libvirt.plugins.module_utils import _nodedev  # noqa: E402
from ansible_collections.virtops.libvirt.plugins.module_utils._libvirt import (  # noqa: E402
    Connection,
    VirtError,
)

# Node devices as libvirt's udev backend writes them (formatnode.html), loaded by the test driver.
HOST_XML = """<node>
  <cpu><nodes>1</nodes><sockets>1</sockets><cores>2</cores><threads>1</threads>
       <active>2</active><mhz>2000</mhz><model>x86_64</model></cpu>
  <memory>2097152</memory>
  <device>
    <name>pci_0000_03_00_0</name>
    <path>/sys/devices/pci0000:00/0000:00:02.0/0000:03:00.0</path>
    <parent>computer</parent>
    <capability type='pci'>
      <class>0x020000</class>
      <domain>0</domain><bus>3</bus><slot>0</slot><function>0</function>
      <product id='0x10fb'>82599ES 10-Gigabit SFI/SFP+ Network Connection</product>
      <vendor id='0x8086'>Intel Corporation</vendor>
      <capability type='virt_functions' maxCount='63'>
        <address domain='0x0000' bus='0x03' slot='0x10' function='0x0'/>
        <address domain='0x0000' bus='0x03' slot='0x10' function='0x2'/>
      </capability>
      <iommuGroup number='12'>
        <address domain='0x0000' bus='0x03' slot='0x00' function='0x0'/>
        <address domain='0x0000' bus='0x03' slot='0x00' function='0x1'/>
      </iommuGroup>
      <numa node='1'/>
      <pci-express>
        <link validity='cap' port='0' speed='5' width='8'/>
        <link validity='sta' speed='5' width='4'/>
      </pci-express>
    </capability>
  </device>
  <device>
    <name>pci_0000_03_10_0</name>
    <path>/sys/devices/pci0000:00/0000:00:02.0/0000:03:10.0</path>
    <parent>pci_0000_03_00_0</parent>
    <capability type='pci'>
      <class>0x020000</class>
      <domain>0</domain><bus>3</bus><slot>16</slot><function>0</function>
      <product id='0x10ed'>82599 Ethernet Controller Virtual Function</product>
      <vendor id='0x8086'>Intel Corporation</vendor>
      <capability type='phys_function'>
        <address domain='0x0000' bus='0x03' slot='0x00' function='0x0'/>
      </capability>
      <iommuGroup number='40'>
        <address domain='0x0000' bus='0x03' slot='0x10' function='0x0'/>
      </iommuGroup>
    </capability>
  </device>
  <device>
    <name>net_enp3s0_52_54_00_aa_bb_cc</name>
    <path>/sys/devices/pci0000:00/0000:00:02.0/0000:03:00.0/net/enp3s0</path>
    <parent>pci_0000_03_00_0</parent>
    <capability type='net'>
      <interface>enp3s0</interface>
      <address>52:54:00:AA:BB:CC</address>
      <link speed='10000' state='up'/>
      <feature name='rx'/>
      <feature name='tx'/>
      <capability type='80203'/>
    </capability>
  </device>
  <device>
    <name>usb_1_2</name>
    <path>/sys/devices/pci0000:00/0000:00:14.0/usb1/1-2</path>
    <parent>computer</parent>
    <capability type='usb_device'>
      <bus>1</bus>
      <device>5</device>
      <product id='0x5567'>Cruzer Blade</product>
      <vendor id='0x0781'>SanDisk Corp.</vendor>
    </capability>
  </device>
  <device>
    <name>usb_1_2_1_0</name>
    <path>/sys/devices/pci0000:00/0000:00:14.0/usb1/1-2/1-2:1.0</path>
    <parent>usb_1_2</parent>
    <capability type='usb'>
      <number>0</number>
      <class>8</class>
      <subclass>6</subclass>
      <protocol>80</protocol>
    </capability>
  </device>
  <device>
    <name>block_sda_SanDisk_Cruzer</name>
    <path>/sys/devices/pci0000:00/0000:00:14.0/usb1/1-2/block/sda</path>
    <parent>usb_1_2_1_0</parent>
    <capability type='storage'>
      <block>/dev/sda</block>
      <bus>usb</bus>
      <drive_type>disk</drive_type>
      <model>Cruzer Blade</model>
      <vendor>SanDisk</vendor>
      <serial>4C530001</serial>
      <capability type='removable'>
        <media_available>1</media_available>
        <media_size>15682240512</media_size>
      </capability>
    </capability>
  </device>
  <device>
    <name>pci_0000_41_00_0</name>
    <path>/sys/devices/pci0000:40/0000:40:01.0/0000:41:00.0</path>
    <parent>computer</parent>
    <driver><name>nvidia</name></driver>
    <capability type='pci'>
      <class>0x030200</class>
      <domain>0</domain><bus>65</bus><slot>0</slot><function>0</function>
      <product id='0x1eb8'>TU104GL [Tesla T4]</product>
      <vendor id='0x10de'>NVIDIA Corporation</vendor>
      <capability type='mdev_types'>
        <type id='nvidia-222'>
          <name>GRID T4-1B</name>
          <deviceAPI>vfio-pci</deviceAPI>
          <availableInstances>16</availableInstances>
        </type>
        <type id='nvidia-230'>
          <name>GRID T4-16Q</name>
          <deviceAPI>vfio-pci</deviceAPI>
          <availableInstances>1</availableInstances>
        </type>
      </capability>
      <iommuGroup number='60'>
        <address domain='0x0000' bus='0x41' slot='0x00' function='0x0'/>
      </iommuGroup>
    </capability>
  </device>
</node>
"""


@pytest.fixture
def default():
    c = Connection('test:///default')
    yield c
    c.close()


@pytest.fixture
def host(tmp_path):
    path = tmp_path / 'host.xml'
    path.write_text(HOST_XML)
    c = Connection('test://%s' % path)
    yield c
    c.close()


def by_name(devices):
    return dict((d['name'], d) for d in devices)


def test_default_driver_lists_its_devices(default):
    devices = _nodedev.nodedevs_info(default)
    assert [d['name'] for d in devices] == ['computer', 'scsi_host1', 'scsi_host11', 'scsi_host2']
    computer = devices[0]
    assert computer['parent'] is None
    assert computer['type'] == 'system'
    assert computer['system']['hardware']['uuid'] == '11111111-2222-3333-4444-555555555555'
    assert computer['system']['firmware']['release_date'] == '01/22/2007'
    hba = by_name(devices)['scsi_host1']
    assert hba['capabilities'] == ['scsi_host', 'fc_host', 'vports']
    assert hba['scsi_host']['fc_host'] == dict(wwnn='2000000012341234', wwpn='1000000012341234',
                                               fabric_wwn='2000000043214321')
    assert hba['scsi_host']['vports'] == dict(max_vports=0, vports=0)
    assert by_name(devices)['scsi_host11']['parent'] == 'scsi_host1'
    assert all(d['xml'].startswith('<device>') for d in devices)


def test_capability_filter_uses_nested_capabilities(default):
    assert [d['name'] for d in _nodedev.nodedevs_info(default, capability=['vports'])] == \
        ['scsi_host1', 'scsi_host2']
    assert [d['name'] for d in _nodedev.nodedevs_info(default, capability=['system', 'vports'])] == \
        ['computer', 'scsi_host1', 'scsi_host2']
    assert _nodedev.nodedevs_info(default, capability=['pci']) == []


def test_active_filter_on_a_driver_without_inactive_devices(default):
    # The test driver rejects the ACTIVE/INACTIVE listing flags and cannot tell activity:
    # every device it has counts as active.
    assert len(_nodedev.nodedevs_info(default, active=True)) == 4
    assert _nodedev.nodedevs_info(default, active=False) == []
    assert all(d['active'] is None for d in _nodedev.nodedevs_info(default))


def test_by_name(default):
    assert [d['name'] for d in _nodedev.nodedevs_info(default, name='scsi_host2')] == ['scsi_host2']
    assert _nodedev.nodedevs_info(default, name='scsi_host2', capability=['system']) == []
    assert _nodedev.nodedevs_info(default, name='no_such_device') == []


def test_unknown_capability_is_a_clear_error(default):
    with pytest.raises(VirtError) as err:
        _nodedev.nodedevs_info(default, capability=['gpu'])
    assert 'unknown node device capability gpu' in err.value.msg


def test_pci_with_sriov_and_iommu(host):
    nic = by_name(_nodedev.nodedevs_info(host, capability=['pci']))['pci_0000_03_00_0']
    pci = nic['pci']
    assert pci['address'] == '0000:03:00.0'
    assert (pci['domain'], pci['bus'], pci['slot'], pci['function']) == (0, 3, 0, 0)
    assert pci['vendor_id'] == '0x8086' and pci['vendor'] == 'Intel Corporation'
    assert pci['product_id'] == '0x10fb' and pci['product'].startswith('82599ES')
    assert pci['class_id'] == '0x020000'
    assert pci['iommu_group'] == 12
    assert pci['iommu_group_devices'] == ['0000:03:00.0', '0000:03:00.1']
    assert pci['numa_node'] == 1
    assert pci['sriov_max_vfs'] == 63
    assert pci['sriov_vfs'] == ['0000:03:10.0', '0000:03:10.2']
    assert pci['sriov_pf'] is None
    assert pci['pcie_link'] == dict(cap=dict(speed='5', width=8, port=0), sta=dict(speed='5', width=4, port=None))
    assert nic['path'] == '/sys/devices/pci0000:00/0000:00:02.0/0000:03:00.0'
    vf = _nodedev.nodedevs_info(host, name='pci_0000_03_10_0')[0]
    assert vf['pci']['address'] == '0000:03:10.0'
    assert vf['pci']['slot'] == 16
    assert vf['pci']['sriov_pf'] == '0000:03:00.0'
    assert vf['pci']['sriov_vfs'] == [] and vf['pci']['sriov_max_vfs'] is None
    assert vf['parent'] == 'pci_0000_03_00_0'


def test_mdev_types_of_a_gpu(host):
    gpus = _nodedev.nodedevs_info(host, capability=['mdev_types'])
    assert [g['name'] for g in gpus] == ['pci_0000_41_00_0']
    gpu = gpus[0]
    assert gpu['capabilities'] == ['pci', 'mdev_types']
    assert gpu['pci']['address'] == '0000:41:00.0'
    assert gpu['pci']['mdev_types'] == [
        dict(id='nvidia-222', name='GRID T4-1B', device_api='vfio-pci', available_instances=16),
        dict(id='nvidia-230', name='GRID T4-16Q', device_api='vfio-pci', available_instances=1),
    ]


def test_net_usb_and_storage(host):
    devices = by_name(_nodedev.nodedevs_info(host))
    net = devices['net_enp3s0_52_54_00_aa_bb_cc']['net']
    assert net == dict(interface='enp3s0', address='52:54:00:aa:bb:cc', link_state='up', link_speed=10000,
                       features=['rx', 'tx'], subtype='80203')
    usb = devices['usb_1_2']['usb_device']
    assert usb == dict(bus=1, device=5, vendor_id='0x0781', vendor='SanDisk Corp.', product_id='0x5567',
                       product='Cruzer Blade')
    assert devices['usb_1_2_1_0']['usb']['class_id'] == '8'
    assert devices['usb_1_2_1_0']['parent'] == 'usb_1_2'
    disk = devices['block_sda_SanDisk_Cruzer']['storage']
    assert disk['block'] == '/dev/sda'
    assert disk['bus'] == 'usb' and disk['model'] == 'Cruzer Blade' and disk['serial'] == '4C530001'
    assert disk['removable'] is True and disk['media_available'] is True
    assert disk['media_size'] == 15682240512
    assert [d for d in devices if devices[d]['type'] == 'net'] == ['net_enp3s0_52_54_00_aa_bb_cc']


def test_parse_device_from_udev_xml():
    """Parts the test driver drops from a loaded file (driver, devnode, unknown speed) as the
    udev backend of qemu:///system writes them."""
    facts = _nodedev.parse_device("""<device>
  <name>block_vda</name>
  <path>/sys/devices/pci0000:00/0000:00:02.0/virtio1/block/vda</path>
  <devnode type='dev'>/dev/vda</devnode>
  <devnode type='link'>/dev/disk/by-path/pci-0000:00:02.0</devnode>
  <parent>pci_0000_00_02_0</parent>
  <driver><name>virtio_blk</name></driver>
  <capability type='storage'>
    <block>/dev/vda</block>
    <drive_type>disk</drive_type>
    <size>274877906944</size>
    <logical_block_size>512</logical_block_size>
    <num_blocks>536870912</num_blocks>
  </capability>
</device>""")
    assert facts['devnode'] == '/dev/vda'
    assert facts['devlinks'] == ['/dev/disk/by-path/pci-0000:00:02.0']
    assert facts['driver'] == 'virtio_blk'
    assert facts['storage']['size'] == 274877906944
    assert facts['storage']['removable'] is False
    net = _nodedev.parse_device("""<device><name>net_eth0</name><capability type='net'>
      <interface>eth0</interface><address>02:fc:00:00:00:01</address>
      <link speed='4294967295' state='up'/></capability></device>""")
    assert net['net']['link_speed'] is None


def test_unmodelled_capability_is_returned_generically():
    facts = _nodedev.parse_device("""<device><name>ap_card03</name><parent>computer</parent>
      <capability type='ap_card'><ap-adapter>0x03</ap-adapter></capability></device>""")
    assert facts['type'] == 'ap_card'
    assert facts['ap_card'] == {'ap_adapter': '0x03'}
