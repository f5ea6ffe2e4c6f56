# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Private to the virtops.libvirt collection: may change without notice.
"""Storage pools and volumes: desired state compared with the live objects, then applied.

Used by virt_pool, virt_pool_info, virt_volume and virt_volume_info. Every helper raises
VirtError; nothing here exits.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import os
import re
import tempfile

try:
    from urllib.parse import urlparse
except ImportError:  # pragma: no cover - Python 2 is not supported, import kept for sanity
    from urlparse import urlparse  # type: ignore

from ansible_collections.virtops.libvirt.plugins.module_utils._libvirt import (
    ObjectManager,
    VirtError,
    is_error,
    libvirt,
    libvirt_call,
    optional_flag as _flag,
    translate,
    version_string,
)
from ansible_collections.virtops.libvirt.plugins.module_utils import _xmldiff


POOL_STATES = ['present', 'active', 'inactive', 'absent', 'deleted']

POOL_ARGS = dict(
    name=dict(type='str'),
    xml=dict(type='str'),
    state=dict(type='str', default='present', choices=POOL_STATES),
    autostart=dict(type='bool'),
    build=dict(type='bool', default=False),
    refresh=dict(type='bool', default=False),
    restart_on_change=dict(type='bool', default=False),
)

POOL_INFO_ARGS = dict(
    name=dict(type='str'),
    state=dict(type='str', choices=['active', 'inactive']),
)

VOLUME_STATES = ['present', 'absent', 'wiped']
VOLUME_FORMATS = ['raw', 'qcow2']

VOLUME_ARGS = dict(
    pool=dict(type='str', required=True),
    name=dict(type='str', required=True),
    state=dict(type='str', default='present', choices=VOLUME_STATES),
    capacity=dict(type='str'),
    format=dict(type='str', choices=VOLUME_FORMATS),
    backing_file=dict(type='str'),
    backing_format=dict(type='str', choices=VOLUME_FORMATS),
    clone_from=dict(type='str'),
    resize=dict(type='bool', default=True),
    shrink=dict(type='bool', default=False),
    upload_src=dict(type='path'),
    force_upload=dict(type='bool', default=False),
    download_dest=dict(type='path'),
)

VOLUME_INFO_ARGS = dict(
    pool=dict(type='str'),
    name=dict(type='str'),
)

# virStoragePoolInfo.state
POOL_STATE_NAMES = {0: 'inactive', 1: 'building', 2: 'active', 3: 'degraded', 4: 'inaccessible'}

# Pool types whose target is a directory that virStoragePoolBuild creates.
DIRECTORY_POOLS = ('dir', 'fs', 'netfs')

# LVM volume groups: every volume is a raw logical volume. libvirt 9.0's logical backend has
# no volume resize (no resize entry point in libvirt_storage_backend_logical.so; the call fails
# with VIR_ERR_NO_SUPPORT), and its pool delete runs vgremove on the whole group.
LOGICAL = 'logical'

# Pool types whose volumes libvirt finds but does not make: LUNs of an iSCSI target (iscsi: the
# kernel initiator driven with iscsiadm; iscsi-direct: libiscsi inside libvirtd), LUNs of a SCSI
# host adapter (scsi), multipath devices (mpath). libvirt's backends for them (9.0 and current)
# have no buildPool, deletePool, createVol, deleteVol or resizeVol: virStoragePoolBuild does
# nothing and succeeds, the others fail with "storage pool does not support ...".
LUN_POOLS = ('iscsi', 'iscsi-direct', 'scsi', 'mpath')
LUN_SOURCES = {
    'iscsi': 'LUNs of an iSCSI target',
    'iscsi-direct': 'LUNs of an iSCSI target',
    'scsi': 'LUNs of a SCSI host adapter',
    'mpath': 'multipath devices',
}
# The iscsi-direct backend talks iSCSI itself (no block device on the host) and has no
# uploadVol or downloadVol: volume data cannot be streamed (only virStorageVolWipe works).
NO_STREAM_POOLS = ('iscsi-direct',)

CHUNK = 1024 * 1024


def is_local(uri):
    """True for a URI whose daemon runs on this host (no host name in it)."""
    return not urlparse(uri).hostname


# ---------------------------------------------------------------------------------------------
# Sizes

_SIZE = re.compile(r'^\s*(\d+)\s*([A-Za-z]*)\s*$')


def parse_size(text, what='capacity'):
    """'1G' -> 1073741824; bare numbers are bytes. K/M/G/T and KiB/MiB/... are powers of 1024,
    KB/MB/GB/TB powers of 1000 (libvirt's spellings)."""
    match = _SIZE.match(str(text))
    if match is None:
        raise VirtError('%s %r is not a size (examples: 1048576, 512M, 1G, 10GiB)' % (what, text),
                        reason='invalid size')
    size = _xmldiff.to_bytes(match.group(1), match.group(2) or 'bytes')
    if size is None:
        raise VirtError('%s %r has an unknown unit %r (use K, M, G, T, KiB, MiB, GiB, TiB, KB, '
                        'MB, GB or TB)' % (what, text, match.group(2)), reason='invalid size')
    return size


# ---------------------------------------------------------------------------------------------
# Pools: reading

def lookup_pool(connection, name):
    """The pool called name, or None when there is none."""
    try:
        return connection.conn.storagePoolLookupByName(name)
    except libvirt.libvirtError as exc:
        if is_error(exc, 'VIR_ERR_NO_STORAGE_POOL'):
            return None
        raise translate(exc, 'looking up storage pool', name)


def get_pool(connection, name):
    pool = lookup_pool(connection, name)
    if pool is None:
        raise VirtError('storage pool %s not found on %s' % (name, connection.uri), obj=name)
    return pool


def pool_inactive_xml(pool):
    """The persistent definition (drivers without VIR_STORAGE_XML_INACTIVE, such as test:///,
    give the only definition they keep)."""
    try:
        return pool.XMLDesc(_flag('VIR_STORAGE_XML_INACTIVE'))
    except libvirt.libvirtError as exc:
        if not (is_error(exc, 'VIR_ERR_INVALID_ARG', 'VIR_ERR_NO_SUPPORT') and
                'flags' in str(exc)):
            raise translate(exc, 'reading the definition', 'storage pool %s' % pool.name())
    return pool_xml(pool)


def pool_xml(pool):
    with libvirt_call('reading the XML', 'storage pool %s' % pool.name()):
        return pool.XMLDesc(0)


def pool_state(pool):
    with libvirt_call('reading the state', 'storage pool %s' % pool.name()):
        return POOL_STATE_NAMES.get(pool.info()[0], 'unknown')


def pool_is_active(pool):
    with libvirt_call('reading the state', 'storage pool %s' % pool.name()):
        return bool(pool.isActive())


def pool_persistent(pool):
    with libvirt_call('reading persistence', 'storage pool %s' % pool.name()):
        return bool(pool.isPersistent())


def pool_autostart(pool):
    with libvirt_call('reading autostart', 'storage pool %s' % pool.name()):
        return bool(pool.autostart())


def _pool_type(pool):
    return _xmldiff.parse(pool_xml(pool), 'the XML of storage pool %s' % pool.name()).get('type')


def pool_facts(pool):
    """name, uuid, state, autostart, persistent, capacity, allocation, available (bytes), type,
    path, volume count and the live XML."""
    obj = 'storage pool %s' % pool.name()
    with libvirt_call('reading the figures', obj):
        state, capacity, allocation, available = pool.info()
    xml = pool_xml(pool)
    root = _xmldiff.parse(xml, 'the XML of %s' % obj)
    persistent = pool_persistent(pool)
    volumes = None
    if state == 2:
        with libvirt_call('counting volumes', obj):
            volumes = pool.numOfVolumes()
    return dict(
        name=pool.name(),
        uuid=pool.UUIDString(),
        type=root.get('type'),
        state=POOL_STATE_NAMES.get(state, 'unknown'),
        autostart=pool_autostart(pool) if persistent else False,
        persistent=persistent,
        capacity=capacity,
        allocation=allocation,
        available=available,
        path=(root.findtext('target/path') or '').strip() or None,
        volumes=volumes,
        xml=xml,
    )


def pools_info(connection, name=None, state=None):
    """virt_pool_info: one pool (by name; [] when missing) or all, optionally by state."""
    if name:
        pool = lookup_pool(connection, name)
        pools = [pool] if pool is not None else []
    else:
        with libvirt_call('listing storage pools', connection.uri):
            pools = connection.conn.listAllStoragePools(0)
    result = []
    for pool in sorted(pools, key=lambda p: p.name()):
        try:
            facts = pool_facts(pool)
        except VirtError as exc:
            if exc.code == _flag('VIR_ERR_NO_STORAGE_POOL'):
                continue  # undefined while we read it
            raise
        if state == 'active' and facts['state'] != 'active':
            continue
        if state == 'inactive' and facts['state'] == 'active':
            continue
        result.append(facts)
    return result


# ---------------------------------------------------------------------------------------------
# Pools: the desired definition

class DesiredPool:
    """The user's pool XML, parsed and checked against the name given."""

    def __init__(self, xml, name=None):
        self.root, self.name, self.uuid = _xmldiff.parse_desired(xml, 'pool', 'storage pool', name)
        if not self.root.get('type'):
            raise VirtError("the storage pool XML has no type (<pool type='dir'>, "
                            "<pool type='logical'>, ...)", reason='invalid XML')
        self.type = self.root.get('type')
        self.path = (self.root.findtext('target/path') or '').strip() or None

    def xml_for_define(self, uuid=None):
        """The XML to define; with the existing pool's uuid when the user did not write one."""
        if uuid is not None and self.uuid is None:
            return _xmldiff.render(_xmldiff.with_uuid(self.root, uuid))
        return _xmldiff.render(self.root)


def target_missing(connection, pool_type, path):
    """True when a directory pool's target directory is missing on this (local) host; None when
    it cannot be known (remote URI, a pool type without a target directory)."""
    if pool_type not in DIRECTORY_POOLS or not path or not is_local(connection.uri):
        return None
    return not os.path.isdir(path)


# ---------------------------------------------------------------------------------------------
# Pools: what libvirt would refuse to define, foreseen without changing anything

def unsupported_pool_types(connection):
    """Pool types this host's libvirt has no storage backend for (its storage pool
    capabilities: <pool type='rbd' supported='no'>); None when the driver cannot tell (test:///,
    libvirt before 5.2). libvirt refuses to define such a pool ("missing backend for pool
    type")."""
    try:
        xml = connection.conn.getStoragePoolCapabilities(0)
    except (AttributeError, libvirt.libvirtError):
        # A host that cannot say is not refused on a guess: the define reports libvirt's error.
        return None
    return pool_types_without_backend(xml)


def pool_types_without_backend(capabilities):
    """The pool types that storage pool capabilities XML marks supported='no'."""
    root = _xmldiff.parse(capabilities, 'the storage pool capabilities')
    return set(e.get('type') for e in root.iterfind('pool') if e.get('supported') == 'no')


# Pool types with a source name that defaults to the pool's name (VIR_STORAGE_POOL_SOURCE_NAME).
NAMED_SOURCE_POOLS = ('logical', 'rbd', 'sheepdog', 'gluster', 'zfs', 'vstorage')
# Pool types without a target path (VIR_STORAGE_POOL_SOURCE_NETWORK).
NETWORK_POOLS = ('iscsi-direct', 'rbd', 'sheepdog', 'gluster')
# Pool types libvirt 9.0 compares by their source devices (virStoragePoolObjSourceMatchTypeDEVICE).
DEVICE_POOLS = ('iscsi', 'fs', 'logical', 'disk', 'zfs')


def _number(value, base=10):
    """An integer as libvirt reads it (strtol; base 0: 0x hex, leading 0 octal), else None."""
    if value is None:
        return None
    text = value.strip().lower()
    if base == 0:
        base = 16 if text.startswith('0x') else 8 if text.startswith('0') and len(text) > 1 else 10
    try:
        return int(text, base)
    except ValueError:
        return None


def scsi_host_number(name):
    """N of an adapter name scsi_hostN, fc_hostN or hostN (libvirt's virSCSIHostGetNumber);
    None for another name."""
    match = re.match(r'^(?:scsi_host|fc_host|host)(\d+)$', name or '')
    return int(match.group(1)) if match else None


class PoolSource:
    """What libvirt compares to find another pool on the same storage, read from pool XML
    with the defaults libvirt's parser fills in (virStoragePoolDefParseXML): the source name
    defaults to the pool's name, a gluster dir to '/', a logical or zfs target path is derived
    from the source name, paths are sanitised, an adapter without a type is a scsi_host."""

    def __init__(self, root):
        self.type = root.get('type')
        self.name = (root.findtext('name') or '').strip()
        self.devices = [d.get('path') for d in root.iterfind('source/device')
                        if d.get('path') is not None]
        self.hosts = [(h.get('name'), _number(h.get('port')) or 0)
                      for h in root.iterfind('source/host')]
        source_dir = root.find('source/dir')
        self.dir = _xmldiff.sanitize_path(source_dir.get('path')) \
            if source_dir is not None and source_dir.get('path') else None
        if self.dir is None and self.type == 'gluster':
            self.dir = '/'
        self.source_name = root.findtext('source/name') or None
        if self.type in NAMED_SOURCE_POOLS:
            self.source_name = _xmldiff.pool_source_name(root)
        iqn = root.find('source/initiator/iqn')
        self.iqn = iqn.get('name') if iqn is not None else None
        self.target = None
        if self.type in _xmldiff.DERIVED_POOL_TARGETS:
            self.target = _xmldiff.DERIVED_POOL_TARGETS[self.type] + self.source_name
        elif self.type not in NETWORK_POOLS and root.findtext('target/path'):
            self.target = _xmldiff.sanitize_path(root.findtext('target/path'))
        self.adapter = None
        adapter = root.find('source/adapter')
        if adapter is not None:
            address = adapter.find('parentaddr/address')
            parent = None
            if address is not None:
                parent = tuple(_number(address.get(k), 0) for k in
                               ('domain', 'bus', 'slot', 'function')) + \
                    (_number(adapter.find('parentaddr').get('unique_id')),)
            kind = adapter.get('type') or ('scsi_host' if adapter.get('name') else None)
            self.adapter = dict(type=kind, name=adapter.get('name'), parent=adapter.get('parent'),
                                wwnn=adapter.get('wwnn'), wwpn=adapter.get('wwpn'),
                                parentaddr=parent)


def _single_host_match(other, new):
    """virStoragePoolSourceMatchSingleHost: the first hosts agree (the port only when the new
    pool gives one), unless both pools list several hosts."""
    if len(other.hosts) != 1 and len(new.hosts) != 1:
        return False
    if not other.hosts or not new.hosts:
        return False
    (other_host, other_port), (new_host, new_port) = other.hosts[0], new.hosts[0]
    if new_port and other_port != new_port:
        return False
    return other_host == new_host


def _scsi_number(adapter):
    """The host number of a scsi_host adapter given by name; None when libvirt would look it
    up in sysfs (a parentaddr) or the name is not a host name."""
    return None if adapter.get('parentaddr') else scsi_host_number(adapter.get('name'))


def _adapter_conflict(other, new):
    """The same SCSI host adapter (virStoragePoolObjSourceMatchTypeISCSI), as far as it can be
    told without the host's sysfs: fc_host by wwnn and wwpn, scsi_host by PCI parent address or
    by host number, an fc_host whose parent is the scsi_host. libvirt also looks up a
    parentaddr's host number and an fc_host's vHBA in sysfs; those matches are not foreseen."""
    one, two = other.adapter or {}, new.adapter or {}
    kinds = (one.get('type'), two.get('type'))
    if kinds == ('fc_host', 'fc_host'):
        if one['wwnn'] == two['wwnn'] and one['wwpn'] == two['wwpn']:
            return 'both use the fc_host adapter wwnn=%s wwpn=%s' % (two['wwnn'], two['wwpn'])
        return None
    if kinds == ('scsi_host', 'scsi_host'):
        if one['parentaddr'] and one['parentaddr'] == two['parentaddr']:
            return 'both use the SCSI host adapter at PCI address %04x:%02x:%02x.%x, ' \
                   'unique_id %s' % two['parentaddr']
        number = _scsi_number(one)
        if number is not None and number == _scsi_number(two):
            return 'both use SCSI host %d' % number
        return None
    if sorted(kinds) == ['fc_host', 'scsi_host']:
        fc, scsi = (one, two) if kinds[0] == 'fc_host' else (two, one)
        number = _scsi_number(scsi)
        if number is not None and number == scsi_host_number(fc['parent']):
            return 'the fc_host adapter\'s parent is SCSI host %d, the other pool\'s adapter' \
                   % number
    return None


def source_conflict(other, new):
    """Why libvirt 9.0 refuses new because other already uses its storage
    (virStoragePoolObjSourceFindDuplicateCb), or None. other, new: PoolSource."""
    if other.name == new.name:
        return None  # a pool is redefined over itself
    kind = other.type
    if kind in ('dir', 'netfs', 'gluster'):
        if new.type != kind:
            return None
        if kind == 'dir' and other.target == new.target:
            return 'both are dir pools with target path %s' % new.target
        if kind == 'netfs' and other.dir == new.dir and _single_host_match(other, new):
            return 'both mount %s from host %s' % (new.dir, new.hosts[0][0])
        if kind == 'gluster' and other.source_name == new.source_name and \
                other.dir == new.dir and _single_host_match(other, new):
            return 'both use gluster volume %s, dir %s on host %s' % (
                new.source_name, new.dir, new.hosts[0][0])
        return None
    if kind == 'scsi':
        return _adapter_conflict(other, new) if new.type == kind else None
    if kind in DEVICE_POOLS and new.type in DEVICE_POOLS:
        if (kind == 'iscsi') != (new.type == 'iscsi'):
            return None
        shared = [d for d in new.devices if d in other.devices]
        if not shared:
            return None
        if kind == 'iscsi':
            if other.iqn != new.iqn:
                return None
            if new.iqn:
                return 'both use iSCSI target %s with initiator %s' % (shared[0], new.iqn)
            return 'both use iSCSI target %s, neither with an initiator IQN' % shared[0]
        return 'both use source device %s' % shared[0]
    if kind == 'sheepdog' and new.type == kind and _single_host_match(other, new):
        return 'both use the sheepdog cluster on host %s' % new.hosts[0][0]
    if kind == 'mpath' and new.type == kind:
        return 'libvirt allows one mpath pool per host'
    if kind == 'vstorage' and new.type == kind and other.source_name == new.source_name:
        return 'both use vstorage cluster %s' % new.source_name
    return None


def define_refusal(connection, desired):
    """Why libvirt would refuse to define desired (a DesiredPool), as far as can be known
    without defining it: the reason, or None. Checked in libvirt's order: the name, the backend,
    storage used by another pool, the uuid of another pool."""
    if '/' in desired.name or '\n' in desired.name:
        # virStoragePoolDefParseXML and storagePoolDefineXML refuse these characters.
        return "a pool name cannot contain '/' or a newline (libvirt refuses it)"
    unsupported = unsupported_pool_types(connection)
    if unsupported and desired.type in unsupported:
        return ('libvirt on %s has no storage backend for %s pools (its storage pool '
                'capabilities say supported=\'no\'; libvirt refuses with "missing backend for '
                'pool type"): install that backend (Debian: libvirt-daemon-driver-storage-%s, '
                'where it exists) and restart libvirtd, or use another pool type'
                % (connection.uri, desired.type, desired.type))
    new = PoolSource(desired.root)
    with libvirt_call('listing storage pools', connection.uri):
        pools = connection.conn.listAllStoragePools(0)
    for pool in sorted(pools, key=lambda p: p.name()):
        try:
            # libvirt compares with the running definition of an active pool.
            other = PoolSource(_xmldiff.parse(pool.XMLDesc(0)))
        except libvirt.libvirtError as exc:
            if is_error(exc, 'VIR_ERR_NO_STORAGE_POOL'):
                continue  # undefined meanwhile
            raise translate(exc, 'reading the XML', 'storage pool %s' % pool.name())
        why = source_conflict(other, new)
        if why:
            return "Storage source conflict with pool: '%s': %s, and libvirt refuses two " \
                   "pools on the same storage" % (pool.name(), why)
    if desired.uuid:
        try:
            holder = connection.conn.storagePoolLookupByUUIDString(desired.uuid)
        except libvirt.libvirtError as exc:
            if not is_error(exc, 'VIR_ERR_NO_STORAGE_POOL'):
                raise translate(exc, 'looking up uuid %s' % desired.uuid, connection.uri)
            holder = None
        if holder is not None and holder.name() != desired.name:
            return "pool '%s' is already defined with uuid %s" % (holder.name(), desired.uuid)
    return None


# ---------------------------------------------------------------------------------------------
# Pools: the manager

class PoolManager(ObjectManager):
    """Compare the desired pool with the live one, then apply (unless check mode)."""

    def __init__(self, connection, params, check_mode=False, diff_mode=False, warn=None):
        ObjectManager.__init__(self, connection, params, check_mode, diff_mode, warn)
        self.actions = []
        self.restart_required = False
        self.refreshed = False

    def run(self):
        p = self.params
        desired = DesiredPool(p['xml'], p.get('name')) if p.get('xml') else None
        name = desired.name if desired is not None else p.get('name')
        if not name:
            raise VirtError('give name or xml to say which storage pool')
        self.name = name
        self.obj = 'storage pool %s' % name
        pool = lookup_pool(self.connection, name)
        if p['state'] in ('absent', 'deleted'):
            return self.absent(pool, delete=p['state'] == 'deleted')
        if pool is None and desired is None:
            raise VirtError('%s does not exist on %s; give xml to define it'
                            % (self.obj, self.connection.uri), obj=name)
        return self.ensure(pool, desired)

    # -- absent / deleted -------------------------------------------------------------------

    def absent(self, pool, delete):
        if pool is None:
            return self.result(False, None, self.diff(None, None, '', ''))
        before_state = pool_state(pool)
        persistent = pool_persistent(pool)
        before_autostart = pool_autostart(pool) if persistent else False
        before_xml = _xmldiff.normalized(pool_inactive_xml(pool), _xmldiff.STORAGE_POOL)
        active = pool_is_active(pool)
        pool_type = _pool_type(pool)
        if delete and pool_type in LUN_POOLS:
            raise VirtError('%s is an %s pool, whose volumes are %s: libvirt has no storage of '
                            'it to delete (virStoragePoolDelete is not supported for this type). '
                            'Use state absent to stop and undefine it, and remove the LUNs where '
                            'they are made (nothing was changed)'
                            % (self.obj, pool_type, LUN_SOURCES[pool_type]), obj=self.name,
                            reason='delete not supported')
        if delete and not active and pool_type == LOGICAL:
            # The volumes of an inactive pool cannot be listed, and deleting a logical pool
            # removes the volume group with every logical volume in it.
            raise VirtError('%s is an inactive logical (LVM) pool: state deleted removes its '
                            'volume group (vgremove), and the volumes of an inactive pool cannot '
                            'be listed to check that it holds no logical volume; start it '
                            '(state: active) first, then delete it (nothing was changed)'
                            % self.obj, obj=self.name, reason='cannot check pool is empty')
        if delete and active:
            with libvirt_call('listing volumes', self.obj):
                names = pool.listVolumes()
            if names:
                raise VirtError('%s still has %d volume(s) (%s); state deleted removes the '
                                'storage of an empty pool only: delete the volumes first '
                                '(nothing was changed)' % (self.obj, len(names),
                                                           ', '.join(sorted(names)[:5])),
                                obj=self.name, reason='pool not empty')
        plan = []
        if active:
            plan.append('stop')
        if delete:
            plan.append('delete storage')
        if persistent:
            plan.append('undefine')
        self.actions = plan
        if not self.check_mode:
            for step in plan:
                if step == 'stop':
                    with libvirt_call('stopping (destroy)', self.obj):
                        pool.destroy()
                elif step == 'delete storage':
                    with libvirt_call('deleting the storage (virStoragePoolDelete)', self.obj):
                        pool.delete(0)
                elif step == 'undefine':
                    with libvirt_call('undefining', self.obj):
                        pool.undefine()
        diff = self.diff(dict(state=before_state, autostart=before_autostart),
                         dict(state='absent'), before_xml, '')
        return self.result(True, None, diff)

    # -- present / active / inactive --------------------------------------------------------

    def ensure(self, pool, desired):
        p = self.params
        state = p['state']
        exists = pool is not None
        before_state = pool_state(pool) if exists else 'absent'
        persistent = pool_persistent(pool) if exists else False
        before_autostart = pool_autostart(pool) if persistent else False
        active = exists and pool_is_active(pool)

        intent = None
        if desired is not None:
            if exists and desired.uuid and desired.uuid != pool.UUIDString().lower():
                raise VirtError('%s exists with uuid %s; the XML asks for uuid %s and libvirt '
                                'cannot change a pool\'s uuid (nothing was changed)'
                                % (self.obj, pool.UUIDString(), desired.uuid), obj=self.name,
                                reason='uuid mismatch')
            live = pool_inactive_xml(pool) if exists else None
            intent = _xmldiff.compare(desired.root, live, _xmldiff.STORAGE_POOL)
            if exists and intent.changed:
                live_type = _xmldiff.parse(live).get('type')
                if live_type != desired.type:
                    raise VirtError('%s is a %s pool; the XML asks for a %s pool and libvirt '
                                    'cannot change a pool\'s type: remove it first (state: '
                                    'absent) (nothing was changed)'
                                    % (self.obj, live_type, desired.type), obj=self.name,
                                    reason='type mismatch')
        define = desired is not None and (not exists or not persistent or intent.changed)
        if exists and not persistent and desired is None:
            define = True  # present means defined: make a transient pool persistent
        if define and desired is not None:
            # Both modes: check mode reports what the real define would be refused for, and
            # the real run fails the same way before it changes anything.
            refusal = define_refusal(self.connection, desired)
            if refusal:
                raise VirtError('defining on %s failed: %s (nothing was changed)'
                                % (self.obj, refusal), action='defining', obj=self.name,
                                reason='define refused')

        pending = False
        if active and desired is not None:
            pending = define or _xmldiff.compare(desired.root, pool_xml(pool),
                                                 _xmldiff.STORAGE_POOL).changed
        restart = pending and p['restart_on_change'] and state in ('present', 'active')

        plan = []
        if define:
            plan.append('define')
        after_active = active
        if restart:
            plan.append('stop')
            after_active = False
        want_active = {'active': True, 'inactive': False}.get(state, active)
        if p['build'] and not after_active and self._needs_build(pool, desired, exists):
            plan.append('build')
        if want_active and not after_active:
            plan.append('start')
        elif not want_active and after_active:
            plan.append('stop')
        after_state = 'active' if want_active else (
            'inactive' if exists or define else 'absent')
        if exists and not define and not restart and want_active == active:
            after_state = before_state
        autostart = p.get('autostart')
        after_autostart = before_autostart
        if autostart is not None and autostart != before_autostart:
            plan.append('autostart' if autostart else 'no autostart')
            after_autostart = autostart
        self.actions = list(plan)
        self.restart_required = pending and not restart and want_active

        if not self.check_mode and plan:
            pool = self.apply(pool, desired, plan)
        if p['refresh'] and want_active and 'start' not in plan and not self.check_mode:
            with libvirt_call('refreshing', self.obj):
                pool.refresh(0)
            self.refreshed = True

        diff = None
        if self.diff_mode:
            before_xml = intent.before if intent is not None else ''
            after_xml = intent.after if intent is not None else ''
            if intent is not None and not define:
                before_xml = after_xml = intent.after
            diff = self.diff(dict(state=before_state, autostart=before_autostart),
                             dict(state=after_state, autostart=after_autostart),
                             before_xml, after_xml)
        if define and desired is not None and not self.check_mode:
            kept = _xmldiff.compare(desired.root, pool_inactive_xml(pool), _xmldiff.STORAGE_POOL)
            if kept.changed:
                self.warn('%s: libvirt did not keep all of the XML as written (%s); the next '
                          'run will report a change again' % (self.obj, '; '.join(kept.summary())))
        return self.result(bool(plan), pool, diff)

    def _needs_build(self, pool, desired, exists):
        """Build a new pool; an existing one when its target directory is missing. Never a
        pool type that libvirt has nothing to build for (LUN_POOLS: the build would do nothing
        and still be reported)."""
        if desired is not None:
            pool_type, path = desired.type, desired.path
        else:
            root = _xmldiff.parse(pool_inactive_xml(pool))
            pool_type, path = root.get('type'), (root.findtext('target/path') or '').strip()
        if pool_type in LUN_POOLS:
            return False
        if not exists:
            return True
        return bool(target_missing(self.connection, pool_type, path))

    def apply(self, pool, desired, plan):
        done = []
        try:
            return self._apply_steps(pool, desired, plan, done)
        except VirtError as exc:
            raise exc.after_steps(done)

    def _apply_steps(self, pool, desired, plan, done):
        for step in plan:
            if step == 'define':
                uuid = pool.UUIDString() if pool is not None else None
                xml = desired.xml_for_define(uuid) if desired is not None \
                    else pool_xml(pool)
                with libvirt_call('defining', self.obj):
                    pool = self.conn.storagePoolDefineXML(xml, 0)
            elif step == 'build':
                with libvirt_call('building (virStoragePoolBuild)', self.obj):
                    pool.build(0)
            elif step == 'start':
                with libvirt_call('starting', self.obj):
                    pool.create(0)
            elif step == 'stop':
                with libvirt_call('stopping (destroy)', self.obj):
                    pool.destroy()
            elif step in ('autostart', 'no autostart'):
                with libvirt_call('setting autostart', self.obj):
                    pool.setAutostart(1 if step == 'autostart' else 0)
            done.append(step)
        return pool

    def diff(self, before, after, before_xml, after_xml):
        if not self.diff_mode:
            return None
        return _xmldiff.diff_view(self.obj, _xmldiff.facts_text(before, before_xml),
                                  _xmldiff.facts_text(after, after_xml))

    def result(self, changed, pool, diff):
        res = dict(
            changed=changed,
            pool=pool_facts(pool) if pool is not None else {},
            restart_required=self.restart_required,
            refreshed=self.refreshed,
            actions=self.actions,
        )
        if diff is not None:
            res['diff'] = diff
        return res


# ---------------------------------------------------------------------------------------------
# Volumes: reading

def lookup_volume(pool, name):
    try:
        return pool.storageVolLookupByName(name)
    except libvirt.libvirtError as exc:
        if is_error(exc, 'VIR_ERR_NO_STORAGE_VOL'):
            return None
        raise translate(exc, 'looking up volume %s' % name, 'storage pool %s' % pool.name())


def volume_xml(vol):
    with libvirt_call('reading the XML', 'volume %s' % vol.name()):
        return vol.XMLDesc(0)


def volume_facts(vol, pool_name=None):
    """name, pool, path, key, capacity, allocation (bytes), format, backing (path, format)."""
    xml = volume_xml(vol)
    root = _xmldiff.parse(xml, 'the XML of volume %s' % vol.name())
    with libvirt_call('reading the figures', 'volume %s' % vol.name()):
        _type, capacity, allocation = vol.info()
    backing = None
    store = root.find('backingStore')
    if store is not None and (store.findtext('path') or '').strip():
        fmt = store.find('format')
        backing = dict(path=store.findtext('path').strip(),
                       format=fmt.get('type') if fmt is not None else None)
    fmt = root.find('target/format')
    return dict(
        name=vol.name(),
        pool=pool_name,
        path=vol.path(),
        key=vol.key(),
        type=root.get('type'),
        capacity=capacity,
        allocation=allocation,
        format=fmt.get('type') if fmt is not None else None,
        backing=backing,
        xml=xml,
    )


def volumes_info(connection, pool=None, name=None):
    """virt_volume_info: the volumes of one active pool or of every active pool, by name."""
    if pool:
        pools = [get_pool(connection, pool)]
    else:
        with libvirt_call('listing storage pools', connection.uri):
            pools = connection.conn.listAllStoragePools(
                _flag('VIR_CONNECT_LIST_STORAGE_POOLS_ACTIVE'))
    result = []
    for p in sorted(pools, key=lambda x: x.name()):
        if not pool_is_active(p):
            if pool:
                raise VirtError('storage pool %s is not active; its volumes cannot be listed'
                                % pool, obj=pool, reason='pool inactive')
            continue
        if name:
            vol = lookup_volume(p, name)
            vols = [vol] if vol is not None else []
        else:
            with libvirt_call('listing volumes', 'storage pool %s' % p.name()):
                vols = p.listAllVolumes(0)
        for vol in sorted(vols, key=lambda v: v.name()):
            try:
                result.append(volume_facts(vol, p.name()))
            except VirtError as exc:
                if exc.code == _flag('VIR_ERR_NO_STORAGE_VOL'):
                    continue
                raise
    return result


# ---------------------------------------------------------------------------------------------
# Volumes: streams

def _sha256_of_file(path):
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(CHUNK), b''):
            digest.update(block)
    return digest.hexdigest()


