# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Compressed backups (virt_backup compress): chains of zstd and zlib images in pull and push mode,
and one chain mixing settings, restore bit-exact, verify, and take less room than plain ones for
compressible data; an incremental holds only its own clusters.

Encrypted backups (encryption: key_file or a libvirt secret): the images really are encrypted,
restore bit-exact with the key, refuse to restore or verify without it or with another one, and the
plain qemu-img commands of docs/repository-format.md restore them."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import json
import os

import pytest

from support.guests import make_guest, unique
from support.host import MiB, ROOT, sh
from support.images import assert_same_content, image_info
from support.modules import failed, ok, run_module
from support.repository import read_manifest
import ftlib

CLUSTER = 64 * 1024

# repository name -> the (mode, compress) of its backups, in order
SERIES = {
    'zstd-pull': [('pull', 'zstd')] * 3,
    'zstd-push': [('push', 'zstd')] * 3,
    'zlib-pull': [('pull', 'zlib')] * 3,
    'zlib-push': [('push', 'zlib')] * 3,
    'plain-pull': [('pull', 'none')] * 3,
    'plain-push': [('push', 'none')] * 3,
    'mixed': [('pull', 'zstd'), ('push', 'none'), ('push', 'zlib')],
}
# What the guest writes before each backup of every series: (offset, length, pattern).
WRITES = [
    [(0, 8 * MiB, 0xab), (20 * MiB, 2 * MiB, 0x11)],
    [(16 * MiB, 1 * MiB, 0xcd)],
    [(4 * MiB, 512 * 1024, 0xef), (30 * MiB, CLUSTER, 0x22)],
]


class Taken:
    def __init__(self, result, snaps, mode, compress):
        self.result = result
        self.backup = result['backup']
        self.snaps = snaps
        self.mode = mode
        self.compress = compress
        self.manifest = read_manifest(self.backup['path'])

    def disk(self):
        return self.manifest['disks'][0]

    def image(self):
        return os.path.join(self.backup['path'], self.disk()['image'])


@pytest.fixture(scope='module')
def compressed(conn, workroot):
    """A running domain with one 32 MiB disk, backed up three times into every series' repository."""
    root = workroot / 'compress'
    guest = make_guest(conn, unique('ft-cz'), root / 'guest', [('vda', 32 * MiB, ())], start=False, mode=0o755)
    taken = dict((name, []) for name in SERIES)
    try:
        guest.start()
        for step, writes in enumerate(WRITES):
            for offset, length, pattern in writes:
                guest.write('vda', offset, length, pattern)
            snaps = guest.snapshot('s%d' % step)
            for name, settings in SERIES.items():
                mode, compress = settings[step]
                result = ok(ftlib.backup(guest.name, root / name, mode=mode, compress=compress))
                taken[name].append(Taken(result, snaps, mode, compress))
        yield guest, root, taken
    finally:
        guest.remove()


def _own_clusters(image):
    """qemu-img check of one image file alone (no backing): its allocated and compressed clusters."""
    spec = json.dumps({'driver': 'qcow2', 'file': {'driver': 'file', 'filename': str(image)}, 'backing': None})
    data = json.loads(sh('qemu-img', 'check', '-U', '--output=json', 'json:' + spec))
    return data.get('allocated-clusters', 0), data.get('compressed-clusters', 0)


def test_levels_and_recorded_compression(compressed):
    dummy, dummy, taken = compressed
    for name, points in taken.items():
        assert [p.backup['level'] for p in points] == ['full', 'incremental', 'incremental'], name
        for p in points:
            assert p.backup['encrypted'] is False
            entry = p.disk()
            reported = p.backup['disks'][0]
            if p.compress == 'none':
                assert 'compression' not in entry and 'compression' not in reported
            else:
                assert entry['compression'] == p.compress and reported['compression'] == p.compress
            info = image_info(p.image())
            assert info['format'] == 'qcow2'
            assert info['format-specific']['data'].get('compression-type', 'zlib') == (
                'zstd' if p.compress == 'zstd' else 'zlib'), (name, p.backup['id'])


def test_every_point_restores_bit_exact(compressed, workroot):
    guest, root, taken = compressed
    for name, points in taken.items():
        for p in points:
            dest = workroot / 'compress-restore' / name / p.backup['id']
            result = ok(ftlib.restore(guest.name, root / name, dest, backup=p.backup['id'], format='raw'))
            assert [d['verified'] for d in result['disks']] == [True]
            assert_same_content(p.snaps['vda'].path, result['disks'][0]['path'], 'raw')
            # The plain qemu-img path reads the chain too.
            assert_same_content(p.snaps['vda'].path, p.image(), 'qcow2')


def test_verify_reads_guest_data(compressed):
    dummy, root, taken = compressed
    for name in taken:
        info = ok(ftlib.backup_info(root / name, verify=True))
        assert info['verified_ok'] is True, name


