# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""virt_backup_prune on real backups of a real TCG domain: retention with check mode, diff and
idempotency, checkpoints deleted in libvirt, protection, synthetic fulls, and a kill -9 after each
step of a merge followed by bit-exact restores of every point that stays."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import shutil

import pytest

from support.guests import make_guest, unique
from support.host import KiB, MiB, sh
from support.images import assert_same_content, image_info, sha256_file
from support.modules import failed, ModuleFailed, ok, run_module
from support.repository import backup_dirs, checkpoint_prefix, read_manifest
import ftlib

DISK = 'vda'
MERGE_STEPS = ('journal', 'image', 'verified', 'full', 'move', 'moved', 'unmanifest', 'old-removed')


def prune(repository, check_mode=False, diff=False, env=None, **args):
    args = dict(args, repository=str(repository))
    saved = dict(os.environ)
    try:
        os.environ.update(env or {})
        return run_module('virt_backup_prune', args, check_mode=check_mode, diff=diff)
    finally:
        os.environ.clear()
        os.environ.update(saved)


def tree(path):
    """Every file and directory below path with its size and inode: what a run may change."""
    found = {}
    for base, dirs, files in os.walk(str(path)):
        for name in dirs + files:
            if name == '.lock':
                continue    # each run writes its pid into the lock it takes
            full = os.path.join(base, name)
            st = os.lstat(full)
            found[os.path.relpath(full, str(path))] = (st.st_size, st.st_ino, st.st_mode)
    return found


def complete_backups(repository, domain):
    """(chain, id, path) of every directory that holds a manifest."""
    return [(b.parent.name, b.name, b) for b in backup_dirs(repository, domain)
            if (b / 'manifest.json').exists()]


class Setup:
    """A domain with one disk and a chain of four backups (full and three incrementals); `base` is
    a copy of the repository as the backups left it, for the kill tests."""

    def __init__(self, guest, root):
        self.guest = guest
        self.root = root
        self.repo = root / 'repo'
        self.snaps = {}         # backup id -> support.guests.Snapshot of the disk
        self.ids = []

    def backup(self, tag, offset, pattern, level='auto'):
        self.guest.disks[DISK].write(offset, 192 * KiB, pattern)
        snap = self.guest.snapshot(tag)[DISK]
        result = ok(ftlib.backup(self.guest.name, self.repo, level=level))
        self.snaps[result['backup']['id']] = snap
        self.ids.append(result['backup']['id'])
        return result['backup']


@pytest.fixture(scope='module')
def setup(conn, workroot):
    guest = make_guest(conn, unique('prune-dom'), workroot / unique('prune-guest'), [('vda', 8 * MiB, ())], start=False,
                       mode=0o755)
    try:
        guest.start()
        s = Setup(guest, workroot / unique('prune'))
        s.root.mkdir()
        for n, (offset, pattern) in enumerate(((0, 0x11), (1 * MiB, 0x22), (64 * KiB, 0x33), (5 * MiB, 0x44))):
            s.backup('p%d' % n, offset, pattern)
        s.base = s.root / 'base'
        sh('cp', '-a', '--sparse=always', s.repo, s.base)
        yield s
    finally:
        guest.remove()


def assert_point(repository, domain, backup_id, snap, dest):
    """virt_restore of one point, proved by the module and compared byte for byte here."""
    result = ok(ftlib.restore(domain, repository, dest, backup=backup_id, format='raw'))
    entry = result['disks'][0]
    assert entry['verified'] is True
    assert_same_content(snap.path, entry['path'], 'raw')
    shutil.rmtree(str(dest))


def assert_every_copy(repository, domain, snaps, scratch):
    """Every directory with a manifest restores, with qemu-img alone, to the bytes of its point."""
    seen = set()
    for chain, backup_id, path in complete_backups(repository, domain):
        out = scratch / ('%s-%s.raw' % (chain, backup_id))
        sh('qemu-img', 'convert', '-f', 'qcow2', '-O', 'raw', path / ('%s.qcow2' % DISK), out)
        assert sha256_file(out) == snaps[backup_id].sha256, 'point %s in chain %s differs' % (backup_id, chain)
        out.unlink()
        seen.add(backup_id)
    return seen


