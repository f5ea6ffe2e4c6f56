# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Full, incremental, differential, incremental, in pull mode and in push mode, on a real domain:
what the module returns, what the repository holds, and that every point restores bit-exact."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import gzip
import hashlib
import json
import os
import shutil
from datetime import datetime, timedelta

import pytest

from support.host import sh
from support.images import assert_same_content, image_info, sha256_file
from support.modules import failed, ok, run_module
from support.repository import checkpoint_prefix, read_manifest, repo_id
import ftlib

DISKS = ('vda', 'vdb')


def test_levels_and_reasons(timeline, mode):
    points = timeline.points[mode]
    ids = [p.id for p in points]
    assert [p.level for p in points] == ['full', 'incremental', 'differential', 'incremental']
    assert all(p.result['changed'] is True for p in points)
    assert [p.backup['mode'] for p in points] == [mode] * 4
    assert [p.backup['parent'] for p in points] == [None, ids[0], ids[0], ids[2]]
    assert [p.backup['chain'] for p in points] == [ids[0]] * 4
    assert points[0].backup['reason'] == 'full: no backup of this domain in the repository yet'
    # auto picks incremental once the chain and its checkpoint are usable
    assert points[1].backup['reason'].startswith('incremental: changes since full backup %s' % ids[0])
    assert points[2].backup['reason'].startswith('differential: changes since full backup %s' % ids[0])
    assert points[3].backup['reason'].startswith('incremental: changes since differential backup %s' % ids[2])
    assert len(set(ids)) == 4 and ids == sorted(ids)
    for p in points:
        assert [d['name'] for d in p.backup['disks']] == list(DISKS)
        assert p.backup['skipped_disks'] == []
        assert os.path.isfile(os.path.join(p.backup['path'], 'manifest.json'))


def test_dirty_and_written_figures(timeline, mode):
    for p in timeline.points[mode]:
        for name in DISKS:
            disk = p.disk(name)
            size = timeline.guest.disks[name].size
            expected = timeline.expected_dirty(p, name)
            assert disk['virtual_size'] == size
            assert disk['dirty_bytes'] == expected, '%s %s %s: dirty %d, expected %d' % (
                mode, p.level, name, disk['dirty_bytes'], expected)
            assert disk['bytes_written'] <= disk['dirty_bytes']
            if p.level == 'full':
                # A full backup reads the allocated data, not the whole disk.
                assert disk['bytes_read'] == expected
            else:
                assert disk['bytes_written'] < size / 8
            assert len(disk['image_digest']) == 64


def _image(point, disk):
    return os.path.join(point.backup['path'], '%s.qcow2' % disk)


def test_incremental_images_are_overlays_on_the_previous_backup(timeline, mode):
    points = timeline.points[mode]
    depth = {None: 0}
    for p in points:
        depth[p.id] = depth[p.backup['parent']] + 1
        for name in DISKS:
            info = image_info(_image(p, name), chain=True)
            assert info[0]['format'] == 'qcow2'
            assert len(info) == depth[p.id]
            if p.backup['parent'] is None:
                assert 'backing-filename' not in info[0]
            else:
                assert info[0]['backing-filename'] == '../%s/%s.qcow2' % (p.backup['parent'], name)
                assert info[0]['backing-filename-format'] == 'qcow2'
                assert info[1]['filename'] == _image(timeline.parent(p), name) or \
                    os.path.realpath(info[1]['filename']) == os.path.realpath(_image(timeline.parent(p), name))
            sh('qemu-img', 'check', '-q', _image(p, name))


def test_qemu_img_alone_restores_every_point(timeline, mode, tmp_path):
    """The repository is plain qcow2: qemu-img convert of a point gives the disk's bytes."""
    for p in timeline.points[mode]:
        for name in DISKS:
            out = tmp_path / ('%s-%s.raw' % (p.id, name))
            sh('qemu-img', 'convert', '-f', 'qcow2', '-O', 'raw', _image(p, name), out)
            assert sha256_file(out) == p.snaps[name].sha256, '%s %s %s' % (mode, p.level, name)
            out.unlink()