def upload(connection, vol, src, obj):
    """Write the local file src into the volume from offset 0 (virStorageVolUpload)."""
    size = os.path.getsize(src)
    stream = connection.conn.newStream(0)
    try:
        with libvirt_call('uploading %s' % src, obj):
            vol.upload(stream, 0, size, 0)
            with open(src, 'rb') as f:
                stream.sendAll(lambda _st, nbytes, fh: fh.read(nbytes), f)
            stream.finish()
    except Exception:
        try:
            stream.abort()
        except Exception:  # pylint: disable=broad-except
            pass
        raise


def download(connection, vol, dest_dir, obj):
    """Read the whole volume into a new temporary file in dest_dir; its path."""
    fd, tmp = tempfile.mkstemp(prefix='.virt_volume-', dir=dest_dir)
    stream = connection.conn.newStream(0)
    try:
        with os.fdopen(fd, 'wb') as f:
            with libvirt_call('downloading', obj):
                vol.download(stream, 0, 0, 0)
                stream.recvAll(lambda _st, data, fh: fh.write(data), f)
                stream.finish()
    except Exception:
        try:
            stream.abort()
        except Exception:  # pylint: disable=broad-except
            pass
        os.unlink(tmp)
        raise
    return tmp


def is_zeroed(connection, vol, obj):
    """True when every byte of the volume reads as zero (stops at the first other byte)."""
    stream = connection.conn.newStream(0)
    with libvirt_call('reading the content', obj):
        vol.download(stream, 0, 0, 0)
        while True:
            data = stream.recv(CHUNK)
            if not data:
                stream.finish()
                return True
            if data.count(0) != len(data):
                stream.abort()
                return False


