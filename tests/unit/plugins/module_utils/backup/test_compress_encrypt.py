# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Compressed and encrypted backup images: the options, the compressing and encrypting writer (real
qemu-img, qemu-nbd and libnbd), the key (key file, libvirt secret, fingerprint, checks against the
manifests), and the direct qcow2 reader's refusal of compressed clusters and cipher text (it would
hash stored bytes, not the disk's data)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import json
import os
import shutil
import subprocess

import pytest

nbd = pytest.importorskip('nbd')

from ansible_collections.virtops.libvirt.plugins.module_utils._errors import VirtError  # noqa: E402
from ansible_collections.virtops.libvirt.plugins.module_utils.backup import (  # noqa: E402
    _blockhash,
    _crypt,
    _images,
    _nbdio,
    _options,
    _repository,
)

needs_qemu = pytest.mark.skipif(not shutil.which('qemu-nbd'), reason='qemu-nbd is not installed')
CLUSTER = 64 * 1024


def _params(**values):
    params = dict((name, option.get('default')) for name, option in _options.BACKUP_ARGS.items())
    params.update(uri='test:///default', username=None, password=None, domain='guest', repository='/r')
    params.update(values)
    return params


def test_compress_option():
    assert _options.BACKUP_ARGS['compress'] == dict(type='str', default='none', choices=['none', 'zlib', 'zstd'])
    assert _options.backup_request(_params()).compress is None
    assert _options.backup_request(_params(compress='zstd')).compress == 'zstd'
    assert _options.backup_request(_params(compress='zlib')).compress == 'zlib'


def _write(directory, compress, direct):
    image = os.path.join(directory, 'c.qcow2')
    _images.create(image, 4 * 1024 * 1024, compress=compress)
    data = b'\x5a' * (2 * CLUSTER)
    with _nbdio.QemuNbdServer(image, readonly=False, clients=1, workdir=directory, compress=True) as writer:
        assert writer.direct_io == direct
        handle = writer.export().connect()
        handle.pwrite(data, CLUSTER)
        handle.zero(CLUSTER, 3 * CLUSTER)
        handle.shutdown()
    return image


@needs_qemu
@pytest.mark.parametrize('compress', ['zlib', 'zstd'])
@pytest.mark.parametrize('direct', [True, False])
def test_compressing_writer(tmp_path, monkeypatch, compress, direct):
    monkeypatch.setattr(_nbdio, 'direct_io_supported', lambda directory: direct)
    image = _write(str(tmp_path), compress, direct)
    info = json.loads(subprocess.run(['qemu-img', 'info', '--output=json', image], check=True,
                                     stdout=subprocess.PIPE).stdout)
    assert info['format-specific']['data'].get('compression-type', 'zlib') == compress
    check = json.loads(subprocess.run(['qemu-img', 'check', '--output=json', image], check=True,
                                      stdout=subprocess.PIPE).stdout)
    assert check['compressed-clusters'] == 2
    raw = str(tmp_path / 'c.raw')
    subprocess.run(['qemu-img', 'convert', '-O', 'raw', image, raw], check=True)
    with open(raw, 'rb') as f:
        content = f.read()
    assert content == bytes(CLUSTER) + b'\x5a' * (2 * CLUSTER) + bytes(4 * 1024 * 1024 - 3 * CLUSTER)

    # The direct reader refuses compressed clusters; hash_image then reads the guest data through qemu-nbd.
    fd = os.open(image, os.O_RDONLY)
    try:
        with pytest.raises(_images.NotPlain):
            _images.hash_qcow2_file(fd, 4 * 1024 * 1024, CLUSTER, _blockhash.ALGORITHM, image)
    finally:
        os.close(fd)
    with _images.open_file(image, 'qcow2', 4 * 1024 * 1024) as chain:
        through_qemu = _images.hash_image(chain, 4 * 1024 * 1024, CLUSTER, workers=1, workdir=str(tmp_path),
                                          own_file=True)
    expected = _blockhash.BlockHashMap(4 * 1024 * 1024, CLUSTER)
    expected.update(0, memoryview(content))
    assert through_qemu.digest() == expected.digest()


# -- encryption -------------------------------------------------------------------------------------

PASSPHRASE = b'correct horse battery staple\n'


def test_encryption_option_in_every_module_that_reads_or_writes_images():
    for spec in (_options.BACKUP_ARGS, _options.RESTORE_ARGS, _options.BACKUP_INFO_ARGS, _options.COPY_ARGS):
        option = spec['encryption']
        assert option['type'] == 'dict'
        assert set(option['options']) == {'key_file', 'secret', 'iter_time'}
        assert option['mutually_exclusive'] == [('key_file', 'secret')]
        assert option['required_one_of'] == [('key_file', 'secret')]


