# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests of the XML intent-diff engine on XML that libvirt produced (tests/unit/fixtures,
see make-fixtures.sh there): desired XML as a user writes it against libvirt's own dumps."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

import pytest

pytest.importorskip('lxml')

from ansible_collections.virtops.libvirt.plugins.module_utils._domain_profile import DOMAIN  # noqa: E402
from ansible_collections.virtops.libvirt.plugins.module_utils._network_profile import NETWORK  # noqa: E402
from ansible_collections.virtops.libvirt.plugins.module_utils._pool_profile import STORAGE_POOL  # noqa: E402
from ansible_collections.virtops.libvirt.plugins.module_utils.xml._compare import compare, normalized, values_equal  # noqa: E402
from ansible_collections.virtops.libvirt.plugins.module_utils.xml._document import parse  # noqa: E402
from ansible_collections.virtops.libvirt.plugins.module_utils._libvirt import VirtError  # noqa: E402

FIXTURES = os.path.join(os.path.dirname(__file__), '..', '..', '..', 'fixtures')

# What libvirt 9.0 / QEMU 7.2 resolved the machine type aliases to (domain capabilities).
MACHINES = {'pc': 'pc-i440fx-7.2', 'q35': 'pc-q35-7.2'}
CANONICAL = {'os/type@machine': lambda v: MACHINES.get(v, v)}


def fixture(name):
    with open(os.path.join(FIXTURES, name)) as f:
        return f.read()


def edit(xml, old, new, count=1):
    assert xml.count(old) >= count, 'fixture does not contain %r' % old
    return xml.replace(old, new, count)


@pytest.fixture(scope='module')
def pc():
    return fixture('qemu-pc-desired.xml'), fixture('qemu-pc-inactive.xml')


@pytest.fixture(scope='module')
def q35():
    return fixture('qemu-q35-desired.xml'), fixture('qemu-q35-inactive.xml')


# ------------------------------------------------------------------ generated values never count

def test_desired_satisfied_by_what_libvirt_made_of_it(pc):
    desired, live = pc
    result = compare(desired, live, DOMAIN, normalizers=CANONICAL)
    assert not result.changed, result.summary()
    assert result.before == result.after
    assert result.unified() == ''


def test_q35_with_generated_controllers_macs_and_addresses(q35):
    desired, live = q35
    # libvirt added: uuid, pcie-root and 9 root ports, sata, usb, virtio-serial controllers,
    # MAC of the second NIC, PCI and drive addresses, a raw driver for the CD-ROM, inputs,
    # memballoon, emulator, cpu, clock, on_* elements; it lower-cased the given MAC and
    # rewrote memory from 128 M to 131072 KiB.
    result = compare(desired, live, DOMAIN, normalizers=CANONICAL)
    assert not result.changed, result.summary()


def test_libvirt_dump_satisfies_itself(pc, q35):
    for _desired, live in (pc, q35):
        assert not compare(live, live, DOMAIN).changed
    test_dom = fixture('test-default-domain.xml')
    assert not compare(test_dom, test_dom, DOMAIN).changed


def test_test_driver_domain_minimal_intent():
    desired = """
    <domain type='test'>
      <name>test</name>
      <memory unit='GiB'>8</memory>
      <currentMemory unit='MiB'>2048</currentMemory>
      <devices>
        <disk type='file'><source file='/guest/diskimage1'/><target dev='vda'/></disk>
        <interface type='network'><source network='default'/></interface>
      </devices>
    </domain>"""
    result = compare(desired, fixture('test-default-domain.xml'), DOMAIN)
    assert not result.changed, result.summary()


