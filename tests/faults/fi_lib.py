# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What only the fault-injection suite uses: its work directory, libvirtd restarts, the fault
counter, and the checks every case makes after a fault (the aftermath, the next run, a bit-exact
restore). Guests, module runs, images and repository files come from tests/support."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid

from support import guests
from support.host import ROOT, CheckFailed, KiB, Libvirt, MiB, wait_until
from support.images import differing_bytes
from support.modules import ok, run_module
from support.repository import checkpoint_prefix, partial_dirs, read_manifests, run_dirs, staging_files

OUTPUT = os.path.join(str(ROOT), 'tests', 'output')
WORK = '/var/lib/libvirt/images/virtops-faults'
PREFIX = 'fi-'
PKI = '/etc/pki/qemu'               # libvirt's default_tls_x509_cert_dir
PKI_MARKER = '.virtops-fault-injection'


def log(msg):
    sys.stderr.write('[fi %s] %s\n' % (time.strftime('%H:%M:%S'), msg))
    sys.stderr.flush()


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


# --- the host: libvirtd restarts ------------------------------------------------------------------

class Host(Libvirt):
    """The connection (.conn), and libvirtd stopped and started again."""

    def __init__(self):
        super(Host, self).__init__()
        self.get()

    def restart_libvirtd(self):
        """Stop libvirtd (SIGTERM, as pkill -x would) and start it again at once; returns the outage in s.

        Other people's tests share this daemon: the outage is kept as short as possible, and the
        daemon is always started again.
        """
        t0 = time.time()
        pid = int(open('/run/libvirtd.pid').read().strip())
        with open('/proc/%d/comm' % pid) as src:
            if src.read().strip() != 'libvirtd':
                raise CheckFailed('/run/libvirtd.pid names process %d, which is not libvirtd' % pid)
        try:
            os.kill(pid, signal.SIGTERM)
            deadline = time.time() + 30
            while os.path.exists('/proc/%d' % pid) and time.time() < deadline:
                time.sleep(0.05)
            if os.path.exists('/proc/%d' % pid):
                os.kill(pid, signal.SIGKILL)
                wait_until(lambda: not os.path.exists('/proc/%d' % pid), 10, 'libvirtd to die')
        finally:
            self.start_libvirtd()
        self.reconnect()
        return time.time() - t0

    @staticmethod
    def start_libvirtd():
        # Like scripts/setup-host.sh: no inherited descriptors, own session, stale pid file removed.
        for path in ('/run/libvirtd.pid',):
            try:
                pid = int(open(path).read().strip())
                if not os.path.exists('/proc/%d' % pid):
                    os.unlink(path)
            except (OSError, ValueError):
                pass
        with open('/var/log/libvirt/virtops-daemon-start.log', 'ab') as logf:
            logf.write(('%s starting: libvirtd -d (virtops fault-injection suite)\n' % time.strftime('%FT%T')).encode())
            logf.flush()
            subprocess.call(['libvirtd', '-d'], stdin=subprocess.DEVNULL, stdout=logf, stderr=logf, close_fds=True,
                            start_new_session=True)


def make_guest(host, name, disks, start=True):
    """disks: [(target, size, writes)]; a defined (and started) guest under the suite's work directory."""
    return guests.make_guest(host, name, os.path.join(WORK, name), disks, start=start)


