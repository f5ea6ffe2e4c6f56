# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Backup benchmark: virt_backup (pull and push) against nbdcopy and virtnbdbackup on a real TCG domain.

See bench/README.md. Run as root on the hypervisor, with the project's venv Python:

    .venv/bin/python bench/backup_bench.py            # full run (about 5 minutes on a quiet machine)
    .venv/bin/python bench/backup_bench.py --quick    # smoke test (small disks, about 1 minute)

What it does, in one run:
  1. full backups of a running domain whose 4 GiB qcow2 disk holds 1 GiB of random data:
     virt_backup in pull mode, virt_backup in push mode, virtnbdbackup (level full), and nbdcopy
     reading the same kind of pull export (virDomainBackupBegin, no checkpoint) into a raw file;
  2. incremental backups (virt_backup, pull) of 64 MiB written in 1 MiB pieces spread over the
     disk, on a 1 GiB and on a 16 GiB disk (each a quarter full of random data);
  3. a memory probe: a full and an incremental backup of a sparse 1 TiB disk;
then prints a table (seconds, MiB/s, CPU seconds, peak RSS), the ratios against the targets with
PASS/FAIL, and the module's peak memory. Exit code 0 when every target passed, 1 when one failed,
2 when the benchmark itself could not run. Every domain (prefix bench-bk-), checkpoint, image,
repository and socket it makes is removed at the end, also on failure, Ctrl-C or SIGTERM.
"""

from __future__ import absolute_import, division, print_function

import argparse
import datetime
import fcntl
import json
import mmap
import os
import platform
import pwd
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

import _copy_bench
import _crypt_bench
import _instant_bench
import _s3copy_bench

try:
    import libvirt
    import libvirt_qemu
except ImportError:
    sys.exit('backup_bench: needs the libvirt Python bindings (python3-libvirt); run it with the '
             "project's venv: .venv/bin/python bench/backup_bench.py")

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
COLLECTIONS = os.path.join(ROOT, 'build', 'collections')
MODULE = 'ansible_collections.virtops.libvirt.plugins.modules.virt_backup'
RSS_WRAPPER = os.path.join(HERE, '_module_rss.py')
URI = 'qemu:///system'
PREFIX = 'bench-bk-'
WORK = '/var/lib/libvirt/images/virtops-bench'
LOCK = '/run/lock/virtops-backup-bench.lock'
QEMU_DEVICE = '/machine/peripheral/virtio-disk0/virtio-backend'

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB
TiB = 1024 * GiB

# Targets from the issue.
TARGET_PULL_VS_NBDCOPY = 1.25     # virt_backup pull full <= 1.25 x nbdcopy (issue 13)
TARGET_VNB_VS_PULL = 2.0          # virtnbdbackup full >= 2 x virt_backup pull full (issue 13)
TARGET_INC_BIG_VS_SMALL = 1.1     # incremental on the big disk <= 1.1 x on the small disk (issue 13)
TARGET_MODULE_RSS = 256 * MiB     # peak RSS of the module process, whatever the disk size
TARGET_COMPARE_VS_NBDCOPY = 1.2   # compared incremental of a raw disk <= 1.2 x nbdcopy of its export to null:
TARGET_COMPARE_GROWTH = 1.1       # repository growth of that incremental <= 1.1 x the bytes changed


class BenchError(Exception):
    pass


def parse_size(text):
    match = re.match(r'^\s*(\d+)\s*([KMGT]?)(i?B)?\s*$', text, re.I)
    if not match:
        raise argparse.ArgumentTypeError('%r is not a size such as 512M, 4G or 1T' % text)
    unit = {'': 1, 'K': KiB, 'M': MiB, 'G': GiB, 'T': TiB}[match.group(2).upper()]
    return int(match.group(1)) * unit


def human(size):
    for unit, name in ((TiB, 'TiB'), (GiB, 'GiB'), (MiB, 'MiB'), (KiB, 'KiB')):
        if size >= unit and size % unit == 0:
            return '%d %s' % (size // unit, name)
    return '%d B' % size


def human_bytes(n):
    if n is None:
        return '?'
    if n >= GiB:
        return '%.2f GiB' % (n / float(GiB))
    return '%.1f MiB' % (n / float(MiB))


def median(values):
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2.0


def loadavg():
    with open('/proc/loadavg') as src:
        return src.read().split()[:3]


def log(msg):
    print('[%s] %s' % (time.strftime('%H:%M:%S'), msg), flush=True)


def run(cmd, what):
    proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          check=False)
    if proc.returncode != 0:
        raise BenchError('%s failed (%s): %s' % (what, ' '.join(cmd), proc.stderr.decode('utf-8', 'replace').strip()))
    return proc.stdout.decode('utf-8', 'replace')


def _hwm_kib(pid):
    try:
        with open('/proc/%d/status' % pid) as src:
            for line in src:
                if line.startswith('VmHWM:'):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


def _exe(pid):
    try:
        return os.readlink('/proc/%d/exe' % pid)
    except OSError:
        return None


class TreeSampler(threading.Thread):
    """Peak RSS (VmHWM, which counts a program from its exec on) of a process and of each of its
    descendants, sampled every `interval` seconds while it runs. Needed because getrusage's ru_maxrss
    of a child includes the memory of the parent it was spawned from."""

    def __init__(self, root, interval=0.1):
        threading.Thread.__init__(self, name='rss-sampler')
        self.daemon = True
        self.root = root
        self.interval = interval
        self.peaks = {}            # pid -> [name, peak KiB]
        self.done = threading.Event()

    def run(self):
        while not self.done.is_set():
            self.sample()
            self.done.wait(self.interval)

    def sample(self):
        children = {}
        for entry in os.listdir('/proc'):
            if not entry.isdigit():
                continue
            try:
                with open('/proc/%s/stat' % entry) as src:
                    stat = src.read()
            except OSError:
                continue
            close = stat.rfind(')')
            ppid = int(stat[close + 2:].split()[1])
            children.setdefault(ppid, []).append((int(entry), stat[stat.find('(') + 1:close]))
        todo = [(self.root, None, None)]
        while todo:
            pid, name, parent_exe = todo.pop()
            exe = _exe(pid)
            # A child that has not yet called exec shares or copies its parent's memory: not its own.
            kib = _hwm_kib(pid) if exe is not None and exe != parent_exe else None
            if kib is not None:
                entry = self.peaks.setdefault(pid, [name, 0])
                entry[0] = name or entry[0]
                entry[1] = max(entry[1], kib)
            todo.extend((child, child_name, exe) for child, child_name in children.get(pid, []))

    def stop(self):
        self.done.set()
        self.join()

    def own_peak(self):
        return self.peaks.get(self.root, [None, None])[1]

    def largest_descendant(self):
        others = [v for pid, v in self.peaks.items() if pid != self.root]
        return tuple(max(others, key=lambda v: v[1])) if others else (None, None)


class Measured:
    """What measure() saw of one command."""

    def __init__(self, seconds, usage, code, out, err, sampler):
        self.seconds = seconds
        self.cpu = usage.ru_utime + usage.ru_stime      # the process and every descendant it waited for
        self.code = code
        self.out = out
        self.err = err
        self.rss_kib = sampler.own_peak()
        self.child_name, self.child_rss_kib = sampler.largest_descendant()


def measure(cmd, timeout, out_prefix, env=None):
    """Run cmd with stdout and stderr in files; wall time, CPU time, peak RSS of the process and of its
    largest descendant. Killed after timeout seconds."""
    with open(out_prefix + '.out', 'wb') as out, open(out_prefix + '.err', 'wb') as err:
        t0 = time.monotonic()
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=env)
        sampler = TreeSampler(proc.pid)
        sampler.start()
        timer = threading.Timer(timeout, proc.kill)
        timer.start()
        try:
            _pid, status, usage = os.wait4(proc.pid, 0)
        except BaseException:       # interrupted: do not leave the tool running
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            raise
        finally:
            timer.cancel()
            sampler.stop()
        seconds = time.monotonic() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
    with open(out_prefix + '.out', 'rb') as src:
        text_out = src.read().decode('utf-8', 'replace')
    with open(out_prefix + '.err', 'rb') as src:
        text_err = src.read().decode('utf-8', 'replace')
    return Measured(seconds, usage, proc.returncode, text_out, text_err, sampler)


class Result:
    """One timed run of one tool."""

    def __init__(self, kind, case, tool, seconds, data_bytes, cpu, rss_kib, children_rss_kib=None, note='',
                 child_name=None):
        self.kind = kind              # full, setup, inc-small, inc-big, probe: what the ratios compare
        self.case = case
        self.tool = tool
        self.seconds = seconds
        self.data_bytes = data_bytes
        self.cpu = cpu                # user + system seconds of the tool's processes (not QEMU's)
        self.rss_kib = rss_kib        # peak RSS of the tool's own process
        self.children_rss_kib = children_rss_kib   # its largest descendant (virt_backup: qemu-nbd, qemu-img)
        self.child_name = child_name
        self.note = note
        self.module = None            # virt_backup: the module's result
        self.copy_seconds = None      # nbdcopy: the copy alone, without the job begin and abort
        self.load = loadavg()[0]

    @property
    def mib_s(self):
        return self.data_bytes / MiB / self.seconds if self.seconds > 0 else float('nan')

    def as_dict(self):
        return dict(kind=self.kind, case=self.case, tool=self.tool, seconds=round(self.seconds, 3),
                    data_bytes=self.data_bytes, mib_s=round(self.mib_s, 1), cpu_seconds=round(self.cpu, 2),
                    rss_kib=self.rss_kib, children_rss_kib=self.children_rss_kib, child_name=self.child_name,
                    note=self.note,
                    copy_seconds=self.copy_seconds, load=self.load,
                    engine_duration=self.module['duration'] if self.module else None)


class Bench:

    def __init__(self, args):
        self.args = args
        self.conn = None
        self.domains = []          # names this run defined
        self.results = []          # every Result, all repetitions
        self.counter = 0
        self.retries = []          # steps that failed once and were run again
        self.qemu_uid, self.qemu_gid = self._qemu_user()

    def quiesce(self):
        """Before each measured run: the page cache's dirty data written out, and memory settled.

        On these machines (VMs whose balloon reports freed pages to the host) the first run after
        the bench deletes a GiB of fresh files paid for its memory again: its page-cache copies ran
        at a tenth of their speed, whichever tool it was (docs/benchmarks.md, 2026-12-07 09:25).
        Touching --settle-gib of anonymous memory and freeing it just before gives every run the
        same, already backed, memory to start from."""
        if self.args.settle_gib > 0:
            size = int(self.args.settle_gib * (1 << 30))
            mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | mmap.MAP_POPULATE).close()
        os.sync()

    # -- set-up and clean-up --------------------------------------------------------------------

    @staticmethod
    def _qemu_user():
        for name in ('libvirt-qemu', 'qemu'):
            try:
                entry = pwd.getpwnam(name)
                return entry.pw_uid, entry.pw_gid
            except KeyError:
                continue
        raise BenchError('no libvirt-qemu (or qemu) user: is libvirt installed?')

    def connect(self, fresh=False):
        """The libvirt connection; opened again when libvirtd was restarted under us (or when fresh)."""
        if self.conn is not None:
            try:
                if not fresh and self.conn.isAlive():
                    return self.conn
            except libvirt.libvirtError:
                pass
            try:
                self.conn.close()
            except libvirt.libvirtError:
                pass
            self.conn = None
        deadline = time.time() + 90
        while True:
            try:
                self.conn = libvirt.open(URI)
                return self.conn
            except libvirt.libvirtError as exc:
                if time.time() > deadline:
                    raise BenchError('cannot connect to %s (%s): start libvirtd (bash scripts/setup-host.sh)'
                                     % (URI, exc))
                time.sleep(1)

    def dom(self, name):
        return self.connect().lookupByName(name)

    def open(self):
        if os.geteuid() != 0:
            raise BenchError('run as root: the benchmark defines domains and reads their NBD exports')
        for tool in ('qemu-img', 'qemu-nbd', 'nbdcopy', 'virtnbdbackup'):
            if not shutil.which(tool):
                raise BenchError('%s is not installed (Debian: qemu-utils, libnbd-bin, virtnbdbackup)' % tool)
        # One run at a time: each removes every bench-bk- domain and the work directory when it starts.
        self.lock_fd = os.open(LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(self.lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            log('another run of this benchmark holds %s: waiting for it to end' % LOCK)
            fcntl.flock(self.lock_fd, fcntl.LOCK_EX)
        self.connect()
        link = os.path.join(COLLECTIONS, 'ansible_collections', 'virtops', 'libvirt')
        if not os.path.exists(os.path.join(link, 'plugins', 'modules', 'virt_backup.py')):
            os.makedirs(os.path.dirname(link), exist_ok=True)
            if os.path.islink(link):
                os.unlink(link)
            os.symlink(ROOT, link)     # what `make link` does
        self.cleanup(leftovers=True)
        a = self.args
        # images (raw while they are built, then qcow2), repositories, tools' outputs
        need = 3 * (a.full_data + a.inc_small // 4 + a.inc_big // 4) + GiB
        st = os.statvfs(os.path.dirname(WORK))
        if st.f_bavail * st.f_frsize < need:
            raise BenchError('%s needs about %s free, it has %s' % (
                os.path.dirname(WORK), human_bytes(need), human_bytes(st.f_bavail * st.f_frsize)))
        os.makedirs(WORK, 0o711)
        os.chmod(WORK, 0o711)
        for sub, mode in (('images', 0o711), ('repos', 0o711), ('out', 0o700)):
            os.mkdir(self.path(sub), mode)
            os.chmod(self.path(sub), mode)
        # QEMU creates its sockets and scratch files here (LAB-NOTES: owned by its user, 0700).
        os.mkdir(self.path('qemu'), 0o700)
        os.chown(self.path('qemu'), self.qemu_uid, self.qemu_gid)

    @staticmethod
    def path(*parts):
        return os.path.join(WORK, *parts)

    def next_id(self):
        self.counter += 1
        return self.counter

    def cleanup(self, leftovers=False):
        """Remove this run's domains (checkpoint metadata too) and files; with leftovers, those of any
        earlier run of this benchmark as well (same prefix, same work directory)."""
        for attempt in (1, 2, 3):     # again after a libvirtd restart
            try:
                self._remove_domains(leftovers, fresh=attempt > 1)
                break
            except (BenchError, libvirt.libvirtError) as exc:
                log('warning: removing the domains %s failed%s: %s' % (
                    ', '.join(sorted(self.domains)) or PREFIX + '*', ', trying again' if attempt < 3 else '', exc))
        if os.path.isdir(WORK):
            shutil.rmtree(WORK, ignore_errors=True)

    def _remove_domains(self, leftovers, fresh):
        names = set(self.domains)
        conn = self.connect(fresh=fresh)
        if conn is not None:
            if leftovers:
                names.update(d.name() for d in conn.listAllDomains(0) if d.name().startswith(PREFIX))
            for name in sorted(names):
                try:
                    dom = conn.lookupByName(name)
                except libvirt.libvirtError:
                    if not conn.isAlive():
                        raise
                    continue      # not defined (any more)
                try:
                    if dom.isActive():
                        try:
                            dom.abortJob()
                        except libvirt.libvirtError:
                            pass
                        dom.destroy()
                    dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA
                                      | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA)
                except libvirt.libvirtError as exc:
                    if not conn.isAlive():
                        raise
                    log('warning: cannot remove domain %s: %s' % (name, exc))
            self.domains = []

    # -- disks and domains ----------------------------------------------------------------------

    def make_disk(self, name, size, data, chunk=4 * MiB, fmt='qcow2'):
        """An image (qcow2, or raw) of virtual size `size` holding `data` bytes of random data, in
        `chunk` pieces spread evenly over the disk (the first MiB stays zero: the firmware reads it)."""
        t0 = time.monotonic()
        raw = self.path('images', name + '.raw.tmp')
        image = self.path('images', name + '.' + fmt)
        pieces = max(1, data // chunk)
        stride = (size - MiB) // pieces
        stride -= stride % (64 * KiB)
        if stride < chunk:
            raise BenchError('%s of data does not fit in a %s disk' % (human(data), human(size)))
        fd = os.open(raw, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.ftruncate(fd, size)
            for i in range(pieces):
                os.pwrite(fd, os.urandom(chunk), MiB + i * stride)
        finally:
            os.close(fd)
        if fmt == 'raw':
            os.rename(raw, image)
        else:
            run(['qemu-img', 'convert', '-q', '-f', 'raw', '-O', 'qcow2', raw, image], 'building %s' % image)
            os.unlink(raw)
        os.chmod(image, 0o644)
        log('  made %s: %s, %s random data in %s pieces (%.1f s)' % (
            os.path.basename(image), human(size), human(data), human(chunk), time.monotonic() - t0))
        return image

    @staticmethod
    def domain_xml(name, image, fmt='qcow2'):
        """A 64 MiB TCG domain with no OS whose one virtio disk is image."""
        return """<domain type='qemu'>
  <name>%s</name>
  <memory unit='MiB'>64</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type><boot dev='hd'/></os>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='%s'/>
      <source file='%s'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <memballoon model='none'/>
  </devices>
