# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Helpers of the fault-injection suite: real domains, known guest data, modules run as Ansible runs them.

Every guest disk has a *shadow*: a sparse raw file holding exactly what the guest disk should hold.
Every write into a guest goes to both (qemu-io over HMP for a running domain, qemu-io on the qcow2
image for a shut-off one), so after any backup the expected bytes of that point in time are known,
and a restore can be compared with them byte for byte.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid

import libvirt
import libvirt_qemu

libvirt.registerErrorHandler(lambda _ctx, _err: None, None)

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
COLLECTIONS = os.path.join(ROOT, 'build', 'collections')
OUTPUT = os.path.join(ROOT, 'tests', 'output')
PYTHON = sys.executable
URI = 'qemu:///system'
WORK = '/var/lib/libvirt/images/virtops-faults'
PREFIX = 'fi-'
SOCKET_ROOT = '/run/virtops-libvirt'
PKI = '/etc/pki/qemu'               # libvirt's default_tls_x509_cert_dir
PKI_MARKER = '.virtops-fault-injection'
MODULE_PACKAGE = 'ansible_collections.virtops.libvirt.plugins.modules.'

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB

DOMAIN_XML = """<domain type='qemu'>
  <name>{name}</name>
  <memory unit='MiB'>64</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type><boot dev='hd'/></os>
  <features><acpi/></features>
  <devices>
{disks}
    <memballoon model='none'/>
  </devices>
</domain>"""

DISK_XML = """    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='{path}'/>
      <target dev='{target}' bus='virtio'/>
    </disk>"""


class FaultError(AssertionError):
    pass


def log(msg):
    sys.stderr.write('[fi %s] %s\n' % (time.strftime('%H:%M:%S'), msg))
    sys.stderr.flush()


def sh(cmd, what=None, check=True, timeout=300):
    """Run an argument list (never a shell line); its stdout."""
    proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise FaultError('%s failed (%s): %s' % (what or cmd[0], ' '.join(cmd),
                                                 proc.stderr.decode('utf-8', 'replace').strip()))
    return proc.stdout.decode('utf-8', 'replace')


def qemu_user():
    for name in ('libvirt-qemu', 'qemu'):
        try:
            entry = pwd.getpwnam(name)
            return entry.pw_uid, entry.pw_gid
        except KeyError:
            continue
    raise FaultError('no libvirt-qemu user')


def wait_until(predicate, timeout, what, interval=0.1):
    deadline = time.time() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.time() > deadline:
            raise FaultError('timed out after %s s waiting for %s' % (timeout, what))
        time.sleep(interval)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


# --- modules, run the way Ansible runs them ---------------------------------------------------

def module_env():
    env = dict(os.environ)
    env['PYTHONPATH'] = COLLECTIONS
    env['ANSIBLE_COLLECTIONS_PATH'] = COLLECTIONS
    env.pop('ANSIBLE_CONFIG', None)
    return env


def _args_file(module, args, check_mode):
    params = dict(args)
    if check_mode:
        params['_ansible_check_mode'] = True
    os.makedirs(os.path.join(WORK, 'args'), exist_ok=True)
    fd, path = tempfile.mkstemp(prefix='%s-' % module, suffix='.json', dir=os.path.join(WORK, 'args'))
    with os.fdopen(fd, 'w') as out:
        json.dump(dict(ANSIBLE_MODULE_ARGS=params), out)
    return path


def parse_result(rc, out, err):
    text = out.strip()
    start = text.find('{')
    try:
        result = json.loads(text[start:]) if start >= 0 else None
    except ValueError:
        result = None
    if not isinstance(result, dict):
        result = dict(failed=True, msg='module printed no JSON result (exit %s): %s %s' % (
            rc, text[-2000:], err.strip()[-2000:]), _no_json=True)
    result['_rc'] = rc
    result['_stdout'] = out
    result['_stderr'] = err
    return result


