# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests of virt_domain_device's engine against libvirt's test:///default driver (no mocks).

The test driver has no attach, update or detach calls (virDomainAttachDeviceFlags & co. answer
"not supported"), so real attach/update/detach, live updates and the live detach timeout are
covered by tests/integration/targets/virt_domain_device on qemu:///system. Here: parsing and
identity, the intent comparison, scopes, planning and check mode, config updates (which
redefine the domain, a call the test driver has), restart_required, and every bad input.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import itertools

import pytest

libvirt = pytest.importorskip('libvirt')
pytest.importorskip('lxml')

from ansible_collections.virtops.libvirt.plugins.module_utils import _device  # noqa: E402
from ansible_collections.virtops.libvirt.plugins.module_utils.xml import _document  # noqa: E402
from ansible_collections.virtops.libvirt.plugins.module_utils._libvirt import VirtError  # noqa: E402

URI = 'test:///default'
_counter = itertools.count()

DOMAIN_XML = """
<domain type='test'>
  <name>{name}</name>
  <memory unit='MiB'>64</memory>
  <vcpu>1</vcpu>
  <os><type>hvm</type></os>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='/images/{name}-a.qcow2'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <disk type='file' device='cdrom'>
      <driver name='qemu' type='raw'/>
      <source file='/images/one.iso'/>
      <target dev='hdc' bus='ide'/>
    </disk>
    <interface type='network'>
      <mac address='52:54:00:00:00:01'/>
      <source network='default'/>
      <model type='virtio'/>
    </interface>
    <interface type='network'>
      <source network='default'/>
      <model type='virtio'/>
      <alias name='ua-second'/>
    </interface>
    <serial type='pty'><target port='0'/></serial>
    <serial type='pty'><target port='1'/></serial>
  </devices>
</domain>
"""

DISK_B = """<disk type='file' device='disk'>
  <driver name='qemu' type='qcow2'/>
  <source file='/images/b.qcow2'/>
  <target dev='vdb' bus='virtio'/>
</disk>"""


def _remove(conn, name):
    dom = conn.lookup_domain(name)
    if dom is not None:
        if dom.isActive():
            dom.destroy()
        if conn.lookup_domain(name) is not None and dom.isPersistent():
            dom.undefine()


@pytest.fixture
def name(conn):
    """A defined (shut off) domain with a fresh name; removed afterwards."""
    value = 'ut-dev-%d' % next(_counter)
    conn.conn.defineXML(DOMAIN_XML.format(name=value))
    yield value
    _remove(conn, value)


@pytest.fixture
def running(conn, name):
    conn.conn.lookupByName(name).create()
    return name


@pytest.fixture
def transient(conn):
    value = 'ut-dev-t%d' % next(_counter)
    conn.conn.createXML(DOMAIN_XML.format(name=value), 0)
    yield value
    _remove(conn, value)


class Recorder:
    def __init__(self):
        self.warnings = []

    def __call__(self, msg):
        self.warnings.append(msg)


def run(conn, name, xml, check_mode=False, **kwargs):
    params = dict(name=name, xml=xml, state='present', live=None, config=None, timeout=5)
    params.update(kwargs)
    warn = Recorder()
    result = _device.DeviceManager(conn, params, check_mode=check_mode, diff_mode=True,
                                   warn=warn, sleep=lambda s: None).run()
    result['warnings'] = warn.warnings
    return result


def inactive(conn, name):
    return conn.conn.lookupByName(name).XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)


def live(conn, name):
    return conn.conn.lookupByName(name).XMLDesc(0)


def parsed(text):
    return _document.parse(text)


def desired(xml, domain='d1'):
    return _device.DesiredDevice(xml, domain)


# ------------------------------------------------------------------ parsing and identity

@pytest.mark.parametrize('xml, expect', [
    ('<disk', 'not well-formed'),
    ('', 'is empty'),
    ('<devices><disk/><disk/></devices>', 'holding 2 device'),
    ('<domain><devices><disk/></devices></domain>', 'give exactly one device element'),
    ('<bogus/>', 'not a libvirt device'),
    ("<disk type='file'><source file='/x'/></disk>", 'needs <target dev=...>'),
    ("<interface type='network'><source network='default'/></interface>",
     'needs <mac address=...> or a user alias'),
    ("<interface type='network'><alias name='net0'/></interface>", 'not a user alias'),
    ("<hostdev mode='subsystem' type='pci'/>", 'needs its <source>'),
])
def test_bad_device_xml_names_domain_and_fails(xml, expect):
    with pytest.raises(VirtError) as err:
        desired(xml, 'dom-x')
    assert expect in err.value.msg
    assert 'dom-x' in err.value.msg


