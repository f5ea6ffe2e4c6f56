# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""7. Hostile repository: an attacker with write access to the repository's storage (not to the host)
tampers with a real backup: manifest fields that name paths, sizes and ids; qcow2 headers whose backing
file or data file points at a root-only secret, a json: description or an NBD server; a gzip bomb as
integrity map; symbolic links in place of images, backup directories, manifests and .staging; a
repository root that another user owns or may write; and, as QEMU's own user, symbolic links planted
in every directory it can write while a backup runs.

For each attack: virt_restore fails naming the problem, writes nothing outside dest and leaves nothing
in dest, never reads the secret and never shows a byte of it; virt_backup_info with verify returns
normally with verified_ok false and the reason where it belongs; the next virt_backup fails naming the
problem (or, where the tampered part is not used, succeeds without reading the secret); the repository is
unchanged by every failed run, and no root-owned file outside the repository changes.

Root-only material of the attacks (removed when the module ends):
  /root/virtops-fi7-secret-<tag>           1 MiB of b'TOPSECRET', 0600
  /root/virtops-fi7-secret-<tag>.qcow2     a 64 MiB qcow2 disk holding that secret, 0600
  /root/virtops-fi7-canary-<tag>           a root-owned file (0640, known content) that symbolic links
                                           planted by QEMU's user point at
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import glob
import gzip
import hashlib
import json
import os
import re
import shutil
import socket
import stat
import subprocess
import threading
import time
import uuid

import libvirt
import pytest

from support.host import CheckFailed, MiB, qemu_owner, sh, SOCKET_ROOT, wait_until
from support.modules import module_command, module_env, ModuleRun, ok, parse_result, PYTHON, write_args
from support.repository import repo_short_id
import fi_lib

GUEST = 'fi-hostile'
DISK = 64 * MiB
BLOCK = 64 * 1024
PATTERN = b'TOPSECRET'
RSS_LIMIT_KIB = 256 * 1024
BOMB_SIZE = 1024 * MiB
MANIFEST = 'manifest.json'

# Words a message must hold (any one of each tuple, case-insensitive).
BACKING = ('backing',)
DATA_FILE = ('data file', 'data-file', 'data_file')
MAP = ('map', 'integrity')
SYMLINK = ('symbolic link', 'symlink')
STAGING = ('.staging',)
ROOT_PERMS = ('owned by', 'owner', 'writable')


# --- root-only material, the guest and the good backups ------------------------------------------

