# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Private to the virtops.libvirt collection: may change without notice.
"""Storage pools: the desired definition compared with the live pool, then applied; what
libvirt would refuse to define, foreseen; the facts virt_pool_info returns.

Used by virt_pool and virt_pool_info (volumes are in _volume.py). Every helper raises
VirtError; nothing here exits.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re

from ansible_collections.virtops.libvirt.plugins.module_utils._libvirt import (
    VirtError,
    is_error,
    libvirt,
    libvirt_call,
    lookup_or_none,
    optional_flag as _flag,
    read_autostart,
    read_persistent,
    translate,
)
from ansible_collections.virtops.libvirt.plugins.module_utils._errors import (
    REASON_CANNOT_CHECK_POOL_EMPTY,
    REASON_DEFINE_REFUSED,
    REASON_DELETE_NOT_SUPPORTED,
    REASON_INVALID_XML,
    REASON_POOL_NOT_EMPTY,
    REASON_TYPE_MISMATCH,
)
from ansible_collections.virtops.libvirt.plugins.module_utils._lifecycle import DefinedObjectManager, Plan
from ansible_collections.virtops.libvirt.plugins.module_utils._pool_profile import (
    DERIVED_POOL_TARGETS,
    STORAGE_POOL,
    pool_source_name,
    sanitize_path,
)
from ansible_collections.virtops.libvirt.plugins.module_utils._vocabulary import is_local_uri
from ansible_collections.virtops.libvirt.plugins.module_utils.xml import _compare, _document


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


# ---------------------------------------------------------------------------------------------
# Pools: reading

def lookup_pool(connection, name):
    """The pool called name, or None when there is none."""
    return lookup_or_none(lambda: connection.conn.storagePoolLookupByName(name), ('VIR_ERR_NO_STORAGE_POOL',),
                          'looking up storage pool', name)


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
    return read_persistent(pool, 'storage pool %s' % pool.name())


def pool_autostart(pool):
    return read_autostart(pool, 'storage pool %s' % pool.name())


def pool_type_of(pool):
    return _document.parse(pool_xml(pool), 'the XML of storage pool %s' % pool.name()).get('type')


def pool_facts(pool):
    """name, uuid, state, autostart, persistent, capacity, allocation, available (bytes), type,
    path, volume count and the live XML."""
    obj = 'storage pool %s' % pool.name()
    with libvirt_call('reading the figures', obj):
        state, capacity, allocation, available = pool.info()
    xml = pool_xml(pool)
    root = _document.parse(xml, 'the XML of %s' % obj)
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


def read_pools(connection, params, warn):
    """virt_pool_info's result."""
    return dict(pools=pools_info(connection, name=params['name'], state=params['state']))


# ---------------------------------------------------------------------------------------------
# Pools: the desired definition

class DesiredPool:
    """The user's pool XML, parsed and checked against the name given."""

    def __init__(self, xml, name=None):
        self.root, self.name, self.uuid = _document.parse_desired(xml, 'pool', 'storage pool', name)
        if not self.root.get('type'):
            raise VirtError("the storage pool XML has no type (<pool type='dir'>, "
                            "<pool type='logical'>, ...)", reason=REASON_INVALID_XML)
        self.type = self.root.get('type')
        self.path = (self.root.findtext('target/path') or '').strip() or None

    def xml_for_define(self, uuid=None):
        """The XML to define; with the existing pool's uuid when the user did not write one."""
        if uuid is not None and self.uuid is None:
            return _document.render(_document.with_uuid(self.root, uuid))
        return _document.render(self.root)


def target_missing(connection, pool_type, path):
    """True when a directory pool's target directory is missing on this (local) host; None when
    it cannot be known (remote URI, a pool type without a target directory)."""
    if pool_type not in DIRECTORY_POOLS or not path or not is_local_uri(connection.uri):
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
    root = _document.parse(capabilities, 'the storage pool capabilities')
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
        self.dir = sanitize_path(source_dir.get('path')) \
            if source_dir is not None and source_dir.get('path') else None
        if self.dir is None and self.type == 'gluster':
            self.dir = '/'
        self.source_name = root.findtext('source/name') or None
        if self.type in NAMED_SOURCE_POOLS:
            self.source_name = pool_source_name(root)
        iqn = root.find('source/initiator/iqn')
        self.iqn = iqn.get('name') if iqn is not None else None
        self.target = None
        if self.type in DERIVED_POOL_TARGETS:
            self.target = DERIVED_POOL_TARGETS[self.type] + self.source_name
        elif self.type not in NETWORK_POOLS and root.findtext('target/path'):
            self.target = sanitize_path(root.findtext('target/path'))
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
            other = PoolSource(_document.parse(pool.XMLDesc(0)))
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

