# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What interrupted runs and a forgetful libvirt leave behind, and how the next backup copes:
partial directories, orphan checkpoints, stale jobs, a held lock, lost checkpoint metadata and a
lost bitmap."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import fcntl
import os
import shutil

import libvirt
import pytest

from support.host import qemu_owner, SOCKET_ROOT
from support.images import assert_same_content
from support.modules import failed, ok
from support.repository import backup_dirs, checkpoint_prefix, repo_id, staging_files
import ftlib

DISKS = ('vda', 'vdb')


@pytest.fixture
def repo_with_full(guest, workroot, request):
    repo = workroot / ('res-%s' % request.node.name)
    full = ok(ftlib.backup(guest.name, repo))
    return repo, full['backup']


def test_a_second_run_waits_for_nobody(guest, repo_with_full):
    """The domain is locked in the repository while a backup runs: a second one fails at once."""
    repo, _full = repo_with_full
    fd = os.open(str(repo / guest.name / '.lock'), os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.pwrite(fd, b'4242\n', 0)
        debris = ftlib.Debris(guest, repo)
        result = ftlib.backup(guest.name, repo)
        failed(result, 'another backup of domain %s into repository' % guest.name, 'is running')
        debris.assert_clean()
    finally:
        os.close(fd)
    ok(ftlib.backup(guest.name, repo))


def test_debris_of_an_interrupted_run_is_removed(guest, repo_with_full):
    repo, full = repo_with_full
    partial = repo / guest.name / full['chain'] / '20990101T000000Z'
    partial.mkdir()
    (partial / 'vda.qcow2').write_bytes(b'half a backup')
    prefix = checkpoint_prefix(repo)
    orphan = prefix + '20990101T000001Z'
    guest.dom.checkpointCreateXML('<domaincheckpoint><name>%s</name></domaincheckpoint>' % orphan, 0)

    listed = ok(ftlib.backup_info(repo, domain=guest.name))
    assert [b['id'] for b in listed['domains'][0]['chains'][0]['backups']] == [full['id']]

    result = ok(ftlib.backup(guest.name, repo))
    assert result['removed_partial'] == [str(partial)]
    assert result['removed_checkpoints'] == [orphan]
    assert result['aborted_stale_job'] is False
    assert not partial.exists()
    assert orphan not in guest.checkpoints()
    assert result['backup']['level'] == 'incremental' and result['backup']['parent'] == full['id']


def _pull_job_xml(socket, scratch):
    return ("<domainbackup mode='pull'><server transport='unix' socket='%s'/><disks>"
            "<disk name='vda' backup='yes' type='file'><scratch file='%s'/></disk>"
            "<disk name='vdb' backup='no'/></disks></domainbackup>" % (socket, scratch))


def _qemu_dir(path):
    path.mkdir()
    uid, gid = qemu_owner()
    os.chown(str(path), uid, gid)
    return path


def test_stale_job_of_this_repository_is_aborted(guest, repo_with_full, workroot):
    """A pull job left by a run of this repository that died with its watchdog: its export socket is in a
    run directory named after the repository and the domain, which the next run recognises, aborts and
    removes."""
    repo, full = repo_with_full
    short_id = repo_id(repo).replace('-', '')[:8]
    sock_dir = _qemu_dir(SOCKET_ROOT / ('%s-%s-stalejob' % (short_id, guest.name)))
    scratch = _qemu_dir(workroot / 'stale-job') / ('%s-stale.scratch.qcow2' % guest.name)
    guest.dom.backupBegin(_pull_job_xml(sock_dir / 'nbd.sock', scratch), None, 0)
    assert guest.job_type() != libvirt.VIR_DOMAIN_JOB_NONE
    result = ok(ftlib.backup(guest.name, repo))
    assert result['aborted_stale_job'] is True
    assert result['backup']['level'] == 'incremental' and result['backup']['parent'] == full['id']
    assert guest.job_type() == libvirt.VIR_DOMAIN_JOB_NONE
    assert not sock_dir.exists(), 'the stale run directory was left'
    assert staging_files(repo) == []


def test_job_of_someone_else_is_left_alone(guest, repo_with_full, workroot):
    repo, full = repo_with_full
    other = _qemu_dir(workroot / 'other-tool')
    guest.dom.backupBegin(_pull_job_xml(other / 'nbd.sock', other / 'scratch.qcow2'), None, 0)
    try:
        checkpoints = guest.checkpoints()
        result = ftlib.backup(guest.name, repo)
        failed(result, 'busy with a backup job that repository %s did not start' % repo)
        assert guest.job_type() != libvirt.VIR_DOMAIN_JOB_NONE, 'the other job was aborted'
        assert guest.checkpoints() == checkpoints
        assert [b.name for b in backup_dirs(repo, guest.name)] == [full['id']]
    finally:
        guest.dom.abortJob()
    assert staging_files(repo) == []


# -- libvirt forgets (run last: they take the shared domain's checkpoints away) -----------------

def _restore_compare(t, point, workroot):
    dest = workroot / 'restore-repairs' / point.repo / point.id
    result = ok(ftlib.restore(t.guest.name, t.repos[point.repo], dest, backup=point.id))
    for entry in result['disks']:
        assert_same_content(point.snaps[entry['name']].path, entry['path'], 'qcow2')
    shutil.rmtree(dest)


def test_lost_checkpoint_metadata_is_redefined_from_the_repository(repairs, workroot):
    t = repairs
    assert [c for c in t.lost_checkpoints if c.startswith('virtops-')] == []
    for point, repo in zip(t.points['redefined'], ('pull', 'push')):
        base = t.parent(point)
        assert base.id == t.points['online-again'][0 if repo == 'pull' else 1].id
        assert point.level == 'incremental'
        assert 'redefined checkpoint %s from the repository' % base.backup['checkpoint'] in point.backup['reason']
        for name in DISKS:
            assert point.disk(name)['dirty_bytes'] == t.expected_dirty(point, name)
        _restore_compare(t, point, workroot)


def test_lost_bitmap_starts_a_new_chain(repairs, workroot):
    t = repairs
    pull, push = t.points['bitmap-lost']
    assert pull.level == 'full'
    assert pull.backup['chain'] == pull.id != t.points['pull'][0].id
    assert pull.backup['reason'].startswith('full: the bitmap of checkpoint %s cannot be trusted' % t.removed_bitmap)
    _restore_compare(t, pull, workroot)
    # The other repository's bitmaps are intact: it goes on incrementally.
    assert push.level == 'incremental'
    assert push.backup['parent'] == t.points['redefined'][1].id
    for name in DISKS:
        assert push.disk(name)['dirty_bytes'] == t.expected_dirty(push, name)
    _restore_compare(t, push, workroot)
    # The old chain still restores.
    _restore_compare(t, t.points['redefined'][0], workroot)
    listing = ok(ftlib.backup_info(t.repos['pull'], verify=True))
    assert len(listing['domains'][0]['chains']) == 2
    assert listing['verified_ok'] is True
