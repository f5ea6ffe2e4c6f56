# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Private to the virtops.libvirt collection: may change without notice.
"""Snapshots of libvirt domains: read, create, redefine, revert, delete.

Used by the virt_snapshot and virt_snapshot_info modules. Every function here raises VirtError
(or its subclass SnapshotError) with a message meant for the user; none of them exits a module.

Facts this code relies on (libvirt 9.0, QEMU 7.2):
- three kinds of snapshot: internal (disk state, and the memory of a running domain, inside the
  qcow2 images), disk-only external (each disk gets a new qcow2 overlay that the domain uses from
  then on) and external with memory (overlays plus a memory state file, running domains only);
- libvirt 9.0 cannot revert to external snapshots (this code says so before asking libvirt); it
  deletes them by committing the overlay into its backing image (the domain goes back to using it);
- a new snapshot becomes the current one; its parent is the snapshot that was current;
- REDEFINE of an existing snapshot replaces its metadata; REDEFINE_CURRENT makes it current;
- a revert to a snapshot of a shut-off domain rewrites the disk images (qemu-img snapshot -a) and
  the definition (from the snapshot's copy); libvirt keeps no record of when a revert happened.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import os

from ansible_collections.virtops.libvirt.plugins.module_utils._libvirt import (
    VirtError,
    domain_label as _dom_label,
    driver_type as _driver_type,
    flag as _flag,
    libvirt_call,
    lookup_or_none,
)
from ansible_collections.virtops.libvirt.plugins.module_utils._vocabulary import is_local_uri
from ansible_collections.virtops.libvirt.plugins.module_utils._disks import domain_disks
from ansible_collections.virtops.libvirt.plugins.module_utils._moment import (
    INFO_ARGS,
    MomentManager,
    child_text,
    diff_fields,
    new_moment,
    ordered_descendants,
    parse_moment,
    replace_description,
)
from ansible_collections.virtops.libvirt.plugins.module_utils._snapshot_profile import SNAPSHOT
from ansible_collections.virtops.libvirt.plugins.module_utils.xml._document import etree, parse as parse_xml
from ansible_collections.virtops.libvirt.plugins.module_utils.xml._compare import compare

try:
    import libvirt
except ImportError:  # pragma: no cover - reported by VirtModule
    libvirt = None


INTERNAL = 'internal'
DISK_ONLY = 'disk-only'
EXTERNAL = 'external'
TYPES = (INTERNAL, DISK_ONLY, EXTERNAL)


class SnapshotError(VirtError):
    """A snapshot operation that cannot or must not be done, explained for the user."""


def _snap_label(dom, name):
    return 'snapshot %s of domain %s' % (name, dom.name())


def _is_active(dom):
    with libvirt_call('reading the state', _dom_label(dom)):
        return bool(dom.isActive())


# --------------------------------------------------------------------------------------------
# XML


def parse_snapshot_xml(xml):
    """A snapshot XML document as a dict.

    Keys: name, description (None when absent), state (the domain state the snapshot holds:
    running, shutoff, disk-snapshot...), parent (None for a root), creation_time (int or None),
    type (internal, disk-only or external), memory (dict snapshot, file), disks (list of dicts
    name, snapshot, file (overlay of an external snapshot, else None)). Raises SnapshotError on
    XML that is not a snapshot.
    """
    root, creation = parse_moment(xml, 'snapshot', SnapshotError)
    memory = root.find('memory')
    memory = dict(snapshot=memory.get('snapshot'), file=memory.get('file')) if memory is not None \
        else dict(snapshot=None, file=None)
    disks = []
    for disk in root.findall('disks/disk'):
        source = disk.find('source')
        disks.append(dict(
            name=disk.get('name'),
            snapshot=disk.get('snapshot'),
            file=source.get('file') if source is not None else None,
        ))
    state = child_text(root, 'state')
    return dict(
        name=child_text(root, 'name'),
        description=child_text(root, 'description'),
        state=state,
        parent=child_text(root, 'parent/name'),
        creation_time=creation,
        type=snapshot_type(state, memory, disks),
        memory=memory,
        disks=disks,
    )


def snapshot_type(state, memory, disks):
    """internal, disk-only or external, from the parsed parts of a snapshot XML."""
    if state == 'disk-snapshot':
        return DISK_ONLY
    if memory.get('snapshot') == 'external' or any(d['snapshot'] == 'external' for d in disks):
        return EXTERNAL
    return INTERNAL


def build_snapshot_xml(name, description=None, snap_type=INTERNAL, disks=None, memory_file=None):
    """XML for virDomainSnapshotCreateXML.

    snap_type internal: libvirt's defaults (memory too when the domain runs); disk-only and
    external: disks as dicts name, snapshot (external or no), file (overlay path, None to let
    libvirt choose); external also puts the memory state in memory_file.
    """
    root = new_moment('snapshot', name, description)
    if snap_type == EXTERNAL:
        etree.SubElement(root, 'memory', dict(snapshot='external', file=memory_file))
    if snap_type in (DISK_ONLY, EXTERNAL) and disks:
        node = etree.SubElement(root, 'disks')
        for disk in disks:
            kind = disk.get('snapshot') or 'external'
            elem = etree.SubElement(node, 'disk', dict(name=disk['name'], snapshot=kind))
            if kind == 'external' and disk.get('file'):
                etree.SubElement(elem, 'driver', dict(type='qcow2'))
                etree.SubElement(elem, 'source', dict(file=disk['file']))
    return etree.tostring(root, encoding='unicode')


def set_description(xml, description):
    """The snapshot XML with its <description> replaced (removed when description is empty).

    libvirt writes name, description, state, parent, creationTime, memory, disks, domain in this
    order; the domain copy stays byte for byte (_moment.replace_description).
    """
    parse_snapshot_xml(xml)
    return replace_description(xml, description, 'snapshot', SnapshotError)


# --------------------------------------------------------------------------------------------
# Reading


def lookup_snapshot(dom, name):
    """The virDomainSnapshot called name, or None."""
    return lookup_or_none(lambda: dom.snapshotLookupByName(name), ('VIR_ERR_NO_DOMAIN_SNAPSHOT',),
                          'looking up snapshot %s' % name, _dom_label(dom))


def list_snapshots(dom):
    """Every snapshot of the domain, parents before their children."""
    with libvirt_call('listing snapshots', _dom_label(dom)):
        return dom.listAllSnapshots(_flag('VIR_DOMAIN_SNAPSHOT_LIST_TOPOLOGICAL'))


def current_name(dom):
    """Name of the domain's current snapshot, or None."""
    with libvirt_call('reading the current snapshot', _dom_label(dom)):
        if not dom.hasCurrentSnapshot():
            return None
        return dom.snapshotCurrent().getName()


