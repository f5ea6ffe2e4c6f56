# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Retention of an S3 repository: Object Lock planning (pure), and the prune of S3Store on an
in-memory object store (the real server is in tests/functional/test_prune_s3.py)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import json

import pytest

from ansible_collections.virtops.libvirt.plugins.module_utils.backup import _copy, _repository, _retention, _s3
from ansible_collections.virtops.libvirt.plugins.module_utils.backup._retention import Item, hold_locked, plan

UTC = datetime.timezone.utc
NOW = datetime.datetime(2026, 12, 10, 12, 0, tzinfo=UTC)
UNTIL = datetime.datetime(2027, 1, 5, 20, 0, tzinfo=UTC)
DAYS = ['2026-12-0%d 01:00' % d for d in range(1, 6)]


def t(text):
    return datetime.datetime.strptime(text, '%Y-%m-%d %H:%M').replace(tzinfo=UTC)


def bid(text):
    return t(text).strftime('%Y%m%dT%H%M%SZ')


def chains():
    """Chain A: a full and two incrementals (days 1-3); chain B: a full and an incremental (days 4-5)."""
    a = [Item(bid(DAYS[0]), t(DAYS[0]), bid(DAYS[0])),
         Item(bid(DAYS[1]), t(DAYS[1]), bid(DAYS[0]), bid(DAYS[0])),
         Item(bid(DAYS[2]), t(DAYS[2]), bid(DAYS[0]), bid(DAYS[1]))]
    b = [Item(bid(DAYS[3]), t(DAYS[3]), bid(DAYS[3])),
         Item(bid(DAYS[4]), t(DAYS[4]), bid(DAYS[3]), bid(DAYS[3]))]
    return a + b


def test_a_locked_backup_stays_with_everything_it_depends_on():
    items = chains()
    decisions = plan(items, dict(keep_daily=2))
    assert sorted(decisions.remove) == [items[0].id, items[1].id, items[2].id]
    hold_locked(decisions, {items[1].id: 'object lock (compliance) until 2027-01-05'})
    # The locked incremental and its full stay; the later incremental, which nothing needs, goes.
    assert decisions.remove == {items[2].id: 'deleted'}
    assert decisions.keep[items[1].id] == ['object lock (compliance) until 2027-01-05']
    assert decisions.keep[items[0].id] == ['needed by %s' % items[1].id]


def test_a_lock_on_a_kept_backup_changes_nothing():
    items = chains()
    decisions = plan(items, dict(keep_daily=2))
    before = (dict(decisions.keep), dict(decisions.remove))
    hold_locked(decisions, {items[4].id: 'object lock (governance) until 2027-01-05'})
    assert (decisions.keep, decisions.remove) == before


def test_lock_texts():
    assert _retention.lock_text(('COMPLIANCE', UNTIL)) == 'object lock (compliance) until 2027-01-05T20:00:00.000000Z'
    assert _retention.lock_text(('LEGAL HOLD', None)) == 'object lock: legal hold'


# -- S3Store on an in-memory object store ------------------------------------------------------------

class Refused(_s3.S3Error):
    pass