class Loot:
    """The secret and the canary: root-owned files outside any repository that attacks aim at."""

    def __init__(self):
        tag = uuid.uuid4().hex[:8]
        self.secret = '/root/virtops-fi7-secret-%s' % tag
        self.secret_qcow2 = self.secret + '.qcow2'
        self.secret_disk = self.secret + '.disk.raw'     # what a 64 MiB disk backed by the secret reads
        self.canary = '/root/virtops-fi7-canary-%s' % tag
        self.canary_data = ('virtops fi7 canary %s\n' % tag).encode('ascii') * 64
        # Attack targets outside the repository that are not secret (copies, directories to abuse).
        self.outside = os.path.join(fi_lib.WORK, 'fi7-outside-%s' % tag)
        self.bomb = None
        self.bomb_digest = None
        self._secret_data = None
        self._secret_qcow2_digest = None
        self._armed = {}

    def create(self):
        data = self._secret_data = (PATTERN * (MiB // len(PATTERN) + 1))[:MiB]
        _write(self.secret, data, 0o600)
        fd = os.open(self.secret_disk, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, data)
            os.ftruncate(fd, DISK)
        finally:
            os.close(fd)
        sh('qemu-img', 'convert', '-q', '-f', 'raw', '-O', 'qcow2', self.secret_disk, self.secret_qcow2,
           what='building the secret qcow2')
        os.chmod(self.secret_qcow2, 0o600)
        self._secret_qcow2_digest = _digest(self.secret_qcow2)
        # 0640, not 0600: a chmod to 0600 through a planted link must show.
        _write(self.canary, self.canary_data, 0o640)
        os.makedirs(self.outside, 0o755)
        os.chmod(self.outside, 0o755)

    def remove(self):
        for path in (self.secret, self.secret_qcow2, self.secret_disk, self.canary):
            try:
                os.unlink(path)
            except OSError:
                pass
        for path in glob.glob(self.secret + '.tmp-*'):
            os.unlink(path)
        shutil.rmtree(self.outside, ignore_errors=True)

    def repair(self):
        """Put the secret and the canary back as they were made (an earlier case may have let them be
        changed): each case starts from the same root-owned files."""
        for path, data, mode in ((self.secret, self._secret_data, 0o600), (self.canary, self.canary_data, 0o640)):
            st = os.lstat(path) if os.path.lexists(path) else None
            if st is None or not stat.S_ISREG(st.st_mode) or (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) != \
                    (0, 0, mode) or _digest(path) != hashlib.sha256(data).hexdigest():
                fi_lib.log('fi7: restoring %s, which an earlier case changed' % path)
                if st is not None:
                    os.unlink(path)
                _write(path, data, mode)
                os.chown(path, 0, 0)
        if _digest(self.secret_qcow2) != self._secret_qcow2_digest:
            fi_lib.log('fi7: rebuilding %s, which an earlier case changed' % self.secret_qcow2)
            os.unlink(self.secret_qcow2)
            sh('qemu-img', 'convert', '-q', '-f', 'raw', '-O', 'qcow2', self.secret_disk, self.secret_qcow2)
            os.chmod(self.secret_qcow2, 0o600)
            self._secret_qcow2_digest = _digest(self.secret_qcow2)

    def watched(self):
        """The files whose content, owner, mode and mtime no run may change."""
        return [self.secret, self.secret_qcow2, self.canary]

    def state(self):
        result = {}
        for path in self.watched() + [self.outside]:
            for key, value in _state(path, mtime=True).items():
                result['%s:%s' % (path, key)] = value
        return result

    def arm(self):
        """Set the secrets' atime far in the past: any read of them (relatime) moves it."""
        self._armed = {}
        for path in (self.secret, self.secret_qcow2):
            st = os.stat(path)
            old = int(st.st_mtime) - 3 * 86400
            os.utime(path, ns=(old * 10 ** 9, st.st_mtime_ns))    # the mtime stays exactly as it was
            self._armed[path] = old

    def read_since_armed(self):
        return [p for p, old in self._armed.items() if int(os.stat(p).st_atime) != old]

    def get_bomb(self):
        """A small gzip of BOMB_SIZE zeroes (built once) and the digest of what it inflates to."""
        if self.bomb is None:
            path = os.path.join(self.outside, 'bomb.blockhash.gz')
            zeroes = bytes(16 * MiB)
            digest = hashlib.sha256()
            with open(path, 'wb') as raw, gzip.GzipFile(fileobj=raw, mode='wb', mtime=0, compresslevel=9) as out:
                for _chunk in range(BOMB_SIZE // len(zeroes)):
                    out.write(zeroes)
                    digest.update(zeroes)
            self.bomb, self.bomb_digest = path, digest.hexdigest()
        return self.bomb, self.bomb_digest


def _write(path, data, mode):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode)
    with os.fdopen(fd, 'wb') as out:
        out.write(data)
    os.chmod(path, mode)


@pytest.fixture(scope='module')
def lab(host):
    """One small running guest, a repository holding a full and an incremental backup of it (both
    pull), the expected content of both points in time, and the root-only material of the attacks."""
    loot = Loot()
    guest = None
    repo = None
    try:
        loot.create()
        guest = fi_lib.make_guest(host, GUEST, [('vda', DISK, fi_lib.spread(DISK, 8 * MiB, MiB, 7))])
        repo = fi_lib.new_repo_path('fi7-base')
        full = fi_lib.backup(guest, repo)
        full_expected = guest.snapshot('fi7-full')
        guest.write('vda', 40 * MiB, MiB, 0x5a)
        inc = fi_lib.backup(guest, repo)
        inc_expected = guest.snapshot('fi7-inc')
        assert (full['level'], inc['level'], inc['parent']) == ('full', 'incremental', full['id']), (full, inc)
        # The untampered repository restores bit-exact: a failure below is the attack's, not the set-up's.
        fi_lib.verify_backup(fi_lib.Fault(fi_lib.Record('setup', 'setup', '')), guest, repo, inc['id'])
        assert not _find_pattern(repo), 'the good repository holds the secret pattern'
        yield Lab(guest, repo, full, inc, full_expected, inc_expected, loot)
    finally:
        if repo:
            shutil.rmtree(repo, ignore_errors=True)
        if guest is not None:
            guest.remove()
        loot.remove()


class Lab:

    def __init__(self, guest, repo, full, inc, full_expected, inc_expected, loot):
        self.guest = guest
        self.repo = repo
        self.full = full
        self.inc = inc
        self.full_expected = full_expected
        self.inc_expected = inc_expected
        self.loot = loot


class Case:
    """A copy of the good repository (cp -a) to tamper with, a sandbox holding dest, and a directory
    outside both for the attack's own files."""

    def __init__(self, lab, label):
        self.lab = lab
        self.label = label
        self.repo = fi_lib.new_repo_path('fi7-%s' % re.sub(r'[^a-z0-9]+', '-', label.lower())[:40])
        sh('cp', '-a', lab.repo, self.repo, what='copying the good repository')
        self.sandbox = os.path.join(fi_lib.WORK, 'restore', 'fi7-%s' % uuid.uuid4().hex[:8])
        os.makedirs(self.sandbox, 0o700)
        self.dest = os.path.join(self.sandbox, 'dest')
        self.outside = os.path.join(lab.loot.outside, uuid.uuid4().hex[:8])
        os.makedirs(self.outside, 0o755)
        os.chmod(self.outside, 0o755)
        self.full_dir = os.path.join(self.repo, os.path.relpath(lab.full['path'], lab.repo))
        self.inc_dir = os.path.join(self.repo, os.path.relpath(lab.inc['path'], lab.repo))

    def backup_dir(self, which):
        return self.full_dir if which == 'full' else self.inc_dir

    def backup_id(self, which):
        return self.lab.full['id'] if which == 'full' else self.lab.inc['id']

    def close(self):
        for path in (self.repo, self.sandbox, self.outside):
            if os.path.lexists(path):
                try:
                    os.chmod(path, 0o700)
                except OSError:
                    pass
                shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def hostile(lab):
    """Case factory; every case made is removed after the test."""
    made = []

    def make(label):
        lab.guest.start()
        lab.loot.repair()
        case = Case(lab, label)
        made.append(case)
        return case
    yield make
    for case in made:
        case.close()


# --- tampering ---------------------------------------------------------------------------------

def _load(bdir):
    with open(os.path.join(bdir, MANIFEST)) as src:
        return json.load(src)


def _save(bdir, manifest):
    _write(os.path.join(bdir, MANIFEST), (json.dumps(manifest, indent=2, sort_keys=True) + '\n').encode(), 0o600)


def edit_manifest(bdir, change):
    manifest = _load(bdir)
    change(manifest)
    _save(bdir, manifest)


def forge_integrity(bdir, raw, size=None, block_size=None):
    """Make the integrity data of bdir's disk vda match raw (what the attacker wants restored), as an
    attacker who can write the repository can: the map, its digest and the sizes in the manifest."""
    manifest = _load(bdir)
    disk = manifest['disks'][0]
    size = disk['virtual_size'] if size is None else size
    block_size = block_size or disk['integrity']['block_size']

    # The chain's block hash (repository format 2: XXH3-128; format 1: SHA-256).
    def block_digest(block):
        if disk['integrity']['algorithm'] == 'xxh3-128':
            import xxhash
            return xxhash.xxh3_128_digest(block)
        return hashlib.sha256(block).digest()
    data = bytearray()
    with open(raw, 'rb') as src:
        pos = 0
        while pos < size:
            n = min(block_size, size - pos)
            block = src.read(n)
            data += block_digest(block + bytes(n - len(block)))
            pos += n
    map_path = os.path.join(bdir, 'vda.blockhash.gz')
    with open(map_path, 'wb') as out_raw, gzip.GzipFile(fileobj=out_raw, mode='wb', mtime=0) as out:
        out.write(data)
    os.chmod(map_path, 0o600)
    disk['virtual_size'] = size
    disk['integrity']['block_size'] = block_size
    disk['image_digest'] = hashlib.sha256(data).hexdigest()
    _save(bdir, manifest)


def image_content(loot, image):
    """What an image (with its chain, whatever its header names) reads as: a raw copy, root-only."""
    tmp = '%s.tmp-%s.raw' % (loot.secret, uuid.uuid4().hex[:6])
    sh('qemu-img', 'convert', '-q', '-O', 'raw', image, tmp, what='reading %s' % image)
    os.chmod(tmp, 0o600)
    return tmp


def replace_image(path, size, *opts):
    """Replace a backup image by a new empty qcow2 made with qemu-img create opts (not opening anything)."""
    os.unlink(path)
    sh('qemu-img', 'create', '-q', '-f', 'qcow2', *(list(opts) + [path, str(size)]), what='tampered image')
    os.chmod(path, 0o600)


# --- observing ---------------------------------------------------------------------------------

def _state(path, mtime=False):
    """Every entry under path (not following links): type, mode, owner, size, content (and mtime)."""
    out = {}
    if not os.path.lexists(path):
        return out

    def one(full, rel):
        st = os.lstat(full)
        if stat.S_ISLNK(st.st_mode):
            out[rel] = ('link', os.readlink(full), st.st_uid, st.st_gid)
        elif stat.S_ISDIR(st.st_mode):
            out[rel] = ('dir', st.st_mode, st.st_uid, st.st_gid)
        elif stat.S_ISREG(st.st_mode) and os.path.basename(full) == '.lock':
            out[rel] = ('lock', st.st_mode, st.st_uid, st.st_gid)   # flock file: each run writes its pid
        elif stat.S_ISREG(st.st_mode):
            out[rel] = ('file', st.st_mode, st.st_uid, st.st_gid, st.st_size, _digest(full)) + (
                (st.st_mtime_ns,) if mtime else ())
        else:
            out[rel] = ('other', st.st_mode, st.st_uid, st.st_gid)
    one(path, '.')
    if stat.S_ISDIR(os.lstat(path).st_mode):
        for base, dirs, files in os.walk(path):
            for name in dirs + files:
                full = os.path.join(base, name)
                one(full, os.path.relpath(full, path))
    return out


def _digest(path):
    h = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd, 'rb') as src:
        for block in iter(lambda: src.read(4 * MiB), b''):
            h.update(block)
    return h.hexdigest()


def _diff(before, after):
    return sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))


def _find_pattern(root):
    """Regular files under root (links not followed) holding the secret's pattern."""
    hits = []
    paths = [root] if os.path.isfile(root) else [os.path.join(b, n) for b, _d, fs in os.walk(root) for n in fs]
    for path in paths:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            continue
        with os.fdopen(fd, 'rb') as src:
            tail = b''
            for chunk in iter(lambda: src.read(4 * MiB), b''):
                if PATTERN in tail + chunk:
                    hits.append(path)
                    break
                tail = chunk[-(len(PATTERN) - 1):]
    return hits


