# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Private to the virtops.libvirt collection: may change without notice.
"""libvirt's side of a backup: which disks, the backup and checkpoint XML, and the job itself."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import pwd
import time

from lxml import etree

try:
    import libvirt
except ImportError:  # pragma: no cover - reported by VirtModule
    libvirt = None

from ansible_collections.virtops.libvirt.plugins.module_utils._libvirt import (
    VirtError,
    is_error,
    libvirt_call,
    translate,
)


class Disk:
    """A disk of the domain as the backup sees it."""

    def __init__(self, target, source, fmt, device, readonly, reason=None):
        self.name = target
        self.source = source
        self.format = fmt
        self.device = device
        self.readonly = readonly
        self.reason = reason    # why it cannot be backed up, or None

    @property
    def can_backup(self):
        return self.reason is None


def domain_disks(domain_xml):
    """Every <disk> of the domain, each with the reason it cannot be backed up (or None)."""
    root = etree.fromstring(domain_xml.encode('utf-8') if isinstance(domain_xml, str) else domain_xml)
    disks = []
    for elem in root.findall('./devices/disk'):
        target = elem.find('target')
        if target is None or not target.get('dev'):
            continue
        device = elem.get('device', 'disk')
        driver = elem.find('driver')
        fmt = driver.get('type') if driver is not None else None
        source = elem.find('source')
        path = None
        if source is not None:
            path = source.get('file') or source.get('dev') or source.get('name')
        readonly = elem.find('readonly') is not None
        reason = None
        if device not in ('disk', 'lun'):
            reason = 'device %s is a %s, not a disk' % (target.get('dev'), device)
        elif path is None:
            reason = 'disk %s has no source' % target.get('dev')
        elif readonly:
            reason = 'disk %s is read-only' % target.get('dev')
        elif fmt != 'qcow2':
            reason = ('disk %s is in %s format: incremental backup needs qcow2, which can hold the '
                      'checkpoint bitmaps' % (target.get('dev'), fmt or 'an unknown'))
        disks.append(Disk(target.get('dev'), path, fmt, device, readonly, reason))
    return disks


def qemu_owner(domain_xml):
    """uid and gid QEMU runs as, from the domain's DAC label; falls back to the libvirt-qemu user."""
    root = etree.fromstring(domain_xml.encode('utf-8') if isinstance(domain_xml, str) else domain_xml)
    for label in root.findall("./seclabel[@model='dac']/imagelabel") + root.findall("./seclabel[@model='dac']/label"):
        text = (label.text or '').strip()
        if ':' in text:
            user, group = text.split(':', 1)
            try:
                return int(user.lstrip('+')), int(group.lstrip('+'))
            except ValueError:
                pass
    for name in ('libvirt-qemu', 'qemu'):
        try:
            entry = pwd.getpwnam(name)
            return entry.pw_uid, entry.pw_gid
        except KeyError:
            continue
    return None


def checkpoint_xml(name, description, disks_in, disks_out):
    root = etree.Element('domaincheckpoint')
    etree.SubElement(root, 'name').text = name
    etree.SubElement(root, 'description').text = description
    disks = etree.SubElement(root, 'disks')
    for disk in disks_in:
        etree.SubElement(disks, 'disk', name=disk, checkpoint='bitmap')
    for disk in disks_out:
        etree.SubElement(disks, 'disk', name=disk, checkpoint='no')
    return etree.tostring(root, encoding='unicode')


def push_backup_xml(since, targets, disks_out):
    """targets: {disk: image path}. The images exist already (REUSE_EXTERNAL)."""
    root = etree.Element('domainbackup', mode='push')
    if since:
        etree.SubElement(root, 'incremental').text = since
    disks = etree.SubElement(root, 'disks')
    for disk, path in sorted(targets.items()):
        elem = etree.SubElement(disks, 'disk', name=disk, backup='yes', type='file')
        etree.SubElement(elem, 'target', file=path)
        etree.SubElement(elem, 'driver', type='qcow2')
    for disk in disks_out:
        etree.SubElement(disks, 'disk', name=disk, backup='no')
    return etree.tostring(root, encoding='unicode')


