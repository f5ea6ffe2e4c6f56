# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The backup modules' option checks (backup/_options.py) and their managers on the lifecycle
base (backup/_managers.py), on libvirt's test:///default driver where a connection is needed."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest

pytest.importorskip('lxml')

from ansible_collections.virtops.libvirt.plugins.module_utils._libvirt import Connection, VirtError  # noqa: E402
from ansible_collections.virtops.libvirt.plugins.module_utils.backup import _managers, _options  # noqa: E402

URI = 'test:///default'


def defaults(spec, **values):
    """Parameters as AnsibleModule gives them: every option, with its default."""
    params = dict((name, option.get('default')) for name, option in spec.items())
    params.update(uri=URI, username=None, password=None)
    params.update(values)
    return params


@pytest.mark.parametrize('values, message', [
    (dict(workers=0), 'workers must be between 1 and 32, not 0'),
    (dict(workers=33), 'workers must be between 1 and 32, not 33'),
    (dict(timeout=-1), 'timeout must be 0 (no limit) or a number of seconds, not -1'),
    (dict(transport='tcp', mode='push'), 'transport tcp applies to pull mode only'),
    (dict(transport='tcp'), 'transport tcp needs tls: true'),
    (dict(transport='tcp', tls=True), 'transport tcp needs an explicit bind_address'),
    (dict(transport='tcp', tls=True, bind_address='127.0.0.1', port=0), 'port must be between 1 and 65535, not 0'),
    (dict(tls=True), 'tls applies to transport tcp'),
    (dict(transport='tcp', tls=True, bind_address='127.0.0.1'), 'tls: true needs tls_dir'),
    (dict(scratch_dir='relative'), "scratch_dir 'relative' must be an absolute path"),
    (dict(domain='../escape'), "domain name '../escape' cannot be used in the repository"),
])
def test_backup_option_errors(values, message):
    with pytest.raises(VirtError) as err:
        _options.backup_request(defaults(_options.BACKUP_ARGS, **dict(dict(domain='guest', repository='/srv/backup'),
                                                                      **values)))
    assert message in err.value.msg


def test_backup_tls_dir_lacks_files(tmp_path):
    params = defaults(_options.BACKUP_ARGS, domain='guest', repository='/srv/backup', transport='tcp', tls=True,
                      bind_address='127.0.0.1', tls_dir=str(tmp_path))
    with pytest.raises(VirtError) as err:
        _options.backup_request(params)
    assert err.value.msg == 'tls_dir %s lacks ca-cert.pem, client-cert.pem, client-key.pem' % tmp_path


def test_backup_scratch_dir_missing_only_checked_for_a_local_uri(tmp_path):
    missing = str(tmp_path / 'missing')
    with pytest.raises(VirtError) as err:
        _options.backup_request(defaults(_options.BACKUP_ARGS, domain='guest', repository='/r', scratch_dir=missing))
    assert err.value.msg == 'scratch_dir %s is not an existing directory' % missing
    request = _options.backup_request(defaults(_options.BACKUP_ARGS, domain='guest', repository='/r',
                                               scratch_dir=missing, uri='qemu+ssh://hv1/system'))
    assert request.scratch_dir == missing


def test_backup_request(tmp_path):
    request = _options.backup_request(defaults(_options.BACKUP_ARGS, domain='guest', repository='/r'))
    assert (request.domain, request.timeout, request.tcp, request.workers) == ('guest', None, None, 4)
    for name in ('ca-cert.pem', 'client-cert.pem', 'client-key.pem'):
        (tmp_path / name).write_text(u'')
    request = _options.backup_request(defaults(
        _options.BACKUP_ARGS, domain='guest', repository='/r', transport='tcp', tls=True, tls_dir=str(tmp_path),
        bind_address='10.0.0.1', timeout=60))
    assert request.timeout == 60
    assert request.tcp == dict(bind_address='10.0.0.1', port=10809, tls_dir=str(tmp_path),
                               connect_address='10.0.0.1')


@pytest.mark.parametrize('values, message', [
    (dict(s3_object_lock='governance'), 's3_object_lock governance needs s3_retention_days'),
    (dict(s3_object_lock='compliance', s3_retention_days=0), 's3_object_lock compliance needs s3_retention_days'),
    (dict(s3_retention_days=3), 's3_retention_days needs s3_object_lock governance or compliance'),
    (dict(source='s3://bucket/a', target='s3://bucket/b'), 'source and target are both in object storage'),
    (dict(s3_object_lock='governance', s3_retention_days=1),
     's3_object_lock applies to an S3 target; target /srv/copy is a directory'),
])
def test_copy_option_errors(values, message):
    params = defaults(_options.COPY_ARGS, source='/srv/backup', target='/srv/copy')
    params.update(values)
    with pytest.raises(VirtError) as err:
        _options.copy_lock(params)
    assert message in err.value.msg


