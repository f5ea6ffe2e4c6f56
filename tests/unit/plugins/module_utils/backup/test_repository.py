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


def disk_entry(name='vda', size=64 * 1024 * 1024, parent=None):
    return dict(name=name, virtual_size=size, image='%s.qcow2' % name,
                backing='../%s/%s.qcow2' % (parent, name) if parent else None, file_size=196608,
                integrity=dict(algorithm='sha256', block_size=65536, map='%s.blockhash.gz' % name),
                image_digest='ab' * 32)


def manifest(bid, chain, level='full', parent=None, started='2026-11-26T01:00:00.000000Z', **extra):
    # A manifest of format version 1 (SHA-256 block hash), as versions before 2 wrote them: still read.
    m = dict(format=r.MANIFEST_FORMAT, format_version=1, complete=True, id=bid, chain=chain,
             domain='vm1', level=level, mode='pull', parent=parent, started=started,
             disks=[disk_entry(parent=parent)], checkpoint='virtops-0123abcd-' + bid,
             repository_id='e02f39a2-1111-4222-8333-444455556666', domain_xml='domain.xml',
             checkpoint_xml='checkpoint.xml')
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
    assert info['format_version'] == r.FORMAT_VERSION == 2 and info['id'] == repo.id
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


BAD_FIELDS = [
    ('disks[0].name', lambda m: m['disks'][0].update(name='../x')),
    ('disks[0].name', lambda m: m['disks'][0].update(name='/abs/x')),
    ('disks[0].name', lambda m: m['disks'][0].update(name='-fraw')),
    ('disks[0].image', lambda m: m['disks'][0].update(image='/root/secret')),
    ('disks[0].image', lambda m: m['disks'][0].update(image='../../other.qcow2')),
    ('disks[0].integrity.map', lambda m: m['disks'][0]['integrity'].update(map='/etc/shadow')),
    ('disks[0].integrity.block_size', lambda m: m['disks'][0]['integrity'].update(block_size=512)),
    ('disks[0].integrity.algorithm', lambda m: m['disks'][0]['integrity'].update(algorithm='md5')),
    ('disks[0].virtual_size', lambda m: m['disks'][0].update(virtual_size=0)),
    ('disks[0].virtual_size', lambda m: m['disks'][0].update(virtual_size=-1)),
    ('disks[0].virtual_size', lambda m: m['disks'][0].update(virtual_size='64M')),
    ('disks[0].virtual_size', lambda m: m['disks'][0].update(virtual_size=True)),
    ('disks[0].backing', lambda m: m['disks'][0].update(backing='/root/secret')),
    ('disks[0].image_digest', lambda m: m['disks'][0].update(image_digest='x')),
    ('disks', lambda m: m.update(disks=[])),
    ('checkpoint_xml', lambda m: m.update(checkpoint_xml='/etc/passwd')),
    ('domain_xml', lambda m: m.update(domain_xml='../domain.xml')),
    ('repository_id', lambda m: m.update(repository_id='not-a-uuid')),
    ('checkpoint', lambda m: m.update(checkpoint='-fraw')),
    ('parent', lambda m: m.update(parent='20261126T000000Z')),
    ('mode', lambda m: m.update(mode='telepathy')),
    ('started', lambda m: m.update(started=12)),
]


@pytest.mark.parametrize('field,damage', BAD_FIELDS, ids=['%s-%d' % (f, i) for i, (f, _d) in enumerate(BAD_FIELDS)])
def test_a_bad_manifest_field_is_reported_with_file_and_field(repo, field, damage):
    path = add_backup(repo, '20261126T010000Z', '20261126T010000Z')
    mpath = os.path.join(path, r.MANIFEST)
    m = json.load(open(mpath))
    damage(m)
    open(mpath, 'w').write(json.dumps(m))
    errors = []
    assert repo.backups('vm1', errors) == []
    assert len(errors) == 1
    assert mpath in errors[0] and ('field %s ' % field) in errors[0], errors[0]


def test_ids_that_do_not_match_their_directories_are_refused(repo):
    path = add_backup(repo, '20261126T010000Z', '20261126T010000Z')
    mpath = os.path.join(path, r.MANIFEST)
    m = json.load(open(mpath))
    m['id'] = m['chain'] = '20261126T020000Z'
    m['checkpoint'] = 'virtops-0123abcd-20261126T020000Z'
    open(mpath, 'w').write(json.dumps(m))
    errors = []
    assert repo.backups('vm1', errors) == [] and 'names backup' in errors[0]


