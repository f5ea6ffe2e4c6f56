# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Helpers of the functional tests: run modules as Ansible does, drive a real TCG domain, and keep
a shadow copy of every guest disk so that each backup can be compared byte for byte.

The modules run as `python -m ansible_collections.virtops.libvirt.plugins.modules.<name> args.json`,
which is what Ansible's module runner does once the module is on the remote host, without the
playbook overhead.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import libvirt
import libvirt_qemu
from lxml import etree

ROOT = Path(__file__).resolve().parents[2]
COLLECTIONS = ROOT / 'build' / 'collections'
_VENV_PYTHON = ROOT / '.venv' / 'bin' / 'python'
PYTHON = os.environ.get('FT_PYTHON') or (str(_VENV_PYTHON) if _VENV_PYTHON.exists() else sys.executable)
URI = 'qemu:///system'
IMAGES = Path('/var/lib/libvirt/images')
SOCKET_ROOT = Path('/run/virtops-libvirt')
QEMU_LOGS = Path('/var/log/libvirt/qemu')
KiB = 1024
MiB = 1024 * KiB
CLUSTER = 64 * KiB          # qcow2 cluster size and dirty bitmap granularity

UNALLOCATED, DATA, ZERO = 0, 1, 2
JOB_STARTING = -1


def ensure_collection_link():
    """What `make link` does: build/collections/ansible_collections/virtops/libvirt -> checkout."""
    link = COLLECTIONS / 'ansible_collections' / 'virtops' / 'libvirt'
    if not link.exists():
        link.parent.mkdir(parents=True, exist_ok=True)
        try:
            link.symlink_to(ROOT)
        except FileExistsError:
            pass
    return link


# -- modules --------------------------------------------------------------------------------------

class ModuleFailed(AssertionError):
    pass


def run_module(name, args, check_mode=False, diff=False, timeout=600):
    """Run module `name` with `args`; the parsed JSON result (with '_rc' and '_stderr' added)."""
    payload = dict(args)
    payload['_ansible_check_mode'] = bool(check_mode)
    payload['_ansible_diff'] = bool(diff)
    workdir = tempfile.mkdtemp(prefix='ft-module-')
    try:
        args_file = os.path.join(workdir, 'args.json')
        with open(args_file, 'w') as out:
            json.dump(dict(ANSIBLE_MODULE_ARGS=payload), out)
        env = dict(os.environ)
        env['PYTHONPATH'] = str(COLLECTIONS)
        env.pop('ANSIBLE_MODULE_ARGS', None)
        proc = subprocess.run(
            [PYTHON, '-m', 'ansible_collections.virtops.libvirt.plugins.modules.%s' % name, args_file],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=workdir, env=env,
            timeout=timeout, check=False)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    out = proc.stdout.decode('utf-8', 'replace').strip()
    err = proc.stderr.decode('utf-8', 'replace')
    try:
        result = json.loads(out)
    except ValueError:
        # Anything printed before the JSON document (should not happen) is kept for the report.
        start = out.find('{')
        try:
            result = json.loads(out[start:]) if start >= 0 else None
        except ValueError:
            result = None
        if result is None:
            raise ModuleFailed('module %s printed no JSON (rc %d)\nstdout: %s\nstderr: %s' % (
                name, proc.returncode, out[-3000:], err[-3000:]))
    result['_rc'] = proc.returncode
    result['_stderr'] = err
    return result


def ok(result):
    """Assert a module run succeeded; returns the result."""
    if result.get('failed') or result['_rc'] != 0:
        raise ModuleFailed('module failed (rc %s): %s\n%s\n%s' % (
            result['_rc'], result.get('msg'), result.get('exception', ''), result['_stderr'][-3000:]))
    return result


def failed(result, *fragments):
    """Assert a module run failed with a message containing every fragment; returns the message."""
    assert result.get('failed') is True, 'expected a failure, got %r' % _brief(result)
    assert result['_rc'] != 0
    msg = result.get('msg', '')
    for fragment in fragments:
        assert fragment in msg, 'message %r lacks %r' % (msg, fragment)
    assert 'Traceback' not in msg and 'unexpected error' not in msg, msg
    return msg


def _brief(result):
    return dict((k, v) for k, v in result.items() if k not in ('invocation', '_stderr'))


