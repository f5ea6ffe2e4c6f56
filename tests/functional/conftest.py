# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fixtures of the functional tests: one real TCG domain, and a timeline of backups taken of it.

Starting a domain is the slow part on this host (libvirt probes QEMU again for every define and
start), so the whole suite shares one running domain with two disks. The timeline writes known
data into it between backups into four repositories (pull, push, mixed pull/push, and one that
first leaves out vdb), keeping a shadow copy of each disk, and records every result; the tests
then check what the modules returned and what the repositories hold. Tests that stop the domain
(offline backups) run last.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import shutil
import subprocess
import sys

import libvirt
import pytest

# tests/support is shared with tests/faults: tests/ goes on the path before it is imported.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from support.guests import make_guest, remove_domain, unique  # noqa: E402
from support.host import ensure_collection_link, IMAGES, KiB, Libvirt, MiB, sh  # noqa: E402
from support.modules import ok  # noqa: E402
import ftlib  # noqa: E402
import instlib  # noqa: E402

MODES = ('pull', 'push')


def pytest_collection_modifyitems(session, config, items):
    # Tests that stop the shared domain go last, and those that take its checkpoint metadata
    # and bitmaps away after them.
    def rank(item):
        names = getattr(item, 'fixturenames', ())
        return 2 if 'repairs' in names else 1 if 'offline' in names else 0
    items.sort(key=rank)


@pytest.fixture(scope='session', autouse=True)
def collection_link():
    return ensure_collection_link()


@pytest.fixture(scope='session')
def conn():
    """Libvirt: .get() is a live connection to qemu:///system."""
    c = Libvirt()
    yield c
    c.close()


@pytest.fixture(scope='session')
def workroot():
    """A directory under /var/lib/libvirt/images (QEMU can reach it) for everything the suite makes."""
    path = IMAGES / unique('ft-work')
    path.mkdir(mode=0o755)
    yield path
    _unmount_below(path)
    shutil.rmtree(path, ignore_errors=True)


def _unmount_below(path):
    with open('/proc/mounts') as src:
        points = [line.split()[1] for line in src]
    for point in sorted((p for p in points if p.startswith(str(path) + '/')), reverse=True):
        subprocess.run(['umount', '-l', point], check=False)


class Cleanup:
    """Domains and mounts a test made; removed at the end of the session even when it fails."""

    def __init__(self, conn):
        self.conn = conn
        self.domains = []
        self.mounts = []

    def domain(self, name):
        self.domains.append(name)

    def mount(self, path):
        self.mounts.append(str(path))

    def run(self):
        for name in self.domains:
            remove_domain(self.conn, name)
        for path in reversed(self.mounts):
            subprocess.run(['umount', '-l', path], check=False)


@pytest.fixture(scope='session')
def cleanup(conn):
    c = Cleanup(conn)
    yield c
    c.run()


@pytest.fixture(scope='session')
def tmpfs_mounts(workroot, cleanup):
    """Small file systems for the tests that need a full or read-only repository.

    They are mounted before the domain starts: QEMU runs in a mount namespace of its own, and on a
    host whose / is a private mount (no systemd, as here) it never sees a file system mounted
    after it started; the backup job would fail with "No such file or directory".
    """
    mounts = {}
    for name, size in (('small', '1m'), ('spare', '16m')):
        path = workroot / ('mnt-%s' % name)
        path.mkdir()
        sh('mount', '-t', 'tmpfs', '-o', 'size=%s,mode=0755' % size, 'tmpfs', path)
        cleanup.mount(path)
        mounts[name] = path
    return mounts


@pytest.fixture(scope='session')
def guest(conn, workroot, tmpfs_mounts):
    """The running domain every test shares: vda 64 MiB and vdb 32 MiB, both blank qcow2."""
    g = make_guest(conn, unique('ft-dom'), workroot / 'guest', [('vda', 64 * MiB, ()), ('vdb', 32 * MiB, ())],
                   start=False, mode=0o755)
    try:
        g.start()
        yield g
    finally:
        g.remove()


# -- the timeline -------------------------------------------------------------------------------

