# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Failures a user runs into, and check mode: a clear message, and nothing left behind (no job,
no checkpoint, no staging file, no run directory, no partial backup)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os

import pytest

from support.host import MiB, sh
from support.modules import failed, ok
from support.repository import backup_dirs, checkpoint_prefix, read_manifest
import ftlib


@pytest.fixture
def place(workroot, request):
    """A fresh directory for one test's repositories."""
    path = workroot / ('err-%s' % request.node.name.replace('[', '-').replace(']', '').replace('/', '_'))
    path.mkdir()
    return path


def test_unknown_domain(place):
    repo = place / 'repo'
    result = ftlib.backup('ft-no-such-domain', repo)
    failed(result, 'domain ft-no-such-domain not found')
    assert not repo.exists()


@pytest.mark.parametrize('name', ['ft/../../etc', '..', 'ft..x', '.ft-hidden', 'a/b'])
def test_domain_name_that_is_not_a_path_component(place, name):
    repo = place / 'repo'
    result = ftlib.backup(name, repo)
    failed(result, 'cannot be used in the repository')
    assert not repo.exists()
    restored = ftlib.restore(name, repo, place / 'dest')
    assert restored.get('failed') is True
    assert not (place / 'dest').exists()


def test_repository_is_a_file(guest, place):
    repo = place / 'repo'
    repo.write_text('not a repository\n')
    debris = ftlib.Debris(guest, repo)
    failed(ftlib.backup(guest.name, repo), 'exists and is not a directory')
    assert repo.read_text() == 'not a repository\n'
    debris.assert_clean()
    failed(ftlib.backup(guest.name, repo, check_mode=True), 'exists and is not a directory')


def test_repository_below_a_file(guest, place):
    (place / 'file').write_text('x')
    repo = place / 'file' / 'repo'
    debris = ftlib.Debris(guest, repo)
    failed(ftlib.backup(guest.name, repo), 'cannot create repository')
    debris.assert_clean()
    assert (place / 'file').read_text() == 'x'


def test_repository_not_empty(guest, place):
    repo = place / 'repo'
    repo.mkdir()
    (repo / 'precious.txt').write_text('keep me')
    debris = ftlib.Debris(guest, repo)
    failed(ftlib.backup(guest.name, repo), 'not empty and not a backup repository')
    assert os.listdir(repo) == ['precious.txt']
    debris.assert_clean()


def test_repository_on_read_only_filesystem(guest, place):
    ro = place / 'ro'
    ro.mkdir()
    sh('mount', '-t', 'tmpfs', '-o', 'ro,size=1m', 'tmpfs', ro)
    try:
        _read_only_new_repository(guest, ro / 'repo')
    finally:
        sh('umount', ro)


def _read_only_new_repository(guest, repo):
    debris = ftlib.Debris(guest, repo)
    result = ftlib.backup(guest.name, repo)
    failed(result)
    assert 'not writable' in result['msg'] or 'Read-only file system' in result['msg'], result['msg']
    assert not repo.exists()
    debris.assert_clean()
    predicted = ftlib.backup(guest.name, repo, check_mode=True)
    failed(predicted, 'not writable')


def test_existing_repository_turned_read_only(guest, tmpfs_mounts):
    mnt = tmpfs_mounts['spare']
    repo = mnt / 'repo-ro'
    first = ok(ftlib.backup(guest.name, repo, level='full'))
    sh('mount', '-o', 'remount,ro', mnt)
    try:
        debris = ftlib.Debris(guest, repo)
        result = ftlib.backup(guest.name, repo)
        failed(result, 'not writable')
        debris.assert_clean()
    finally:
        sh('mount', '-o', 'remount,rw', mnt)
    assert [b.name for b in backup_dirs(repo, guest.name)] == [first['backup']['id']]


@pytest.mark.parametrize('level', ['incremental', 'differential'])
def test_level_needs_a_chain(guest, place, level):
    repo = place / 'repo'
    debris = ftlib.Debris(guest, repo)
    result = ftlib.backup(guest.name, repo, level=level)
    failed(result, 'backup of %s: no backup of this domain' % guest.name, 'cannot take', level)
    debris.assert_clean()
    assert backup_dirs(repo, guest.name) == []
    # no empty domain directory with a lock file is left behind by the failed first run
    assert not (repo / guest.name).exists()
    predicted = ftlib.backup(guest.name, repo, level=level, check_mode=True)
    failed(predicted, 'cannot take', level)


def test_quiesce_always_without_a_guest_agent(guest, place):
    """quiesce: always refuses a guest without a connected agent before anything changes; auto
    then takes a crash-consistent backup and says so."""
    repo = place / 'repo'
    debris = ftlib.Debris(guest, repo)
    failed(ftlib.backup(guest.name, repo, quiesce='always'),
           'quiesce: always needs the QEMU guest agent in domain %s' % guest.name, 'Nothing was changed')
    failed(ftlib.backup(guest.name, repo, quiesce='always', check_mode=True), 'needs the QEMU guest agent')
    debris.assert_clean()
    assert not (repo / guest.name).exists()
    predicted = ok(ftlib.backup(guest.name, repo, check_mode=True))['backup']
    assert predicted['quiesced'] is False
    taken = ok(ftlib.backup(guest.name, repo))
    assert taken['backup']['quiesced'] is False and taken['backup']['frozen_filesystems'] == 0
    assert not taken.get('warnings')
    manifest = json.loads((repo / guest.name / taken['backup']['chain'] / taken['backup']['id']
                           / 'manifest.json').read_text())
    assert manifest['quiesced'] is False