def test_prune_merge_check_diff_idempotent(setup, tmp_path):
    g, repo = setup.guest, setup.repo
    a0, a1, a2, a3 = setup.ids
    prefix = checkpoint_prefix(repo)
    assert g.checkpoints() == sorted(prefix + i for i in setup.ids)
    # Debris of an interrupted run, old enough to go.
    debris = repo / g.name / a0 / '20200101T000000Z'
    debris.mkdir(mode=0o700)
    (debris / 'vda.qcow2').write_bytes(b'partial')
    before = tree(repo)
    args = dict(domains=[g.name], keep_last=2, merge=True)

    predicted = ok(prune(repo, check_mode=True, diff=True, **args))
    assert predicted['changed'] is True
    assert tree(repo) == before, 'check mode changed the repository'
    assert g.checkpoints() == sorted(prefix + i for i in setup.ids)
    dom = predicted['domains'][0]
    assert [(r['id'], r['action']) for r in dom['removed']] == [(a0, 'merged into %s' % a2), (a1, 'merged into %s' % a2)]
    assert dict((k['id'], k['kept_by']) for k in dom['kept']) == {
        a2: ['keep_last', 'synthetic full of chain %s' % a0], a3: ['keep_last', 'newest']}
    assert dom['merges'] == [dict(chain=a0, full=a2, merged=[a0, a1], moved=[a3])]
    assert dom['checkpoints_deleted'] == [prefix + a0, prefix + a1]
    assert dom['incomplete_removed'] == [str(debris)]
    assert predicted['removed'] == ['%s/%s' % (g.name, a0), '%s/%s' % (g.name, a1)]
    assert predicted['diff'] == dict(before={g.name: [a0, a1, a2, a3]}, after={g.name: [a2, a3]})

    done = ok(prune(repo, diff=True, **args))
    assert done['changed'] is True
    for key in ('removed', 'diff', 'msg'):
        assert done[key] == predicted[key].replace('would be ', '') if key == 'msg' else done[key] == predicted[key]
    assert done['domains'][0]['checkpoints_deleted'] == [prefix + a0, prefix + a1]
    assert g.checkpoints() == [prefix + a2, prefix + a3]
    assert not debris.exists()
    # The repository: one chain named after the synthetic full, whose overlay chain is two images deep.
    assert sorted(os.listdir(str(repo / g.name))) == ['.lock', a2]
    assert sorted(os.listdir(str(repo / g.name / a2))) == [a2, a3]
    full = read_manifest(repo / g.name / a2 / a2)
    assert (full['level'], full['parent'], full['chain'], full['synthetic']['merged']) == ('full', None, a2, [a0, a1])
    assert full['disks'][0]['backing'] is None
    assert 'backing-filename' not in image_info(repo / g.name / a2 / a2 / 'vda.qcow2')
    assert read_manifest(repo / g.name / a2 / a3)['chain'] == a2
    assert oct(os.stat(str(repo / g.name / a2 / a2 / 'vda.qcow2')).st_mode & 0o777) == oct(0o600)

    again = ok(prune(repo, **args))
    assert again['changed'] is False, again['msg']
    assert ok(prune(repo, check_mode=True, **args))['changed'] is False
    info = ok(ftlib.backup_info(repo, domain=g.name, verify=True))
    assert [b['id'] for c in info['domains'][0]['chains'] for b in c['backups']] == [a2, a3]
    for backup_id in (a2, a3):
        assert_point(repo, g.name, backup_id, setup.snaps[backup_id], tmp_path / backup_id)

    # The chain goes on from the moved backup: an incremental in the new chain, restorable.
    new = setup.backup('p4', 6 * MiB, 0x55)
    assert (new['level'], new['parent'], new['chain']) == ('incremental', a3, a2)
    assert_point(repo, g.name, new['id'], setup.snaps[new['id']], tmp_path / 'new')