def test_symbolic_links_in_the_repository_are_reported_not_followed(repo, tmp_path):
    path = add_backup(repo, '20261126T010000Z', '20261126T010000Z')
    outside = tmp_path / 'outside'
    os.rename(path, str(outside))
    os.symlink(str(outside), path)
    errors = []
    assert repo.backups('vm1', errors) == []
    assert 'symbolic link' in errors[0]
    # The manifest as a link: refused as well.
    os.unlink(path)
    os.rename(str(outside), path)
    mpath = os.path.join(path, r.MANIFEST)
    os.rename(mpath, str(tmp_path / 'm.json'))
    os.symlink(str(tmp_path / 'm.json'), mpath)
    errors = []
    assert repo.backups('vm1', errors) == [] and 'symbolic link' in errors[0], errors
    # Partial clean-up never follows a link either.
    os.unlink(mpath)
    os.rename(path, str(outside))
    os.symlink(str(outside), path)
    assert repo.remove_partials('vm1') == []
    assert outside.exists()


def test_repository_id_must_be_a_uuid(repo):
    marker = os.path.join(repo.path, r.REPOSITORY_FILE)
    info = json.load(open(marker))
    info['id'] = '../../x'
    open(marker, 'w').write(json.dumps(info))
    with pytest.raises(r.RepositoryError, match='UUID'):
        r.Repository(repo.path)


def test_repository_root_must_be_ours_and_not_writable_by_others(repo):
    repo.check_owner()
    os.chmod(repo.path, 0o777)
    with pytest.raises(r.RepositoryError, match='writable by group or others'):
        repo.check_owner()
    os.chmod(repo.path, 0o711)
    os.chown(repo.path, 65534, 65534)
    try:
        with pytest.raises(r.RepositoryError, match='owned by uid 65534'):
            repo.check_owner()
    finally:
        os.chown(repo.path, 0, 0)


def test_a_repository_in_a_directory_another_user_can_change_is_refused(tmp_path):
    # Root never works by path below a directory another user owns or can write: they could swap
    # the repository (or one of its directories) between two steps. Found by QA (issue 13):
    # instant restore, export and backup all used such a repository.
    os.chmod(str(tmp_path), 0o755)
    parent = tmp_path / 'theirs'
    parent.mkdir()
    path = str(parent / 'repo')
    r.Repository(path, create=True)
    r.Repository(path)
    os.chown(str(parent), 65534, 65534)
    with pytest.raises(r.RepositoryError, match='theirs is owned by uid 65534'):
        r.Repository(path)
    with pytest.raises(r.RepositoryError, match='owned by uid 65534'):
        r.Repository(str(parent / 'new'), create=True)
    assert not (parent / 'new').exists()
    os.chown(str(parent), 0, 0)
    os.chmod(str(parent), 0o777)
    with pytest.raises(r.RepositoryError, match='writable by group or others'):
        r.Repository(path)
    os.chmod(str(parent), 0o1777)           # sticky, like /tmp: nobody else can rename root's entries
    r.Repository(path)
    os.chmod(str(parent), 0o755)
    link = tmp_path / 'link'                # a path through a link: the resolved directories count too
    link.symlink_to(parent)
    os.chown(str(parent), 65534, 65534)
    with pytest.raises(r.RepositoryError, match='owned by uid 65534'):
        r.Repository(str(link / 'repo'))
    os.chown(str(parent), 0, 0)