def test_fingerprint_is_the_documented_derivation():
    # docs/repository-format.md: PBKDF2-HMAC-SHA256, fixed salt, 1,000,000 rounds, 16 bytes in hex.
    expected = hashlib.pbkdf2_hmac('sha256', PASSPHRASE, b'virtops.libvirt backup key fingerprint', 1000000)[:16].hex()
    assert _crypt.fingerprint(PASSPHRASE) == expected
    assert _crypt.FINGERPRINT.match(expected)
    assert _crypt.fingerprint(PASSPHRASE.strip()) != expected    # byte for byte: the newline counts


def _key_file(tmp_path, data=PASSPHRASE, mode=0o600):
    path = tmp_path / 'backup.key'
    path.write_bytes(data)
    os.chmod(str(path), mode)
    return str(path)


def test_key_file(tmp_path):
    key = _crypt.load_key(dict(key_file=_key_file(tmp_path), secret=None), None)
    try:
        assert key.fingerprint == _crypt.fingerprint(PASSPHRASE)
        # The passphrase is in an anonymous file, named only by descriptor; never on the command line.
        args = key.object_args()
        assert args == ['--object', 'secret,id=virtops-key,file=/dev/fd/%d' % key.fd]
        assert b'horse' not in ' '.join(args).encode()
        with open('/dev/fd/%d' % key.fd, 'rb') as again:
            assert again.read() == PASSPHRASE
        assert not os.get_inheritable(key.fd)
    finally:
        key.close()
    assert _crypt.load_key(None, None) is None


@pytest.mark.parametrize('mode, data, message', [
    (0o644, PASSPHRASE, 'can be read by other users (mode 0644): make it private (chmod 0600)'),
    (0o640, PASSPHRASE, 'can be read by other users (mode 0640)'),
    (0o600, b'', 'is empty: the passphrase needs at least one byte'),
])
def test_key_file_refused(tmp_path, mode, data, message):
    path = _key_file(tmp_path, data, mode)
    with pytest.raises(VirtError) as info:
        _crypt.load_key(dict(key_file=path, secret=None), None)
    assert message in info.value.msg


def test_key_file_missing_or_a_link(tmp_path):
    with pytest.raises(VirtError, match='cannot read encryption.key_file'):
        _crypt.load_key(dict(key_file=str(tmp_path / 'missing'), secret=None), None)
    os.symlink(_key_file(tmp_path), str(tmp_path / 'link'))
    with pytest.raises(VirtError, match='cannot read encryption.key_file'):
        _crypt.load_key(dict(key_file=str(tmp_path / 'link'), secret=None), None)


class _Backup:
    def __init__(self, backup_id, encryption):
        self.id = backup_id
        self.manifest = dict(encryption=encryption)


def test_check_key(tmp_path):
    key = _crypt.load_key(dict(key_file=_key_file(tmp_path), secret=None), None)
    section = _crypt.manifest_section(key)
    assert section == dict(format='luks', key_fingerprint=key.fingerprint)
    lineage = [_Backup('20261206T000002Z', section), _Backup('20261206T000001Z', section)]
    _crypt.check_lineage(lineage, key)
    _crypt.check_lineage([_Backup('20261206T000001Z', None)], None)
    with pytest.raises(VirtError) as info:
        _crypt.check_lineage(lineage, None)
    assert info.value.msg == 'backup 20261206T000001Z is encrypted: give encryption.key_file or encryption.secret'
    other = dict(section, key_fingerprint='0' * 32)
    with pytest.raises(VirtError) as info:
        _crypt.check_lineage([_Backup('20261206T000003Z', other)], key)
    assert info.value.msg.startswith('the key does not match backup 20261206T000003Z (fingerprint %s' % ('0' * 32))
    key.close()