# ---------------------------------------------------------------------------------------------
# Volumes: the manager

class VolumeManager(ObjectManager):
    """Compare the desired volume with the live one, then apply (unless check mode)."""

    def __init__(self, connection, params, check_mode=False, diff_mode=False, warn=None):
        ObjectManager.__init__(self, connection, params, check_mode, diff_mode, warn)
        self.actions = []

    def run(self):
        p = self.params
        self.obj = 'volume %s/%s' % (p['pool'], p['name'])
        pool = get_pool(self.connection, p['pool'])
        if not pool_is_active(pool):
            raise VirtError('storage pool %s is not active; start it first (virt_pool '
                            'state: active)' % p['pool'], obj=p['pool'], reason='pool inactive')
        self.pool = pool
        self.pool_type = _pool_type(pool)
        self.capacity = parse_size(p['capacity']) if p.get('capacity') else None
        if self.capacity is not None and self.capacity <= 0:
            raise VirtError('capacity must be more than 0 bytes, got %s' % p['capacity'],
                            reason='invalid size')
        if p.get('backing_format') and not p.get('backing_file'):
            raise VirtError('backing_format needs backing_file', reason='invalid arguments')
        if p.get('upload_src') and not os.path.isfile(p['upload_src']):
            raise VirtError('upload_src %s is not a readable file' % p['upload_src'],
                            reason='missing file')
        if p.get('download_dest'):
            parent = os.path.dirname(os.path.abspath(p['download_dest']))
            if not os.path.isdir(parent):
                raise VirtError('the directory of download_dest %s does not exist'
                                % p['download_dest'], reason='missing directory')
        if self.pool_type == LOGICAL and p['state'] != 'absent':
            self._check_logical()
        vol = lookup_volume(pool, p['name'])
        if self.pool_type in LUN_POOLS:
            self._check_lun_pool(vol)
        if p['state'] == 'absent':
            return self.absent(vol)
        return self.ensure(vol)

    def _check_logical(self):
        """What a logical (LVM) pool cannot do fails before anything is changed; libvirt would
        ignore a qcow2 format and turn a backing file into an LVM snapshot of that path."""
        p = self.params
        where = '%s: storage pool %s is a logical (LVM) pool, whose volumes are raw logical ' \
                'volumes' % (self.obj, p['pool'])
        if p.get('format') == 'qcow2':
            raise VirtError('%s; format qcow2 is not possible there (leave format out or use raw, '
                            'or put qcow2 images in a dir pool) (nothing was changed)' % where,
                            obj=p['name'], reason='format not supported')
        if p.get('backing_file'):
            raise VirtError('%s; a linked clone (backing_file) is not possible there: use '
                            'clone_from for a full copy (nothing was changed)' % where,
                            obj=p['name'], reason='backing file not supported')

    def _check_lun_pool(self, vol):
        """In a pool of LUNs (iscsi, iscsi-direct, scsi, mpath) libvirt lists the volumes but
        cannot create, clone, resize or delete them: what would need that fails before anything
        is changed, in check mode too, instead of a generic "storage pool does not support ..."
        from libvirt halfway through a run."""
        p = self.params
        pool_type = self.pool_type
        where = '%s: storage pool %s is an %s pool, whose volumes are %s; libvirt lists them ' \
                '(virt_pool refresh: true rescans) but cannot create, clone, resize or delete ' \
                'them' % (self.obj, p['pool'], pool_type, LUN_SOURCES[pool_type])
        unchanged = ' (nothing was changed)'
        if p['state'] == 'absent':
            if vol is not None:
                raise VirtError('%s: remove the LUN where it is made (for example on the iSCSI '
                                'target), then refresh the pool%s' % (where, unchanged),
                                obj=p['name'], reason='delete not supported')
            return
        if vol is None:
            with libvirt_call('listing volumes', 'storage pool %s' % p['pool']):
                names = sorted(self.pool.listVolumes())
            raise VirtError('%s. There is no volume %s: make the LUN where it is made (for example '
                            'on the iSCSI target), then refresh the pool. Volumes of the pool: %s%s'
                            % (where, p['name'], ', '.join(names) or '(none)', unchanged),
                            obj=p['name'], reason='create not supported')
        if self.capacity is not None and p['resize']:
            with libvirt_call('reading the figures', self.obj):
                capacity = vol.info()[1]
            if self.capacity != capacity:
                raise VirtError('%s has %d bytes; capacity %s (%d bytes) needs a resize, which '
                                'libvirt cannot do in an %s pool: resize the LUN on its target, '
                                'then refresh the pool, or set resize: false%s'
                                % (self.obj, capacity, p['capacity'], self.capacity, pool_type,
                                   unchanged), obj=p['name'], reason='resize not supported')
        if pool_type in NO_STREAM_POOLS:
            what = None
            if p.get('upload_src') and p['force_upload']:
                what = 'upload_src (virStorageVolUpload)'
            elif p.get('download_dest'):
                what = 'download_dest (virStorageVolDownload)'
            elif p['state'] == 'wiped':
                what = 'state wiped (it reads the volume, virStorageVolDownload, to know ' \
                       'whether it is all zeroes already)'
            if what:
                raise VirtError('%s: %s is not possible there: libvirt\'s %s backend talks iSCSI '
                                'itself and cannot read or write volume data through streams%s'
                                % (self.obj, what, pool_type, unchanged), obj=p['name'],
                                reason='streams not supported')

    def absent(self, vol):
        before = self.summary(vol)
        if vol is not None:
            self.actions = ['delete']
            if not self.check_mode:
                with libvirt_call('deleting', self.obj):
                    vol.delete(0)
        return self.result(vol is not None, None, self.diff(before, None))

    # -- present / wiped --------------------------------------------------------------------

    def ensure(self, vol):
        p = self.params
        before = self.summary(vol)
        plan = []
        after = dict(before) if before else {}
        source = None
        if vol is None:
            source = self._clone_source() if p.get('clone_from') else None
            capacity = self.capacity
            if capacity is None and source is not None:
                with libvirt_call('reading the figures', 'volume %s' % source.name()):
                    capacity = source.info()[1]
            if capacity is None and p.get('upload_src'):
                capacity = os.path.getsize(p['upload_src'])
            if capacity is None:
                raise VirtError('%s does not exist; give capacity (or clone_from or upload_src) '
                                'to create it' % self.obj, obj=p['name'], reason='no capacity')
            self.new_capacity = capacity
            plan.append('clone from %s' % source.name() if source is not None else 'create')
            after = dict(capacity=capacity, format=p.get('format') or (
                'raw' if source is None else self._format_of(source)),
                backing=p.get('backing_file'))
            if self.pool_type == LOGICAL:
                after['format'] = None  # LVs have no format
            if source is not None and self.capacity is not None:
                with libvirt_call('reading the figures', 'volume %s' % source.name()):
                    source_capacity = source.info()[1]
                if self.capacity > source_capacity and self.pool_type == LOGICAL:
                    # No resize in logical pools: the copy is made at its final size.
                    self.new_capacity = self.capacity
                    after['capacity'] = self.capacity
                elif self.capacity > source_capacity:
                    plan.append('resize')
                    after['capacity'] = self.capacity
                elif self.capacity < source_capacity:
                    raise VirtError('%s: capacity %s is smaller than the volume %s it is cloned '
                                    'from (%d bytes); a clone cannot be smaller'
                                    % (self.obj, p['capacity'], source.name(), source_capacity),
                                    obj=p['name'], reason='shrink')
        else:
            self._check_fixed(vol, before)
            if self.capacity is not None and self.capacity != before['capacity'] and p['resize']:
                if self.capacity < before['capacity'] and not p['shrink']:
                    raise VirtError('%s has %d bytes; capacity %s (%d bytes) would shrink it, '
                                    'which destroys data at its end: set shrink: true to do it '
                                    '(nothing was changed)' % (self.obj, before['capacity'],
                                                               p['capacity'], self.capacity),
                                    obj=p['name'], reason='shrink')
                if self.pool_type == LOGICAL:
                    raise VirtError('%s has %d bytes; capacity %s (%d bytes) needs a resize, and '
                                    'libvirt %s cannot resize the volumes of a logical (LVM) '
                                    'pool. Resize the logical volume with lvresize, then refresh '
                                    'the pool (virt_pool refresh: true), or set resize: false '
                                    '(nothing was changed)'
                                    % (self.obj, before['capacity'], p['capacity'], self.capacity,
                                       version_string(self.connection.lib_version)),
                                    obj=p['name'], reason='resize not supported')
                plan.append('shrink' if self.capacity < before['capacity'] else 'resize')
                after['capacity'] = self.capacity
        if p.get('upload_src') and (vol is None or p['force_upload']):
            plan.append('upload')
        if p['state'] == 'wiped':
            if after.get('format') == 'qcow2':
                raise VirtError('%s is a qcow2 volume: wiping overwrites its qcow2 header with '
                                'zeroes and leaves a raw file; wipe raw volumes only, or remove '
                                'and recreate the volume (nothing was changed)' % self.obj,
                                obj=p['name'], reason='wipe qcow2')
            # A new empty raw volume reads as zeroes already; a clone or an upload does not.
            if source is not None or 'upload' in plan or (
                    vol is not None and not is_zeroed(self.connection, vol, self.obj)):
                plan.append('wipe')
        if 'upload' in plan:
            after['content'] = 'uploaded from %s' % p['upload_src']
        if 'wipe' in plan:
            after['content'] = 'zeroes'
        if 'content' in after and before:
            before['content'] = 'data'
        self.actions = list(plan)

        if not self.check_mode and plan:
            vol = self.apply(vol, source, plan)
        download_changed = False
        if p.get('download_dest'):
            download_changed = self.download(vol)
        changed = bool(plan) or download_changed
        diff = self.diff(before, after)
        return self.result(changed, vol, diff)

    def _check_fixed(self, vol, before):
        """What libvirt cannot change on an existing volume fails clearly."""
        p = self.params
        if p.get('format') and before['format'] and p['format'] != before['format']:
            raise VirtError('%s exists with format %s; format %s was asked and libvirt cannot '
                            'convert a volume in place: remove it first (state: absent) '
                            '(nothing was changed)' % (self.obj, before['format'], p['format']),
                            obj=p['name'], reason='format mismatch')
        if p.get('backing_file'):
            backing = before.get('backing')
            if not backing or os.path.normpath(backing) != os.path.normpath(p['backing_file']):
                raise VirtError('%s exists with backing file %s; backing_file %s was asked and '
                                'this module does not rebase volumes (nothing was changed)'
                                % (self.obj, backing or '(none)', p['backing_file']),
                                obj=p['name'], reason='backing mismatch')

    def _clone_source(self):
        ref = self.params['clone_from']
        if ref.startswith('/'):
            try:
                return self.conn.storageVolLookupByPath(ref)
            except libvirt.libvirtError as exc:
                raise translate(exc, 'looking up the clone source %s' % ref, self.obj)
        vol = lookup_volume(self.pool, ref)
        if vol is None:
            raise VirtError('%s: clone_from volume %s not found in storage pool %s'
                            % (self.obj, ref, self.pool.name()), obj=self.params['name'],
                            reason='clone source missing')
        return vol

    @staticmethod
    def _format_of(vol):
        fmt = _xmldiff.parse(volume_xml(vol)).find('target/format')
        return fmt.get('type') if fmt is not None else None

    def volume_xml_for_create(self, capacity, fmt=None):
        """The XML of a new volume: sparse (allocation 0), format as asked (a clone keeps its
        source's format: libvirt would convert it to raw otherwise).

        In a logical pool: fully allocated, no format. libvirt turns allocation < capacity into
        `lvcreate -L 1K --type snapshot --virtualsize`, an old-style sparse LV whose 1-extent
        copy-on-write area overflows (and the LV becomes invalid) once the guest writes more."""
        p = self.params
        logical = self.pool_type == LOGICAL
        fmt = None if logical else (p.get('format') or fmt)
        etree = _xmldiff.etree
        root = etree.Element('volume')
        etree.SubElement(root, 'name').text = p['name']
        cap = etree.SubElement(root, 'capacity', unit='bytes')
        cap.text = str(capacity)
        alloc = etree.SubElement(root, 'allocation', unit='bytes')
        alloc.text = str(capacity) if logical else '0'
        if fmt:
            target = etree.SubElement(root, 'target')
            etree.SubElement(target, 'format', type=fmt)
        if p.get('backing_file'):
            store = etree.SubElement(root, 'backingStore')
            etree.SubElement(store, 'path').text = p['backing_file']
            etree.SubElement(store, 'format', type=p.get('backing_format') or 'qcow2')
        return _xmldiff.render(root)

    def apply(self, vol, source, plan):
        p = self.params
        for step in plan:
            if step == 'create':
                xml = self.volume_xml_for_create(self.new_capacity)
                with libvirt_call('creating', self.obj):
                    vol = self.pool.createXML(xml, 0)
            elif step.startswith('clone from'):
                with libvirt_call('cloning from %s' % source.name(), self.obj):
                    capacity = source.info()[1]
                    if self.pool_type == LOGICAL:
                        capacity = max(capacity, self.new_capacity)
                    xml = self.volume_xml_for_create(capacity, self._format_of(source))
                    vol = self.pool.createXMLFrom(xml, source, 0)
            elif step in ('resize', 'shrink'):
                flags = _flag('VIR_STORAGE_VOL_RESIZE_SHRINK') if step == 'shrink' else 0
                with libvirt_call('resizing to %d bytes' % self.capacity, self.obj):
                    vol.resize(self.capacity, flags)
            elif step == 'upload':
                upload(self.connection, vol, p['upload_src'], self.obj)
            elif step == 'wipe':
                with libvirt_call('wiping', self.obj):
                    vol.wipe(0)
        return vol

    def download(self, vol):
        """Download into download_dest when it is missing or differs; True when it did (or
        would in check mode). The comparison reads the whole volume, also in check mode."""
        dest = self.params['download_dest']
        if vol is None:  # check mode, volume not created yet
            self.actions.append('download')
            return True
        tmp = download(self.connection, vol, os.path.dirname(os.path.abspath(dest)), self.obj)
        try:
            if os.path.isfile(dest) and os.path.getsize(dest) == os.path.getsize(tmp) and \
                    _sha256_of_file(dest) == _sha256_of_file(tmp):
                return False
            self.actions.append('download')
            if not self.check_mode:
                os.rename(tmp, dest)
                tmp = None
            return True
        finally:
            if tmp is not None and os.path.exists(tmp):
                os.unlink(tmp)

    def summary(self, vol):
        if vol is None:
            return None
        facts = volume_facts(vol, self.params['pool'])
        return dict(capacity=facts['capacity'], format=facts['format'],
                    backing=(facts['backing'] or {}).get('path'))

    def diff(self, before, after):
        if not self.diff_mode:
            return None
        keys = ('capacity', 'format', 'backing', 'content')
        return _xmldiff.diff_view(
            self.obj,
            _xmldiff.facts_text(dict(before, state='present') if before else dict(state='absent'), '',
                                ('state',) + keys),
            _xmldiff.facts_text(dict(after, state=self.params['state']) if after is not None
                                else dict(state='absent'), '', ('state',) + keys))

    def result(self, changed, vol, diff):
        facts = {}
        if vol is not None:
            facts = volume_facts(vol, self.params['pool'])
        res = dict(changed=changed, volume=facts, actions=self.actions)
        if diff is not None:
            res['diff'] = diff
        return res
