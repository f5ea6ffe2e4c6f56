# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Private to the virtops.libvirt collection: may change without notice.
"""Storage volumes: the desired volume compared with the live one, then applied; uploads and
downloads through libvirt streams; the facts virt_volume_info returns.

Used by virt_volume and virt_volume_info (pools are in _pool.py). Every helper raises
VirtError; nothing here exits.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import contextlib
import hashlib
import os
import tempfile

from ansible_collections.virtops.libvirt.plugins.module_utils._libvirt import (
    VirtError,
    libvirt,
    libvirt_call,
    lookup_or_none,
    optional_flag as _flag,
    translate,
    version_string,
)
from ansible_collections.virtops.libvirt.plugins.module_utils._errors import (
    REASON_BACKING_FILE_NOT_SUPPORTED,
    REASON_BACKING_MISMATCH,
    REASON_CLONE_SOURCE_MISSING,
    REASON_CREATE_NOT_SUPPORTED,
    REASON_DELETE_NOT_SUPPORTED,
    REASON_FORMAT_MISMATCH,
    REASON_FORMAT_NOT_SUPPORTED,
    REASON_INVALID_OPTION,
    REASON_INVALID_SIZE,
    REASON_MISSING_DIRECTORY,
    REASON_MISSING_FILE,
    REASON_NO_CAPACITY,
    REASON_POOL_INACTIVE,
    REASON_RESIZE_NOT_SUPPORTED,
    REASON_SHRINK_REFUSED,
    REASON_STREAMS_NOT_SUPPORTED,
    REASON_WIPE_QCOW2,
)
from ansible_collections.virtops.libvirt.plugins.module_utils.xml import _compare, _document, _view
from ansible_collections.virtops.libvirt.plugins.module_utils.xml._units import parse_size
from ansible_collections.virtops.libvirt.plugins.module_utils._lifecycle import ObjectManager, Plan, read_each
from ansible_collections.virtops.libvirt.plugins.module_utils._pool import (
    LOGICAL,
    LUN_POOLS,
    LUN_SOURCES,
    NO_STREAM_POOLS,
    get_pool,
    pool_is_active,
    pool_type_of,
)
from ansible_collections.virtops.libvirt.plugins.module_utils._volume_profile import VOLUME


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

CHUNK = 1024 * 1024


# ---------------------------------------------------------------------------------------------
# Volumes: reading

def lookup_volume(pool, name):
    return lookup_or_none(lambda: pool.storageVolLookupByName(name), ('VIR_ERR_NO_STORAGE_VOL',),
                          'looking up volume %s' % name, 'storage pool %s' % pool.name())


def volume_xml(vol):
    with libvirt_call('reading the XML', 'volume %s' % vol.name()):
        return vol.XMLDesc(0)


def volume_facts(vol, pool_name=None):
    """name, pool, path, key, capacity, allocation (bytes), format, backing (path, format)."""
    xml = volume_xml(vol)
    root = _document.parse(xml, 'the XML of volume %s' % vol.name())
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
                                % pool, obj=pool, reason=REASON_POOL_INACTIVE)
            continue
        result.extend(read_each(name, lambda n: lookup_volume(p, n), lambda: p.listAllVolumes(0),
                                'listing volumes', 'storage pool %s' % p.name(),
                                lambda vol: volume_facts(vol, p.name()), 'VIR_ERR_NO_STORAGE_VOL'))
    return result


def read_volumes(connection, params, warn):
    """virt_volume_info's result."""
    return dict(volumes=volumes_info(connection, pool=params['pool'], name=params['name']))


# ---------------------------------------------------------------------------------------------
# Volumes: streams

def _sha256_of_file(path):
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(CHUNK), b''):
            digest.update(block)
    return digest.hexdigest()


@contextlib.contextmanager
def _stream(connection):
    """A new libvirt stream, aborted when the transfer through it fails."""
    stream = connection.conn.newStream(0)
    try:
        yield stream
    except Exception:
        try:
            stream.abort()
        except Exception:  # pylint: disable=broad-except
            pass
        raise


def upload(connection, vol, src, obj):
    """Write the local file src into the volume from offset 0 (virStorageVolUpload)."""
    size = os.path.getsize(src)
    with _stream(connection) as stream:
        with libvirt_call('uploading %s' % src, obj):
            vol.upload(stream, 0, size, 0)
            with open(src, 'rb') as f:
                stream.sendAll(lambda _st, nbytes, fh: fh.read(nbytes), f)
            stream.finish()