def descendants(dom, snap):
    """Names of every snapshot below snap, parents before their children."""
    return ordered_descendants(dom, snap, 'snapshot', 'VIR_DOMAIN_SNAPSHOT_LIST_DESCENDANTS', list_snapshots)


def describe(dom, snap, current=None):
    """A snapshot as the modules return it: name, description, parent, state, creation_time,
    current, type, memory_file, disks (name, snapshot, file), xml (full, usable for redefinition)."""
    with libvirt_call('reading the XML of snapshot %s' % snap.getName(), _dom_label(dom)):
        xml = snap.getXMLDesc(0)
        if current is None:
            current = bool(snap.isCurrent())
    parsed = parse_snapshot_xml(xml)
    return dict(
        name=parsed['name'],
        description=parsed['description'],
        parent=parsed['parent'],
        state=parsed['state'],
        creation_time=parsed['creation_time'],
        current=bool(current),
        type=parsed['type'],
        memory_file=parsed['memory']['file'],
        disks=parsed['disks'],
        xml=xml,
    )


def snapshots_info(dom, name=None):
    """describe() of every snapshot of the domain (parents first) with the names of its children,
    or of the one called name (an empty list when there is none)."""
    if name is not None:
        snaps = [lookup_snapshot(dom, name)]
        snaps = [s for s in snaps if s is not None]
        everything = [describe(dom, s) for s in list_snapshots(dom)] if snaps else []
    else:
        everything = [describe(dom, s) for s in list_snapshots(dom)]
    for item in everything:
        item['children'] = [c['name'] for c in everything if c['parent'] == item['name']]
    if name is not None:
        return [i for i in everything if i['name'] == name]
    return everything


