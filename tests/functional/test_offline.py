# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A shut-off domain is backed up too (its images through qemu-nbd, the dirty extents from the
persistent bitmaps), and the chain carries on once the domain runs again. These tests stop the
shared domain, so they run last (see conftest.pytest_collection_modifyitems)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import shutil

from support.images import assert_same_content, image_info
from support.modules import ok
from support.repository import checkpoint_prefix
import ftlib

DISKS = ('vda', 'vdb')


def _check_point(t, point, workroot):
    for name in DISKS:
        disk = point.disk(name)
        assert disk['dirty_bytes'] == t.expected_dirty(point, name), (point.repo, point.level, name)
        info = image_info(os.path.join(point.backup['path'], '%s.qcow2' % name))
        assert info['backing-filename'] == '../%s/%s.qcow2' % (point.backup['parent'], name)
    dest = workroot / 'restore-offline' / point.repo / point.id
    result = ok(ftlib.restore(t.guest.name, t.repos[point.repo], dest, backup=point.id, format='raw'))
    for entry in result['disks']:
        assert_same_content(point.snaps[entry['name']].path, entry['path'], 'raw')
    shutil.rmtree(dest)


def test_shut_off_domain_is_backed_up_incrementally(offline, workroot):
    t = offline
    for series, repo in (('offline-pull', 'pull'), ('offline-push', 'push')):
        point = t.points[series][0]
        previous = t.points[repo][-1]
        assert point.backup['online'] is False
        assert point.backup['mode'] == 'offline'
        assert point.level == 'incremental'
        assert point.backup['parent'] == previous.id and point.backup['chain'] == previous.backup['chain']
        assert point.backup['checkpoint'] == checkpoint_prefix(t.repos[repo]) + point.id
        _check_point(t, point, workroot)


def test_shut_off_domain_without_changes(offline, workroot):
    point = offline.points['offline-pull'][1]
    assert point.level == 'incremental'
    assert [point.disk(n)['dirty_bytes'] for n in DISKS] == [0, 0]
    _check_point(offline, point, workroot)


def test_chain_goes_on_when_the_domain_runs_again(offline, workroot):
    t = offline
    assert t.guest.running()
    pull, push = t.points['online-again']
    assert pull.backup['parent'] == t.points['offline-pull'][1].id
    assert push.backup['parent'] == t.points['offline-push'][0].id
    for point in (pull, push):
        assert point.backup['online'] is True and point.level == 'incremental'
        assert 'checkpoint' in point.backup['reason']
        _check_point(t, point, workroot)
    for repo in ('pull', 'push'):
        checked = ok(ftlib.backup_info(t.repos[repo], verify=True))
        assert checked['verified_ok'] is True
        prefix = checkpoint_prefix(t.repos[repo])
        listed = [b['checkpoint'] for c in checked['domains'][0]['chains'] for b in c['backups']]
        assert sorted(c for c in t.guest.checkpoints() if c.startswith(prefix)) == sorted(listed)