def pull_backup_xml(since, socket, scratch, disks_out):
    """scratch: {disk: scratch file path}; the export is a unix socket."""
    root = etree.Element('domainbackup', mode='pull')
    if since:
        etree.SubElement(root, 'incremental').text = since
    etree.SubElement(root, 'server', transport='unix', socket=socket)
    disks = etree.SubElement(root, 'disks')
    for disk, path in sorted(scratch.items()):
        elem = etree.SubElement(disks, 'disk', name=disk, backup='yes', type='file')
        etree.SubElement(elem, 'scratch', file=path)
    for disk in disks_out:
        etree.SubElement(disks, 'disk', name=disk, backup='no')
    return etree.tostring(root, encoding='unicode')


def pull_exports(job_xml):
    """{disk: (export name, bitmap or None)} from the running job's XML."""
    root = etree.fromstring(job_xml.encode('utf-8'))
    result = {}
    for elem in root.findall('./disks/disk'):
        if elem.get('backup') == 'yes':
            result[elem.get('name')] = (elem.get('exportname') or elem.get('name'), elem.get('exportbitmap'))
    return result


class BackupJob:
    """One virDomainBackupBegin job: begun with its checkpoint, always ended by end()."""

    def __init__(self, dom, label):
        self.dom = dom
        self.label = label
        self.active = False

    def begin(self, backup_xml, checkpoint_xml_text, reuse_external=False):
        flags = libvirt.VIR_DOMAIN_BACKUP_BEGIN_REUSE_EXTERNAL if reuse_external else 0
        with libvirt_call('starting the backup job', self.label):
            self.dom.backupBegin(backup_xml, checkpoint_xml_text, flags)
        self.active = True

    def xml(self):
        with libvirt_call('reading the backup job', self.label):
            return self.dom.backupGetXMLDesc(0)

    def wait(self, deadline):
        """Wait for a push job to finish; raise VirtError if it failed or ran past deadline."""
        while True:
            with libvirt_call('watching the backup job', self.label):
                stats = self.dom.jobStats(0)
            if stats.get('type', libvirt.VIR_DOMAIN_JOB_NONE) == libvirt.VIR_DOMAIN_JOB_NONE:
                break
            if deadline and time.time() > deadline:
                raise VirtError('the backup job of %s did not finish within the timeout' % self.label)
            time.sleep(0.1)
        self.active = False
        with libvirt_call('reading the finished backup job', self.label):
            done = self.dom.jobStats(libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED)
        kind = done.get('type')
        if kind != libvirt.VIR_DOMAIN_JOB_COMPLETED:
            raise VirtError('the backup job of %s failed: %s' % (
                self.label, done.get('errmsg') or 'libvirt reports job type %s' % kind))
        return done

    def end(self):
        """Abort the job if it still runs (pull jobs end this way); safe to call twice."""
        if not self.active:
            return
        try:
            self.dom.abortJob()
        except libvirt.libvirtError as exc:
            # The job may already be gone (finished, or the domain stopped).
            if not is_error(exc, 'VIR_ERR_OPERATION_INVALID', 'VIR_ERR_NO_DOMAIN'):
                raise translate(exc, 'ending the backup job', self.label)
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                stats = self.dom.jobStats(0)
            except libvirt.libvirtError:
                break
            if stats.get('type', libvirt.VIR_DOMAIN_JOB_NONE) == libvirt.VIR_DOMAIN_JOB_NONE:
                break
            time.sleep(0.1)
        self.active = False


def delete_checkpoint(dom, name):
    """Delete a checkpoint this run created; quiet when it is already gone."""
    try:
        ck = dom.checkpointLookupByName(name, 0)
    except libvirt.libvirtError as exc:
        if is_error(exc, 'VIR_ERR_NO_DOMAIN_CHECKPOINT'):
            return False
        raise
    ck.delete(0)
    return True


def lookup_checkpoint(dom, name):
    try:
        return dom.checkpointLookupByName(name, 0)
    except libvirt.libvirtError as exc:
        if is_error(exc, 'VIR_ERR_NO_DOMAIN_CHECKPOINT'):
            return None
        raise translate(exc, 'looking up checkpoint %s' % name, dom.name())


def wait_for_path(path, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if os.path.exists(path):
            return True
        time.sleep(0.05)
    return False
