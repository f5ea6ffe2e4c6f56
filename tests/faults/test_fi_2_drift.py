# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""2. Drift between libvirt, QEMU and the repository, on one domain (fi-drift), a new repository per case.

Before an incremental the engine checks that the repository's last checkpoint exists in libvirt and
that its bitmap exists, records and is consistent on every disk; it redefines lost metadata from
the repository, or starts a new full chain and says why. Never a raw QEMU error, never a wrong
incremental: every backup here is restored and compared with the guest's data.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

import libvirt
import pytest

from support.guests import disk_xml
from support.host import MiB, sh
from support.repository import checkpoint_prefix, read_manifests
import fi_lib

SIZE = 128 * MiB


@pytest.fixture(scope='module')
def guest(host):
    g = fi_lib.make_guest(host, 'fi-drift', [('vda', SIZE, fi_lib.spread(SIZE, 16 * MiB, MiB, 7))])
    yield g
    g.remove()


def _first_full(fault, guest, repo):
    guest.start()
    full = fi_lib.backup(guest, repo)
    assert full['level'] == 'full', full
    fi_lib.verify_backup(fault, guest, repo, full['id'])
    return full


def _no_raw_error(backup):
    assert 'qemu' not in backup['reason'].lower() or 'checkpoint' in backup['reason'], backup['reason']


def test_undefine_define(guest, fault):
    """Domain undefined (with its checkpoint metadata) and defined again from its XML: running, shut off, and
    undefined while running, then stopped (the metadata goes with it) and defined and started again."""
    repo = fi_lib.new_repo_path('undefine')
    full = _first_full(fault, guest, repo)
    xml = guest.dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)

    fault.inject('running domain undefined with its checkpoint metadata and defined again from its XML')
    guest.write('vda', 3 * MiB, 2 * MiB, 0x51)
    guest.dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA)
    guest.define(xml)
    inc = fi_lib.backup(guest, repo)
    assert (inc['level'], inc['parent']) == ('incremental', full['id']), inc
    assert inc['disks'][0]['dirty_bytes'] <= 2 * MiB + 128 * 1024, inc['disks'][0]
    fi_lib.verify_backup(fault, guest, repo, inc['id'])
    fault.survived()

    fault.inject('shut-off domain undefined with its checkpoint metadata, defined again from its XML')
    guest.destroy()
    guest.write('vda', 9 * MiB, MiB, 0x52)
    guest.dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA)
    guest.define(xml)
    assert guest.checkpoints() == []
    inc2 = fi_lib.backup(guest, repo)
    assert (inc2['level'], inc2['mode'], inc2['parent']) == ('incremental', 'offline', inc['id']), inc2
    assert 'redefined checkpoint %s' % inc['checkpoint'] in inc2['reason'], inc2['reason']
    fi_lib.verify_backup(fault, guest, repo, inc2['id'])
    fault.survived()

    fault.inject('running domain undefined, stopped (its checkpoint metadata goes), defined and started again')
    guest.start()
    guest.write('vda', 11 * MiB, MiB, 0x53)
    guest.dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA)
    guest.dom.destroy()
    guest.define(xml)
    assert guest.checkpoints() == []
    guest.start()
    guest.write('vda', 12 * MiB, MiB, 0x54)
    inc3 = fi_lib.backup(guest, repo)
    assert (inc3['level'], inc3['mode'], inc3['parent']) == ('incremental', 'pull', inc2['id']), inc3
    assert 'redefined checkpoint %s' % inc2['checkpoint'] in inc3['reason'], inc3['reason']
    fi_lib.verify_backup(fault, guest, repo, inc3['id'])
    guest.write('vda', 13 * MiB, MiB, 0x55)
    inc4 = fi_lib.backup(guest, repo)
    assert (inc4['level'], inc4['parent']) == ('incremental', inc3['id']), inc4
    fi_lib.verify_backup(fault, guest, repo, inc4['id'])
    fault.survived()


