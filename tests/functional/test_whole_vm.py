# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Every disk that holds data is backed up: a qcow2 file (dirty bitmaps), a raw file and a block
device (read in full, compared block by block with the previous backup's integrity data), beside
a read-only CD-ROM that is left out. Chains of full, incremental, differential and incremental in
pull and push mode, then an offline backup; every point restored and compared byte for byte with
shadow copies of what the guest wrote; the repository grows by what changed, not by disk size."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import subprocess

import libvirt_qemu
import pytest
from lxml import etree

from support.guests import remove_domain, unique
from support.host import KiB, MiB, sh
from support.images import assert_same_content, image_info, sparse_copy
from support.modules import failed, ok
from support.repository import backup_dirs
import ftlib

SIZE = 32 * MiB
BLOCK = 64 * KiB

XML = """<domain type='qemu'><name>{name}</name><memory unit='MiB'>64</memory><vcpu>1</vcpu>
<os><type arch='x86_64' machine='pc'>hvm</type></os><devices>
<emulator>/usr/bin/qemu-system-x86_64</emulator>
<disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='{dir}/vda.qcow2'/>
<target dev='vda' bus='virtio'/></disk>
<disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='{dir}/vdb.raw'/>
<target dev='vdb' bus='virtio'/></disk>
<disk type='block' device='disk'><driver name='qemu' type='raw'/><source dev='{loop}'/>
<target dev='vdc' bus='virtio'/></disk>
<disk type='file' device='cdrom'><driver name='qemu' type='raw'/><source file='{dir}/cd.iso'/>
<target dev='hdc' bus='ide'/><readonly/></disk>
</devices></domain>"""


class WholeVm:
    """The domain, its three data disks and a shadow raw file of each."""

    def __init__(self, conn, place, name):
        self.conn = conn
        self.place = place
        self.name = name
        sh('qemu-img', 'create', '-q', '-f', 'qcow2', place / 'vda.qcow2', str(SIZE))
        sh('qemu-img', 'create', '-q', '-f', 'raw', place / 'vdb.raw', str(SIZE))
        sh('qemu-img', 'create', '-q', '-f', 'raw', place / 'vdc.backing', str(SIZE))
        sh('qemu-img', 'create', '-q', '-f', 'raw', place / 'cd.iso', str(MiB))
        self.loop = subprocess.check_output(['losetup', '-f', '--show', str(place / 'vdc.backing')]).decode().strip()
        self.paths = dict(vda=place / 'vda.qcow2', vdb=place / 'vdb.raw', vdc=self.loop)
        self.shadows = {}
        for target in self.paths:
            shadow = place / ('%s.shadow' % target)
            with open(str(shadow), 'wb') as out:
                out.truncate(SIZE)
            self.shadows[target] = shadow
        conn.get().defineXML(XML.format(name=name, dir=place, loop=self.loop))

    @property
    def dom(self):
        return self.conn.get().lookupByName(self.name)

    def running(self):
        return self.dom.isActive() == 1

    def _alias(self, target):
        root = etree.fromstring(self.dom.XMLDesc(0).encode())
        for disk in root.findall('./devices/disk'):
            if disk.find('target').get('dev') == target:
                return disk.find('alias').get('name')
        raise AssertionError('no alias for %s' % target)

    def write(self, target, offset, length, pattern):
        """Write as the guest would (through QEMU while it runs, into the disk while shut off)."""
        if self.running():
            libvirt_qemu.qemuMonitorCommand(
                self.dom, 'qemu-io -d /machine/peripheral/%s/virtio-backend "write -P 0x%02x %d %d"'
                % (self._alias(target), pattern, offset, length), libvirt_qemu.VIR_DOMAIN_QEMU_MONITOR_COMMAND_HMP)
            libvirt_qemu.qemuMonitorCommand(
                self.dom, 'qemu-io -d /machine/peripheral/%s/virtio-backend "flush"' % self._alias(target),
                libvirt_qemu.VIR_DOMAIN_QEMU_MONITOR_COMMAND_HMP)
        elif target == 'vda':
            sh('qemu-io', '-f', 'qcow2', '-c', 'write -P 0x%02x %d %d' % (pattern, offset, length),
               self.paths['vda'])
        else:
            with open(str(self.paths[target]), 'r+b') as out:
                out.seek(offset)
                out.write(bytes([pattern]) * length)
                out.flush()
                os.fsync(out.fileno())
        with open(str(self.shadows[target]), 'r+b') as out:
            out.seek(offset)
            out.write(bytes([pattern]) * length)

    def snapshot(self, tag):
        copies = {}
        for target, shadow in self.shadows.items():
            copy = self.place / ('%s.%s.raw' % (target, tag))
            sparse_copy(shadow, copy)
            copies[target] = copy
        return copies

    def remove(self):
        remove_domain(self.conn, self.name)
        subprocess.call(['losetup', '-d', self.loop])


@pytest.fixture(scope='module')
def whole_vm(workroot, conn):
    place = workroot / 'whole-vm'
    place.mkdir(mode=0o755)
    vm = WholeVm(conn, place, unique('ft-whole'))
    yield vm
    vm.remove()


def _manifest(result):
    with open(os.path.join(result['backup']['path'], 'manifest.json')) as src:
        return json.load(src)


def _disk(result, name):
    return [d for d in result['backup']['disks'] if d['name'] == name][0]


def _blocks(*writes):
    """Bytes of the hash blocks that writes (offset, length) touch."""
    blocks = set()
    for offset, length in writes:
        blocks.update(range(offset // BLOCK, (offset + length + BLOCK - 1) // BLOCK))
    return len(blocks) * BLOCK


def _restore_and_compare(vm, repo, result, expected, workroot):
    dest = workroot / unique('whole-restore')
    ok(ftlib.restore(vm.name, repo, dest, backup=result['backup']['id'], format='raw'))
    for target, shadow in expected.items():
        assert_same_content(shadow, dest / ('%s.raw' % target), 'raw')
    subprocess.call(['rm', '-rf', str(dest)])


@pytest.mark.parametrize('mode', ['pull', 'push'])
def test_every_disk_kind_in_a_chain(whole_vm, workroot, mode):
    vm = whole_vm
    if not vm.running():
        vm.dom.create()
    repo = workroot / ('whole-repo-%s' % mode)
    points = []
    base = 0x10 if mode == 'pull' else 0x50
    for target in ('vda', 'vdb', 'vdc'):
        vm.write(target, MiB, 4 * MiB, base)
    full = ok(ftlib.backup(vm.name, repo, mode=mode, level='full'))
    assert [(s['name'], s['reason']) for s in full['backup']['skipped_disks']] == [
        ('hdc', 'device hdc is a cdrom, not a disk')]
    assert {d['name']: d['method'] for d in full['backup']['disks']} == dict(vda='bitmap', vdb='compare',
                                                                             vdc='compare')
    points.append((full, vm.snapshot('%s-full' % mode)))

    steps = [('incremental', [(5 * MiB, 64 * KiB), (9 * MiB + 100, 3000)]),
             ('differential', [(20 * MiB, 128 * KiB)]),
             ('incremental', [(30 * MiB, 64 * KiB), (MiB, 4096)])]
    for number, (level, writes) in enumerate(steps):
        for target in ('vda', 'vdb', 'vdc'):
            for offset, length in writes:
                vm.write(target, offset, length, base + number + 1)
        before = sorted(p.name for p in backup_dirs(repo, vm.name))
        predicted = ok(ftlib.backup(vm.name, repo, mode=mode, level=level, check_mode=True))
        assert predicted['changed'] is True
        assert sorted(p.name for p in backup_dirs(repo, vm.name)) == before, 'check mode wrote a backup'
        result = ok(ftlib.backup(vm.name, repo, mode=mode, level=level))
        assert result['backup']['level'] == level, result['backup']['reason']
        assert [(d['name'], d['level'], d['method']) for d in predicted['backup']['disks']] == [
            (d['name'], d['level'], d['method']) for d in result['backup']['disks']]
        if level == 'differential':
            # compared with the chain's full backup: everything since then
            changed = _blocks(*[w for s in steps[:number + 1] for w in s[1]])
        else:
            changed = _blocks(*writes)
        for target in ('vdb', 'vdc'):
            disk = _disk(result, target)
            assert disk['method'] == 'compare'
            assert disk['bytes_read'] >= 4 * MiB, disk       # read in full (its data)
            assert disk['bytes_written'] == changed, (target, level, disk, changed)
            image = os.path.join(result['backup']['path'], '%s.qcow2' % target)
            # The repository grows by what changed (plus qcow2 metadata), not by the disk size.
            assert os.path.getsize(image) < changed + MiB, (target, os.path.getsize(image), changed)
        assert _disk(result, 'vda')['method'] == 'bitmap'
        points.append((result, vm.snapshot('%s-%d' % (mode, number))))

    for result, expected in points:
        _restore_and_compare(vm, repo, result, expected, workroot)
    info = ok(ftlib.backup_info(repo, verify=True))
    assert info['verified_ok'] is True


def test_repository_mounted_after_the_domain_started(whole_vm, workroot):
    """QEMU's mount namespace does not see a file system mounted after the domain started (no mount
    propagation here); the pull scratch files live outside the repository, so a backup into such a
    repository works (it failed before: "Could not open '<repo>/.staging/...scratch.qcow2'")."""
    vm = whole_vm
    assert vm.running()
    mount = workroot / 'late-mount'
    mount.mkdir(mode=0o755)
    subprocess.check_call(['mount', '-t', 'tmpfs', '-o', 'size=256m,mode=0755', 'tmpfs', str(mount)])
    try:
        repo = mount / 'repo'
        result = ok(ftlib.backup(vm.name, repo))
        assert result['backup']['mode'] == 'pull' and result['backup']['level'] == 'full'
        _restore_and_compare(vm, repo, result, vm.snapshot('late-mount'), workroot)
    finally:
        subprocess.call(['umount', '-l', str(mount)])


def test_offline_backup_of_every_disk_kind(whole_vm, workroot):
    vm = whole_vm
    repo = workroot / 'whole-repo-push'      # the push chain of the test above (the last one written)
    vm.dom.destroy()
    writes = [(12 * MiB, 64 * KiB), (13 * MiB + 512, 512)]
    for target in ('vda', 'vdb', 'vdc'):
        for offset, length in writes:
            vm.write(target, offset, length, 0x7e)
    result = ok(ftlib.backup(vm.name, repo))
    assert result['backup']['mode'] == 'offline' and result['backup']['level'] == 'incremental', result['backup']
    for target in ('vdb', 'vdc'):
        disk = _disk(result, target)
        assert disk['method'] == 'compare' and disk['bytes_written'] == _blocks(*writes), disk
    expected = vm.snapshot('offline')
    _restore_and_compare(vm, repo, result, expected, workroot)
    # A second offline backup without writes stores nothing new for the compared disks.
    again = ok(ftlib.backup(vm.name, repo))
    assert [_disk(again, t)['bytes_written'] for t in ('vdb', 'vdc')] == [0, 0]


def test_a_disk_that_cannot_be_read_fails_unless_excluded(whole_vm, workroot):
    """A network disk of a shut-off domain cannot be read: the run fails naming it, and succeeds
    once the user excludes it."""
    vm = whole_vm
    assert not vm.running()
    xml = etree.fromstring(vm.dom.XMLDesc(0).encode())
    devices = xml.find('devices')
    devices.append(etree.fromstring(
        "<disk type='network' device='disk'><driver name='qemu' type='raw'/>"
        "<source protocol='nbd' name='x'><host name='127.0.0.1' port='10809'/></source>"
        "<target dev='vdd' bus='virtio'/></disk>"))
    vm.conn.get().defineXML(etree.tostring(xml).decode())
    repo = workroot / 'whole-repo-exclude'
    refused = ftlib.backup(vm.name, repo)
    failed(refused, 'disk vdd is a network disk', 'exclude')
    assert not repo.exists()
    result = ok(ftlib.backup(vm.name, repo, exclude=['vdd']))
    assert ('vdd', 'excluded') in [(s['name'], s['reason']) for s in result['backup']['skipped_disks']]
    assert sorted(d['name'] for d in result['backup']['disks']) == ['vda', 'vdb', 'vdc']


def test_linked_clone_restores_its_whole_content(workroot, conn, cleanup):
    """A qcow2 overlay on a base image (a linked clone): the backup holds what the guest sees, base
    included, and the restore is one standalone image with that content."""
    place = workroot / 'linked-clone'
    place.mkdir(mode=0o755)
    base, clone = place / 'base.qcow2', place / 'clone.qcow2'
    sh('qemu-img', 'create', '-q', '-f', 'qcow2', base, str(SIZE))
    sh('qemu-io', '-f', 'qcow2', '-c', 'write -P 0x61 0 3M', base)
    sh('qemu-img', 'create', '-q', '-f', 'qcow2', '-b', base, '-F', 'qcow2', clone)
    sh('qemu-io', '-f', 'qcow2', '-c', 'write -P 0x62 1M 64k', clone)
    name = unique('ft-clone')
    cleanup.domain(name)
    conn.get().defineXML(
        "<domain type='qemu'><name>%s</name><memory unit='MiB'>64</memory><os><type arch='x86_64' machine='pc'>hvm"
        "</type></os><devices><disk type='file' device='disk'><driver name='qemu' type='qcow2'/>"
        "<source file='%s'/><target dev='vda' bus='virtio'/></disk></devices></domain>" % (name, clone))
    expected = place / 'expected.raw'
    sh('qemu-img', 'convert', '-O', 'raw', clone, expected)
    for running in (False, True):
        if running:
            conn.get().lookupByName(name).create()
        repo = place / ('repo-%s' % ('running' if running else 'off'))
        result = ok(ftlib.backup(name, repo))
        assert result['backup']['disks'][0]['method'] == 'bitmap'
        dest = place / ('restored-%s' % running)
        ok(ftlib.restore(name, repo, dest))
        assert_same_content(expected, dest / 'vda.qcow2', 'qcow2')
        assert 'backing-filename' not in image_info(dest / 'vda.qcow2')
