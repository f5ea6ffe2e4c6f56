# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Private to the virtops.libvirt collection: may change without notice.
"""Drift between libvirt, QEMU and the repository, checked before every incremental.

An incremental is only as good as the bitmap it starts from. Before one is taken, the checkpoint
the repository recorded must exist in libvirt and its bitmap must exist, record and be consistent
on every disk. Checkpoint metadata that libvirt lost is redefined from the repository's copy;
anything that cannot be repaired makes the next backup a full one, and the reason says why.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

try:
    import libvirt
except ImportError:  # pragma: no cover - reported by VirtModule
    libvirt = None

from ansible_collections.virtops.libvirt.plugins.module_utils._libvirt import VirtError, is_error
from ansible_collections.virtops.libvirt.plugins.module_utils.xml._document import etree, parse
from ansible_collections.virtops.libvirt.plugins.module_utils import _checkpoint
from ansible_collections.virtops.libvirt.plugins.module_utils.backup import _images, _repository


class Verdict:
    """Whether a backup's checkpoint can start an incremental, and what was repaired on the way."""

    def __init__(self, usable, reason=None, repaired=None):
        self.usable = usable
        self.reason = reason
        self.repaired = repaired or []


def redefinable_xml(saved_xml, keep_parent):
    """The repository's checkpoint XML, ready for REDEFINE: no <domain> (its uuid may have changed
    since), and no <parent> when that parent is unknown to libvirt now."""
    root = parse(saved_xml, 'checkpoint.xml')
    for elem in root.findall('domain'):
        root.remove(elem)
    parent = root.find('parent')
    if parent is not None and not keep_parent(parent.findtext('name')):
        root.remove(parent)
    return etree.tostring(root, encoding='unicode')


def checkpoint_bitmaps(xml):
    """{disk: bitmap name} of the disks a checkpoint XML tracks."""
    root = parse(xml, 'checkpoint XML')
    result = {}
    for disk in root.findall('./disks/disk'):
        if disk.get('checkpoint', 'bitmap') == 'bitmap':
            result[disk.get('name')] = disk.get('bitmap') or root.findtext('name')
    return result


def image_bitmaps(path):
    """{bitmap name: flags} stored in a qcow2 image (the domain must not be running)."""
    data = _images.info(path, force_share=True)
    bitmaps = (data.get('format-specific') or {}).get('data', {}).get('bitmaps') or []
    return dict((b['name'], b.get('flags', [])) for b in bitmaps)


def offline_bitmap_problem(disk_paths, bitmaps):
    """Why the bitmaps are unusable in the images of a shut-off domain, or None."""
    for disk, bitmap in sorted(bitmaps.items()):
        path = disk_paths.get(disk)
        if path is None:
            return 'disk %s is no longer part of the domain' % disk
        try:
            found = image_bitmaps(path)
        except _images.ImageError as exc:
            return 'cannot read the bitmaps of disk %s: %s' % (disk, exc)
        if bitmap not in found:
            return 'bitmap %s is missing from disk %s (%s)' % (bitmap, disk, path)
        flags = found[bitmap]
        if 'in-use' in flags or 'inconsistent' in flags:
            return 'bitmap %s on disk %s is inconsistent (QEMU stopped without saving it)' % (bitmap, disk)
        if 'auto' not in flags:
            return 'bitmap %s on disk %s is disabled: it stopped recording changes' % (bitmap, disk)
    return None


def _distrust(dom, name, xml, running, disks, disk_paths, lost):
    """The Verdict against checkpoint name (its xml) as the base of an incremental of disks;
    None when its bitmaps can be trusted.

    Running: redefining the checkpoint with its XML and VALIDATE makes libvirt check every bitmap
    in QEMU. Shut off: the bitmaps are read in the images, and then a checkpoint libvirt lost
    (lost) is redefined without VALIDATE."""
    bitmaps = checkpoint_bitmaps(xml)
    missing = [d for d in disks if d not in bitmaps]
    if missing:
        return Verdict(False, 'checkpoint %s does not track disk %s' % (name, ', '.join(missing)))
    if running:
        problem = _redefine(dom, xml, validate=True)
    else:
        problem = offline_bitmap_problem(disk_paths, dict((d, bitmaps[d]) for d in disks))
        if problem is None and lost:
            problem = _redefine(dom, xml, validate=False)
    if not problem:
        return None
    if lost:
        return Verdict(False, 'checkpoint %s was lost by libvirt and cannot be redefined: %s' % (name, problem))
    return Verdict(False, 'the bitmap of checkpoint %s cannot be trusted: %s' % (name, problem))


def check_base(dom, running, backup, disks, disk_paths):
    """Can backup's checkpoint start an incremental of disks? Repairs lost metadata when it can.

    disks: names of the disks that the incremental covers (each must have a bitmap in it);
    disk_paths: {disk: image path} of the domain now, for shut-off domains.
    """
    name = backup.checkpoint
    if not name:
        return Verdict(False, 'backup %s recorded no checkpoint' % backup.id)
    try:
        saved = backup.read_text('checkpoint.xml')
    except (IOError, OSError, ValueError, _repository.RepositoryError):
        saved = None
    if saved is not None:
        # The repository's copy is untrusted: it must be a checkpoint of exactly this name.
        try:
            root = parse(saved, 'checkpoint.xml of backup %s' % backup.id)
        except VirtError as exc:
            return Verdict(False, exc.msg)
        if root.tag != 'domaincheckpoint' or root.findtext('name') != name:
            return Verdict(False, 'checkpoint.xml of backup %s does not define checkpoint %s; it is not redefined'
                                  % (backup.id, name))
    ck = _checkpoint.lookup_checkpoint(dom, name)
    if ck is None:
        if saved is None:
            return Verdict(False, 'checkpoint %s of backup %s no longer exists in libvirt, and the repository '
                                  'has no copy of it' % (name, backup.id))
        xml = redefinable_xml(saved, lambda parent: parent and _checkpoint.lookup_checkpoint(dom, parent) is not None)
        verdict = _distrust(dom, name, xml, running, disks, disk_paths, lost=True)
        return verdict or Verdict(True, repaired=['redefined checkpoint %s from the repository' % name])

    xml = ck.getXMLDesc(libvirt.VIR_DOMAIN_CHECKPOINT_XML_NO_DOMAIN)
    return _distrust(dom, name, xml, running, disks, disk_paths, lost=False) or Verdict(True)


def _redefine(dom, xml, validate):
    flags = libvirt.VIR_DOMAIN_CHECKPOINT_CREATE_REDEFINE
    if validate:
        flags |= libvirt.VIR_DOMAIN_CHECKPOINT_CREATE_REDEFINE_VALIDATE
    try:
        dom.checkpointCreateXML(xml, flags)
    except libvirt.libvirtError as exc:
        return exc.get_error_message()
    return None


def orphan_checkpoints(dom, prefix, known):
    """Names of checkpoints that carry this repository's prefix but no complete backup records."""
    try:
        checkpoints = dom.listAllCheckpoints(0)
    except libvirt.libvirtError as exc:
        if is_error(exc, 'VIR_ERR_NO_SUPPORT'):
            return []
        raise
    return sorted(c.getName() for c in checkpoints if c.getName().startswith(prefix) and c.getName() not in known)