def test_compressed_images_are_smaller(compressed):
    dummy, dummy, taken = compressed
    for mode in ('pull', 'push'):
        plain = taken['plain-%s' % mode]
        for compress in ('zstd', 'zlib'):
            points = taken['%s-%s' % (compress, mode)]
            for p, q in zip(points, plain):
                assert p.disk()['image_digest'] == q.disk()['image_digest']
            # 10 MiB of constant bytes: the full shrinks to a small part of the plain one.
            assert points[0].disk()['file_size'] * 4 < plain[0].disk()['file_size'], (compress, mode)
            for p, q in zip(points[1:], plain[1:]):
                assert p.disk()['file_size'] < q.disk()['file_size'], (compress, mode, p.backup['id'])


def test_incrementals_hold_only_their_changes(compressed):
    dummy, dummy, taken = compressed
    changed = [None, 1 * MiB // CLUSTER, (512 * 1024 + CLUSTER) // CLUSTER]
    for name, points in taken.items():
        for step, p in enumerate(points):
            allocated, compressed_clusters = _own_clusters(p.image())
            if step == 0:
                # A full holds the 10 MiB of data (a full push target has clusters of its own size).
                assert allocated * image_info(p.image())['cluster-size'] == 10 * MiB, name
            else:
                assert allocated == changed[step], (name, step, allocated)
            if p.compress == 'none':
                assert compressed_clusters == 0
            else:
                assert compressed_clusters == allocated, (name, step)


# -- encryption -------------------------------------------------------------------------------------

PASSPHRASE = b'correct horse battery staple\n'
PATTERN = 0xab


def _fingerprint(passphrase):
    # docs/repository-format.md, computed here independently of the collection.
    return hashlib.pbkdf2_hmac('sha256', passphrase, b'virtops.libvirt backup key fingerprint', 1000000)[:16].hex()


def _private_file(path, data):
    fd = os.open(str(path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, 'wb') as out:
        out.write(data)
    return str(path)


@pytest.fixture(scope='module')
def encrypted(conn, workroot):
    """A running domain backed up twice (full, incremental) into two encrypted repositories: one in
    pull mode with a key file, one in push mode, zstd-compressed, with the key in a libvirt secret."""
    root = workroot / 'encrypt'
    guest = make_guest(conn, unique('ft-enc'), root / 'guest', [('vda', 16 * MiB, ())], start=False, mode=0o755)
    usage = unique('ft-enc-key')
    secret = conn.get().secretDefineXML(
        "<secret ephemeral='no' private='no'><usage type='volume'><volume>%s</volume></usage></secret>" % usage)
    secret.setValue(PASSPHRASE)
    key_file = _private_file(root / 'backup.key', PASSPHRASE)
    wrong_file = _private_file(root / 'wrong.key', b'not the passphrase\n')
    series = {
        'file-pull': dict(mode='pull', encryption=dict(key_file=key_file)),
        'secret-push': dict(mode='push', compress='zstd', encryption=dict(secret=usage)),
    }
    taken = dict((name, []) for name in series)
    try:
        guest.start()
        for step, writes in enumerate([[(0, 4 * MiB, PATTERN)], [(8 * MiB, 1 * MiB, 0xcd)]]):
            for offset, length, pattern in writes:
                guest.write('vda', offset, length, pattern)
            snaps = guest.snapshot('e%d' % step)
            for name, args in series.items():
                result = ok(ftlib.backup(guest.name, root / name, **args))
                taken[name].append(Taken(result, snaps, args['mode'], args.get('compress', 'none')))
        yield dict(guest=guest, root=root, taken=taken, series=series, key_file=key_file, wrong_file=wrong_file,
                   usage=usage, secret_uuid=secret.UUIDString())
    finally:
        guest.remove()
        secret.undefine()


def test_encrypted_images_hold_no_plaintext(encrypted):
    for name, points in encrypted['taken'].items():
        assert [p.backup['level'] for p in points] == ['full', 'incremental']
        for p in points:
            assert p.backup['encrypted'] is True
            assert p.manifest['encryption'] == dict(format='luks', key_fingerprint=_fingerprint(PASSPHRASE))
            assert b'correct horse' not in json.dumps(p.manifest).encode()
            info = image_info(p.image())
            assert info['encrypted'] is True
            assert info['format-specific']['data']['encrypt']['format'] == 'luks'
            with open(p.image(), 'rb') as src:
                data = src.read()
            assert bytes([PATTERN]) * 4096 not in data and b'\xcd' * 4096 not in data, (name, p.backup['id'])
            assert PASSPHRASE.strip() not in data


def test_encrypted_points_restore_bit_exact(encrypted, workroot):
    guest, root = encrypted['guest'], encrypted['root']
    for name, points in encrypted['taken'].items():
        for p in points:
            dest = workroot / 'encrypt-restore' / name / p.backup['id']
            result = ok(ftlib.restore(guest.name, root / name, dest, backup=p.backup['id'], format='raw',
                                      encryption=encrypted['series'][name]['encryption']))
            assert [d['verified'] for d in result['disks']] == [True]
            assert_same_content(p.snaps['vda'].path, result['disks'][0]['path'], 'raw')
    # The secret named by its uuid works as by its usage.
    p = encrypted['taken']['secret-push'][-1]
    dest = workroot / 'encrypt-restore' / 'by-uuid'
    result = ok(ftlib.restore(guest.name, root / 'secret-push', dest, format='raw',
                              encryption=dict(secret=encrypted['secret_uuid'])))
    assert_same_content(p.snaps['vda'].path, result['disks'][0]['path'], 'raw')


def test_without_the_right_key_nothing_is_read_or_written(encrypted, workroot):
    guest, root = encrypted['guest'], encrypted['root']
    for name, points in encrypted['taken'].items():
        full = points[0].backup['id']
        dest = workroot / 'encrypt-refused' / name
        failed(ftlib.restore(guest.name, root / name, dest, format='raw'),
               'backup %s is encrypted: give encryption.key_file or encryption.secret' % full)
        failed(ftlib.restore(guest.name, root / name, dest, format='raw',
                             encryption=dict(key_file=encrypted['wrong_file'])),
               'the key does not match backup %s (fingerprint %s' % (full, _fingerprint(PASSPHRASE)))
        assert not os.path.exists(str(dest))
        failed(ftlib.backup_info(root / name, verify=True),
               'backup %s is encrypted: give encryption.key_file or encryption.secret' % full)
        failed(ftlib.backup_info(root / name, verify=True, encryption=dict(key_file=encrypted['wrong_file'])),
               'the key does not match backup %s' % full)
        info = ok(ftlib.backup_info(root / name, verify=True, encryption=encrypted['series'][name]['encryption']))
        assert info['verified_ok'] is True
        # Listing needs no key.
        ok(ftlib.backup_info(root / name))
        # A backup without the key neither continues the encrypted chain nor starts a plain one.
        debris = ftlib.Debris(guest, root / name)
        failed(ftlib.backup(guest.name, root / name, mode=encrypted['series'][name]['mode']),
               'backup %s is encrypted: give encryption.key_file or encryption.secret' % points[-1].backup['id'])
        debris.assert_clean()


def test_instant_restore_and_export_refuse_encrypted_backups(encrypted, workroot):
    guest, root = encrypted['guest'], encrypted['root']
    failed(ftlib.restore(guest.name, root / 'file-pull', workroot / 'encrypt-instant', mode='instant',
                         new_name=unique('ft-enc-inst'), encryption=dict(key_file=encrypted['key_file'])),
           'is encrypted', 'mode: copy')
    assert not os.path.exists(str(workroot / 'encrypt-instant'))
    failed(run_module('virt_backup_export', dict(name=unique('ft-enc-exp'), repository=str(root / 'file-pull'),
                                                 domain=guest.name)),
           'is encrypted')


def _documented_commands():
    """The shell block of docs/repository-format.md that restores an encrypted chain with qemu-img alone."""
    with open(os.path.join(ROOT, 'docs', 'repository-format.md')) as src:
        text = src.read()
    start = text.index('An encrypted chain needs the passphrase')
    block = text[text.index('```sh\n', start) + len('```sh\n'):]
    return block[:block.index('```')]


def test_documented_qemu_img_commands_restore(encrypted, workroot):
    script = _documented_commands()
    assert 'qemu-img convert --object secret,id=k,file="$key"' in script
    for name, points in encrypted['taken'].items():
        p = points[-1]
        out = workroot / 'encrypt-by-hand' / name
        out.mkdir(parents=True)
        text = (script.replace('/etc/virtops/backup.key', _private_file(out / 'key', PASSPHRASE))
                .replace('<repository>/<domain>/<chain>/<backup id>', p.backup['path'])
                .replace('/restore/vda.raw', str(out / 'vda.raw')))
        sh('bash', '-e', '-c', text, what='the documented commands on %s' % name)
        assert_same_content(p.snaps['vda'].path, out / 'vda.raw', 'raw')


def test_switching_encryption_starts_new_chains(encrypted):
    guest, root = encrypted['guest'], encrypted['root']
    repo = root / 'switch'
    plain = ok(ftlib.backup(guest.name, repo))['backup']
    first = ok(ftlib.backup(guest.name, repo, encryption=dict(key_file=encrypted['key_file'])))['backup']
    assert first['level'] == 'full' and first['chain'] == first['id']
    assert first['reason'] == 'full: backup %s is not encrypted; encrypted backups start a new chain' % plain['id']
    # Another key on the encrypted chain: refused, nothing changed.
    debris = ftlib.Debris(guest, repo)
    failed(ftlib.backup(guest.name, repo, encryption=dict(key_file=encrypted['wrong_file'])),
           'the key does not match backup %s' % first['id'])
    debris.assert_clean()
    # level full starts a plain chain on purpose; the encrypted one stays restorable with its key.
    again = ok(ftlib.backup(guest.name, repo, level='full'))['backup']
    assert again['chain'] == again['id'] and 'encryption' not in read_manifest(again['path'])
    inc = ok(ftlib.backup(guest.name, repo))['backup']
    assert inc['level'] == 'incremental' and inc['parent'] == again['id']