def run_module(module, args, check_mode=False, timeout=600):
    """Run plugins/modules/<module>.py with ANSIBLE_MODULE_ARGS; its parsed JSON result."""
    path = _args_file(module, args, check_mode)
    try:
        proc = subprocess.run([PYTHON, '-m', MODULE_PACKAGE + module, path], stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=module_env(), cwd='/',
                              timeout=timeout, check=False)
    finally:
        os.unlink(path)
    return parse_result(proc.returncode, proc.stdout.decode('utf-8', 'replace'),
                        proc.stderr.decode('utf-8', 'replace'))


class ModuleRun:
    """A module started in the background (to be killed, raced or watched)."""

    def __init__(self, module, args, check_mode=False):
        self.args_path = _args_file(module, args, check_mode)
        self.out_path = self.args_path + '.out'
        self.err_path = self.args_path + '.err'
        self.started = time.time()
        with open(self.out_path, 'wb') as out, open(self.err_path, 'wb') as err:
            self.proc = subprocess.Popen([PYTHON, '-m', MODULE_PACKAGE + module, self.args_path],
                                         stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=module_env(),
                                         cwd='/')

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc.poll() is None

    def pause(self):
        """SIGSTOP: the run holds its lock, job and connections but makes no progress."""
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self):
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)

    def kill9(self):
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def wait(self, timeout=600):
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise FaultError('module run did not end within %s s' % timeout)
        self.seconds = time.time() - self.started
        with open(self.out_path, 'rb') as out, open(self.err_path, 'rb') as err:
            result = parse_result(self.proc.returncode, out.read().decode('utf-8', 'replace'),
                                  err.read().decode('utf-8', 'replace'))
        self.close()
        return result

    def close(self):
        for path in (self.args_path, self.out_path, self.err_path):
            try:
                os.unlink(path)
            except OSError:
                pass


def ok(result, what='module run'):
    """Assert a module run succeeded; returns the result."""
    if result.get('failed') or result.get('_rc') != 0:
        raise FaultError('%s failed: %s\n%s' % (what, result.get('msg'), result.get('_stderr', '')[-3000:]))
    return result


def failed(result, *words):
    """Assert a module run failed cleanly (a JSON result with a message naming the problem)."""
    if not result.get('failed'):
        raise FaultError('expected a failure, got success: %s' % json.dumps(
            dict((k, v) for k, v in result.items() if not k.startswith('_')))[:2000])
    if result.get('_no_json'):
        raise FaultError('the module died instead of failing cleanly: %s' % result['msg'])
    msg = result.get('msg') or ''
    if 'Traceback' in msg or 'unexpected error' in msg:
        raise FaultError('the failure is not a clear message: %s' % msg)
    low = msg.lower()
    for word in words:
        if isinstance(word, tuple):
            if not any(w.lower() in low for w in word):
                raise FaultError('message %r names none of %r' % (msg, word))
        elif word.lower() not in low:
            raise FaultError('message %r does not mention %r' % (msg, word))
    return msg


# --- the host: libvirt connection and daemon ------------------------------------------------------

class Host:

    def __init__(self):
        self.conn = libvirt.open(URI)

    def reconnect(self):
        try:
            self.conn.close()
        except libvirt.libvirtError:
            pass
        self.conn = wait_until(self._try_open, 90, 'libvirtd to answer', interval=0.3)

    @staticmethod
    def _try_open():
        try:
            conn = libvirt.open(URI)
            conn.getLibVersion()
            return conn
        except libvirt.libvirtError:
            return None

    def restart_libvirtd(self):
        """Stop libvirtd (SIGTERM, as pkill -x would) and start it again at once; returns the outage in s.

        Other people's tests share this daemon: the outage is kept as short as possible, and the
        daemon is always started again.
        """
        t0 = time.time()
        pid = int(open('/run/libvirtd.pid').read().strip())
        with open('/proc/%d/comm' % pid) as src:
            if src.read().strip() != 'libvirtd':
                raise FaultError('/run/libvirtd.pid names process %d, which is not libvirtd' % pid)
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