def _files_under(path):
    return sorted(os.path.relpath(os.path.join(b, n), path) for b, _d, fs in os.walk(path) for n in fs) \
        if os.path.isdir(path) else []


class Watcher:
    """While a module runs: new entries (names holding one of needles) in directories where nothing of
    this suite belongs, and any change of the root-owned files an attack aims at (even if undone later)."""

    WATCH_DIRS = ('/', '/run', '/tmp', '/root', '/var/lib/libvirt/images', '/var/lib/libvirt/images/virtops-faults')

    def __init__(self, files, needles=(GUEST, 'virtops-fi7', 'x.qcow2', 'x.raw'), extra_dirs=()):
        self.files = list(files)
        self.needles = needles
        self.dirs = list(self.WATCH_DIRS) + list(extra_dirs)
        self.events = []
        self._stop = threading.Event()
        self._thread = None
        self.on_poll = None

    def _listing(self, path):
        try:
            return set(os.listdir(path))
        except OSError:
            return set()

    def _stat(self, path):
        try:
            st = os.lstat(path)
            return (st.st_mode, st.st_uid, st.st_gid, st.st_size, st.st_mtime_ns)
        except OSError as exc:
            return str(exc)

    def __enter__(self):
        self._before = dict((d, self._listing(d)) for d in self.dirs)
        self._stats = dict((f, self._stat(f)) for f in self.files)
        self._thread = threading.Thread(target=self._loop, name='fi7-watcher')
        self._thread.daemon = True
        self._thread.start()
        return self

    def _loop(self):
        seen = set()
        while not self._stop.is_set():
            self.poll(seen)
            time.sleep(0.005)
        self.poll(seen)

    def poll(self, seen):
        for d in self.dirs:
            for name in self._listing(d) - self._before[d]:
                if any(n in name for n in self.needles) and (d, name) not in seen:
                    seen.add((d, name))
                    self.events.append('%s appeared while the module ran' % os.path.join(d, name))
        for path, old in self._stats.items():
            now = self._stat(path)
            if now != old and path not in seen:
                seen.add(path)      # the first change (mode, uid, gid, size, mtime) of each path is enough
                self.events.append('%s changed while the module ran: %r -> %r' % (path, old, now))
        if self.on_poll is not None:
            self.on_poll()

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(10)


class Listener:
    """A plain TCP socket on 127.0.0.1 that records who connects (an NBD server the backup must not use)."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(('127.0.0.1', 0))
        self.sock.listen(16)
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.connections = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name='fi7-listener')
        self._thread.daemon = True
        self._thread.start()

    def _loop(self):
        while not self._stop.is_set():
            try:
                conn, peer = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            self.connections.append(peer)
            conn.close()

    def close(self):
        self._stop.set()
        self._thread.join(5)
        self.sock.close()


# Runs a module as support.modules.run_module does, through a parent that reports the peak RSS of every
# process below it (the module and its qemu-img / qemu-nbd children).
_WRAPPER = ('import resource, subprocess, sys\n'
            'rc = subprocess.call(sys.argv[1:], stdin=subprocess.DEVNULL)\n'
            'sys.stderr.write("\\nfi7-maxrss-kib %d\\n" % resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n'
            'sys.exit(rc)\n')


def run_measured(module, args, timeout=600):
    path = write_args(module, args)
    t0 = time.time()
    try:
        proc = subprocess.run([PYTHON, '-c', _WRAPPER] + module_command(module, path),
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              env=module_env(), cwd='/', timeout=timeout, check=False)
    finally:
        os.unlink(path)
    err = proc.stderr.decode('utf-8', 'replace')
    match = re.search(r'\nfi7-maxrss-kib (\d+)\n\s*$', err)
    rss = int(match.group(1)) if match else None
    if match:
        err = err[:match.start()]
    result = parse_result(proc.returncode, proc.stdout.decode('utf-8', 'replace'), err)
    result['_seconds'] = time.time() - t0
    result['_maxrss_kib'] = rss
    return result


def _words_text(words):
    return ' or '.join(repr(w) for w in words)


def _names(text, words):
    low = (text or '').lower()
    return any(w.lower() in low for w in words)


def _leaks(result):
    """The secret's pattern in anything a module printed (result, warnings, stderr)."""
    text = result.get('_stdout', '') + result.get('_stderr', '')
    return PATTERN.decode() in text or PATTERN.hex() in text.lower()


def _unclear(msg):
    """A failure that is not a clear message (as support.modules.failed judges it)."""
    return 'Traceback' in (msg or '') or 'unexpected error' in (msg or '')


def _short(text, n=400):
    text = ' '.join(str(text).split())
    return text if len(text) <= n else text[:n] + '...'


# --- the three runs against a tampered repository --------------------------------------------------

