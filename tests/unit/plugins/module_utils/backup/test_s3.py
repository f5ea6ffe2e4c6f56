# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""S3 locations and the files a copy takes: pure functions (the S3 traffic itself is tested
against a real server in tests/functional/test_backup_copy.py)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import os
import stat

import pytest

from ansible_collections.virtops.libvirt.plugins.module_utils.backup import _copy, _repository, _s3


@pytest.mark.parametrize('text, expected', [
    ('s3://backups', ('backups', '')),
    ('s3://backups/', ('backups', '')),
    ('s3://vm-backups.example/hosts/hv01', ('vm-backups.example', 'hosts/hv01')),
    ('s3://abc//x///y/', ('abc', 'x/y')),
])
def test_locations_split_into_bucket_and_prefix(text, expected):
    assert _s3.parse_location(text) == expected


@pytest.mark.parametrize('text', [
    's3://ab/x',                # bucket names need 3 characters
    's3://Backups/x',           # no capitals
    's3://a..b/x',
    's3://backups/../etc',
    's3://backups/x/./y',
    's3://backups/x y',
    's3://backups/x?y',
])
def test_locations_that_are_not_plain_names_are_refused(text):
    with pytest.raises(_s3.S3Error):
        _s3.parse_location(text)


def test_only_s3_urls_are_locations():
    assert _s3.is_location('s3://b/p')
    assert not _s3.is_location('/srv/backup') and not _s3.is_location(None)


@pytest.mark.parametrize('endpoint', ['127.0.0.1:9000', 's3.example.com', 'ftp://s3.example.com', 'http://',
                                      'https:// s3.example.com'])
def test_an_endpoint_that_is_not_an_http_url_fails_clearly(endpoint):
    # botocore raises a bare ValueError for '127.0.0.1:9000', which failed the module as 'unexpected'
    pytest.importorskip('boto3')
    with pytest.raises(_s3.S3Error, match='is not an http:// or https:// URL'):
        _s3.Store('s3://backups/x', dict(s3_endpoint_url=endpoint))


@pytest.mark.parametrize('endpoint', ['http://127.0.0.1:9000', 'https://s3.example.com', 'https://s3.example.com/'])
def test_http_endpoints_are_taken(endpoint):
    pytest.importorskip('boto3')
    params = dict(s3_endpoint_url=endpoint, s3_access_key='a', s3_secret_key='b', s3_region='us-east-1')
    store = _s3.Store('s3://backups/x', params)
    assert store.endpoint == endpoint


@pytest.mark.parametrize('target', ['/srv/backup', '/srv/backup/', '/srv/backup/mirror', '/srv', '/srv/backup/x/../y'])
def test_directory_repositories_inside_each_other_are_refused(target):
    with pytest.raises(_copy.VirtError, match='one holds the other'):
        _copy.check_apart('/srv/backup', target)


@pytest.mark.parametrize('target', ['/srv/backup2', '/srv/mirror/backup', '/backup'])
def test_directory_repositories_side_by_side_are_taken(target):
    _copy.check_apart('/srv/backup', target)


def test_retention_ends_the_given_days_later():
    now = datetime.datetime(2026, 12, 6, 20, 0, 0, 123456, tzinfo=datetime.timezone.utc)
    assert _s3.retain_until(30, now) == datetime.datetime(2027, 1, 5, 20, 0, 0, tzinfo=datetime.timezone.utc)


def test_a_copy_takes_exactly_the_files_the_manifest_names():
    manifest = dict(
        domain_xml='domain.xml', checkpoint_xml='checkpoint.xml',
        disks=[dict(name='vda', image='vda.qcow2', virtual_size=1 << 30, file_size=5 << 20,
                    integrity=dict(map='vda.blockhash.gz')),
               dict(name='vdb', image='vdb.qcow2', virtual_size=1 << 20, integrity=dict(map='vdb.blockhash.gz'))],
        firmware=dict(nvram=dict(file='nvram.fd', size=540672, sha256='0' * 64),
                      tpm=dict(version='2.0', dir='tpm', files=[dict(name='tpm2-00.permall', size=9397,
                                                                     sha256='1' * 64)])))
    files = dict(_copy.backup_files(manifest))
    assert sorted(files) == sorted([('domain.xml',), ('checkpoint.xml',), ('vda.qcow2',), ('vda.blockhash.gz',),
                                    ('vdb.qcow2',), ('vdb.blockhash.gz',), ('nvram.fd',), ('tpm', 'tpm2-00.permall')])
    # Downloads are bounded by what the manifest allows.
    assert files[('vda.qcow2',)] == 5 << 20
    assert files[('vdb.qcow2',)] == 2 * (1 << 20) + 64 * 1024 * 1024
    assert files[('nvram.fd',)] == 540672 and files[('tpm', 'tpm2-00.permall')] == 9397


def test_scratch_directories_are_private(tmp_path):
    os.chmod(str(tmp_path), 0o755)
    scratch = _copy.make_scratch(str(tmp_path / 'dest'))
    try:
        assert os.path.dirname(scratch) == str(tmp_path)
        assert stat.S_IMODE(os.stat(scratch).st_mode) == 0o700
    finally:
        os.rmdir(scratch)
    # Beside a directory others can write, never: the system's temporary directory instead.
    os.chmod(str(tmp_path), 0o777)
    scratch = _copy.make_scratch(str(tmp_path / 'dest'))
    try:
        assert os.path.dirname(scratch) != str(tmp_path)
        assert stat.S_IMODE(os.stat(scratch).st_mode) == 0o700
    finally:
        os.rmdir(scratch)


def test_scratch_never_goes_below_a_directory_of_another_user(tmp_path):
    # The scratch mirror is opened as a repository, which refuses parents another user owns: beside
    # a dest whose own directory is root's but sits in a directory of another user, the restore
    # would fail. The system's temporary directory is used instead.
    theirs = tmp_path / 'theirs'
    (theirs / 'ours').mkdir(parents=True, mode=0o755)
    os.chmod(str(theirs), 0o755)
    os.chown(str(theirs), 65534, 65534)
    scratch = _copy.make_scratch(str(theirs / 'ours' / 'dest'))
    try:
        assert not scratch.startswith(str(theirs))
        _repository.check_ancestors(os.path.join(scratch, 'x'))
    finally:
        os.rmdir(scratch)


def test_scratch_of_killed_runs_is_removed_and_live_ones_kept(tmp_path):
    os.chmod(str(tmp_path), 0o755)
    dead = tmp_path / '.virtops-s3-999999999-abcd1234'       # no such process
    live = tmp_path / ('.virtops-s3-%d-abcd1234' % os.getpid())
    other = tmp_path / '.virtops-s3-not-ours'
    for path in (dead, live, other):
        path.mkdir()
    scratch = _copy.make_scratch(str(tmp_path / 'dest'))
    try:
        assert not dead.exists() and live.exists() and other.exists()
    finally:
        os.rmdir(scratch)