def test_labels_say_which_device():
    assert desired(DISK_B).label == 'disk vdb'
    assert desired("<disk device='cdrom'><target dev='hdc'/></disk>").label == 'cdrom hdc'
    assert desired("<interface><mac address='52:54:00:AA:00:01'/></interface>").label == \
        'interface 52:54:00:aa:00:01'
    assert desired("<rng model='virtio'><alias name='ua-r'/></rng>").label == 'rng virtio (ua-r)'
    assert desired(DISK_B).obj == 'disk vdb on domain d1'


def test_find_by_target_mac_alias_and_kind():
    root = parsed(DOMAIN_XML.format(name='x'))
    assert _device.find_device(desired(DISK_B), root, 'config') is None
    found = _device.find_device(desired("<disk><target dev='vda'/></disk>"), root, 'config')
    assert found.find('source').get('file') == '/images/x-a.qcow2'
    # MAC addresses compare in lower case.
    found = _device.find_device(desired("<interface><mac address='52:54:00:00:00:01'/>"
                                        "</interface>".upper().replace('INTERFACE', 'interface')
                                        .replace('MAC ADDRESS', 'mac address')), root, 'config')
    assert found is not None and found.find('alias') is None
    found = _device.find_device(desired("<interface><alias name='ua-second'/></interface>"),
                                root, 'config')
    assert found is not None and found.find('mac') is None
    # Identity attributes of the shared profile: serial by target port.
    found = _device.find_device(desired("<serial type='pty'><target port='1'/></serial>"),
                                root, 'config')
    assert found is root.findall('devices/serial')[1]


def test_new_alias_is_a_new_device_unless_the_kind_has_a_unique_key():
    root = parsed(DOMAIN_XML.format(name='x'))
    # A serial with an alias nobody has: a new serial port, not port 0 renamed.
    assert _device.find_device(desired("<serial type='pty'><alias name='ua-s'/></serial>"),
                               root, 'config') is None
    # A disk's target dev is unique: the alias is added to the existing disk.
    assert _device.find_device(desired("<disk><target dev='vda'/><alias name='ua-d'/></disk>"),
                               root, 'config') is not None


def test_several_matches_ask_for_an_alias():
    root = parsed(DOMAIN_XML.format(name='x'))
    with pytest.raises(VirtError) as err:
        _device.find_device(desired("<serial type='pty'/>"), root, 'live')
    assert '2 <serial> devices' in err.value.msg and 'ua-' in err.value.msg


def test_hostdev_by_source_with_hex_numbers():
    root = parsed("""<domain><devices>
      <hostdev mode='subsystem' type='pci' managed='yes'>
        <source><address domain='0x0000' bus='0x00' slot='0x1f' function='0x2'/></source>
        <address type='pci' domain='0x0000' bus='0x00' slot='0x07' function='0x0'/>
      </hostdev>
      <hostdev mode='subsystem' type='usb'>
        <source><vendor id='0x1234'/><product id='0xbeef'/><address bus='1' device='3'/></source>
      </hostdev></devices></domain>""")
    pci = desired("<hostdev mode='subsystem' type='pci'><source>"
                  "<address domain='0' bus='0' slot='31' function='2'/></source></hostdev>")
    assert _device.find_device(pci, root, 'config') is root.findall('devices/hostdev')[0]
    usb = desired("<hostdev mode='subsystem' type='usb'><source><vendor id='0x1234'/>"
                  "<product id='0xbeef'/></source></hostdev>")
    assert _device.find_device(usb, root, 'config') is root.findall('devices/hostdev')[1]
    other = desired("<hostdev mode='subsystem' type='pci'><source>"
                    "<address domain='0' bus='0' slot='30' function='2'/></source></hostdev>")
    assert _device.find_device(other, root, 'config') is None


