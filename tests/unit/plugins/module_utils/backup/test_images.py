# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Images from a repository are opened layer by layer, by descriptor: a backing file or data file
named in a header is refused, never opened. Real qemu-img, qemu-nbd and libnbd."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import gzip
import os
import resource
import shutil
import socket
import subprocess
import threading

import pytest

nbd = pytest.importorskip('nbd')

from ansible_collections.virtops.libvirt.plugins.module_utils.backup import _blockhash, _images  # noqa: E402

pytestmark = pytest.mark.skipif(not shutil.which('qemu-nbd'), reason='qemu-nbd is not installed')

MiB = 1024 * 1024
SIZE = 4 * MiB
SECRET = b'TOPSECRET' * 1000


def qemu_img(*args):
    subprocess.run(['qemu-img'] + list(args), check=True, stdout=subprocess.DEVNULL)


def io(image, command):
    subprocess.run(['qemu-io', '-f', 'qcow2', '-c', command, image], check=True, stdout=subprocess.DEVNULL)


def layer(path, size=SIZE, backing=None):
    return _images.Layer(os.open(path, os.O_RDONLY | os.O_NOFOLLOW), path, size, backing)


@pytest.fixture
def secret(tmp_path):
    path = tmp_path / 'secret'
    path.write_bytes(SECRET.ljust(SIZE, b'S'))
    os.chmod(str(path), 0o600)
    return str(path)


def _hash(chain):
    return _images.hash_image(chain, SIZE, _blockhash.choose_block_size(SIZE), workers=1).data


def test_an_explicit_chain_reads_every_layer_and_ignores_nothing(tmp_path):
    full = str(tmp_path / 'full.qcow2')
    qemu_img('create', '-q', '-f', 'qcow2', full, str(SIZE))
    io(full, 'write -P 0x11 0 1M')
    os.mkdir(str(tmp_path / 'b'))
    inc = str(tmp_path / 'b' / 'inc.qcow2')
    qemu_img('create', '-q', '-f', 'qcow2', '-u', '-b', '../full.qcow2', '-F', 'qcow2', inc, str(SIZE))
    subprocess.run(['qemu-io', '-c', 'write -P 0x22 512k 64k', inc], check=True, stdout=subprocess.DEVNULL)
    with _images.ImageChain([layer(inc, backing='../full.qcow2'), layer(full)]) as chain:
        got = _hash(chain)
        out = str(tmp_path / 'out.raw')
        fd = os.open(out, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            _images.convert(chain, fd, out, 'raw', SIZE)
        finally:
            os.close(fd)
    data = open(out, 'rb').read()
    assert data[:512 * 1024] == b'\x11' * 512 * 1024
    assert data[512 * 1024:576 * 1024] == b'\x22' * 64 * 1024
    assert data[1 * MiB:] == bytes(SIZE - MiB)
    expected = _blockhash.BlockHashMap(SIZE)
    expected.update(0, data)
    assert got == expected.data


@pytest.mark.parametrize('backing', ['SECRET', 'json:{"driver":"raw","file":{"driver":"file","filename":"SECRET"}}'])
def test_a_backing_file_in_the_header_of_a_full_image_is_refused(tmp_path, secret, backing):
    image = str(tmp_path / 'full.qcow2')
    qemu_img('create', '-q', '-f', 'qcow2', '-u', '-b', backing.replace('SECRET', secret), '-F', 'raw', image,
             str(SIZE))
    with pytest.raises(_images.ImageError, match='backing file'):
        _images.ImageChain([layer(image)])


def test_a_backing_string_is_never_opened_not_even_to_connect(tmp_path):
    listener = socket.socket()
    listener.bind(('127.0.0.1', 0))
    listener.listen(1)
    listener.settimeout(3)
    connected = []

    def accept():
        try:
            connected.append(listener.accept())
        except socket.timeout:
            pass
    watcher = threading.Thread(target=accept)
    watcher.start()
    image = str(tmp_path / 'inc.qcow2')
    qemu_img('create', '-q', '-f', 'qcow2', '-u', '-b', 'nbd+tcp://127.0.0.1:%d/x' % listener.getsockname()[1],
             '-F', 'raw', image, str(SIZE))
    with pytest.raises(_images.ImageError, match='backing file'):
        _images.ImageChain([layer(image, backing='../20261126T010000Z/vda.qcow2'), layer(image)])
    watcher.join()
    listener.close()
    assert connected == []


def test_an_external_data_file_is_refused(tmp_path, secret):
    image = str(tmp_path / 'data.qcow2')
    qemu_img('create', '-q', '-f', 'qcow2', '-o', 'data_file=%s,data_file_raw=on' % secret, image, str(SIZE))
    with pytest.raises(_images.ImageError, match='external data file'):
        _images.ImageChain([layer(image)])


def test_a_raw_file_or_a_wrong_size_is_refused(tmp_path, secret):
    with pytest.raises(_images.ImageError, match='not a qcow2 image'):
        _images.ImageChain([layer(secret)])
    image = str(tmp_path / 'big.qcow2')
    qemu_img('create', '-q', '-f', 'qcow2', image, str(2 * SIZE))
    with pytest.raises(_images.ImageError, match='virtual size'):
        _images.ImageChain([layer(image)])


def test_a_flat_file_given_by_a_link_is_not_followed(tmp_path, secret):
    link = str(tmp_path / 'vda.raw')
    os.symlink(secret, link)
    with pytest.raises(_images.ImageError, match='cannot open'):
        _images.open_file(link, 'raw', SIZE)


def test_the_export_must_be_the_whole_disk(tmp_path):
    image = str(tmp_path / 'small.raw')
    open(image, 'wb').truncate(SIZE - 65536)
    with _images.open_file(image, 'raw') as chain:
        with pytest.raises(Exception, match='holds %d bytes' % (SIZE - 65536)):
            _hash(chain)


def test_a_gzip_bomb_map_is_refused_without_memory(tmp_path):
    bomb = str(tmp_path / 'vda.blockhash.gz')
    with gzip.open(bomb, 'wb', compresslevel=9) as out:
        chunk = bytes(16 * MiB)
        for dummy in range(64):   # 1 GiB of zeroes in about 1 MiB
            out.write(chunk)
    assert os.path.getsize(bomb) < 2 * MiB
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(_blockhash.BlockHashError, match='holds more than|larger than a map'):
        _blockhash.BlockHashMap.load(bomb, SIZE, _blockhash.choose_block_size(SIZE))
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown_kib < 64 * 1024, 'loading the map grew the process by %d KiB' % grown_kib
