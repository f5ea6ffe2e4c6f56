# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""virt_restore as a user meets it: idempotent, check mode, overwriting, defining a new domain."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import stat

import libvirt
from lxml import etree

from support.guests import remove_domain, unique
from support.host import sh
from support.images import assert_same_content, image_info
from support.modules import failed, ok, run_module
import ftlib


def test_second_run_changes_nothing(timeline, workroot):
    point = timeline.points['pull'][1]
    dest = workroot / 'restore-idem'
    args = dict(backup=point.id, format='raw')
    first = ok(ftlib.restore(timeline.guest.name, timeline.repos['pull'], dest, **args))
    assert first['changed'] is True
    stamps = dict((d['path'], os.stat(d['path']).st_mtime_ns) for d in first['disks'])

    again = ok(ftlib.restore(timeline.guest.name, timeline.repos['pull'], dest, **args))
    assert again['changed'] is False
    assert [d['verified'] for d in again['disks']] == [True, True]
    assert dict((d['path'], os.stat(d['path']).st_mtime_ns) for d in again['disks']) == stamps

    predicted = ok(ftlib.restore(timeline.guest.name, timeline.repos['pull'], dest, check_mode=True, **args))
    assert predicted['changed'] is False

    # Another point into the same place: the files hold other data; without force, refused.
    other = timeline.points['pull'][3]
    refused = ftlib.restore(timeline.guest.name, timeline.repos['pull'], dest, backup=other.id, format='raw')
    failed(refused, 'exists and does not hold disk', 'force')
    assert dict((d['path'], os.stat(d['path']).st_mtime_ns) for d in first['disks']) == stamps
    forced = ok(ftlib.restore(timeline.guest.name, timeline.repos['pull'], dest, backup=other.id, format='raw',
                              force=True))
    assert forced['changed'] is True
    for entry in forced['disks']:
        assert_same_content(other.snaps[entry['name']].path, entry['path'], 'raw')

    # A restored file damaged later is found and, with force, rewritten.
    victim = forced['disks'][0]['path']
    with open(victim, 'r+b') as f:
        f.seek(1024 * 1024 + 17)
        f.write(b'\x5a')
    repaired = ok(ftlib.restore(timeline.guest.name, timeline.repos['pull'], dest, backup=other.id, format='raw',
                                force=True))
    assert repaired['changed'] is True
    assert_same_content(other.snaps['vda'].path, victim, 'raw')


def test_check_mode_writes_nothing(timeline, workroot):
    dest = workroot / 'restore-check'
    result = ok(ftlib.restore(timeline.guest.name, timeline.repos['push'], dest, check_mode=True))
    assert result['changed'] is True
    assert result['backup']['id'] == timeline.points['push'][-1].id
    assert [d['path'] for d in result['disks']] == [str(dest / 'vda.qcow2'), str(dest / 'vdb.qcow2')]
    assert [d['verified'] for d in result['disks']] == [False, False]
    assert not dest.exists()


def test_define_a_new_domain(timeline, workroot, conn, cleanup):
    point = timeline.points['push'][2]
    name = unique('ft-restored')
    cleanup.domain(name)
    dest = workroot / 'restore-define'
    args = dict(backup=point.id, define=True, new_name=name)

    predicted = ok(ftlib.restore(timeline.guest.name, timeline.repos['push'], dest, check_mode=True, **args))
    assert predicted['changed'] is True
    assert name not in [d.name() for d in conn.get().listAllDomains()]

    result = ok(ftlib.restore(timeline.guest.name, timeline.repos['push'], dest, **args))
    assert result['changed'] is True
    dom = conn.get().lookupByName(name)
    try:
        assert result['domain']['name'] == name
        assert result['domain']['uuid'] == dom.UUIDString() != timeline.guest.dom.UUIDString()
        assert dom.isActive() == 0 and dom.isPersistent() == 1
        root = etree.fromstring(dom.XMLDesc(0).encode())
        disks = dict((d.find('target').get('dev'), (d.find('source').get('file'), d.find('driver').get('type')))
                     for d in root.findall('./devices/disk'))
        assert disks == dict(vda=(str(dest / 'vda.qcow2'), 'qcow2'), vdb=(str(dest / 'vdb.qcow2'), 'qcow2'))
        assert root.find('./os/type').get('machine').startswith('pc')
        assert root.get('type') == 'qemu'
        for name_ in ('vda', 'vdb'):
            assert_same_content(point.snaps[name_].path, dest / ('%s.qcow2' % name_), 'qcow2')
        # dest was made for a domain: QEMU's user may traverse it (not list it), so the domain starts.
        assert stat.S_IMODE(os.stat(str(dest)).st_mode) == 0o711
        dom.create()
        dom.destroy()

        again = ok(ftlib.restore(timeline.guest.name, timeline.repos['push'], dest, **args))
        assert again['changed'] is False
        assert again['domain']['uuid'] == dom.UUIDString()

        # The name is taken by a domain that does not use these disks: refused.
        clash = ftlib.restore(timeline.guest.name, timeline.repos['push'], workroot / 'restore-define-2',
                              backup=point.id, define=True, new_name=timeline.guest.name)
        failed(clash, 'exists already', 'new_name')
        assert not (workroot / 'restore-define-2').exists()
    finally:
        dom.undefineFlags(0)