def test_unknown_disk(guest, place):
    repo = place / 'repo'
    debris = ftlib.Debris(guest, repo)
    failed(ftlib.backup(guest.name, repo, disks=['vdz']), 'has no disk vdz', 'vda, vdb')
    debris.assert_clean()
    assert not (repo / guest.name).exists()


@pytest.mark.parametrize('mode', ['pull', 'push'])
def test_repository_full_during_the_backup(guest, tmpfs_mounts, mode):
    """The job starts (and creates its checkpoint), then the repository runs out of space: the run
    ends the job, deletes the checkpoint and removes every file it made."""
    repo = tmpfs_mounts['small'] / ('repo-%s' % mode)
    # More data than the 1 MiB file system holds (the shadow follows, so the timeline stays right).
    guest.disks['vda'].write(20 * MiB, 2 * MiB, 0x5e)
    debris = ftlib.Debris(guest, repo)
    result = ftlib.backup(guest.name, repo, mode=mode)
    msg = failed(result)
    assert 'no space left' in msg.lower(), msg
    debris.assert_clean()
    assert backup_dirs(repo, guest.name) == []
    prefix = checkpoint_prefix(repo)
    assert not [c for c in guest.checkpoints() if c.startswith(prefix)]
    listed = ok(ftlib.backup_info(repo))
    assert [d['chains'] for d in listed['domains']] in ([], [[]])


def test_scratch_dir_qemu_cannot_write(guest, place):
    """Pull mode with a scratch directory QEMU's user cannot enter: the job does not start."""
    scratch = place / 'private'
    scratch.mkdir(mode=0o700)
    os.chmod(scratch, 0o700)
    repo = place / 'repo'
    debris = ftlib.Debris(guest, repo)
    result = ftlib.backup(guest.name, repo, mode='pull', scratch_dir=str(scratch))
    failed(result)
    debris.assert_clean()
    assert os.listdir(scratch) == []


def test_restore_unknown_backup(timeline, place):
    dest = place / 'dest'
    result = ftlib.restore(timeline.guest.name, timeline.repos['pull'], dest, backup='20000101T000000Z')
    failed(result, 'backup 20000101T000000Z of domain %s not found' % timeline.guest.name)
    assert not dest.exists()
    result = ftlib.restore(timeline.guest.name, timeline.repos['pull'], dest, backup='yesterday')
    failed(result, "'yesterday' is neither a backup id")
    result = ftlib.restore('ft-not-backed-up', timeline.repos['pull'], dest)
    failed(result, 'holds no backup of domain ft-not-backed-up')
    result = ftlib.restore(timeline.guest.name, place / 'nothing-here', dest)
    failed(result, 'repository %s does not exist' % (place / 'nothing-here'))
    assert not dest.exists()


def test_info_on_something_that_is_not_a_repository(place):
    failed(ftlib.backup_info(place), 'is not a backup repository')
    failed(ftlib.backup_info(place / 'missing'), 'repository %s does not exist' % (place / 'missing'))


# -- check mode ------------------------------------------------------------------------------------

def test_check_mode_on_a_new_repository(guest, place):
    repo = place / 'repo'
    debris = ftlib.Debris(guest, repo)
    for mode in ('pull', 'push'):
        result = ok(ftlib.backup(guest.name, repo, mode=mode, check_mode=True, diff=True))
        assert result['changed'] is True
        b = result['backup']
        assert b['id'] is None and b['level'] == 'full' and b['mode'] == mode
        assert b['reason'] == 'full: no backup of this domain in the repository yet'
        assert [d['name'] for d in b['disks']] == ['vda', 'vdb']
        assert result['diff']['before'] == dict(backups=[])
        assert len(result['diff']['after']['backups']) == 1
    assert not repo.exists()
    debris.assert_clean()


def test_check_mode_on_an_existing_chain(guest, place):
    repo = place / 'repo'
    full = ok(ftlib.backup(guest.name, repo))
    debris = ftlib.Debris(guest, repo)
    listing = sorted(os.walk(repo))
    predicted = {}
    for mode in ('pull', 'push'):
        result = ok(ftlib.backup(guest.name, repo, mode=mode, check_mode=True))
        assert result['changed'] is True
        b = predicted[mode] = result['backup']
        assert b['id'] is None and b['level'] == 'incremental'
        assert b['parent'] == full['backup']['id'] and b['chain'] == full['backup']['id']
    result = ok(ftlib.backup(guest.name, repo, level='differential', check_mode=True))
    assert result['backup']['level'] == 'differential'
    result = ok(ftlib.backup(guest.name, repo, level='full', check_mode=True))
    assert result['backup']['level'] == 'full' and result['backup']['reason'] == 'full: requested'
    debris.assert_clean()
    assert sorted(os.walk(repo)) == listing

    # The real run does what check mode predicted.
    real = ok(ftlib.backup(guest.name, repo, mode='push', verify=True, diff=True))['backup']
    for key in ('level', 'reason', 'parent', 'chain', 'mode', 'skipped_disks'):
        assert real[key] == predicted['push'][key], key
    assert [(d['name'], d['level']) for d in real['disks']] == [
        (d['name'], d['level']) for d in predicted['push']['disks']]
    assert real['verified'] is True and read_manifest(real['path'])['verified'] is True
