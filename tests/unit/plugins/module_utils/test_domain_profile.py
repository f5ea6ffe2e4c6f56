# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests of the DOMAIN profile's rules for what libvirt 9.0 derives, rewrites or drops
(issue 15, libvirt's own test XML as a corpus). Each test pairs XML as a user writes it with
what libvirt stored for it (seen on the corpus host: qemu:///system, libvirt 9.0, QEMU 7.2),
and checks that a real change is still seen."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest

pytest.importorskip('lxml')

from ansible_collections.virtops.libvirt.plugins.module_utils._domain_profile import DOMAIN, _bitmap  # noqa: E402
from ansible_collections.virtops.libvirt.plugins.module_utils.xml._compare import compare  # noqa: E402
from ansible_collections.virtops.libvirt.plugins.module_utils.xml._document import parse  # noqa: E402


def domain(body, attrs=''):
    return ("<domain type='qemu'%s><name>d</name><vcpu>2</vcpu><os><type arch='x86_64'>hvm</type>"
            "</os>%s</domain>" % (attrs, body))


def devices(inner):
    return domain('<devices>%s</devices>' % inner)


def same(desired, live):
    result = compare(desired, live, DOMAIN)
    assert not result.changed, result.summary()


def differs(desired, live, *paths):
    result = compare(desired, live, DOMAIN)
    assert result.changed
    if paths:
        assert [d.path for d in result.differences] == list(paths)


# ------------------------------------------------------------------ values libvirt derives

NUMA = ("<cpu><numa><cell id='0' cpus='0' memory='1048576' unit='KiB'/>"
        "<cell id='1' cpus='1' memory='1048576' unit='KiB'/></numa></cpu>")


def test_memory_of_a_numa_domain_is_the_sum_of_its_cells():
    desired = domain("<memory unit='KiB'>219100</memory>" + NUMA)
    live = domain("<memory unit='KiB'>2097152</memory>" + NUMA)
    same(desired, live)
    # The cells themselves are compared: a new cell size is a change.
    differs(desired.replace("memory='1048576'", "memory='524288'", 1), live,
            'cpu/numa/cell[0]@memory')
    # Without cells, memory is the user's and compared.
    differs(domain("<memory unit='KiB'>219100</memory>"),
            domain("<memory unit='KiB'>2097152</memory>"), 'memory')


def test_current_memory_above_the_total_is_lowered_to_it():
    desired = domain("<memory unit='KiB'>1179648</memory><currentMemory unit='KiB'>1179648"
                     "</currentMemory>" + NUMA)
    live = domain("<memory unit='KiB'>1048576</memory><currentMemory unit='KiB'>1048576"
                  "</currentMemory>" + NUMA)
    same(desired, live)
    # A balloon below the total is the user's.
    differs(desired.replace('1179648</currentMemory>', '524288</currentMemory>'), live,
            'currentMemory')
    # A full balloon wanted, a smaller one live: a change.
    differs(desired, live.replace('1048576</currentMemory>', '524288</currentMemory>'),
            'currentMemory')


def test_vcpus_no_cell_lists_go_to_the_first_cell():
    desired = domain("<cpu><numa><cell id='0' cpus='0' memory='1' unit='GiB'/></numa></cpu>") \
        .replace('<vcpu>2</vcpu>', '<vcpu>12</vcpu>')
    live = desired.replace("cpus='0'", "cpus='0-11'")
    same(desired, live)
    differs(desired, desired.replace("cpus='0'", "cpus='0-3'"), 'cpu/numa/cell[0]@cpus')


# ------------------------------------------------------------------ canonical forms

def test_cpu_and_node_sets_in_canonical_form():
    desired = domain("<numatune><memnode cellid='2' mode='strict' nodeset='1-2,5-7,^6'/>"
                     "</numatune>")
    same(desired, desired.replace("1-2,5-7,^6", "1-2,5,7"))
    differs(desired, desired.replace("1-2,5-7,^6", "1-2,5-7"), 'numatune/memnode[2]@nodeset')
    assert _bitmap('0-3,^2, 5') == '0-1,3,5'
    assert _bitmap('not a set') == 'not a set'


def test_iscsi_source_name_without_a_lun_is_lun_zero():
    disk = ("<disk type='network' device='disk'><source protocol='iscsi' name='%s'>"
            "<host name='example.org' port='6000'/></source><target dev='vda' bus='virtio'/>"
            "</disk>")
    desired = devices(disk % 'iqn.1992-01.com.example')
    same(desired, devices(disk % 'iqn.1992-01.com.example/0'))
    differs(desired, devices(disk % 'iqn.1992-01.com.example/1'))


def test_sizes_in_other_units():
    cache = ("<disk type='file' device='disk'><driver name='qemu' type='qcow2'><metadata_cache>"
             "<max_size unit='%s'>%s</max_size></metadata_cache></driver>"
             "<source file='/x.qcow2'/><target dev='vda' bus='virtio'/></disk>")
    same(devices(cache % ('kiB', '1024')), devices(cache % ('bytes', '1048576')))
    hole = "<controller type='pci' index='0' model='pci-root'><pcihole64 unit='%s'>%s</pcihole64></controller>"
    same(devices(hole % ('GiB', '1')), devices(hole % ('KiB', '1048576')))
    differs(devices(hole % ('GiB', '2')), devices(hole % ('KiB', '1048576')))


# ------------------------------------------------------------------ run-time only values

def test_backing_chain_indexes_are_not_compared():
    disk = ("<disk type='network' device='disk'><driver name='qemu' type='qcow2'/>"
            "<source protocol='gluster' name='Volume2/Image'%s><host name='example.org'/></source>"
            "<backingStore type='file'%s><format type='qcow2'/><source file='/b.qcow2'/>"
            "</backingStore><target dev='vda' bus='virtio'/></disk>")
    same(devices(disk % (" index='2'", " index='1'")), devices(disk % ('', '')))
    differs(devices(disk % ('', '')).replace('/b.qcow2', '/c.qcow2'), devices(disk % ('', '')))


# ------------------------------------------------------------------ list items sharing a key

def test_usb_companion_controllers_sharing_an_index_pair_by_model():
    models = ('ich9-ehci1', 'ich9-uhci1', 'ich9-uhci2', 'ich9-uhci3')
    written = ''.join("<controller type='usb' index='%d' model='%s'/>" % (i, m)
                      for m in reversed(models) for i in (0, 1))
    stored = ''.join("<controller type='usb' index='%d' model='%s'/>" % (i, m)
                     for i in (0, 1) for m in models)
    same(devices(written), devices(stored))
    # A model that is not there is still a change, not hidden by another item of the same key.
    differs(devices(written.replace("index='1' model='ich9-uhci3'", "index='1' model='piix3-uhci'")),
            devices(stored), 'devices/controller[usb,1]@model')


def test_primary_video_is_moved_to_the_front():
    written = ("<video><model type='vga' vram='16384' heads='1'/></video>"
               "<video><model type='qxl' vram='65536' heads='1' primary='yes'/></video>")
    stored = ("<video><model type='qxl' vram='65536' heads='1' primary='yes'/></video>"
              "<video><model type='vga' vram='16384' heads='1'/></video>")
    same(devices(written), devices(stored))
    differs(devices(written.replace("primary='yes'", '')), devices(stored))


def test_numa_distances_by_sibling_id():
    cells = ("<cpu><numa><cell id='0' cpus='0-1' memory='1' unit='GiB'><distances>%s</distances>"
             "</cell></numa></cpu>")
    written = domain(cells % "<sibling id='1' value='21'/><sibling id='0' value='10'/>")
    stored = domain(cells % "<sibling id='0' value='10'/><sibling id='1' value='21'/>")
    same(written, stored)
    differs(written.replace("value='21'", "value='31'"), stored)


# ------------------------------------------------------------------ defaults libvirt drops

@pytest.mark.parametrize('written, stored', [
    # <model> without a name: dropped whatever the mode and fallback.
    ("<cpu mode='host-model'><model fallback='forbid'/></cpu>", "<cpu mode='host-model'/>"),
    ("<cpu mode='host-model'><model fallback='allow'/></cpu>", "<cpu mode='host-model'/>"),
    ("<os><type arch='x86_64'>hvm</type><bootmenu enable='no' timeout='3000'/></os>",
     "<os><type arch='x86_64'>hvm</type><bootmenu enable='no'/></os>"),
])
def test_domain_defaults_libvirt_drops(written, stored):
    same(domain(written).replace('<os><type arch=\'x86_64\'>hvm</type></os><os>', '<os>'),
         domain(stored).replace('<os><type arch=\'x86_64\'>hvm</type></os><os>', '<os>'))


@pytest.mark.parametrize('written, stored', [
    ("<parallel type='unix'><source mode='connect' path='/tmp/p.sock'/><protocol type='raw'/>"
     "<target port='0'/></parallel>",
     "<parallel type='unix'><source mode='connect' path='/tmp/p.sock'/><target port='0'/></parallel>"),
    ("<rng model='virtio'><backend model='egd' type='unix'><source mode='connect' path='/r'/>"
     "<protocol type='raw'/></backend></rng>",
     "<rng model='virtio'><backend model='egd' type='unix'><source mode='connect' path='/r'/>"
     "</backend></rng>"),
    ("<channel type='unix'><source mode='bind'/><target type='virtio' name='org.qemu.guest_agent.0'/>"
     "</channel>", "<channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/></channel>"),
    ("<channel type='unix'><source mode='bind' path='/var/lib/libvirt/qemu/channel/target/"
     "d.org.qemu.guest_agent.0'/><target type='virtio' name='org.qemu.guest_agent.0'/></channel>",
     "<channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/></channel>"),
    ("<disk type='file' device='cdrom'><target dev='hdc' bus='ide' tray='closed'/></disk>",
     "<disk type='file' device='cdrom'><target dev='hdc' bus='ide'/><readonly/></disk>"),
    ("<disk type='block' device='cdrom' snapshot='no'><source dev='/dev/sr0'/>"
     "<target dev='hdc' bus='ide'/></disk>",
     "<disk type='block' device='cdrom'><source dev='/dev/sr0'/><target dev='hdc' bus='ide'/>"
     "<readonly/></disk>"),
    ("<disk type='volume' device='cdrom'><target dev='hdc' bus='ide'/></disk>",
     "<disk type='file' device='cdrom'><target dev='hdc' bus='ide'/><readonly/></disk>"),
    ("<graphics type='spice' autoport='no'/>", "<graphics type='spice'/>"),
    ("<graphics type='vnc' port='5900' autoport='yes'/>", "<graphics type='vnc' port='-1' autoport='yes'/>"),
    ("<video><model type='virtio' heads='1' primary='no'/></video>",
     "<video><model type='virtio' heads='1'/></video>"),
    ("<interface type='network'><mac address='52:54:00:00:00:01'/><source network='default'/>"
     "<model type='virtio'/><driver name='vhost' queues='1'/>"
     "<coalesce><rx><frames max='0'/></rx></coalesce></interface>",
     "<interface type='network'><mac address='52:54:00:00:00:01'/><source network='default'/>"
     "<model type='virtio'/><driver name='vhost'/></interface>"),
    ("<interface type='network'><mac address='52:54:00:00:00:01'/><source network='default'/>"
     "<model type='e1000'/><driver name='vhost' queues='5'/><backend tap='/dev/null' vhost='/dev/zero'/>"
     "</interface>",
     "<interface type='network'><mac address='52:54:00:00:00:01'/><source network='default'/>"
     "<model type='e1000'/><backend tap='/dev/null'/></interface>"),
])
def test_device_defaults_libvirt_drops(written, stored):
    same(devices(written), devices(stored))


@pytest.mark.parametrize('written, stored', [
    # A protocol other than raw is stored: its absence is a change.
    ("<parallel type='unix'><source mode='connect' path='/tmp/p.sock'/><protocol type='telnet'/>"
     "<target port='0'/></parallel>",
     "<parallel type='unix'><source mode='connect' path='/tmp/p.sock'/><target port='0'/></parallel>"),
    # A channel path of the user's own is stored.
    ("<channel type='unix'><source mode='bind' path='/srv/agent.sock'/>"
     "<target type='virtio' name='org.qemu.guest_agent.0'/></channel>",
     "<channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/></channel>"),
    # A CPU model with a name is stored.
    ("<cpu mode='custom'><model fallback='forbid'>qemu64</model></cpu>", "<cpu mode='custom'/>"),
    # A fixed port without autoport, rx frames above 0, an open tray, a virtio NIC's queues.
    ("<graphics type='vnc' port='5901' autoport='no'/>", "<graphics type='vnc' port='5900' autoport='no'/>"),
    ("<interface type='network'><mac address='52:54:00:00:00:01'/><source network='default'/>"
     "<coalesce><rx><frames max='7'/></rx></coalesce></interface>",
     "<interface type='network'><mac address='52:54:00:00:00:01'/><source network='default'/>"
     "</interface>"),
    ("<disk type='file' device='cdrom'><target dev='hdc' bus='ide' tray='open'/></disk>",
     "<disk type='file' device='cdrom'><target dev='hdc' bus='ide'/><readonly/></disk>"),
    ("<interface type='network'><mac address='52:54:00:00:00:01'/><source network='default'/>"
     "<model type='virtio'/><driver name='vhost' queues='4'/></interface>",
     "<interface type='network'><mac address='52:54:00:00:00:01'/><source network='default'/>"
     "<model type='virtio'/><driver name='vhost'/></interface>"),
])
def test_what_libvirt_keeps_is_still_compared(written, stored):
    if written.startswith('<cpu'):
        differs(domain(written), domain(stored))
    else:
        differs(devices(written), devices(stored))


def test_implied_rules_leave_the_users_xml_alone():
    desired = parse(devices("<disk type='volume' device='cdrom'><target dev='hdc'/></disk>"))
    compare(desired, devices("<disk type='file' device='cdrom'><target dev='hdc'/></disk>"),
            DOMAIN)
    assert desired.find('devices/disk').get('type') == 'volume'
    assert desired.find('devices/disk/readonly') is None