def test_staging_is_root_owned_with_one_directory_per_domain(repo):
    path = repo.staging_dir('vm1', (65534, 65534))
    staging = os.path.join(repo.path, r.STAGING)
    assert (os.stat(staging).st_uid, stat.S_IMODE(os.stat(staging).st_mode)) == (0, 0o711)
    st = os.stat(path)
    assert path == os.path.join(staging, 'vm1') and (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (65534, 65534, 0o700)


def test_a_symlinked_staging_directory_is_refused_and_its_target_untouched(repo, tmp_path):
    target = tmp_path / 'elsewhere'
    target.mkdir(mode=0o755)
    os.symlink(str(target), os.path.join(repo.path, r.STAGING))
    with pytest.raises(r.RepositoryError, match='symbolic link'):
        repo.staging_dir('vm1', (65534, 65534))
    st = os.stat(str(target))
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (0, 0o755) and os.listdir(str(target)) == []
    # A link in place of the domain's own directory is refused as well.
    os.unlink(os.path.join(repo.path, r.STAGING))
    os.mkdir(os.path.join(repo.path, r.STAGING), 0o711)
    os.symlink(str(target), os.path.join(repo.path, r.STAGING, 'vm1'))
    with pytest.raises(r.RepositoryError, match='symbolic link'):
        repo.staging_dir('vm1', (65534, 65534))
    assert os.stat(str(target)).st_uid == 0


def test_a_fifo_in_place_of_a_manifest_does_not_hang(repo):
    path = add_backup(repo, '20261126T010000Z', '20261126T010000Z')
    mpath = os.path.join(path, r.MANIFEST)
    os.unlink(mpath)
    os.mkfifo(mpath, 0o600)
    errors = []
    assert repo.backups('vm1', errors) == []
    assert 'not a regular file' in errors[0], errors


@pytest.mark.skipif(os.geteuid() != 0, reason='changing a file owner needs root')
def test_a_file_another_user_owns_or_can_write_is_not_read(repo):
    """A file of another user inside a root-owned repository could be rewritten between its check
    and its use (an image header given to QEMU): it is refused, as is a group-writable one."""
    path = add_backup(repo, '20261126T010000Z', '20261126T010000Z')
    mpath = os.path.join(path, r.MANIFEST)
    assert repo.find('vm1', 'latest').id == '20261126T010000Z'
    os.chown(mpath, 65534, 65534)
    errors = []
    assert repo.backups('vm1', errors) == []
    assert 'owned by uid 65534' in errors[0], errors
    os.chown(mpath, 0, 0)
    os.chmod(mpath, 0o664)
    errors = []
    assert repo.backups('vm1', errors) == []
    assert 'writable by group or others' in errors[0], errors
    os.chmod(mpath, 0o644)
    assert repo.find('vm1', 'latest').id == '20261126T010000Z'


def v2(bid, chain, **kw):
    """A manifest of format version 2: the chain hashes its blocks with XXH3-128."""
    m = manifest(bid, chain, **kw)
    m['format_version'] = 2
    for disk in m['disks']:
        disk['integrity']['algorithm'] = 'xxh3-128'
    return m


def test_a_version_2_manifest_hashes_with_xxh3_and_a_version_1_with_sha256(repo):
    path = repo.backup_dir('vm1', '20261126T010000Z', '20261126T010000Z')
    repo.commit(path, v2('20261126T010000Z', '20261126T010000Z'))
    backup = repo.find('vm1', 'latest')
    assert r.chain_algorithm(backup) == 'xxh3-128'
    assert r.manifest_version('xxh3-128') == 2 and r.manifest_version('sha256') == 1
    for version, algorithm in ((2, 'sha256'), (1, 'xxh3-128'), (2, 'md5')):
        m = v2('20261126T010000Z', '20261126T010000Z')
        m['format_version'] = version
        m['disks'][0]['integrity']['algorithm'] = algorithm
        with pytest.raises(r.RepositoryError, match='integrity.algorithm'):
            r.validate_manifest(m, 'manifest.json')


@pytest.mark.parametrize('version', [0, 3, True, '2', None])
def test_a_manifest_version_this_collection_does_not_read_is_refused(repo, version):
    path = add_backup(repo, '20261126T010000Z', '20261126T010000Z')
    mpath = os.path.join(path, r.MANIFEST)
    m = json.load(open(mpath))
    m['format_version'] = version
    open(mpath, 'w').write(json.dumps(m))
    errors = []
    assert repo.backups('vm1', errors) == [] and 'format version' in errors[0]


def test_the_first_version_2_manifest_raises_the_marker_of_a_version_1_repository(tmp_path):
    repo = r.Repository(str(tmp_path / 'repo'), create=True)
    marker = os.path.join(repo.path, r.REPOSITORY_FILE)
    info = json.load(open(marker))
    info['format_version'] = 1                     # as versions before 2 created it
    open(marker, 'w').write(json.dumps(info))
    repo = r.Repository(repo.path)
    add_backup(repo, '20261126T010000Z', '20261126T010000Z')     # a version 1 chain continues
    assert json.load(open(marker))['format_version'] == 1
    path = repo.backup_dir('vm1', '20261127T010000Z', '20261127T010000Z')
    repo.commit(path, v2('20261127T010000Z', '20261127T010000Z'))
    after = json.load(open(marker))
    assert after['format_version'] == 2 and after['id'] == info['id'] and after['created'] == info['created']
    assert stat.S_IMODE(os.stat(marker).st_mode) == 0o600
    assert [r.chain_algorithm(b) for b in repo.backups('vm1')] == ['sha256', 'xxh3-128']


@pytest.mark.parametrize('version', [3, 0, True])
def test_a_repository_marker_of_an_unknown_version_is_refused(repo, version):
    marker = os.path.join(repo.path, r.REPOSITORY_FILE)
    info = json.load(open(marker))
    info['format_version'] = version
    open(marker, 'w').write(json.dumps(info))
    with pytest.raises(r.RepositoryError, match='format version'):
        r.Repository(repo.path)


def test_a_chain_keeps_one_block_hash(repo):
    """An incremental of version 2 on a full of version 1 (or the reverse) is not a chain."""
    add_backup(repo, '20261126T010000Z', '20261126T010000Z')
    path = repo.backup_dir('vm1', '20261126T010000Z', '20261126T020000Z')
    repo.commit(path, v2('20261126T020000Z', '20261126T010000Z', level='incremental', parent='20261126T010000Z',
                         started='2026-11-26T02:00:00.000000Z'))
    with pytest.raises(r.RepositoryError, match='a chain keeps one block hash'):
        repo.lineage(repo.find('vm1', 'latest'))
