# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Private to the virtops.libvirt collection: may change without notice.
"""Intent diff of libvirt XML: does the live object already satisfy what the user wrote?

One engine for every object type. An object type is described by a Profile, which is data:

- ``identity``: how items of a list are matched between desired and live XML (disks by
  ``target@dev``, controllers by ``@type`` + ``@index``, ...). Key parts the user left out fall
  back to the position among the remaining items of the same kind.
- ``owned``: lists libvirt never fills in by itself (disks, interfaces, ...): a live item the
  desired XML does not have means the user removed it, and that is a change.
- ``owned_when_given``: lists libvirt fills in only when the user wrote none of them (boot
  order, ...): authoritative as soon as the desired XML lists one.
- ``ignored``: paths never compared (runtime ids, aliases libvirt assigns, ...).
- ``units``: elements or attributes that carry a size with a unit, compared in bytes.
- ``normalizers``: per-path value normalisation (MAC addresses in lower case, ...).
- ``defaults``: attribute values libvirt drops from its output when they are the default.
- ``runtime_ignored``: paths that differ between a running object and its definition by design
  (used when comparing against the running XML).
- ``implied``: a callable that returns a copy of the desired XML with what libvirt always adds
  by itself (a CD-ROM is always read-only), so that owned lists do not see it as the user's
  removal; or a sequence of rules that each edit one such copy in place.
- ``derived``: values libvirt computes from others (a domain's memory from its NUMA cells):
  not compared when the callable says so for the desired and live XML.
- ``droppable``: elements libvirt does not store when they say only what it assumes anyway
  (a raw chardev protocol): a live object without them is no difference.

Everything else follows from one rule: only what the user wrote is compared. Elements, attributes
and text that exist only in the live XML (uuid, MAC and PCI addresses, auto-added controllers,
default attributes, element order libvirt normalises) never cause a change.

Paths are written relative to the root element: ``memory``, ``devices/disk``,
``devices/disk/target@dev`` (an attribute), ``@id`` (an attribute of the root). ``*`` matches
one path step, ``**`` any number of steps.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy
import difflib
import fnmatch
import ipaddress
import os
import re
from xml.sax.saxutils import escape

try:
    from urllib.parse import urlparse
except ImportError:  # pragma: no cover - Python 2 is not supported, import kept for sanity
    from urlparse import urlparse  # type: ignore

LXML_IMPORT_ERROR = None
try:
    from lxml import etree
except ImportError:  # pragma: no cover - reported by the modules
    etree = None
    import traceback
    LXML_IMPORT_ERROR = traceback.format_exc()

from ansible_collections.virtops.libvirt.plugins.module_utils._libvirt import VirtError


# ---------------------------------------------------------------------------------------------
# Units

UNIT_FACTORS = {
    'b': 1, 'bytes': 1,
    'kb': 1000, 'k': 1024, 'kib': 1024,
    'mb': 1000 ** 2, 'm': 1024 ** 2, 'mib': 1024 ** 2,
    'gb': 1000 ** 3, 'g': 1024 ** 3, 'gib': 1024 ** 3,
    'tb': 1000 ** 4, 't': 1024 ** 4, 'tib': 1024 ** 4,
    'pb': 1000 ** 5, 'p': 1024 ** 5, 'pib': 1024 ** 5,
    'eb': 1000 ** 6, 'e': 1024 ** 6, 'eib': 1024 ** 6,
}

CANONICAL_UNIT_NAMES = {'bytes': 'bytes', 'kib': 'KiB', 'mib': 'MiB', 'gib': 'GiB', 'tib': 'TiB'}


def to_bytes(value, unit):
    """A size and its unit (libvirt's spellings, case-insensitive) in bytes; None if not a size."""
    try:
        number = int(str(value).strip(), 10)
    except (TypeError, ValueError):
        return None
    factor = UNIT_FACTORS.get(str(unit).strip().lower())
    if factor is None:
        return None
    return number * factor


def from_bytes(size, unit):
    """(value, unit) for size in bytes: in unit when it divides evenly, else in bytes."""
    factor = UNIT_FACTORS[unit.lower()]
    if size % factor == 0:
        return str(size // factor), CANONICAL_UNIT_NAMES.get(unit.lower(), unit)
    return str(size), 'bytes'


class UnitSpec:
    """Where a sized value lives: the element's text (value=None) or an attribute."""

    def __init__(self, default_unit, value=None, unit_attr='unit', canonical=None,
                 runtime_align=None, granule=None):
        self.default_unit = default_unit
        self.value = value
        self.unit_attr = unit_attr
        self.canonical = canonical or default_unit
        # libvirt stores the size in whole units of this many bytes, rounding up: a size kept
        # in KiB (virDomainParseMemory: VIR_DIV_UP(bytes, 1024)) given in MB, GB or bytes.
        self.granule = granule if granule is not None else (
            1024 if default_unit == 'KiB' else None)
        # A running object may show the size rounded up to this many bytes (QEMU aligns guest
        # memory to 1 MiB on x86); only used when comparing with the running XML.
        self.runtime_align = runtime_align

    def runtime_sizes(self, size):
        """Sizes a running object may report for a defined size."""
        if not self.runtime_align:
            return (size,)
        align = self.runtime_align
        return (size, -(-size // align) * align)


# ---------------------------------------------------------------------------------------------
# Profiles

def _split(path):
    """'devices/disk@dev' -> ('devices/disk', 'dev'); '@id' -> ('', 'id')."""
    if '@' in path:
        elem, attr = path.split('@', 1)
        return elem.rstrip('/'), attr
    return path, None


def _steps(path):
    return [s for s in path.split('/') if s] if path else []


def _match_steps(pattern, steps):
    """fnmatch per path step; '**' matches any number of steps (also none)."""
    if not pattern:
        return not steps
    if pattern[0] == '**':
        return any(_match_steps(pattern[1:], steps[i:]) for i in range(len(steps) + 1))
    return bool(steps) and fnmatch.fnmatchcase(steps[0], pattern[0]) and \
        _match_steps(pattern[1:], steps[1:])


class _PathTable:
    """Patterns -> values; the first pattern (in the order given) that matches wins."""

    def __init__(self, entries):
        self.entries = []
        for pattern, value in (entries.items() if isinstance(entries, dict) else entries):
            elem, attr = _split(pattern)
            self.entries.append((_steps(elem), attr, value))
        self._cache = {}

    def lookup(self, path, attr=None):
        cache_key = (path, attr)
        if cache_key not in self._cache:
            steps = _steps(path)
            found = None
            for pattern, pattern_attr, value in self.entries:
                if pattern_attr == attr and _match_steps(pattern, steps):
                    found = value
                    break
            self._cache[cache_key] = found
        return self._cache[cache_key]

    def __contains__(self, item):
        path, attr = item if isinstance(item, tuple) else (item, None)
        return self.lookup(path, attr) is not None


def lower(value):
    return value.lower()


class Profile:
    """How one object type's XML is compared. Pure data plus tiny callables; see module doc."""

    def __init__(self, name, root, identity=None, owned=(), owned_when_given=(), ignored=(),
                 units=None, normalizers=None, defaults=None, runtime_ignored=(), masked=(), implied=None,
                 derived=None, droppable=None):
        self.name = name
        self.root = root
        self.identity = _PathTable(identity or {})
        self.owned = _PathTable([(p, True) for p in owned])
        self.owned_when_given = _PathTable([(p, True) for p in owned_when_given])
        self.ignored = _PathTable([(p, True) if isinstance(p, str) else p for p in ignored])
        self.units = _PathTable(units or {})
        self.normalizers = _PathTable(normalizers or {})
        self.defaults = _PathTable(defaults or {})
        self.runtime_ignored = _PathTable([(p, True) for p in runtime_ignored])
        self.masked = _PathTable([(p, True) for p in masked])
        self.implied = implied
        # path -> callable(desired_root, live_root): True when libvirt computes the value from
        # others (it then says nothing about the user's intent and is not compared).
        self.derived = _PathTable(derived or {})
        # path -> callable(desired element): True when libvirt stores nothing for an element
        # written like this (only defaults): a live object without it is no difference.
        self.droppable = _PathTable(droppable or {})


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
        sizes.append(None if elem is None else to_bytes(_text(elem), elem.get('unit') or 'KiB'))
    desired, live, total = sizes
    return None not in sizes and (desired >= total or desired == 0) and live == total


# Elements libvirt leaves out of what it stores when they say only this (Profile.droppable).

def _only(**values):
    """An element without text or children whose attributes are all these values."""
    def only(elem):
        return (_text(elem) is None and not _children(elem) and
                all(values.get(k) == v for k, v in elem.attrib.items()))
    return only


def _cpu_model_without_name(elem):
    """virCPUDefFormat writes <model> only with a model name or a vendor_id (a bare
    <model fallback='...'/> is dropped, whatever the mode)."""
    return _text(elem) is None and not elem.get('vendor_id')


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
    if source.get('mode', 'bind') != 'bind' or _children(source):
        return False
    path, name = source.get('path'), re.escape(target.get('name') or '')
    if not path:
        return True  # libvirt generates the path when the domain starts
    return bool(re.match('^%s/[^/]+\\.%s$' % (re.escape(CHANNEL_TARGET_DIR), name), path) or
                re.search('domain-[^/]+/%s$' % name, path))


# Attribute values libvirt drops as written (Profile.defaults): a default that matches any value.
ANY = object()


def _any_when(attr, value):
    """Any value of the attribute when the live element's attr is value (libvirt ignores it then)."""
    return lambda live: ANY if live.get(attr) == value else None


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
        wanted = [n for n in range(int(_text(vcpu) or 0)) if n not in others]
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
        # share a key are paired by their other attributes (see _Comparer.match).
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
        'os/bootmenu@timeout': _any_when('enable', 'no'),  # dropped with a disabled menu
    },
    droppable={
        'devices/*/protocol': _only(type='raw'),  # raw is the default chardev protocol
        'devices/*/backend/protocol': _only(type='raw'),
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

# Canonical forms libvirt writes (normalizers of the NETWORK profile and of _nwfilter's).


def mac_address(value):
    """A MAC address as virMacAddrFormat writes it: lower case, two digits per byte
    (virMacAddrParse reads '0:a:b:c:d:e' as well); anything else only in lower case."""
    parts = value.strip().split(':')
    if len(parts) == 6 and all(1 <= len(p) <= 2 and all(c in '0123456789abcdefABCDEF' for c in p)
                               for p in parts):
        return ':'.join('%02x' % int(p, 16) for p in parts)
    return value.lower()


def ip_address(value):
    """An IP address in one canonical form (libvirt parses addresses and writes them with
    virSocketAddrFormat: IPv6 compressed and in lower case); anything else as it is."""
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        return value


def _forward_dev_in_pool(root):
    """<forward dev='X'> without a device pool: libvirt makes X the pool's first interface
    (virNetworkForwardDefParseXML) and writes <interface dev='X'/> back."""
    forward = root.find('forward')
    if forward is None or not forward.get('dev'):
        return
    if any(forward.find(tag) is not None for tag in ('interface', 'address', 'pf')):
        return
    forward.append(forward.makeelement('interface', {'dev': forward.get('dev')}))


NETWORK = Profile(
    'network', 'network',
    identity={
        'ip': ('@family', '@address'),
        'ip/dhcp/range': ('@start',),
        'ip/dhcp/host': ('@mac',),
        'portgroup': ('@name',),
        'route': ('@family', '@address'),
        'dns/host': ('@ip',),
        'dns/srv': ('@service', '@protocol'),
        'dns/txt': ('@name',),
        'forward/interface': ('@dev',),
        'forward/pf': ('@dev',),
    },
    owned=('ip', 'ip/dhcp/range', 'ip/dhcp/host', 'portgroup', 'route', 'dns/host', 'dns/srv',
           'dns/txt', 'forward/interface'),
    ignored=('@connections',),
    normalizers=dict(
        [('**@mac', mac_address), ('mac@address', mac_address), ('uuid', lower)] +
        # Every address libvirt parses as an IP address is written in canonical form.
        [(p, ip_address) for p in ('ip@address', 'ip@netmask', 'ip/dhcp/range@start',
                                   'ip/dhcp/range@end', 'ip/dhcp/host@ip', 'ip/dhcp/bootp@server',
                                   'dns/host@ip', 'dns/forwarder@addr', 'route@address',
                                   'route@netmask', 'route@gateway', 'forward/nat/address@start',
                                   'forward/nat/address@end')]),
    defaults={
        # virNetworkDefFormatBuf writes ipv6 and a port group's default only when 'yes'.
        '@ipv6': 'no',
        'portgroup@default': 'no',
    },
    implied=(_forward_dev_in_pool,),
)


def sanitize_path(path):
    """libvirt's virFileSanitizePath: repeated slashes collapsed, no trailing slash, a
    leading '//' (valid POSIX) kept; URIs (scheme://...) are left as they are."""
    uri = path.find('://')
    if uri != -1 and path.find('/') > uri:
        return path
    prefix = ''
    if path.startswith('//') and not path.startswith('///'):
        prefix, path = '//', path[2:]
    clean = re.sub('/+', '/', path)
    if clean.endswith('/') and (prefix or len(clean) > 1):
        clean = clean[:-1]
    return prefix + clean


# Pool types whose target path libvirt derives from the source name (virStoragePoolDefParseXML).
DERIVED_POOL_TARGETS = {'logical': '/dev/', 'zfs': '/dev/zvol/'}


def pool_source_name(root):
    """The source name libvirt uses: <source><name>, else the pool's <name> (libvirt's default
    for the pool types that have one)."""
    return (root.findtext('source/name') or '') or (root.findtext('name') or '').strip()


def _derived_pool_target(root):
    """A logical pool's target path is /dev/<source name> (zfs: /dev/zvol/<source name>),
    whatever the XML says: libvirt replaces it when it parses the definition."""
    prefix = DERIVED_POOL_TARGETS.get(root.get('type'))
    if prefix is not None and root.find('target/path') is not None:
        root.find('target/path').text = prefix + pool_source_name(root)


def _permission_unset(elem):
    """An empty permission field, or <owner>/<group> -1: libvirt reads it as "not set"
    (virStorageDefParsePerms) and writes nothing for it."""
    text = (elem.text or '').strip()
    return not text or (_local(elem.tag) in ('owner', 'group') and text == '-1')


def _no_permissions(elem):
    """<permissions> with every field unset: libvirt writes no <permissions> at all."""
    return all(_permission_unset(c) for c in _children(elem))


STORAGE_POOL = Profile(
    'storage pool', 'pool',
    # Hosts that share a name (ceph monitors on other ports) pair in order (libvirt keeps it).
    identity={'source/device': ('@path',), 'source/host': ('@name',)},
    owned=('source/device',),
    ignored=(
        'capacity', 'allocation', 'available',
        # Free extents of a disk pool's device: run-time data a refresh of the active pool
        # fills in; virStoragePoolDefParseSource ignores them in a definition.
        'source/device/freeExtent',
        # Unset permission fields (-1 or empty) and a <permissions> made only of them:
        # virStorageDefParsePerms reads them as unset, virStoragePoolDefFormatBuf writes none.
        ('target/permissions/*', _permission_unset),
        ('target/permissions', _no_permissions),
    ),
    units={'capacity': UnitSpec('bytes'), 'allocation': UnitSpec('bytes'),
           'available': UnitSpec('bytes')},
    normalizers={
        'uuid': lower,
        # libvirt stores both paths through virFileSanitizePath ('//a///b/' -> '/a/b').
        'target/path': sanitize_path,
        'source/dir@path': sanitize_path,
    },
    # A host port of 0 is no port: virStoragePoolSourceFormat writes none.
    defaults={'source/host@port': '0'},
    # logical, zfs: virStoragePoolDefParseXML derives the target path from the source name.
    implied=(_derived_pool_target,),
)

STORAGE_VOLUME = Profile(
    'storage volume', 'volume',
    identity={'target/features/*': ()},
    ignored=('allocation', 'physical', 'key', 'target/path', 'target/timestamps',
             'target/timestamps/**'),
    units={'capacity': UnitSpec('bytes'), 'allocation': UnitSpec('bytes'),
           'physical': UnitSpec('bytes')},
)

CHECKPOINT = Profile(
    'checkpoint', 'domaincheckpoint',
    identity={'disks/disk': ('@name',)},
    ignored=('creationTime', 'parent', 'parent/**', 'domain', 'domain/**', 'disks/disk@size'),
)

PROFILES = dict((p.root, p) for p in (DOMAIN, NETWORK, STORAGE_POOL, STORAGE_VOLUME, CHECKPOINT))


# ---------------------------------------------------------------------------------------------
# Parsing and rendering

def require_lxml():
    if etree is None:
        raise VirtError('the Python lxml library is required on the managed host '
                        '(Debian/Ubuntu python3-lxml, RHEL python3-lxml)')


def parse(text, what='XML'):
    """Parse XML text (or pass an element through); a VirtError that says where it is broken."""
    require_lxml()
    if etree.iselement(text):
        return text
    if text is None or not str(text).strip():
        raise VirtError('%s is empty' % what)
    parser = etree.XMLParser(remove_blank_text=True, remove_comments=True, remove_pis=True,
                             resolve_entities=False, no_network=True, huge_tree=False)
    data = text.encode('utf-8') if not isinstance(text, bytes) else text
    try:
        return etree.fromstring(data, parser)
    except etree.XMLSyntaxError as exc:
        raise VirtError('%s is not well-formed XML: %s' % (what, exc), reason='malformed XML')


def parse_desired(xml, tag, what, name=None):
    """The user's XML for an object named by its <name> element: (root, name, uuid).

    The root element must be <tag>; name (the module option) and <name> must agree, and a
    <name> the user left out is filled in from name. what names the object type in messages.
    """
    root = parse(xml, 'the %s XML' % what)
    if root.tag != tag:
        raise VirtError('the %s XML has root element <%s>, expected <%s>' % (what, root.tag, tag),
                        reason='invalid XML')
    found = (root.findtext('name') or '').strip() or None
    if found is None and name is None:
        raise VirtError('the %s XML has no <name> and no name was given' % what, reason='invalid XML')
    if name is not None and found is not None and name != found:
        raise VirtError('name %s differs from the XML\'s <name>%s</name>; they must agree '
                        '(leave out name, or fix one of them)' % (name, found),
                        obj=name, reason='name mismatch')
    if found is None:
        elem = root.makeelement('name')
        elem.text = name
        root.insert(0, elem)
        found = name
    return root, found, (root.findtext('uuid') or '').strip().lower() or None


def with_uuid(root, uuid):
    """A copy of root with a <uuid> after its <name> (first when it has none): defining an
    existing object again under its own uuid, when the user wrote none."""
    root = copy.deepcopy(root)
    elem = root.makeelement('uuid')
    elem.text = uuid
    name = root.find('name')
    root.insert(root.index(name) + 1 if name is not None else 0, elem)
    return root


SCHEMA_DIR = '/usr/share/libvirt/schemas'
# Compiled schemas by (file, mtime, size): compiling domain.rng takes about 50 ms, which a
# process that checks many objects (the corpus test) need not pay for each of them.
_SCHEMAS = {}


def _compiled_schema(schema_file):
    stat = os.stat(schema_file)
    key = (schema_file, stat.st_mtime, stat.st_size)
    if key not in _SCHEMAS:
        _SCHEMAS[key] = etree.RelaxNG(etree.parse(schema_file))
    return _SCHEMAS[key]


def check_schema(uri, root, schema_name, what, name):
    """Validate against libvirt's RelaxNG schema when this host has it and the URI is local.

    Real runs validate with the define call's VALIDATE flag; check mode cannot define, so it
    uses the schema directly to predict the same failure.
    """
    schema_file = os.path.join(SCHEMA_DIR, schema_name)
    if urlparse(uri).hostname or not os.path.exists(schema_file):
        return
    try:
        schema = _compiled_schema(schema_file)
    except Exception:  # pylint: disable=broad-except
        return  # an unreadable schema is no reason to fail; the real run validates
    if not schema.validate(root):
        errors = '; '.join(e.message for e in list(schema.error_log)[:3])
        raise VirtError('%s %s: the XML does not validate against libvirt\'s schema: %s '
                        '(nothing was changed)' % (what, name, errors), obj=name, reason='invalid XML')


def render(elem):
    """Pretty-printed text of an element (empty string for None)."""
    if elem is None:
        return ''
    require_lxml()
    return etree.tostring(elem, pretty_print=True, encoding='unicode')


def diff_view(obj, before, after):
    """Ansible's diff of one object: before is what libvirt has, after what the user asked for."""
    return dict(before_header='%s (live)' % obj, after_header='%s (desired)' % obj, before=before, after=after)


def facts_text(facts, xml='', keys=('state', 'autostart')):
    """An object's state lines (# state: running, # autostart: yes) above its XML, for diff mode;
    facts None is an object that does not exist."""
    if facts is None:
        return ''
    lines = ['# %s: %s' % (k, _yes_no(facts[k])) for k in keys if facts.get(k) is not None]
    return '\n'.join(lines) + '\n' + (xml or '')


def _yes_no(value):
    if isinstance(value, bool):
        return 'yes' if value else 'no'
    return str(value)


def unified_diff(before, after, before_header='before', after_header='after'):
    """A unified diff of two texts, as one string ('' when equal)."""
    lines = difflib.unified_diff(before.splitlines(True), after.splitlines(True),
                                 before_header, after_header)
    return ''.join(line if line.endswith('\n') else line + '\n' for line in lines)


# ---------------------------------------------------------------------------------------------
# Secrets in the user's XML

# Where libvirt XML holds a secret in clear: graphics passwd (VNC, SPICE, RDP) and any other
# passwd or password attribute, the text (or value) of <secret>, <passwd> and <password>, and the
# cookies of network disk sources. What names a secret (<secret usage=... uuid=...>) is not one.
SECRET_ATTRIBUTES = ('passwd', 'password')
SECRET_ELEMENTS = ('secret', 'passwd', 'password', 'cookie')
_SECRET_ATTRIBUTE = re.compile(r'''\b(?:passwd|password)\s*=\s*(?:"([^"]*)"|'([^']*)')''', re.IGNORECASE)


def secrets(text):
    """The secrets written in XML text, for a module's no_log values: each as parsed and as XML
    escapes it (diffs show the escaped form), and each password attribute as written, found by
    pattern, so that XML too broken to parse (whose failure echoes it) hides them as well."""
    if not isinstance(text, str) or not text.strip():
        return set()
    found = set(m.group(1) or m.group(2) for m in _SECRET_ATTRIBUTE.finditer(text))
    try:
        root = parse(text)
    except (VirtError, ValueError):
        root = None
    for elem in root.iter() if root is not None else ():
        for value in _secrets_of(elem):
            found.update((value, escape(value, {'"': '&quot;'}), escape(value, {"'": '&apos;'})))
    # An empty password hides nothing, and masking blanks would garble every result.
    return set(value for value in found if value.strip())


def _secrets_of(elem):
    if not isinstance(elem.tag, str):
        return []
    values = [v for k, v in elem.attrib.items() if _local(k).lower() in SECRET_ATTRIBUTES]
    if _local(elem.tag).lower() in SECRET_ELEMENTS:
        values += [(elem.text or '').strip(), elem.get('value') or '']
    return values


def xml_option_secrets(params):
    """secrets() of a module's xml option (VirtModule's secrets hook)."""
    return secrets(params.get('xml'))


# ---------------------------------------------------------------------------------------------
# Comparison

_INT = re.compile(r'^\s*(?:[+-]?\d+|0x[0-9a-fA-F]+)\s*$')


def _as_int(value):
    value = value.strip()
    return int(value, 16) if value.lower().startswith('0x') else int(value, 10)


def values_equal(desired, live):
    """Equal as text, or as integers when both are (decimal or 0x hex: libvirt writes 0x05)."""
    if desired is None or live is None:
        return desired is live
    if desired.strip() == live.strip():
        return True
    if _INT.match(desired) and _INT.match(live):
        return _as_int(desired) == _as_int(live)
    return False


def _local(tag):
    return etree.QName(tag).localname if tag.startswith('{') else tag


def _join(path, tag):
    step = _local(tag)
    return step if not path else path + '/' + step


def _children(elem):
    return [c for c in elem if isinstance(c.tag, str)]


def _text(elem):
    text = elem.text or ''
    return text.strip() or None


class Difference:
    """One place where the live object does not have what the user asked for."""

    def __init__(self, path, before, after):
        self.path = path
        self.before = before
        self.after = after

    def __repr__(self):
        return 'Difference(%r, %r, %r)' % (self.path, self.before, self.after)

    def __str__(self):
        if self.before is None:
            return '%s: missing, wanted %s' % (self.path, self.after)
        if self.after is None:
            return '%s: %s present, not wanted' % (self.path, self.before)
        return '%s: %s, wanted %s' % (self.path, self.before, self.after)

    def as_dict(self):
        return dict(path=self.path, before=self.before, after=self.after)


class IntentDiff:
    """The result of comparing desired with live XML.

    ``changed``: the live object does not satisfy the desired one. ``differences``: where.
    ``before`` / ``after``: normalised XML of the live object projected onto what the user wrote,
    and of the desired object; their unified diff shows exactly the intended change.
    """

    def __init__(self, differences, before, after):
        self.differences = differences
        self.before = before
        self.after = after

    @property
    def changed(self):
        return bool(self.differences)

    def unified(self, before_header='before', after_header='after'):
        return unified_diff(self.before, self.after, before_header, after_header)

    def summary(self):
        return [str(d) for d in self.differences]


class _Comparer:

    def __init__(self, profile, normalizers=None, runtime=False):
        self.profile = profile
        self.extra = _PathTable(normalizers or {})
        self.runtime = runtime
        self.differences = []
        self.roots = None  # (desired, live) roots, for Profile.derived

    def derived(self, path):
        rule = self.profile.derived.lookup(path)
        return rule is not None and self.roots is not None and rule(*self.roots)

    # -- per-value helpers ------------------------------------------------------------------

    def ignored(self, path, attr=None, elem=None):
        hit = self.profile.ignored.lookup(path, attr)
        if hit is not None and (hit is True or elem is None or hit(elem)):
            return True
        return self.runtime and (path, attr) in self.profile.runtime_ignored

    def normalize(self, path, attr, value):
        if value is None:
            return None
        for table in (self.extra, self.profile.normalizers):
            func = table.lookup(path, attr)
            if func is not None:
                value = func(value)
        return value

    def sized(self, path, elem):
        """(bytes, canonical unit) of a sized element per the profile, or None."""
        spec = self.profile.units.lookup(path)
        if spec is None:
            return None, None
        raw = _text(elem) if spec.value is None else elem.get(spec.value)
        size = to_bytes(raw, elem.get(spec.unit_attr) or spec.default_unit)
        if size is not None and spec.granule:
            size = (size + spec.granule - 1) // spec.granule * spec.granule   # rounded up
        return (size, spec) if size is not None else (None, spec)

    # -- identity ---------------------------------------------------------------------------

    def key_of(self, elem, path, spec):
        """The identity key of a list item: one normalised value per key part (None if unset)."""
        key = []
        for part in spec:
            sub, attr = _split(part)
            target = elem.find(sub) if sub else elem
            if target is None:
                key.append(None)
                continue
            subpath = path + ('/' + sub if sub else '')
            value = target.get(attr) if attr else _text(target)
            key.append(self.normalize(subpath, attr, value))
        return tuple(key)

    def describe(self, label, path, elem, spec):
        """A readable place for messages: devices/disk[vda], devices/interface[52:54:...]."""
        label = '%s/%s' % (label, _local(elem.tag)) if label else _local(elem.tag)
        if not spec:
            return label
        key = [k for k in self.key_of(elem, path, spec) if k is not None]
        return '%s[%s]' % (label, ','.join(key)) if key else label

    def match(self, desired_children, live_children, path):
        """Pair each desired child with a live child of the same kind: [(desired, live|None)].

        Items whose identity key is fully given are matched by key first; the others take the
        first unmatched live item whose key agrees on the parts they do give (position).
        """
        pairs = {}
        used = set()
        keyed = []
        for d in desired_children:
            spec = self.profile.identity.lookup(_join(path, d.tag))
            spec = spec if spec is not None else ()
            keyed.append((d, spec, self.key_of(d, _join(path, d.tag), spec) if spec else ()))
        # Pass 1: complete keys. Several live items may share a key (USB companion
        # controllers share an index): first pair the items that agree on every attribute the
        # desired one has, then the rest with the one that agrees on most of them.
        for exact in (True, False):
            for d, spec, key in keyed:
                if id(d) in pairs or not spec or any(k is None for k in key):
                    continue
                cpath = _join(path, d.tag)
                agreeing = [i for i, candidate in enumerate(live_children)
                            if i not in used and candidate.tag == d.tag and
                            self._keys_agree(key, self.key_of(candidate, cpath, spec))]
                if not agreeing:
                    continue
                i = max(agreeing, key=lambda j: (_agreement(d, live_children[j]), -j))
                if exact and _agreement(d, live_children[i]) < len(d.attrib):
                    continue
                pairs[id(d)] = live_children[i]
                used.add(i)
        # Pass 2: partial or no key, by position: the live item at the same position among
        # items of its kind when it is free and agrees, else the first free one that agrees.
        ordinals = {}
        for d, spec, key in keyed:
            ordinal = ordinals[d.tag] = ordinals.get(d.tag, -1) + 1
            if id(d) in pairs or (spec and all(k is not None for k in key)):
                continue
            cpath = _join(path, d.tag)
            same_kind = [i for i, c in enumerate(live_children) if c.tag == d.tag]
            agreeing = [i for i in same_kind if i not in used and
                        (not spec or self._keys_agree(key, self.key_of(live_children[i],
                                                                       cpath, spec)))]
            if not agreeing:
                continue
            i = same_kind[ordinal] if ordinal < len(same_kind) and \
                same_kind[ordinal] in agreeing else agreeing[0]
            pairs[id(d)] = live_children[i]
            used.add(i)
        leftovers = [c for i, c in enumerate(live_children) if i not in used]
        return [(d, pairs.get(id(d))) for d in desired_children], leftovers

    @staticmethod
    def _keys_agree(desired_key, live_key):
        return all(d is None or values_equal(d, l) for d, l in zip(desired_key, live_key))

    # -- the walk ---------------------------------------------------------------------------

    def walk(self, desired, live, path, before_parent, after_parent, label):
        """Compare one desired element with its live match (or None); build both projections."""
        if live is None:
            droppable = self.profile.droppable.lookup(path)
            if droppable is not None and droppable(desired):
                return  # libvirt does not store it: nothing to compare
            self.differences.append(Difference(label or _local(desired.tag), None,
                                               _short(desired)))
            self._copy_into(desired, path, after_parent)
            return
        after = etree.SubElement(after_parent, desired.tag,
                                 nsmap=_own_nsmap(desired, after_parent))
        before = etree.SubElement(before_parent, live.tag, nsmap=_own_nsmap(live, before_parent))
        sized = self._compare_size(desired, live, path, before, after, label)
        self._compare_attributes(desired, live, path, before, after, label, sized)
        if sized is None or sized.value is not None:
            self._compare_text(desired, live, path, before, after, label)
        self._compare_children(desired, live, path, before, after, label)

    def _compare_attributes(self, desired, live, path, before, after, label, sized):
        for attr, dvalue in desired.attrib.items():
            if self.ignored(path, attr):
                continue
            if sized is not None and attr in (sized.value, sized.unit_attr):
                continue
            shown = _mask(self.profile, path, attr)
            dnorm = self.normalize(path, attr, dvalue)
            lvalue = live.get(attr)
            default = self.profile.defaults.lookup(path, attr)
            if callable(default):
                default = default(live)
            if default is ANY:  # libvirt ignores the value here: whatever it stored
                after.set(attr, shown or dnorm)
                before.set(attr, shown or dnorm)
                continue
            if lvalue is None:
                lvalue = default
            lnorm = self.normalize(path, attr, lvalue)
            after.set(attr, shown or dnorm)
            if lnorm is not None and values_equal(dnorm, lnorm):
                before.set(attr, shown or dnorm)
                continue
            if lnorm is not None:
                before.set(attr, (shown + ' (differs)') if shown else lnorm)
            self.differences.append(Difference('%s@%s' % (label, attr),
                                               None if lnorm is None else (shown or lnorm),
                                               shown or dnorm))

    def _compare_size(self, desired, live, path, before, after, label):
        """Compare a sized value in bytes; its spec when the desired one is a size, else None."""
        dsize, spec = self.sized(path, desired)
        if dsize is None:
            return None  # not a size the engine understands: compared as written
        lsize = self.sized(path, live)[0]
        value, unit = from_bytes(dsize, spec.canonical)
        _set_size(after, spec, value, unit)
        if lsize == dsize or (self.runtime and lsize in spec.runtime_sizes(dsize)):
            _set_size(before, spec, value, unit)
            return spec
        if lsize is not None:
            _set_size(before, spec, *from_bytes(lsize, spec.canonical))
        where = label if spec.value is None else '%s@%s' % (label, spec.value)
        self.differences.append(Difference(
            where, None if lsize is None else '%s %s' % from_bytes(lsize, spec.canonical),
            '%s %s' % (value, unit)))
        return spec

    def _compare_text(self, desired, live, path, before, after, label):
        dtext = _text(desired)
        if dtext is None:
            return
        dnorm = self.normalize(path, None, dtext)
        lnorm = self.normalize(path, None, _text(live))
        after.text = dnorm
        if lnorm is not None and values_equal(dnorm, lnorm):
            before.text = dnorm
            return
        before.text = lnorm
        self.differences.append(Difference(label, lnorm, dnorm))

    def _compare_children(self, desired, live, path, before, after, label):
        dchildren = [c for c in _children(desired)
                     if not self.ignored(_join(path, c.tag), None, c) and
                     not self.derived(_join(path, c.tag))]
        lchildren = [c for c in _children(live)
                     if not self.ignored(_join(path, c.tag), None, c)]
        pairs, leftovers = self.match(dchildren, lchildren, path)
        given = set(d.tag for d in dchildren)
        for d, l in pairs:
            cpath = _join(path, d.tag)
            spec = self.profile.identity.lookup(cpath) or ()
            self.walk(d, l, cpath, before, after, self.describe(label, cpath, d, spec))
        for extra in leftovers:
            cpath = _join(path, extra.tag)
            if (cpath in self.profile.owned or
                    (extra.tag in given and cpath in self.profile.owned_when_given)):
                spec = self.profile.identity.lookup(cpath) or ()
                self.differences.append(Difference(self.describe(label, cpath, extra, spec),
                                                   _short(extra), None))
                self._copy_into(extra, cpath, before)

    def _copy_into(self, source, path, parent):
        """Normalised copy of a whole element (desired-only or live-only) into a projection."""
        elem = etree.SubElement(parent, source.tag, nsmap=_own_nsmap(source, parent))
        spec = self.profile.units.lookup(path)
        size = self.sized(path, source)[0] if spec is not None else None
        for attr, value in source.attrib.items():
            if self.ignored(path, attr):
                continue
            if size is not None and attr in (spec.value, spec.unit_attr):
                continue
            elem.set(attr, _mask(self.profile, path, attr) or self.normalize(path, attr, value))
        if size is not None:
            _set_size(elem, spec, *from_bytes(size, spec.canonical))
        elif _text(source) is not None:
            elem.text = self.normalize(path, None, _text(source))
        for child in _children(source):
            cpath = _join(path, child.tag)
            if not self.ignored(cpath, None, child):
                self._copy_into(child, cpath, elem)
        return elem


def _agreement(desired, live):
    """How many of desired's attributes live has with the same value."""
    return sum(1 for k, v in desired.attrib.items() if live.get(k) == v)


def _set_size(elem, spec, value, unit):
    if elem is None:
        return
    if spec.value is None:
        elem.text = value
    else:
        elem.set(spec.value, value)
    elem.set(spec.unit_attr, unit)


def _mask(profile, path, attr):
    return '********' if (path, attr) in profile.masked else None


def _short(elem):
    """A one-line rendering of an element for messages."""
    text = etree.tostring(elem, encoding='unicode', with_tail=False)
    text = re.sub(r'\s*\n\s*', '', text)
    for match in re.finditer(r'(passwd)=(["\'])[^"\']*\2', text):
        text = text.replace(match.group(0), '%s="********"' % match.group(1))
    return text if len(text) <= 200 else text[:197] + '...'


def _own_nsmap(elem, parent):
    """Namespace declarations elem needs beyond what parent already declares."""
    if parent is None:
        return dict(elem.nsmap)
    inherited = parent.nsmap
    return dict((k, v) for k, v in elem.nsmap.items() if inherited.get(k) != v)


class _Holder:
    """A throwaway parent so the root goes through the same code as every other element."""

    def __init__(self):
        self.elem = etree.Element('holder')


def apply_implied(desired, profile):
    """desired as libvirt will store it per profile.implied: a callable returning a (copy of
    the) root, or a sequence of rules that edit one copy in place."""
    if profile.implied is None:
        return desired
    if callable(profile.implied):
        return profile.implied(desired)
    desired = copy.deepcopy(desired)
    for rule in profile.implied:
        rule(desired)
    return desired


def compare(desired, live, profile, normalizers=None, runtime=False):
    """Does live satisfy desired? An IntentDiff.

    desired, live: XML text or lxml elements; live may be None (the object does not exist).
    profile: a Profile (or the root tag of one in PROFILES).
    normalizers: extra {path: callable} for values only the caller can normalise (for example
    machine type aliases the caller resolved with the hypervisor's capabilities).
    runtime: live is the running XML of an active object; ignore what differs at run time by
    design and do not treat extra items as removals.
    """
    require_lxml()
    if isinstance(profile, str):
        profile = PROFILES[profile]
    desired = parse(desired, 'desired %s XML' % profile.name)
    desired = apply_implied(desired, profile)
    comparer = _Comparer(profile, normalizers, runtime)
    after_holder, before_holder = _Holder(), _Holder()
    if live is None:
        root = comparer._copy_into(desired, '', after_holder.elem)
        return IntentDiff([Difference('', None, 'the whole %s' % profile.name)], '',
                          render(root))
    live = parse(live, 'live %s XML' % profile.name)
    if desired.tag != live.tag:
        root = comparer._copy_into(desired, '', after_holder.elem)
        other = comparer._copy_into(live, '', before_holder.elem)
        return IntentDiff([Difference('', _local(live.tag), _local(desired.tag))],
                          render(other), render(root))
    comparer.roots = (desired, live)
    comparer.walk(desired, live, '', before_holder.elem, after_holder.elem, '')
    after = _children(after_holder.elem)[0]
    befores = _children(before_holder.elem)
    before = befores[0] if befores else None
    return IntentDiff(comparer.differences, render(before), render(after))


def normalized(xml, profile, normalizers=None):
    """Normalised text of one XML document (sizes in canonical units, ignored paths dropped)."""
    require_lxml()
    if isinstance(profile, str):
        profile = PROFILES[profile]
    holder = _Holder()
    comparer = _Comparer(profile, normalizers)
    return render(comparer._copy_into(parse(xml), '', holder.elem))
