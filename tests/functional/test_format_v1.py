# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Repositories of format version 1 (SHA-256 block hashes) stay readable, restorable, verifiable
and continuable after version 2 (XXH3-128) came.

fixtures/repository-v1.tar.gz was written by virt_backup of the collection before version 2
(commit 515a37d): a shut-off domain perf-v1 with an 8 MiB raw disk vda, a full backup and an
incremental (method compare); the SHA-256 of the disk at each point is below.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import gzip
import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from support.guests import remove_domain, unique
from support.host import IMAGES, MiB, sh
from support.images import assert_same_content, sha256_file
from support.modules import ok
import ftlib

FIXTURE = Path(__file__).resolve().parent / 'fixtures' / 'repository-v1.tar.gz'
DOMAIN = 'perf-v1'
SIZE = 8 * MiB
POINTS = {
    '20261206T202116Z': '7a437a718ba9f1bddf8751936d8ccf544e2dbcc5971a7fae8792c51da81874a9',
    '20261206T202120Z': 'bf8f0313ec316870bea891dfe0117dff87462b94682a8db1b95db93e8bdaf880',
}
CHAIN = '20261206T202116Z'


@pytest.fixture
def v1repo(conn):
    work = IMAGES / unique('perf-v1')
    work.mkdir(mode=0o711)
    repo = work / 'repo'
    repo.mkdir(mode=0o711)
    with tarfile.open(str(FIXTURE)) as tar:
        tar.extractall(str(repo))
    yield work, repo
    remove_domain(conn, DOMAIN)
    shutil.rmtree(str(work), ignore_errors=True)


def _manifest(repo, chain, bid):
    return json.loads((repo / DOMAIN / chain / bid / 'manifest.json').read_text())


def test_a_version_1_repository_restores_verifies_and_continues_its_chain(conn, v1repo):
    work, repo = v1repo
    assert json.loads((repo / 'repository.json').read_text())['format_version'] == 1

    # Every point restores bit-exact, to raw and to qcow2, verified against its SHA-256 map.
    for bid, digest in POINTS.items():
        for fmt in ('raw', 'qcow2'):
            dest = work / ('restore-%s-%s' % (bid, fmt))
            result = ok(ftlib.restore(DOMAIN, repo, dest, backup=bid, format=fmt))
            assert result['changed'] and result['disks'][0]['verified']
            image = dest / ('vda.%s' % fmt)
            raw = image if fmt == 'raw' else work / 'flat.raw'
            if fmt == 'qcow2':
                sh('qemu-img', 'convert', '-O', 'raw', image, raw)
            assert sha256_file(raw) == digest
            # A second run finds the restored disk bit-exact and changes nothing.
            assert not ok(ftlib.restore(DOMAIN, repo, dest, backup=bid, format=fmt))['changed']
    info = ok(ftlib.backup_info(repo, verify=True))
    assert info['verified_ok'] is True
    assert info['repository']['format_version'] == 1

    # An incremental on the version 1 chain keeps its block hash (SHA-256) and manifest version.
    disk = work / 'vda.raw'
    shutil.copyfile(str(work / 'restore-20261206T202120Z-raw' / 'vda.raw'), str(disk))
    os.chmod(str(disk), 0o600)
    subprocess.run(['qemu-io', '-f', 'raw', '-c', 'write -P 0x66 2M 128k', str(disk)], check=True,
                   stdout=subprocess.DEVNULL)
    dom = conn.get().defineXML(
        "<domain type='qemu'><name>%s</name><memory unit='MiB'>64</memory><vcpu>1</vcpu>"
        "<os><type arch='x86_64' machine='pc'>hvm</type></os><devices>"
        "<disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='%s'/>"
        "<target dev='vda' bus='virtio'/></disk></devices></domain>" % (DOMAIN, disk))
    assert dom is not None
    inc = ok(ftlib.backup(DOMAIN, repo))['backup']
    assert inc['level'] == 'incremental' and inc['chain'] == CHAIN
    assert inc['disks'][0]['bytes_written'] == 128 * 1024
    m = _manifest(repo, CHAIN, inc['id'])
    assert m['format_version'] == 1 and m['disks'][0]['integrity']['algorithm'] == 'sha256'
    assert json.loads((repo / 'repository.json').read_text())['format_version'] == 1
    dest = work / 'restore-inc'
    ok(ftlib.restore(DOMAIN, repo, dest, backup=inc['id'], format='raw'))
    assert sha256_file(dest / 'vda.raw') == sha256_file(disk)

    # A new chain hashes with XXH3-128 (manifest version 2); the repository marker says 2 from then on.
    full = ok(ftlib.backup(DOMAIN, repo, level='full'))['backup']
    m = _manifest(repo, full['id'], full['id'])
    assert m['format_version'] == 2 and m['disks'][0]['integrity']['algorithm'] == 'xxh3-128'
    with gzip.open(str(repo / DOMAIN / full['id'] / full['id'] / 'vda.blockhash.gz')) as hashes:
        assert len(hashes.read()) == SIZE // (64 * 1024) * 16       # 16-byte digests
    assert json.loads((repo / 'repository.json').read_text())['format_version'] == 2
    info = ok(ftlib.backup_info(repo, verify=True))
    assert info['verified_ok'] is True and info['repository']['format_version'] == 2
    assert [len(c['backups']) for c in info['domains'][0]['chains']] == [3, 1]
    dest = work / 'restore-v2'
    ok(ftlib.restore(DOMAIN, repo, dest, backup=full['id'], format='qcow2'))
    assert_same_content(disk, dest / 'vda.qcow2', 'qcow2')
