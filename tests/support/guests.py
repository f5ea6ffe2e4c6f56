# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""TCG guests without an OS whose disk content is known byte for byte.

Every guest disk has a *shadow*: a sparse raw file holding exactly what the disk holds, and the
state of each 64 KiB cluster (unallocated, data, zero) as QEMU keeps it. Every write goes to both:
qemu-io on the device's BlockBackend through the QEMU monitor (HMP) while the domain runs, as the
guest would write, and qemu-io on the qcow2 image while it is shut off. After any backup the
bytes each point in time must restore to are therefore known.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import shutil
import signal
import time
import uuid
from pathlib import Path

import libvirt
import libvirt_qemu
from lxml import etree

from support.host import QEMU_LOGS, CheckFailed, KiB, sh, wait_until
from support.images import fill, image_bitmaps, sha256_file, sparse_copy

CLUSTER = 64 * KiB          # qcow2 cluster size and dirty bitmap granularity
UNALLOCATED, DATA, ZERO = 0, 1, 2
JOB_STARTING = -1           # job_type() while a backup job starts (libvirt has no stats yet)


def unique(prefix):
    return '%s-%s' % (prefix, uuid.uuid4().hex[:8])


def disk_xml(target, path):
    """A qcow2 file on virtio; the guest's discards reach the image."""
    return ("<disk type='file' device='disk'><driver name='qemu' type='qcow2' discard='unmap'/>"
            "<source file='%s'/><target dev='%s' bus='virtio'/></disk>" % (path, target))


def domain_xml(name, disks, memory_mib=64):
    """A TCG domain without an OS; disks: [(target, qcow2 path)]."""
    return ("<domain type='qemu'><name>%s</name><memory unit='MiB'>%d</memory><vcpu>1</vcpu>"
            "<os><type arch='x86_64' machine='pc'>hvm</type><boot dev='hd'/></os><features><acpi/></features>"
            "<devices><emulator>/usr/bin/qemu-system-x86_64</emulator>%s<memballoon model='none'/></devices></domain>"
            % (name, memory_mib, ''.join(disk_xml(target, path) for target, path in disks)))


def hmp(dom, command):
    """A QEMU monitor (HMP) command on a running domain; what the monitor answered."""
    return libvirt_qemu.qemuMonitorCommand(dom, command, libvirt_qemu.VIR_DOMAIN_QEMU_MONITOR_COMMAND_HMP)


def disk_alias(dom, target):
    """The device alias of disk `target` in the live XML of a running domain."""
    root = etree.fromstring(dom.XMLDesc(0).encode('utf-8'))
    for disk in root.findall('./devices/disk'):
        elem = disk.find('target')
        if elem is not None and elem.get('dev') == target:
            alias = disk.find('alias')
            if alias is not None:
                return alias.get('name')
    raise CheckFailed('disk %s of %s has no alias in the live XML' % (target, dom.name()))


def remove_domain(lv, name):
    """Stop (aborting any job) and undefine a domain with its checkpoint and snapshot metadata and
    variable store, and remove its QEMU log; retried while libvirtd is away. lv: host.Libvirt."""
    deadline = time.time() + 60
    while True:
        try:
            dom = lv.get().lookupByName(name)
            if dom.isActive():
                try:
                    dom.abortJob()
                except libvirt.libvirtError:
                    pass
                dom.destroy()
            # NVRAM: libvirt refuses to undefine a UEFI domain whose variable store exists otherwise.
            dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA
                              | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
                              | libvirt.VIR_DOMAIN_UNDEFINE_NVRAM)
            break
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN or time.time() > deadline:
                break
            lv.close()
            time.sleep(1)
    try:
        (QEMU_LOGS / ('%s.log' % name)).unlink()
    except OSError:
        pass