UEFI_XML = """<domain type='qemu'><name>{name}</name><memory unit='MiB'>64</memory>
<os><type arch='x86_64' machine='q35'>hvm</type>
<loader readonly='yes' type='pflash'>/usr/share/OVMF/OVMF_CODE_4M.fd</loader>
<nvram template='/usr/share/OVMF/OVMF_VARS_4M.fd'>/var/lib/libvirt/qemu/nvram/{name}_VARS.fd</nvram></os>
<features><acpi/></features>
<devices><disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='{disk}'/>
<target dev='vda' bus='virtio'/></disk></devices></domain>"""


def test_defined_copy_has_its_own_uefi_variables(workroot, conn, cleanup):
    """A UEFI domain (defined, never started: backed up offline) restored as a new domain gets its
    own NVRAM file, not the original's."""
    place = workroot / 'uefi'
    place.mkdir(mode=0o755)
    disk = place / 'vda.qcow2'
    sh('qemu-img', 'create', '-q', '-f', 'qcow2', disk, '16M')
    sh('qemu-io', '-f', 'qcow2', '-c', 'write -P 0x11 64k 64k', disk)
    name, copy = unique('ft-uefi'), unique('ft-uefi-copy')
    cleanup.domain(name)
    cleanup.domain(copy)
    conn.get().defineXML(UEFI_XML.format(name=name, disk=disk))
    repo, dest = place / 'repo', place / 'restored'
    backup = ok(ftlib.backup(name, repo))
    assert backup['backup']['mode'] == 'offline' and backup['backup']['online'] is False
    result = ok(ftlib.restore(name, repo, dest, define=True, new_name=copy))
    sh('qemu-img', 'compare', '-q', '-f', 'qcow2', '-F', 'qcow2', disk, dest / 'vda.qcow2')

    def nvram(domain_name):
        root = etree.fromstring(conn.get().lookupByName(domain_name).XMLDesc(
            libvirt.VIR_DOMAIN_XML_INACTIVE).encode())
        elem = root.find('./os/nvram')
        return elem.text, elem.get('template'), root.find('./os/loader').text

    original, restored = nvram(name), nvram(copy)
    assert restored[0] != original[0], 'the copy shares the NVRAM file %s' % original[0]
    assert restored[0] == '/var/lib/libvirt/qemu/nvram/%s_VARS.fd' % copy
    assert restored[1:] == original[1:]
    assert result['domain']['name'] == copy


def test_diff_shows_the_restored_files_and_the_domain(timeline, workroot, conn, cleanup):
    """Diff mode: the files and the domain a restore makes, by name, format and size; check mode
    shows the same diff as the real run, and a second run none."""
    point = timeline.points['push'][1]
    name = unique('fu-diff')
    cleanup.domain(name)
    dest = workroot / 'restore-diff'
    args = dict(domain=timeline.guest.name, repository=str(timeline.repos['push']), dest=str(dest),
                backup=point.id, define=True, new_name=name)
    try:
        predicted = ok(run_module('virt_restore', args, check_mode=True, diff=True))
        assert not dest.exists()
        result = ok(run_module('virt_restore', args, diff=True))
        assert result['changed'] is True and predicted['diff'] == result['diff']
        diff = result['diff']
        assert diff['before'] == dict(files={}, domain=None)
        assert diff['after']['domain'] == name
        disks = dict((str(dest / ('%s.qcow2' % t)), t) for t in ('vda', 'vdb'))
        for path, target in disks.items():
            size = image_info(path)['virtual-size']
            assert diff['after']['files'][path] == 'qcow2, %d bytes: disk %s of backup %s' % (size, target, point.id)
        # Nothing else is listed than what the run wrote (firmware files, when the backup has them).
        assert sorted(diff['after']['files']) == sorted(
            str(p) for p in dest.rglob('*') if p.is_file())

        again = ok(run_module('virt_restore', args, diff=True))
        assert again['changed'] is False
        assert again['diff']['before'] == again['diff']['after'] == diff['after']
        assert 'diff' not in ok(run_module('virt_restore', args))

        # Overwriting with force: the diff shows the file before it was replaced.
        other = timeline.points['push'][2]
        forced_args = dict(args, backup=other.id, force=True, define=False)
        predicted = ok(run_module('virt_restore', forced_args, check_mode=True, diff=True))
        forced = ok(run_module('virt_restore', forced_args, diff=True))
        assert forced['changed'] is True and predicted['diff'] == forced['diff']
        replaced = [p for p in disks if forced['diff']['before']['files'][p] != forced['diff']['after']['files'][p]]
        assert replaced, 'the two points hold the same data: nothing to overwrite'
        for path in replaced:
            assert forced['diff']['before']['files'][path].endswith("bytes, not this backup's data")
            assert forced['diff']['after']['files'][path].endswith('disk %s of backup %s' % (disks[path], other.id))
        assert forced['diff']['before']['domain'] is None and forced['diff']['after']['domain'] is None
    finally:
        remove_domain(conn, name)
