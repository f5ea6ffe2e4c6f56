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
from ansible_collections.virtops.libvirt.plugins.module_utils import _disks
from ansible_collections.virtops.libvirt.plugins.module_utils.xml._document import etree, parse


# Disk types whose data QEMU reads itself: a backup job of a running domain exports them whatever
# their type and format; shut off, only local files and block devices can be read directly.
BACKUP_TYPES = ('file', 'block', 'network', 'volume')
LOCAL_TYPES = ('file', 'block')


class Disk(_disks.Disk):
    """A disk of the domain as the backup sees it: a _disks.Disk whose format is raw when the
    XML does not say.

    skip: why the disk holds nothing to back up (a CD-ROM, a floppy, read-only, no medium): left
    out and listed, never an error. problem: why a disk that holds data cannot be backed up: an
    error unless the user excludes it. method: how its changes are found, 'bitmap' (qcow2: a
    persistent dirty bitmap per checkpoint) or 'compare' (any other format: read in full, each
    block compared with the previous backup's integrity data).
    """

    def __init__(self, disk, skip=None, problem=None):
        super(Disk, self).__init__(disk.name, disk.device, disk.type, disk.format or 'raw', disk.path, disk.source,
                                   disk.readonly, disk.shareable)
        self.skip = skip
        self.problem = problem

    @property
    def reason(self):
        return self.skip or self.problem

    @property
    def can_backup(self):
        return self.reason is None

    @property
    def method(self):
        return 'bitmap' if self.format == 'qcow2' else 'compare'

    def offline_problem(self):
        """Why this disk cannot be read while the domain is shut off, or None."""
        if self.type not in LOCAL_TYPES:
            return ('disk %s is a %s disk: with the domain shut off only local files and block devices can be '
                    'read; start the domain to back it up, or exclude it' % (self.name, self.type))
        return None


def backup_disks(domain_xml):
    """Every <disk> of the domain, each with why it is left out (skip) or cannot be backed up (problem)."""
    disks = []
    for disk in _disks.xml_disks(domain_xml):
        skip = problem = None
        if disk.device not in ('disk', 'lun'):
            skip = 'device %s is a %s, not a disk' % (disk.name, disk.device)
        elif disk.source is None:
            skip = 'disk %s has no source' % disk.name
        elif disk.readonly:
            skip = 'disk %s is read-only' % disk.name
        elif disk.type not in BACKUP_TYPES:
            problem = 'disk %s is a %s disk, which a backup job cannot export' % (disk.name, disk.type)
        disks.append(Disk(disk, skip, problem))
    return disks


GUEST_AGENT_CHANNEL = 'org.qemu.guest_agent.0'


def guest_agent_connected(domain_xml):
    """Whether the running domain has a guest agent channel and the agent is connected to it
    (libvirt reports state='connected' in the live XML once the agent in the guest opened it)."""
    root = parse(domain_xml, 'the domain XML')
    for target in root.iterfind('devices/channel/target'):
        if target.get('name') == GUEST_AGENT_CHANNEL:
            return target.get('state') == 'connected'
    return False


def plan_quiesce(quiesce, domain_xml, state, label):
    """How this backup freezes the guest's file systems: None (not at all), 'auto' (try, go on
    without when the freeze fails) or 'always' (a failed freeze fails the backup).

    quiesce: the option (auto, always or never). Raises VirtError for always when it cannot be
    done, before anything is changed. A shut-off domain needs no freezing: its disks are
    consistent as they are.
    """
    if quiesce == 'never' or state in ('shutoff', 'shutdown', 'crashed'):
        return None
    if state != 'running':
        if quiesce == 'always':
            raise VirtError('quiesce: always cannot freeze %s: it is %s, and the guest agent answers only '
                            'while the guest runs. Resume it, or use quiesce: auto' % (label, state))
        return None
    if guest_agent_connected(domain_xml):
        return quiesce
    if quiesce == 'always':
        raise VirtError('quiesce: always needs the QEMU guest agent in %s, and none is connected: the domain '
                        "needs a <channel type='unix'><target type='virtio' name='%s'/></channel> and qemu-ga "
                        'running in the guest. Nothing was changed; use quiesce: auto to back up without '
                        'freezing when the agent is missing' % (label, GUEST_AGENT_CHANNEL))
    return None


