# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Private to the virtops.libvirt collection: may change without notice.
"""Migration of a domain between two libvirt hosts: where is it, where should it be, then move it.

Used by virt_migrate. Every helper raises VirtError (MigrateError); nothing here exits.

The desired state is "the domain lives on the destination". The plan compares that with what the
two hosts report (by name and uuid) and chooses one of: nothing to do, remove a definition left on
the source, live (or paused) migration of an active domain, offline migration of a shut-off
persistent domain (moves the definition only). Then one virDomainMigrate3 (or
virDomainMigrateToURI3 for peer-to-peer) with typed parameters does the work, watched from this
thread so that a timeout can abort, suspend or switch to post-copy.

Facts this code relies on (libvirt 9.0, QEMU 7.2, seen on a real pair of daemons):
- the source refuses a destination with its own host UUID or hostname;
- disks on a local (not shared) filesystem need VIR_MIGRATE_UNSAFE unless their data is copied
  ("Migration without shared storage is unsafe");
- a destination XML (VIR_MIGRATE_PARAM_DEST_XML) changes only the running definition; the
  persistent one comes from the source unless VIR_MIGRATE_PARAM_PERSIST_XML is given too;
- with copy_storage the destination image must exist, or lie in a storage pool of the
  destination, which libvirt then creates it in;
- completed job statistics are kept by the destination domain (VIR_DOMAIN_JOB_STATS_COMPLETED).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import threading
import time

from ansible_collections.virtops.libvirt.plugins.module_utils._libvirt import (
    Connection,
    VirtError,
    is_error,
    libvirt,
    libvirt_call,
    optional_flag as _flag,
)
from ansible_collections.virtops.libvirt.plugins.module_utils._errors import (
    REASON_INCOMPATIBLE_DESTINATION,
    REASON_INVALID_OPTION,
    REASON_MIGRATION_FAILED,
    REASON_NAME_CLASH,
    REASON_NOT_FOUND,
    REASON_SPLIT_BRAIN,
    REASON_STORAGE,
    REASON_UNREACHABLE,
)
from ansible_collections.virtops.libvirt.plugins.module_utils._disks import xml_disks
from ansible_collections.virtops.libvirt.plugins.module_utils.xml import _document
from ansible_collections.virtops.libvirt.plugins.module_utils._lifecycle import ObjectManager, Plan
from ansible_collections.virtops.libvirt.plugins.module_utils._vocabulary import ACTIVE_STATES, domain_state, is_local_uri


MIGRATE_ARGS = dict(
    name=dict(type='str', required=True),
    dest_uri=dict(type='str', required=True),
    dest_username=dict(type='str'),
    dest_password=dict(type='str', no_log=True),
    dest_name=dict(type='str'),
    migrate_uri=dict(type='str'),
    live=dict(type='bool', default=True),
    persistent=dict(type='bool', default=True),
    undefine_source=dict(type='bool', default=True),
    copy_storage=dict(type='str', choices=['none', 'all', 'incremental'], default='none'),
    migrate_disks=dict(type='list', elements='str'),
    disk_paths=dict(type='dict'),
    dest_xml=dict(type='str'),
    bandwidth=dict(type='int'),
    compressed=dict(type='bool', default=False),
    auto_converge=dict(type='bool', default=False),
    postcopy=dict(type='bool', default=False),
    parallel_connections=dict(type='int'),
    p2p=dict(type='bool', default=False),
    tunnelled=dict(type='bool', default=False),
    unsafe=dict(type='bool', default=False),
    max_downtime=dict(type='int'),
    timeout=dict(type='int'),
    timeout_action=dict(type='str', choices=['abort', 'suspend', 'postcopy'], default='abort'),
)

POLL_INTERVAL = 0.5

# Job statistics returned, in the order the documentation lists them (libvirt's own key names).
JOB_KEYS = (
    'time_elapsed', 'setup_time', 'downtime', 'data_total', 'data_processed', 'data_remaining',
    'memory_total', 'memory_processed', 'memory_remaining', 'memory_iteration', 'memory_bps',
    'memory_dirty_rate', 'memory_postcopy_requests', 'disk_total', 'disk_processed',
    'disk_remaining', 'disk_bps', 'compression_bytes', 'auto_converge_throttle',
)


class MigrateError(VirtError):
    """A migration that cannot or must not be done, explained for the user."""


# ---------------------------------------------------------------------------------------------
# Input checks that need no host

def validate(opts, source_uri):
    """Refuse option combinations libvirt would refuse (or that make no sense) before any call."""
    name = opts['name']
    if opts['dest_uri'] == source_uri:
        raise MigrateError('dest_uri is the source URI %s; a domain cannot migrate to the host it runs '
                           'on' % source_uri, obj=name, reason=REASON_INVALID_OPTION)
    if opts.get('tunnelled') and not opts.get('p2p'):
        raise MigrateError('tunnelled needs p2p=true (the source daemon carries the data over its own '
                           'connection to the destination)', obj=name, reason=REASON_INVALID_OPTION)
    if opts.get('tunnelled') and opts.get('migrate_uri'):
        raise MigrateError('migrate_uri does not apply to tunnelled migration (the data goes over the '
                           'libvirt connection)', obj=name, reason=REASON_INVALID_OPTION)
    if opts.get('timeout_action') == 'postcopy' and opts.get('timeout') and not opts.get('postcopy'):
        raise MigrateError('timeout_action=postcopy needs postcopy=true', obj=name, reason=REASON_INVALID_OPTION)
    if opts.get('migrate_disks') and opts.get('copy_storage', 'none') == 'none':
        raise MigrateError('migrate_disks needs copy_storage=all or incremental', obj=name,
                           reason=REASON_INVALID_OPTION)
    if opts.get('dest_xml') and opts.get('disk_paths'):
        raise MigrateError('give dest_xml or disk_paths, not both', obj=name, reason=REASON_INVALID_OPTION)
    for opt in ('bandwidth', 'timeout', 'max_downtime', 'parallel_connections'):
        if opts.get(opt) is not None and opts[opt] < 1:
            raise MigrateError('%s must be 1 or more, got %s' % (opt, opts[opt]), obj=name,
                               reason=REASON_INVALID_OPTION)
    if opts.get('parallel_connections') and opts.get('tunnelled'):
        raise MigrateError('parallel_connections does not work with tunnelled migration', obj=name,
                           reason=REASON_INVALID_OPTION)


# ---------------------------------------------------------------------------------------------
# Where the domain is

def domain_facts(conn, name):
    """What a host knows of the domain called name: dict(name, uuid, state, active, persistent),
    or None when it has no such domain."""
    dom = conn.lookup_domain(name)
    if dom is None:
        return None
    label = 'domain %s on %s' % (name, conn.uri)
    with libvirt_call('reading the domain', label):
        persistent = bool(dom.isPersistent())
        uuid = dom.UUIDString()
    state = domain_state(dom)
    return dict(name=name, uuid=uuid, state=state, active=state in ACTIVE_STATES,
                persistent=persistent, host=conn.uri)


def plan(source, dest, opts):
    """Decide what to do from what both hosts report. source, dest: domain_facts() or None.

    Returns dict(action, mode): action is one of none, undefine_source, migrate; mode is live,
    paused (non-live copy of an active domain), offline, or None.
    """
    name = opts['name']
    dest_name = opts.get('dest_name') or name
    dest_uri = opts['dest_uri']
    if source is None and dest is None:
        raise MigrateError('domain %s is on neither host: not on the source %s and not (as %s) on the '
                           'destination %s' % (name, opts.get('uri'), dest_name, dest_uri), obj=name,
                           reason=REASON_NOT_FOUND)
    if source is not None and dest is not None and source['uuid'] != dest['uuid']:
        raise MigrateError('the destination %s already has a different domain called %s (uuid %s; the '
                           'source domain has uuid %s); nothing was changed. Pick another dest_name or '
                           'remove that domain' % (dest_uri, dest_name, dest['uuid'], source['uuid']),
                           obj=name, reason=REASON_NAME_CLASH)
    if source is not None and dest is not None and source['active'] and dest['active']:
        raise MigrateError('domain %s (uuid %s) is active on both hosts, %s on the source and %s on the '
                           'destination %s (split brain); nothing was changed. Stop the copy that must not '
                           'run' % (name, source['uuid'], source['state'], dest['state'], dest_uri),
                           obj=name, reason=REASON_SPLIT_BRAIN)
    if dest is not None and (source is None or not source['active']):
        if source is not None and opts.get('undefine_source', True):
            # A definition left behind on the source (for example an earlier undefine_source=false).
            return dict(action='undefine_source', mode=None)
        return dict(action='none', mode=None)
    # The domain is on the source only, or active there with an inactive copy on the destination.
    if source['active']:
        return dict(action='migrate', mode='live' if opts.get('live', True) else 'paused')
    if not source['persistent']:  # pragma: no cover - a transient domain is always active
        raise MigrateError('domain %s is transient and not running; there is nothing to migrate' % name,
                           obj=name)
    if not opts.get('persistent', True):
        raise MigrateError('domain %s is shut off: only its definition can move (offline migration), '
                           'which needs persistent=true' % name, obj=name, reason=REASON_INVALID_OPTION)
    if opts.get('copy_storage', 'none') != 'none':
        raise MigrateError('domain %s is shut off: offline migration moves only the definition and '
                           'cannot copy storage (copy_storage=%s); copy the images first, or start the '
                           'domain' % (name, opts['copy_storage']), obj=name, reason=REASON_INVALID_OPTION)
    return dict(action='migrate', mode='offline')


# ---------------------------------------------------------------------------------------------
# Flags and typed parameters

FLAG_OPTIONS = (
    ('persistent', 'VIR_MIGRATE_PERSIST_DEST'),
    ('undefine_source', 'VIR_MIGRATE_UNDEFINE_SOURCE'),
    ('compressed', 'VIR_MIGRATE_COMPRESSED'),
    ('auto_converge', 'VIR_MIGRATE_AUTO_CONVERGE'),
    ('postcopy', 'VIR_MIGRATE_POSTCOPY'),
    ('p2p', 'VIR_MIGRATE_PEER2PEER'),
    ('tunnelled', 'VIR_MIGRATE_TUNNELLED'),
    ('unsafe', 'VIR_MIGRATE_UNSAFE'),
)


def flag_names(opts, mode):
    """The VIR_MIGRATE_* flags for the options and mode, by name (returned to the user)."""
    names = []
    if mode == 'live':
        names.append('VIR_MIGRATE_LIVE')
    if mode == 'offline':
        names.append('VIR_MIGRATE_OFFLINE')
    for opt, flag in FLAG_OPTIONS:
        if opts.get(opt, opt in ('persistent', 'undefine_source')):
            if mode == 'offline' and opt in ('compressed', 'auto_converge', 'postcopy'):
                continue
            names.append(flag)
    if mode != 'offline':
        storage = opts.get('copy_storage', 'none')
        if storage == 'all':
            names.append('VIR_MIGRATE_NON_SHARED_DISK')
        elif storage == 'incremental':
            names.append('VIR_MIGRATE_NON_SHARED_INC')
        if opts.get('parallel_connections'):
            names.append('VIR_MIGRATE_PARALLEL')
        # Stop at once on an I/O error during the copy rather than finishing on a broken disk.
        names.append('VIR_MIGRATE_ABORT_ON_ERROR')
    return names


def flags_value(names):
    value = 0
    for name in names:
        value |= _flag(name)
    return value


def build_params(opts, mode, dest_xml=None, persist_xml=None):
    """The typed parameters of virDomainMigrate3 as a dict (libvirt-python's form)."""
    params = {}
    dest_name = opts.get('dest_name')
    if dest_name and dest_name != opts['name']:
        params[libvirt.VIR_MIGRATE_PARAM_DEST_NAME] = dest_name
    if dest_xml:
        params[libvirt.VIR_MIGRATE_PARAM_DEST_XML] = dest_xml
    if persist_xml and opts.get('persistent', True):
        params[libvirt.VIR_MIGRATE_PARAM_PERSIST_XML] = persist_xml
    if mode == 'offline':
        return params
    if opts.get('migrate_uri'):
        params[libvirt.VIR_MIGRATE_PARAM_URI] = opts['migrate_uri']
    if opts.get('bandwidth'):
        params[libvirt.VIR_MIGRATE_PARAM_BANDWIDTH] = opts['bandwidth']
    if opts.get('migrate_disks'):
        params[libvirt.VIR_MIGRATE_PARAM_MIGRATE_DISKS] = list(opts['migrate_disks'])
    if opts.get('parallel_connections'):
        params[libvirt.VIR_MIGRATE_PARAM_PARALLEL_CONNECTIONS] = opts['parallel_connections']
    return params


# ---------------------------------------------------------------------------------------------
# Disks

def disks_of(xml):
    """The disks of a domain XML with a local path (file and block disks), as _disks.Disk."""
    return [d for d in xml_disks(xml, 'the domain XML') if d.type in ('file', 'block') and d.path is not None]


def with_disk_paths(xml, disk_paths, name):
    """The domain XML with the sources of the disks named (by target dev) replaced."""
    root = _document.parse(xml, 'the domain XML')
    found = set()
    for disk in root.findall('devices/disk'):
        target = disk.find('target')
        dev = target.get('dev') if target is not None else None
        if dev not in disk_paths:
            continue
        source = disk.find('source')
        attr = 'dev' if disk.get('type') == 'block' else 'file'
        if source is None or disk.get('type') not in ('file', 'block'):
            raise MigrateError('disk %s of domain %s is not a file or block disk; disk_paths cannot '
                               'move it' % (dev, name), obj=name, reason=REASON_INVALID_OPTION)
        source.set(attr, str(disk_paths[dev]))
        found.add(dev)
    missing = sorted(set(disk_paths) - found)
    if missing:
        raise MigrateError('disk_paths names disks domain %s does not have: %s' % (name, ', '.join(missing)),
                           obj=name, reason=REASON_INVALID_OPTION)
    return _document.render(root)


def _pool_for_dir(conn, directory):
    """The name of a destination storage pool whose target is directory, or None."""
    with libvirt_call('listing storage pools', conn.uri):
        pools = conn.conn.listAllStoragePools(0)
    for pool in pools:
        try:
            root = _document.parse(pool.XMLDesc(0), 'the pool XML')
        except (VirtError, libvirt.libvirtError):
            continue
        target = (root.findtext('target/path') or '').rstrip('/')
        if target and target == directory.rstrip('/'):
            return pool.name()
    return None


def _vol_exists(conn, path):
    try:
        conn.conn.storageVolLookupByPath(path)
        return True
    except libvirt.libvirtError:
        return False


def storage_plan(disks, dest, dest_uri, opts, disk_paths=None, mode='live'):
    """Per disk: where it will be on the destination and whether that can work.

    Returns [dict(target, source_path, dest_path, copied, status)]; status is one of present
    (found on the destination), pool (libvirt creates it there), unknown (a remote destination
    without a storage pool holding it: nothing to look at from here), missing (offline migration
    only: the definition moves, the image is not there yet). Raises when it cannot work.
    """
    name = opts['name']
    disk_paths = disk_paths or {}
    storage = opts.get('copy_storage', 'none') if mode != 'offline' else 'none'
    chosen = opts.get('migrate_disks')
    known = set(d.name for d in disks)
    unknown = sorted(set(chosen or ()) - known)
    if unknown:
        raise MigrateError('migrate_disks names disks domain %s does not have (or that have no local '
                           'path): %s' % (name, ', '.join(unknown)), obj=name, reason=REASON_INVALID_OPTION)
    local = is_local_uri(dest_uri)
    result = []
    for disk in disks:
        dest_path = str(disk_paths.get(disk.name, disk.path))
        copied = (storage != 'none' and not disk.readonly and not disk.shareable and
                  (not chosen or disk.name in chosen))
        if _vol_exists(dest, dest_path) or (local and os.path.exists(dest_path)):
            status = 'present'
        elif copied and _pool_for_dir(dest, os.path.dirname(dest_path)):
            status = 'pool'
        elif not local:
            status = 'unknown'
        elif mode == 'offline':
            # Only the definition moves; the images may follow later (the domain cannot start before).
            status = 'missing'
        elif copied:
            raise MigrateError('disk %s of domain %s: %s does not exist on the destination and no storage '
                               'pool there holds its directory, so libvirt cannot create it for '
                               'copy_storage; create it first (same format and virtual size) or define a '
                               'pool; nothing was changed' % (disk.name, name, dest_path),
                               obj=name, reason=REASON_STORAGE)
        else:
            raise MigrateError('disk %s of domain %s: %s does not exist on the destination; without '
                               'copy_storage the destination must see the same storage (shared storage); '
                               'nothing was changed' % (disk.name, name, dest_path),
                               obj=name, reason=REASON_STORAGE)
        if copied and local and status == 'present' and os.path.exists(disk.path) and \
                os.path.samefile(disk.path, dest_path):
            raise MigrateError('disk %s of domain %s: copy_storage would copy %s onto itself (the '
                               'destination sees the same file); leave out copy_storage for shared '
                               'storage, or give disk_paths; nothing was changed'
                               % (disk.name, name, dest_path), obj=name, reason=REASON_STORAGE)
        result.append(dict(target=disk.name, source_path=disk.path, dest_path=dest_path,
                           copied=copied, status=status))
    return result


def check_dest_can_run(source_xml, dest, name):
    """Ask the destination whether it offers the domain's virt type, arch and machine type."""
    root = _document.parse(source_xml, 'the domain XML')
    ostype = root.find('os/type')
    arch = ostype.get('arch') if ostype is not None else None
    machine = ostype.get('machine') if ostype is not None else None
    virt_type = root.get('type')
    try:
        dest.conn.getDomainCapabilities(None, arch, machine, virt_type, 0)
    except libvirt.libvirtError as exc:
        if is_error(exc, 'VIR_ERR_NO_SUPPORT'):
            return  # a driver without domain capabilities (the test driver): nothing to ask
        raise MigrateError('the destination %s cannot run domain %s (type %s, arch %s, machine %s): %s; '
                           'nothing was changed' % (dest.uri, name, virt_type, arch, machine,
                                                    exc.get_error_message()), obj=name,
                           reason=REASON_INCOMPATIBLE_DESTINATION)


# ---------------------------------------------------------------------------------------------
# Job statistics and the watched migration call

def job_stats(dom, completed=False):
    """The domain's (current or completed) job statistics as {libvirt key: number}; {} if none."""
    try:
        raw = dom.jobStats(_flag('VIR_DOMAIN_JOB_STATS_COMPLETED') if completed else 0)
    except libvirt.libvirtError:
        return {}
    if not raw or raw.get('type', 0) == _flag('VIR_DOMAIN_JOB_NONE'):
        return {}
    return dict((k, raw[k]) for k in JOB_KEYS if k in raw)


def _watch(dom, call, timeout, timeout_action):
    """Run call() (the blocking migration) in a thread; poll the job and act on the timeout.

    Returns (result, error, fired, last_stats).
    """
    box = {}

    def target():
        try:
            box['result'] = call()
        except Exception as exc:  # pylint: disable=broad-except
            box['error'] = exc

    worker = threading.Thread(target=target, name='virt_migrate')
    worker.daemon = True
    started = time.time()
    worker.start()
    fired = None
    last = {}
    while True:
        worker.join(POLL_INTERVAL)
        if not worker.is_alive():
            break
        stats = job_stats(dom)
        if stats:
            last = stats
        if timeout and fired is None and time.time() - started >= timeout:
            fired = timeout_action
            try:
                if timeout_action == 'abort':
                    dom.abortJob()
                elif timeout_action == 'suspend':
                    dom.suspend()
                else:
                    dom.migrateStartPostCopy(0)
            except libvirt.libvirtError as exc:
                box['timeout_error'] = exc
    return box.get('result'), box.get('error'), fired, last, box.get('timeout_error')


def _where_now(source, dest, name, dest_name):
    """A short account of where the domain is after a failure, for the message."""
    parts = []
    for label, conn, dname in (('source', source, name), ('destination', dest, dest_name)):
        try:
            facts = domain_facts(conn, dname)
        except VirtError:
            facts = None
        parts.append('%s on the %s' % (facts['state'], label) if facts else 'absent from the %s' % label)
    return ', '.join(parts)


# ---------------------------------------------------------------------------------------------
# The module's work

def _summary(facts):
    if facts is None:
        return None
    return dict(state=facts['state'], persistent=facts['persistent'], uuid=facts['uuid'])


class MigrateManager(ObjectManager):
    """virt_migrate: make domain params['name'] live on params['dest_uri'].

    connection: the Connection to the source. dest: an open Connection to the destination
    (opened and closed by run() when None). The plan is one step, named as the result's plan
    says (undefine_source or migrate), or none; the result: changed, msg, location, domain,
    plan, mode, flags, job, storage, timeout_action_taken (and diff)."""

    kind = 'domain'
    argument_spec = MIGRATE_ARGS
    module_options = dict(mutually_exclusive=[('dest_xml', 'disk_paths')])

    def __init__(self, connection, params, check_mode=False, diff_mode=False, warn=None, dest=None):
        ObjectManager.__init__(self, connection, params, check_mode, diff_mode, warn)
        self.dest = dest
        self.own_dest = dest is None
        self.dest_name = None
        self.dest_facts = None
        # The result's fields, as planned (what check mode reports), then as the step leaves them;
        # the migrate step also updates the diff view's after.
        self.outcome = {}
        self.diff_view = None
        # What the migrate step needs, found while planning.
        self.migration = {}

    def run(self):
        # The lifecycle as always; only the destination connection opened here is closed after it.
        try:
            return ObjectManager.run(self)
        finally:
            if self.own_dest and self.dest is not None:
                self.dest.close()

    def check_options(self):
        validate(self.params, self.connection.uri)

    def identify(self):
        self.dest_name = self.params.get('dest_name') or self.params['name']
        return self.params['name']

    def lookup(self):
        """The source's facts of the domain (None: not there); the destination's in dest_facts."""
        opts = self.params
        if self.own_dest:
            try:
                self.dest = Connection(opts['dest_uri'], opts.get('dest_username'), opts.get('dest_password'))
            except VirtError as exc:
                raise MigrateError('the destination %s cannot be reached, nothing was changed: %s'
                                   % (opts['dest_uri'], exc.libvirt_message or exc.msg), obj=opts['name'],
                                   code=exc.code, libvirt_message=exc.libvirt_message, reason=REASON_UNREACHABLE)
        src_facts = domain_facts(self.connection, self.name)
        self.dest_facts = domain_facts(self.dest, self.dest_name)
        return src_facts

    def plan_present(self, live):
        source, dest, opts = self.connection, self.dest, self.params
        name, dest_name, dst_facts = self.name, self.dest_name, self.dest_facts
        decision = plan(live, dst_facts, dict(opts, uri=source.uri))
        before = dict(source=_summary(live), destination=_summary(dst_facts))
        self.outcome = dict(plan=decision['action'], mode=decision['mode'], flags=[], job={},
                            storage=[], timeout_action_taken=None)
        migration_plan = Plan()

        if decision['action'] == 'none':
            migration_plan.diff = self.diff_view = dict(before=before, after=before)
            self.outcome.update(location='destination', domain=dict(dst_facts, host=dest.uri),
                                msg='domain %s is already on %s (%s)' % (dest_name, dest.uri, dst_facts['state']))
            return migration_plan

        if decision['action'] == 'undefine_source':
            migration_plan.diff = self.diff_view = dict(
                before=before, after=dict(source=None, destination=before['destination']))
            self.outcome.update(location='destination', domain=dict(dst_facts, host=dest.uri),
                                msg='domain %s is already on %s; its definition left on the source would be '
                                    'removed' % (dest_name, dest.uri))
            return migration_plan.add('undefine_source', self._undefine_source)

        # A migration.
        # Options about moving memory (timeout, bandwidth, compression, ...) do not apply to an offline
        # migration and are left aside rather than refused: one task may move running and shut-off domains.
        mode = decision['mode']
        dom = source.get_domain(name)
        inactive_flags = _flag('VIR_DOMAIN_XML_INACTIVE') | _flag('VIR_DOMAIN_XML_SECURE')
        with libvirt_call('reading the definition', 'domain %s' % name):
            if mode == 'offline':
                live_xml = dom.XMLDesc(inactive_flags | _flag('VIR_DOMAIN_XML_MIGRATABLE'))
            else:
                live_xml = dom.XMLDesc(_flag('VIR_DOMAIN_XML_MIGRATABLE') | _flag('VIR_DOMAIN_XML_SECURE'))
            persist_xml = dom.XMLDesc(inactive_flags | _flag('VIR_DOMAIN_XML_MIGRATABLE')) \
                if live['persistent'] else None
        dest_xml = opts.get('dest_xml')
        if opts.get('disk_paths'):
            dest_xml = with_disk_paths(live_xml, opts['disk_paths'], name)
            persist_xml = with_disk_paths(persist_xml, opts['disk_paths'], name) if persist_xml else None
        elif dest_xml:
            # DEST_XML changes only the running definition; libvirt would keep the source's persistent
            # one (old paths) unless PERSIST_XML says the same.
            _document.parse(dest_xml, 'dest_xml')
            persist_xml = dest_xml
        else:
            persist_xml = None

        check_dest_can_run(live_xml, dest, name)
        storage = storage_plan(disks_of(opts.get('dest_xml') or live_xml), dest, dest.uri, opts,
                               None if opts.get('dest_xml') else opts.get('disk_paths'), mode)
        if opts.get('dest_xml'):
            # Source paths come from the source definition; destination paths from dest_xml.
            source_paths = dict((d.name, d.path) for d in disks_of(live_xml))
            for item in storage:
                item['source_path'] = source_paths.get(item['target'], item['source_path'])
        names = flag_names(opts, mode)
        params = build_params(opts, mode, dest_xml, persist_xml)
        after_dest = dict(state=live['state'] if mode != 'offline' else 'shutoff',
                          persistent=bool(opts.get('persistent', True)) or bool(dst_facts and dst_facts['persistent']),
                          uuid=live['uuid'])
        keep_source = not opts.get('undefine_source', True) and live['persistent']
        after = dict(source=dict(state='shutoff', persistent=True, uuid=live['uuid']) if keep_source else None,
                     destination=after_dest)
        migration_plan.diff = self.diff_view = dict(before=before, after=after)
        what = dict(live='live migration', paused='migration (guest paused during the copy)',
                    offline='offline migration (definition only)')[mode]
        # What check mode reports; the migration step replaces it with where the domain went.
        self.outcome.update(flags=names, storage=storage, location='source', domain=dict(live, host=source.uri),
                            msg='%s of domain %s from %s to %s would be done' % (what, name, source.uri, dest.uri))
        self.migration = dict(dom=dom, mode=mode, what=what, names=names, params=params, src_facts=live)
        return migration_plan.add('migrate', self._migrate)

    # -- steps ------------------------------------------------------------------------------

    def _undefine_source(self, live):
        name = self.name
        dom = self.connection.get_domain(name)
        with libvirt_call('removing the definition left on the source', 'domain %s' % name):
            dom.undefine()
        self.outcome['msg'] = ('domain %s is already on %s; its definition left on the source was removed'
                               % (self.dest_name, self.dest.uri))
        return None

    def _migrate(self, live):
        source, dest, opts = self.connection, self.dest, self.params
        name, dest_name = self.name, self.dest_name
        dom, mode, what, src_facts = (self.migration[key] for key in ('dom', 'mode', 'what', 'src_facts'))
        names, params = self.migration['names'], self.migration['params']
        if opts.get('max_downtime') and mode != 'offline':
            with libvirt_call('setting the maximum downtime', 'domain %s' % name):
                dom.migrateSetMaxDowntime(opts['max_downtime'], 0)
        flags = flags_value(names)
        if opts.get('p2p'):
            def call():
                dom.migrateToURI3(dest.uri, params, flags)
                return None
        else:
            def call():
                return dom.migrate3(dest.conn, params, flags)
        started = time.time()
        new_dom, error, fired, last, timeout_error = _watch(
            dom, call, opts.get('timeout') if mode != 'offline' else None, opts.get('timeout_action', 'abort'))
        self.outcome['timeout_action_taken'] = fired
        if error is not None:
            where = _where_now(source, dest, name, dest_name)
            if fired == 'abort':
                msg = ('migration of domain %s to %s timed out after %d s and was aborted; the domain is %s'
                       % (name, dest.uri, opts['timeout'], where))
            elif isinstance(error, libvirt.libvirtError):
                msg = ('migration of domain %s to %s failed: %s; the domain is %s'
                       % (name, dest.uri, error.get_error_message(), where))
            else:
                raise error
            raise MigrateError(msg, obj=name, code=getattr(error, 'get_error_code', lambda: None)(),
                               libvirt_message=getattr(error, 'get_error_message', lambda: None)(),
                               job=last, timeout_action_taken=fired, reason=REASON_MIGRATION_FAILED)
        if new_dom is None:
            new_dom = dest.get_domain(dest_name)
        stats = job_stats(new_dom, completed=True) or last
        if not stats and mode != 'offline':
            stats = dict(time_elapsed=int((time.time() - started) * 1000))
        final = domain_facts(dest, dest_name)
        if fired == 'suspend' and src_facts['state'] == 'running' and final['state'] == 'paused':
            # The timeout paused the guest to let the copy finish; it was running before, so it runs after.
            with libvirt_call('resuming after the timeout suspended it', 'domain %s on %s' % (dest_name, dest.uri)):
                new_dom.resume()
            final = domain_facts(dest, dest_name)
        self.outcome.update(location='destination', job=stats, domain=dict(final, host=dest.uri))
        self.diff_view['after'] = dict(source=_summary(domain_facts(source, name)), destination=_summary(final))
        msg = '%s of domain %s from %s to %s done' % (what, name, source.uri, dest.uri)
        if fired and timeout_error is None:
            msg += ' (timeout reached: %s)' % fired
        elif timeout_error is not None:
            msg += ' (timeout reached; %s failed: %s)' % (fired, timeout_error.get_error_message())
        self.outcome['msg'] = msg
        return live

    # -- the result -------------------------------------------------------------------------

    def result_fields(self, live, plan):
        return dict(self.outcome)


def migrate(source, opts, check_mode=False, dest=None):
    """virt_migrate's result (with its diff) without a module: MigrateManager's run."""
    return MigrateManager(source, opts, check_mode=check_mode, diff_mode=True, dest=dest).run()
