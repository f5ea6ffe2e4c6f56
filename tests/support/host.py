# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The machine the tests run on: paths, commands, waiting, and a libvirt connection that
survives libvirtd restarts."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pwd
import subprocess
import time
from pathlib import Path

import libvirt

# libvirt prints every error to stderr as well; the tests look at the exceptions.
libvirt.registerErrorHandler(lambda _ctx, _err: None, None)

ROOT = Path(__file__).resolve().parents[2]
COLLECTIONS = ROOT / 'build' / 'collections'
URI = 'qemu:///system'
IMAGES = Path('/var/lib/libvirt/images')
SOCKET_ROOT = Path('/run/virtops-libvirt')
QEMU_LOGS = Path('/var/log/libvirt/qemu')

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB


class CheckFailed(AssertionError):
    """A helper found the system not as the test needs it (a command failed, a wait timed out)."""


def sh(*argv, **kwargs):
    """Run an argument list (never a shell line); its stdout. what= names the step in the error;
    check=False returns the output of a failed command too."""
    what = kwargs.pop('what', None)
    check = kwargs.pop('check', True)
    kwargs.setdefault('timeout', 300)
    argv = [str(a) for a in argv]
    proc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          check=False, **kwargs)
    if check and proc.returncode != 0:
        raise CheckFailed('%s failed (%d): %s\n%s %s' % (
            what or argv[0], proc.returncode, ' '.join(argv), proc.stdout.decode('utf-8', 'replace'),
            proc.stderr.decode('utf-8', 'replace').strip()))
    return proc.stdout.decode('utf-8', 'replace')


def wait_until(predicate, timeout, what, interval=0.1):
    """predicate()'s first true value, asked every interval seconds for timeout seconds."""
    deadline = time.time() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.time() > deadline:
            raise CheckFailed('timed out after %s s waiting for %s' % (timeout, what))
        time.sleep(interval)


def qemu_owner():
    """(uid, gid) QEMU runs as."""
    for name in ('libvirt-qemu', 'qemu'):
        try:
            entry = pwd.getpwnam(name)
            return entry.pw_uid, entry.pw_gid
        except KeyError:
            continue
    raise CheckFailed('no libvirt-qemu user')


def ensure_collection_link():
    """What `make link` does: build/collections/ansible_collections/virtops/libvirt -> checkout."""
    link = COLLECTIONS / 'ansible_collections' / 'virtops' / 'libvirt'
    if not (link / 'plugins' / 'modules' / 'virt_backup.py').exists():
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink():
            link.unlink()
        try:
            link.symlink_to(ROOT)
        except FileExistsError:
            pass
    return link


class Libvirt:
    """A connection to qemu:///system that is opened again when the daemon went away (the
    fault-injection suite and other people's tests restart libvirtd)."""

    def __init__(self, uri=URI):
        self.uri = uri
        self._conn = None

    @property
    def conn(self):
        return self.get()

    def get(self, timeout=60):
        if self._conn is not None:
            try:
                if self._conn.isAlive():
                    return self._conn
            except libvirt.libvirtError:
                pass
            self.close()
        deadline = time.time() + timeout
        while True:
            try:
                self._conn = libvirt.open(self.uri)
                self._conn.getLibVersion()
                return self._conn
            except libvirt.libvirtError:
                if time.time() > deadline:
                    raise
                time.sleep(0.3)

    def reconnect(self, timeout=90):
        self.close()
        return self.get(timeout)

    def close(self):
        if self._conn is not None:
            try:
                self._conn.close()
            except libvirt.libvirtError:
                pass
            self._conn = None