</domain>""" % (name, fmt, image)

    def start_domain(self, name, image, fmt='qcow2'):
        xml = self.domain_xml(name, image, fmt)
        t0 = time.monotonic()
        self.domains.append(name)
        for attempt in (1, 2):     # once more after a libvirtd restart
            try:
                dom = self.connect(fresh=attempt > 1).defineXML(xml)
                if not dom.isActive():
                    dom.create()
                break
            except libvirt.libvirtError as exc:
                if attempt > 1:
                    raise
                log('  starting %s failed, trying once more: %s' % (name, exc))
                self.retries.append('starting %s: %s' % (name, exc))
        self.renice_domain(name)
        log('  started domain %s (%.1f s)' % (name, time.monotonic() - t0))
        return name

    def renice_domain(self, name):
        """With --nice, QEMU's threads (vCPU, main loop serving NBD, I/O) get the tools' priority."""
        if not self.args.nice:
            return
        try:
            with open('/run/libvirt/qemu/%s.pid' % name) as src:
                pid = int(src.read().strip())
            for task in os.listdir('/proc/%d/task' % pid):
                os.setpriority(os.PRIO_PROCESS, int(task), self.args.nice)
        except (OSError, ValueError) as exc:
            log('warning: cannot renice the QEMU process of %s: %s' % (name, exc))

    def stop_domain(self, name):
        """Free the CPU for the next case; the domain is undefined at the end."""
        try:
            self.dom(name).destroy()
        except libvirt.libvirtError:
            pass

    def dirty(self, name, size, total, seed, piece=MiB):
        """Write `total` bytes in `piece` writes spread evenly over the disk, through the guest's
        virtio device (qemu-io over HMP), so that the checkpoint bitmaps see them."""
        dom = self.dom(name)
        pieces = total // piece
        stride = (size - 2 * MiB) // pieces
        stride -= stride % (64 * KiB)
        shift = (seed * 3 * MiB) % max(64 * KiB, stride - piece)
        shift -= shift % (64 * KiB)
        for i in range(pieces):
            offset = MiB + i * stride + shift
            pattern = 1 + (seed * 61 + i) % 254
            # qemu-io reports success in QEMU's log, not to the monitor: the monitor shows only errors.
            out = libvirt_qemu.qemuMonitorCommand(
                dom, 'qemu-io -d %s "write -P 0x%02x %d %d"' % (QEMU_DEVICE, pattern, offset, piece),
                libvirt_qemu.VIR_DOMAIN_QEMU_MONITOR_COMMAND_HMP)
            if out.strip():
                raise BenchError('qemu-io write into %s failed: %s' % (name, out.strip()))

    def delete_checkpoints(self, name, prefix):
        dom = self.dom(name)
        for _round in range(2):   # roots first (with their children), then any left
            for ck in dom.listAllCheckpoints(libvirt.VIR_DOMAIN_CHECKPOINT_LIST_ROOTS if not _round else 0):
                if ck.getName().startswith(prefix):
                    try:
                        ck.delete(libvirt.VIR_DOMAIN_CHECKPOINT_DELETE_CHILDREN if not _round else 0)
                    except libvirt.libvirtError:
                        if _round:
                            raise

    def end_job(self, name, timeout=60):
        dom = self.dom(name)
        try:
            dom.abortJob()
        except libvirt.libvirtError:
            pass   # no job (any more)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if dom.jobStats(0).get('type', libvirt.VIR_DOMAIN_JOB_NONE) == libvirt.VIR_DOMAIN_JOB_NONE:
                return
            time.sleep(0.02)
        raise BenchError('the backup job of %s did not end' % name)

    # -- the tools ------------------------------------------------------------------------------

    def virt_backup(self, kind, case, name, repo, mode, level, data_bytes):
        """Run the module as Ansible does (runpy, arguments file); a Result with the module's own peak
        RSS and that of its largest child (qemu-nbd, qemu-img) kept apart."""
        n = self.next_id()
        args_file = self.path('out', '%d-args.json' % n)
        rss_file = self.path('out', '%d-rss.json' % n)
        params = dict(domain=name, repository=repo, mode=mode, level=level, workers=self.args.workers)
        with open(args_file, 'w') as out:
            json.dump(dict(ANSIBLE_MODULE_ARGS=params), out)
        env = dict(os.environ, PYTHONPATH=self.args.collections, ANSIBLE_COLLECTIONS_PATH=self.args.collections)
        if self.args.profile:
            env['VIRTOPS_BENCH_PROFILE'] = os.path.join(self.args.profile, '%d-virt_backup-%s-%s.prof' % (n, mode, level))
        self.quiesce()
        m = measure([self.args.python, RSS_WRAPPER, rss_file, MODULE, args_file], self.args.timeout,
                    self.path('out', '%d-virt_backup' % n), env=env)
        code, out, err = m.code, m.out, m.err
        try:
            result = json.loads(out[out.index('{'):])
        except ValueError:
            raise BenchError('virt_backup %s %s of %s printed no result (exit %d): %s %s' % (
                mode, level, name, code, out.strip()[-2000:], err.strip()[-2000:]))
        if code != 0 or result.get('failed'):
            raise BenchError('virt_backup %s %s of %s failed: %s' % (mode, level, name, result.get('msg')))
        with open(rss_file) as src:
            rss = json.load(src)
        backup = result['backup']
        if backup['level'] != level:
            raise BenchError('virt_backup took a %s backup, not %s' % (backup['level'], level))
        disk = backup['disks'][0]
        res = Result(kind, case, 'virt_backup %s %s' % (mode, level), m.seconds, data_bytes,
                     rss['self_cpu'] + rss['children_cpu'], rss['self_hwm_kib'], m.child_rss_kib,
                     child_name=m.child_name)
        res.module = backup
        res.note = 'engine %.2f s, read %s, dirty %s, module CPU %.2f s + children %.2f s' % (
            backup['duration'], human_bytes(disk['bytes_read']), human_bytes(disk['dirty_bytes']),
            rss['self_cpu'], rss['children_cpu'])
        moved = disk['dirty_bytes'] if level == 'incremental' else disk['bytes_read']
        if not 0.95 <= moved / float(data_bytes) <= 1.5:
            res.note += ' (expected about %s)' % human_bytes(data_bytes)
        return res

    def nbdcopy(self, kind, case, name, data_bytes, to_null=False):
        """A pull-mode backup job begun here (no checkpoint), its export copied by nbdcopy to a raw file
        (to_null: read only, to nbdcopy's null: destination)."""
        n = self.next_id()
        sock = self.path('qemu', '%d-nbdcopy.sock' % n)
        scratch = self.path('qemu', '%d-nbdcopy.scratch.qcow2' % n)
        target = 'null:' if to_null else self.path('out', '%d-nbdcopy.raw' % n)
        xml = ("<domainbackup mode='pull'><server transport='unix' socket='%s'/><disks>"
               "<disk name='vda' backup='yes' type='file'><scratch file='%s'/></disk></disks></domainbackup>"
               % (sock, scratch))
        dom = self.dom(name)
        self.quiesce()
        t0 = time.monotonic()
        dom.backupBegin(xml, None, 0)
        try:
            while not os.path.exists(sock):
                if time.monotonic() - t0 > 30:
                    raise BenchError('the NBD export of %s did not appear at %s' % (name, sock))
                time.sleep(0.01)
            t1 = time.monotonic()
            m = measure(['nbdcopy'] + ([] if to_null else ['--flush']) + ['nbd+unix:///vda?socket=%s' % sock, target],
                        self.args.timeout, self.path('out', '%d-nbdcopy' % n))
            if m.code != 0:
                raise BenchError('nbdcopy failed (exit %d): %s' % (m.code, m.err.strip()))
            t2 = time.monotonic()
        finally:
            self.end_job(name)
        t3 = time.monotonic()
        allocated = 0 if to_null else os.stat(target).st_blocks * 512
        for path in ([] if to_null else [target]) + [scratch]:
            if os.path.exists(path):
                os.unlink(path)
        res = Result(kind, case, 'nbdcopy (pull export -> %s)' % ('null' if to_null else 'raw'), t3 - t0, data_bytes,
                     m.cpu, m.rss_kib)
        res.copy_seconds = m.seconds
        res.note = 'copy alone %.2f s, job begin %.2f s, abort %.2f s, %s allocated' % (
            m.seconds, t1 - t0, t3 - t2, human_bytes(allocated))
        return res

    def virtnbdbackup(self, kind, case, name, data_bytes):
        n = self.next_id()
        target = self.path('out', '%d-virtnbdbackup' % n)
        cmd = ['virtnbdbackup', '-U', URI, '-d', name, '-l', 'full', '-o', target, '-S', self.path('qemu'),
               '-f', self.path('qemu', '%d-virtnbdbackup.sock' % n), '-n']
        self.quiesce()
        try:
            m = measure(cmd, self.args.timeout, self.path('out', '%d-virtnbdbackup' % n))
            if m.code != 0:
                raise BenchError('virtnbdbackup failed (exit %d): %s' % (m.code, (m.err or m.out).strip()[-3000:]))
        finally:
            if self.dom(name).jobStats(0).get('type', libvirt.VIR_DOMAIN_JOB_NONE) != libvirt.VIR_DOMAIN_JOB_NONE:
                self.end_job(name)
            self.delete_checkpoints(name, 'virtnbdbackup.')
        # virtnbdbackup never syncs what it wrote; virt_backup and nbdcopy --flush do. What its
        # backup would take to be on disk is reported beside it (the target uses its own time).
        t0 = time.monotonic()
        os.sync()
        writeback = time.monotonic() - t0
        written = sum(os.path.getsize(os.path.join(d, f)) for d, _s, files in os.walk(target) for f in files)
        shutil.rmtree(target, ignore_errors=True)
        res = Result(kind, case, 'virtnbdbackup full', m.seconds, data_bytes, m.cpu, m.rss_kib, m.child_rss_kib,
                     child_name=m.child_name)
        res.writeback_seconds = writeback
        res.note = '%s written (its stream format), not synced: a sync after it took %.2f s' % (
            human_bytes(written), writeback)
        return res

    def record(self, res):
        self.results.append(res)
        log('  %-30s %7.2f s %7.1f MiB/s  CPU %5.2f s  RSS %5.1f MiB  load %s  %s' % (
            res.tool, res.seconds, res.mib_s, res.cpu, res.rss_kib / 1024.0, res.load, res.note))

    def attempt(self, what, name, func, undo=None):
        """Run one step; when it fails (this machine is shared, and another suite restarts libvirtd now
        and then), reconnect, end any job left on the domain, undo what the step left, and try once
        more. Retries are listed in the report."""
        try:
            return func()
        except (BenchError, libvirt.libvirtError) as exc:
            log('  %s failed, trying once more: %s' % (what, exc))
            self.retries.append('%s: %s' % (what, exc))
        self.connect(fresh=True)
        try:
            if self.dom(name).jobStats(0).get('type', libvirt.VIR_DOMAIN_JOB_NONE) != libvirt.VIR_DOMAIN_JOB_NONE:
                self.end_job(name)
            if undo is not None:
                undo()
        except (BenchError, libvirt.libvirtError) as exc:
            log('  clean-up before the retry: %s' % exc)
        return func()

    # -- the cases ------------------------------------------------------------------------------

    def case_full(self):
        a = self.args
        case = 'full: %s disk, %s random data' % (human(a.full_size), human(a.full_data))
        log('case %s' % case)
        name = self.start_domain(PREFIX + 'full', self.make_disk('full', a.full_size, a.full_data))
        time.sleep(2)   # let the firmware settle

        def virt_backup(mode, rep):
            repo = self.path('repos', 'full-%s-%d' % (mode, rep))

            def undo():
                shutil.rmtree(repo, ignore_errors=True)
                self.delete_checkpoints(name, 'virtops-')
            res = self.attempt('virt_backup %s full' % mode, name,
                               lambda: self.virt_backup('full', case, name, repo, mode, 'full', a.full_data), undo)
            undo()      # each run is a first backup: no repository, no checkpoint before it
            return res

        for rep in range(a.repeat):
            order = ['pull', 'push', 'virtnbdbackup', 'nbdcopy']
            if rep % 2:
                order.reverse()
            for tool in order:
                if tool in ('pull', 'push'):
                    res = virt_backup(tool, rep)
                elif tool == 'virtnbdbackup':
                    res = self.attempt(tool, name, lambda: self.virtnbdbackup('full', case, name, a.full_data),
                                       lambda: self.delete_checkpoints(name, 'virtnbdbackup.'))
                else:
                    res = self.attempt(tool, name, lambda: self.nbdcopy('full', case, name, a.full_data))
                self.record(res)
        self.stop_domain(name)

    def case_incremental(self):
        a = self.args
        disks = [('small', a.inc_small), ('big', a.inc_big)]
        setup = {}
        for label, size in disks:
            name = self.start_domain(PREFIX + 'inc-%s' % label,
                                     self.make_disk('inc-%s' % label, size, size // 4))
            setup[label] = (name, size, self.path('repos', 'inc-%s' % label))
        time.sleep(2)
        for label, size in disks:
            name, _size, repo = setup[label]
            case = 'setup: full of the %s disk, %s random data' % (human(size), human(size // 4))
            log('case %s' % case)
            self.record(self.attempt('virt_backup setup full', name, lambda: self.virt_backup(
                'setup', case, name, repo, 'pull', 'full', size // 4)))
        for rep in range(a.inc_repeat):
            order = disks if rep % 2 == 0 else list(reversed(disks))
            for label, size in order:
                self.attempt('writing into %s' % setup[label][0], setup[label][0],
                             lambda: self.dirty(setup[label][0], size, a.inc_dirty, seed=rep + 1))
            for label, size in order:
                name, _size, repo = setup[label]
                case = 'incremental: %s dirty on a %s disk' % (human(a.inc_dirty), human(size))
                if rep == 0:
                    log('case %s' % case)
                self.record(self.attempt('virt_backup incremental', name, lambda: self.virt_backup(
                    'inc-' + label, case, name, repo, 'pull', 'incremental', a.inc_dirty)))
        for name, _size, _repo in setup.values():
            self.stop_domain(name)

    def case_compare(self):
        """A raw disk (no dirty bitmap): each incremental reads it in full and compares every block with
        the previous backup's integrity data. Against nbdcopy reading the same kind of export to null:,
        the least any tool must do to find changes without a bitmap; and the repository growth against
        the bytes written."""
        a = self.args
        name = self.start_domain(PREFIX + 'compare', self.make_disk('compare', a.full_size, a.full_data, fmt='raw'),
                                 fmt='raw')
        time.sleep(2)
        repo = self.path('repos', 'compare')
        case = 'setup: full of the raw %s disk, %s random data' % (human(a.full_size), human(a.full_data))
        log('case %s' % case)
        self.record(self.attempt('virt_backup setup full', name, lambda: self.virt_backup(
            'setup', case, name, repo, 'pull', 'full', a.full_data)))
        case = 'compare: %s changed on a raw %s disk' % (human(a.inc_dirty), human(a.full_size))
        log('case %s' % case)
        for rep in range(a.inc_repeat):
            self.attempt('writing into %s' % name, name, lambda: self.dirty(name, a.full_size, a.inc_dirty, seed=rep + 1))
            res = self.attempt('virt_backup compared incremental', name, lambda: self.virt_backup(
                'compare', case, name, repo, 'pull', 'incremental', a.inc_dirty))
            image = os.path.join(res.module['path'], 'vda.qcow2')
            res.growth = os.path.getsize(image)
            res.note += ', image %s' % human_bytes(res.growth)
            self.record(res)
            self.record(self.attempt('nbdcopy', name,
                                     lambda: self.nbdcopy('compare', case, name, a.full_data, to_null=True)))
        self.stop_domain(name)

    def case_probe(self):
        a = self.args
        size, data = a.probe_size, 64 * MiB
        name = self.start_domain(PREFIX + 'probe', self.make_disk('probe', size, data))
        time.sleep(2)
        repo = self.path('repos', 'probe')
        case = 'probe: full of a sparse %s disk, %s data' % (human(size), human(data))
        log('case %s' % case)
        self.record(self.attempt('virt_backup probe full', name, lambda: self.virt_backup(
            'probe', case, name, repo, 'pull', 'full', data)))
        self.attempt('writing into %s' % name, name, lambda: self.dirty(name, size, a.inc_dirty, seed=1))
        case = 'probe: incremental, %s dirty on a sparse %s disk' % (human(a.inc_dirty), human(size))
        log('case %s' % case)
        self.record(self.attempt('virt_backup probe incremental', name, lambda: self.virt_backup(
            'probe', case, name, repo, 'pull', 'incremental', a.inc_dirty)))
        self.stop_domain(name)

    # -- report ---------------------------------------------------------------------------------

    def best(self, kind, tool_part):
        found = [r for r in self.results if r.kind == kind and r.tool.startswith(tool_part)]
        return min(found, key=lambda r: r.seconds) if found else None

    def median_seconds(self, kind, tool_part):
        return median([r.seconds for r in self.results if r.kind == kind and r.tool.startswith(tool_part)])

    def report(self, started, finished):
        a = self.args
        lines = ['', 'Results: best of %d (incrementals: of %d) by wall time; MiB/s = data bytes / seconds; CPU = user + system seconds of '
                     'the tool and its children (not QEMU\'s); RSS = peak resident set size' % (a.repeat, a.inc_repeat)]
        header = '%-44s %-29s %8s %8s %8s %6s %8s %8s' % ('case', 'tool', 'seconds', 'median', 'MiB/s', 'CPU s',
                                                          'RSS MiB', 'child MiB')
        lines += [header, '-' * len(header)]
        seen = []
        for r in self.results:
            key = (r.case, r.tool)
            if key in seen:
                continue
            seen.append(key)
            group = [x for x in self.results if (x.case, x.tool) == key]
            b = min(group, key=lambda x: x.seconds)
            rss = max(x.rss_kib or 0 for x in group)
            child = max((x.children_rss_kib or 0) for x in group)
            lines.append('%-44s %-29s %8.2f %8.2f %8.1f %6.2f %8.1f %8s' % (
                b.case[:44], b.tool[:29], b.seconds, median([x.seconds for x in group]), b.mib_s, b.cpu, rss / 1024.0,
                '%.1f' % (child / 1024.0) if child else '-'))
        lines += [
            'RSS MiB: peak of the process itself (virt_backup: the module process alone, VmHWM read inside it at',
            'its end; others: sampled every 0.1 s); child MiB: peak of its largest descendant (virt_backup: qemu-nbd',
            'or qemu-img). seconds, MiB/s, CPU: the fastest run; median: of all runs; RSS: the largest of the runs.',
            'The nbdcopy time includes beginning and aborting the pull job, as virt_backup\'s does; nbdcopy writes',
            'with --flush, as virt_backup syncs its image.',
            '', 'Targets']
        verdicts = []

        def verdict(name, value, ok, target_text, detail=''):
            verdicts.append(dict(name=name, value=value, passed=ok, target=target_text, detail=detail))
            lines.append('%-4s %-46s %-9s (target %s)%s' % (
                'PASS' if ok else 'FAIL', name, value, target_text, ('\n       ' + detail) if detail else ''))

        pull = self.best('full', 'virt_backup pull')
        push = self.best('full', 'virt_backup push')
        nbdc = self.best('full', 'nbdcopy')
        vnb = self.best('full', 'virtnbdbackup')
        if pull and nbdc:
            ratio = pull.seconds / nbdc.seconds
            verdict('virt_backup pull full / nbdcopy', '%.2f' % ratio, ratio <= TARGET_PULL_VS_NBDCOPY,
                    '<= %.2f' % TARGET_PULL_VS_NBDCOPY,
                    'medians %.2f; engine alone (module duration) %.2f s / nbdcopy copy alone %.2f s = %.2f; '
                    'CPU %.2f s / %.2f s' % (
                        self.median_seconds('full', 'virt_backup pull') / self.median_seconds('full', 'nbdcopy'),
                        pull.module['duration'], nbdc.copy_seconds, pull.module['duration'] / nbdc.copy_seconds,
                        pull.cpu, nbdc.cpu))
        if pull and vnb:
            ratio = vnb.seconds / pull.seconds
            verdict('virtnbdbackup full / virt_backup pull full', '%.2f' % ratio, ratio >= TARGET_VNB_VS_PULL,
                    '>= %.1f' % TARGET_VNB_VS_PULL, 'medians %.2f; CPU %.2f s / %.2f s' % (
                        self.median_seconds('full', 'virtnbdbackup') / self.median_seconds('full', 'virt_backup pull'),
                        vnb.cpu, pull.cpu))
            lines.append('info %-46s %.2f' % ('(virtnbdbackup + a sync of its output) / pull full',
                                              (vnb.seconds + vnb.writeback_seconds) / pull.seconds))
        if pull and push:
            lines.append('info %-46s %.2f' % ('virt_backup push full / pull full', push.seconds / pull.seconds))
        small = self.best('inc-small', 'virt_backup pull incremental')
        big = self.best('inc-big', 'virt_backup pull incremental')
        if small and big:
            ratio = big.seconds / small.seconds
            verdict('incremental %s disk / %s disk' % (human(a.inc_big), human(a.inc_small)), '%.2f' % ratio,
                    ratio <= TARGET_INC_BIG_VS_SMALL, '<= %.1f' % TARGET_INC_BIG_VS_SMALL,
                    'medians %.2f; %s dirty: %.2f s on %s, %.2f s on %s (engine %.2f s / %.2f s, CPU %.2f s / %.2f s)' % (
                        self.median_seconds('inc-big', 'virt_backup') / self.median_seconds('inc-small', 'virt_backup'),
                        human(a.inc_dirty), small.seconds, human(a.inc_small), big.seconds, human(a.inc_big),
                        small.module['duration'], big.module['duration'], small.cpu, big.cpu))
        compared = self.best('compare', 'virt_backup pull incremental')
        null_copy = self.best('compare', 'nbdcopy')
        if compared and null_copy:
            ratio = compared.seconds / null_copy.seconds
            verdict('compared incremental (raw) / nbdcopy to null', '%.2f' % ratio, ratio <= TARGET_COMPARE_VS_NBDCOPY,
                    '<= %.1f' % TARGET_COMPARE_VS_NBDCOPY, 'medians %.2f; %s changed on a raw %s disk; CPU %.2f s / %.2f s'
                    % (self.median_seconds('compare', 'virt_backup') / self.median_seconds('compare', 'nbdcopy'),
                       human(a.inc_dirty), human(a.full_size), compared.cpu, null_copy.cpu))
            growth = max(r.growth for r in self.results if r.kind == 'compare' and hasattr(r, 'growth'))
            ratio = growth / float(a.inc_dirty)
            verdict('repository growth / bytes changed (raw)', '%.2f' % ratio, ratio <= TARGET_COMPARE_GROWTH,
                    '<= %.1f' % TARGET_COMPARE_GROWTH, 'largest incremental image %s for %s changed' % (
                        human_bytes(growth), human(a.inc_dirty)))
        _copy_bench.verdicts(sys.modules[__name__], self, verdict)
        _instant_bench.verdicts(sys.modules[__name__], self, verdict)
        _s3copy_bench.verdicts(sys.modules[__name__], self, verdict)
        _crypt_bench.verdicts(sys.modules[__name__], self, verdict)
        modules = [r for r in self.results if r.tool.startswith('virt_backup')]
        if modules:
            peak = max(modules, key=lambda r: r.rss_kib)
            peak_child = max(modules, key=lambda r: r.children_rss_kib or 0)
            verdict('peak RSS of the module process', '%.1f MiB' % (peak.rss_kib / 1024.0),
                    peak.rss_kib * KiB < TARGET_MODULE_RSS, '< %d MiB' % (TARGET_MODULE_RSS // MiB),
                    'in: %s, %s; largest child: %.1f MiB (%s)' % (
                        peak.tool, peak.case, (peak_child.children_rss_kib or 0) / 1024.0, peak_child.child_name))
            per_case = {}
            for r in modules:
                per_case[r.case] = max(per_case.get(r.case, 0), r.rss_kib)
            for case_name, kib in per_case.items():
                lines.append('       module peak %7.1f MiB  %s' % (kib / 1024.0, case_name))
        loads = [float(r.load) for r in self.results] or [0.0]
        lines += ['', 'Ran %s .. %s (%.0f s); 1-minute load average during the measurements %.1f .. %.1f on %d cores' % (
            started.strftime('%Y-%m-%d %H:%M:%S'), finished.strftime('%H:%M:%S'),
            (finished - started).total_seconds(), min(loads), max(loads), os.cpu_count())
            + ('; tools and bench QEMU at nice %d' % a.nice if a.nice else ''),
            'Machine: %s' % machine_line(self.connect())]
        for retry in self.retries:
            lines.append('Retried once after a failure: %s' % retry)
        if max(loads) > os.cpu_count():
            lines.append('Note: the machine was busy with other work (load above its core count): wall times are noisy.')
        print('\n'.join(lines), flush=True)
        if a.json:
            with open(a.json, 'w') as out:
                json.dump(dict(started=started.isoformat(), finished=finished.isoformat(), quick=a.quick,
                               repeat=a.repeat, nice=a.nice, machine=machine_info(self.connect()),
                               results=[r.as_dict() for r in self.results], targets=verdicts,
                               retries=self.retries), out, indent=2)
                out.write('\n')
        return all(v['passed'] for v in verdicts)


def first_line(cmd):
    try:
        out = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=False).stdout
        return out.decode('utf-8', 'replace').strip().splitlines()[0]
    except (OSError, IndexError):
        return '?'


_MACHINE = {}


def machine_info(conn):
    """The machine and the versions, read once (getVersion may make libvirtd probe QEMU)."""
    if _MACHINE:
        return dict(_MACHINE)
    model, flags = '?', set()
    with open('/proc/cpuinfo') as src:
        for line in src:
            if line.startswith('model name') and model == '?':
                model = line.split(':', 1)[1].strip()
            elif line.startswith('flags') and not flags:
                flags = set(line.split(':', 1)[1].split())
    with open('/proc/meminfo') as src:
        mem_kib = int(src.readline().split()[1])

    def version(number):
        return '%d.%d.%d' % (number // 1000000, number // 1000 % 1000, number % 1000)

    _MACHINE.update(
        cpu=model, cores=os.cpu_count(), memory_gib=round(mem_kib / 1024.0 / 1024.0, 1),
        kvm=os.path.exists('/dev/kvm') and bool(flags & set(['vmx', 'svm'])), sha_ni='sha_ni' in flags,
        kernel=platform.release(), os=first_line(['sh', '-c', '. /etc/os-release && echo "$PRETTY_NAME"']),
        libvirt=version(conn.getLibVersion()), qemu=version(conn.getVersion()),
        libnbd=first_line(['nbdcopy', '--version']).split()[-1],
        virtnbdbackup=first_line(['virtnbdbackup', '-V']).split()[-1],
        python=platform.python_version(),
        collection=collection_state(),
    )
    return dict(_MACHINE)


def collection_state():
    """The commit of this checkout, and whether plugins/ differs from it (the engine being measured)."""
    try:
        head = subprocess.run(['git', '-C', ROOT, 'rev-parse', '--short', 'HEAD'], stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, check=True).stdout.decode().strip()
        dirty = subprocess.run(['git', '-C', ROOT, 'status', '--porcelain', '--', 'plugins'], stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, check=True).stdout.decode().strip()
        return '%s%s' % (head, ' (plugins/ modified)' if dirty else '')
    except (OSError, subprocess.CalledProcessError):
        return 'unknown'


def machine_line(conn):
    m = machine_info(conn)
    return ('%s (%d cores%s), %.0f GiB RAM, %s, kernel %s, %s, libvirt %s, QEMU %s, libnbd %s, '
            'virtnbdbackup %s, Python %s; collection at %s' % (
                m['cpu'], m['cores'], ', SHA-NI' if m['sha_ni'] else '', m['memory_gib'], m['os'], m['kernel'],
                'KVM available (domains use TCG)' if m['kvm'] else 'no KVM: TCG domains',
                m['libvirt'], m['qemu'], m['libnbd'], m['virtnbdbackup'], m['python'], m['collection']))


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split('\n', maxsplit=1)[0])
    p.add_argument('--quick', action='store_true',
                   help='smoke test: 512 MiB disk with 128 MiB data, incrementals of 16 MiB on 256 MiB and '
                        '2 GiB disks, 64 GiB memory probe, one repetition')
    p.add_argument('--repeat', type=int, help='runs of each measurement, the fastest kept (3; 1 with --quick)')
    p.add_argument('--inc-repeat', type=int,
                   help='incrementals per disk, the fastest kept (5; 1 with --quick): they are short, '
                        'so noise weighs more')
    p.add_argument('--full-size', type=parse_size, help='virtual size of the full-backup disk (4G)')
    p.add_argument('--full-data', type=parse_size, help='random data on it (1G)')
    p.add_argument('--inc-small', type=parse_size, help='small disk of the incremental case (1G)')
    p.add_argument('--inc-big', type=parse_size, help='big disk of the incremental case (16G)')
    p.add_argument('--inc-dirty', type=parse_size, help='data written before each incremental (64M)')
    p.add_argument('--probe-size', type=parse_size,
                   help='virtual size of the sparse memory-probe disk (1T); 0 skips the probe')
    p.add_argument('--only', choices=['full', 'incremental', 'compare', 'push', 'restore', 'probe', 'instant', 'copy',
                                      'crypt'],
                   action='append',
                   help='run only this case (repeatable)')
    p.add_argument('--workers', type=int, default=4, help="virt_backup's workers option (4, its default)")
    p.add_argument('--timeout', type=int, default=900, help='seconds any one tool may take (900)')
    p.add_argument('--settle-gib', type=float, default=3.0,
                   help='GiB of memory touched and freed before each measured run, so that no run pays for '
                        'memory its VM host took back (3; 0: off)')
    p.add_argument('--collections', default=COLLECTIONS,
                   help='directory holding ansible_collections/virtops/libvirt to benchmark (default: this '
                        'checkout through build/collections, made as `make link` does); another copy for A/B tests')
    p.add_argument('--python', default=sys.executable, help='interpreter for the module (this one)')
    p.add_argument('--json', help='also write every measurement and the verdicts to this JSON file')
    p.add_argument('--nice', type=int, default=0,
                   help='run the measured tools and the bench domains\' QEMU at this nice value (e.g. -5) on a '
                        'machine shared with other work; 0 (default) leaves priorities alone')
    p.add_argument('--profile', metavar='DIR',
                   help='write a cProfile of each virt_backup run (its main thread) into DIR, N-virt_backup-MODE-'
                        'LEVEL.prof; the runs are slower, so use it to find costs, not to report times')
    p.add_argument('--cleanup', action='store_true', help='only remove what an earlier run left behind')
    p.add_argument('--keep', action='store_true', help='keep the domains and files (debugging; --cleanup later)')
    args = p.parse_args(argv)
    quick = dict(repeat=1, inc_repeat=1, full_size=512 * MiB, full_data=128 * MiB, inc_small=256 * MiB, inc_big=2 * GiB,
                 inc_dirty=16 * MiB, probe_size=64 * GiB)
    full = dict(repeat=3, inc_repeat=5, full_size=4 * GiB, full_data=1 * GiB, inc_small=1 * GiB, inc_big=16 * GiB,
                inc_dirty=64 * MiB, probe_size=1 * TiB)
    for key, value in (quick if args.quick else full).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.full_data >= args.full_size:
        p.error('--full-data must be smaller than --full-size')
    if args.repeat < 1 or args.inc_repeat < 1:
        p.error('--repeat and --inc-repeat must be at least 1')
    return args


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)

    def interrupted(signum, _frame):
        raise KeyboardInterrupt('signal %d' % signum)

    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)   # errors are raised, not printed
    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGHUP, interrupted)
    bench = Bench(args)
    started = datetime.datetime.now()
    code = 2
    try:
        bench.open()
        if args.cleanup:
            log('removed what earlier runs left behind')
            return 0
        if args.nice:
            os.setpriority(os.PRIO_PROCESS, 0, args.nice)    # inherited by every tool started from here
        log('machine: %s; load average %s%s' % (machine_line(bench.connect()), ' '.join(loadavg()),
                                                '; nice %d' % args.nice if args.nice else ''))
        only = args.only or ['full', 'incremental', 'compare', 'push', 'restore', 'probe', 'instant', 'copy', 'crypt']
        if 'full' in only:
            bench.case_full()
        if 'incremental' in only:
            bench.case_incremental()
        if 'compare' in only:
            bench.case_compare()
        if 'push' in only:
            _copy_bench.case_push(sys.modules[__name__], bench)
        if 'restore' in only:
            _copy_bench.case_restore(sys.modules[__name__], bench)
        if 'instant' in only:
            _instant_bench.case_instant(sys.modules[__name__], bench)
        if 'copy' in only:
            _s3copy_bench.case_copy(sys.modules[__name__], bench)
        if 'crypt' in only:
            _crypt_bench.case_crypt(sys.modules[__name__], bench)
        if 'probe' in only and args.probe_size:
            bench.case_probe()
        code = 0 if bench.report(started, datetime.datetime.now()) else 1
    except (BenchError, libvirt.libvirtError) as exc:
        log('benchmark failed: %s' % exc)
        if bench.results:
            bench.report(started, datetime.datetime.now())
    except KeyboardInterrupt:
        log('interrupted: cleaning up')
        code = 130
    finally:
        if bench.conn is not None:
            if args.keep:
                log('kept %s and the domains %s' % (WORK, ', '.join(bench.domains)))
            else:
                bench.cleanup(leftovers=True)
            try:
                bench.conn.close()
            except libvirt.libvirtError:
                pass
    return code


if __name__ == '__main__':
    sys.exit(main())
