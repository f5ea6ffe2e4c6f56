# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""1. Offline domains: full and incremental backups of a shut-off domain, mixed with online ones in one chain."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from support.host import MiB
from support.modules import ok, run_module
import fi_lib

SIZE = 64 * MiB


def test_offline_online_chain(host, fault):
    """A shut-off domain backed up full and incremental, then online (pull, push) and offline again, in one chain."""
    guest = fi_lib.make_guest(host, 'fi-off', [('vda', SIZE, fi_lib.spread(SIZE, 8 * MiB, MiB, 3))], start=False)
    repo = fi_lib.new_repo_path('offline')
    points = []   # (backup, expected content)
    try:
        fault.inject('full backup of a shut-off domain (qemu-nbd, bitmap added to the qcow2)')
        full = fi_lib.backup(guest, repo)
        assert (full['level'], full['mode'], full['online']) == ('full', 'offline', False), full
        assert full['checkpoint'] in guest.checkpoints()
        assert full['checkpoint'] in guest.image_bitmaps('vda')
        fi_lib.verify_backup(fault, guest, repo, full['id'])
        points.append((full, guest.snapshot('p0')))
        fault.survived()

        fault.inject('incremental of the shut-off domain after an offline write (qemu-io into the qcow2)')
        guest.write('vda', 5 * MiB, 3 * MiB, 0x41)
        guest.write('vda', 40 * MiB + 4096, 4096, 0x42)
        inc1 = fi_lib.backup(guest, repo)
        assert (inc1['level'], inc1['mode'], inc1['parent']) == ('incremental', 'offline', full['id']), inc1
        # Only what changed is read: 3 MiB + one 64 KiB cluster.
        assert inc1['disks'][0]['dirty_bytes'] <= 3 * MiB + 64 * 1024 * 2, inc1['disks'][0]
        fi_lib.verify_backup(fault, guest, repo, inc1['id'])
        points.append((inc1, guest.snapshot('p1')))
        fault.survived()

        fault.inject('domain started: online pull incremental on top of the offline checkpoint')
        guest.start()
        guest.write('vda', 20 * MiB, 2 * MiB, 0x43)
        inc2 = fi_lib.backup(guest, repo)
        assert (inc2['level'], inc2['mode'], inc2['parent']) == ('incremental', 'pull', inc1['id']), inc2
        assert inc2['disks'][0]['dirty_bytes'] <= 2 * MiB + 128 * 1024, inc2['disks'][0]
        fi_lib.verify_backup(fault, guest, repo, inc2['id'])
        points.append((inc2, guest.snapshot('p2')))
        fault.survived()

        fault.inject('online push incremental in the same chain')
        guest.write('vda', 30 * MiB, MiB, 0x44)
        inc3 = fi_lib.backup(guest, repo, mode='push')
        assert (inc3['level'], inc3['mode'], inc3['parent']) == ('incremental', 'push', inc2['id']), inc3
        fi_lib.verify_backup(fault, guest, repo, inc3['id'])
        points.append((inc3, guest.snapshot('p3')))
        fault.survived()

        fault.inject('domain stopped again: offline incremental on top of the online checkpoint')
        guest.destroy()
        guest.write('vda', 50 * MiB, 2 * MiB, 0x45)
        inc4 = fi_lib.backup(guest, repo, mode='push')   # push asked; shut off: read offline
        assert (inc4['level'], inc4['mode'], inc4['parent']) == ('incremental', 'offline', inc3['id']), inc4
        assert inc4['disks'][0]['dirty_bytes'] <= 2 * MiB + 128 * 1024, inc4['disks'][0]
        fi_lib.verify_backup(fault, guest, repo, inc4['id'])
        points.append((inc4, guest.snapshot('p4')))
        fault.survived()

        fault.inject('offline differential: everything since the chain\'s full backup')
        guest.write('vda', 60 * MiB, MiB, 0x46)
        diff = fi_lib.backup(guest, repo, level='differential')
        assert (diff['level'], diff['mode'], diff['parent']) == ('differential', 'offline', full['id']), diff
        fi_lib.verify_backup(fault, guest, repo, diff['id'])
        points.append((diff, guest.snapshot('p5')))
        fault.survived()

        # Every point of the chain still restores to what the guest held then.
        fault.inject('restore every point of the mixed chain after the chain grew')
        for point, expected in points:
            fi_lib.verify_backup(fault, guest, repo, point['id'], expected=expected)
        info = ok(run_module('virt_backup_info', dict(repository=repo, domain=guest.name,
                                                      verify=True), dead_ok=True))
        assert info['verified_ok'] is True
        chains = info['domains'][0]['chains']
        assert len(chains) == 1 and [b['mode'] for b in chains[0]['backups']] == [
            'offline', 'offline', 'pull', 'push', 'offline', 'offline']
        fault.survived()
    finally:
        guest.remove()
