# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A domain backed up into a local repository, and a bucket for copies of those backups in a real
S3 server (tests/functional/s3server.py): what the tests of S3 repositories start from."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import contextlib

from support.guests import make_guest, unique
from support.modules import ok, run_module


class S3Env:
    """guest (one disk, vda), its local repository repo (under root), the S3 server, a client of it
    and the bucket. points: (backup id, chain, {disk: Snapshot}) of each backup, oldest first."""

    def __init__(self, guest, workroot, name, server, bucket):
        self.guest = guest
        self.root = workroot
        self.repo = workroot / ('%s-repo' % name)
        self.server = server
        self.client = server.client()
        self.bucket = bucket
        self.points = []

    @classmethod
    @contextlib.contextmanager
    def started(cls, conn, workroot, server, name, disk_size, bucket_prefix):
        """A new env: the running domain <name>-dom (removed afterwards) and its bucket
        <bucket_prefix>-<the domain name's unique suffix>, made empty."""
        guest = make_guest(conn, unique('%s-dom' % name), workroot / ('%s-guest' % name), [('vda', disk_size, ())],
                           start=False, mode=0o755)
        try:
            guest.start()
            env = cls(guest, workroot, name, server, '%s-%s' % (bucket_prefix, guest.name[-8:]))
            env.client.create_bucket(Bucket=env.bucket)
            yield env
        finally:
            guest.remove()

    def backup(self, tag, writes, **args):
        """writes [(offset, length, pattern)] into vda, what it then holds kept as snapshot tag, and
        a pull backup into repo; returns the backup of the result."""
        for offset, length, pattern in writes:
            self.guest.disks['vda'].write(offset, length, pattern)
        snaps = self.guest.snapshot(tag)
        backup = ok(run_module('virt_backup', dict(args, mode='pull', domain=self.guest.name,
                                                   repository=str(self.repo))))['backup']
        self.points.append((backup['id'], backup['chain'], snaps))
        return backup

    def keys(self, prefix, bucket=None):
        """The keys under prefix in bucket (the env's own by default), sorted."""
        pages = self.client.get_paginator('list_objects_v2').paginate(Bucket=bucket or self.bucket, Prefix=prefix)
        return sorted(item['Key'] for page in pages for item in page.get('Contents', []))