# --- guests -----------------------------------------------------------------------------------

class Disk:

    def __init__(self, target, path, shadow, size):
        self.target = target
        self.path = path
        self.shadow = shadow
        self.size = size


class Guest:
    """A TCG domain with qcow2 disks whose expected content is tracked in shadow files."""

    def __init__(self, host, name, workdir):
        self.host = host
        self.name = name
        self.dir = workdir
        self.disks = {}
        os.makedirs(self.dir, 0o711, exist_ok=True)
        os.chmod(self.dir, 0o711)

    # -- set-up
    def make_disk(self, target, size, writes=()):
        """A qcow2 image whose content is given by writes [(offset, length, pattern)], and its shadow."""
        shadow = os.path.join(self.dir, '%s.shadow.raw' % target)
        path = os.path.join(self.dir, '%s.qcow2' % target)
        fd = os.open(shadow, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.ftruncate(fd, size)
            for offset, length, pattern in writes:
                _fill(fd, offset, length, pattern)
        finally:
            os.close(fd)
        sh(['qemu-img', 'convert', '-q', '-f', 'raw', '-O', 'qcow2', shadow, path], 'building %s' % path)
        os.chmod(path, 0o644)
        disk = Disk(target, path, shadow, size)
        self.disks[target] = disk
        return disk

    def xml(self):
        disks = '\n'.join(DISK_XML.format(path=d.path, target=d.target) for d in sorted(self.disks.values(),
                                                                                        key=lambda d: d.target))
        return DOMAIN_XML.format(name=self.name, disks=disks)

    def define(self, xml=None):
        self.host.conn.defineXML(xml or self.xml())

    @property
    def dom(self):
        return self.host.conn.lookupByName(self.name)

    def running(self):
        return self.dom.isActive() == 1

    def state(self):
        return self.dom.state()[0]

    def start(self):
        if not self.running():
            self.dom.create()

    def destroy(self):
        """Stop the domain (SIGTERM first: QEMU stores its persistent bitmaps)."""
        if self.running():
            self.dom.destroy()
        wait_until(lambda: not self.running(), 30, '%s to stop' % self.name)

    def qemu_pid(self):
        with open('/run/libvirt/qemu/%s.pid' % self.name) as src:
            return int(src.read().strip())

    def kill_qemu(self):
        pid = self.qemu_pid()
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: not self.running(), 30, 'libvirt to notice that QEMU of %s died' % self.name)

    def checkpoints(self):
        return sorted(c.getName() for c in self.dom.listAllCheckpoints(0))

    def job_active(self):
        stats = self.dom.jobStats(0)
        return stats.get('type', libvirt.VIR_DOMAIN_JOB_NONE) != libvirt.VIR_DOMAIN_JOB_NONE

    def job_xml(self):
        try:
            return self.dom.backupGetXMLDesc(0)
        except libvirt.libvirtError:
            return None

    def alias(self, target):
        from lxml import etree
        root = etree.fromstring(self.dom.XMLDesc(0).encode('utf-8'))
        for elem in root.findall('./devices/disk'):
            t = elem.find('target')
            if t is not None and t.get('dev') == target:
                alias = elem.find('alias')
                if alias is not None:
                    return alias.get('name')
        raise FaultError('disk %s of %s has no alias in the live XML' % (target, self.name))

    # -- data
    def write(self, target, offset, length, pattern):
        """Write length bytes of pattern at offset into the guest disk, and into its shadow."""
        disk = self.disks[target]
        if self.running():
            # QEMU 7.2 prints qemu-io's report to its own stdout (the domain log), not the monitor.
            log_path = '/var/log/libvirt/qemu/%s.log' % self.name
            log_size = os.path.getsize(log_path) if os.path.exists(log_path) else 0
            cmd = 'qemu-io -d /machine/peripheral/%s/virtio-backend "write -P 0x%02x %d %d"' % (
                self.alias(target), pattern, offset, length)
            out = libvirt_qemu.qemuMonitorCommand(self.dom, cmd, libvirt_qemu.VIR_DOMAIN_QEMU_MONITOR_COMMAND_HMP)
            expect = 'wrote %d/%d bytes at offset %d' % (length, length, offset)

            def reported():
                if expect in out:
                    return True
                with open(log_path, 'rb') as src:
                    src.seek(log_size)
                    return expect in src.read().decode('utf-8', 'replace')
            try:
                wait_until(reported, 10, 'qemu-io to report its write', interval=0.05)
            except FaultError:
                raise FaultError('qemu-io write into %s failed: %s' % (self.name, out.strip()))
        else:
            sh(['qemu-io', '-f', 'qcow2', '-c', 'write -P 0x%02x %d %d' % (pattern, offset, length), disk.path],
               'offline write into %s' % disk.path)
        fd = os.open(disk.shadow, os.O_RDWR)
        try:
            _fill(fd, offset, length, pattern)
        finally:
            os.close(fd)

    def snapshot(self, label):
        """Copies of the shadows: the expected content of this point in time."""
        result = {}
        for target, disk in self.disks.items():
            copy = os.path.join(self.dir, '%s.%s.expect.raw' % (target, label))
            sh(['cp', '--sparse=always', disk.shadow, copy], 'copying a shadow')
            result[target] = copy
        return result

    def expected(self):
        return dict((t, d.shadow) for t, d in self.disks.items())

    def image_bitmaps(self, target):
        data = json.loads(sh(['qemu-img', 'info', '-U', '--output=json', self.disks[target].path]))
        bitmaps = (data.get('format-specific') or {}).get('data', {}).get('bitmaps') or []
        return dict((b['name'], b.get('flags', [])) for b in bitmaps)

    # -- clean-up
    def remove(self):
        remove_domain(self.host.conn, self.name)
        shutil.rmtree(self.dir, ignore_errors=True)


