# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A backup is the disk at the moment its job started: the guest writing during the backup does
not leak into it, and the next incremental holds that write."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import time

import libvirt
import pytest

from support.guests import JOB_STARTING
from support.host import KiB, MiB
from support.images import assert_same_content
from support.modules import ModuleRun, ok
import ftlib


@pytest.mark.parametrize('mode', ['pull', 'push'])
def test_writes_during_the_backup_are_not_in_it(guest, workroot, mode):
    vda = guest.disks['vda']
    repo = workroot / ('pit-%s' % mode)
    # Enough data that the copy takes a moment.
    vda.write(24 * MiB, 24 * MiB, 0x31)
    before = guest.snapshot('pit-%s-before' % mode)

    run = ModuleRun('virt_backup', dict(domain=guest.name, repository=str(repo), mode=mode))
    proc = run.proc
    try:
        # The point in time is the transaction that starts the job; libvirt answers the job
        # statistics only after it (before, "backup job data missing": JOB_STARTING).
        deadline = time.time() + 60
        while guest.job_type() in (libvirt.VIR_DOMAIN_JOB_NONE, JOB_STARTING) and proc.poll() is None:
            assert time.time() < deadline, 'the backup job did not start'
            time.sleep(0.005)
        during = guest.job_type() not in (libvirt.VIR_DOMAIN_JOB_NONE, JOB_STARTING)
        # Overwrite data the backup is (or was) copying, and write where there was none.
        vda.write(30 * MiB, 256 * KiB, 0x32)
        vda.write(2 * MiB + 64 * KiB, 64 * KiB, 0x33)
        still = guest.job_type() != libvirt.VIR_DOMAIN_JOB_NONE
        result = run.wait(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
        run.close()
    assert not result.get('failed'), result.get('msg')
    after = guest.snapshot('pit-%s-after' % mode)
    print('write while the job ran: %s (job still active after the write: %s)' % (during, still))

    image = os.path.join(result['backup']['path'], 'vda.qcow2')
    assert_same_content(before['vda'].path, image, 'qcow2')
    assert_same_content(before['vdb'].path, os.path.join(result['backup']['path'], 'vdb.qcow2'), 'qcow2')

    incremental = ok(ftlib.backup(guest.name, repo, mode=mode))
    assert incremental['backup']['level'] == 'incremental'
    vda_entry = [d for d in incremental['backup']['disks'] if d['name'] == 'vda'][0]
    assert vda_entry['dirty_bytes'] == vda.shadow.touched(before['vda'].mark, after['vda'].mark) == 320 * KiB
    assert_same_content(after['vda'].path, os.path.join(incremental['backup']['path'], 'vda.qcow2'), 'qcow2')