# ------------------------------------------------------------------ comparison

def test_generated_values_are_no_change():
    existing = parsed("""<interface type='network'>
      <mac address='52:54:00:00:00:01'/>
      <source network='default' portid='a1b2' bridge='virbr0'/>
      <target dev='vnet3'/>
      <model type='virtio'/>
      <alias name='net0'/>
      <address type='pci' domain='0x0000' bus='0x00' slot='0x03' function='0x0'/>
    </interface>""")
    want = desired("<interface type='network'><mac address='52:54:00:00:00:01'/>"
                   "<source network='default'/><model type='virtio'/></interface>")
    assert not _device.compare_device(want, existing, 'live').changed
    assert not _device.compare_device(want, existing, 'config').changed
    link_down = desired("<interface type='network'><mac address='52:54:00:00:00:01'/>"
                        "<link state='down'/></interface>")
    intent = _device.compare_device(link_down, existing, 'live')
    assert intent.changed and _device.live_updatable(link_down, existing, intent)


def test_cdrom_is_read_only_without_saying_so():
    existing = parsed("""<disk type='file' device='cdrom'><source file='/a.iso'/>
      <target dev='sdc' bus='scsi'/><readonly/></disk>""")
    same = desired("<disk type='file' device='cdrom'><source file='/a.iso'/>"
                   "<target dev='sdc' bus='scsi'/></disk>")
    assert not _device.compare_device(same, existing, 'live').changed
    media = desired("<disk type='file' device='cdrom'><source file='/b.iso'/>"
                    "<target dev='sdc' bus='scsi'/></disk>")
    intent = _device.compare_device(media, existing, 'live')
    assert intent.changed and _device.live_updatable(media, existing, intent)
    # Ejecting (no <source>) is a media change too.
    eject = desired("<disk type='file' device='cdrom'><target dev='sdc' bus='scsi'/></disk>")
    intent = _device.compare_device(eject, existing, 'live')
    assert intent.changed and _device.live_updatable(eject, existing, intent)


def test_what_cannot_change_live():
    disk = parsed("<disk type='file' device='disk'><source file='/a.qcow2'/>"
                  "<target dev='sdb' bus='scsi'/></disk>")
    other = desired("<disk type='file' device='disk'><source file='/b.qcow2'/>"
                    "<target dev='sdb' bus='scsi'/></disk>")
    intent = _device.compare_device(other, disk, 'live')
    assert intent.changed and not _device.live_updatable(other, disk, intent)
    nic = parsed("<interface type='user'><mac address='52:54:00:00:00:09'/>"
                 "<model type='virtio'/></interface>")
    model = desired("<interface type='user'><mac address='52:54:00:00:00:09'/>"
                    "<model type='e1000'/></interface>")
    intent = _device.compare_device(model, nic, 'live')
    assert intent.changed and not _device.live_updatable(model, nic, intent)


def test_merged_keeps_generated_mac_address_and_user_alias():
    existing = parsed("""<interface type='network'><mac address='52:54:00:00:00:07'/>
      <source network='default'/><alias name='ua-n'/>
      <address type='pci' domain='0x0000' bus='0x00' slot='0x03' function='0x0'/></interface>""")
    want = desired("<interface type='network'><source network='other'/><alias name='ua-n'/>"
                   "</interface>")
    out = _device.merged(want, existing)
    assert out.find('mac').get('address') == '52:54:00:00:00:07'
    assert out.find('address').get('slot') == '0x03'
    assert out.find('source').get('network') == 'other'
    assert len(out.findall('alias')) == 1


def test_schema_rejects_what_libvirt_would_silently_drop():
    with pytest.raises(VirtError) as err:
        _device.validate_device(URI, parsed("<disk type='file'><target dev='vdz'/><bogus/></disk>"),
                                'disk vdz on domain d1', 'd1')
    assert 'bogus' in err.value.msg and 'disk vdz on domain d1' in err.value.msg
    _device.validate_device(URI, parsed(DISK_B), 'disk vdb on domain d1', 'd1')
    # Remote URIs are not checked locally.
    _device.validate_device('qemu+ssh://h/system', parsed('<disk><bogus/></disk>'), 'x', 'd1')


# ------------------------------------------------------------------ the manager