class Assault:
    """Runs virt_restore, virt_backup_info (verify) and the next virt_backup against a tampered copy and
    collects every way they let the attack through; check() fails the test with all of them."""

    def __init__(self, fault, case, what, words):
        self.fault = fault
        self.case = case
        self.lab = case.lab
        self.loot = case.lab.loot
        self.what = what
        self.words = words
        self.problems = []
        self.outside_paths = []
        self._reported = set()
        self.outside_before = None
        self.extra_outside = {}
        self.listener = None

    def start(self):
        """Snapshot what lies outside the repository, once, after the tampering and before the first run."""
        if self.outside_before is None:
            self.outside_before = self.loot.state()

    def problem(self, phase, text):
        self.problems.append('%s: %s' % (phase, text))

    def also_watch(self, path):
        """A path outside the repository that the attack aims at: its state must not change."""
        self.extra_outside[path] = _state(path, mtime=True)

    def must_not_appear(self, *paths):
        for path in paths:
            assert not os.path.lexists(path), 'test bug: %s exists before the attack' % path
        self.outside_paths.extend(paths)

    def _common(self, phase, result, repo_before=None):
        if result.get('_no_json'):
            self.problem(phase, 'the module died instead of failing cleanly: %s' % _short(result.get('msg')))
        if _leaks(result):
            self.problem(phase, 'the secret pattern %r appears in the module output' % PATTERN)
        read = self.loot.read_since_armed()
        if read:
            self.problem(phase, 'the module read the root-only file(s) %s (their atime moved)' % ', '.join(read))
        if repo_before is not None:
            changed = _diff(repo_before, _state(self.case.repo))
            if changed:
                self.problem(phase, 'the repository changed: %s' % ', '.join(changed[:10]))
        if self.listener is not None and self.listener.connections:
            self.problem(phase, 'something connected to the NBD address named in the image header: %s'
                         % self.listener.connections)
            del self.listener.connections[:]
        for path in self.outside_paths:
            if os.path.lexists(path) and path not in self._reported:
                self._reported.add(path)
                self.problem(phase, '%s was created outside the repository and dest' % path)

    def _watch(self, extra_files=()):
        return Watcher(self.loot.watched() + list(self.extra_outside) + list(extra_files))

    # (a) -----------------------------------------------------------------------------------------
    def restore(self, backup_id):
        phase = 'virt_restore %s' % backup_id
        self.fault.inject('%s: %s' % (self.what, phase))
        self.start()
        before = _state(self.case.repo)
        self.loot.arm()
        with self._watch() as watch:
            res = run_measured('virt_restore', dict(repository=self.case.repo, domain=GUEST, backup=backup_id,
                                                    dest=self.case.dest))
        self.problems.extend('%s: %s' % (phase, e) for e in watch.events)
        if not res.get('failed'):
            self.problem(phase, 'succeeded (restored %s, verified %s) instead of failing with a message naming %s'
                         % ([d.get('path') for d in res.get('disks', [])],
                            [d.get('verified') for d in res.get('disks', [])], _words_text(self.words)))
        else:
            msg = res.get('msg') or ''
            self.fault.note('%s: %s' % (phase, _short(msg)))
            if not _names(msg, self.words):
                self.problem(phase, 'its message names none of %s: %s' % (_words_text(self.words), _short(msg)))
            if _unclear(msg):
                self.problem(phase, 'not a clear failure: %s' % _short(msg))
        self._common(phase, res, before)
        hits = _find_pattern(self.case.sandbox)
        if hits:
            self.problem(phase, 'the secret\'s bytes were restored into %s' % ', '.join(hits))
        stray = sorted(set(os.listdir(self.case.sandbox)) - set(['dest']))
        if stray:
            self.problem(phase, 'it wrote outside dest: %s' % ', '.join(
                os.path.join(self.case.sandbox, name) for name in stray))
        left = _files_under(self.case.dest)
        if left and res.get('failed'):
            self.problem(phase, 'a failed restore left files in dest: %s' % ', '.join(left))
        for name in os.listdir(self.case.sandbox):
            full = os.path.join(self.case.sandbox, name)
            if os.path.isdir(full) and not os.path.islink(full):
                shutil.rmtree(full)
            else:
                os.unlink(full)
        return res

    # (b) -----------------------------------------------------------------------------------------
    def info(self, where, backup_id=None, words=None, may_fail=False):
        """where: 'errors' (the domain's errors list), 'verify' (backup_id's verify entry: ok false and a
        per-disk message), or 'any' (either)."""
        words = words or self.words
        phase = 'virt_backup_info verify'
        self.fault.inject('%s: %s' % (self.what, phase))
        self.start()
        before = _state(self.case.repo)
        self.loot.arm()
        with self._watch() as watch:
            res = run_measured('virt_backup_info', dict(repository=self.case.repo, domain=GUEST, verify=True))
        self.problems.extend('%s: %s' % (phase, e) for e in watch.events)
        self._common(phase, res, before)
        if res.get('failed'):
            msg = res.get('msg') or ''
            self.fault.note('%s failed: %s' % (phase, _short(msg)))
            if not may_fail:
                self.problem(phase, 'failed instead of reporting the problem: %s' % _short(msg))
            elif not _names(msg, words) or _unclear(msg):
                self.problem(phase, 'failed with a message naming none of %s: %s' % (_words_text(words), _short(msg)))
            return res
        if res.get('verified_ok') is not False:
            self.problem(phase, 'verified_ok is %r' % res.get('verified_ok'))
        doms = [d for d in res.get('domains', []) if d.get('name') == GUEST]
        if not doms:
            self.problem(phase, 'the result lists no domain %s' % GUEST)
            return res
        dom = doms[0]
        errors = ' | '.join(dom.get('errors') or [])
        entries = dict((b['id'], b) for c in dom.get('chains', []) for b in c.get('backups', []))

        def verify_text(entry):
            ver = entry.get('verify') or {}
            return ' | '.join([str(ver.get('message') or '')]
                              + [str(d.get('message') or '') for d in ver.get('disks', [])])

        found = None
        if where in ('errors', 'any') and _names(errors, words):
            found = 'errors: %s' % errors
        if found is None and where in ('verify', 'any'):
            candidates = [backup_id] if (where == 'verify' and backup_id) else list(entries)
            for bid in candidates:
                entry = entries.get(bid)
                if entry is None:
                    continue
                ver = entry.get('verify') or {}
                text = verify_text(entry)
                if ver.get('ok') is False and _names(text, words):
                    found = 'backup %s verify: %s' % (bid, text)
                    break
        if found is None:
            shown = dict(errors=dom.get('errors'), verify=dict((b, dict(ok=(e.get('verify') or {}).get('ok'),
                                                                        messages=verify_text(e)))
                                                               for b, e in entries.items()))
            place = {'errors': 'the domain\'s errors', 'verify': 'the verify entry (ok false, per-disk message) of '
                     'backup %s' % backup_id, 'any': 'the errors or a failed verify entry'}[where]
            self.problem(phase, 'no reason naming %s in %s: %s' % (_words_text(words), place, _short(shown, 700)))
        else:
            self.fault.note('%s: %s' % (phase, _short(found)))
        return res

    # (c) -----------------------------------------------------------------------------------------
    def next_backup(self, expect, words=None, watch_files=(), on_poll=None, **args):
        """expect: 'fail' (must fail naming words) or 'either' (fail naming words, or succeed without
        reading the secret)."""
        words = words or self.words
        guest = self.lab.guest
        shown = ', '.join('%s=%s' % kv for kv in sorted(args.items()))
        phase = 'next virt_backup%s' % (' (%s)' % shown if shown else '')
        self.fault.inject('%s: %s' % (self.what, phase))
        self.start()
        guest.start()
        before = _state(self.case.repo)
        checkpoints = set(guest.checkpoints())
        self.loot.arm()
        params = dict(domain=GUEST, repository=self.case.repo)
        params.update(args)
        with self._watch(watch_files) as watch:
            watch.on_poll = on_poll
            res = run_measured('virt_backup', params)
        self.problems.extend('%s: %s' % (phase, e) for e in watch.events)
        try:
            wait_until(lambda: not guest.job_active(), 30, 'the backup job of %s to end' % GUEST)
        except CheckFailed as exc:
            self.problem(phase, str(exc))
        if res.get('failed'):
            msg = res.get('msg') or ''
            self.fault.note('%s: %s' % (phase, _short(msg)))
            if not _names(msg, words):
                self.problem(phase, 'its message names none of %s: %s' % (_words_text(words), _short(msg)))
            if _unclear(msg):
                self.problem(phase, 'not a clear failure: %s' % _short(msg))
            self._common(phase, res, before)
            new = sorted(set(guest.checkpoints()) - checkpoints)
            if new:
                self.problem(phase, 'the failed run left checkpoints %s' % new)
        else:
            backup = res.get('backup') or {}
            self.fault.note('%s succeeded: %s backup %s (%s)' % (
                phase, backup.get('level'), backup.get('id'), _short(backup.get('reason'), 200)))
            if expect == 'fail':
                self.problem(phase, 'succeeded (%s backup %s: %s) instead of failing with a message naming %s' % (
                    backup.get('level'), backup.get('id'), _short(backup.get('reason'), 200), _words_text(words)))
            self._common(phase, res)
            hits = _find_pattern(self.case.repo)
            if hits:
                self.problem(phase, 'the secret\'s bytes are now in the repository: %s' % ', '.join(hits))
            path = backup.get('path')
            if path and os.path.isdir(path):
                for base, dirs, files in os.walk(path):
                    for name in dirs + files:
                        st = os.lstat(os.path.join(base, name))
                        if stat.S_ISLNK(st.st_mode) or st.st_uid != 0:
                            self.problem(phase, 'the new backup holds %s (%s, uid %d)' % (
                                os.path.join(base, name), 'a symbolic link' if stat.S_ISLNK(st.st_mode) else 'file',
                                st.st_uid))
        return res

    # the verdict ---------------------------------------------------------------------------------
    def check(self):
        self.start()
        if self.listener is not None:
            self.listener.close()
        changed = _diff(self.outside_before, self.loot.state())
        if changed:
            self.problem('after the runs', 'root-owned files outside the repository changed: %s'
                         % ', '.join(changed[:10]))
        for path, before in self.extra_outside.items():
            after = _state(path, mtime=True)
            if after != before:
                self.problem('after the runs', '%s changed: %s' % (path, ', '.join(_diff(before, after)[:10])))
        if self.problems:
            raise AssertionError('hostile repository, %s: %d problem(s):\n  - %s' % (
                self.what, len(self.problems), '\n  - '.join(self.problems)))
        self.fault.survived()


# --- 1. manifest fields --------------------------------------------------------------------------