def test_libvirtd_restarted_between_backups(host, guest, fault):
    """libvirtd restarted between two backups: the checkpoints survive, the next backup is incremental."""
    repo = fi_lib.new_repo_path('restart')
    full = _first_full(fault, guest, repo)
    guest.write('vda', 20 * MiB, 3 * MiB, 0x54)
    fault.inject('libvirtd restarted between backups')
    outage = host.restart_libvirtd()
    fault.note('libvirtd was away for %.1f s' % outage)
    assert guest.running()
    inc = fi_lib.backup(guest, repo)
    assert (inc['level'], inc['parent']) == ('incremental', full['id']), inc
    fi_lib.verify_backup(fault, guest, repo, inc['id'])
    fault.survived()


def test_checkpoint_deleted_by_hand(guest, fault):
    """A checkpoint deleted by hand: with its bitmaps (new full chain, reason given) or metadata only (redefined)."""
    repo = fi_lib.new_repo_path('ckdel')
    full = _first_full(fault, guest, repo)
    guest.write('vda', 30 * MiB, MiB, 0x55)
    inc = fi_lib.backup(guest, repo)
    fi_lib.verify_backup(fault, guest, repo, inc['id'])

    fault.inject('checkpoint metadata deleted by hand (virsh checkpoint-delete --metadata)')
    guest.write('vda', 31 * MiB, MiB, 0x56)
    guest.dom.checkpointLookupByName(inc['checkpoint'], 0).delete(libvirt.VIR_DOMAIN_CHECKPOINT_DELETE_METADATA_ONLY)
    inc2 = fi_lib.backup(guest, repo)
    assert (inc2['level'], inc2['parent']) == ('incremental', inc['id']), inc2
    assert 'redefined checkpoint %s' % inc['checkpoint'] in inc2['reason'], inc2['reason']
    fi_lib.verify_backup(fault, guest, repo, inc2['id'])
    fault.survived()

    fault.inject('checkpoint deleted by hand with its bitmap (virsh checkpoint-delete)')
    guest.write('vda', 32 * MiB, MiB, 0x57)
    guest.dom.checkpointLookupByName(inc2['checkpoint'], 0).delete(0)
    nxt = fi_lib.backup(guest, repo)
    assert nxt['level'] == 'full' and nxt['parent'] is None, nxt
    assert inc2['checkpoint'] in nxt['reason'] and 'cannot be redefined' in nxt['reason'], nxt['reason']
    assert nxt['chain'] != full['chain']
    fi_lib.verify_backup(fault, guest, repo, nxt['id'])
    # and the new chain continues incrementally
    guest.write('vda', 33 * MiB, MiB, 0x58)
    inc3 = fi_lib.backup(guest, repo)
    assert (inc3['level'], inc3['parent']) == ('incremental', nxt['id']), inc3
    fi_lib.verify_backup(fault, guest, repo, inc3['id'])
    fault.survived()


def test_two_repositories_alternately(guest, fault):
    """Two repositories back up one domain alternately; each incremental holds everything since its own last backup."""
    guest.start()
    repo_a = fi_lib.new_repo_path('alt-a')
    repo_b = fi_lib.new_repo_path('alt-b')
    fault.inject('a second repository backs up the same domain between the first one\'s backups')
    a0 = fi_lib.backup(guest, repo_a)
    b0 = fi_lib.backup(guest, repo_b)
    assert a0['level'] == b0['level'] == 'full'
    assert checkpoint_prefix(repo_a) != checkpoint_prefix(repo_b)
    last = {repo_a: a0, repo_b: b0}
    for n, repo in enumerate([repo_a, repo_b, repo_a, repo_b, repo_b, repo_a]):
        guest.write('vda', (40 + 2 * n) * MiB, MiB, 0x60 + n)
        res = fi_lib.backup(guest, repo)
        assert (res['level'], res['parent']) == ('incremental', last[repo]['id']), res
        fi_lib.verify_backup(fault, guest, repo, res['id'])
        last[repo] = res
    for repo in (repo_a, repo_b):
        prefix = checkpoint_prefix(repo)
        recorded = set(m['checkpoint'] for m in read_manifests(repo, guest.name).values())
        assert set(c for c in guest.checkpoints() if c.startswith(prefix)) == recorded
    fault.survived()