def download(connection, vol, dest_dir, obj):
    """Read the whole volume into a new temporary file in dest_dir; its path."""
    fd, tmp = tempfile.mkstemp(prefix='.virt_volume-', dir=dest_dir)
    try:
        with _stream(connection) as stream:
            with os.fdopen(fd, 'wb') as f:
                with libvirt_call('downloading', obj):
                    vol.download(stream, 0, 0, 0)
                    stream.recvAll(lambda _st, data, fh: fh.write(data), f)
                    stream.finish()
    except Exception:
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
    """virt_volume: compare the desired volume with the live one through the intent engine
    (the VOLUME profile), then apply (unless check mode). params: the module's parameters
    (VOLUME_ARGS)."""

    kind = 'volume'
    argument_spec = VOLUME_ARGS
    module_options = dict(mutually_exclusive=[('clone_from', 'backing_file'),
                                              ('clone_from', 'upload_src')])

    def __init__(self, connection, params, check_mode=False, diff_mode=False, warn=None):
        ObjectManager.__init__(self, connection, params, check_mode, diff_mode, warn)
        self.pool = None
        self.pool_type = None
        self.capacity = None
        self.new_capacity = None
        self.source = None
        self.live_xml = None

    def label(self):
        return 'volume %s/%s' % (self.params['pool'], self.params['name'])

    def check_options(self):
        """The pool option first (it must name an active pool, the first failure virt_volume
        ever reported), then the other options, then what the pool's type cannot do."""
        p = self.params
        pool = get_pool(self.connection, p['pool'])
        if not pool_is_active(pool):
            raise VirtError('storage pool %s is not active; start it first (virt_pool '
                            'state: active)' % p['pool'], obj=p['pool'], reason=REASON_POOL_INACTIVE)
        self.pool = pool
        self.pool_type = pool_type_of(pool)
        self.capacity = parse_size(p['capacity']) if p.get('capacity') else None
        if self.capacity is not None and self.capacity <= 0:
            raise VirtError('capacity must be more than 0 bytes, got %s' % p['capacity'],
                            reason=REASON_INVALID_SIZE)
        if p.get('backing_format') and not p.get('backing_file'):
            raise VirtError('backing_format needs backing_file', reason=REASON_INVALID_OPTION)
        if p.get('upload_src') and not os.path.isfile(p['upload_src']):
            raise VirtError('upload_src %s is not a readable file' % p['upload_src'],
                            reason=REASON_MISSING_FILE)
        if p.get('download_dest'):
            parent = os.path.dirname(os.path.abspath(p['download_dest']))
            if not os.path.isdir(parent):
                raise VirtError('the directory of download_dest %s does not exist'
                                % p['download_dest'], reason=REASON_MISSING_DIRECTORY)
        if self.pool_type == LOGICAL and p['state'] != 'absent':
            self._check_logical()

    def identify(self):
        return self.params['name']

    def lookup(self):
        vol = lookup_volume(self.pool, self.name)
        if self.pool_type in LUN_POOLS:
            self._check_lun_pool(vol)
        return vol

    def _check_logical(self):
        """What a logical (LVM) pool cannot do fails before anything is changed; libvirt would
        ignore a qcow2 format and turn a backing file into an LVM snapshot of that path."""
        p = self.params
        where = '%s: storage pool %s is a logical (LVM) pool, whose volumes are raw logical ' \
                'volumes' % (self.label(), p['pool'])
        if p.get('format') == 'qcow2':
            raise VirtError('%s; format qcow2 is not possible there (leave format out or use raw, '
                            'or put qcow2 images in a dir pool) (nothing was changed)' % where,
                            obj=p['name'], reason=REASON_FORMAT_NOT_SUPPORTED)
        if p.get('backing_file'):
            raise VirtError('%s; a linked clone (backing_file) is not possible there: use '
                            'clone_from for a full copy (nothing was changed)' % where,
                            obj=p['name'], reason=REASON_BACKING_FILE_NOT_SUPPORTED)

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
                                obj=p['name'], reason=REASON_DELETE_NOT_SUPPORTED)
            return
        if vol is None:
            with libvirt_call('listing volumes', 'storage pool %s' % p['pool']):
                names = sorted(self.pool.listVolumes())
            raise VirtError('%s. There is no volume %s: make the LUN where it is made (for example '
                            'on the iSCSI target), then refresh the pool. Volumes of the pool: %s%s'
                            % (where, p['name'], ', '.join(names) or '(none)', unchanged),
                            obj=p['name'], reason=REASON_CREATE_NOT_SUPPORTED)
        if self.capacity is not None and p['resize']:
            with libvirt_call('reading the figures', self.obj):
                capacity = vol.info()[1]
            if self.capacity != capacity:
                raise VirtError('%s has %d bytes; capacity %s (%d bytes) needs a resize, which '
                                'libvirt cannot do in an %s pool: resize the LUN on its target, '
                                'then refresh the pool, or set resize: false%s'
                                % (self.obj, capacity, p['capacity'], self.capacity, pool_type,
                                   unchanged), obj=p['name'], reason=REASON_RESIZE_NOT_SUPPORTED)
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
                                reason=REASON_STREAMS_NOT_SUPPORTED)

    # -- absent -----------------------------------------------------------------------------

    def plan_absent(self, live):
        plan = Plan()
        before = self.summary(live)
        if live is not None:
            plan.add('delete', self.call_step('deleting', lambda vol: vol.delete(0), gone=True))
        plan.diff = self.diff(before, None)
        return plan

    # -- present / wiped --------------------------------------------------------------------

    def plan_present(self, live):
        p = self.params
        before = self.summary(live)
        plan = Plan()
        after = dict(before) if before else {}
        source = None
        if live is None:
            source = self.source = self._clone_source() if p.get('clone_from') else None
            capacity = self.capacity
            if capacity is None and source is not None:
                with libvirt_call('reading the figures', 'volume %s' % source.name()):
                    capacity = source.info()[1]
            if capacity is None and p.get('upload_src'):
                capacity = os.path.getsize(p['upload_src'])
            if capacity is None:
                raise VirtError('%s does not exist; give capacity (or clone_from or upload_src) '
                                'to create it' % self.obj, obj=p['name'], reason=REASON_NO_CAPACITY)
            self.new_capacity = capacity
            if source is not None:
                plan.add('clone from %s' % source.name(), self._clone)
            else:
                plan.add('create', self._create)
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
                    plan.add('resize', self._resize(shrink=False))
                    after['capacity'] = self.capacity
                elif self.capacity < source_capacity:
                    raise VirtError('%s: capacity %s is smaller than the volume %s it is cloned '
                                    'from (%d bytes); a clone cannot be smaller'
                                    % (self.obj, p['capacity'], source.name(), source_capacity),
                                    obj=p['name'], reason=REASON_SHRINK_REFUSED)
        else:
            self._plan_changes(before, after, plan)
        if p.get('upload_src') and (live is None or p['force_upload']):
            plan.add('upload', self._upload)
        if p['state'] == 'wiped':
            if after.get('format') == 'qcow2':
                raise VirtError('%s is a qcow2 volume: wiping overwrites its qcow2 header with '
                                'zeroes and leaves a raw file; wipe raw volumes only, or remove '
                                'and recreate the volume (nothing was changed)' % self.obj,
                                obj=p['name'], reason=REASON_WIPE_QCOW2)
            # A new empty raw volume reads as zeroes already; a clone or an upload does not.
            if source is not None or 'upload' in plan.names or (
                    live is not None and not is_zeroed(self.connection, live, self.obj)):
                plan.add('wipe', self.call_step('wiping', lambda vol: vol.wipe(0)))
        if 'upload' in plan.names:
            after['content'] = 'uploaded from %s' % p['upload_src']
        if 'wipe' in plan.names:
            after['content'] = 'zeroes'
        if 'content' in after and before:
            before['content'] = 'data'
        plan.diff = self.diff(before, after)
        return plan

    def desired_root(self):
        """The volume as the options ask for it, for the comparison with the live XML: only
        what they set (capacity, format, backing file)."""
        p = self.params
        etree = _document.etree
        root = etree.Element('volume')
        if self.capacity is not None:
            etree.SubElement(root, 'capacity', unit='bytes').text = str(self.capacity)
        if p.get('format'):
            etree.SubElement(etree.SubElement(root, 'target'), 'format', type=p['format'])
        if p.get('backing_file'):
            etree.SubElement(etree.SubElement(root, 'backingStore'), 'path').text = p['backing_file']
        return root

    def _plan_changes(self, before, after, plan):
        """The existing volume compared with the options (VOLUME profile): a format or backing
        file that differs fails clearly, since libvirt cannot change them in place; a capacity
        that differs is a resize (or a shrink) unless resize is false."""
        p = self.params
        intent = _compare.compare(self.desired_root(), self.live_xml, VOLUME)
        differs = intent.differences
        # A live volume without a format says nothing to compare with (a logical volume).
        if any(d.path == 'target/format@type' and d.before is not None for d in differs):
            raise VirtError('%s exists with format %s; format %s was asked and libvirt cannot '
                            'convert a volume in place: remove it first (state: absent) '
                            '(nothing was changed)' % (self.obj, before['format'], p['format']),
                            obj=p['name'], reason=REASON_FORMAT_MISMATCH)
        if any(d.path.startswith('backingStore') for d in differs):
            raise VirtError('%s exists with backing file %s; backing_file %s was asked and '
                            'this module does not rebase volumes (nothing was changed)'
                            % (self.obj, before.get('backing') or '(none)', p['backing_file']),
                            obj=p['name'], reason=REASON_BACKING_MISMATCH)
        if not p['resize'] or not any(d.path == 'capacity' for d in differs):
            return
        if self.capacity < before['capacity'] and not p['shrink']:
            raise VirtError('%s has %d bytes; capacity %s (%d bytes) would shrink it, '
                            'which destroys data at its end: set shrink: true to do it '
                            '(nothing was changed)' % (self.obj, before['capacity'],
                                                       p['capacity'], self.capacity),
                            obj=p['name'], reason=REASON_SHRINK_REFUSED)
        if self.pool_type == LOGICAL:
            raise VirtError('%s has %d bytes; capacity %s (%d bytes) needs a resize, and '
                            'libvirt %s cannot resize the volumes of a logical (LVM) '
                            'pool. Resize the logical volume with lvresize, then refresh '
                            'the pool (virt_pool refresh: true), or set resize: false '
                            '(nothing was changed)'
                            % (self.obj, before['capacity'], p['capacity'], self.capacity,
                               version_string(self.connection.lib_version)),
                            obj=p['name'], reason=REASON_RESIZE_NOT_SUPPORTED)
        shrink = self.capacity < before['capacity']
        plan.add('shrink' if shrink else 'resize', self._resize(shrink=shrink))
        after['capacity'] = self.capacity

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
                            reason=REASON_CLONE_SOURCE_MISSING)
        return vol

    @staticmethod
    def _format_of(vol):
        fmt = _document.parse(volume_xml(vol)).find('target/format')
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
        etree = _document.etree
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
        return _document.render(root)

    # -- steps ------------------------------------------------------------------------------

    def _create(self, vol):
        xml = self.volume_xml_for_create(self.new_capacity)
        with libvirt_call('creating', self.obj):
            return self.pool.createXML(xml, 0)

    def _clone(self, vol):
        source = self.source
        with libvirt_call('cloning from %s' % source.name(), self.obj):
            capacity = source.info()[1]
            if self.pool_type == LOGICAL:
                capacity = max(capacity, self.new_capacity)
            xml = self.volume_xml_for_create(capacity, self._format_of(source))
            return self.pool.createXMLFrom(xml, source, 0)

    def _resize(self, shrink):
        return self.call_step('resizing to %d bytes' % self.capacity, lambda vol: vol.resize(
            self.capacity, _flag('VIR_STORAGE_VOL_RESIZE_SHRINK') if shrink else 0))

    def _upload(self, vol):
        upload(self.connection, vol, self.params['upload_src'], self.obj)
        return vol

    # -- after the steps, and the result -------------------------------------------------------

    def finish(self, live, plan):
        """download_dest: download when the file is missing or differs, in check mode too
        (the comparison reads the whole volume; only the rename is skipped)."""
        if not self.wants_absent() and self.params.get('download_dest') and self.download(live):
            plan.changed = True
        return live

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
        """The facts the diff shows (capacity, format, backing); keeps the live XML for the
        comparison."""
        if vol is None:
            return None
        facts = volume_facts(vol, self.params['pool'])
        self.live_xml = facts['xml']
        return dict(capacity=facts['capacity'], format=facts['format'],
                    backing=(facts['backing'] or {}).get('path'))

    def diff(self, before, after):
        if not self.diff_mode:
            return None
        keys = ('capacity', 'format', 'backing', 'content')
        return _view.diff_view(
            self.obj,
            _view.facts_text(dict(before, state='present') if before else dict(state='absent'), '',
                             ('state',) + keys),
            _view.facts_text(dict(after, state=self.params['state']) if after is not None
                             else dict(state='absent'), '', ('state',) + keys))

    def result_fields(self, live, plan):
        facts = {}
        if live is not None and not self.wants_absent():
            facts = volume_facts(live, self.params['pool'])
        return dict(volume=facts, actions=self.actions)