def _set(path, value):
    """A change of one manifest field; path: keys and indexes, e.g. ('disks', 0, 'name')."""
    def change(manifest):
        node = manifest
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
    return change


NAME = ('.name', "'name'", 'disk name')
IMAGE = ('.image', "'image'", 'field image')

# (id, which backup, words naming the field (manifest.json also counts), the tampering: a function of the
#  case returning the manifest change, or the name of a tampering _field_tamper does; what the next backup
#  must do ('fail' or 'either'), where virt_backup_info must give the reason ('errors', 'verify', 'any'))
FIELD_CASES = [
    ('disk name ../x', 'inc', NAME, lambda c: _set(('disks', 0, 'name'), '../x'), 'fail', 'errors'),
    ('disk name absolute', 'inc', NAME, lambda c: _set(('disks', 0, 'name'), os.path.join(c.outside, 'abs-x')),
     'fail', 'errors'),
    ('disk image absolute root-only image', 'inc', IMAGE, 'SECRET_IMAGE_ABS', 'fail', 'errors'),
    ('disk image ../ to a root-only image', 'inc', IMAGE, 'SECRET_IMAGE_REL', 'fail', 'errors'),
    ('disk image ../../other.qcow2', 'inc', IMAGE, 'OTHER_IMAGE', 'fail', 'errors'),
    ('integrity map absolute', 'inc', ('.map', "'map'", 'integrity map'), 'MAP_ABS', 'fail', 'errors'),
    ('checkpoint_xml absolute', 'inc', ('checkpoint_xml',), 'CHECKPOINT_XML_ABS', 'fail', 'errors'),
    ('domain_xml ../', 'inc', ('domain_xml',), 'DOMAIN_XML_REL', 'fail', 'errors'),
    ('virtual_size 0', 'inc', ('virtual_size', 'virtual size'), lambda c: _set(('disks', 0, 'virtual_size'), 0),
     'fail', 'errors'),
    ('virtual_size -1', 'inc', ('virtual_size', 'virtual size'), lambda c: _set(('disks', 0, 'virtual_size'), -1),
     'fail', 'errors'),
    ('virtual_size a string', 'inc', ('virtual_size', 'virtual size'),
     lambda c: _set(('disks', 0, 'virtual_size'), '67108864'), 'fail', 'errors'),
    # Smaller than the image, integrity forged to match: only the image header tells.
    ('virtual_size not the image size', 'inc', ('virtual_size', 'virtual size'), 'SIZE_SMALLER', 'either', 'any'),
    ('integrity block_size not the format\'s', 'inc', ('block_size', 'block size'), 'BLOCK_SIZE', 'fail', 'errors'),
    ('backup id not in format', 'inc', ('backup id', 'field id', "'id'"), lambda c: _set(('id',), '../../x'),
     'fail', 'errors'),
    ('chain id not in format', 'inc', ('chain',), lambda c: _set(('chain',), '../../../x'), 'fail', 'errors'),
    ('parent not in format', 'inc', ('parent',), lambda c: _set(('parent',), '../../../x'), 'fail', 'errors'),
    ('repository_id not a UUID', 'inc', ('repository_id',), lambda c: _set(('repository_id',), '../not-a-uuid'),
     'fail', 'errors'),
]


def _field_tamper(case, which, how):
    """Apply a FIELD_CASES change to backup which of case; returns paths that must not appear."""
    bdir = case.backup_dir(which)
    loot = case.lab.loot
    # where a disk named '<outside>/abs-x' would be restored
    watch = [os.path.join(case.outside, 'abs-x' + s) for s in ('.qcow2', '.raw', '.qcow2.partial', '.raw.partial')]
    if callable(how):
        edit_manifest(bdir, how(case))
        return watch
    if how in ('SECRET_IMAGE_ABS', 'SECRET_IMAGE_REL', 'OTHER_IMAGE'):
        # The image of another disk (a root-only one), integrity forged to match: a restore that follows
        # the field copies that disk out.
        forge_integrity(bdir, loot.secret_disk)
        if how == 'SECRET_IMAGE_ABS':
            target = loot.secret_qcow2
        elif how == 'SECRET_IMAGE_REL':
            target = os.path.relpath(loot.secret_qcow2, bdir)
        else:
            other = os.path.normpath(os.path.join(bdir, '..', '..', 'other.qcow2'))
            shutil.copy2(loot.secret_qcow2, other)
            os.chmod(other, 0o600)
            target = '../../other.qcow2'
        edit_manifest(bdir, _set(('disks', 0, 'image'), target))
    elif how == 'MAP_ABS':
        copy = os.path.join(case.outside, 'vda.blockhash.gz')
        shutil.copy2(os.path.join(bdir, 'vda.blockhash.gz'), copy)
        edit_manifest(bdir, _set(('disks', 0, 'integrity', 'map'), copy))
    elif how == 'CHECKPOINT_XML_ABS':
        edit_manifest(bdir, _set(('checkpoint_xml',), loot.secret))
    elif how == 'DOMAIN_XML_REL':
        edit_manifest(bdir, _set(('domain_xml',), os.path.relpath(loot.secret, bdir)))
    elif how == 'SIZE_SMALLER':
        expected = case.lab.inc_expected['vda'] if which == 'inc' else case.lab.full_expected['vda']
        forge_integrity(bdir, expected, size=DISK - BLOCK)
    elif how == 'BLOCK_SIZE':
        expected = case.lab.inc_expected['vda'] if which == 'inc' else case.lab.full_expected['vda']
        forge_integrity(bdir, expected, block_size=2 * BLOCK)
    else:
        raise ValueError(how)
    return watch


@pytest.mark.parametrize('what,which,field,how,next_expect,where', FIELD_CASES, ids=[c[0] for c in FIELD_CASES])
def test_manifest_field(lab, hostile, fault, what, which, field, how, next_expect, where):
    """A manifest field names a path outside its backup directory, a size or block size that is not the
    image's, or an id that is not in the format: restore, verify and the next backup refuse it by name."""
    case = hostile(what)
    watch = _field_tamper(case, which, how)
    words = field + (MANIFEST,)
    attack = Assault(fault, case, 'manifest field: %s' % what, words)
    # '../x' resolves next to dest; '<dir>/abs-x' into a directory outside.
    attack.must_not_appear(*(watch + [os.path.join(case.sandbox, n) for n in ('x.qcow2', 'x.qcow2.partial')]))
    attack.restore(case.backup_id(which))
    attack.info(where, case.backup_id(which))
    attack.next_backup(next_expect)
    attack.check()


def test_repository_id_not_a_uuid(lab, hostile, fault):
    """repository.json's id is not a UUID but a path ('../../../../../../x'): it names checkpoints and the
    socket directory (/run/virtops-libvirt/<8 characters of it>-<domain>-...), so it must be refused."""
    case = hostile('repository id')
    marker = os.path.join(case.repo, 'repository.json')
    with open(marker) as src:
        info = json.load(src)
    info['id'] = '../../../../../../x'
    _write(marker, (json.dumps(info, indent=2, sort_keys=True) + '\n').encode(), 0o600)
    words = ('repository.json', 'repository id', 'uuid')
    attack = Assault(fault, case, 'repository.json id not a UUID', words)
    attack.restore(lab.inc['id'])
    attack.info('any', may_fail=True)
    attack.next_backup('fail')
    attack.check()


# --- 2-4. image headers: backing file, json:, NBD, data file -------------------------------------

IMAGE_CASES = [
    # (id, which backup, words)
    ('full image backed by the secret', 'full', BACKING),
    ('incremental rebased onto the secret', 'inc', BACKING),
    ('full image with a json: backing file', 'full', BACKING),
    ('full image backed by nbd+tcp', 'full', BACKING),
    ('full image with a json: nbd backing file', 'full', BACKING),
    ('full image with an external data file', 'full', DATA_FILE),
]