def test_runtime_values_of_the_running_domain_are_ignored_in_runtime_mode(pc):
    desired, _live = pc
    running = fixture('qemu-pc-running.xml')
    assert not compare(desired, running, DOMAIN, normalizers=CANONICAL,
                       runtime=True).changed
    # Outside runtime mode the VNC port QEMU got is not what the user asked for (-1 = auto).
    desired = edit(desired, "autoport='yes'", "autoport='yes' port='-1'")
    assert not compare(desired, pc[1], DOMAIN, normalizers=CANONICAL).changed
    assert not compare(desired, running, DOMAIN, normalizers=CANONICAL,
                       runtime=True).changed
    assert [d.path for d in compare(desired, running, DOMAIN,
                                    normalizers=CANONICAL).differences] == [
        'devices/graphics[vnc]@port']
    # The running XML has id, aliases, a VNC port, a cpu model expanded with features.
    assert "id='" in running and '<alias' in running and "port='59" in running


def test_running_q35_domain_satisfies_its_definition_in_runtime_mode(q35):
    desired, _live = q35
    running = fixture('qemu-q35-running.xml')
    # The balloon reports all 128 MiB while running (no guest driver): currentMemory is a
    # run-time value; outside runtime mode it is a difference.
    assert not compare(desired, running, DOMAIN, normalizers=CANONICAL,
                       runtime=True).changed
    assert [d.path for d in compare(desired, running, DOMAIN,
                                    normalizers=CANONICAL).differences] == ['currentMemory']
    # A memory change not yet applied is seen in runtime mode (restart_required).
    grown = edit(desired, "<memory unit='M'>128</memory>", "<memory unit='M'>256</memory>")
    assert [d.path for d in compare(grown, running, DOMAIN, normalizers=CANONICAL,
                                    runtime=True).differences] == ['memory']


def test_memory_aligned_by_qemu_at_run_time():
    # Seen on QEMU 7.2: <memory unit='KiB'>100001</memory> runs as 100352 KiB (1 MiB aligned).
    desired = "<domain><name>n</name><memory unit='KiB'>100001</memory></domain>"
    running = "<domain id='7'><name>n</name><memory unit='KiB'>100352</memory></domain>"
    assert not compare(desired, running, DOMAIN, runtime=True).changed
    assert compare(desired, running, DOMAIN).changed
    bigger = running.replace('100352', '101376')
    assert compare(desired, bigger, DOMAIN, runtime=True).changed


def test_domain_id_of_a_dumped_running_xml_is_ignored(pc):
    desired = edit(pc[0], "<domain type='qemu'>", "<domain type='qemu' id='42'>")
    assert not compare(desired, pc[1], DOMAIN, normalizers=CANONICAL).changed


def test_libvirt_aliases_ignored_user_aliases_compared(pc):
    desired, live = pc
    with_alias = edit(desired, "<target dev='vda' bus='virtio'/>",
                      "<target dev='vda' bus='virtio'/><alias name='virtio-disk0'/>")
    assert not compare(with_alias, live, DOMAIN, normalizers=CANONICAL).changed
    user_alias = edit(desired, "<target dev='vda' bus='virtio'/>",
                      "<target dev='vda' bus='virtio'/><alias name='ua-boot'/>")
    result = compare(user_alias, live, DOMAIN, normalizers=CANONICAL)
    assert result.changed
    assert result.differences[0].path == 'devices/disk[vda]/alias'


# ------------------------------------------------------------------ user-set values that differ

@pytest.mark.parametrize('old, new, path', [
    ("<memory unit='MiB'>64</memory>", "<memory unit='MiB'>80</memory>", 'memory'),
    ('<vcpu>1</vcpu>', '<vcpu>2</vcpu>', 'vcpu'),
    ("<driver name='qemu' type='qcow2'/>", "<driver name='qemu' type='qcow2' cache='none'/>",
     'devices/disk[vda]/driver@cache'),
    ("<model type='virtio'/>", "<model type='e1000'/>", 'devices/interface/model@type'),
    ("<boot dev='hd'/>", "<boot dev='network'/>", 'os/boot@dev'),
    ("<graphics type='vnc' autoport='yes' listen='127.0.0.1' passwd='secret'/>",
     "<graphics type='vnc' autoport='yes' listen='0.0.0.0' passwd='secret'/>",
     'devices/graphics[vnc]@listen'),
    ("<type arch='x86_64' machine='pc'>hvm</type>",
     "<type arch='x86_64' machine='pc-i440fx-6.2'>hvm</type>", 'os/type@machine'),
])
def test_user_set_value_that_differs_is_a_change(pc, old, new, path):
    result = compare(edit(pc[0], old, new), pc[1], DOMAIN, normalizers=CANONICAL)
    assert result.changed
    assert [d.path for d in result.differences] == [path]