def test_qemu_killed(guest, fault):
    """QEMU killed with SIGKILL (bitmaps left in use): the next backup, online or offline, is a new full chain."""
    repo = fi_lib.new_repo_path('killqemu')
    full = _first_full(fault, guest, repo)

    fault.inject('QEMU killed (kill -9) and the domain started again')
    guest.write('vda', 50 * MiB, 2 * MiB, 0x71)
    guest.kill_qemu()
    guest.start()
    guest.write('vda', 60 * MiB, MiB, 0x72)
    nxt = fi_lib.backup(guest, repo)
    assert nxt['level'] == 'full' and nxt['parent'] is None, nxt
    assert full['checkpoint'] in nxt['reason'] and 'cannot be trusted' in nxt['reason'], nxt['reason']
    _no_raw_error(nxt)
    fi_lib.verify_backup(fault, guest, repo, nxt['id'])
    fault.survived()

    fault.inject('QEMU killed (kill -9), backup while the domain is still down')
    guest.write('vda', 70 * MiB, MiB, 0x73)
    guest.kill_qemu()
    # The bitmap of a checkpoint made since QEMU started was never stored: it is missing from the
    # image; bitmaps loaded at start are left marked in use.
    bitmaps = guest.image_bitmaps('vda')
    assert nxt['checkpoint'] not in bitmaps or 'in-use' in bitmaps[nxt['checkpoint']], bitmaps
    down = fi_lib.backup(guest, repo)
    assert (down['level'], down['mode']) == ('full', 'offline'), down
    assert nxt['checkpoint'] in down['reason'] and ('missing' in down['reason'] or 'inconsistent' in down['reason']), \
        down['reason']
    fi_lib.verify_backup(fault, guest, repo, down['id'])
    guest.start()
    guest.write('vda', 71 * MiB, MiB, 0x74)
    inc = fi_lib.backup(guest, repo)
    assert (inc['level'], inc['parent']) == ('incremental', down['id']), inc
    fi_lib.verify_backup(fault, guest, repo, inc['id'])
    fault.survived()


def _qmp(guest, command, **arguments):
    import json
    import libvirt_qemu
    out = libvirt_qemu.qemuMonitorCommand(guest.dom, json.dumps(dict(execute=command, arguments=arguments)), 0)
    return json.loads(out)['return']


def _format_node(guest, target):
    alias = guest.alias(target)
    for dev in _qmp(guest, 'query-block'):
        if dev.get('qdev', '').startswith('/machine/peripheral/%s/' % alias) or dev.get('qdev') == alias:
            return dev['inserted']['node-name']
    raise AssertionError('no block node for %s' % target)


def test_bitmap_disabled(guest, fault):
    """The checkpoint's bitmap stops recording (disabled behind libvirt's back): never a wrong incremental."""
    repo = fi_lib.new_repo_path('disabled')
    full = _first_full(fault, guest, repo)

    fault.inject('bitmap of the last checkpoint disabled in the running QEMU (block-dirty-bitmap-disable)')
    _qmp(guest, 'block-dirty-bitmap-disable', node=_format_node(guest, 'vda'), name=full['checkpoint'])
    guest.write('vda', 100 * MiB, 2 * MiB, 0x7c)
    nxt = fi_lib.backup(guest, repo)
    fault.note('after the bitmap was disabled: %s (%s)' % (nxt['level'], nxt['reason']))
    fi_lib.verify_backup(fault, guest, repo, nxt['id'])
    assert nxt['level'] == 'full', nxt['reason']
    fault.survived()

    fault.inject('bitmap of the last checkpoint disabled in the qcow2 of the shut-off domain (qemu-img bitmap --disable)')
    guest.destroy()
    sh('qemu-img', 'bitmap', '--disable', guest.disks['vda'].path, nxt['checkpoint'])
    guest.write('vda', 104 * MiB, MiB, 0x7d)
    down = fi_lib.backup(guest, repo)
    fault.note('after the bitmap was disabled offline: %s (%s)' % (down['level'], down['reason']))
    fi_lib.verify_backup(fault, guest, repo, down['id'])
    assert (down['level'], down['mode']) == ('full', 'offline'), down['reason']
    assert 'disabled' in down['reason'], down['reason']
    guest.start()
    fault.survived()


