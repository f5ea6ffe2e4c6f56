# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A disk grown between two backups starts a new full chain (docs/backup.md); level auto does
that by itself, level incremental refuses before any job starts."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest

from support.guests import make_guest, unique
from support.host import KiB, MiB
from support.images import assert_same_content
from support.modules import failed, ok
import ftlib


@pytest.mark.parametrize('mode', ['pull', 'push'])
def test_grown_disk_starts_a_new_chain(conn, workroot, mode):
    guest = make_guest(conn, unique('ft-grow'), workroot / ('grow-%s' % mode), [('vda', 16 * MiB, ()), ('vdb', 16 * MiB, ())],
                       start=False, mode=0o755)
    try:
        guest.start()
        vda, vdb = guest.disks['vda'], guest.disks['vdb']
        vda.write(0, 256 * KiB, 0x41)
        vdb.write(1 * MiB, 256 * KiB, 0x42)
        repo = workroot / ('grow-repo-%s' % mode)
        full = ok(ftlib.backup(guest.name, repo, mode=mode))['backup']

        vdb.resize(24 * MiB)
        vdb.write(20 * MiB, 128 * KiB, 0x43)
        vda.write(4 * MiB, 64 * KiB, 0x44)
        snaps = guest.snapshot('grown')

        debris = ftlib.Debris(guest, repo)
        refused = ftlib.backup(guest.name, repo, mode=mode, level='incremental')
        failed(refused, 'disk vdb (%d -> %d bytes) changed size since backup %s' % (
            16 * MiB, 24 * MiB, full['id']), 'level full or auto')
        debris.assert_clean()

        why = 'full: disk vdb (%d -> %d bytes) changed size since backup %s' % (16 * MiB, 24 * MiB, full['id'])
        predicted = ok(ftlib.backup(guest.name, repo, mode=mode, check_mode=True))['backup']
        assert (predicted['level'], predicted['reason']) == ('full', why)
        result = ok(ftlib.backup(guest.name, repo, mode=mode))['backup']
        assert (result['level'], result['reason']) == ('full', why)
        assert result['chain'] == result['id'] != full['chain']
        sizes = dict((d['name'], d['virtual_size']) for d in result['disks'])
        assert sizes == dict(vda=16 * MiB, vdb=24 * MiB)
        dest = workroot / ('grow-restore-%s' % mode)
        restored = ok(ftlib.restore(guest.name, repo, dest))
        for entry in restored['disks']:
            assert_same_content(snaps[entry['name']].path, entry['path'], 'qcow2')

        # The new chain goes on incrementally.
        vdb.write(22 * MiB, 64 * KiB, 0x45)
        nxt = ok(ftlib.backup(guest.name, repo, mode=mode))['backup']
        assert nxt['level'] == 'incremental' and nxt['parent'] == result['id']
    finally:
        guest.remove()