def _fill(fd, offset, length, pattern):
    chunk = bytes([pattern]) * min(length, 4 * MiB)
    pos = 0
    while pos < length:
        n = min(len(chunk), length - pos)
        os.pwrite(fd, chunk[:n], offset + pos)
        pos += n


def remove_domain(conn, name):
    try:
        dom = conn.lookupByName(name)
    except libvirt.libvirtError:
        return
    try:
        if dom.isActive():
            try:
                dom.abortJob()
            except libvirt.libvirtError:
                pass
            dom.destroy()
    except libvirt.libvirtError as exc:
        log('cannot stop %s: %s' % (name, exc))
    try:
        dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA
                          | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA)
    except libvirt.libvirtError as exc:
        log('cannot undefine %s: %s' % (name, exc))


# --- repositories -------------------------------------------------------------------------------

def new_repo_path(label):
    return os.path.join(WORK, 'repos', '%s-%s' % (label, uuid.uuid4().hex[:6]))


def repo_short_id(repo):
    with open(os.path.join(repo, 'repository.json')) as src:
        return json.load(src)['id'].replace('-', '')[:8]


def checkpoint_prefix(repo):
    return 'virtops-%s-' % repo_short_id(repo)


def manifests(repo, domain):
    """{backup id: manifest} of the complete backups on disk (read directly, not through the modules)."""
    found = {}
    ddir = os.path.join(repo, domain)
    if not os.path.isdir(ddir):
        return found
    for chain in os.listdir(ddir):
        cdir = os.path.join(ddir, chain)
        if chain.startswith('.') or not os.path.isdir(cdir):
            continue
        for bid in os.listdir(cdir):
            path = os.path.join(cdir, bid, 'manifest.json')
            if os.path.isfile(path):
                try:
                    with open(path) as src:
                        found[bid] = json.load(src)
                except ValueError:
                    found[bid] = None
    return found


