# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Disks a backup cannot take (raw, CD-ROM) are skipped with a reason, or refused when named."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from lxml import etree

import ftlib
from ftlib import ok

XML = """<domain type='qemu'><name>{name}</name><memory unit='MiB'>64</memory>
<os><type arch='x86_64' machine='pc'>hvm</type></os><devices>
<disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='{dir}/vda.qcow2'/>
<target dev='vda' bus='virtio'/></disk>
<disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='{dir}/vdb.raw'/>
<target dev='vdb' bus='virtio'/></disk>
<disk type='file' device='cdrom'><driver name='qemu' type='raw'/><source file='{dir}/cd.iso'/>
<target dev='hdc' bus='ide'/><readonly/></disk>
</devices></domain>"""


def test_raw_disk_and_cdrom(workroot, conn, cleanup):
    place = workroot / 'kinds'
    place.mkdir(mode=0o755)
    ftlib.sh('qemu-img', 'create', '-q', '-f', 'qcow2', place / 'vda.qcow2', '16M')
    ftlib.sh('qemu-io', '-f', 'qcow2', '-c', 'write -P 0x21 0 64k', place / 'vda.qcow2')
    ftlib.sh('qemu-img', 'create', '-q', '-f', 'raw', place / 'vdb.raw', '8M')
    ftlib.sh('qemu-img', 'create', '-q', '-f', 'raw', place / 'cd.iso', '1M')
    name = ftlib.unique('ft-kinds')
    cleanup.domain(name)
    conn.get().defineXML(XML.format(name=name, dir=place))
    repo = place / 'repo'

    refused = ftlib.backup(name, repo, disks=['vdb'])
    ftlib.failed(refused, 'disk vdb is in raw format', 'qcow2')
    refused = ftlib.backup(name, repo, disks=['vda', 'hdc'])
    ftlib.failed(refused, 'device hdc is a cdrom, not a disk')
    assert ftlib.backup_dirs(repo, name) == []

    result = ok(ftlib.backup(name, repo))
    b = result['backup']
    assert [d['name'] for d in b['disks']] == ['vda']
    skipped = dict((d['name'], d['reason']) for d in b['skipped_disks'])
    assert sorted(skipped) == ['hdc', 'vdb']
    assert 'raw format' in skipped['vdb'] and 'cdrom' in skipped['hdc']

    copy = ftlib.unique('ft-kinds-copy')
    cleanup.domain(copy)
    ok(ftlib.restore(name, repo, place / 'restored', define=True, new_name=copy))
    root = etree.fromstring(conn.get().lookupByName(copy).XMLDesc(0).encode())
    disks = dict((d.find('target').get('dev'), d.get('device')) for d in root.findall('./devices/disk'))
    # The raw disk was not backed up: the copy must not point at the original's storage.
    assert disks == dict(vda='disk', hdc='cdrom')


def test_relative_repository_path(guest):
    result = ftlib.backup(guest.name, 'relative/repo')
    ftlib.failed(result, 'must be an absolute path')