def _replace_with_copy(guest, target):
    """Replace the image by a copy without bitmaps (qemu-img convert does not copy them)."""
    disk = guest.disks[target]
    copy = disk.path + '.copy'
    sh('qemu-img', 'convert', '-q', '-f', 'qcow2', '-O', 'qcow2', disk.path, copy)
    os.chmod(copy, 0o644)
    os.rename(copy, disk.path)
    assert guest.image_bitmaps(target) == {}


def test_disk_replaced_without_bitmaps(guest, fault):
    """A disk replaced by a copy without bitmaps: offline and after a start, the next backup is a new full chain."""
    repo = fi_lib.new_repo_path('replaced')
    full = _first_full(fault, guest, repo)

    fault.inject('disk replaced by a copy without bitmaps while the domain is shut off')
    guest.destroy()
    guest.write('vda', 80 * MiB, MiB, 0x75)
    _replace_with_copy(guest, 'vda')
    nxt = fi_lib.backup(guest, repo)
    assert (nxt['level'], nxt['mode']) == ('full', 'offline'), nxt
    assert 'missing' in nxt['reason'] and full['checkpoint'] in nxt['reason'], nxt['reason']
    fi_lib.verify_backup(fault, guest, repo, nxt['id'])
    fault.survived()

    fault.inject('disk replaced by a copy without bitmaps, then the domain started')
    _replace_with_copy(guest, 'vda')
    guest.start()
    guest.write('vda', 81 * MiB, MiB, 0x76)
    nxt2 = fi_lib.backup(guest, repo)
    assert nxt2['level'] == 'full', nxt2
    assert nxt['checkpoint'] in nxt2['reason'], nxt2['reason']
    _no_raw_error(nxt2)
    fi_lib.verify_backup(fault, guest, repo, nxt2['id'])
    guest.write('vda', 82 * MiB, MiB, 0x77)
    inc = fi_lib.backup(guest, repo)
    assert (inc['level'], inc['parent']) == ('incremental', nxt2['id']), inc
    fi_lib.verify_backup(fault, guest, repo, inc['id'])
    fault.survived()


def test_disk_added(guest, fault):
    """A disk added between backups: the incremental copies that disk in full, the others incrementally."""
    repo = fi_lib.new_repo_path('added')
    full = _first_full(fault, guest, repo)
    fault.inject('disk vdb hot-plugged (live and persistent) between two backups')
    guest.write('vda', 90 * MiB, MiB, 0x78)
    disk = guest.make_disk('vdb', 32 * MiB, fi_lib.spread(32 * MiB, 4 * MiB, MiB, 0x20))
    guest.dom.attachDeviceFlags(disk_xml('vdb', disk.path),
                                libvirt.VIR_DOMAIN_AFFECT_LIVE | libvirt.VIR_DOMAIN_AFFECT_CONFIG)
    guest.write('vdb', 2 * MiB, MiB, 0x79)
    inc = fi_lib.backup(guest, repo)
    assert (inc['level'], inc['parent']) == ('incremental', full['id']), inc
    levels = dict((d['name'], d['level']) for d in inc['disks'])
    assert levels == {'vda': 'incremental', 'vdb': 'full'}, levels
    assert 'new disk vdb copied in full' in inc['reason'], inc['reason']
    fi_lib.verify_backup(fault, guest, repo, inc['id'])
    guest.write('vda', 91 * MiB, MiB, 0x7a)
    guest.write('vdb', 20 * MiB, MiB, 0x7b)
    inc2 = fi_lib.backup(guest, repo, mode='push')
    levels = dict((d['name'], d['level']) for d in inc2['disks'])
    assert levels == {'vda': 'incremental', 'vdb': 'incremental'}, (levels, inc2['reason'])
    fi_lib.verify_backup(fault, guest, repo, inc2['id'])
    fault.survived()