def test_protect_and_keep_chains_remove_whole_chains(setup, tmp_path):
    g, repo = setup.guest, setup.repo
    a2, a3, a4 = setup.ids[2:5]
    prefix = checkpoint_prefix(repo)
    b0 = setup.backup('p5', 2 * MiB, 0x66, level='full')['id']
    args = dict(domains=[g.name], keep_chains=1)

    protected = ok(prune(repo, protect=[a3], **args))
    assert protected['domains'][0]['protected'] == [a3]
    assert read_manifest(repo / g.name / a2 / a3)['protected'] is True
    # a4 (newer, not protected) goes; a3 stays protected with a2, which it needs.
    assert protected['removed'] == ['%s/%s' % (g.name, a4)]
    kept = dict((k['id'], k['kept_by']) for k in protected['domains'][0]['kept'])
    assert kept[a3] == ['protected'] and kept[a2] == ['needed by %s' % a3]
    assert prefix + a4 not in g.checkpoints()
    assert ok(prune(repo, protect=[a3], **args))['changed'] is False

    predicted = ok(prune(repo, unprotect=[a3], check_mode=True, **args))
    assert predicted['removed'] == ['%s/%s' % (g.name, a2), '%s/%s' % (g.name, a3)]
    assert read_manifest(repo / g.name / a2 / a3)['protected'] is True
    done = ok(prune(repo, unprotect=[a3], **args))
    assert done['removed'] == predicted['removed']
    assert done['domains'][0]['checkpoints_deleted'] == [prefix + a2, prefix + a3]
    assert sorted(os.listdir(str(repo / g.name))) == ['.lock', b0]
    assert g.checkpoints() == [prefix + b0]
    assert ok(prune(repo, **args))['changed'] is False
    assert_point(repo, g.name, b0, setup.snaps[b0], tmp_path / 'b0')


def test_bad_input_changes_nothing(setup):
    g = setup.guest
    before = tree(setup.base)
    failed(prune(setup.base, protect=['20200101T000000Z']), 'exactly one domain')
    failed(prune(setup.base, domains=[g.name], protect=['20200101T000000Z']), 'has no backup 20200101T000000Z')
    failed(prune(setup.base, keep_daily=-2), 'keep_daily is -2')
    # S3 repositories are pruned (test_prune_s3.py), but not merged: refused before anything is read.
    failed(prune('s3://bucket/prefix', keep_daily=1, merge=True), 'merge in the local repository')
    assert tree(setup.base) == before


def test_a_merge_that_cannot_be_proved_changes_nothing(setup, tmp_path):
    """A damaged integrity map of the point to merge into: the merge fails before anything is written."""
    g = setup.guest
    a0, a2 = setup.ids[0], setup.ids[2]
    repo = tmp_path / 'repo'
    sh('cp', '-a', '--sparse=always', setup.base, repo)
    with open(str(repo / g.name / a0 / a2 / 'vda.blockhash.gz'), 'r+b') as damaged:
        damaged.seek(20)
        damaged.write(b'\xff\xff\xff\xff')
    before = tree(repo)
    failed(prune(repo, domains=[g.name], keep_last=2, merge=True), 'hash map', a2)
    assert tree(repo) == before


@pytest.mark.parametrize('step', MERGE_STEPS)
def test_kill_during_merge_leaves_every_kept_point_restorable(setup, step, tmp_path):
    """kill -9 right after each step of a merge; then every whole point restores bit-exact, and the
    next run finishes (or undoes) the merge, after which the kept points restore again."""
    g = setup.guest
    a0, a1, a2, a3 = setup.ids[:4]
    repo = tmp_path / 'repo'
    sh('cp', '-a', '--sparse=always', setup.base, repo)
    args = dict(domains=[g.name], keep_last=2, merge=True)
    killed = None
    try:
        killed = prune(repo, env={'VIRTOPS_TEST_PRUNE_KILL_AFTER': step}, **args)
    except ModuleFailed as exc:
        assert 'rc -9' in str(exc), exc
    assert killed is None, 'the module was not killed after step %s: %r' % (step, killed)
    scratch = tmp_path / 'scratch'
    scratch.mkdir()
    seen = assert_every_copy(repo, g.name, setup.snaps, scratch)
    assert {a2, a3} <= seen, 'after a kill at %s, points %s are missing' % (step, {a2, a3} - seen)
    assert os.path.exists(str(repo / g.name / ('.merge-%s.json' % a0)))

    resumed = ok(prune(repo, **args))
    assert resumed['changed'] is True
    recovered = resumed['domains'][0]['recovered']
    assert [r['direction'] for r in recovered] == ['back' if step in ('journal', 'image', 'verified') else 'forward']
    assert sorted(os.listdir(str(repo / g.name))) == ['.lock', a2]
    assert sorted(os.listdir(str(repo / g.name / a2))) == [a2, a3]
    assert ok(prune(repo, **args))['changed'] is False
    assert assert_every_copy(repo, g.name, setup.snaps, scratch) == {a2, a3}
    for backup_id in (a2, a3):
        assert_point(repo, g.name, backup_id, setup.snaps[backup_id], tmp_path / backup_id)
    assert json.dumps(read_manifest(repo / g.name / a2 / a2)['synthetic']['merged']) == json.dumps([a0, a1])