# --------------------------------------------------------------------------------------------
# Changing


def _disk_request(dom, snap_type, disks):
    """Check the disks asked for against the domain; the planned per-disk list (name, snapshot,
    file) for an external snapshot, None for internal or when libvirt chooses."""
    if snap_type == INTERNAL:
        if disks:
            raise SnapshotError('disks applies only to type disk-only or external; an internal snapshot '
                                'covers every qcow2 disk')
        return None
    if not disks:
        return None
    have = dict((d.name, d) for d in domain_disks(dom))
    unknown = [d['name'] for d in disks if d['name'] not in have]
    if unknown:
        raise SnapshotError('%s has no disk %s (disks: %s)' % (
            _dom_label(dom), ', '.join(unknown), ', '.join(sorted(have)) or 'none'), obj=dom.name())
    planned = []
    for disk in disks:
        kind = disk.get('snapshot') or 'external'
        planned.append(dict(name=disk['name'], snapshot=kind,
                            file=disk.get('file') if kind == 'external' else None))
    return planned


def plan_snapshot(dom, name, snap_type, disks=None, memory_file=None):
    """Check what libvirt would reject late; returns the planned disks (or None)."""
    if snap_type == EXTERNAL:
        if not memory_file:
            raise SnapshotError('type external needs memory_file (where the memory state is saved)')
        if not _is_active(dom):
            raise SnapshotError('an external snapshot with memory of %s needs the domain running; it is '
                                'shut off (use type disk-only)' % _dom_label(dom), obj=dom.name())
    elif memory_file:
        raise SnapshotError('memory_file applies only to type external')
    return _disk_request(dom, snap_type, disks)


def create_snapshot(dom, name, description=None, snap_type=INTERNAL, disks=None, memory_file=None,
                    quiesce=False):
    plan_snapshot(dom, name, snap_type, disks, memory_file)
    xml = build_snapshot_xml(name, description, snap_type, disks, memory_file)
    flags = 0
    if snap_type == DISK_ONLY:
        flags |= _flag('VIR_DOMAIN_SNAPSHOT_CREATE_DISK_ONLY')
    if quiesce:
        flags |= _flag('VIR_DOMAIN_SNAPSHOT_CREATE_QUIESCE')
    with libvirt_call('creating snapshot %s' % name, _dom_label(dom)):
        return dom.snapshotCreateXML(xml, flags)


def redefine_snapshot(dom, xml, current=False):
    """Replace a snapshot's metadata from XML (VIR_DOMAIN_SNAPSHOT_CREATE_REDEFINE), making it the
    current snapshot with current=True."""
    parsed = parse_snapshot_xml(xml)
    flags = _flag('VIR_DOMAIN_SNAPSHOT_CREATE_REDEFINE')
    if current:
        flags |= _flag('VIR_DOMAIN_SNAPSHOT_CREATE_CURRENT')
    with libvirt_call('redefining snapshot %s' % parsed['name'], _dom_label(dom)):
        return dom.snapshotCreateXML(xml, flags)


def external_revert_unsupported(dom):
    """Whether the driver refuses to revert to external snapshots (the QEMU driver before libvirt
    9.9: "revert to external snapshot not supported yet")."""
    with libvirt_call('reading the libvirt version', _dom_label(dom)):
        version = dom.connect().getLibVersion()
    return _driver_type(dom) == 'QEMU' and version < 9009000