class Point:
    """One backup taken by the timeline, with what the disks held at that moment."""

    def __init__(self, repo, result, snaps, tag):
        self.repo = repo
        self.result = result
        self.backup = result['backup']
        self.snaps = snaps      # {disk: support.guests.Snapshot}
        self.tag = tag

    id = property(lambda self: self.backup['id'])
    level = property(lambda self: self.backup['level'])

    def disk(self, name):
        for d in self.backup['disks']:
            if d['name'] == name:
                return d
        return None


class Timeline:
    def __init__(self, guest, root):
        self.guest = guest
        self.root = root
        self.repos = dict((name, root / ('repo-%s' % name)) for name in ('pull', 'push', 'mixed', 'partial'))
        self.points = dict((name, []) for name in self.repos)
        self.by_id = {}
        self.snaps = {}
        self.tag = None

    def writes(self, tag, ops):
        """Apply writes [(disk, op, args...)], then record what the disks hold as snapshot `tag`."""
        for disk, op, args in ops:
            getattr(self.guest.disks[disk], op)(*args)
        self.snaps[tag] = self.guest.snapshot(tag)
        self.tag = tag

    def backup(self, repo, mode, level='auto', disks=None, series=None):
        """A backup into repository `repo`, listed in self.points[series or repo]."""
        args = dict(mode=mode, level=level)
        if disks:
            args['disks'] = disks
        result = ok(ftlib.backup(self.guest.name, self.repos[repo], **args))
        point = Point(repo, result, self.snaps[self.tag], self.tag)
        self.points.setdefault(series or repo, []).append(point)
        self.by_id[(repo, point.id)] = point
        return point

    def parent(self, point):
        return self.by_id.get((point.repo, point.backup['parent']))

    def expected_dirty(self, point, disk):
        """What the bitmap (incremental, differential) or the allocation (full) of disk says."""
        entry = point.disk(disk)
        snap = point.snaps[disk]
        if entry['level'] == 'full':
            return snap.data_bytes
        parent = self.parent(point)
        return self.guest.disks[disk].shadow.touched(parent.snaps[disk].mark, snap.mark)


def _run_timeline(t):
    """Writes and backups. W = writes, then backups into the repositories at that point."""
    # S1: data on both disks.
    t.writes('S1', [
        ('vda', 'write', (0, 1 * MiB, 0xa1)),
        ('vda', 'write', (5 * MiB, 192 * KiB, 0xa2)),
        ('vda', 'write', (48 * MiB + 4 * KiB, 8 * KiB, 0xa3)),     # inside one cluster
        ('vdb', 'write', (0, 512 * KiB, 0xb1)),
        ('vdb', 'write', (3 * MiB + 4 * KiB, 8 * KiB, 0xb2)),
    ])
    t.backup('pull', 'pull')
    t.backup('push', 'push')
    t.backup('mixed', 'pull')
    t.backup('partial', 'pull', disks=['vda'])

    # S2: overwrite, straddle a cluster boundary, zero a data cluster, write new clusters.
    t.writes('S2', [
        ('vda', 'write', (2 * MiB - 4 * KiB, 8 * KiB, 0xc1)),       # two clusters
        ('vda', 'zero', (5 * MiB + 64 * KiB, 64 * KiB)),
        ('vda', 'write', (40 * MiB, 64 * KiB, 0xc2)),
        ('vdb', 'write', (1 * MiB, 64 * KiB, 0xb3)),
    ])
    t.backup('pull', 'pull')
    t.backup('push', 'push')
    t.backup('partial', 'pull', disks=['vda'])

    # S3: discard, a larger write, zeroes on vdb.
    t.writes('S3', [
        ('vda', 'discard', (0, 128 * KiB)),
        ('vda', 'write', (60 * MiB, 256 * KiB, 0xd1)),
        ('vdb', 'zero', (0, 64 * KiB)),
    ])
    t.backup('mixed', 'push')                          # incremental: S2 and S3 changes
    t.backup('pull', 'pull', level='differential')      # since the full: S2 and S3 changes
    t.backup('push', 'push', level='differential')

    # S4: small writes; the last cluster of vdb.
    t.writes('S4', [
        ('vda', 'write', (1 * MiB, 64 * KiB, 0xe1)),
        ('vda', 'write', (2 * MiB - 4 * KiB, 4 * KiB, 0xe2)),
        ('vdb', 'write', (31 * MiB, 1 * MiB, 0xb4)),
    ])
    t.backup('pull', 'pull')
    t.backup('push', 'push')
    t.backup('mixed', 'pull', level='differential')     # since the mixed full: S2..S4 changes
    t.backup('partial', 'push')                         # every disk now: vdb is new, copied in full

    # S5: one more change for the mixed chain.
    t.writes('S5', [
        ('vda', 'write', (30 * MiB, 512 * KiB, 0xf1)),
    ])
    t.backup('mixed', 'push')