class Shadow(os.PathLike):
    """A raw file that always holds what the guest disk holds, the state of every cluster, and a
    log of the ranges written. Usable as a path (os.fspath)."""

    def __init__(self, path, size):
        self.path = Path(path)
        self.size = size
        fd = os.open(str(self.path), os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.ftruncate(fd, size)
        finally:
            os.close(fd)
        self.clusters = bytearray((size + CLUSTER - 1) // CLUSTER)
        self.log = []       # (start, end) of every change, in order

    def __fspath__(self):
        return str(self.path)

    def _clusters(self, start, end):
        return range(start // CLUSTER, (end + CLUSTER - 1) // CLUSTER)

    def write(self, offset, length, pattern):
        assert pattern != 0, 'pattern 0 is data that reads as zeroes: use zero()'
        fill(self.path, offset, length, pattern)
        for c in self._clusters(offset, offset + length):
            self.clusters[c] = DATA
        self.log.append((offset, offset + length))

    def zero(self, offset, length, allocated_after):
        with open(str(self.path), 'r+b') as out:
            out.seek(offset)
            out.write(bytes(length))
        for c in self._clusters(offset, offset + length):
            self.clusters[c] = allocated_after
        self.log.append((offset, offset + length))

    def resize(self, size):
        assert size >= self.size
        with open(str(self.path), 'r+b') as out:
            out.truncate(size)
        self.clusters.extend(bytes((size + CLUSTER - 1) // CLUSTER - len(self.clusters)))
        self.size = size

    def mark(self):
        return len(self.log)

    def touched(self, since, until=None):
        """Bytes of the clusters changed between two marks (what a dirty bitmap of 64 KiB records)."""
        clusters = set()
        for start, end in self.log[since:until]:
            clusters.update(self._clusters(start, end))
        return sum(min(CLUSTER, self.size - c * CLUSTER) for c in clusters)

    def data_bytes(self):
        """Bytes in clusters that hold data (what a full backup reads)."""
        return sum(min(CLUSTER, self.size - i * CLUSTER) for i, s in enumerate(self.clusters) if s == DATA)

    def snapshot(self, path):
        sparse_copy(self.path, path)
        return Snapshot(Path(path), self.data_bytes(), self.mark())


class Snapshot(os.PathLike):
    """A copy of a shadow: what the disk held at one moment. Usable as a path (os.fspath)."""

    def __init__(self, path, data_bytes, mark):
        self.path = path
        self.data_bytes = data_bytes
        self.mark = mark
        self._sha256 = None

    def __fspath__(self):
        return str(self.path)

    @property
    def sha256(self):
        if self._sha256 is None:
            self._sha256 = sha256_file(self.path)
        return self._sha256


class GuestDisk:
    """One virtio disk of a guest, written as the guest would, with its shadow kept equal."""

    def __init__(self, guest, target, path, size, shadow):
        self.guest = guest
        self.target = target
        self.path = path
        self.size = size
        self.shadow = shadow

    def qemu_io(self, command, expect):
        """Run a qemu-io command on the disk; check that qemu-io reported `expect`."""
        if not self.guest.running():
            # Shut off: the image is ours to write with qemu-io directly.
            out = sh('qemu-io', '-f', 'qcow2', '-c', command, self.path, what='qemu-io on %s' % self.path)
            assert expect in out, 'qemu-io %r said %r' % (command, out)
            return
        # QEMU 7.2 prints qemu-io's report to its own stdout (the domain's QEMU log), not the monitor.
        log = QEMU_LOGS / ('%s.log' % self.guest.name)
        start = log.stat().st_size if log.exists() else 0
        said = self.guest.monitor('qemu-io -d /machine/peripheral/%s/virtio-backend "%s"' % (
            self.guest.alias(self.target), command))
        if expect in said:
            return
        deadline = time.time() + 15
        text = ''
        while time.time() < deadline:
            with open(str(log), 'rb') as src:
                src.seek(start)
                text = src.read().decode('utf-8', 'replace')
            if expect in text:
                return
            if 'failed' in text.lower() or 'error' in text.lower():
                break
            time.sleep(0.05)
        raise CheckFailed('qemu-io %r on %s: expected %r in the QEMU log, got %r %r' % (
            command, self.guest.name, expect, said, text))

    def write(self, offset, length, pattern):
        self.qemu_io('write -P 0x%02x %d %d' % (pattern, offset, length),
                     'wrote %d/%d bytes at offset %d' % (length, length, offset))
        self.shadow.write(offset, length, pattern)

    def zero(self, offset, length):
        """Write zeroes (cluster aligned: qcow2 keeps them as zero clusters)."""
        assert offset % CLUSTER == 0 and length % CLUSTER == 0
        self.qemu_io('write -z %d %d' % (offset, length), 'wrote %d/%d bytes at offset %d' % (length, length, offset))
        self.shadow.zero(offset, length, ZERO)

    def resize(self, size):
        """Grow the disk while the guest runs (virsh blockresize)."""
        self.guest.dom.blockResize(self.target, size, libvirt.VIR_DOMAIN_BLOCK_RESIZE_BYTES)
        self.shadow.resize(size)
        self.size = size

    def discard(self, offset, length):
        """Discard whole clusters (the disk has discard='unmap': they read as zeroes afterwards)."""
        assert offset % CLUSTER == 0 and length % CLUSTER == 0
        self.qemu_io('discard %d %d' % (offset, length), 'discard %d/%d bytes at offset %d' % (length, length, offset))
        self.shadow.zero(offset, length, UNALLOCATED)


class Guest:
    """A TCG domain with qcow2 disks (and their shadows) in a directory of its own.

    lv: host.Libvirt (or a subclass); workdir: where the images and shadows go (QEMU must be able
    to traverse it). Paths keep the type of workdir (str or Path)."""

    def __init__(self, lv, name, workdir, mode=0o711):
        self.lv = lv
        self.name = name
        self.dir = workdir
        self.disks = {}
        os.makedirs(str(workdir), mode, exist_ok=True)
        os.chmod(str(workdir), mode)

    def _path(self, filename):
        return self.dir / filename if isinstance(self.dir, Path) else os.path.join(self.dir, filename)

    # -- set-up
    def make_disk(self, target, size, writes=()):
        """A qcow2 image holding writes [(offset, length, pattern)] (else blank), and its shadow."""
        shadow = Shadow(self._path('%s.shadow.raw' % target), size)
        path = self._path('%s.qcow2' % target)
        for offset, length, pattern in writes:
            shadow.write(offset, length, pattern)
        if writes:
            sh('qemu-img', 'convert', '-q', '-f', 'raw', '-O', 'qcow2', shadow.path, path, what='building %s' % path)
        else:
            sh('qemu-img', 'create', '-q', '-f', 'qcow2', path, size, what='creating %s' % path)
        os.chmod(str(path), 0o644)
        disk = GuestDisk(self, target, path, size, shadow)
        self.disks[target] = disk
        return disk

    def xml(self):
        return domain_xml(self.name, sorted((t, d.path) for t, d in self.disks.items()))

    def define(self, xml=None):
        self.lv.get().defineXML(xml or self.xml())

    # -- libvirt
    @property
    def dom(self):
        # libvirtd may be restarting (the fault-injection suite does): look up again once it is back.
        deadline = time.time() + 60
        while True:
            try:
                return self.lv.get().lookupByName(self.name)
            except libvirt.libvirtError as exc:
                if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN or time.time() > deadline:
                    raise
                self.lv.close()
                time.sleep(1)

    def running(self):
        return self.dom.isActive() == 1

    def state(self):
        return self.dom.state()[0]

    def start(self):
        if not self.running():
            self.dom.create()

    def monitor(self, command):
        return hmp(self.dom, command)

    def alias(self, target):
        return disk_alias(self.dom, target)

    def stop(self):
        """Flush the disks, then stop QEMU gracefully (a guest without an OS cannot shut down)."""
        for target in self.disks:
            self.monitor('qemu-io -d /machine/peripheral/%s/virtio-backend "flush"' % self.alias(target))
        self.dom.destroyFlags(libvirt.VIR_DOMAIN_DESTROY_GRACEFUL)

    def destroy(self):
        """Stop the domain (SIGTERM first: QEMU stores its persistent bitmaps) and wait for it."""
        if self.running():
            self.dom.destroy()
        wait_until(lambda: not self.running(), 30, '%s to stop' % self.name)

    def qemu_pid(self):
        with open('/run/libvirt/qemu/%s.pid' % self.name) as src:
            return int(src.read().strip())

    def kill_qemu(self):
        os.kill(self.qemu_pid(), signal.SIGKILL)
        wait_until(lambda: not self.running(), 30, 'libvirt to notice that QEMU of %s died' % self.name)

    def checkpoints(self):
        return sorted(c.getName() for c in self.dom.listAllCheckpoints(0))

    def job_type(self):
        if not self.running():
            return libvirt.VIR_DOMAIN_JOB_NONE
        try:
            return self.dom.jobStats(0).get('type', libvirt.VIR_DOMAIN_JOB_NONE)
        except libvirt.libvirtError as exc:
            # While a backup job starts, libvirt answers "backup job data missing": a job, then.
            if 'backup job data missing' in str(exc):
                return JOB_STARTING
            raise

    def job_active(self):
        return self.job_type() != libvirt.VIR_DOMAIN_JOB_NONE

    def job_xml(self):
        """The XML of the running backup job, or None."""
        try:
            return self.dom.backupGetXMLDesc(0)
        except libvirt.libvirtError:
            return None

    # -- data
    def write(self, target, offset, length, pattern):
        """Write length bytes of pattern at offset into disk target and into its shadow."""
        self.disks[target].write(offset, length, pattern)

    def snapshot(self, tag):
        """{disk: Snapshot}: copies of the shadows, what each disk holds now."""
        return dict((t, d.shadow.snapshot(self._path('%s.%s.raw' % (t, tag)))) for t, d in self.disks.items())

    def expected(self):
        """{disk: shadow}: what each disk holds now (the live shadows, usable as paths)."""
        return dict((t, d.shadow) for t, d in self.disks.items())

    def image_bitmaps(self, target):
        return image_bitmaps(self.disks[target].path)

    # -- clean-up
    def remove(self):
        remove_domain(self.lv, self.name)
        shutil.rmtree(str(self.dir), ignore_errors=True)


def make_guest(lv, name, workdir, disks, start=True, mode=0o711):
    """disks: [(target, size, writes)]; a defined (and started) guest. A domain of that name
    left by an earlier run is removed first."""
    remove_domain(lv, name)
    guest = Guest(lv, name, workdir, mode)
    for target, size, writes in disks:
        guest.make_disk(target, size, writes)
    guest.define()
    if start:
        guest.start()
    return guest
