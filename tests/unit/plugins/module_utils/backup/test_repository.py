# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The repository: only backups with a valid manifest exist; bad input changes nothing."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import json
import os
import stat

import pytest

from ansible_collections.virtops.libvirt.plugins.module_utils.backup import _repository as r


def manifest(bid, chain, level='full', parent=None, started='2026-11-26T01:00:00.000000Z', **extra):
    m = dict(format=r.MANIFEST_FORMAT, format_version=r.MANIFEST_VERSION, complete=True, id=bid, chain=chain,
             domain='vm1', level=level, mode='pull', parent=parent, started=started, disks=[], checkpoint='ck-' + bid)
    m.update(extra)
    return m


def add_backup(repo, bid, chain, **kw):
    path = repo.backup_dir('vm1', chain, bid)
    repo.commit(path, manifest(bid, chain, **kw))
    return path


@pytest.fixture
def repo(tmp_path):
    return r.Repository(str(tmp_path / 'repo'), create=True)


def test_new_repository_layout_and_modes(repo):
    assert stat.S_IMODE(os.stat(repo.path).st_mode) == 0o711
    marker = os.path.join(repo.path, r.REPOSITORY_FILE)
    assert stat.S_IMODE(os.stat(marker).st_mode) == 0o600
    info = json.load(open(marker))
    assert info['format_version'] == 1 and info['id'] == repo.id
    path = add_backup(repo, '20261126T010000Z', '20261126T010000Z')
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(os.path.join(path, r.MANIFEST)).st_mode) == 0o600


def test_only_backups_with_a_manifest_exist_and_partials_are_removed(repo):
    add_backup(repo, '20261126T010000Z', '20261126T010000Z')
    partial = repo.backup_dir('vm1', '20261126T010000Z', '20261126T020000Z')
    open(os.path.join(partial, 'vda.qcow2'), 'w').close()
    assert [b.id for b in repo.backups('vm1')] == ['20261126T010000Z']
    assert repo.remove_partials('vm1') == [partial]
    assert not os.path.exists(partial)


@pytest.mark.parametrize('damage', ['corrupted', 'truncated', 'newer', 'incomplete'])
def test_damaged_manifests_are_reported_not_listed(repo, damage):
    path = add_backup(repo, '20261126T010000Z', '20261126T010000Z')
    mpath = os.path.join(path, r.MANIFEST)
    text = open(mpath).read()
    if damage == 'corrupted':
        text = text.replace('"id"', '"id"  ::')
    elif damage == 'truncated':
        text = text[:len(text) // 2]
    elif damage == 'newer':
        text = text.replace('"format_version": 1', '"format_version": 99')
    else:
        text = text.replace('"complete": true', '"complete": false')
    open(mpath, 'w').write(text)
    errors = []
    assert repo.backups('vm1', errors) == []
    assert len(errors) == 1
    if damage == 'newer':
        assert 'upgrade' in errors[0]
    # Nothing lost: the damaged backup is not removed as a partial.
    assert repo.remove_partials('vm1') == []
    assert os.path.exists(mpath)


def test_find_by_id_latest_and_time(repo):
    add_backup(repo, '20261126T010000Z', '20261126T010000Z', started='2026-11-26T01:00:00.000000Z')
    add_backup(repo, '20261126T020000Z', '20261126T010000Z', level='incremental', parent='20261126T010000Z',
               started='2026-11-26T02:00:00.000000Z')
    assert repo.find('vm1', 'latest').id == '20261126T020000Z'
    assert repo.find('vm1', '20261126T010000Z').id == '20261126T010000Z'
    assert repo.find('vm1', '2026-11-26T01:30:00Z').id == '20261126T010000Z'
    assert repo.find('vm1', '2026-11-26T03:30:00').id == '20261126T020000Z'
    assert [b.id for b in repo.lineage(repo.find('vm1', 'latest'))] == ['20261126T020000Z', '20261126T010000Z']
    with pytest.raises(r.RepositoryError, match='not found'):
        repo.find('vm1', '20261126T030000Z')
    with pytest.raises(r.RepositoryError, match='no backup'):
        repo.find('vm1', '2026-11-25T00:00:00Z')
    with pytest.raises(r.RepositoryError):
        repo.find('vm1', 'yesterday')


@pytest.mark.parametrize('name', ['../etc', 'a/b', '.hidden', '..', '', 'x' * 300])
def test_names_that_would_escape_the_repository_are_refused(repo, name):
    with pytest.raises(r.RepositoryError):
        repo.domain_dir(name)


def test_a_file_or_foreign_directory_is_not_taken_as_a_repository(tmp_path):
    f = tmp_path / 'file'
    f.write_text('x')
    with pytest.raises(r.RepositoryError, match='not a directory'):
        r.Repository(str(f), create=True)
    d = tmp_path / 'data'
    d.mkdir()
    (d / 'precious').write_text('x')
    with pytest.raises(r.RepositoryError, match='not empty'):
        r.Repository(str(d), create=True)
    assert (d / 'precious').read_text() == 'x'
    with pytest.raises(r.RepositoryError, match='absolute'):
        r.Repository('relative/path', create=True)


def test_lock_is_exclusive(repo):
    fd = repo.lock('vm1')
    try:
        with pytest.raises(r.LockedError, match='another backup'):
            repo.lock('vm1')
    finally:
        os.close(fd)
    os.close(repo.lock('vm1'))


def test_new_ids_are_unique_and_sort_in_time_order(repo):
    moment = datetime.datetime(2026, 11, 26, 1, 0, 0, tzinfo=datetime.timezone.utc)
    first = repo.new_backup_id('vm1', moment)
    add_backup(repo, first, first)
    second = repo.new_backup_id('vm1', moment)
    assert second == first + '-1'
    assert repo.new_backup_id('vm1', moment, taken=lambda bid: bid == second) == first + '-2'