class FakeS3:
    """The operations of _s3.Store that a prune uses, on a dict; records every delete in order."""

    def __init__(self):
        self.bucket, self.prefix = 'backups', 'hv01'
        self.location = 's3://backups/hv01'
        self.objects = {}       # key parts -> (bytes, last modified)
        self.locks = {}         # key parts -> (mode, until)
        self.deleted = []
        self.refuse = None      # a function of key parts: True makes that delete fail

    def url(self, parts):
        return '%s/%s' % (self.location, '/'.join(parts))

    def check_bucket(self):
        pass

    def object_lock_enabled(self):
        return True

    def read_small(self, parts, limit):
        found = self.objects.get(tuple(parts))
        return None if found is None else found[0]

    def size(self, parts):
        found = self.objects.get(tuple(parts))
        return None if found is None else len(found[0])

    def _under(self, parts):
        return sorted(k for k in self.objects if k[:len(parts)] == tuple(parts) and len(k) > len(parts))

    def list(self, parts=()):
        return [(k[len(parts):], len(self.objects[k][0])) for k in self._under(parts)]

    def list_times(self, parts=()):
        return [(k[len(parts):], self.objects[k][1]) for k in self._under(parts)]

    def versions(self, parts):
        return [(k, None) for k in self._under(parts)]

    def retention(self, parts, version_id=None, now=None):
        return self.locks.get(tuple(parts))

    def delete(self, parts, version_id=None):
        if self.refuse and self.refuse(tuple(parts)):
            raise Refused('deleting %s failed: access denied' % self.url(parts))
        self.deleted.append(tuple(parts))
        self.objects.pop(tuple(parts), None)

    def put_bytes(self, parts, data, lock=None):
        self.objects[tuple(parts)] = (data, NOW)


def manifest(backup_id, chain, parent=None):
    disk = dict(name='vda', virtual_size=64 << 20, image='vda.qcow2',
                backing='../%s/vda.qcow2' % parent if parent else None, file_size=196608,
                integrity=dict(algorithm='sha256', block_size=65536, map='vda.blockhash.gz'), image_digest='ab' * 32)
    started = datetime.datetime.strptime(backup_id, '%Y%m%dT%H%M%SZ').strftime('%Y-%m-%dT%H:%M:%S.000000Z')
    return dict(format=_repository.MANIFEST_FORMAT, format_version=1, complete=True, id=backup_id, chain=chain,
                domain='vm1', level='incremental' if parent else 'full', mode='pull', parent=parent, started=started,
                disks=[disk], checkpoint='virtops-0123abcd-' + backup_id,
                repository_id='e02f39a2-1111-4222-8333-444455556666', domain_xml='domain.xml',
                checkpoint_xml='checkpoint.xml')


@pytest.fixture
def fake(monkeypatch):
    store = FakeS3()
    store.put_bytes((_repository.REPOSITORY_FILE,), json.dumps(dict(
        format=_repository.FORMAT, format_version=2, id='e02f39a2-1111-4222-8333-444455556666',
        created='2026-11-26T01:00:00.000000Z')).encode())
    for item in chains():
        prefix = ('vm1', item.chain, item.id)
        for name in ('domain.xml', 'checkpoint.xml', 'vda.qcow2', 'vda.blockhash.gz'):
            store.objects[prefix + (name,)] = (b'data', NOW - datetime.timedelta(days=3))
        store.put_bytes(prefix + (_repository.MANIFEST,), json.dumps(manifest(item.id, item.chain, item.parent)).encode())
    monkeypatch.setattr(_s3, 'Store', lambda location, params: store)
    return store


def prune(check_mode=False, grace=86400, **rules):
    repo = _copy.open_repository('s3://backups/hv01', {})
    try:
        pruner = _retention.Pruner(_retention.S3Store(repo), dict((r, rules.get(r)) for r in _retention.RULES),
                                   incomplete_grace=grace, check_mode=check_mode, now=NOW)
        return pruner.run('vm1')
    finally:
        repo.close()


def backups_of(store):
    return sorted(k[2] for k in store.objects if k[-1] == _repository.MANIFEST)


def test_the_prune_removes_what_check_mode_lists_manifest_first(fake):
    items = chains()
    predicted = prune(check_mode=True, keep_daily=2)
    assert [r['id'] for r in predicted['removed']] == [items[0].id, items[1].id, items[2].id]
    assert predicted['changed'] is True and predicted['locked'] == []
    assert fake.deleted == [] and len(backups_of(fake)) == 5
    done = prune(keep_daily=2)
    assert [r['id'] for r in done['removed']] == [r['id'] for r in predicted['removed']]
    assert backups_of(fake) == [items[3].id, items[4].id]
    assert not [k for k in fake.objects if k[1:2] == (items[0].chain,)], 'every object of chain A goes'
    # Each backup's manifest goes before any of its other objects, and its deletion marker last.
    for item in items[:3]:
        mine = [k[-1] for k in fake.deleted if k[2] == item.id]
        assert mine[0] == _repository.MANIFEST and mine[-1] == _s3.DELETING_MARKER and len(mine) == 6
    again = prune(keep_daily=2)
    assert again['changed'] is False and again['removed'] == []