# --------------------------------------------------------------------------------------------
# Desired state (the virt_snapshot module)

SNAPSHOT_ARGS = dict(
    domain=dict(type='str', required=True),
    name=dict(type='str', required=True),
    state=dict(type='str', choices=['present', 'absent', 'reverted'], default='present'),
    description=dict(type='str'),
    type=dict(type='str', choices=['internal', 'disk-only', 'external']),
    disks=dict(type='list', elements='dict', options=dict(
        name=dict(type='str', required=True),
        snapshot=dict(type='str', choices=['external', 'no'], default='external'),
        file=dict(type='path'),
    )),
    memory_file=dict(type='path'),
    quiesce=dict(type='bool', default=False),
    current=dict(type='bool', default=False),
    children=dict(type='bool', default=False),
    metadata_only=dict(type='bool', default=False),
)

SNAPSHOT_INFO_ARGS = INFO_ARGS


def _comparable(desc):
    """The part of a snapshot description that diff mode shows."""
    return diff_fields(desc, ('name', 'description', 'parent', 'state', 'creation_time', 'current', 'type',
                              'memory_file', 'disks'))


# What the module records in the domain's metadata after a revert to a snapshot of a shut-off
# domain, so that the next run can tell whether anything changed since (libvirt records nothing).
REVERT_NS = 'https://virtops.example/libvirt/revert/1'
REVERT_PREFIX = 'virtops-revert'


def _persistent_xml(dom):
    with libvirt_call('reading the definition', _dom_label(dom)):
        return dom.XMLDesc(_flag('VIR_DOMAIN_XML_INACTIVE'))


def revert_fingerprint(dom, uri, xml=None):
    """What a revert to a snapshot of a shut-off domain restores, as far as it can be read here:
    a hash of the persistent definition (without this module's own metadata) and the size and
    modification time of every disk image. None when it cannot be known: a disk that is not a
    local file (block device, network disk: writes leave no trace in a modification time), a
    missing image, or a remote URI (the images are on another host)."""
    if not is_local_uri(uri):
        return None
    root = parse_xml(xml if xml is not None else _persistent_xml(dom), 'the definition of %s' % _dom_label(dom))
    metadata = root.find('metadata')
    if metadata is not None:
        for child in list(metadata):
            if child.tag == '{%s}revert' % REVERT_NS:
                metadata.remove(child)
        if not len(metadata):
            root.remove(metadata)
    files = []
    for disk in root.findall('devices/disk'):
        if disk.get('device') in ('cdrom', 'floppy'):
            continue  # read-only media: what a revert restores is the path, in the definition
        source = disk.find('source')
        if disk.get('type') != 'file' or source is None or not source.get('file'):
            return None
        try:
            st = os.stat(source.get('file'))
        except OSError:
            return None
        files.append('%s:%d:%d' % (source.get('file'), st.st_size, st.st_mtime_ns))
    definition = hashlib.sha256(etree.tostring(root, encoding='unicode').encode('utf-8')).hexdigest()
    return dict(definition=definition, disks=' '.join(files))


def recorded_revert(dom):
    """The (snapshot name, fingerprint) this module recorded at its last revert, or None."""
    try:
        xml = dom.metadata(_flag('VIR_DOMAIN_METADATA_ELEMENT'), REVERT_NS,
                           _flag('VIR_DOMAIN_AFFECT_CONFIG'))
    except libvirt.libvirtError:
        return None  # none recorded (VIR_ERR_NO_DOMAIN_METADATA) or not readable: revert
    try:
        node = parse_xml(xml, 'the revert record')
    except VirtError:
        return None
    return node.get('snapshot'), dict(definition=node.get('definition'), disks=node.get('disks') or '')


