# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""virt_backup_prune on S3 copies of real backups (one TCG domain of its own, s3p-*) in a real S3
server (SeaweedFS on 127.0.0.1, the s3server fixture): check mode predicts exactly, every kept point
restores bit-exact, a second run changes nothing, Object Lock keeps a backup whole and is reported,
and a prune killed mid-deletion leaves nothing that looks whole and is finished by the next run.

Each test copies the same local repository (two chains: a full and two incrementals, then a full
and an incremental) into a prefix of its own and prunes that copy; the local repository is never
pruned.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import os

import pytest

from support.host import MiB
from support.images import assert_same_content
from support.modules import failed, ModuleFailed, ok, run_module
from support.s3 import S3Env
import ftlib

KEEP = dict(keep_last=2)      # keeps the second chain (its newest two); the first chain goes whole


@pytest.fixture(scope='module')
def env(conn, workroot, s3server):
    with Env.started(conn, workroot, s3server, 's3p', 64 * MiB, 'virtops-prune') as env:
        env.client.create_bucket(Bucket=env.bucket + '-lock', ObjectLockEnabledForBucket=True)
        env.backup('p1', [(0, 2 * MiB, 0x21)], level='full')
        env.backup('p2', [(MiB, 256 * 1024, 0x22)])
        env.backup('p3', [(8 * MiB, 512 * 1024, 0x23)])
        env.backup('p4', [(16 * MiB, MiB, 0x24)], level='full')
        env.backup('p5', [(MiB, 128 * 1024, 0x25)])
        yield env


class Env(S3Env):
    def ids(self, *indexes):
        return [self.points[i][0] for i in indexes]

    def copy(self, prefix, bucket=None):
        target = 's3://%s/%s' % (bucket or self.bucket, prefix)
        result = ok(run_module('virt_backup_copy', dict(self.server.options(), source=str(self.repo), target=target)))
        assert len(result['copied']) == len(self.points)
        return target

    def prune(self, target, check_mode=False, diff=False, hook=None, **args):
        args = dict(dict(self.server.options(), repository=target), **(args or KEEP))
        saved = dict(os.environ)
        try:
            if hook:
                os.environ['VIRTOPS_TEST_PRUNE_KILL_AFTER'] = hook
            return run_module('virt_backup_prune', args, check_mode=check_mode, diff=diff)
        finally:
            os.environ.clear()
            os.environ.update(saved)

    def keys(self, prefix, bucket=None):
        return S3Env.keys(self, prefix + '/', bucket)

    def versions(self, prefix, bucket):
        pages = self.client.get_paginator('list_object_versions').paginate(Bucket=bucket, Prefix=prefix + '/')
        return sorted(item['Key'] for page in pages for item in page.get('Versions', []) + page.get('DeleteMarkers', []))

    def listed(self, target):
        info = ok(run_module('virt_backup_info', dict(self.server.options(), repository=target)))
        return [b['id'] for d in info['domains'] for c in d['chains'] for b in c['backups']]

    def backup_prefix(self, prefix, index):
        backup_id, chain, _snaps = self.points[index]
        return '%s/%s/%s/%s' % (prefix, self.guest.name, chain, backup_id)

    def assert_restores(self, target, indexes):
        for i in indexes:
            backup_id, _chain, snaps = self.points[i]
            dest = self.root / ('s3p-restore-%s-%s' % (target.rsplit('/', 1)[-1], backup_id))
            result = ok(ftlib.restore(self.guest.name, target, dest, backup=backup_id, **self.server.options()))
            assert result['backup']['id'] == backup_id
            assert_same_content(snaps['vda'].path, dest / 'vda.qcow2', 'qcow2')


def _removed(result):
    return [r['id'] for d in result['domains'] for r in d['removed']]


def test_prune_on_s3_removes_exactly_what_check_mode_listed(env):
    target = env.copy('plain')
    before = env.keys('plain')
    predicted = ok(env.prune(target, check_mode=True, diff=True))
    assert predicted['changed'] is True
    assert _removed(predicted) == env.ids(0, 1, 2)
    assert predicted['diff']['after'] == {env.guest.name: env.ids(3, 4)}
    assert predicted['domains'][0]['locked'] == [] and predicted['domains'][0]['checkpoints_deleted'] == []
    assert env.keys('plain') == before, 'check mode changed the bucket'

    done = ok(env.prune(target, diff=True))
    assert done['changed'] is True
    assert _removed(done) == _removed(predicted)
    assert done['diff'] == predicted['diff']
    assert env.listed(target) == env.ids(3, 4)
    # Every object of the removed chain is gone (nothing found by listing), the rest untouched.
    chain1 = '%s/%s/%s/' % ('plain', env.guest.name, env.points[0][1])
    assert [k for k in env.keys('plain') if k.startswith(chain1)] == []
    assert [k for k in before if not k.startswith(chain1)] == env.keys('plain')

    again = ok(env.prune(target))
    assert again['changed'] is False and _removed(again) == []
    # The local repository is not touched by a prune of its copy: all five backups are still there.
    assert len([b for c in ok(ftlib.backup_info(env.repo))['domains'][0]['chains'] for b in c['backups']]) == 5