def test_a_locked_backup_is_reported_and_kept_whole(fake):
    items = chains()
    fake.locks[('vm1', items[0].chain, items[1].id, 'vda.qcow2')] = ('COMPLIANCE', UNTIL)
    predicted = prune(check_mode=True, keep_daily=2)
    assert [r['id'] for r in predicted['removed']] == [items[2].id]
    assert [(x['id'], x['mode'], x['until']) for x in predicted['locked']] == [
        (items[1].id, 'compliance', '2027-01-05T20:00:00.000000Z')]
    kept = dict((k['id'], k['kept_by']) for k in predicted['kept'])
    assert kept[items[1].id] == ['object lock (compliance) until 2027-01-05T20:00:00.000000Z']
    assert kept[items[0].id] == ['needed by %s' % items[1].id]
    done = prune(keep_daily=2)
    assert [r['id'] for r in done['removed']] == [items[2].id]
    assert backups_of(fake) == [items[0].id, items[1].id, items[3].id, items[4].id]
    assert not [k for k in fake.deleted if k[2] in (items[0].id, items[1].id)], 'nothing of a locked backup goes'
    again = prune(keep_daily=2)
    assert again['changed'] is False and [x['id'] for x in again['locked']] == [items[1].id]


def test_an_interrupted_deletion_looks_incomplete_and_the_next_run_finishes_it(fake):
    items = chains()
    # The first data object of the newest backup to go cannot be deleted: the run stops there.
    fake.refuse = lambda parts: parts[2] == items[2].id and parts[-1] == 'checkpoint.xml'
    with pytest.raises(Refused):
        prune(keep_daily=2)
    left = sorted(k[-1] for k in fake.objects if k[2:3] == (items[2].id,))
    assert _repository.MANIFEST not in left and _s3.DELETING_MARKER in left
    fake.refuse = None
    # No reader sees it any more, and the next run removes the rest at once (no grace for a deletion).
    done = prune(keep_daily=2)
    assert done['incomplete_removed'] == ['s3://backups/hv01/vm1/%s/%s' % (items[0].chain, items[2].id)]
    assert not [k for k in fake.objects if k[1:2] == (items[0].chain,)]


def test_what_an_interrupted_copy_left_waits_for_the_grace_time(fake):
    items = chains()
    prefix = ('vm1', items[3].chain, '20261206T010000Z')
    fake.objects[prefix + ('vda.qcow2',)] = (b'part', NOW - datetime.timedelta(hours=1))
    result = prune(check_mode=True, keep_daily=5)
    assert result['incomplete_removed'] == [] and result['changed'] is False
    result = prune(keep_daily=5, grace=1800)
    assert result['incomplete_removed'] == ['s3://backups/hv01/vm1/%s/20261206T010000Z' % items[3].chain]
    assert prefix + ('vda.qcow2',) not in fake.objects


def test_locked_leftovers_are_reported_not_deleted(fake):
    items = chains()
    prefix = ('vm1', items[3].chain, '20261206T010000Z')
    fake.objects[prefix + ('vda.qcow2',)] = (b'part', NOW - datetime.timedelta(days=2))
    fake.locks[prefix + ('vda.qcow2',)] = ('GOVERNANCE', UNTIL)
    result = prune(keep_daily=5)
    assert result['incomplete_removed'] == [] and result['changed'] is False
    assert result['locked'] == [dict(chain=items[3].chain, id='20261206T010000Z', incomplete=True,
                                     mode='governance', until='2027-01-05T20:00:00.000000Z')]
    assert prefix + ('vda.qcow2',) in fake.objects