def test_user_set_value_libvirt_would_generate_otherwise(pc):
    desired, live = pc
    # uuid and MAC are libvirt's when not set; once set by the user they are compared.
    other_uuid = edit(desired, '<vcpu>', '<uuid>00000000-0000-0000-0000-000000000001</uuid><vcpu>')
    assert [d.path for d in compare(other_uuid, live, DOMAIN,
                                    normalizers=CANONICAL).differences] == ['uuid']
    pci = edit(desired, "<target dev='vda' bus='virtio'/>",
               "<target dev='vda' bus='virtio'/><address type='pci' slot='5'/>")
    result = compare(pci, live, DOMAIN, normalizers=CANONICAL)
    assert [str(d) for d in result.differences] == [
        'devices/disk[vda]/address@slot: 0x04, wanted 5']
    # The same slot written in decimal is the same slot.
    same = edit(desired, "<target dev='vda' bus='virtio'/>",
                "<target dev='vda' bus='virtio'/><address type='pci' bus='0' slot='4'/>")
    assert not compare(same, live, DOMAIN, normalizers=CANONICAL).changed


def test_missing_element_is_a_change(pc):
    desired = edit(pc[0], '<devices>', "<devices><memballoon model='none'/>")
    result = compare(desired, pc[1], DOMAIN, normalizers=CANONICAL)
    assert [d.path for d in result.differences] == ['devices/memballoon@model']
    desired = edit(pc[0], '<os>', '<features><acpi/></features><os>')
    result = compare(desired, pc[1], DOMAIN, normalizers=CANONICAL)
    assert [str(d) for d in result.differences] == ['features: missing, wanted <features><acpi/></features>']


def test_secret_values_compared_but_masked(pc):
    desired = edit(pc[0], "passwd='secret'", "passwd='other'")
    result = compare(desired, pc[1], DOMAIN, normalizers=CANONICAL)
    assert result.changed
    assert 'other' not in result.after + result.before + ' '.join(result.summary())
    assert 'secret' not in result.after + result.before + ' '.join(result.summary())
    assert 'passwd="********"' in result.after
    assert 'passwd="******** (differs)"' in result.before


# ------------------------------------------------------------------ identity of list items

Q35_DISK = """
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2' cache='none'/>
      <source file='/var/lib/libvirt/images/it-dom-fixture-q35.qcow2'/>
      <target dev='vda' bus='virtio'/>
    </disk>"""
Q35_CDROM = """
    <disk type='file' device='cdrom'>
      <target dev='sda' bus='sata'/>
      <readonly/>
    </disk>"""


def test_disks_matched_by_target_not_position(q35):
    desired, live = q35
    swapped = edit(desired, Q35_DISK.strip() + '\n    ' + Q35_CDROM.strip(),
                   Q35_CDROM.strip() + '\n    ' + Q35_DISK.strip())
    assert swapped != desired
    assert not compare(swapped, live, DOMAIN, normalizers=CANONICAL).changed