def qemu_owner(domain_xml):
    """uid and gid QEMU runs as, from the domain's DAC label; falls back to the libvirt-qemu user."""
    root = parse(domain_xml, 'the domain XML')
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


def _disk_elements(root, since, disks, full_disks, disks_out):
    """<disks> of a backup XML; disks in full_disks get a full copy even in an incremental job
    (a disk added to the domain since the checkpoint has no bitmap to start from)."""
    elems = {}
    container = etree.SubElement(root, 'disks')
    for disk in sorted(disks):
        elem = etree.SubElement(container, 'disk', name=disk, backup='yes', type='file')
        if since and disk in full_disks:
            elem.set('backupmode', 'full')
        elems[disk] = elem
    for disk in disks_out:
        etree.SubElement(container, 'disk', name=disk, backup='no')
    return elems


def push_backup_xml(since, targets, disks_out, full_disks=()):
    """targets: {disk: image path}. The images exist already (REUSE_EXTERNAL)."""
    root = etree.Element('domainbackup', mode='push')
    if since:
        etree.SubElement(root, 'incremental').text = since
    for disk, elem in _disk_elements(root, since, targets, full_disks, disks_out).items():
        etree.SubElement(elem, 'target', file=targets[disk])
        etree.SubElement(elem, 'driver', type='qcow2')
    return etree.tostring(root, encoding='unicode')


def pull_backup_xml(since, server, scratch, disks_out, full_disks=()):
    """scratch: {disk: scratch file path}; server: a unix socket path, or (address, port) for TCP+TLS."""
    root = etree.Element('domainbackup', mode='pull')
    if since:
        etree.SubElement(root, 'incremental').text = since
    if isinstance(server, tuple):
        etree.SubElement(root, 'server', transport='tcp', name=server[0], port=str(server[1]), tls='yes')
    else:
        etree.SubElement(root, 'server', transport='unix', socket=server)
    for disk, elem in _disk_elements(root, since, scratch, full_disks, disks_out).items():
        etree.SubElement(elem, 'scratch', file=scratch[disk])
    return etree.tostring(root, encoding='unicode')


def pull_exports(job_xml):
    """{disk: (export name, bitmap or None)} from the running job's XML."""
    root = parse(job_xml, 'the backup job XML')
    result = {}
    for elem in root.findall('./disks/disk'):
        if elem.get('backup') == 'yes':
            result[elem.get('name')] = (elem.get('exportname') or elem.get('name'), elem.get('exportbitmap'))
    return result