def test_every_kept_point_restores_bit_exact_from_the_pruned_copy(env):
    env.assert_restores('s3://%s/plain' % env.bucket, (3, 4))


def test_bad_input_fails_clearly_and_changes_nothing(env):
    target = 's3://%s/plain' % env.bucket
    before = env.keys('plain')
    failed(env.prune(target, merge=True, keep_last=1), 'merge in the local repository')
    failed(env.prune(target, domains=[env.guest.name], protect=[env.points[3][0]]), 'protect the backup in the source')
    failed(env.prune(target, keep_last=1, s3_secret_key='not-the-secret'), 'credentials', target)
    failed(env.prune('s3://virtops-test-nosuchbucket/x', keep_last=1), 'bucket virtops-test-nosuchbucket does not exist')
    failed(env.prune('s3://%s/nothing-here' % env.bucket, keep_last=1), 'is not a backup repository')
    assert env.keys('plain') == before


def test_a_locked_backup_is_reported_and_kept_whole(env):
    bucket = env.bucket + '-lock'
    target = env.copy('locked', bucket)
    # One object of the middle backup of the first chain under compliance retention.
    key = env.backup_prefix('locked', 1) + '/vda.qcow2'
    until = (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=1)).replace(microsecond=0)
    env.client.put_object_retention(Bucket=bucket, Key=key, Retention=dict(Mode='COMPLIANCE', RetainUntilDate=until))
    before = env.keys('locked', bucket)

    predicted = ok(env.prune(target, check_mode=True))
    assert _removed(predicted) == env.ids(2)
    domain = predicted['domains'][0]
    assert [(x['id'], x['mode']) for x in domain['locked']] == [(env.ids(1)[0], 'compliance')]
    assert domain['locked'][0]['until'].startswith(until.strftime('%Y-%m-%dT%H:%M:%S'))
    kept = dict((k['id'], k['kept_by']) for k in domain['kept'])
    assert kept[env.ids(1)[0]][0].startswith('object lock (compliance) until ')
    assert kept[env.ids(0)[0]] == ['needed by %s' % env.ids(1)[0]]
    assert 'kept by S3 Object Lock' in predicted['msg']
    assert env.keys('locked', bucket) == before

    done = ok(env.prune(target))
    assert _removed(done) == env.ids(2)
    assert [x['id'] for x in done['domains'][0]['locked']] == env.ids(1)
    # The locked backup and the full it builds on are whole; the other one is gone, every version.
    for i in (0, 1):
        prefix = env.backup_prefix('locked', i) + '/'
        assert [k for k in env.keys('locked', bucket) if k.startswith(prefix)] == \
            [k for k in before if k.startswith(prefix)]
    assert env.versions(env.backup_prefix('locked', 2), bucket) == []
    assert env.listed(target) == env.ids(0, 1, 3, 4)
    env.assert_restores(target, (1, 4))

    again = ok(env.prune(target))
    assert again['changed'] is False and [x['id'] for x in again['domains'][0]['locked']] == env.ids(1)


def test_an_interrupted_prune_leaves_nothing_that_looks_whole_and_the_next_run_finishes(env):
    target = env.copy('killed')
    killed = None
    try:
        # The module kills itself (SIGKILL) right after the first backup's manifest is deleted.
        killed = env.prune(target, hook='delete')
    except ModuleFailed as exc:
        assert 'rc -9' in str(exc), exc
    assert killed is None, 'the module was not killed: %r' % (killed,)
    # Newest first: the last backup of the first chain lost its manifest, and nothing else changed.
    half = env.backup_prefix('killed', 2)
    left = [k for k in env.keys('killed') if k.startswith(half + '/')]
    assert half + '/manifest.json' not in left and half + '/.deleting' in left and half + '/vda.qcow2' in left
    assert env.listed(target) == env.ids(0, 1, 3, 4)
    info = ok(run_module('virt_backup_info', dict(env.server.options(), repository=target, verify=True)))
    assert info['verified_ok'] is True, 'a listed backup does not verify'

    done = ok(env.prune(target))
    assert _removed(done) == env.ids(0, 1)
    assert done['domains'][0]['incomplete_removed'] == ['%s/%s/%s/%s' % (target, env.guest.name, env.points[2][1],
                                                                         env.points[2][0])]
    chain1 = 'killed/%s/%s/' % (env.guest.name, env.points[0][1])
    assert [k for k in env.keys('killed') if k.startswith(chain1)] == []
    assert env.listed(target) == env.ids(3, 4)
    assert ok(env.prune(target))['changed'] is False
    env.assert_restores(target, (3, 4))