def test_interfaces_matched_by_mac_when_given(q35):
    desired, live = q35
    nic1 = """<interface type='user'>
      <mac address='52:54:00:AA:BB:01'/>
      <model type='virtio'/>
    </interface>"""
    nic2 = """<interface type='user'>
      <model type='e1000e'/>
    </interface>"""
    assert nic1 in desired and nic2 in desired
    # The NIC with a MAC first matches by MAC; the one without takes what is left.
    swapped = edit(desired, nic1 + '\n    ' + nic2, nic2 + '\n    ' + nic1)
    assert not compare(swapped, live, DOMAIN, normalizers=CANONICAL).changed
    # Without MACs, interfaces match by position: swapping models is a change on both.
    no_macs = edit(desired, "\n      <mac address='52:54:00:AA:BB:01'/>", '')
    assert not compare(no_macs, live, DOMAIN, normalizers=CANONICAL).changed
    swapped = edit(no_macs, "<model type='virtio'/>", "<model type='X'/>")
    swapped = edit(swapped, "<model type='e1000e'/>", "<model type='virtio'/>")
    swapped = edit(swapped, "<model type='X'/>", "<model type='e1000e'/>")
    result = compare(swapped, live, DOMAIN, normalizers=CANONICAL)
    assert [d.path for d in result.differences] == ['devices/interface/model@type'] * 2


def test_a_mac_the_domain_does_not_have_is_a_new_interface(q35):
    desired, live = q35
    other = edit(desired, '52:54:00:AA:BB:01', '52:54:00:AA:BB:02')
    result = compare(other, live, DOMAIN, normalizers=CANONICAL)
    paths = [d.path for d in result.differences]
    # The unmatched live NIC (52:54:00:aa:bb:01) is removed, the new one is missing.
    assert 'devices/interface[52:54:00:aa:bb:02]' in paths
    assert 'devices/interface[52:54:00:aa:bb:01]' in paths


def test_controllers_by_type_and_index(q35):
    desired, live = q35
    # Written without an index: the first controller of its type.
    assert "<controller type='scsi' model='virtio-scsi'/>" in desired
    indexed = edit(desired, "<controller type='scsi' model='virtio-scsi'/>",
                   "<controller type='pci' index='3' model='pcie-root-port'/>"
                   "<controller type='scsi' index='0' model='virtio-scsi'/>")
    assert not compare(indexed, live, DOMAIN, normalizers=CANONICAL).changed
    wrong = edit(desired, "<controller type='scsi' model='virtio-scsi'/>",
                 "<controller type='pci' index='3' model='pcie-to-pci-bridge'/>")
    result = compare(wrong, live, DOMAIN, normalizers=CANONICAL)
    assert [d.path for d in result.differences] == ['devices/controller[pci,3]@model']


def test_removed_disk_is_a_change_removed_controller_is_not(q35):
    desired, live = q35
    no_cdrom = edit(desired, Q35_CDROM, '')
    result = compare(no_cdrom, live, DOMAIN, normalizers=CANONICAL)
    assert [d.path for d in result.differences] == ['devices/disk[sda]']
    assert result.differences[0].after is None
    assert 'sda' in result.before and 'sda' not in result.after
    # Controllers are added by libvirt: leaving one out of the XML is not a removal.
    no_scsi = edit(desired, "<controller type='scsi' model='virtio-scsi'/>", '')
    assert not compare(no_scsi, live, DOMAIN, normalizers=CANONICAL).changed


def test_boot_order_is_positional_and_authoritative_once_given(q35):
    desired, live = q35
    swapped = edit(desired, "<boot dev='hd'/>\n    <boot dev='cdrom'/>",
                   "<boot dev='cdrom'/>\n    <boot dev='hd'/>")
    assert compare(swapped, live, DOMAIN, normalizers=CANONICAL).changed
    only_hd = edit(desired, "\n    <boot dev='cdrom'/>", '')
    result = compare(only_hd, live, DOMAIN, normalizers=CANONICAL)
    assert [str(d) for d in result.differences] == [
        'os/boot: <boot dev="cdrom"/> present, not wanted']
    # No boot element at all: libvirt's default boot order is not the user's concern.
    no_boot = edit(only_hd, "\n    <boot dev='hd'/>", '')
    assert not compare(no_boot, live, DOMAIN, normalizers=CANONICAL).changed


def test_element_order_libvirt_normalises_is_ignored(pc):
    desired, live = pc
    # <devices> before <os> and <vcpu> before <memory>: libvirt reorders, we do not care.
    moved = edit(desired, "  <memory unit='MiB'>64</memory>\n  <vcpu>1</vcpu>",
                 "  <vcpu>1</vcpu>\n  <memory unit='MiB'>64</memory>")
    assert not compare(moved, live, DOMAIN, normalizers=CANONICAL).changed