def spread(size, total, piece, pattern, start=MiB):
    """writes of total bytes in pieces spread over a disk of size."""
    pieces = max(1, total // piece)
    stride = (size - start) // pieces
    stride -= stride % (64 * KiB)
    return [(start + i * stride, piece, (pattern + i) % 254 + 1) for i in range(pieces)]


# --- repositories -------------------------------------------------------------------------------

def new_repo_path(label):
    return os.path.join(WORK, 'repos', '%s-%s' % (label, uuid.uuid4().hex[:6]))


def restore_dir():
    return os.path.join(WORK, 'restore', uuid.uuid4().hex[:8])


def listed_ids(repo, domain):
    """Backup ids virt_backup_info lists for the domain."""
    res = ok(run_module('virt_backup_info', dict(repository=repo, domain=domain), dead_ok=True), 'virt_backup_info')
    ids = []
    for dom in res['domains']:
        for chain in dom['chains']:
            ids.extend(b['id'] for b in chain['backups'])
    return ids


# --- the aftermath of a fault --------------------------------------------------------------------

def _command_lines():
    """(pid, command line with NUL separators) of every process that is still there."""
    for pid in os.listdir('/proc'):
        if not pid.isdigit():
            continue
        try:
            with open('/proc/%s/cmdline' % pid, 'rb') as src:
                yield int(pid), src.read().decode('utf-8', 'replace')
        except OSError:
            continue


def qemu_nbd_processes(*needles):
    """pids of qemu-nbd processes whose command line mentions one of needles."""
    found = []
    for pid, cmdline in _command_lines():
        args = cmdline.split('\0')
        if args and os.path.basename(args[0]) == 'qemu-nbd' and any(n in a for a in args for n in needles):
            found.append(pid)
    return found


def watchdog_processes(domain_uuid):
    """pids of the module's watchdog processes (python -c ... import libvirt ...) for the domain."""
    return [pid for pid, cmdline in _command_lines()
            if 'domain_uuid' in cmdline and domain_uuid in cmdline and 'import libvirt' in cmdline]


# --- faults: what each case injected, survived and lost ------------------------------------------

class Record:

    def __init__(self, nodeid, case, description):
        self.nodeid = nodeid
        self.case = case
        self.description = description
        self.injected = 0
        self.survived = 0
        self.lost = 0
        self.faults = []
        self.notes = []
        self.outcome = None
        self.outcomes = {}
        self.tests = 0
        self.seconds = 0.0


class Fault:
    """The fault counter of one case.

    inject(what) before each fault; survived() once the aftermath held, the next run succeeded and
    its restore was bit-exact (or, for bad input, the run failed clearly and nothing changed);
    lose(n) adds bytes that a restore of a backup expected to be good got wrong.
    """

    def __init__(self, record):
        self.record = record
        self._open = 0

    def inject(self, what):
        self.record.injected += 1
        self.record.faults.append(what)
        self._open += 1
        log('%s: fault %d injected: %s' % (self.record.case, self.record.injected, what))

    def survived(self, n=None):
        n = self._open if n is None else n
        if n > self._open:
            raise CheckFailed('survived() more often than faults were injected')
        self.record.survived += n
        self._open -= n

    def lose(self, nbytes):
        self.record.lost += nbytes

    def note(self, text):
        """Something the report should tell (e.g. the message a failed run gave)."""
        self.record.notes.append(text)
        log('%s: %s' % (self.record.case, text))


# --- checks shared by the cases ----------------------------------------------------------------

def backup(guest, repo, **args):
    """A virt_backup run that must succeed; its result's backup dict."""
    params = dict(domain=guest.name, repository=repo)
    params.update(args)
    return ok(run_module('virt_backup', params, dead_ok=True), 'virt_backup of %s' % guest.name)['backup']


def verify_backup(fault, guest, repo, backup_id, expected=None):
    """Restore backup_id (raw) with virt_restore and compare every disk with the expected bytes.

    expected: {disk: raw file} (default: the shadows now). Differing bytes count as bytes lost;
    a restore that fails loses every byte of the disks it should have restored.
    """
    expected = expected if expected is not None else guest.expected()
    dest = restore_dir()
    try:
        res = run_module('virt_restore', dict(repository=repo, domain=guest.name, backup=backup_id, dest=dest,
                                              format='raw'), dead_ok=True)
        if res.get('failed'):
            fault.lose(sum(os.path.getsize(p) for p in expected.values()))
            raise CheckFailed('restore of backup %s of %s failed: %s' % (backup_id, guest.name, res.get('msg')))
        restored = dict((d['name'], d['path']) for d in res['disks'])
        missing = sorted(set(expected) - set(restored))
        lost = sum(os.path.getsize(expected[m]) for m in missing)
        for name, path in restored.items():
            if name not in expected:
                raise CheckFailed('backup %s restored disk %s, which the test does not know' % (backup_id, name))
            lost += differing_bytes(path, expected[name])
        fault.lose(lost)
        if missing:
            raise CheckFailed('backup %s of %s lacks disk %s' % (backup_id, guest.name, ', '.join(missing)))
        if lost:
            raise CheckFailed('restore of backup %s of %s differs from the guest data in %d bytes' % (
                backup_id, guest.name, lost))
        return res
    finally:
        shutil.rmtree(dest, ignore_errors=True)


def assert_aftermath(guest, repo, good_ids, timeout=30, failed_checkpoints=()):
    """After a failed or killed run: no job, no scratch, no socket, no helper process, no partial
    backup listed, and no checkpoint of this repository that no complete backup records."""
    dom_uuid = guest.dom.UUIDString()
    wait_until(lambda: not watchdog_processes(dom_uuid), timeout, 'the watchdog of %s to finish' % guest.name)
    if guest.running():
        wait_until(lambda: not guest.job_active(), timeout, 'the backup job of %s to end' % guest.name)
    wait_until(lambda: not run_dirs(repo, guest.name), timeout, 'the socket directory to go')
    assert staging_files(repo) == [], 'scratch files left in %s/.staging: %s' % (repo, staging_files(repo))
    leftovers = qemu_nbd_processes(repo, guest.dir)
    assert not leftovers, 'qemu-nbd processes left: %s' % leftovers
    assert listed_ids(repo, guest.name) == list(good_ids), 'virt_backup_info lists %s, expected %s' % (
        listed_ids(repo, guest.name), list(good_ids))
    known = set(m['checkpoint'] for m in read_manifests(repo, guest.name).values() if m)
    prefix = checkpoint_prefix(repo)
    mine = [c for c in guest.checkpoints() if c.startswith(prefix)]
    stray = sorted(set(mine) - known)
    assert not stray, 'checkpoints that no complete backup records: %s' % stray
    for name in failed_checkpoints:
        assert name not in guest.checkpoints(), 'the failed run left its checkpoint %s' % name
    for disk in guest.disks.values():
        if not guest.running():
            bitmaps = guest.image_bitmaps(disk.target)
            stray = sorted(b for b in bitmaps if b.startswith(prefix) and b not in known)
            assert not stray, 'bitmaps that no complete backup records in %s: %s' % (disk.path, stray)


def assert_next_run(fault, guest, repo, base=None, expect_level=None, **args):
    """The run after a fault: succeeds, removes any partial backup, builds on the last good backup
    (never on the failed run's checkpoint), and restores bit-exact. Returns its backup dict."""
    result = backup(guest, repo, **args)
    assert partial_dirs(repo, guest.name) == [], 'partial backups left after the next run: %s' % (
        partial_dirs(repo, guest.name),)
    manifest = read_manifests(repo, guest.name)[result['id']]
    if base is not None:
        assert manifest['parent'] == base['id'], 'the next run built on %s, not on the last good backup %s' % (
            manifest['parent'], base['id'])
        assert manifest['since_checkpoint'] == base['checkpoint'], (
            'the next run started from checkpoint %s, not %s' % (manifest['since_checkpoint'], base['checkpoint']))
    if expect_level:
        assert result['level'] == expect_level, 'level %s (%s), expected %s' % (
            result['level'], result['reason'], expect_level)
    verify_backup(fault, guest, repo, result['id'])
    return result
