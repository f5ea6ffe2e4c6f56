# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One chain that mixes pull and push backups; a repository that first leaves out a disk."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import shutil

from lxml import etree

from support.images import assert_same_content, image_info
from support.modules import failed, ok
from support.repository import read_manifest
import ftlib


def _restore_and_compare(timeline, repo, point, dest, disks):
    result = ok(ftlib.restore(timeline.guest.name, timeline.repos[repo], dest, backup=point.id))
    assert result['backup']['id'] == point.id
    assert [d['name'] for d in result['disks']] == list(disks)
    for entry in result['disks']:
        assert entry['verified'] is True
        assert_same_content(point.snaps[entry['name']].path, entry['path'], 'qcow2')
    shutil.rmtree(dest)


def test_mixed_chain(timeline, workroot):
    points = timeline.points['mixed']
    ids = [p.id for p in points]
    assert [(p.backup['mode'], p.level) for p in points] == [
        ('pull', 'full'), ('push', 'incremental'), ('pull', 'differential'), ('push', 'incremental')]
    assert [p.backup['parent'] for p in points] == [None, ids[0], ids[0], ids[2]]
    assert [p.tag for p in points] == ['S1', 'S3', 'S4', 'S5']
    for p in points:
        for name in ('vda', 'vdb'):
            assert p.disk(name)['dirty_bytes'] == timeline.expected_dirty(p, name), (p.level, name)
            if p.backup['parent']:
                info = image_info(os.path.join(p.backup['path'], '%s.qcow2' % name))
                assert info['backing-filename'] == '../%s/%s.qcow2' % (p.backup['parent'], name)
        _restore_and_compare(timeline, 'mixed', p, workroot / 'restore-mixed' / p.id, ('vda', 'vdb'))
    # vdb did not change between S4 and S5: an empty incremental that still restores right.
    assert points[3].disk('vdb')['dirty_bytes'] == 0
    assert points[3].disk('vdb')['bytes_written'] == 0
    checked = ok(ftlib.backup_info(timeline.repos['mixed'], verify=True))
    assert checked['verified_ok'] is True


def test_a_disk_left_out(timeline, workroot):
    points = timeline.points['partial']
    first, second, third = points
    # disks: [vda] backs up vda only; vdb is listed as skipped and is not in the repository.
    for p in (first, second):
        assert [d['name'] for d in p.backup['disks']] == ['vda']
        assert p.backup['skipped_disks'] == [dict(name='vdb', reason='not selected')]
        files = os.listdir(p.backup['path'])
        assert 'vda.qcow2' in files and not [f for f in files if f.startswith('vdb')]
        m = read_manifest(p.backup['path'])
        assert [d['name'] for d in m['disks']] == ['vda']
        ck = etree.parse(os.path.join(p.backup['path'], 'checkpoint.xml')).getroot()
        states = dict((d.get('name'), d.get('checkpoint')) for d in ck.findall('./disks/disk'))
        assert states == dict(vda='bitmap', vdb='no')
    assert [p.level for p in points] == ['full', 'incremental', 'incremental']
    assert second.disk('vda')['dirty_bytes'] == timeline.expected_dirty(second, 'vda')

    # Every disk now: vdb is new to the chain and copied in full inside the incremental.
    assert third.backup['skipped_disks'] == []
    assert 'new disk vdb copied in full' in third.backup['reason']
    assert third.disk('vda')['level'] == 'incremental'
    assert third.disk('vdb')['level'] == 'full'
    assert third.disk('vda')['dirty_bytes'] == timeline.expected_dirty(third, 'vda')
    assert third.disk('vdb')['dirty_bytes'] == third.snaps['vdb'].data_bytes
    vdb = image_info(os.path.join(third.backup['path'], 'vdb.qcow2'))
    assert 'backing-filename' not in vdb
    vda = image_info(os.path.join(third.backup['path'], 'vda.qcow2'))
    assert vda['backing-filename'] == '../%s/vda.qcow2' % second.id

    _restore_and_compare(timeline, 'partial', first, workroot / 'restore-partial' / 'first', ('vda',))
    _restore_and_compare(timeline, 'partial', third, workroot / 'restore-partial' / 'third', ('vda', 'vdb'))
    result = ftlib.restore(timeline.guest.name, timeline.repos['partial'], workroot / 'restore-partial' / 'x',
                           backup=first.id, disks=['vdb'])
    failed(result, 'holds no disk vdb')
    assert not (workroot / 'restore-partial' / 'x').exists()