# ------------------------------------------------------------------ units

@pytest.mark.parametrize('memory', [
    "<memory unit='KiB'>65536</memory>",
    "<memory>65536</memory>",
    "<memory unit='MiB'>64</memory>",
    "<memory unit='M'>64</memory>",
    "<memory unit='k'>65536</memory>",
    "<memory unit='b'>67108864</memory>",
    "<memory unit='bytes'>67108864</memory>",
])
def test_memory_units_are_normalised(pc, memory):
    desired = edit(pc[0], "<memory unit='MiB'>64</memory>", memory)
    result = compare(desired, pc[1], DOMAIN, normalizers=CANONICAL)
    assert not result.changed, result.summary()
    assert '<memory unit="KiB">65536</memory>' in result.after


@pytest.mark.parametrize('memory, shown', [
    ("<memory unit='MB'>64</memory>", '62500 KiB'),          # decimal megabytes
    ("<memory unit='GiB'>1</memory>", '1048576 KiB'),
    # not a whole KiB: libvirt stores it rounded up (virDomainParseMemory)
    ("<memory unit='b'>67108865</memory>", '65537 KiB'),
])
def test_different_sizes_are_changes(pc, memory, shown):
    desired = edit(pc[0], "<memory unit='MiB'>64</memory>", memory)
    result = compare(desired, pc[1], DOMAIN, normalizers=CANONICAL)
    assert [str(d) for d in result.differences] == ['memory: 65536 KiB, wanted %s' % shown]


def test_size_in_an_attribute():
    desired = """<domain><name>n</name><cpu><numa>
      <cell id='0' cpus='0' memory='1' unit='GiB'/></numa></cpu></domain>"""
    live = """<domain><name>n</name><cpu mode='custom'><numa>
      <cell id='0' cpus='0' memory='1048576' unit='KiB'/></numa></cpu></domain>"""
    assert not compare(desired, live, DOMAIN).changed
    result = compare(desired.replace("memory='1'", "memory='2'"), live, DOMAIN)
    assert [str(d) for d in result.differences] == [
        'cpu/numa/cell[0]@memory: 1048576 KiB, wanted 2097152 KiB']


def test_vcpu_current_equal_to_maximum_is_dropped_by_libvirt(pc):
    desired = edit(pc[0], '<vcpu>1</vcpu>', "<vcpu current='1'>1</vcpu>")
    assert not compare(desired, pc[1], DOMAIN, normalizers=CANONICAL).changed


# ------------------------------------------------------------------ diff output

def test_diff_shows_only_what_the_user_wrote(pc):
    desired = edit(pc[0], "<memory unit='MiB'>64</memory>", "<memory unit='MiB'>80</memory>")
    result = compare(desired, pc[1], DOMAIN, normalizers=CANONICAL)
    text = result.unified('live', 'desired')
    lines = text.splitlines()
    assert lines[0] == '--- live' and lines[1] == '+++ desired'
    assert '-  <memory unit="KiB">65536</memory>' in lines
    assert '+  <memory unit="KiB">81920</memory>' in lines
    changed = [ln for ln in lines[2:] if ln[:1] in '+-' and not ln.startswith('@@')]
    assert len(changed) == 2
    # Generated values are not in either side.
    for side in (result.before, result.after):
        assert '<uuid>' not in side and 'address' not in side and 'pci-root' not in side
        assert '<emulator>' not in side and 'memballoon' not in side
    assert result.summary() == ['memory: 65536 KiB, wanted 81920 KiB']


def test_diff_for_a_new_object_is_the_whole_normalised_desired(pc):
    result = compare(pc[0], None, DOMAIN)
    assert result.changed and result.before == ''
    assert result.after.startswith('<domain type="qemu">')
    assert '<memory unit="KiB">65536</memory>' in result.after
    assert result.unified().count('\n+') > 10