def partial_dirs(repo, domain):
    """Backup directories without a manifest."""
    found = []
    ddir = os.path.join(repo, domain)
    if not os.path.isdir(ddir):
        return found
    for chain in os.listdir(ddir):
        cdir = os.path.join(ddir, chain)
        if chain.startswith('.') or not os.path.isdir(cdir):
            continue
        for bid in os.listdir(cdir):
            if not os.path.exists(os.path.join(cdir, bid, 'manifest.json')):
                found.append(os.path.join(cdir, bid))
    return found


def listed_ids(repo, domain):
    """Backup ids virt_backup_info lists for the domain."""
    res = ok(run_module('virt_backup_info', dict(repository=repo, domain=domain)), 'virt_backup_info')
    ids = []
    for dom in res['domains']:
        for chain in dom['chains']:
            ids.extend(b['id'] for b in chain['backups'])
    return ids


def tree_state(path):
    """Every file and directory under path with type, mode, size and content digest: 'nothing changed'."""
    state = {}
    if not os.path.lexists(path):
        return state
    if not os.path.isdir(path):
        st = os.lstat(path)
        return {'.': ('f', st.st_mode, st.st_size, _digest(path))}
    for base, dirs, files in os.walk(path):
        for name in dirs:
            full = os.path.join(base, name)
            st = os.lstat(full)
            state[os.path.relpath(full, path)] = ('d', st.st_mode)
        for name in files:
            full = os.path.join(base, name)
            st = os.lstat(full)
            if name == '.lock':
                # flock(2) file; each run writes its pid into it: its content is not repository data.
                state[os.path.relpath(full, path)] = ('f', st.st_mode)
            elif name.endswith('.qcow2') and st.st_size > 64 * MiB:
                state[os.path.relpath(full, path)] = ('f', st.st_mode, st.st_size, st.st_mtime)
            else:
                state[os.path.relpath(full, path)] = ('f', st.st_mode, st.st_size, _digest(full))
    st = os.lstat(path)
    state['.'] = ('d', st.st_mode)
    return state


def _digest(path):
    h = hashlib.sha256()
    try:
        with open(path, 'rb') as src:
            for block in iter(lambda: src.read(MiB), b''):
                h.update(block)
    except OSError as exc:
        return 'unreadable: %s' % exc
    return h.hexdigest()


# --- comparing --------------------------------------------------------------------------------

def differing_bytes(path_a, path_b, chunk=4 * MiB):
    """Bytes that differ between two raw files (a missing tail counts as different)."""
    size_a, size_b = os.path.getsize(path_a), os.path.getsize(path_b)
    diff = abs(size_a - size_b)
    with open(path_a, 'rb') as a, open(path_b, 'rb') as b:
        pos = 0
        end = min(size_a, size_b)
        while pos < end:
            n = min(chunk, end - pos)
            x, y = a.read(n), b.read(n)
            if x != y:
                diff += _count_differences(x, y)
            pos += n
    return diff


def _count_differences(x, y):
    n = 0
    step = 4096
    for i in range(0, len(x), step):
        xs, ys = x[i:i + step], y[i:i + step]
        if xs != ys:
            n += sum(1 for p, q in zip(xs, ys) if p != q)
    return n


# --- the aftermath of a fault --------------------------------------------------------------------

def qemu_nbd_processes(*needles):
    """pids of qemu-nbd processes whose command line mentions one of needles."""
    found = []
    for pid in os.listdir('/proc'):
        if not pid.isdigit():
            continue
        try:
            with open('/proc/%s/cmdline' % pid, 'rb') as src:
                args = src.read().decode('utf-8', 'replace').split('\0')
        except OSError:
            continue
        if args and os.path.basename(args[0]) == 'qemu-nbd' and any(n in a for a in args for n in needles):
            found.append(int(pid))
    return found


