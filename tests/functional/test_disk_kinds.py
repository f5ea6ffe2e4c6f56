# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Disks that hold nothing to back up (a CD-ROM) are skipped with a reason, or refused when named; raw disks
are backed up by comparison; excluded disks are listed as such."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from lxml import etree

from support.guests import unique
from support.host import sh
from support.modules import failed, ok
from support.repository import backup_dirs
import ftlib

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
    sh('qemu-img', 'create', '-q', '-f', 'qcow2', place / 'vda.qcow2', '16M')
    sh('qemu-io', '-f', 'qcow2', '-c', 'write -P 0x21 0 64k', place / 'vda.qcow2')
    sh('qemu-img', 'create', '-q', '-f', 'raw', place / 'vdb.raw', '8M')
    sh('qemu-img', 'create', '-q', '-f', 'raw', place / 'cd.iso', '1M')
    name = unique('ft-kinds')
    cleanup.domain(name)
    conn.get().defineXML(XML.format(name=name, dir=place))
    repo = place / 'repo'

    refused = ftlib.backup(name, repo, disks=['vda', 'hdc'])
    failed(refused, 'device hdc is a cdrom, not a disk')
    assert backup_dirs(repo, name) == []

    # Every disk that holds data by default: the raw one too (read in full, compared block by block).
    result = ok(ftlib.backup(name, repo))
    b = result['backup']
    assert dict((d['name'], d['method']) for d in b['disks']) == dict(vda='bitmap', vdb='compare')
    assert [(d['name'], d['reason']) for d in b['skipped_disks']] == [('hdc', 'device hdc is a cdrom, not a disk')]

    # Left out on purpose: listed as excluded.
    result = ok(ftlib.backup(name, repo, exclude=['vdb']))
    b = result['backup']
    assert [d['name'] for d in b['disks']] == ['vda']
    skipped = dict((d['name'], d['reason']) for d in b['skipped_disks'])
    assert skipped == dict(hdc='device hdc is a cdrom, not a disk', vdb='excluded')

    # The saved definition holds a CD-ROM with a host file: refused unless the repository is trusted.
    copy = unique('ft-kinds-copy')
    cleanup.domain(copy)
    refused = ftlib.restore(name, repo, place / 'restored', define=True, new_name=copy)
    failed(refused, 'cdrom holds %s' % (place / 'cd.iso'), 'trust_saved_xml')
    ok(ftlib.restore(name, repo, place / 'restored', define=True, new_name=copy, trust_saved_xml=True))
    root = etree.fromstring(conn.get().lookupByName(copy).XMLDesc(0).encode())
    disks = dict((d.find('target').get('dev'), d.get('device')) for d in root.findall('./devices/disk'))
    # The raw disk was not in this backup: the copy must not point at the original's storage.
    assert disks == dict(vda='disk', hdc='cdrom')


def test_relative_repository_path(guest):
    result = ftlib.backup(guest.name, 'relative/repo')
    failed(result, 'must be an absolute path')