class BackupJob:
    """One virDomainBackupBegin job: begun with its checkpoint, always ended by end()."""

    def __init__(self, dom, label, active=False):
        self.dom = dom
        self.label = label
        self.active = active
        self.frozen = 0  # file systems the guest agent froze for the start of the job
        self.quiesced = False
        self.quiesce_error = None

    def begin(self, backup_xml, checkpoint_xml_text, reuse_external=False, quiesce=None, at_start=None):
        """Start the job (and its checkpoint).

        quiesce: None, or 'auto' / 'always' to freeze the guest's file systems through the guest
        agent for the instant the job starts (the point in time the backup holds) and thaw them
        right after, whatever happened. When the freeze fails, 'always' fails before the job
        starts; 'auto' goes on without it (self.quiesce_error says why). Sets self.quiesced.
        at_start: called once the job has begun, before the thaw (the firmware state of the same
        point in time).
        """
        flags = libvirt.VIR_DOMAIN_BACKUP_BEGIN_REUSE_EXTERNAL if reuse_external else 0
        frozen = False
        if quiesce:
            try:
                with libvirt_call('freezing the guest file systems (guest agent) before the backup', self.label):
                    self.frozen = self.dom.fsFreeze(None, 0)
                frozen = True
            except VirtError as exc:
                if quiesce == 'always':
                    raise
                self.quiesce_error = exc.msg
        try:
            self._begin(backup_xml, checkpoint_xml_text, flags)
            if at_start is not None:
                at_start()
        finally:
            if frozen:
                self.thaw()
        self.quiesced = frozen

    def thaw(self):
        """Thaw the guest's file systems; a guest left frozen would hang on its next write."""
        last = None
        for dummy in range(3):
            try:
                self.dom.fsThaw(None, 0)
                return
            except libvirt.libvirtError as exc:
                last = exc
                time.sleep(1)
        error = translate(last, 'thawing the guest file systems after the start of the backup', self.label)
        error.msg += ('. The guest may still be frozen: thaw it with virsh domfsthaw %s' % self.dom.name())
        raise error

    def _begin(self, backup_xml, checkpoint_xml_text, flags):
        try:
            self.dom.backupBegin(backup_xml, checkpoint_xml_text, flags)
        except libvirt.libvirtError as exc:
            error = translate(exc, 'starting the backup job', self.label)
            if 'No such file or directory' in (error.libvirt_message or ''):
                # libvirt starts QEMU in a private mount namespace (qemu.conf "namespaces"):
                # a filesystem mounted after the domain started is invisible to it.
                error.msg += ('. QEMU cannot see that path: if the repository or scratch_dir is on a '
                              'filesystem mounted after the domain started, QEMU (in its own mount '
                              'namespace) does not see it; use a filesystem mounted before, or restart '
                              'the domain')
            raise error
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
            time.sleep(poll_pause(stats))
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
        pause = 0.005
        while time.time() < deadline:
            try:
                stats = self.dom.jobStats(0)
            except libvirt.libvirtError:
                break
            if stats.get('type', libvirt.VIR_DOMAIN_JOB_NONE) == libvirt.VIR_DOMAIN_JOB_NONE:
                break
            # An aborted job is usually gone within milliseconds.
            time.sleep(pause)
            pause = min(0.1, pause * 2)
        self.active = False


def active_backup_job(dom):
    """The XML of the backup job running on the domain, or None."""
    try:
        stats = dom.jobStats(0)
    except libvirt.libvirtError:
        return None
    if stats.get('type', libvirt.VIR_DOMAIN_JOB_NONE) == libvirt.VIR_DOMAIN_JOB_NONE:
        return None
    try:
        return dom.backupGetXMLDesc(0)
    except libvirt.libvirtError:
        return None


def newest_checkpoint(dom):
    """Name of the most recently created checkpoint of the domain, or None."""
    try:
        checkpoints = dom.listAllCheckpoints(0)
    except libvirt.libvirtError:
        return None
    best = None
    for ck in checkpoints:
        try:
            created = int(parse(ck.getXMLDesc(libvirt.VIR_DOMAIN_CHECKPOINT_XML_NO_DOMAIN),
                                'the checkpoint XML').findtext('creationTime') or 0)
        except (libvirt.libvirtError, ValueError):
            continue
        if best is None or created >= best[0]:
            best = (created, ck.getName())
    return best[1] if best else None


def poll_pause(stats):
    """How long to wait before asking about a running job again: half the time its progress says
    is left, within 10 to 200 ms (a fixed 100 ms cost a push backup 50 ms on average)."""
    processed, remaining = stats.get('data_processed') or 0, stats.get('data_remaining')
    elapsed = (stats.get('time_elapsed') or 0) / 1000.0
    if not processed or not elapsed or remaining is None:
        return 0.05
    return min(0.2, max(0.01, remaining / (processed / elapsed) / 2))


def wait_for_path(path, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if os.path.exists(path):
            return True
        time.sleep(0.05)
    return False