def record_revert(dom, uri, name):
    """Record what the revert to snapshot name left, for the next run (see revert_fingerprint)."""
    fingerprint = revert_fingerprint(dom, uri)
    if fingerprint is None:
        return
    node = etree.Element('revert', dict(snapshot=name, definition=fingerprint['definition'],
                                        disks=fingerprint['disks']))
    try:
        dom.setMetadata(_flag('VIR_DOMAIN_METADATA_ELEMENT'), etree.tostring(node, encoding='unicode'),
                        REVERT_PREFIX, REVERT_NS, _flag('VIR_DOMAIN_AFFECT_CONFIG'))
    except libvirt.libvirtError:
        pass  # without the record the next run reverts again, which is the safe side


def revert_needed(dom, uri, snap_desc):
    """'' when a revert to the snapshot would change nothing, else why it is needed.

    Only a snapshot of a shut-off domain can be "still reverted": the domain is shut off, the
    snapshot is the current one, and this module's record of its last revert to it matches the
    definition and the disk images now (unchanged size and modification time). A snapshot of a
    running domain is reverted on every run: the guest has run since, so its memory and disks
    have moved on."""
    if snap_desc['state'] != 'shutoff':
        return 'a snapshot of a %s domain: the guest has run since any earlier revert' % snap_desc['state']
    if not snap_desc['current']:
        return 'not the current snapshot'
    if _is_active(dom):
        return 'the domain runs'
    recorded = recorded_revert(dom)
    if recorded is None or recorded[0] != snap_desc['name']:
        return 'no record of an earlier revert to it by this module'
    now = revert_fingerprint(dom, uri)
    if now is None:
        return 'the disks are not local files whose changes can be seen'
    if now['definition'] != recorded[1]['definition']:
        return 'the domain definition changed since the last revert'
    if now['disks'] != recorded[1]['disks']:
        return 'a disk image changed since the last revert'
    return ''


