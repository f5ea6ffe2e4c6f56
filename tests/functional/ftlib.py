# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What only the functional tests use: the backup modules with the suite's argument habits, and
what a failed run must not leave behind. Everything else comes from tests/support."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from pathlib import Path

import libvirt

from support.host import SOCKET_ROOT
from support.modules import run_module
from support.repository import backup_dirs, staging_files


def backup(domain, repository, **args):
    args = dict(args, domain=domain, repository=str(repository))
    return run_module('virt_backup', args, check_mode=args.pop('check_mode', False), diff=args.pop('diff', False))


def restore(domain, repository, dest, **args):
    args = dict(args, domain=domain, repository=str(repository), dest=str(dest))
    return run_module('virt_restore', args, check_mode=args.pop('check_mode', False))


def backup_info(repository, **args):
    return run_module('virt_backup_info', dict(args, repository=str(repository)))


class Debris:
    """What a failed run must not leave behind, compared with the state before it."""

    def __init__(self, guest, repository):
        self.guest = guest
        self.repository = Path(str(repository))
        self.checkpoints = guest.checkpoints() if guest is not None else None
        self.run_dirs = self._run_dirs()
        self.backups = backup_dirs(self.repository, guest.name) if guest is not None else []
        self.existed = self.repository.exists()

    def _run_dirs(self):
        if not SOCKET_ROOT.is_dir() or self.guest is None:
            return set()
        # Run directories are named <repository id>-<domain>-<random>.
        return set(p.name for p in SOCKET_ROOT.iterdir() if ('-%s-' % self.guest.name) in p.name)

    def assert_clean(self):
        if self.guest is not None:
            assert self.guest.job_type() == libvirt.VIR_DOMAIN_JOB_NONE, 'a job is left on %s' % self.guest.name
            if self.guest.running():
                with_job = True
                try:
                    self.guest.dom.backupGetXMLDesc(0)
                except libvirt.libvirtError:
                    with_job = False
                assert not with_job, 'a backup job is left on %s' % self.guest.name
            assert self.guest.checkpoints() == self.checkpoints, 'checkpoints changed'
            assert self._run_dirs() <= self.run_dirs, 'run directories left in %s: %s' % (
                SOCKET_ROOT, self._run_dirs() - self.run_dirs)
            assert backup_dirs(self.repository, self.guest.name) == self.backups, 'backup directories changed'
        if not self.existed:
            return
        assert staging_files(self.repository) == [], 'files left in %s/.staging' % self.repository
        if self.guest is not None:
            ddir = self.repository / self.guest.name
            if ddir.is_dir():
                for chain in ddir.iterdir():
                    if chain.is_dir():
                        assert list(chain.iterdir()), 'empty chain directory %s left' % chain
                        for bdir in chain.iterdir():
                            assert (bdir / 'manifest.json').exists(), 'partial backup %s left' % bdir


def iso(moment):
    return moment.strftime('%Y-%m-%dT%H:%M:%S.%f')