@pytest.mark.parametrize('fmt', ['qcow2', 'raw'])
def test_restore_every_point_by_id(timeline, mode, fmt, workroot):
    for p in timeline.points[mode]:
        dest = workroot / 'restore' / mode / fmt / p.id
        result = ok(ftlib.restore(timeline.guest.name, timeline.repos[mode], dest, backup=p.id, format=fmt))
        assert result['changed'] is True
        assert result['backup']['id'] == p.id
        assert result['backup']['level'] == p.level
        assert [d['name'] for d in result['disks']] == list(DISKS)
        for entry in result['disks']:
            assert entry['verified'] is True
            assert entry['path'] == str(dest / ('%s.%s' % (entry['name'], fmt)))
            assert entry['digest'] == p.disk(entry['name'])['image_digest']
            assert_same_content(p.snaps[entry['name']].path, entry['path'], fmt)
            info = image_info(entry['path'])
            assert info['format'] == fmt
            assert 'backing-filename' not in info      # flattened
            assert oct(os.stat(entry['path']).st_mode & 0o777) == oct(0o600)
        assert sorted(os.listdir(dest)) == sorted('%s.%s' % (d, fmt) for d in DISKS)
        shutil.rmtree(dest)


def test_restore_latest_and_by_time(timeline, mode, workroot):
    points = timeline.points[mode]
    repo = timeline.repos[mode]
    dest = workroot / 'restore' / mode / 'latest'
    result = ok(ftlib.restore(timeline.guest.name, repo, dest, disks=['vda']))
    assert result['backup']['id'] == points[-1].id
    assert [d['name'] for d in result['disks']] == ['vda']
    assert_same_content(points[-1].snaps['vda'].path, result['disks'][0]['path'], 'qcow2')
    assert os.listdir(dest) == ['vda.qcow2']

    # A time between the 2nd and the 3rd backup means the 2nd: the newest at or before it.
    t1 = datetime.strptime(points[1].backup['started'], '%Y-%m-%dT%H:%M:%S.%fZ')
    t2 = datetime.strptime(points[2].backup['started'], '%Y-%m-%dT%H:%M:%S.%fZ')
    moment = t1 + (t2 - t1) / 2
    for spec, name in ((ftlib.iso(moment), 'no-zone'), (ftlib.iso(moment) + 'Z', 'utc'),
                       ((moment + timedelta(hours=2)).strftime('%Y-%m-%dT%H:%M:%S.%f') + '+02:00', 'offset'),
                       (points[1].backup['started'], 'exact')):
        dest = workroot / 'restore' / mode / ('time-%s' % name)
        result = ok(ftlib.restore(timeline.guest.name, repo, dest, backup=spec, format='raw'))
        assert result['backup']['id'] == points[1].id, spec
        for entry in result['disks']:
            assert_same_content(points[1].snaps[entry['name']].path, entry['path'], 'raw')
        shutil.rmtree(dest)
    # Before the first backup there is nothing to restore.
    early = datetime.strptime(points[0].backup['started'], '%Y-%m-%dT%H:%M:%S.%fZ') - timedelta(seconds=1)
    result = ftlib.restore(timeline.guest.name, repo, workroot / 'restore' / mode / 'early', backup=ftlib.iso(early))
    failed(result, 'no backup of domain %s at or before' % timeline.guest.name)
    assert not (workroot / 'restore' / mode / 'early').exists()


def test_one_checkpoint_per_backup(timeline, mode):
    repo = timeline.repos[mode]
    prefix = checkpoint_prefix(repo)
    points = timeline.points[mode]
    assert [p.backup['checkpoint'] for p in points] == [prefix + p.id for p in points]
    mine = [c for c in timeline.guest.checkpoints() if c.startswith(prefix)]
    assert mine == sorted(prefix + p.id for p in points)
    for p in points:
        with open(os.path.join(p.backup['path'], 'checkpoint.xml')) as src:
            assert '<name>%s</name>' % (prefix + p.id) in src.read()
        m = read_manifest(p.backup['path'])
        assert m['checkpoint'] == prefix + p.id
        assert m['repository_id'] == repo_id(repo)


def test_repositories_do_not_share_checkpoints(timeline):
    """Four repositories back up one domain in turn; each keeps its own checkpoints."""
    prefixes = dict((name, checkpoint_prefix(repo)) for name, repo in timeline.repos.items())
    assert len(set(prefixes.values())) == len(prefixes)
    names = timeline.guest.checkpoints()
    for name, prefix in prefixes.items():
        assert len([c for c in names if c.startswith(prefix)]) == len(timeline.points[name])