@pytest.mark.parametrize('what,which,words', IMAGE_CASES, ids=[c[0] for c in IMAGE_CASES])
def test_image_header(lab, hostile, fault, what, which, words):
    """A backup image whose qcow2 header names a backing file or data file that the repository format does
    not give it (the root-only secret, a json: description, an NBD server), integrity forged to match where
    the content is known: nothing opens it, nothing connects, nothing restores it."""
    case = hostile(what)
    loot = lab.loot
    bdir = case.backup_dir(which)
    image = os.path.join(bdir, 'vda.qcow2')
    attack = Assault(fault, case, 'image header: %s' % what, words)
    json_file = 'json:' + json.dumps({'driver': 'raw', 'file': {'driver': 'file', 'filename': loot.secret}})
    if what == 'full image backed by the secret':
        replace_image(image, DISK, '-u', '-b', loot.secret, '-F', 'raw')
        forge_integrity(bdir, loot.secret_disk)
    elif what == 'incremental rebased onto the secret':
        sh('qemu-img', 'rebase', '-u', '-b', loot.secret, '-F', 'raw', image, what='rebasing')
        content = image_content(loot, image)
        try:
            forge_integrity(bdir, content)
        finally:
            os.unlink(content)
    elif what == 'full image with a json: backing file':
        replace_image(image, DISK, '-u', '-b', json_file, '-F', 'raw')
        forge_integrity(bdir, loot.secret_disk)
    elif what == 'full image backed by nbd+tcp':
        attack.listener = Listener()
        replace_image(image, DISK, '-u', '-b', 'nbd+tcp://127.0.0.1:%d/x' % attack.listener.port, '-F', 'raw')
    elif what == 'full image with a json: nbd backing file':
        attack.listener = Listener()
        replace_image(image, DISK, '-u', '-b', 'json:' + json.dumps({
            'driver': 'raw', 'file': {'driver': 'nbd', 'server': {'type': 'inet', 'host': '127.0.0.1',
                                                                    'port': str(attack.listener.port)},
                                      'export': 'x'}}), '-F', 'raw')
    elif what == 'full image with an external data file':
        _data_file_image(loot, image)
        forge_integrity(bdir, loot.secret_disk)
    else:
        raise ValueError(what)
    attack.restore(case.backup_id(which))
    attack.info('verify', case.backup_id(which))
    attack.next_backup('either')
    attack.check()


def _data_file_image(loot, image):
    """A qcow2 whose external data file (raw) is the secret. qemu-img create would create (truncate) the
    data file, so the image is made with a stand-in of the same name length, then its header patched."""
    stand_in = os.path.join('/tmp', ('fi7-data-%s' % uuid.uuid4().hex).ljust(len(loot.secret) - 5, 'x'))
    stand_in = stand_in[:len(loot.secret)]
    assert len(stand_in) == len(loot.secret), (stand_in, loot.secret)
    try:
        os.unlink(image)
        sh('qemu-img', 'create', '-q', '-f', 'qcow2', '-o', 'data_file=%s,data_file_raw=on' % stand_in,
           image, str(DISK), what='an image with a data file')
    finally:
        if os.path.exists(stand_in):
            os.unlink(stand_in)
    with open(image, 'rb') as src:
        data = src.read()
    assert data.count(stand_in.encode()) == 1, 'the data file name is not in the header once'
    _write(image, data.replace(stand_in.encode(), loot.secret.encode()), 0o600)
    info = json.loads(sh('qemu-img', 'info', '--output=json', image))
    assert info['format-specific']['data']['data-file'] == loot.secret, info


# --- 5. a gzip bomb as integrity map ---------------------------------------------------------------

@pytest.mark.parametrize('digest', ['digest fixed', 'digest not fixed'])
def test_gzip_bomb_map(lab, hostile, fault, digest):
    """The incremental's vda.blockhash.gz is a 1 MiB gzip of 1 GiB of zeroes (a map of this disk holds
    32 KiB): every module refuses it quickly, and none inflates it into memory (peak RSS of the module and
    its children under 256 MiB)."""
    case = hostile('gzip bomb %s' % digest)
    bomb, bomb_digest = lab.loot.get_bomb()
    shutil.copy2(bomb, os.path.join(case.inc_dir, 'vda.blockhash.gz'))
    os.chmod(os.path.join(case.inc_dir, 'vda.blockhash.gz'), 0o600)
    if digest == 'digest fixed':
        edit_manifest(case.inc_dir, _set(('disks', 0, 'image_digest'), bomb_digest))
    attack = Assault(fault, case, 'gzip bomb map (%s)' % digest, MAP)
    runs = [('virt_restore', attack.restore(lab.inc['id'])),
            ('virt_backup_info', attack.info('verify', lab.inc['id'])),
            ('virt_backup', attack.next_backup('either'))]
    for module, res in runs:
        rss = res.get('_maxrss_kib')
        fault.note('%s: peak RSS %s KiB, %.1f s' % (module, rss, res['_seconds']))
        if rss is None or rss > RSS_LIMIT_KIB:
            attack.problem(module, 'peak RSS of the module and its children %s KiB (limit %d KiB): the map was '
                           'inflated into memory' % (rss, RSS_LIMIT_KIB))
        if res['_seconds'] > 60:
            attack.problem(module, 'took %.0f s' % res['_seconds'])
    attack.check()


# --- 6. symbolic links inside the repository ---------------------------------------------------

SYMLINK_CASES = ['image', 'backup directory', 'manifest', 'chain directory over outside debris']


@pytest.mark.parametrize('kind', SYMLINK_CASES)
def test_symlink_in_repository(lab, hostile, fault, kind):
    """A symbolic link in the repository: the full backup's vda.qcow2 to a root-only image outside (integrity
    forged), the full backup's directory to a copy outside, the incremental's manifest to a copy outside, a
    chain directory to an outside directory holding backup-id-named debris (which the next backup's
    clean-up of interrupted runs must not delete)."""
    case = hostile('symlink %s' % kind)
    attack = Assault(fault, case, 'symbolic link: %s' % kind, SYMLINK)
    if kind == 'image':
        image = os.path.join(case.full_dir, 'vda.qcow2')
        os.unlink(image)
        os.symlink(lab.loot.secret_qcow2, image)
        forge_integrity(case.full_dir, lab.loot.secret_disk)
        attack.restore(lab.full['id'])
        attack.info('verify', lab.full['id'])
        attack.next_backup('either')
    elif kind == 'backup directory':
        copy = os.path.join(case.outside, lab.full['id'])
        shutil.move(case.full_dir, copy)
        os.symlink(copy, case.full_dir)
        attack.also_watch(copy)
        attack.restore(lab.full['id'])
        attack.info('any')
        attack.next_backup('either')
    elif kind == 'manifest':
        copy = os.path.join(case.outside, MANIFEST)
        shutil.copy2(os.path.join(case.inc_dir, MANIFEST), copy)
        os.unlink(os.path.join(case.inc_dir, MANIFEST))
        os.symlink(copy, os.path.join(case.inc_dir, MANIFEST))
        attack.also_watch(copy)
        attack.restore(lab.inc['id'])
        attack.info('any')
        attack.next_backup('fail')
    else:
        victim = os.path.join(case.outside, 'victim')
        debris = os.path.join(victim, '20200101T000001Z')
        os.makedirs(debris, 0o755)
        _write(os.path.join(debris, 'precious'), b'root-owned data outside the repository\n', 0o644)
        os.symlink(victim, os.path.join(case.repo, GUEST, '20200101T000000Z'))
        attack.also_watch(victim)
        attack.next_backup('either')
    attack.check()


# --- 7. a symlinked .staging -----------------------------------------------------------------------