def test_copy_lock():
    assert _options.copy_lock(defaults(_options.COPY_ARGS, source='/a', target='s3://bucket/b')) is None
    mode, until = _options.copy_lock(defaults(_options.COPY_ARGS, source='/a', target='s3://bucket/b',
                                              s3_object_lock='governance', s3_retention_days=2))
    assert mode == 'governance' and until is not None


@pytest.mark.parametrize('values, message', [
    (dict(repository='s3://bucket/a', merge=True), 'merge in the local repository (virt_backup_prune merge: true), '
                                                   'then copy it with virt_backup_copy'),
    (dict(repository='s3://bucket/a', domains=['g'], protect=['20260101T000000Z']),
     'protect the backup in the source repository before it is copied'),
    (dict(keep_last=-2), 'keep_last is -2: give a number of periods >= 0, or -1 for all'),
    (dict(keep_chains=-1), 'keep_chains is -1: give a number of chains >= 0'),
    (dict(protect=['20260101T000000Z']), 'give exactly one domain in domains'),
    (dict(domains=['g'], protect=['20260101T000000Z'], unprotect=['20260101T000000Z']),
     'backup 20260101T000000Z is both in protect and unprotect'),
    (dict(domains=['g'], unprotect=['latest']), "'latest' is not a backup id"),
    (dict(incomplete_grace='soon'), 'incomplete_grace: '),
])
def test_prune_option_errors(values, message):
    with pytest.raises(VirtError) as err:
        _options.prune_grace(defaults(_options.PRUNE_ARGS, **dict(dict(repository='/srv/backup'), **values)))
    assert message in err.value.msg


def test_prune_grace_in_seconds():
    assert _options.prune_grace(defaults(_options.PRUNE_ARGS, repository='/srv/backup')) == 24 * 3600
    assert _options.prune_grace(defaults(_options.PRUNE_ARGS, repository='s3://bucket/a', keep_daily=7)) == 24 * 3600


def test_every_s3_module_takes_the_s3_options():
    for spec in (_options.RESTORE_ARGS, _options.COPY_ARGS, _options.BACKUP_INFO_ARGS, _options.PRUNE_ARGS):
        assert set(_options.S3_ARGS) <= set(spec)
    assert _options.S3_ARGS['s3_secret_key']['no_log'] is True


@pytest.fixture
def connection():
    conn = Connection(URI)
    yield conn
    conn.conn.close()


def test_backup_check_mode_predicts_a_first_full(connection, tmp_path):
    params = defaults(_options.BACKUP_ARGS, domain='test', repository=str(tmp_path / 'repo'))
    result = _managers.BackupManager(connection, params, check_mode=True, diff_mode=True).run()
    assert result['changed'] is True
    assert result['backup']['id'] is None and result['backup']['level'] == 'full'
    assert result['diff'] == dict(before=dict(backups=[]), after=dict(backups=['(new full backup)']))
    assert not (tmp_path / 'repo').exists()


def test_backup_without_diff_mode_has_no_diff(connection, tmp_path):
    params = defaults(_options.BACKUP_ARGS, domain='test', repository=str(tmp_path / 'repo'))
    result = _managers.BackupManager(connection, params, check_mode=True).run()
    assert 'diff' not in result


def test_backup_of_a_missing_domain(connection, tmp_path):
    params = defaults(_options.BACKUP_ARGS, domain='nosuch', repository=str(tmp_path / 'repo'))
    with pytest.raises(VirtError) as err:
        _managers.BackupManager(connection, params, check_mode=True).run()
    assert err.value.msg == 'domain nosuch not found on %s' % URI


class NoConnection:
    """A connection that must not be used: the modules below work without libvirt."""

    def __getattr__(self, name):
        raise AssertionError('the libvirt connection was used (%s)' % name)


def test_option_errors_come_before_the_connection():
    params = defaults(_options.BACKUP_ARGS, domain='g', repository='/r', workers=0)
    with pytest.raises(VirtError) as err:
        _managers.BackupManager(NoConnection(), params).run()
    assert err.value.msg == 'workers must be between 1 and 32, not 0'


def test_export_absent_when_there_is_none(tmp_path):
    params = defaults(_options.EXPORT_ARGS, name='virtops-unit-no-such-export', state='absent')
    for check_mode in (True, False):
        result = _managers.ExportManager(NoConnection(), params, check_mode=check_mode, diff_mode=True).run()
        assert result == dict(changed=False, export=None, diff=dict(before={}, after={}))


def test_info_of_a_directory_that_is_no_repository(tmp_path):
    params = defaults(_options.BACKUP_INFO_ARGS, repository=str(tmp_path))
    with pytest.raises(VirtError) as err:
        _managers.read_backups(NoConnection(), params, None)
    assert err.value.msg == '%s is not a backup repository (no repository.json)' % tmp_path


def test_copy_of_a_directory_that_is_no_repository(tmp_path):
    params = defaults(_options.COPY_ARGS, source=str(tmp_path), target=str(tmp_path / 'copy'))
    with pytest.raises(VirtError) as err:
        _managers.CopyManager(NoConnection(), params, check_mode=True).run()
    assert err.value.msg == '%s is not a backup repository (no repository.json)' % tmp_path
