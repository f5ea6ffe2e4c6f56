# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""virt_backup_copy and S3 repositories, against a real libvirtd (one TCG domain of its own, s3-*)
and a real S3 server (SeaweedFS on 127.0.0.1, the s3server fixture).

The tests build on each other in file order: a chain is copied, copied again (nothing), grown and
copied again (only the new backup), a copy is killed during an upload and completed by the next
run, and then every backup is restored from S3 and compared byte for byte with the guest's disk
at that moment.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import signal
import time
import uuid

import pytest

from support.host import MiB
from support.images import assert_same_content
from support.modules import failed, ModuleRun, ok, run_module
from support.s3 import S3Env
import ftlib


@pytest.fixture(scope='module')
def env(conn, workroot, s3server):
    with Env.started(conn, workroot, s3server, 's3', 160 * MiB, 'virtops-test') as env:
        yield env


class Env(S3Env):
    target = property(lambda self: 's3://%s/hosts/hv01' % self.bucket)

    def copy(self, check_mode=False, diff=False, **args):
        args = dict(dict(self.server.options(), source=str(self.repo), target=self.target), **args)
        return run_module('virt_backup_copy', args, check_mode=check_mode, diff=diff)

    def keys(self, prefix='hosts/hv01/', bucket=None):
        return S3Env.keys(self, prefix, bucket)

    def manifests(self, prefix='hosts/hv01/', bucket=None):
        return [k for k in self.keys(prefix, bucket) if k.endswith('/manifest.json')]

    def info(self, target=None, **args):
        return ok(run_module('virt_backup_info', dict(self.server.options(), repository=target or self.target,
                                                      **args)))


def _ids(info):
    return [b['id'] for d in info['domains'] for c in d['chains'] for b in c['backups']]


def test_copy_a_chain(env):
    full = env.backup('c1', [(0, 2 * MiB, 0x11), (40 * MiB, 64 * 1024, 0x12)])
    inc = env.backup('c2', [(MiB, 256 * 1024, 0x13)])

    predicted = ok(env.copy(check_mode=True, diff=True))
    assert predicted['changed'] is True
    assert [c['id'] for c in predicted['copied']] == [full['id'], inc['id']]
    # Text, one backup a line, as Ansible's diff display needs (a list broke its callback)
    assert predicted['diff']['before'] == ''
    assert predicted['diff']['after'] == ''.join('%s/%s/%s\n' % (env.guest.name, full['id'], b['id'])
                                                 for b in (full, inc))
    assert env.keys() == [], 'check mode wrote %s' % env.keys()

    result = ok(env.copy(diff=True))
    assert result['changed'] is True
    assert [c['id'] for c in result['copied']] == [full['id'], inc['id']]
    assert result['bytes'] > 2 * MiB and result['mib_per_s'] > 0
    assert result['diff']['after'] == predicted['diff']['after']
    # Byte for byte what the source holds, every file the manifests name.
    for backup in (full, inc):
        rel = os.path.relpath(backup['path'], str(env.repo))
        for name in ('manifest.json', 'domain.xml', 'checkpoint.xml', 'vda.qcow2', 'vda.blockhash.gz'):
            body = env.client.get_object(Bucket=env.bucket, Key='hosts/hv01/%s/%s' % (rel, name))['Body'].read()
            with open(os.path.join(backup['path'], name), 'rb') as src:
                assert body == src.read(), '%s of %s differs' % (name, backup['id'])
    assert 'hosts/hv01/repository.json' in env.keys()
    listed = env.info(verify=True)
    assert _ids(listed) == [full['id'], inc['id']]
    assert listed['verified_ok'] is True
    assert listed['repository']['path'] == env.target
    assert all(b['path'].startswith(env.target + '/') for d in listed['domains'] for c in d['chains']
               for b in c['backups'])


def test_second_copy_copies_nothing(env):
    predicted = ok(env.copy(check_mode=True))
    assert predicted['changed'] is False and predicted['copied'] == []
    before = env.keys()
    again = ok(env.copy())
    assert again['changed'] is False and again['copied'] == [] and again['present'] == 2
    assert env.keys() == before


def test_copy_after_more_backups_copies_only_those(env):
    new = env.backup('c3', [(10 * MiB, 3 * MiB, 0x14)])
    result = ok(env.copy())
    assert result['changed'] is True
    assert [c['id'] for c in result['copied']] == [new['id']] and result['present'] == 2
    assert len(env.manifests()) == 3


