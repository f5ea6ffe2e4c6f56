# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The watchdog of a run that died: it removes what the run left, never a committed backup."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import uuid

import pytest

pytest.importorskip('libvirt')

from ansible_collections.virtops.libvirt.plugins.module_utils.backup import _reaper  # noqa: E402


def _die_after(tmp_path, with_manifest):
    backup = tmp_path / 'chain' / 'backup'
    backup.mkdir(parents=True)
    (backup / 'vda.qcow2').write_bytes(b'data')
    if with_manifest:
        (backup / 'manifest.json').write_text('{}')
    scratch = tmp_path / 'scratch.qcow2'
    scratch.write_bytes(b'x')
    run_dir = tmp_path / 'run'
    run_dir.mkdir()
    dog = _reaper.Watchdog('test:///default', str(uuid.uuid4()), 'virtops-0123abcd-20261126T010000Z', [],
                           [str(run_dir), str(scratch)], [], backup_path=str(backup)).start()
    proc = dog.proc
    dog.abandon()            # as if the module died: the pipe closes without "done"
    proc.wait(60)
    return backup, scratch, run_dir


def test_a_run_that_died_before_its_commit_leaves_nothing(tmp_path):
    backup, scratch, run_dir = _die_after(tmp_path, with_manifest=False)
    assert not backup.exists() and not scratch.exists() and not run_dir.exists()


def test_a_run_that_died_after_its_commit_keeps_its_backup(tmp_path):
    backup, scratch, run_dir = _die_after(tmp_path, with_manifest=True)
    assert sorted(os.listdir(str(backup))) == ['manifest.json', 'vda.qcow2']
    assert not scratch.exists() and not run_dir.exists()
