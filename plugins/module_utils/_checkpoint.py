# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Private to the virtops.libvirt collection: may change without notice.
"""Checkpoints of libvirt domains: read, create, redefine, delete.

Used by the virt_checkpoint and virt_checkpoint_info modules and by the backup engine. Every
function here raises VirtError (or its subclass CheckpointError) with a message meant for the
user; none of them exits a module.

Facts this code relies on (libvirt 9.0, QEMU 7.2; see docs/LAB-NOTES.md):
- creating a checkpoint needs a running domain (the QEMU and test drivers both refuse otherwise);
- libvirt's QEMU driver deletes a checkpoint (bitmaps included) only while the domain runs; for a
  shut-off domain this module removes the bitmaps from the images with `qemu-img bitmap --remove`
  and then deletes the metadata alone;
- a disk can hold a bitmap only in the qcow2 format;
- without <disks>, libvirt gives every writable disk with media a bitmap; with <disks>, disks not
  listed get none;
- REDEFINE of an existing checkpoint replaces its metadata (bitmaps are not touched).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import re
import shutil
import subprocess

from ansible_collections.virtops.libvirt.plugins.module_utils._checkpoint_profile import CHECKPOINT, CHECKPOINT_DEFINITION
from ansible_collections.virtops.libvirt.plugins.module_utils._libvirt import (
    VirtError,
    domain_label as _dom_label,
    driver_type as _driver_type,
    flag as _flag,
    is_error,
    libvirt_call,
    lookup_or_none,
    translate,
)
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
from ansible_collections.virtops.libvirt.plugins.module_utils.xml._document import etree
from ansible_collections.virtops.libvirt.plugins.module_utils.xml._compare import compare

try:
    import libvirt
except ImportError:  # pragma: no cover - reported by VirtModule
    libvirt = None


BITMAP = 'bitmap'
NO = 'no'
# Disk formats that can store a persistent dirty bitmap.
BITMAP_FORMATS = ('qcow2',)


class CheckpointError(VirtError):
    """A checkpoint operation that cannot or must not be done, explained for the user."""


def _chk_label(dom, name):
    return 'checkpoint %s of domain %s' % (name, dom.name())


# --------------------------------------------------------------------------------------------
# XML


def parse_checkpoint_xml(xml):
    """A checkpoint XML document as a dict.

    Keys: name, description (None when absent), parent (None for a root), creation_time (int or
    None), disks (list of dicts name, checkpoint, bitmap (None when checkpoint is no), size
    (int, only in XML read with VIR_DOMAIN_CHECKPOINT_XML_SIZE, else None)), has_domain
    (whether the <domain> copy is present). Raises CheckpointError on XML that is not a
    checkpoint.
    """
    root, creation = parse_moment(xml, 'checkpoint', CheckpointError)
    disks = []
    for disk in root.findall('disks/disk'):
        size = disk.get('size')
        kind = disk.get('checkpoint') or BITMAP
        disks.append(dict(
            name=disk.get('name'),
            checkpoint=kind,
            bitmap=disk.get('bitmap') if kind == BITMAP else None,
            size=int(size) if size is not None else None,
        ))
    return dict(
        name=child_text(root, 'name'),
        description=child_text(root, 'description'),
        parent=child_text(root, 'parent/name'),
        creation_time=creation,
        disks=disks,
        has_domain=root.find('domain') is not None,
    )


def build_checkpoint_xml(name, description=None, disks=None, parent=None, creation_time=None):
    """XML for virDomainCheckpointCreateXML: the one builder of checkpoint XML (virt_checkpoint and
    the backup engine).

    disks: None to let libvirt choose (every writable disk gets a bitmap), or a list of
    dicts name, checkpoint ('bitmap' or 'no') and, to REDEFINE a checkpoint whose bitmaps exist,
    bitmap (its name); libvirt gives unlisted disks no bitmap. parent (a checkpoint name) and
    creation_time (seconds) only for REDEFINE, which records them as given.
    """
    root = new_moment('checkpoint', name, description)
    if parent:
        etree.SubElement(etree.SubElement(root, 'parent'), 'name').text = parent
    if creation_time is not None:
        etree.SubElement(root, 'creationTime').text = str(int(creation_time))
    if disks is not None:
        node = etree.SubElement(root, 'disks')
        for disk in disks:
            attrs = dict(name=disk['name'], checkpoint=disk.get('checkpoint') or BITMAP)
            if disk.get('bitmap'):
                attrs['bitmap'] = disk['bitmap']
            etree.SubElement(node, 'disk', attrs)
    return etree.tostring(root, encoding='unicode')


def set_description(xml, description):
    """The checkpoint XML with its <description> replaced (removed when description is empty).

    libvirt writes name, description, parent, creationTime, disks, domain in this order; the
    domain copy stays byte for byte (_moment.replace_description).
    """
    parse_checkpoint_xml(xml)
    return replace_description(xml, description, 'checkpoint', CheckpointError)


def predict_disks(dom_disks, requested=None):
    """The disk list libvirt will give a new checkpoint, as dicts name, checkpoint.

    Follows virDomainCheckpointAlignDisks: without a request every disk with media that is not
    read-only gets a bitmap; with a request, listed disks get what they ask for and the others
    get none.
    """
    by_name = dict((d['name'], d.get('checkpoint') or BITMAP) for d in (requested or []))
    result = []
    for disk in dom_disks:
        if requested is None:
            kind = NO if disk.source is None or disk.readonly else BITMAP
        else:
            kind = by_name.get(disk.name, NO)
        result.append(dict(name=disk.name, checkpoint=kind))
    return result


def validate_disk_request(dom, dom_disks, requested):
    """Fail before libvirt does when the disk list names unknown disks or twice the same one."""
    if requested is None:
        return
    known = [d.name for d in dom_disks]
    seen = set()
    for disk in requested:
        if disk['name'] in seen:
            raise CheckpointError('disk %s is listed twice in disks' % disk['name'])
        seen.add(disk['name'])
        if disk['name'] not in known:
            raise CheckpointError('%s has no disk %s; its disks are: %s' % (
                _dom_label(dom), disk['name'], ', '.join(known) or 'none'))


def check_bitmap_capable(dom, name, dom_disks, planned):
    """Fail, naming the disk and its format, when a disk that is to get a bitmap cannot hold one.

    Disks whose format the domain XML does not state (test driver) are left to libvirt.
    """
    formats = dict((d.name, d) for d in dom_disks)
    bad = []
    for disk in planned:
        if disk['checkpoint'] != BITMAP:
            continue
        info = formats.get(disk['name'])
        if info is None or info.format is None:
            continue
        if info.format not in BITMAP_FORMATS:
            bad.append(info)
    if bad:
        reasons = ['disk %s (%s) has format %s' % (d.name, d.source or 'no source', d.format)
                   for d in bad]
        raise CheckpointError(
            'cannot create %s: %s; a checkpoint keeps a persistent dirty bitmap in the disk image, '
            'which only %s images can hold. Exclude the disk with disks: [{name: %s, checkpoint: no}] '
            '(list every disk that should get a bitmap), or convert it to qcow2.' % (
                _chk_label(dom, name), '; '.join(reasons), '/'.join(BITMAP_FORMATS), bad[0].name),
            obj=name, disks=[d.name for d in bad])


# --------------------------------------------------------------------------------------------
# Reading


def lookup_checkpoint(dom, name):
    """The virDomainCheckpoint called name, or None."""
    return lookup_or_none(lambda: dom.checkpointLookupByName(name), ('VIR_ERR_NO_DOMAIN_CHECKPOINT',),
                          'looking up checkpoint %s' % name, _dom_label(dom))


def list_checkpoints(dom):
    """Every checkpoint of the domain, parents before their children."""
    with libvirt_call('listing checkpoints', _dom_label(dom)):
        return dom.listAllCheckpoints(_flag('VIR_DOMAIN_CHECKPOINT_LIST_TOPOLOGICAL'))


def descendants(dom, chk):
    """Names of every checkpoint below chk, parents before their children."""
    return ordered_descendants(dom, chk, 'checkpoint', 'VIR_DOMAIN_CHECKPOINT_LIST_DESCENDANTS', list_checkpoints)


def checkpoint_xml(dom, chk, no_domain=False, size=False):
    flags = 0
    if no_domain:
        flags |= _flag('VIR_DOMAIN_CHECKPOINT_XML_NO_DOMAIN')
    if size:
        flags |= _flag('VIR_DOMAIN_CHECKPOINT_XML_SIZE')
    with libvirt_call('reading the XML of checkpoint %s' % chk.getName(), _dom_label(dom)):
        return chk.getXMLDesc(flags)


def checkpoint_sizes(dom, chk):
    """Bytes written since the checkpoint, per disk with a bitmap, or None when the domain is
    not running (libvirt asks QEMU for the bitmaps' dirty counts)."""
    with libvirt_call('reading the state', _dom_label(dom)):
        active = dom.isActive()
    if not active:
        return None
    try:
        xml = chk.getXMLDesc(_flag('VIR_DOMAIN_CHECKPOINT_XML_NO_DOMAIN') | _flag('VIR_DOMAIN_CHECKPOINT_XML_SIZE'))
    except libvirt.libvirtError as exc:
        # The domain stopped between the two calls.
        if is_error(exc, 'VIR_ERR_OPERATION_INVALID'):
            return None
        raise translate(exc, 'reading the size of checkpoint %s' % chk.getName(), _dom_label(dom))
    parsed = parse_checkpoint_xml(xml)
    return dict((d['name'], d['size']) for d in parsed['disks'] if d['size'] is not None)


def describe(dom, chk, size=False):
    """A checkpoint as the modules return it: name, description, parent, creation_time, disks
    (name, checkpoint, bitmap), xml (full, usable for redefinition) and, with size=True, size."""
    xml = checkpoint_xml(dom, chk)
    parsed = parse_checkpoint_xml(xml)
    result = dict(
        name=parsed['name'],
        description=parsed['description'],
        parent=parsed['parent'],
        creation_time=parsed['creation_time'],
        disks=[dict(name=d['name'], checkpoint=d['checkpoint'], bitmap=d['bitmap']) for d in parsed['disks']],
        xml=xml,
    )
    if size:
        result['size'] = checkpoint_sizes(dom, chk)
    return result


def checkpoints_info(dom, name=None, size=True):
    """describe() of every checkpoint of the domain (parents first), or of the one called name
    (an empty list when there is none)."""
    if name is not None:
        chk = lookup_checkpoint(dom, name)
        return [describe(dom, chk, size=size)] if chk is not None else []
    return [describe(dom, chk, size=size) for chk in list_checkpoints(dom)]


# --------------------------------------------------------------------------------------------
# Changing


def require_active(dom, what):
    with libvirt_call('reading the state', _dom_label(dom)):
        active = dom.isActive()
    if not active:
        raise CheckpointError('%s needs %s running: libvirt makes and removes dirty bitmaps through '
                              'QEMU, and the domain is shut off' % (what, _dom_label(dom)),
                              obj=dom.name())


def offline_delete_supported(dom):
    """Whether the driver deletes checkpoints (bitmaps included) of a shut-off domain.

    libvirt 9.0's QEMU driver refuses ("cannot delete checkpoint for inactive domain"); the
    test driver accepts.
    """
    return _driver_type(dom) != 'QEMU'


def redefine_validate_supported(dom):
    """Whether VIR_DOMAIN_CHECKPOINT_CREATE_REDEFINE_VALIDATE can be used now: the domain runs
    and the driver has real bitmaps to check (the test driver rejects the flag)."""
    with libvirt_call('reading the state', _dom_label(dom)):
        active = dom.isActive()
    return bool(active) and _driver_type(dom) != 'TEST'


def create_checkpoint(dom, name, description=None, disks=None):
    """Create a checkpoint (bitmaps included) after checking what libvirt would reject late.

    Returns the virDomainCheckpoint.
    """
    plan_checkpoint(dom, name, disks)
    xml = build_checkpoint_xml(name, description, disks)
    with libvirt_call('creating checkpoint %s' % name, _dom_label(dom)):
        return dom.checkpointCreateXML(xml, 0)


def plan_checkpoint(dom, name, disks=None):
    """The disks (name, checkpoint) a new checkpoint will get; raises CheckpointError when it
    cannot be created (domain shut off, unknown disk, disk without bitmap support)."""
    require_active(dom, 'creating %s' % _chk_label(dom, name))
    dom_disks = domain_disks(dom)
    validate_disk_request(dom, dom_disks, disks)
    planned = predict_disks(dom_disks, disks)
    check_bitmap_capable(dom, name, dom_disks, planned)
    return planned


def parse_redefine_xml(xml):
    """Check XML meant for redefinition before libvirt sees it; returns parse_checkpoint_xml()."""
    parsed = parse_checkpoint_xml(xml)
    if not parsed['name']:
        raise CheckpointError('redefine_xml has no <name>')
    if parsed['creation_time'] is None:
        raise CheckpointError('redefine_xml has no <creationTime>: redefinition restores a checkpoint '
                              'exactly as it was; pass the xml that virt_checkpoint or virt_checkpoint_info '
                              'returned (or virsh checkpoint-dumpxml)')
    return parsed


def redefine_checkpoint(dom, xml, validate=None):
    """Restore checkpoint metadata from XML (VIR_DOMAIN_CHECKPOINT_CREATE_REDEFINE).

    validate None: check that the bitmaps exist (REDEFINE_VALIDATE) when the domain runs.
    Returns the virDomainCheckpoint.
    """
    parsed = parse_redefine_xml(xml)
    if validate is None:
        validate = redefine_validate_supported(dom)
    flags = _flag('VIR_DOMAIN_CHECKPOINT_CREATE_REDEFINE')
    if validate:
        flags |= _flag('VIR_DOMAIN_CHECKPOINT_CREATE_REDEFINE_VALIDATE')
    with libvirt_call('redefining checkpoint %s' % parsed['name'], _dom_label(dom)):
        return dom.checkpointCreateXML(xml, flags)


def delete_checkpoint(dom, chk, children=False, metadata_only=False):
    """Delete a checkpoint; children=True also deletes its descendants; metadata_only=True keeps
    the bitmaps in the images and removes only libvirt's record.

    For a shut-off domain whose driver cannot delete bitmaps (QEMU), the bitmaps are removed from
    the images with qemu-img first and then the metadata alone is deleted.
    """
    flags = 0
    if children:
        flags |= _flag('VIR_DOMAIN_CHECKPOINT_DELETE_CHILDREN')
    offline = None if metadata_only else plan_offline_delete(dom, chk, children)
    if metadata_only or offline is not None:
        flags |= _flag('VIR_DOMAIN_CHECKPOINT_DELETE_METADATA_ONLY')
    for path, bitmap in offline or ():
        remove_bitmap(path, bitmap, strict=True)
    with libvirt_call('deleting checkpoint %s' % chk.getName(), _dom_label(dom)):
        chk.delete(flags)
    return offline


def plan_offline_delete(dom, chk, children=False):
    """The (image, bitmap) pairs to remove with qemu-img before deleting chk (and with
    children=True its descendants) from a shut-off domain, or None when libvirt deletes the
    bitmaps itself (the domain runs, or the driver can). Raises CheckpointError when the bitmaps
    cannot be removed offline, before anything is changed."""
    if offline_delete_supported(dom):
        return None
    with libvirt_call('reading the state', _dom_label(dom)):
        if dom.isActive():
            return None
    if shutil.which('qemu-img') is None:
        raise CheckpointError('deleting %s of the shut-off domain needs qemu-img on the host (package qemu-utils '
                              'or qemu-img) to remove its bitmaps; or set metadata_only: true'
                              % _chk_label(dom, chk.getName()), obj=dom.name())
    sources = dict((d.name, d) for d in domain_disks(dom, inactive=True))
    names = [chk.getName()] + (descendants(dom, chk) if children else [])
    pairs = []
    for name in names:
        other = chk if name == chk.getName() else lookup_checkpoint(dom, name)
        for disk in parse_checkpoint_xml(checkpoint_xml(dom, other, no_domain=True))['disks']:
            if disk['checkpoint'] != BITMAP or disk['name'] not in sources:
                continue  # a disk removed from the domain took its bitmap with it
            path = sources[disk['name']].source
            if not path or not path.startswith('/'):
                raise CheckpointError(
                    'cannot delete %s while the domain is shut off: disk %s is not a local image (%s), so its '
                    'bitmap cannot be removed with qemu-img. Start the domain, or set metadata_only: true'
                    % (_chk_label(dom, name), disk['name'], path or 'no source'), obj=dom.name())
            for image in images_with_bitmap(path, disk['bitmap'] or name):
                pairs.append((image, disk['bitmap'] or name))
    return pairs


def images_with_bitmap(path, bitmap):
    """The images of the backing chain of path that hold a bitmap called bitmap (a snapshot
    overlay holds copies of its backing image's bitmaps)."""
    run = subprocess.run(['qemu-img', 'info', '--backing-chain', '--output=json', '--', path],
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
    if run.returncode != 0:
        raise CheckpointError('cannot read the bitmaps of %s: %s' % (path, run.stderr.decode('utf-8', 'replace').strip()))
    images = json.loads(run.stdout.decode('utf-8'))
    found = []
    for image in images if isinstance(images, list) else [images]:
        data = (image.get('format-specific') or {}).get('data') or {}
        if any(b.get('name') == bitmap for b in data.get('bitmaps') or ()):
            found.append(image['filename'])
    return found


def add_bitmap(path, bitmap):
    """Add a persistent dirty bitmap to an image of a shut-off domain."""
    run = subprocess.run(['qemu-img', 'bitmap', '--add', '--granularity', '65536', '--', path, bitmap],
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
    if run.returncode != 0:
        raise CheckpointError('cannot add bitmap %s to %s: %s'
                              % (bitmap, path, run.stderr.decode('utf-8', 'replace').strip()))


def remove_bitmap(path, bitmap, strict=False):
    """Remove a bitmap from an image of a shut-off domain; True if it was there. strict: raise
    when qemu-img fails (else quiet, for clean-up of leftovers that may be gone already)."""
    run = subprocess.run(['qemu-img', 'bitmap', '--remove', '--', path, bitmap], stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
    if run.returncode != 0 and strict:
        raise CheckpointError('cannot remove bitmap %s from %s: %s'
                              % (bitmap, path, run.stderr.decode('utf-8', 'replace').strip()))
    return run.returncode == 0


def discard_checkpoint(dom, name, disk_paths=None):
    """Delete checkpoint name with its bitmaps, whether the domain runs or not; quiet when it is
    gone. For clean-up: when libvirt has no record of it left and the domain is shut off, the
    bitmap called name is still removed from the images in disk_paths (disk name: path).
    True when libvirt had the checkpoint."""
    chk = lookup_checkpoint(dom, name)
    if chk is not None:
        delete_checkpoint(dom, chk)
        return True
    with libvirt_call('reading the state', _dom_label(dom)):
        active = dom.isActive()
    if not active:
        for path in (disk_paths or {}).values():
            remove_bitmap(path, name)
    return False


# --------------------------------------------------------------------------------------------
# Desired state (the virt_checkpoint module)

CHECKPOINT_ARGS = dict(
    domain=dict(type='str', required=True),
    name=dict(type='str'),
    state=dict(type='str', choices=['present', 'absent'], default='present'),
    description=dict(type='str'),
    disks=dict(type='list', elements='dict', options=dict(
        name=dict(type='str', required=True),
        checkpoint=dict(type='str', choices=['bitmap', 'no'], default='bitmap'),
    )),
    redefine_xml=dict(type='str'),
    children=dict(type='bool', default=False),
    metadata_only=dict(type='bool', default=False),
)

CHECKPOINT_INFO_ARGS = INFO_ARGS


def _comparable(desc):
    """The part of a checkpoint description that diff mode shows."""
    return diff_fields(desc, ('name', 'description', 'parent', 'creation_time', 'disks'))


def disk_differences(intent, requested):
    """The listed disks whose checkpoint setting differs from the existing checkpoint, as
    strings, from the comparison of the options with it (CHECKPOINT)."""
    wanted = dict((d['name'], d.get('checkpoint') or BITMAP) for d in requested)
    diffs = []
    for difference in intent.differences:
        if difference.path == 'disks':  # the checkpoint has no disks at all
            diffs.extend('disk %s: checkpoint=%s, requested %s' % (d['name'], NO, wanted[d['name']])
                         for d in requested if wanted[d['name']] != NO)
            continue
        match = re.match(r'disks/disk\[(.*)\](@checkpoint)?$', difference.path)
        if match is not None:
            got = difference.before if match.group(2) else NO
            diffs.append('disk %s: checkpoint=%s, requested %s' % (match.group(1), got, wanted[match.group(1)]))
    return diffs


class CheckpointManager(MomentManager):
    """virt_checkpoint: create a checkpoint, change its description, redefine it from XML, or
    delete it (with its descendants, or its metadata only). params: CHECKPOINT_ARGS."""

    kind = 'checkpoint'
    argument_spec = CHECKPOINT_ARGS
    module_options = dict(
        required_one_of=[('name', 'redefine_xml')],
        required_if=[('state', 'absent', ('name',))],
        mutually_exclusive=[('redefine_xml', 'description'), ('redefine_xml', 'disks')],
    )
    only = (('present', ('description', 'disks', 'redefine_xml')),
            ('absent', ('children', 'metadata_only')))
    find = staticmethod(lookup_checkpoint)
    read = staticmethod(describe)
    names_below = staticmethod(descendants)
    comparable = staticmethod(_comparable)

    def __init__(self, connection, params, check_mode=False, diff_mode=False, warn=None):
        MomentManager.__init__(self, connection, params, check_mode, diff_mode, warn)
        self.redefined = None  # redefine_xml, parsed

    def identify(self):
        self.connection.require('checkpoints')
        name = MomentManager.identify(self)
        xml = self.params.get('redefine_xml')
        if xml is None:
            return name
        self.redefined = parse_redefine_xml(xml)
        if name is not None and name != self.redefined['name']:
            raise CheckpointError('name is %s but redefine_xml describes checkpoint %s' % (name, self.redefined['name']))
        return self.redefined['name']

    # -- present ----------------------------------------------------------------------------

    def plan_present(self, live):
        if self.redefined is not None:
            return self._plan_redefine(live)
        p, name = self.params, self.name
        if live is None:
            planned = plan_checkpoint(self.dom, name, p['disks'])
            after = dict(name=name, description=p['description'] or None, parent=None, creation_time=None,
                         disks=[dict(name=d['name'], checkpoint=d['checkpoint'],
                                     bitmap=name if d['checkpoint'] == BITMAP else None) for d in planned],
                         xml=None)
            return self.planned([('create', self._create)], after, {}, _comparable(after),
                                'checkpoint %s created' % name, would='checkpoint %s would be created' % name)

        before = describe(self.dom, live)
        description = p['description'] if p['description'] is not None else before['description']
        intent = compare(build_checkpoint_xml(name, description, p['disks']), before['xml'], CHECKPOINT)
        diffs = disk_differences(intent, p['disks'] or [])
        if diffs:
            raise CheckpointError(
                '%s exists with other disks than requested (%s). The bitmaps of a checkpoint are made '
                'when it is created and cannot be changed afterwards; delete it (state: absent) and '
                'create it again, or create a checkpoint with another name. Nothing was changed.' % (
                    _chk_label(self.dom, name), '; '.join(diffs)),
                obj=name, checkpoint=before)
        if not intent.changed:
            return self.planned([], before, _comparable(before), _comparable(before),
                                'checkpoint %s exists as requested' % name)

        # Only the description differs: it is libvirt metadata, which REDEFINE replaces without
        # touching the bitmaps.
        after = dict(before)
        after['description'] = p['description'] or None
        after['xml'] = set_description(before['xml'], p['description'])
        return self.planned([('redefine', self._redefine(after['xml']))], after, _comparable(before), _comparable(after),
                            'description of checkpoint %s changed' % name,
                            would='description of checkpoint %s would be changed' % name)

    def _plan_redefine(self, chk):
        name, xml, parsed = self.name, self.params['redefine_xml'], self.redefined
        before = describe(self.dom, chk) if chk is not None else None
        if before is not None and not compare(xml, before['xml'], CHECKPOINT_DEFINITION).changed:
            return self.planned([], before, _comparable(before), _comparable(before),
                                'checkpoint %s is defined as in redefine_xml' % name)
        after = dict((k, parsed[k]) for k in ('name', 'description', 'parent', 'creation_time'))
        after['disks'] = [dict(name=d['name'], checkpoint=d['checkpoint'], bitmap=d['bitmap'])
                          for d in parsed['disks']]
        after['xml'] = xml
        return self.planned([('redefine', self._redefine(xml))], after, _comparable(before), _comparable(after),
                            'checkpoint %s redefined' % name, would='checkpoint %s would be redefined' % name)

    def _create(self, chk):
        p = self.params
        return create_checkpoint(self.dom, self.name, p['description'], p['disks'])

    def _redefine(self, xml):
        return lambda chk: redefine_checkpoint(self.dom, xml)

    # -- absent -----------------------------------------------------------------------------

    def deletion_note(self, live):
        p = self.params
        offline = None if p['metadata_only'] else plan_offline_delete(self.dom, live, p['children'])
        if offline is None:
            return ''
        return (' (the domain is shut off: bitmaps removed from %d image(s) with qemu-img, then the metadata)'
                % len(set(pair[0] for pair in offline)))

    def delete(self, live):
        delete_checkpoint(self.dom, live, children=self.params['children'], metadata_only=self.params['metadata_only'])


def read_checkpoints(connection, params, warn):
    """virt_checkpoint_info's result."""
    connection.require('checkpoints')
    dom = connection.get_domain(params['domain'])
    return dict(checkpoints=checkpoints_info(dom, params['name'], size=True))