def _lib_version_text(dom):
    with libvirt_call('reading the libvirt version', _dom_label(dom)):
        number = dom.connect().getLibVersion()
    return '%d.%d.%d' % (number // 1000000, number // 1000 % 1000, number % 1000)


class SnapshotManager(MomentManager):
    """virt_snapshot: create a snapshot, change its description or make it current, revert the
    domain to it (state=reverted), or delete it (with its descendants, or its metadata only).
    params: SNAPSHOT_ARGS."""

    kind = 'snapshot'
    argument_spec = SNAPSHOT_ARGS
    only = (('present', ('description', 'type', 'disks', 'memory_file', 'quiesce', 'current')),
            ('absent', ('children', 'metadata_only')))
    find = staticmethod(lookup_snapshot)
    read = staticmethod(describe)
    names_below = staticmethod(descendants)
    comparable = staticmethod(_comparable)

    # -- present ----------------------------------------------------------------------------

    def plan_present(self, live):
        if self.params['state'] == 'reverted':
            return self._plan_revert(live)
        p, dom, name = self.params, self.dom, self.name
        if live is None:
            kind = p['type'] or INTERNAL
            planned = plan_snapshot(dom, name, kind, p['disks'], p['memory_file'])
            if kind == DISK_ONLY:
                state = 'disk-snapshot'
            else:
                state = 'running' if _is_active(dom) else 'shutoff'
            after = dict(name=name, description=p['description'] or None, parent=current_name(dom), state=state,
                         creation_time=None, current=True, type=kind, memory_file=p['memory_file'],
                         disks=planned, xml=None)
            return self.planned([('create', self._create(kind))], after, {}, _comparable(after),
                                'snapshot %s created' % name, would='snapshot %s would be created' % name)

        before = describe(dom, live)
        if p['type'] is not None and p['type'] != before['type']:
            raise SnapshotError(
                '%s exists as a %s snapshot, requested type %s. A snapshot cannot be changed into another '
                'type; delete it (state: absent) or use another name. Nothing was changed.' % (
                    _snap_label(dom, name), before['type'], p['type']), obj=name, snapshot=before)
        description = p['description'] if p['description'] is not None else before['description']
        new_description = compare(build_snapshot_xml(name, description), before['xml'], SNAPSHOT).changed
        make_current = p['current'] and not before['current']
        if not new_description and not make_current:
            return self.planned([], before, _comparable(before), _comparable(before),
                                'snapshot %s exists as requested' % name)

        # Description and "current" are libvirt metadata, which REDEFINE replaces without touching
        # the disks or the memory state.
        xml = set_description(before['xml'], p['description']) if new_description else before['xml']
        after = dict(before)
        after['xml'] = xml
        if new_description:
            after['description'] = p['description'] or None
        if make_current:
            after['current'] = True
        what = ' and '.join(w for w, on in (('description', new_description), ('current flag', make_current)) if on)
        return self.planned([('redefine', self._redefine(xml, make_current or before['current']))],
                            after, _comparable(before), _comparable(after),
                            '%s of snapshot %s changed' % (what, name),
                            would='%s of snapshot %s would be changed' % (what, name))

    def _create(self, kind):
        def step(snap):
            p = self.params
            return create_snapshot(self.dom, self.name, p['description'], kind, p['disks'], p['memory_file'],
                                   p['quiesce'])
        return step

    def _redefine(self, xml, current):
        def step(snap):
            redefine_snapshot(self.dom, xml, current=current)
            return lookup_snapshot(self.dom, self.name)
        return step

    # -- reverted ---------------------------------------------------------------------------

    def _plan_revert(self, snap):
        dom, name, domain = self.dom, self.name, self.params['domain']
        if snap is None:
            raise SnapshotError('%s does not exist; cannot revert to it' % _snap_label(dom, name), obj=name)
        before = describe(dom, snap)
        if before['type'] != INTERNAL and external_revert_unsupported(dom):
            raise SnapshotError(
                'reverting to %s is not possible: it is a %s snapshot, and libvirt before 9.9 (this host '
                'runs %s) reverts only to internal snapshots. Nothing was changed.' % (
                    _snap_label(dom, name), before['type'], _lib_version_text(dom)),
                obj=name, snapshot=before)
        why = revert_needed(dom, getattr(self.connection, 'uri', None), before)
        if not why:
            return self.planned([], before, _comparable(before), _comparable(before),
                                'domain %s is still as reverted to snapshot %s (shut off, definition and disk '
                                'images unchanged since)' % (domain, name), revert_reason=None)
        after = dict(before)
        after['current'] = True
        return self.planned([('revert', self._revert)], after, _comparable(before), _comparable(after),
                            'domain %s reverted to snapshot %s' % (domain, name),
                            would='domain %s would be reverted to snapshot %s' % (domain, name), revert_reason=why)

    def _revert(self, snap):
        with libvirt_call('reverting to snapshot %s' % self.name, _dom_label(self.dom)):
            self.dom.revertToSnapshot(snap, 0)
        return lookup_snapshot(self.dom, self.name)

    def after_apply(self, live, plan):
        live = MomentManager.after_apply(self, live, plan)
        # What a revert to a snapshot of a shut-off domain left, for the next run to compare.
        if self.params['state'] == 'reverted' and self.facts['state'] == 'shutoff' and not _is_active(self.dom):
            record_revert(self.dom, getattr(self.connection, 'uri', None), self.name)
        return live

    # -- absent -----------------------------------------------------------------------------

    def delete(self, live):
        flags = 0
        if self.params['children']:
            flags |= _flag('VIR_DOMAIN_SNAPSHOT_DELETE_CHILDREN')
        if self.params['metadata_only']:
            flags |= _flag('VIR_DOMAIN_SNAPSHOT_DELETE_METADATA_ONLY')
        with libvirt_call('deleting snapshot %s' % self.name, _dom_label(self.dom)):
            live.delete(flags)


def read_snapshots(connection, params, warn):
    """virt_snapshot_info's result."""
    dom = connection.get_domain(params['domain'])
    return dict(current=current_name(dom), snapshots=snapshots_info(dom, params['name']))