def test_copy_killed_during_an_upload_is_completed_by_the_next_run(env):
    big = env.backup('c4', [(20 * MiB, 120 * MiB, 0x15)])
    rel = os.path.relpath(big['path'], str(env.repo))
    prefix = 'hosts/hv01/%s/' % rel
    args = dict(env.server.options(), source=str(env.repo), target=env.target)
    run = ModuleRun('virt_backup_copy', args)
    proc = run.proc
    try:
        deadline = time.monotonic() + 300
        uploading = False
        while time.monotonic() < deadline and proc.poll() is None:
            uploads = env.client.list_multipart_uploads(Bucket=env.bucket, Prefix=prefix).get('Uploads', [])
            if any(u['Key'].endswith('/vda.qcow2') for u in uploads):
                uploading = True
                break
            time.sleep(0.05)
        assert uploading, 'the image upload was not seen (module ended with %r)' % proc.poll()
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        run.close()
    assert proc.returncode == -signal.SIGKILL
    # Nothing that looks whole: no manifest, and no reader lists the backup.
    assert prefix + 'manifest.json' not in env.keys()
    assert big['id'] not in _ids(env.info())
    assert len(env.manifests()) == 3

    result = ok(env.copy())
    assert [c['id'] for c in result['copied']] == [big['id']]
    assert prefix + 'manifest.json' in env.keys()
    assert env.client.list_multipart_uploads(Bucket=env.bucket, Prefix=prefix).get('Uploads', []) == []
    assert ok(env.copy())['changed'] is False


def test_restore_from_s3_is_bit_exact(env, workroot):
    for backup_id, _chain, snaps in env.points:
        dest = workroot / ('s3-restore-%s' % backup_id)
        result = ok(ftlib.restore(env.guest.name, env.target, dest, backup=backup_id, **env.server.options()))
        assert result['changed'] is True
        assert result['backup']['id'] == backup_id
        assert result['backup']['path'].startswith(env.target + '/')
        assert_same_content(snaps['vda'].path, dest / 'vda.qcow2', 'qcow2')
        again = ok(ftlib.restore(env.guest.name, env.target, dest, backup=backup_id, **env.server.options()))
        assert again['changed'] is False
    leftovers = [n for n in os.listdir(str(workroot)) if n.startswith('.virtops-s3-')]
    assert leftovers == [], 'scratch directories left: %s' % leftovers


def test_restore_from_s3_fails_cleanly_on_a_missing_backup(env, workroot):
    dest = workroot / 's3-restore-missing'
    msg = failed(ftlib.restore(env.guest.name, env.target, dest, backup='20000101T000000Z',
                               **env.server.options()), 'not found')
    assert env.target in msg
    assert not dest.exists()
    assert [n for n in os.listdir(str(workroot)) if n.startswith('.virtops-s3-')] == []


def test_object_lock_refuses_deleting_a_locked_copy(env):
    bucket = env.bucket + '-lock'
    env.client.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    target = 's3://%s/hv01' % bucket
    result = ok(env.copy(target=target, s3_object_lock='compliance', s3_retention_days=1))
    assert len(result['copied']) == len(env.points)
    key = [k for k in env.keys('hv01/', bucket) if k.endswith('/vda.qcow2')][0]
    head = env.client.head_object(Bucket=bucket, Key=key)
    assert head['ObjectLockMode'] == 'COMPLIANCE'
    with pytest.raises(Exception) as refused:
        env.client.delete_object(Bucket=bucket, Key=key, VersionId=head['VersionId'])
    assert 'AccessDenied' in str(refused.value)
    assert env.client.head_object(Bucket=bucket, Key=key)['ETag'] == head['ETag']
    # A bucket without object lock is refused before anything is written.
    msg = failed(env.copy(target='s3://%s/unlocked' % env.bucket, s3_object_lock='governance', s3_retention_days=1),
                 'has no object lock')
    assert 'nothing was copied' in msg
    assert env.keys('unlocked/') == []
    failed(env.copy(target='s3://%s/unlocked' % env.bucket, s3_object_lock='governance'), 's3_retention_days')


def test_wrong_credentials_fail_clearly_and_write_nothing(env):
    result = env.copy(target='s3://%s/wrongkey' % env.bucket, s3_secret_key='not-the-secret')
    failed(result, 'credentials', 's3://%s/wrongkey' % env.bucket)
    assert 'not-the-secret' not in json.dumps(result)
    assert env.keys('wrongkey/') == []


def test_unreachable_endpoint_and_missing_bucket_fail_clearly(env):
    import s3server as s3lib
    port = s3lib.free_ports(1)[0]
    msg = failed(env.copy(s3_endpoint_url='http://127.0.0.1:%d' % port), 'cannot be reached', env.target)
    assert '127.0.0.1:%d' % port in msg
    failed(env.copy(target='s3://virtops-test-nosuchbucket/x'), 'bucket virtops-test-nosuchbucket does not exist')
    failed(ftlib.restore(env.guest.name, 's3://virtops-test-nosuchbucket/x', env.root / 's3-nobucket',
                         **env.server.options()), 'does not exist')