def test_info_lists_and_verifies(timeline, mode):
    points = timeline.points[mode]
    info = ok(ftlib.backup_info(timeline.repos[mode]))
    assert info['changed'] is False
    assert info['repository']['id'] == repo_id(timeline.repos[mode])
    assert [d['name'] for d in info['domains']] == [timeline.guest.name]
    dom = info['domains'][0]
    assert dom['errors'] == []
    assert [c['id'] for c in dom['chains']] == [points[0].id]
    listed = dom['chains'][0]['backups']
    assert [b['id'] for b in listed] == [p.id for p in points]
    assert [b['level'] for b in listed] == [p.level for p in points]
    assert [b['parent'] for b in listed] == [p.backup['parent'] for p in points]
    assert dom['chains'][0]['size'] == sum(b['size'] for b in listed) > 0
    assert 'verified_ok' not in info

    checked = ok(ftlib.backup_info(timeline.repos[mode], domain=timeline.guest.name, verify=True))
    assert checked['verified_ok'] is True
    for b in checked['domains'][0]['chains'][0]['backups']:
        assert b['verify']['ok'] is True
        assert [d['name'] for d in b['verify']['disks']] == list(DISKS)


def _data_offset(image):
    """Host offset of a data cluster that the image itself holds (not its backing file)."""
    for extent in json.loads(sh('qemu-img', 'map', '--output=json', image)):
        if extent['data'] and extent.get('depth', 0) == 0 and 'offset' in extent and extent['length'] >= 4096:
            return extent['offset'], extent['start']
    raise AssertionError('no data cluster in %s' % image)


def test_corruption_is_found(timeline, mode, workroot):
    """Flip one byte inside a data cluster of a copy of the repository: verify says so, and a
    restore refuses to hand out the wrong data."""
    copy = workroot / ('corrupt-%s' % mode)
    shutil.copytree(timeline.repos[mode], copy, symlinks=True)
    try:
        points = timeline.points[mode]
        victim = points[1]      # the first incremental: its own clusters
        image = os.path.join(str(copy), os.path.relpath(_image(victim, 'vda'), str(timeline.repos[mode])))
        host_offset, guest_offset = _data_offset(image)
        with open(image, 'r+b') as f:
            f.seek(host_offset + 100)
            byte = f.read(1)
            f.seek(host_offset + 100)
            f.write(bytes([byte[0] ^ 0xff]))
        sh('qemu-img', 'check', '-q', image)      # the qcow2 structure is still fine

        info = run_module('virt_backup_info', dict(repository=str(copy), verify=True))
        ok(info)
        assert info['verified_ok'] is False
        by_id = dict((b['id'], b) for b in info['domains'][0]['chains'][0]['backups'])
        assert by_id[points[0].id]['verify']['ok'] is True          # the full is intact
        bad = by_id[victim.id]['verify']
        assert bad['ok'] is False
        vda = [d for d in bad['disks'] if d['name'] == 'vda'][0]
        assert vda['ok'] is False
        assert 'offset %d' % (guest_offset - guest_offset % (64 * 1024)) in vda['integrity'] or \
            'differs' in vda['integrity']
        vdb = [d for d in bad['disks'] if d['name'] == 'vdb'][0]
        assert vdb['ok'] is True

        dest = workroot / ('corrupt-restore-%s' % mode)
        result = ftlib.restore(timeline.guest.name, copy, dest, backup=victim.id, disks=['vda'])
        failed(result, 'not bit-exact')
        assert not dest.exists(), 'the failed restore left %s' % dest
    finally:
        shutil.rmtree(copy, ignore_errors=True)


def test_manifest_records_the_point(timeline, mode):
    for p in timeline.points[mode]:
        m = read_manifest(p.backup['path'])
        assert m['complete'] is True
        assert m['id'] == p.id and m['level'] == p.level and m['mode'] == mode
        assert m['domain'] == timeline.guest.name
        assert m['domain_uuid'] == timeline.guest.dom.UUIDString()
        for d in m['disks']:
            # the integrity map is the one the digest names
            path = os.path.join(p.backup['path'], d['integrity']['map'])
            with gzip.open(path, 'rb') as src:
                data = src.read()
            # a new chain hashes with XXH3-128 (16-byte digests, manifest format 2)
            assert m['format_version'] == 2 and d['integrity']['algorithm'] == 'xxh3-128'
            assert len(data) == 16 * ((d['virtual_size'] + 65535) // 65536)
            assert hashlib.sha256(data).hexdigest() == d['image_digest']
        files = sorted(os.listdir(p.backup['path']))
        assert files == sorted(['checkpoint.xml', 'domain.xml', 'manifest.json', 'vda.blockhash.gz',
                                'vda.qcow2', 'vdb.blockhash.gz', 'vdb.qcow2'])