def vda(name):
    return ("<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>"
            "<source file='/images/%s-a.qcow2'/><target dev='vda' bus='virtio'/></disk>" % name)


def test_scopes_follow_the_domain(conn, name, transient):
    result = run(conn, name, vda(name))
    assert result['scopes'] == ['config'] and not result['changed']
    result = run(conn, transient, vda(transient))
    assert result['scopes'] == ['live'] and not result['changed']


def test_present_with_less_than_the_device_has_is_a_change(conn, name):
    # What the XML leaves out of a disk's own parts (its source) it wants removed: an eject.
    result = run(conn, name, "<disk type='file' device='disk'><target dev='vda'/></disk>",
                 check_mode=True)
    assert result['actions'] == ['update config']


def test_running_persistent_domain_uses_both_scopes(conn, running):
    result = run(conn, running, vda(running))
    assert result['scopes'] == ['live', 'config']
    assert result['changed'] is False and result['actions'] == []
    assert [d['before'] == d['after'] for d in result['diff']] == [True, True]
    assert 'dev="vda"' in result['device']['live'] and 'dev="vda"' in result['device']['config']


@pytest.mark.parametrize('kwargs, expect', [
    (dict(live=True), 'has no live configuration'),
    (dict(live=False, config=False), 'nothing to act on'),
    (dict(timeout=-1), 'timeout must be'),
])
def test_bad_scopes_fail_and_change_nothing(conn, name, kwargs, expect):
    before = inactive(conn, name)
    with pytest.raises(VirtError) as err:
        run(conn, name, DISK_B, **kwargs)
    assert expect in err.value.msg
    assert inactive(conn, name) == before


def test_config_on_transient_domain_fails(conn, transient):
    with pytest.raises(VirtError) as err:
        run(conn, transient, DISK_B, config=True)
    assert 'transient' in err.value.msg and transient in err.value.msg


def test_unknown_domain(conn):
    with pytest.raises(VirtError) as err:
        run(conn, 'ut-dev-missing', DISK_B)
    assert 'domain ut-dev-missing not found' in err.value.msg and 'disk vdb' in err.value.msg


def test_attach_check_mode_predicts_and_changes_nothing(conn, name):
    before = inactive(conn, name)
    result = run(conn, name, DISK_B, check_mode=True)
    assert result['changed'] and result['actions'] == ['attach config']
    assert result['changed_scopes'] == ['config'] and result['restart_required'] is False
    assert result['device'] == {'config': None}
    assert result['diff'][0]['before'] == ''
    assert "dev=\"vdb\"" in result['diff'][0]['after']
    assert inactive(conn, name) == before


def test_attach_on_a_driver_without_it_says_what_and_where(conn, name):
    before = inactive(conn, name)
    with pytest.raises(VirtError) as err:
        run(conn, name, DISK_B)
    assert 'attaching (config) on disk vdb on domain %s failed' % name in err.value.msg
    assert 'not supported' in err.value.msg
    assert err.value.details['actions'] == []
    assert inactive(conn, name) == before


def test_invalid_device_fails_in_check_mode_too(conn, name):
    bad = "<disk type='file' device='disk'><target dev='vdb'/><bogus/></disk>"
    for check in (True, False):
        with pytest.raises(VirtError) as err:
            run(conn, name, bad, check_mode=check)
        assert 'bogus' in err.value.msg and name in err.value.msg


def test_config_update_four_times(conn, name):
    """check mode, real run, check mode again, real run again: the disk gets a serial."""
    want = ("<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>"
            "<source file='/images/%s-a.qcow2'/><target dev='vda' bus='virtio'/>"
            "<serial>data-1</serial></disk>" % name)
    before = inactive(conn, name)
    check = run(conn, name, want, check_mode=True)
    assert inactive(conn, name) == before
    real = run(conn, name, want)
    check2 = run(conn, name, want, check_mode=True)
    real2 = run(conn, name, want)
    assert check['changed'] and check['actions'] == ['update config']
    assert real['changed'] and real['actions'] == ['update config']
    assert '<serial>data-1</serial>' in real['device']['config']
    assert real['warnings'] == []
    assert not check2['changed'] and not real2['changed']
    assert '<serial>data-1</serial>' in check2['diff'][0]['before']
    # Replaced in place: vda is still the first disk, the other devices untouched.
    root = parsed(inactive(conn, name))
    assert [d.find('target').get('dev') for d in root.findall('devices/disk')] == ['vda', 'hdc']
    assert len(root.findall('devices/interface')) == 2