def test_copy_back_from_s3_into_a_directory(env, workroot):
    local = workroot / 's3-back'
    args = dict(env.server.options(), source=env.target, target=str(local))
    predicted = ok(run_module('virt_backup_copy', args, check_mode=True))
    assert len(predicted['copied']) == len(env.points) and not local.exists()
    result = ok(run_module('virt_backup_copy', args))
    assert [c['id'] for c in result['copied']] == [p[0] for p in env.points]
    assert ok(run_module('virt_backup_copy', args))['changed'] is False
    # The directory copy is a repository of its own, with the source's id, restorable as any.
    assert json.loads((local / 'repository.json').read_text())['id'] == \
        json.loads((env.repo / 'repository.json').read_text())['id']
    backup_id, _chain, snaps = env.points[-1]
    dest = workroot / 's3-back-restore'
    ok(ftlib.restore(env.guest.name, local, dest, backup=backup_id))
    assert_same_content(snaps['vda'].path, dest / 'vda.qcow2', 'qcow2')


def test_a_directory_copy_into_itself_is_refused(env):
    # A target inside the source (or the same directory, or its parent) would make the copy a
    # 'domain' of the source repository.
    before = sorted(os.listdir(str(env.repo)))
    for target in (env.repo, env.repo / 'mirror', env.repo / 'x' / '..' / 'y', env.repo.parent):
        failed(run_module('virt_backup_copy', dict(source=str(env.repo), target=str(target))),
               'the same directory or one holds the other', 'nothing was copied')
    assert sorted(os.listdir(str(env.repo))) == before


def test_a_target_holding_another_repository_is_refused(env, workroot):
    # Two hosts copying into one location would mix their domains of the same name: a restore of
    # 'latest' could bring back the other host's VM. Another repository: a mirror under a new id.
    other = workroot / 's3-other-repo'
    ok(run_module('virt_backup_copy', dict(source=str(env.repo), target=str(other))))
    marker = json.loads((other / 'repository.json').read_text())
    marker['id'] = str(uuid.uuid4())
    (other / 'repository.json').write_text(json.dumps(marker))
    held = env.keys()
    failed(run_module('virt_backup_copy', dict(env.server.options(), source=str(other), target=env.target)),
           'is a copy of another repository', marker['id'], 'nothing was copied')
    assert env.keys() == held
    before = sorted(str(p) for p in other.rglob('*'))
    failed(run_module('virt_backup_copy', dict(source=str(env.repo), target=str(other))),
           'is a copy of another repository', 'nothing was copied')
    assert sorted(str(p) for p in other.rglob('*')) == before


def test_a_damaged_source_is_not_copied(env, workroot):
    damaged = workroot / 's3-damaged'
    ok(run_module('virt_backup_copy', dict(source=str(env.repo), target=str(damaged))))
    backup_id, _chain, _snaps = env.points[0]
    image = [p for p in damaged.rglob('vda.qcow2') if p.parent.name == backup_id][0]
    # Flip guest data inside the full image (its first data cluster holds pattern 0x11).
    with open(str(image), 'r+b') as f:
        data = f.read()
        at = data.index(b'\x11' * 4096)
        f.seek(at)
        f.write(b'\x99' * 512)
    msg = failed(run_module('virt_backup_copy', dict(env.server.options(), source=str(damaged),
                                                     target='s3://%s/damaged' % env.bucket)),
                 backup_id, 'not copied')
    assert 'differs' in msg or 'damaged' in msg
    assert env.manifests('damaged/') == []


def test_a_tampered_s3_copy_restores_nothing_and_fails_verification(env, workroot):
    target = 's3://%s/tampered' % env.bucket
    ok(env.copy(target=target))
    backup_id, _chain, _snaps = env.points[0]
    key = [k for k in env.keys('tampered/') if k.endswith('/%s/vda.qcow2' % backup_id)][0]
    body = bytearray(env.client.get_object(Bucket=env.bucket, Key=key)['Body'].read())
    at = bytes(body).index(b'\x11' * 4096)
    body[at:at + 512] = b'\x99' * 512
    env.client.put_object(Bucket=env.bucket, Key=key, Body=bytes(body))
    dest = workroot / 's3-tampered-restore'
    msg = failed(ftlib.restore(env.guest.name, target, dest, backup=backup_id, **env.server.options()), backup_id)
    assert 'not bit-exact' in msg or 'differs' in msg
    assert target in msg or 'vda' in msg
    assert not (dest / 'vda.qcow2').exists()
    checked = env.info(target=target, verify=True)
    assert checked['verified_ok'] is False
    assert [n for n in os.listdir(str(workroot)) if n.startswith('.virtops-s3-')] == []
