# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Private to the virtops.libvirt collection: may change without notice.
"""The DOMAIN profile: how a domain's XML is compared (xml/_compare.py), with what libvirt's
domain parser rewrites, derives, drops and ignores in the XML it is given."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

from ansible_collections.virtops.libvirt.plugins.module_utils.xml._document import children, text_of
from ansible_collections.virtops.libvirt.plugins.module_utils.xml._profile import (
    ANY,
    Profile,
    any_when,
    lower,
    only,
)
from ansible_collections.virtops.libvirt.plugins.module_utils.xml._units import UnitSpec, to_bytes


# What libvirt's domain parser rewrites in the XML it is given: each edits a copy of the
# desired XML in place, so that it says what libvirt will store (Profile.implied).

def _cdrom_readonly(root):
    """libvirt makes every CD-ROM read-only, whether the XML says <readonly/> or not."""
    for disk in root.iterfind('devices/disk'):
        if disk.get('device') == 'cdrom' and disk.find('readonly') is None:
            disk.append(disk.makeelement('readonly'))


def _empty_volume_is_file(root):
    """A disk of type 'volume' without a <source> (an empty CD-ROM) is stored as type 'file'."""
    for disk in root.iterfind('devices/disk'):
        if disk.get('type') == 'volume' and disk.find('source') is None:
            disk.set('type', 'file')


def _primary_video_first(root):
    """The video with primary='yes' is moved to the front of the videos (virDomainDefParseXML)."""
    videos = root.findall('devices/video')
    primary = [v for v in videos if v.find('model') is not None and
               v.find('model').get('primary') == 'yes']
    if primary and videos[0] is not primary[-1]:
        videos[0].addprevious(primary[-1])


VIRTIO_NIC_MODELS = ('virtio', 'virtio-transitional', 'virtio-non-transitional')


def _non_virtio_nic_options(root):
    """<driver> and the vhost backend of a NIC are virtio options: for another model (e1000,
    rtl8139, ...) libvirt neither parses nor stores them (virDomainNetDefParseXML)."""
    for iface in root.iterfind('devices/interface'):
        model = iface.find('model')
        if iface.get('type') == 'hostdev' or model is None or \
                model.get('type') in VIRTIO_NIC_MODELS:
            continue
        for driver in iface.findall('driver'):
            iface.remove(driver)
        backend = iface.find('backend')
        if backend is not None and 'vhost' in backend.attrib:
            del backend.attrib['vhost']


# Tap names libvirt generates (VIR_NET_GENERATED_*_PREFIX); a define drops them, a name of the
# user's own choosing is kept.
GENERATED_TAP_PREFIXES = ('vnet', 'macvtap', 'macvlan')
PTY_DEVICES = ('serial', 'console', 'parallel', 'channel')


def _remove_if_bare(elem):
    if elem is not None and not elem.attrib and not len(elem) and not (elem.text or '').strip():
        elem.getparent().remove(elem)


def _running_state_dropped(root):
    """XML copied from a running domain (virsh dumpxml) carries run-time state that a define
    does not keep: libvirt parses a definition with VIR_DOMAIN_DEF_PARSE_INACTIVE, which skips
    a generated tap name, the network port id and the bridge of the network's actual connection,
    the path of a pty (and the console's tty copy of it), the connection state of a virtio
    channel (target@state), and the label of a dynamic security label and every image label
    (virSecurityLabelDefParseXML)."""
    for iface in root.iterfind('devices/interface'):
        target = iface.find('target')
        if target is not None and (target.get('dev') or '').startswith(GENERATED_TAP_PREFIXES):
            del target.attrib['dev']
            _remove_if_bare(target)
        source = iface.find('source')
        if source is not None:
            source.attrib.pop('portid', None)
            if iface.get('type') == 'network':
                source.attrib.pop('bridge', None)
    for tag in PTY_DEVICES:
        for chardev in root.iterfind('devices/' + tag):
            if chardev.get('type') != 'pty':
                continue
            chardev.attrib.pop('tty', None)
            source = chardev.find('source')
            if source is not None:
                source.attrib.pop('path', None)
                _remove_if_bare(source)
    for target in root.iterfind('devices/channel/target'):
        target.attrib.pop('state', None)
    for label in root.iter('seclabel'):
        if label.get('type') == 'dynamic':
            for elem in label.findall('label'):
                label.remove(elem)
        for elem in label.findall('imagelabel'):
            label.remove(elem)


def _iscsi_lun_zero(root):
    """An iSCSI source name without '/<lun>' means LUN 0; libvirt stores '<iqn>/0'."""
    for source in root.iterfind('devices/*/source'):
        name = source.get('name')
        if source.get('protocol') == 'iscsi' and name and '/' not in name:
            source.set('name', name + '/0')


# Values libvirt derives from others (Profile.derived).

def _numa_memory(desired_root, live_root):
    """<memory> is the sum of the NUMA cells' memory plus the memory devices whenever cells give
    memory (virDomainDefPostParseMemory on define, which also aligns the sizes)."""
    return any(c.get('memory') for c in desired_root.iterfind('cpu/numa/cell'))


def _capped_balloon(desired_root, live_root):
    """<currentMemory> above the total memory is lowered to it, and 0 means the total
    (virDomainDefPostParseMemory): a desired balloon of 0 or at or above the total is
    satisfied by a live balloon equal to it."""
    sizes = []
    for root, path in ((desired_root, 'currentMemory'), (live_root, 'currentMemory'),
                       (live_root, 'memory')):
        elem = root.find(path)
        sizes.append(None if elem is None else to_bytes(text_of(elem), elem.get('unit') or 'KiB'))
    desired, live, total = sizes
    return None not in sizes and (desired >= total or desired == 0) and live == total


# Elements libvirt leaves out of what it stores when they say only this (Profile.droppable).

def _cpu_model_without_name(elem):
    """virCPUDefFormat writes <model> only with a model name or a vendor_id (a bare
    <model fallback='...'/> is dropped, whatever the mode)."""
    return text_of(elem) is None and not elem.get('vendor_id')


def _no_coalesce(elem):
    """<coalesce> is stored only with rx frames max above 0 (virDomainNetDefCoalesceFormatXML)."""
    return all((f.get('max') or '0').strip() == '0' for f in elem.iter('frames'))


# qemuDomainChrDefDropDefaultPath's pattern, with Debian's default channel_target_dir: a virtio
# channel's unix socket path that libvirt would generate itself is dropped on define (its
# regular expression's alternation also drops any path ending in domain-*/<target name>).
CHANNEL_TARGET_DIR = '/var/lib/libvirt/qemu/channel/target'


def _default_channel_source(source):
    channel = source.getparent()
    target = channel.find('target')
    if channel.get('type') != 'unix' or target is None or target.get('type') != 'virtio':
        return False
    if source.get('mode', 'bind') != 'bind' or children(source):
        return False
    path, name = source.get('path'), re.escape(target.get('name') or '')
    if not path:
        return True  # libvirt generates the path when the domain starts
    return bool(re.match('^%s/[^/]+\\.%s$' % (re.escape(CHANNEL_TARGET_DIR), name), path) or
                re.search('domain-[^/]+/%s$' % name, path))


# Attribute values libvirt drops as written (Profile.defaults).

def _automatic_port(attr):
    """Any port when the live graphics has autoport='yes' and no port of its own (a
    definition: the running XML shows the port QEMU got, which is compared)."""
    return lambda live: ANY if live.get('autoport') == 'yes' and \
        live.get(attr) in (None, '-1') else None


def _filled_first_cell(live):
    """The QEMU driver gives the vCPUs that no NUMA cell lists to the first cell
    (qemuDomainDefNumaCPUsRectify): a first cell holding exactly those and its own stands for
    whatever subset was written (other drivers store the cells as written: compared)."""
    cells = live.getparent().findall('cell')
    vcpu = live.getparent().getparent().getparent().find('vcpu')
    if live is not cells[0] or vcpu is None:
        return None
    try:
        others = set().union(*[_bitmap_members(c.get('cpus') or '') for c in cells[1:]])
        wanted = [n for n in range(int(text_of(vcpu) or 0)) if n not in others]
        return ANY if _bitmap_members(live.get('cpus') or '') == wanted else None
    except ValueError:
        return None


def _snapshot_default(live):
    """A read-only disk's snapshot='no' is the default that virDomainDiskDefFormat drops."""
    return 'no' if live.find('readonly') is not None else None


def _bitmap_members(value):
    """The sorted numbers of a set written as '0-3,^2,5'; ValueError when it is not one."""
    members, excluded = set(), set()
    for part in [p for p in value.replace(' ', '').split(',') if p]:
        target = excluded if part.startswith('^') else members
        part = part.lstrip('^')
        low, high = (part.split('-', 1) + [part])[:2]
        target.update(range(int(low), int(high) + 1))
    return sorted(members - excluded)


def _bitmap(value):
    """A CPU or NUMA node set in libvirt's canonical form ('0-3,^2,5' -> '0-1,3,5'), as
    virBitmapFormat writes it; values that are not a set are returned as they are."""
    try:
        numbers = _bitmap_members(value)
    except ValueError:
        return value
    ranges = []
    for number in numbers:
        if ranges and ranges[-1][1] == number - 1:
            ranges[-1][1] = number
        else:
            ranges.append([number, number])
    return ','.join(str(a) if a == b else '%d-%d' % (a, b) for a, b in ranges)


def _not_user_alias(elem):
    """libvirt assigns aliases (virtio-disk0, net0, ...); only 'ua-' aliases are the user's."""
    return not (elem.get('name') or '').startswith('ua-')


DOMAIN = Profile(
    'domain', 'domain',
    identity={
        'devices/disk': ('target@dev',),
        'devices/interface': ('mac@address',),
        # USB companion controllers (ich9-ehci1 + ich9-uhci1..3) share one index: items that
        # share a key are paired by their other attributes (see Comparer.match in xml/_compare.py).
        'devices/controller': ('@type', '@index'),
        'devices/filesystem': ('target@dir',),
        'devices/hostdev': ('@type', 'source/address@bus', 'source/address@slot',
                            'source/address@function', 'source/vendor@id', 'source/product@id'),
        'devices/channel': ('target@type', 'target@name'),
        'devices/serial': ('target@port',),
        'devices/console': ('target@type', 'target@port'),
        'devices/parallel': ('target@port',),
        'devices/input': ('@type', '@bus'),
        'devices/graphics': ('@type',),
        'devices/sound': ('@model',),
        'devices/rng': ('@model',),
        'devices/redirdev': ('@bus', '@type'),
        'devices/memory': ('@model', 'target/node'),
        'devices/audio': ('@id',),
        'cpu/feature': ('@name',),
        'cpu/numa/cell': ('@id',),
        'cpu/numa/cell/distances/sibling': ('@id',),
        'clock/timer': ('@name',),
        'cputune/vcpupin': ('@vcpu',),
        'numatune/memnode': ('@cellid',),
        'seclabel': ('@model',),
        'features/hyperv/*': (),
        'memtune/*': (),
        'os/boot': (),
    },
    owned=(
        'devices/disk', 'devices/interface', 'devices/hostdev', 'devices/filesystem',
        'devices/graphics', 'devices/sound', 'devices/rng', 'devices/tpm', 'devices/redirdev',
        'devices/smartcard', 'devices/shmem', 'devices/channel', 'devices/memory',
        'devices/vsock', 'devices/iommu', 'devices/parallel',
        'devices/disk/source', 'devices/disk/readonly', 'devices/disk/shareable',
        'devices/disk/boot', 'devices/interface/boot',
    ),
    owned_when_given=('os/boot', 'cpu/feature', 'clock/timer', 'devices/watchdog',
                      'devices/panic'),
    ignored=(
        '@id',
        ('**/alias', _not_user_alias),
        # Positions in a disk's backing chain: run-time state, kept only in the running XML.
        '**/source@index', '**/backingStore@index',
    ),
    # Sizes with unit KiB are stored in whole KiB, rounded up (UnitSpec.granule): 1 GB is
    # 976563 KiB (virDomainParseMemory).
    units={
        'memory': UnitSpec('KiB', runtime_align=1024 * 1024),
        'currentMemory': UnitSpec('KiB'),
        'maxMemory': UnitSpec('KiB', runtime_align=1024 * 1024),
        'memtune/*': UnitSpec('KiB'),
        'memoryBacking/hugepages/page': UnitSpec('KiB', value='size'),
        'cpu/numa/cell': UnitSpec('KiB', value='memory', runtime_align=1024 * 1024),
        'devices/memory/target/size': UnitSpec('KiB', runtime_align=1024 * 1024),
        'devices/memory/target/requested': UnitSpec('KiB'),
        'devices/memory/target/block': UnitSpec('KiB'),
        'devices/memory/source/pagesize': UnitSpec('KiB'),
        'devices/shmem/size': UnitSpec('M', canonical='MiB'),
        'devices/disk/iotune/*': UnitSpec('bytes'),
        '**/metadata_cache/max_size': UnitSpec('bytes'),
        'devices/controller/pcihole64': UnitSpec('KiB'),
    },
    normalizers={
        '**/mac@address': lower,
        'uuid': lower,
        # CPU and NUMA node sets are stored as virBitmapFormat writes them: '1-2,5-7,^6' -> '1-2,5,7'.
        '**@cpuset': _bitmap, '**@nodeset': _bitmap, 'cpu/numa/cell@cpus': _bitmap,
    },
    defaults={
        # <vcpu current='N'>N</vcpu>: libvirt drops current when it equals the maximum.
        'vcpu@current': lambda live: (live.text or '').strip(),
        'devices/disk@device': 'disk',
        'devices/interface/link@state': 'up',
        'devices/interface/driver@queues': '1',  # one queue is always there: not stored
        'devices/disk/target@tray': 'closed',  # only an open tray is stored
        'devices/disk@snapshot': _snapshot_default,
        'cpu/numa/cell@cpus': _filled_first_cell,
        'devices/graphics@autoport': 'no',  # only autoport='yes' is written
        # With autoport the definition keeps no port (or -1) whatever port was written.
        'devices/graphics@port': _automatic_port('port'),
        'devices/graphics@tlsPort': _automatic_port('tlsPort'),
        'devices/video/model@primary': 'no',  # only primary='yes' is written
        'os/bootmenu@timeout': any_when('enable', 'no'),  # dropped with a disabled menu
    },
    droppable={
        'devices/*/protocol': only(type='raw'),  # raw is the default chardev protocol
        'devices/*/backend/protocol': only(type='raw'),
        'cpu/model': _cpu_model_without_name,
        'devices/interface/coalesce': _no_coalesce,
        'devices/channel/source': _default_channel_source,
    },
    derived={
        'memory': _numa_memory,
        'currentMemory': _capped_balloon,
    },
    runtime_ignored=(
        # The balloon's actual size, reported while running (no guest driver: all of memory).
        'currentMemory',
        'cpu', 'cpu/**',
        'devices/graphics@port', 'devices/graphics@tlsPort', 'devices/graphics@websocket',
        'devices/graphics/listen@address', 'seclabel', 'seclabel/**',
        'devices/*/source@path', 'devices/interface/target@dev',
    ),
    masked=('devices/graphics@passwd',),
    implied=(_cdrom_readonly, _empty_volume_is_file, _iscsi_lun_zero, _primary_video_first,
             _non_virtio_nic_options,
             # XML of a running domain fed back: define drops its run-time state.
             _running_state_dropped),
)
