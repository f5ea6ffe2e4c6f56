# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The compression and encryption case of backup_bench.py (--only crypt).

One disk of the full-backup size holding the full-backup amount of half-compressible data (each
64 KiB cluster: 32 KiB random bytes, 32 KiB of text), backed up in full, pull mode, four ways: plain,
compress=zstd, compress=zlib, and encrypted (a key file). Each run is a first backup (its repository
and checkpoint removed after it). Reported: time of each, the compression ratio (plain image size /
compressed image size). Targets from issue 12: zstd full within 2x the plain one, encrypted full
within 1.3x.
"""

from __future__ import absolute_import, division, print_function

import json
import os
import shutil

import _instant_bench

KiB = 1024
MiB = 1024 * KiB

TARGET_ZSTD_VS_PLAIN = 2.0
TARGET_ENCRYPTED_VS_PLAIN = 1.3
BACKUP = 'ansible_collections.virtops.libvirt.plugins.modules.virt_backup'
TEXT = b'virtops.libvirt backs up libvirt domains into plain qcow2 chains that qemu-img restores. '


def _variants(key_file):
    return [
        ('plain', dict()),
        ('zstd', dict(compress='zstd')),
        ('zlib', dict(compress='zlib')),
        ('encrypted', dict(encryption=dict(key_file=key_file))),
        # a random key file needs no slow key derivation (docs/backup.md, encryption.iter_time)
        ('encrypted-iter100', dict(encryption=dict(key_file=key_file, iter_time=100))),
    ]


def _make_disk(b, bench, name, size, data):
    """A qcow2 of virtual size `size` holding `data` bytes, each cluster half random, half text."""
    raw = bench.path('images', name + '.raw.tmp')
    image = bench.path('images', name + '.qcow2')
    cluster = 64 * KiB
    text = (TEXT * (cluster // len(TEXT) + 1))[:cluster // 2]
    chunk = 4 * MiB
    fd = os.open(raw, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.ftruncate(fd, size)
        for start in range(MiB, MiB + data, chunk):
            piece = b''.join(os.urandom(cluster // 2) + text for _cluster in range(chunk // cluster))
            os.pwrite(fd, piece, start)
    finally:
        os.close(fd)
    b.run(['qemu-img', 'convert', '-q', '-f', 'raw', '-O', 'qcow2', raw, image], 'building %s' % image)
    os.unlink(raw)
    os.chmod(image, 0o644)
    return image


def case_crypt(b, bench):
    """b: the backup_bench module; bench: its Bench."""
    a = bench.args
    case = 'crypt: full of a %s disk, %s half-compressible data' % (b.human(a.full_size), b.human(a.full_data))
    b.log('case %s' % case)
    name = bench.start_domain(b.PREFIX + 'crypt', _make_disk(b, bench, 'crypt', a.full_size, a.full_data))
    key_file = bench.path('out', 'crypt.key')
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, 'wb') as out:
        out.write(os.urandom(32).hex().encode())
    variants = _variants(key_file)
    for rep in range(a.repeat):
        for label, extra in (variants if rep % 2 == 0 else list(reversed(variants))):
            repo = bench.path('repos', 'crypt-%s-%d' % (label, rep))

            def undo(repo=repo):
                shutil.rmtree(repo, ignore_errors=True)
                bench.delete_checkpoints(name, 'virtops-')

            def run(label=label, extra=tuple(extra.items()), repo=repo):
                params = dict(extra, domain=name, repository=repo, mode='pull', level='full', workers=a.workers)
                m, result = _instant_bench._module(b, bench, BACKUP, params, 'virt_backup %s full of %s' % (label, name),
                                                   sync=True)
                backup = result['backup']
                with open(os.path.join(backup['path'], 'manifest.json')) as src:
                    stored = sum(d['file_size'] for d in json.load(src)['disks'])
                res = b.Result('crypt-' + label, case, 'virt_backup full %s' % label, m.seconds, a.full_data, m.cpu,
                               m.rss_kib, m.child_rss_kib, child_name=m.child_name)
                res.stored = stored
                res.note = 'stored %s, engine %.2f s' % (b.human_bytes(stored), backup['duration'])
                return res

            res = bench.attempt('virt_backup %s full' % label, name, run, undo)
            undo()      # each run is a first backup: no repository, no checkpoint before it
            bench.record(res)
    bench.stop_domain(name)


def verdicts(b, bench, verdict):
    """The compression and encryption targets, in the report of backup_bench.py."""
    found = dict((label, bench.best('crypt-' + label, 'virt_backup full %s' % label))
                 for label, _extra in _variants(None))
    plain = found.get('plain')
    if plain is None:
        return
    for label, target in (('zstd', TARGET_ZSTD_VS_PLAIN), ('zlib', None), ('encrypted', TARGET_ENCRYPTED_VS_PLAIN),
                          ('encrypted-iter100', TARGET_ENCRYPTED_VS_PLAIN)):
        res = found.get(label)
        if res is None:
            continue
        ratio = res.seconds / plain.seconds
        detail = '%.2f s against %.2f s' % (res.seconds, plain.seconds)
        if label in ('zstd', 'zlib'):
            detail += '; compression ratio %.2f (%s stored against %s)' % (
                float(plain.stored) / res.stored, b.human_bytes(res.stored), b.human_bytes(plain.stored))
        if target is None:
            verdict('full %s / plain full (time)' % label, '%.2f' % ratio, True, 'reported', detail)
        else:
            verdict('full %s / plain full (time)' % label, '%.2f' % ratio, ratio <= target, '<= %.1f' % target,
                    detail)