@pytest.mark.parametrize('mode', ['push', 'pull'])
def test_staging_symlink(lab, hostile, fault, mode):
    """<repository>/.staging is a symbolic link to a root-owned directory outside (0755): the backup fails
    naming .staging and leaves that directory's owner, mode and contents alone (it must not chown it to
    QEMU's user)."""
    case = hostile('staging symlink %s' % mode)
    target = os.path.join(case.outside, 'root-dir')
    os.makedirs(target, 0o755)
    os.chmod(target, 0o755)
    _write(os.path.join(target, 'keep'), b'root-owned, outside the repository\n', 0o644)
    staging = os.path.join(case.repo, '.staging')
    shutil.rmtree(staging, ignore_errors=True)     # a repository of pull backups has none
    os.symlink(target, staging)
    attack = Assault(fault, case, '.staging a symbolic link (%s)' % mode, STAGING)
    attack.also_watch(target)
    attack.next_backup('fail', watch_files=[target, os.path.join(target, 'keep')], mode=mode)
    attack.check()


# --- 8. repository root owned by another user, or writable by others ---------------------------------

ROOT_CASES = [('owned by nobody', 'chown'), ('mode 0777', 0o777), ('group-writable 0771', 0o771)]


@pytest.mark.parametrize('what,how', ROOT_CASES, ids=[c[0] for c in ROOT_CASES])
def test_repository_root_permissions(lab, hostile, fault, what, how):
    """The repository root belongs to another user, or group or others may write it (they could swap
    anything below it): the next backup refuses to write, naming the owner or the mode; nothing is written."""
    case = hostile('root %s' % what)
    if how == 'chown':
        import pwd
        nobody = pwd.getpwnam('nobody')
        os.chown(case.repo, nobody.pw_uid, nobody.pw_gid)
    else:
        os.chmod(case.repo, how)
    attack = Assault(fault, case, 'repository root %s' % what, ROOT_PERMS)
    attack.next_backup('fail')
    attack.check()


# --- 9. planting race as QEMU's user --------------------------------------------------------------

# Runs as QEMU's user (never root): in every directory it can write under its roots (the repository's
# .staging and, once the test names them, the run's socket directories), it plants symbolic links to the
# root-owned canary at every name the module may use (push targets and scratch files of the backup ids
# of the current and next few seconds, sockets, pid files), swaps every regular file it finds for such a
# link, and puts its own directory full of such links in place of any directory it may rename.
_ATTACKER = r'''
import json, os, select, signal, sys, time
canary, domain = sys.argv[1], sys.argv[2]
roots = json.loads(sys.argv[3])
disks = json.loads(sys.argv[4])
stop = []
signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
stats = dict(planted=0, swapped_files=0, swapped_dirs=0, dirs=[], swapped=[])
me = os.getuid()
n = 0

def names(now):
    # not nbd.sock: a link there only keeps a socket from binding (QEMU may refuse service anyway)
    result = ['qemu-nbd.pid']
    for d in range(-1, 5):
        base = time.strftime('%Y%m%dT%H%M%SZ', time.gmtime(now + d))
        for bid in [base] + ['%s-%d' % (base, i) for i in (1, 2, 3)]:
            for disk in disks:
                result.append('%s-%s-%s.qcow2' % (domain, bid, disk))
                result.append('%s-%s-%s.scratch.qcow2' % (domain, bid, disk))
    return result

def plant(d, wanted):
    global n
    for name in wanted:
        try:
            os.symlink(canary, os.path.join(d, name))
            stats['planted'] += 1
        except OSError:
            pass
    try:
        entries = list(os.scandir(d))
    except OSError:
        return []
    subdirs = []
    for e in entries:
        if e.name.startswith('.fi7-'):
            continue
        try:
            if e.is_symlink():
                continue
            path = e.path
            if e.is_file():
                n += 1
                os.rename(path, os.path.join(d, '.fi7-stolen-%d' % n))
                os.symlink(canary, path)
                stats['swapped_files'] += 1
            elif e.is_dir():
                st = os.lstat(path)
                if st.st_uid != me:
                    n += 1
                    os.rename(path, os.path.join(d, '.fi7-moved-%d' % n))
                    os.mkdir(path, 0o777)
                    os.chmod(path, 0o777)
                    for name in wanted:
                        os.symlink(canary, os.path.join(path, name))
                    stats['swapped_dirs'] += 1
                    stats['swapped'].append('%s (uid %d)' % (path, st.st_uid))
                subdirs.append(path)
        except OSError:
            pass
    return subdirs

while not stop:
    if select.select([sys.stdin], [], [], 0)[0]:
        line = sys.stdin.readline()
        if line.strip():
            roots.append(line.strip())
    wanted = names(time.time())
    todo = [r for r in roots]
    while todo:
        d = todo.pop()
        if os.path.islink(d) or not os.path.isdir(d) or not os.access(d, os.W_OK | os.X_OK):
            continue
        if d not in stats['dirs']:
            stats['dirs'].append(d)
        todo.extend(plant(d, wanted))
    time.sleep(0.002)
sys.stdout.write(json.dumps(stats))
'''


class Attacker:
    """The planting process, as QEMU's user."""

    def __init__(self, canary, roots):
        uid, gid = qemu_owner()
        self.proc = subprocess.Popen(['/usr/bin/python3', '-c', _ATTACKER, canary, GUEST, json.dumps(roots),
                                      json.dumps(['vda'])], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, cwd='/', user=uid, group=gid, extra_groups=[],
                                     env=dict(PATH='/usr/bin:/bin', LANG='C.UTF-8'))
        self.told = set()
        self.stats = None

    def tell(self, root):
        if root not in self.told and self.proc.poll() is None:
            self.told.add(root)
            try:
                self.proc.stdin.write((root + '\n').encode())
                self.proc.stdin.flush()
            except OSError:
                pass

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            out, err = self.proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
        try:
            self.stats = json.loads(out.decode() or 'null')
        except ValueError:
            self.stats = dict(error=(out + err).decode('utf-8', 'replace')[-500:])
        return self.stats


def _run_dirs(repo):
    short = repo_short_id(repo)
    return glob.glob(os.path.join(str(SOCKET_ROOT), '%s-%s-*' % (short, GUEST)))


def _option(args, *names):
    """Values of command-line options (--name value, --name=value, -k value) in args."""
    found = []
    for i, arg in enumerate(args):
        for name in names:
            if arg == name and i + 1 < len(args):
                found.append(args[i + 1])
            elif name.startswith('--') and arg.startswith(name + '='):
                found.append(arg[len(name) + 1:])
    return found


def _qemu_nbd_paths(module_pid):
    """{pid: [socket and pid-file paths]} of the qemu-nbd processes a module run started."""
    pids = set(fi_lib.qemu_nbd_processes(str(SOCKET_ROOT), GUEST))
    for pid in os.listdir('/proc'):
        if pid.isdigit():
            try:
                with open('/proc/%s/stat' % pid) as src:
                    ppid = int(src.read().rsplit(')', 1)[1].split()[1])
                with open('/proc/%s/comm' % pid) as src:
                    comm = src.read().strip()
            except (OSError, ValueError, IndexError):
                continue
            if ppid == module_pid and comm == 'qemu-nbd':
                pids.add(int(pid))
    result = {}
    for pid in pids:
        try:
            with open('/proc/%d/cmdline' % pid, 'rb') as src:
                args = src.read().decode('utf-8', 'replace').split('\0')
        except OSError:
            continue
        result[pid] = _option(args, '--socket', '-k', '--pid-file')
    return result