class PoolManager(DefinedObjectManager):
    """virt_pool: compare the desired pool with the live one, then apply (unless check mode).
    params: the module's parameters (POOL_ARGS)."""

    kind = 'storage pool'
    argument_spec = POOL_ARGS
    desired_type = DesiredPool
    state_of = staticmethod(pool_state)
    persistent_of = staticmethod(pool_persistent)
    autostart_of = staticmethod(pool_autostart)

    def __init__(self, connection, params, check_mode=False, diff_mode=False, warn=None):
        DefinedObjectManager.__init__(self, connection, params, check_mode, diff_mode, warn)
        self.restart_required = False
        self.refreshed = False
        self.defines = False
        self.refresh = False

    def wants_absent(self):
        return self.params['state'] in ('absent', 'deleted')

    def find(self, name):
        return lookup_pool(self.connection, name)

    # -- absent / deleted -------------------------------------------------------------------

    def plan_absent(self, live):
        if live is None:
            return Plan()
        delete = self.params['state'] == 'deleted'
        before_state, persistent, before_autostart = self.read_before(live)
        before_xml = _compare.normalized(pool_inactive_xml(live), STORAGE_POOL)
        active = pool_is_active(live)
        pool_type = pool_type_of(live)
        if delete and pool_type in LUN_POOLS:
            raise VirtError('%s is an %s pool, whose volumes are %s: libvirt has no storage of '
                            'it to delete (virStoragePoolDelete is not supported for this type). '
                            'Use state absent to stop and undefine it, and remove the LUNs where '
                            'they are made (nothing was changed)'
                            % (self.obj, pool_type, LUN_SOURCES[pool_type]), obj=self.name,
                            reason=REASON_DELETE_NOT_SUPPORTED)
        if delete and not active and pool_type == LOGICAL:
            # The volumes of an inactive pool cannot be listed, and deleting a logical pool
            # removes the volume group with every logical volume in it.
            raise VirtError('%s is an inactive logical (LVM) pool: state deleted removes its '
                            'volume group (vgremove), and the volumes of an inactive pool cannot '
                            'be listed to check that it holds no logical volume; start it '
                            '(state: active) first, then delete it (nothing was changed)'
                            % self.obj, obj=self.name, reason=REASON_CANNOT_CHECK_POOL_EMPTY)
        if delete and active:
            with libvirt_call('listing volumes', self.obj):
                names = live.listVolumes()
            if names:
                raise VirtError('%s still has %d volume(s) (%s); state deleted removes the '
                                'storage of an empty pool only: delete the volumes first '
                                '(nothing was changed)' % (self.obj, len(names),
                                                           ', '.join(sorted(names)[:5])),
                                obj=self.name, reason=REASON_POOL_NOT_EMPTY)
        # A pool that exists is active or persistent: there is always a step.
        plan = Plan(before=dict(state=before_state, autostart=before_autostart),
                    after=dict(state='absent'), before_xml=before_xml, changed=True)
        if active:
            plan.add('stop', self._stop())
        if delete:
            plan.add('delete storage', self.call_step('deleting the storage (virStoragePoolDelete)',
                                                      lambda pool: pool.delete(0)))
        if persistent:
            plan.add('undefine', self.call_step('undefining', lambda pool: pool.undefine()))
        return plan

    # -- present / active / inactive --------------------------------------------------------

    def plan_present(self, live):
        p = self.params
        state = p['state']
        desired = self.desired
        exists = live is not None
        before_state, persistent, before_autostart = self.read_before(live)
        active = exists and pool_is_active(live)

        intent = None
        if desired is not None:
            self.check_uuid(live, 'pool')
            stored = pool_inactive_xml(live) if exists else None
            intent = _compare.compare(desired.root, stored, STORAGE_POOL)
            if exists and intent.changed:
                live_type = _document.parse(stored).get('type')
                if live_type != desired.type:
                    raise VirtError('%s is a %s pool; the XML asks for a %s pool and libvirt '
                                    'cannot change a pool\'s type: remove it first (state: '
                                    'absent) (nothing was changed)'
                                    % (self.obj, live_type, desired.type), obj=self.name,
                                    reason=REASON_TYPE_MISMATCH)
        define = self.needs_define(live, persistent, intent)
        if define and desired is not None:
            # Both modes: check mode reports what the real define would be refused for, and
            # the real run fails the same way before it changes anything.
            refusal = define_refusal(self.connection, desired)
            if refusal:
                raise VirtError('defining on %s failed: %s (nothing was changed)'
                                % (self.obj, refusal), action='defining', obj=self.name,
                                reason=REASON_DEFINE_REFUSED)

        pending = False
        if active and desired is not None:
            pending = define or _compare.compare(desired.root, pool_xml(live),
                                                 STORAGE_POOL).changed
        restart = pending and p['restart_on_change'] and state in ('present', 'active')

        plan = Plan()
        if define:
            plan.add('define', self._define)
        after_active = active
        if restart:
            plan.add('stop', self._stop())
            after_active = False
        want_active = {'active': True, 'inactive': False}.get(state, active)
        if p['build'] and not after_active and self._needs_build(live, desired, exists):
            plan.add('build', self.call_step('building (virStoragePoolBuild)', lambda pool: pool.build(0)))
        if want_active and not after_active:
            plan.add('start', self.call_step('starting', lambda pool: pool.create(0)))
        elif not want_active and after_active:
            plan.add('stop', self._stop())
        after_state = 'active' if want_active else (
            'inactive' if exists or define else 'absent')
        if exists and not define and not restart and want_active == active:
            after_state = before_state
        after_autostart = self.plan_autostart(plan, before_autostart)
        self.restart_required = pending and not restart and want_active
        self.defines = define and desired is not None
        # A pool started now has just been scanned; refresh rescans one that was running.
        self.refresh = p['refresh'] and want_active and 'start' not in plan.names

        plan.show(dict(state=before_state, autostart=before_autostart),
                  dict(state=after_state, autostart=after_autostart), intent, define)
        return plan

    def _needs_build(self, pool, desired, exists):
        """Build a new pool; an existing one when its target directory is missing. Never a
        pool type that libvirt has nothing to build for (LUN_POOLS: the build would do nothing
        and still be reported)."""
        if desired is not None:
            pool_type, path = desired.type, desired.path
        else:
            root = _document.parse(pool_inactive_xml(pool))
            pool_type, path = root.get('type'), (root.findtext('target/path') or '').strip()
        if pool_type in LUN_POOLS:
            return False
        if not exists:
            return True
        return bool(target_missing(self.connection, pool_type, path))

    # -- steps ------------------------------------------------------------------------------

    def _define(self, pool):
        if self.desired is not None:
            xml = self.desired.xml_for_define(pool.UUIDString() if pool is not None else None)
        else:
            xml = pool_xml(pool)
        with libvirt_call('defining', self.obj):
            return self.conn.storagePoolDefineXML(xml, 0)

    def _stop(self):
        return self.call_step('stopping (destroy)', lambda pool: pool.destroy())

    # -- after the steps, and the result -------------------------------------------------------

    def after_apply(self, live, plan):
        """After a define from the user's XML: anything libvirt did not keep would cause a
        change on every run."""
        if self.wants_absent() or not self.defines:
            return live
        self.warn_not_kept(_compare.compare(self.desired.root, pool_inactive_xml(live), STORAGE_POOL))
        return live

    def finish(self, live, plan):
        """refresh: rescan the volumes of a running live (no action: it changes no setting)."""
        if self.refresh and not self.wants_absent() and not self.check_mode:
            with libvirt_call('refreshing', self.obj):
                live.refresh(0)
            self.refreshed = True
        return live

    def result_fields(self, live, plan):
        return dict(
            pool=pool_facts(live) if live is not None and not self.wants_absent() else {},
            restart_required=self.restart_required,
            refreshed=self.refreshed,
            actions=list(self.actions),
        )