def test_cdrom_media_change_in_config(conn, name):
    want = ("<disk type='file' device='cdrom'><driver name='qemu' type='raw'/>"
            "<source file='/images/two.iso'/><target dev='hdc' bus='ide'/></disk>")
    real = run(conn, name, want)
    assert real['actions'] == ['update config']
    assert "/images/two.iso" in real['device']['config']
    assert not run(conn, name, want)['changed']


def test_interface_found_by_alias_keeps_its_mac(conn, name):
    mac_before = parsed(inactive(conn, name)).findall('devices/interface')[1].find('mac') \
        .get('address')
    want = ("<interface type='network'><source network='default'/><model type='e1000'/>"
            "<alias name='ua-second'/></interface>")
    real = run(conn, name, want)
    assert real['actions'] == ['update config']
    ifaces = parsed(inactive(conn, name)).findall('devices/interface')
    assert ifaces[1].find('mac').get('address') == mac_before
    assert ifaces[1].find('model').get('type') == 'e1000'
    assert not run(conn, name, want)['changed']


def test_live_change_that_cannot_be_applied_needs_a_restart(conn, running):
    want = ("<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>"
            "<source file='/images/%s-a.qcow2'/><target dev='vda' bus='virtio'/>"
            "<serial>s2</serial></disk>" % running)
    check = run(conn, running, want, check_mode=True)
    assert check['actions'] == ['update config'] and check['restart_required'] is True
    real = run(conn, running, want)
    assert real['actions'] == ['update config'] and real['restart_required'] is True
    assert real['changed_scopes'] == ['config']
    assert any('cannot change that live' in w for w in real['warnings'])
    assert '<serial>' not in real['device']['live']
    again = run(conn, running, want)
    assert again['changed'] is False and again['restart_required'] is True


def test_live_only_change_that_cannot_be_applied_fails(conn, running):
    want = ("<disk type='file' device='disk'><source file='/images/other.qcow2'/>"
            "<target dev='vda' bus='virtio'/></disk>")
    before = live(conn, running), inactive(conn, running)
    with pytest.raises(VirtError) as err:
        run(conn, running, want, config=False)
    assert 'cannot change that on a running device' in err.value.msg
    assert 'disk vda on domain %s' % running in err.value.msg
    assert (live(conn, running), inactive(conn, running)) == before


def test_config_only_on_a_running_domain_reports_the_lag(conn, running):
    result = run(conn, running, "<disk><target dev='vda'/></disk>", state='absent', live=False,
                 check_mode=True)
    assert result['actions'] == ['detach config'] and result['restart_required'] is True


def test_absent_when_absent_is_ok(conn, running):
    result = run(conn, running, "<disk><target dev='vdq'/></disk>", state='absent')
    assert result['changed'] is False and result['actions'] == []
    assert result['device'] == {'live': None, 'config': None}
    assert result['msg'].startswith('disk vdq is absent')


def test_absent_check_mode_plans_config_then_live(conn, running):
    before = live(conn, running), inactive(conn, running)
    result = run(conn, running, "<disk><target dev='vda'/></disk>", state='absent',
                 check_mode=True)
    assert result['actions'] == ['detach config', 'detach live']
    assert all(d['after'] == '' and 'vda' in d['before'] for d in result['diff'])
    assert (live(conn, running), inactive(conn, running)) == before


def test_graphics_password_compared_but_never_returned(conn, name):
    want = "<graphics type='vnc' port='-1' autoport='yes' passwd='s3cret-pw'/>"
    attach_free = inactive(conn, name).replace('</devices>', want + '</devices>')
    conn.conn.defineXML(attach_free)
    same = run(conn, name, want)
    assert same['changed'] is False
    other = run(conn, name, want.replace('s3cret-pw', 'other-pw'), check_mode=True)
    assert other['actions'] == ['update config']
    for result in (same, other):
        text = str(result)
        assert 's3cret-pw' not in text and 'other-pw' not in text