def _owned_by(path, uid):
    """The directories above path (up to /) that uid owns."""
    owned = []
    d = os.path.dirname(path)
    while True:
        try:
            if os.lstat(d).st_uid == uid:
                owned.append(d)
        except OSError:
            pass
        if d in ('/', ''):
            return owned
        d = os.path.dirname(d)


def _job_dirs(guest):
    """Directories of the files and sockets the running backup job names (targets, scratch files, export)."""
    xml = guest.job_xml()
    if not xml:
        return []
    return sorted(set(os.path.dirname(p) for p in re.findall(r"""(?:file|socket)=['"]([^'"]+)['"]""", xml)
                      if p.startswith('/')))


class Spy:
    """Called by the Watcher while a module runs: tells the attacker the directories the run uses (socket
    directories, the job's target and scratch directories) and records where the module's qemu-nbd
    processes keep their sockets and pid files."""

    def __init__(self, guest, repo, run, attacker=None, job_dirs=True):
        self.job_dirs = job_dirs
        self.guest = guest
        self.repo = repo
        self.run = run
        self.attacker = attacker
        self.qemu_uid = qemu_owner()[0]
        self.nbd_seen = {}
        self.misplaced = set()
        self._job_checked = 0

    def __call__(self):
        if self.attacker is not None:
            for path in _run_dirs(self.repo):
                self.attacker.tell(path)
            if self.job_dirs and time.time() - self._job_checked > 0.05:
                self._job_checked = time.time()
                try:
                    for path in _job_dirs(self.guest):
                        self.attacker.tell(path)
                except libvirt.libvirtError:
                    pass
        if self.run.alive():
            for pid, paths in _qemu_nbd_paths(self.run.pid).items():
                self.nbd_seen.setdefault(pid, paths)
                for path in paths:
                    owners = _owned_by(path, self.qemu_uid)
                    if owners:
                        self.misplaced.add('qemu-nbd %d keeps %s in %s, owned by QEMU\'s user' % (
                            pid, path, ', '.join(owners)))


def _check_new_backup(attack, res):
    """A backup run under attack: a clean failure, or a backup of regular root-owned files, bit-exact."""
    guest = attack.lab.guest
    try:
        wait_until(lambda: not guest.job_active(), 30, 'the backup job of %s to end' % GUEST)
    except CheckFailed as exc:
        attack.problem('virt_backup', str(exc))
    if _leaks(res):
        attack.problem('virt_backup', 'the secret pattern appears in the output')
    if res.get('failed'):
        msg = res.get('msg') or ''
        attack.fault.note('virt_backup failed: %s' % _short(msg))
        if res.get('_no_json') or _unclear(msg):
            attack.problem('virt_backup', 'did not fail cleanly: %s' % _short(msg))
        return
    backup = res['backup']
    attack.fault.note('virt_backup succeeded: %s backup %s' % (backup['level'], backup['id']))
    for base, dirs, files in os.walk(backup['path']):
        for name in dirs + files:
            st = os.lstat(os.path.join(base, name))
            if stat.S_ISLNK(st.st_mode) or st.st_uid != 0:
                attack.problem('virt_backup', 'the new backup holds %s (%s, uid %d)' % (
                    os.path.join(base, name), 'a symbolic link' if stat.S_ISLNK(st.st_mode) else 'a file', st.st_uid))
    try:
        fi_lib.verify_backup(attack.fault, guest, attack.case.repo, backup['id'])
    except CheckFailed as exc:
        attack.problem('restore of the new backup', str(exc))


RACE_CASES = [('push', 'everywhere'), ('pull', 'everywhere'), ('pull', 'socket directories')]


@pytest.mark.parametrize('mode,scope', RACE_CASES, ids=['%s, %s' % c for c in RACE_CASES])
def test_planting_race(lab, hostile, fault, mode, scope):
    """While a backup runs, QEMU's user plants symbolic links to a root-owned canary at every name it can
    in every directory it can write (.staging, the run's socket directories, the directories of the job's
    targets and scratch files; or, scope 'socket directories', only in the run's socket directories, so
    that the job itself can start), and swaps the files and directories it finds there for such links: the
    canary never changes (content, mode, owner, mtime, not even for a moment); no directory the run made
    lies where QEMU's user can replace it; the backup succeeds and restores bit-exact, or fails with a clear
    message."""
    case = hostile('planting race %s %s' % (mode, scope))
    loot = lab.loot
    guest = lab.guest
    guest.write('vda', 48 * MiB, MiB, 0x71 if mode == 'push' else 0x72)
    attack = Assault(fault, case, 'planting race as QEMU\'s user (%s, %s)' % (mode, scope), ())
    everywhere = scope == 'everywhere'
    attacker = Attacker(loot.canary, [os.path.join(case.repo, '.staging')] if everywhere else [])
    run = res = None
    try:
        time.sleep(0.3)
        assert attacker.proc.poll() is None, 'the attacker died: %s' % attacker.proc.stderr.read()
        fault.inject('%s backup while QEMU\'s user plants links' % mode)
        attack.start()
        run = ModuleRun('virt_backup', dict(domain=GUEST, repository=case.repo, mode=mode))
        spy = Spy(guest, case.repo, run, attacker, job_dirs=everywhere)
        with Watcher(loot.watched()) as watch:
            watch.on_poll = spy
            res = run.wait(600)
        attack.problems.extend('during the backup: %s' % e for e in watch.events)
    finally:
        if run is not None and run.alive():
            run.kill9()
        stats = attacker.stop()
    fault.note('attacker: %s' % json.dumps(dict((k, v) for k, v in (stats or {}).items()
                                                if k not in ('dirs', 'swapped'))))
    fault.note('attacker wrote into: %s' % (stats or {}).get('dirs'))
    assert stats and 'error' not in stats, 'the attacker failed: %s' % stats
    assert stats['dirs'], 'the attacker found no directory it could write (test bug?): %s' % stats
    if stats['swapped']:
        # A directory someone else made (the module, for its own sockets or files) inside a directory
        # QEMU's user can write: that user put its own directory in its place, and the run used it.
        attack.problem('virt_backup', 'QEMU\'s user replaced directories of the run by its own: %s'
                       % ', '.join(stats['swapped']))
    _check_new_backup(attack, res)
    with open(loot.canary, 'rb') as src:
        if src.read() != loot.canary_data:
            attack.problem('canary', '%s no longer holds its content' % loot.canary)
    attack.problems.extend('qemu-nbd: %s' % m for m in sorted(spy.misplaced))
    attack.check()


def test_module_nbd_sockets_private(lab, hostile, fault):
    """While a pull backup (full, with verify) runs, every qemu-nbd the module starts keeps its socket and
    pid file in directories that QEMU's user does not own (only QEMU's own export socket may lie in one):
    that user could otherwise swap the socket for its own server, or the pid file for a link."""
    case = hostile('nbd sockets')
    attack = Assault(fault, case, 'qemu-nbd sockets of a pull backup', ())
    fault.inject('where the qemu-nbd processes of a pull backup keep their sockets and pid files')
    attack.start()
    run = ModuleRun('virt_backup', dict(domain=GUEST, repository=case.repo, level='full', verify=True))
    try:
        spy = Spy(lab.guest, case.repo, run)
        with Watcher(lab.loot.watched()) as watch:
            watch.on_poll = spy
            res = run.wait(600)
        attack.problems.extend('during the backup: %s' % e for e in watch.events)
    finally:
        if run.alive():
            run.kill9()
    fault.note('qemu-nbd processes seen: %s' % spy.nbd_seen)
    ok(res, 'the pull backup')
    assert spy.nbd_seen, 'no qemu-nbd process of the module was seen while it ran (the run took %.1f s)' % run.seconds
    attack.problems.extend('qemu-nbd: %s' % m for m in sorted(spy.misplaced))
    _check_new_backup(attack, res)
    attack.check()
