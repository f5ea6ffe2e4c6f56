# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Helpers of the instant-recovery and export tests: a shut-off source domain with two disks and
two backup points (a full and an incremental), each with raw copies of what its disks held, and
ways to read a disk through an NBD URI or through a running domain's own block layer."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import shutil
import tempfile
from pathlib import Path

from lxml import etree

from support.guests import disk_alias, domain_xml, hmp, remove_domain, unique
from support.host import IMAGES, KiB, MiB, qemu_owner, sh, SOCKET_ROOT
from support.images import sha256_file
from support.modules import ok, run_module
import ftlib

DISKS = (('vda', 64 * MiB), ('vdb', 32 * MiB))
# Where virt_backup_export (and instant recovery) keep the state of each served point.
EXPORTS = SOCKET_ROOT / 'exports'


class Source:
    """Domain inst-src-*: defined, never started; its images written with qemu-io, backed up
    offline twice into repository `repo` (under a private work directory QEMU can traverse)."""

    def __init__(self, lv):
        self.lv = lv
        self.root = Path(tempfile.mkdtemp(prefix='inst-', dir=str(IMAGES)))
        os.chmod(str(self.root), 0o711)
        self.name = unique('inst-src')
        self.repo = self.root / 'repo'
        self.images = self.root / 'images'
        self.images.mkdir(mode=0o755)
        self.paths = {}
        for target, size in DISKS:
            path = self.images / ('%s.qcow2' % target)
            sh('qemu-img', 'create', '-q', '-f', 'qcow2', path, size)
            self.paths[target] = path
        xml = domain_xml(self.name, sorted(self.paths.items()))
        xml = xml.replace('</devices>', "<interface type='user'><mac address='52:54:00:6a:11:01'/>"
                                        "<model type='virtio'/></interface></devices>")
        lv.get().defineXML(xml)
        self.points = []        # [(backup id, {disk: raw path})]
        self._write('vda', 0, MiB, 0xa1)
        self._write('vda', 5 * MiB + 4 * KiB, 192 * KiB, 0xa2)
        self._write('vdb', 0, 512 * KiB, 0xb1)
        self._backup('p1')
        self._write('vda', 2 * MiB - 4 * KiB, 8 * KiB, 0xc1)
        self._write('vda', 60 * MiB, 256 * KiB, 0xc2)
        self._write('vdb', 31 * MiB, MiB, 0xb4)
        self._backup('p2')

    def _write(self, disk, offset, length, pattern):
        sh('qemu-io', '-f', 'qcow2', '-c', 'write -P 0x%02x %d %d' % (pattern, offset, length),
           self.paths[disk])

    def _backup(self, tag):
        result = ok(ftlib.backup(self.name, self.repo))
        raws = {}
        for target in self.paths:
            raw = self.root / ('%s.%s.raw' % (target, tag))
            sh('qemu-img', 'convert', '-O', 'raw', self.paths[target], raw)
            raws[target] = raw
        self.points.append((result['backup']['id'], raws))

    def repo_files(self):
        """{relative path: (sha256, uid, mode)} of every file of the repository."""
        found = {}
        for base, _dirs, files in os.walk(str(self.repo)):
            for name in files:
                path = os.path.join(base, name)
                st = os.lstat(path)
                found[os.path.relpath(path, str(self.repo))] = (sha256_file(path), st.st_uid, st.st_mode)
        return found

    def remove(self):
        remove_domain(self.lv, self.name)
        shutil.rmtree(str(self.root), ignore_errors=True)


def read_uri(uri, out):
    """Copy what an NBD URI serves into the raw file out (nbdcopy, as root)."""
    sh('nbdcopy', '--', uri, out)
    return out


def assert_same_file(expected, actual):
    assert os.path.getsize(str(expected)) == os.path.getsize(str(actual)), (expected, actual)
    assert sha256_file(expected) == sha256_file(actual), '%s differs from %s' % (actual, expected)


def read_through_domain(dom, target, workdir, out):
    """What the running domain's disk target holds, read through QEMU's own block layer: an NBD
    server of that QEMU (HMP nbd_server_start / nbd_server_add) exports the disk's top node."""
    root = etree.fromstring(dom.XMLDesc(0).encode())
    index = None
    for disk in root.findall('./devices/disk'):
        if disk.find('target').get('dev') == target:
            index = disk.find('source').get('index')
    assert index, 'no index for %s in the live XML' % target
    sockdir = Path(workdir) / ('peek-%s' % os.urandom(4).hex())
    sockdir.mkdir(mode=0o700)
    uid, gid = qemu_owner()
    os.chown(str(sockdir), uid, gid)
    sock = sockdir / 'peek.sock'
    said = hmp(dom, 'nbd_server_start unix:%s' % sock)
    assert not said.strip(), said
    try:
        said = hmp(dom, 'nbd_server_add libvirt-%s-format peek' % index)
        assert not said.strip(), said
        read_uri('nbd+unix:///peek?socket=%s' % sock, out)
    finally:
        hmp(dom, 'nbd_server_stop')
        shutil.rmtree(str(sockdir), ignore_errors=True)
    return out


def guest_write(dom, target, offset, length, pattern):
    """A write by the guest to its disk (qemu-io on the device's backend), then a flush."""
    alias = disk_alias(dom, target)
    for cmd in ('write -P 0x%02x %d %d' % (pattern, offset, length), 'flush'):
        hmp(dom, 'qemu-io -d /machine/peripheral/%s/virtio-backend "%s"' % (alias, cmd))


def patch_raw(src, dst, offset, length, pattern):
    shutil.copyfile(str(src), str(dst))
    with open(str(dst), 'r+b') as f:
        f.seek(offset)
        f.write(bytes([pattern]) * length)
    return dst


def pid_alive(pid):
    try:
        with open('/proc/%d/stat' % pid) as src:
            return src.read().rsplit(')', 1)[1].split()[0] != 'Z'
    except OSError:
        return False


def stop_export(name):
    """Test cleanup: stop an export by its module, whatever its users."""
    run_module('virt_backup_export', dict(name=name, state='absent', force=True))