def backup(domain, repository, **args):
    args = dict(args, domain=domain, repository=str(repository))
    return run_module('virt_backup', args, check_mode=args.pop('check_mode', False), diff=args.pop('diff', False))


def restore(domain, repository, dest, **args):
    args = dict(args, domain=domain, repository=str(repository), dest=str(dest))
    return run_module('virt_restore', args, check_mode=args.pop('check_mode', False))


def backup_info(repository, **args):
    return run_module('virt_backup_info', dict(args, repository=str(repository)))


# -- images -------------------------------------------------------------------------------------

def sh(*argv, **kwargs):
    proc = subprocess.run([str(a) for a in argv], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, check=False, **kwargs)
    if proc.returncode != 0:
        command = ' '.join(str(a) for a in argv)
        raise AssertionError('%s failed (%d): %s %s' % (
            command, proc.returncode, proc.stdout.decode(), proc.stderr.decode()))
    return proc.stdout.decode('utf-8', 'replace')


def same_content(expected_raw, image, fmt):
    """(True, '') when image (format fmt) holds exactly the bytes of the raw file expected_raw."""
    proc = subprocess.run(['qemu-img', 'compare', '-U', '-f', 'raw', '-F', fmt, str(expected_raw), str(image)],
                          stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
    return proc.returncode == 0, (proc.stdout + proc.stderr).decode('utf-8', 'replace').strip()


def assert_same_content(expected_raw, image, fmt):
    same, message = same_content(expected_raw, image, fmt)
    assert same, 'image %s (%s) differs from %s: %s' % (image, fmt, expected_raw, message)


def image_info(path, chain=False):
    args = ['qemu-img', 'info', '-U', '--output=json']
    if chain:
        args.append('--backing-chain')
    return json.loads(sh(*(args + [path])))


def sha256_file(path):
    digest = hashlib.sha256()
    with open(path, 'rb') as src:
        for block in iter(lambda: src.read(4 * MiB), b''):
            digest.update(block)
    return digest.hexdigest()


def sparse_copy(src, dst):
    sh('cp', '--sparse=always', src, dst)


# -- the shadow of a guest disk -------------------------------------------------------------------

class Shadow:
    """A raw file that always holds what the guest disk holds, and the state of every cluster
    (unallocated, data, zero) as QEMU keeps it, plus a log of the ranges written."""

    def __init__(self, path, size):
        self.path = Path(path)
        self.size = size
        with open(self.path, 'wb') as out:
            out.truncate(size)
        self.clusters = bytearray((size + CLUSTER - 1) // CLUSTER)
        self.log = []       # (start, end) of every change, in order

    def _clusters(self, start, end):
        return range(start // CLUSTER, (end + CLUSTER - 1) // CLUSTER)

    def write(self, offset, length, pattern):
        assert pattern != 0, 'pattern 0 is data that reads as zeroes: use zero()'
        with open(self.path, 'r+b') as out:
            out.seek(offset)
            out.write(bytes([pattern]) * length)
        for c in self._clusters(offset, offset + length):
            self.clusters[c] = DATA
        self.log.append((offset, offset + length))

    def zero(self, offset, length, allocated_after):
        with open(self.path, 'r+b') as out:
            out.seek(offset)
            out.write(bytes(length))
        for c in self._clusters(offset, offset + length):
            self.clusters[c] = allocated_after
        self.log.append((offset, offset + length))

    def resize(self, size):
        assert size >= self.size
        with open(self.path, 'r+b') as out:
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
        return Snapshot(Path(path), sha256_file(path), self.data_bytes(), self.mark())


class Snapshot:
    def __init__(self, path, sha256, data_bytes, mark):
        self.path = path
        self.sha256 = sha256
        self.data_bytes = data_bytes
        self.mark = mark


# -- domains --------------------------------------------------------------------------------------

def domain_xml(name, disks, memory_mib=64):
    disk_xml = ''.join(
        "<disk type='file' device='disk'><driver name='qemu' type='qcow2' discard='unmap'/>"
        "<source file='%s'/><target dev='%s' bus='virtio'/></disk>" % (path, target)
        for target, path in disks)
    return ("<domain type='qemu'><name>%s</name><memory unit='MiB'>%d</memory><vcpu>1</vcpu>"
            "<os><type arch='x86_64' machine='pc'>hvm</type></os>"
            "<devices><emulator>/usr/bin/qemu-system-x86_64</emulator>%s</devices></domain>"
            % (name, memory_mib, disk_xml))


def unique(prefix):
    return '%s-%s' % (prefix, uuid.uuid4().hex[:8])


class GuestDisk:
    """One virtio disk of a running guest, written through the QEMU monitor (qemu-io on the
    device's BlockBackend, as the guest would), with its shadow kept equal."""

    def __init__(self, guest, target, path, size, shadow):
        self.guest = guest
        self.target = target
        self.path = Path(path)
        self.size = size
        self.shadow = shadow

    def _alias(self):
        root = etree.fromstring(self.guest.dom.XMLDesc(0).encode())
        for disk in root.findall('./devices/disk'):
            if disk.find('target').get('dev') == self.target:
                return disk.find('alias').get('name')
        raise AssertionError('no alias for %s' % self.target)

    def qemu_io(self, command, expect):
        """Run a qemu-io command on the disk; wait until QEMU's log shows `expect`."""
        if not self.guest.running():
            # Shut off: the image is ours to write with qemu-io directly.
            out = sh('qemu-io', '-f', 'qcow2', '-c', command, self.path)
            assert expect in out, 'qemu-io %r said %r' % (command, out)
            return
        log = QEMU_LOGS / ('%s.log' % self.guest.name)
        start = log.stat().st_size if log.exists() else 0
        libvirt_qemu.qemuMonitorCommand(
            self.guest.dom, 'qemu-io -d /machine/peripheral/%s/virtio-backend "%s"' % (self._alias(), command),
            libvirt_qemu.VIR_DOMAIN_QEMU_MONITOR_COMMAND_HMP)
        deadline = time.time() + 15
        text = ''
        while time.time() < deadline:
            with open(log, 'rb') as src:
                src.seek(start)
                text = src.read().decode('utf-8', 'replace')
            if expect in text:
                return
            if 'failed' in text.lower() or 'error' in text.lower():
                break
            time.sleep(0.05)
        raise AssertionError('qemu-io %r on %s: expected %r in the QEMU log, got %r' % (
            command, self.guest.name, expect, text))

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


class Libvirt:
    """A connection to qemu:///system that is opened again when the daemon went away (other test
    suites on this host restart libvirtd)."""

    def __init__(self, uri=URI):
        self.uri = uri
        self._conn = None

    def get(self):
        if self._conn is not None:
            try:
                if self._conn.isAlive():
                    return self._conn
            except libvirt.libvirtError:
                pass
            try:
                self._conn.close()
            except libvirt.libvirtError:
                pass
            self._conn = None
        deadline = time.time() + 60
        while True:
            try:
                self._conn = libvirt.open(self.uri)
                return self._conn
            except libvirt.libvirtError:
                if time.time() > deadline:
                    raise
                time.sleep(1)

    def close(self):
        if self._conn is not None:
            try:
                self._conn.close()
            except libvirt.libvirtError:
                pass
            self._conn = None


class Guest:
    """A TCG domain with blank qcow2 disks in its own directory under /var/lib/libvirt/images."""

    def __init__(self, lv, name, disk_sizes, workdir):
        self.lv = lv
        self.name = name
        self.dir = Path(workdir)
        self.dir.mkdir(mode=0o755)
        self.disks = {}
        spec = []
        for index, size in enumerate(disk_sizes):
            target = 'vd%s' % 'abcdefgh'[index]
            path = self.dir / ('%s.qcow2' % target)
            sh('qemu-img', 'create', '-q', '-f', 'qcow2', path, size)
            shadow = Shadow(self.dir / ('%s.shadow.raw' % target), size)
            self.disks[target] = GuestDisk(self, target, path, size, shadow)
            spec.append((target, path))
        lv.get().defineXML(domain_xml(name, spec))

    @property
    def dom(self):
        # Another suite on this host restarts libvirtd now and then: look up again once it is back.
        deadline = time.time() + 60
        while True:
            try:
                return self.lv.get().lookupByName(self.name)
            except libvirt.libvirtError as exc:
                if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN or time.time() > deadline:
                    raise
                self.lv.close()
                time.sleep(1)

    def start(self):
        self.dom.create()

    def running(self):
        return self.dom.isActive() == 1

    def monitor(self, command):
        return libvirt_qemu.qemuMonitorCommand(self.dom, command, libvirt_qemu.VIR_DOMAIN_QEMU_MONITOR_COMMAND_HMP)

    def stop(self):
        """Flush the disks, then stop QEMU (a guest without an OS cannot shut down by itself)."""
        for disk in self.disks.values():
            self.monitor('qemu-io -d /machine/peripheral/%s/virtio-backend "flush"' % disk._alias())
        self.dom.destroyFlags(libvirt.VIR_DOMAIN_DESTROY_GRACEFUL)

    def checkpoints(self):
        return sorted(ck.getName() for ck in self.dom.listAllCheckpoints(0))

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

    def snapshot(self, tag):
        """Copies of every shadow: what each disk holds now."""
        return dict((t, d.shadow.snapshot(self.dir / ('%s.%s.raw' % (t, tag)))) for t, d in self.disks.items())

    def remove(self):
        remove_domain(self.lv, self.name)
        shutil.rmtree(self.dir, ignore_errors=True)


def remove_domain(lv, name):
    """Stop and undefine a domain with its checkpoint metadata, and remove its QEMU log; retried
    while libvirtd is away (other suites restart it)."""
    deadline = time.time() + 60
    while True:
        try:
            dom = lv.get().lookupByName(name)
            if dom.isActive():
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


# -- the repository as files ----------------------------------------------------------------------

def qemu_owner():
    import pwd
    entry = pwd.getpwnam('libvirt-qemu')
    return entry.pw_uid, entry.pw_gid


def repo_id(repository):
    with open(os.path.join(str(repository), 'repository.json')) as src:
        return json.load(src)['id']


def checkpoint_prefix(repository):
    return 'virtops-%s-' % repo_id(repository).replace('-', '')[:8]


def staging_files(repository):
    """Files (not the per-domain directories) under <repository>/.staging."""
    staging = os.path.join(str(repository), '.staging')
    found = []
    for base, dummy, files in os.walk(staging):
        found.extend(os.path.relpath(os.path.join(base, f), staging) for f in files)
    return sorted(found)


def backup_dirs(repository, domain):
    """Every directory at backup level of the domain, complete or not."""
    ddir = Path(str(repository)) / domain
    if not ddir.is_dir():
        return []
    return sorted(b for c in ddir.iterdir() if c.is_dir() for b in c.iterdir() if b.is_dir())


def manifest(backup_path):
    with open(os.path.join(str(backup_path), 'manifest.json')) as src:
        return json.load(src)


class Debris:
    """What a failed run must not leave behind, compared with the state before it."""

    def __init__(self, guest, repository):
        self.guest = guest
        self.repository = Path(str(repository))
        self.checkpoints = guest.checkpoints() if guest is not None else None
        self.run_dirs = self._run_dirs()
        self.backups = backup_dirs(self.repository, guest.name) if guest is not None else []
        self.existed = self.repository.exists()

    def _run_dirs(self):
        if not SOCKET_ROOT.is_dir() or self.guest is None:
            return set()
        # Run directories are named <repository id>-<domain>-<random>.
        return set(p.name for p in SOCKET_ROOT.iterdir() if ('-%s-' % self.guest.name) in p.name)

    def assert_clean(self):
        if self.guest is not None:
            assert self.guest.job_type() == libvirt.VIR_DOMAIN_JOB_NONE, 'a job is left on %s' % self.guest.name
            if self.guest.running():
                with_job = True
                try:
                    self.guest.dom.backupGetXMLDesc(0)
                except libvirt.libvirtError:
                    with_job = False
                assert not with_job, 'a backup job is left on %s' % self.guest.name
            assert self.guest.checkpoints() == self.checkpoints, 'checkpoints changed'
            assert self._run_dirs() <= self.run_dirs, 'run directories left in %s: %s' % (
                SOCKET_ROOT, self._run_dirs() - self.run_dirs)
            assert backup_dirs(self.repository, self.guest.name) == self.backups, 'backup directories changed'
        if not self.existed:
            return
        assert staging_files(self.repository) == [], 'files left in %s/.staging' % self.repository
        if self.guest is not None:
            ddir = self.repository / self.guest.name
            if ddir.is_dir():
                for chain in ddir.iterdir():
                    if chain.is_dir():
                        assert list(chain.iterdir()), 'empty chain directory %s left' % chain
                        for bdir in chain.iterdir():
                            assert (bdir / 'manifest.json').exists(), 'partial backup %s left' % bdir


def iso(moment):
    return moment.strftime('%Y-%m-%dT%H:%M:%S.%f')