@needs_qemu
def test_encrypted_image_needs_its_key_and_its_manifest(tmp_path):
    key = _crypt.load_key(dict(key_file=_key_file(tmp_path), secret=None), None)
    try:
        image = str(tmp_path / 'e.qcow2')
        _images.create(image, 1024 * 1024, compress='zstd', key=key)
        data = b'\x5a' * CLUSTER
        with _nbdio.QemuNbdServer(image, readonly=False, clients=1, workdir=str(tmp_path), compress=True,
                                  key=key) as writer:
            handle = writer.export().connect()
            handle.pwrite(data, 0)
            handle.shutdown()
        with open(image, 'rb') as src:
            assert data[:4096] not in src.read()
        # A header that says encrypted where the manifest does not (or the other way) is refused.
        with pytest.raises(_images.ImageError, match='is encrypted in its qcow2 header, but its manifest says'):
            _images.ImageChain([_images.open_layer(image, 1024 * 1024)], key=key)
        with pytest.raises(_images.ImageError, match='is encrypted and no key was given'):
            layer = _images.open_layer(image, 1024 * 1024)
            layer.encrypted = True
            _images.ImageChain([layer])
        layer = _images.open_layer(image, 1024 * 1024)
        layer.encrypted = True
        with _images.ImageChain([layer], key=key) as chain:
            assert _images.check(chain)[0]
            # The direct reader never hashes cipher text: hash_image reads the guest data through QEMU.
            with pytest.raises(_images.NotPlain):
                _images.hash_qcow2_file(chain.fds[0], 1024 * 1024, CLUSTER, _blockhash.ALGORITHM, image)
            digest = _images.hash_image(chain, 1024 * 1024, CLUSTER, workers=1, workdir=str(tmp_path)).digest()
        expected = _blockhash.BlockHashMap(1024 * 1024, CLUSTER)
        expected.update(0, memoryview(data + bytes(1024 * 1024 - CLUSTER)))
        assert digest == expected.digest()
    finally:
        key.close()


def _manifest(**extra):
    m = dict(format=_repository.MANIFEST_FORMAT, format_version=1, complete=True, id='20261126T010000Z',
             chain='20261126T010000Z', domain='vm1', level='full', mode='pull', parent=None,
             started='2026-11-26T01:00:00.000000Z', checkpoint='virtops-0123abcd-20261126T010000Z',
             repository_id='e02f39a2-1111-4222-8333-444455556666', domain_xml='domain.xml',
             checkpoint_xml='checkpoint.xml',
             disks=[dict(name='vda', virtual_size=64 * 1024 * 1024, image='vda.qcow2', backing=None,
                         integrity=dict(algorithm='sha256', block_size=65536, map='vda.blockhash.gz'),
                         image_digest='ab' * 32)])
    m.update(extra)
    return m


def test_manifest_fields_of_compression_and_encryption():
    _repository.validate_manifest(_manifest(), 'manifest.json')
    _repository.validate_manifest(_manifest(encryption=dict(format='luks', key_fingerprint='0f' * 16)), 'manifest.json')
    m = _manifest()
    m['disks'][0]['compression'] = 'zstd'
    _repository.validate_manifest(m, 'manifest.json')
    m['disks'][0]['compression'] = 'lz4'
    with pytest.raises(_repository.RepositoryError, match='field disks.0..compression'):
        _repository.validate_manifest(m, 'manifest.json')
    for bad in (dict(format='aes', key_fingerprint='0f' * 16), dict(format='luks', key_fingerprint='xyz'),
                dict(format='luks'), 'luks'):
        with pytest.raises(_repository.RepositoryError, match='field encryption'):
            _repository.validate_manifest(_manifest(encryption=bad), 'manifest.json')


def _luks_iterations(image, key):
    info = subprocess.run(['qemu-img', 'info', '--output=json'] + key.object_args() +
                          ['--image-opts', 'driver=qcow2,file.filename=%s,encrypt.key-secret=%s' % (image, _crypt.SECRET_ID)],
                          stdout=subprocess.PIPE, check=True, pass_fds=(key.fd,)).stdout
    encrypt = json.loads(info)['format-specific']['data']['encrypt']
    return [slot['iters'] for slot in encrypt['slots'] if slot['active']][0]


@needs_qemu
def test_iter_time_sets_the_key_derivation_cost_of_new_images(tmp_path):
    costs = {}
    for iter_time in (10, 400):
        key = _crypt.load_key(dict(key_file=_key_file(tmp_path), secret=None, iter_time=iter_time), None)
        try:
            image = str(tmp_path / ('i%d.qcow2' % iter_time))
            _images.create(image, 1024 * 1024, key=key)
            costs[iter_time] = _luks_iterations(image, key)
        finally:
            key.close()
    # PBKDF2 iterations are timed by QEMU: 40 times the time gives many times the iterations.
    assert costs[400] > 5 * costs[10]


@pytest.mark.parametrize('iter_time', [0, -1, 60001])
def test_iter_time_out_of_range(tmp_path, iter_time):
    with pytest.raises(VirtError, match='encryption.iter_time must be 1 to 60000 milliseconds'):
        _crypt.load_key(dict(key_file=_key_file(tmp_path), secret=None, iter_time=iter_time), None)