@pytest.fixture(scope='session')
def timeline(guest, workroot):
    t = Timeline(guest, workroot)
    _run_timeline(t)
    return t


@pytest.fixture(scope='session')
def offline(timeline):
    """After the timeline: the domain is stopped, its images written directly, and backed up shut
    off into the pull and push repositories (continuing their chains); then it runs again and the
    next online backup continues from the checkpoint made offline. Tests using this run last."""
    t = timeline
    t.guest.stop()
    t.writes('S6', [
        ('vda', 'write', (10 * MiB, 256 * KiB, 0x71)),
        ('vda', 'zero', (40 * MiB, 64 * KiB)),
        ('vdb', 'write', (8 * MiB + 4 * KiB, 4 * KiB, 0x72)),
    ])
    t.backup('pull', 'pull', series='offline-pull')
    t.backup('push', 'push', series='offline-push')
    t.writes('S6-same', [])
    t.backup('pull', 'pull', series='offline-pull')     # nothing changed
    t.guest.start()
    t.writes('S7', [
        ('vda', 'write', (12 * MiB, 128 * KiB, 0x73)),
    ])
    t.backup('pull', 'pull', series='online-again')
    t.backup('push', 'push', series='online-again')
    return t


@pytest.fixture(scope='session')
def repairs(offline, conn):
    """After the offline phase: libvirt loses every checkpoint's metadata (the domain is undefined
    and defined again), and the next backups redefine their base checkpoint from the repository;
    then the bitmap of the pull repository's newest checkpoint is removed from vda, and its next
    backup starts a new chain."""
    t = offline
    t.writes('S8', [('vda', 'write', (14 * MiB, 64 * KiB, 0x81)), ('vdb', 'write', (9 * MiB, 64 * KiB, 0x82))])
    # libvirt drops checkpoint metadata when a shut-off domain is undefined (a move to another
    # host looks the same); the bitmaps stay in the images.
    t.guest.stop()
    dom = t.guest.dom
    inactive = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
    dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA)
    conn.get().defineXML(inactive)
    t.lost_checkpoints = t.guest.checkpoints()
    t.guest.start()
    t.backup('pull', 'pull', series='redefined')
    t.backup('push', 'push', series='redefined')

    t.guest.stop()
    t.removed_bitmap = t.points['redefined'][0].backup['checkpoint']
    sh('qemu-img', 'bitmap', '--remove', t.guest.disks['vda'].path, t.removed_bitmap)
    t.guest.start()
    t.writes('S9', [('vda', 'write', (16 * MiB, 128 * KiB, 0x91))])
    t.backup('pull', 'pull', series='bitmap-lost')
    t.backup('push', 'push', series='bitmap-lost')     # its own bitmap is intact: incremental
    return t


@pytest.fixture(params=MODES)
def mode(request):
    return request.param


@pytest.fixture(scope='module')
def source(conn):
    """instlib.Source: a shut-off domain backed up twice (the instant-recovery and export tests)."""
    src = instlib.Source(conn)
    yield src
    src.remove()


@pytest.fixture(scope='session')
def s3server():
    """A real S3 server (SeaweedFS) on 127.0.0.1 for the whole session; killed (SIGKILL) afterwards."""
    import s3server as s3lib
    server = s3lib.S3Server().start()
    try:
        yield server
    finally:
        server.stop()