def test_normalized_text_of_one_document(pc):
    text = normalized(pc[1], DOMAIN)
    assert '<memory unit="KiB">65536</memory>' in text and "passwd=\"********\"" in text


# ------------------------------------------------------------------ other object types

def test_network_profile_on_test_driver_network():
    live = fixture('test-default-network.xml')
    desired = """<network><name>default</name><forward mode='nat'/>
      <ip address='192.168.122.1' netmask='255.255.255.0'>
        <dhcp><range start='192.168.122.2' end='192.168.122.254'/></dhcp></ip></network>"""
    assert not compare(desired, live, NETWORK).changed
    narrower = desired.replace("end='192.168.122.254'", "end='192.168.122.100'")
    result = compare(narrower, live, NETWORK)
    assert [d.path for d in result.differences] == ['ip[192.168.122.1]/dhcp/range[192.168.122.2]@end']
    # A DHCP host the user did not ask for is removed (networks own their host list).
    assert not compare(desired, live, NETWORK).changed


def test_pool_profile_ignores_sizes_libvirt_reports():
    live = fixture('test-default-pool.xml')
    desired = """<pool type='dir'><name>default-pool</name><capacity>1</capacity>
      <target><path>/default-pool</path></target></pool>"""
    assert not compare(desired, live, STORAGE_POOL).changed
    moved = desired.replace('/default-pool<', '/elsewhere<')
    assert [d.path for d in compare(moved, live, STORAGE_POOL).differences] == ['target/path']


def test_wrong_root_element_is_a_change():
    result = compare('<network><name>x</name></network>', fixture('test-default-domain.xml'),
                     DOMAIN)
    assert result.changed and result.differences[0].before == 'domain'


# ------------------------------------------------------------------ errors and helpers

def test_malformed_xml_is_a_clear_error():
    with pytest.raises(VirtError) as exc:
        compare("<domain type='qemu'><name>x</name>", '<domain/>', DOMAIN)
    assert 'desired domain XML is not well-formed' in exc.value.msg
    with pytest.raises(VirtError) as exc:
        parse('   ', 'the domain XML')
    assert exc.value.msg == 'the domain XML is empty'


def test_namespaced_metadata_compared_by_qualified_name():
    live = """<domain><name>n</name><metadata>
      <app:info xmlns:app='http://example.com/app'><owner>ops</owner></app:info>
      </metadata></domain>"""
    same = """<domain><name>n</name><metadata>
      <x:info xmlns:x='http://example.com/app'><owner>ops</owner></x:info></metadata></domain>"""
    assert not compare(same, live, DOMAIN).changed
    other = same.replace('>ops<', '>dev<')
    result = compare(other, live, DOMAIN)
    assert [str(d) for d in result.differences] == ['metadata/info/owner: ops, wanted dev']


def test_values_equal():
    assert values_equal('0x05', '5')
    assert values_equal(' a ', 'a')
    assert not values_equal('0x05', '6')
    assert not values_equal('yes', 'no')
    assert values_equal(None, None)
    assert not values_equal('1', None)


def test_cdrom_without_readonly_matches_libvirts_forced_readonly():
    # libvirt adds <readonly/> to every CD-ROM; a definition without it must not change every run
    desired = ('<domain type="qemu"><name>a</name><devices><disk type="file" device="cdrom">'
               '<source file="/x.iso"/><target dev="sda" bus="sata"/></disk></devices></domain>')
    live = ('<domain type="qemu"><name>a</name><devices><disk type="file" device="cdrom">'
            '<driver name="qemu" type="raw"/><source file="/x.iso"/><target dev="sda" bus="sata"/>'
            '<readonly/></disk></devices></domain>')
    assert not compare(desired, live, DOMAIN).changed
    # a plain disk is not read-only unless written so: the live <readonly/> is a difference
    disk_desired = desired.replace('device="cdrom"', 'device="disk"')
    disk_live = live.replace('device="cdrom"', 'device="disk"')
    assert compare(disk_desired, disk_live, DOMAIN).changed