def watchdog_processes(domain_uuid):
    found = []
    for pid in os.listdir('/proc'):
        if not pid.isdigit():
            continue
        try:
            with open('/proc/%s/cmdline' % pid, 'rb') as src:
                cmdline = src.read().decode('utf-8', 'replace')
        except OSError:
            continue
        if 'domain_uuid' in cmdline and domain_uuid in cmdline and 'import libvirt' in cmdline:
            found.append(int(pid))
    return found


def run_dirs(repo, domain):
    """This repository's socket directories for the domain under /run/virtops-libvirt: QEMU's
    (<repository id>-<domain>-*) and the module's own qemu-nbd ones (.nbd-<repository id>-<domain>-*)."""
    if not os.path.isdir(SOCKET_ROOT) or not os.path.exists(os.path.join(repo, 'repository.json')):
        return []
    prefix = '%s-%s-' % (repo_short_id(repo), domain)
    return [os.path.join(SOCKET_ROOT, n) for n in os.listdir(SOCKET_ROOT)
            if n.startswith(prefix) or n.startswith('.nbd-' + prefix)]


def staging_dir(repo, domain):
    """Where QEMU writes the domain's push targets and scratch files: <repo>/.staging/<domain>."""
    return os.path.join(repo, '.staging', domain)


def staging_files(repo):
    """Files (not the per-domain directories) under <repo>/.staging."""
    staging = os.path.join(repo, '.staging')
    found = []
    for base, dummy, files in os.walk(staging):
        found.extend(os.path.relpath(os.path.join(base, f), staging) for f in files)
    return sorted(found)


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
            raise FaultError('survived() more often than faults were injected')
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
    return ok(run_module('virt_backup', params), 'virt_backup of %s' % guest.name)['backup']


def restore_dir():
    path = os.path.join(WORK, 'restore', uuid.uuid4().hex[:8])
    return path


def verify_backup(fault, guest, repo, backup_id, expected=None):
    """Restore backup_id (raw) with virt_restore and compare every disk with the expected bytes.

    expected: {disk: raw file} (default: the shadows now). Differing bytes count as bytes lost;
    a restore that fails loses every byte of the disks it should have restored.
    """
    expected = expected if expected is not None else guest.expected()
    dest = restore_dir()
    try:
        res = run_module('virt_restore', dict(repository=repo, domain=guest.name, backup=backup_id, dest=dest,
                                              format='raw'))
        if res.get('failed'):
            fault.lose(sum(os.path.getsize(p) for p in expected.values()))
            raise FaultError('restore of backup %s of %s failed: %s' % (backup_id, guest.name, res.get('msg')))
        restored = dict((d['name'], d['path']) for d in res['disks'])
        missing = sorted(set(expected) - set(restored))
        lost = sum(os.path.getsize(expected[m]) for m in missing)
        for name, path in restored.items():
            if name not in expected:
                raise FaultError('backup %s restored disk %s, which the test does not know' % (backup_id, name))
            lost += differing_bytes(path, expected[name])
        fault.lose(lost)
        if missing:
            raise FaultError('backup %s of %s lacks disk %s' % (backup_id, guest.name, ', '.join(missing)))
        if lost:
            raise FaultError('restore of backup %s of %s differs from the guest data in %d bytes' % (
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
    known = set(m['checkpoint'] for m in manifests(repo, guest.name).values() if m)
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
    manifest = manifests(repo, guest.name)[result['id']]
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


def make_guest(host, name, disks, start=True):
    """disks: [(target, size, writes)]; a defined (and started) guest."""
    remove_domain(host.conn, name)
    guest = Guest(host, name, os.path.join(WORK, name))
    for target, size, writes in disks:
        guest.make_disk(target, size, writes)
    guest.define()
    if start:
        guest.start()
    return guest


def spread(size, total, piece, pattern, start=MiB):
    """writes of total bytes in pieces spread over a disk of size."""
    pieces = max(1, total // piece)
    stride = (size - start) // pieces
    stride -= stride % (64 * KiB)
    return [(start + i * stride, piece, (pattern + i) % 254 + 1) for i in range(pieces)]
