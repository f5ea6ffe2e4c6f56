# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The direct qcow2 writer of backup images: what QEMU reads back equals what was written, and
`qemu-img check` finds nothing wrong, for full images and overlays, several connections, small and
default clusters (many L2 tables, refcount blocks, a refcount table that must grow).
Real qemu-img, qemu-nbd and libnbd."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import mmap
import os
import shutil
import subprocess

import pytest

nbd = pytest.importorskip('nbd')

from ansible_collections.virtops.libvirt.plugins.module_utils.backup import (  # noqa: E402
    _blockhash,
    _images,
    _nbdio,
    _qcow2_writer,
)
from ansible_collections.virtops.libvirt.tests.unit.plugins.module_utils.backup.image_content import qcow2_content  # noqa: E402

pytestmark = pytest.mark.skipif(not shutil.which('qemu-nbd'), reason='qemu-nbd is not installed')

MiB = 1024 * 1024
SIZE = 24 * MiB + 64 * 1024 + 4096      # a short last cluster and hash block


def _disk(tmp_path, name='src.raw', seed=b''):
    """A raw disk with random data, zeroes written inside data, holes and a short tail."""
    data = bytearray(SIZE)
    pieces = [(0, 3 * MiB), (5 * MiB + 4096, 2 * MiB), (12 * MiB, 64 * 1024), (SIZE - 100 * 1024, 100 * 1024)]
    for start, length in pieces:
        data[start:start + length] = os.urandom(length)
    data[MiB:MiB + 128 * 1024] = bytes(128 * 1024)
    path = str(tmp_path / name)
    with open(path, 'wb') as out:
        out.truncate(SIZE)
        for start, length in pieces:
            out.seek(start)
            out.write(data[start:start + length])
    return path, bytes(data)


def _check(path):
    """qemu-img check: no corruption, no leaked clusters (exit 0)."""
    proc = subprocess.run(['qemu-img', 'check', '--output=json', path], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(proc.stdout)
    assert not report.get('leaks') and not report.get('corruptions'), report
    return report


def _copy(src, dst, size, hashmap, **options):
    """Transfer the raw file src into the image dst with the direct writer; returns the transfer."""
    fd = os.open(dst, os.O_RDWR)
    writer = None
    try:
        writer = _qcow2_writer.Qcow2Writer(fd, dst, size, hashmap.block_size)
        with _nbdio.QemuNbdServer(src, fmt='raw', workdir=os.path.dirname(dst)) as reader:
            transfer = _nbdio.Transfer(reader.export(), size, hashmap, writer, **options)
            transfer.run([], _nbdio.select_all)
        writer.finish()
        transfer.skipped_page_cache = writer.skips_page_cache()
    finally:
        if writer is not None:
            writer.release()
        os.close(fd)
    return transfer


@pytest.mark.parametrize('cluster, workers', [(65536, 4), (65536, 1), (4096, 3), (512, 2)])
def test_a_full_image_written_directly_reads_back_bit_exact_and_checks_clean(tmp_path, cluster, workers):
    src, data = _disk(tmp_path)
    dst = str(tmp_path / 'dst.qcow2')
    subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2', '-o', 'cluster_size=%d' % cluster, dst, str(SIZE)],
                   check=True)
    hashmap = _blockhash.BlockHashMap(SIZE)
    transfer = _copy(src, dst, SIZE, hashmap, workers=workers)
    assert qcow2_content(dst, tmp_path) == data
    # Data clusters of 4 KiB and more went around the page cache where the file system allows it.
    assert transfer.skipped_page_cache == (cluster >= 4096 and _nbdio.direct_io_supported(str(tmp_path)))
    reference = _blockhash.BlockHashMap(SIZE)
    reference.update(0, data)
    assert hashmap.data == reference.data
    report = _check(dst)
    # Only data is stored: the zeroes written inside a data extent became zero clusters.
    stored = report['allocated-clusters'] * cluster
    # (The short last hash block is read short but stored as a whole cluster.)
    assert 3 * MiB + 2 * MiB + 36 * 1024 <= stored <= transfer.bytes_read - 128 * 1024 + cluster
    mapping = json.loads(subprocess.run(['qemu-img', 'map', '--output=json', dst], capture_output=True,
                                        check=True).stdout)
    zero_inside = [m for m in mapping if m['start'] <= MiB < m['start'] + m['length']]
    assert zero_inside[0]['zero'] and not zero_inside[0]['data']


def test_an_overlay_written_directly_shadows_its_backing_with_zero_clusters(tmp_path):
    """Compare mode into an overlay: changed blocks written, blocks that became zero are zero
    clusters over the parent, everything else shows the parent."""
    src, data = _disk(tmp_path)
    base = str(tmp_path / 'base.qcow2')
    subprocess.run(['qemu-img', 'convert', '-O', 'qcow2', '-f', 'raw', src, base], check=True)
    parent = _blockhash.BlockHashMap(SIZE)
    parent.update(0, data)
    changed = bytearray(data)
    changed[9 * MiB:9 * MiB + 64 * 1024] = b'\x5a' * (64 * 1024)
    changed[5 * MiB + 4096:7 * MiB + 4096] = bytes(2 * MiB)
    with open(src, 'r+b') as out:
        out.seek(9 * MiB)
        out.write(changed[9 * MiB:9 * MiB + 64 * 1024])
    subprocess.run(['fallocate', '-p', '-o', str(5 * MiB + 4096), '-l', str(2 * MiB), src], check=True)
    overlay = str(tmp_path / 'overlay.qcow2')
    subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2', '-b', base, '-F', 'qcow2', overlay, str(SIZE)],
                   check=True)
    hashmap = parent.copy()
    transfer = _copy(src, overlay, SIZE, hashmap, compare=True, write_zeroes=True)
    assert qcow2_content(overlay, tmp_path) == bytes(changed)
    assert transfer.bytes_written == 64 * 1024
    assert transfer.changed_zero_bytes == 33 * 64 * 1024
    report = _check(overlay)
    assert report['allocated-clusters'] == 1          # zero clusters hold no data


def test_a_refcount_table_that_must_grow_is_moved(tmp_path):
    """512-byte clusters: qemu-img's refcount table of one cluster covers 8 MiB of file, less than
    the data; the writer writes a larger one and the header points to it."""
    src = str(tmp_path / 'src.raw')
    data = os.urandom(SIZE)
    with open(src, 'wb') as out:
        out.write(data)
    dst = str(tmp_path / 'dst.qcow2')
    subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2', '-o', 'cluster_size=512', dst, str(SIZE)], check=True)
    before = _images.QCOW2_HEADER.unpack_from(open(dst, 'rb').read(104))[9]
    _copy(src, dst, SIZE, _blockhash.BlockHashMap(SIZE))
    after = _images.QCOW2_HEADER.unpack_from(open(dst, 'rb').read(104))
    assert after[9] != before and after[10] > 1
    _check(dst)
    assert qcow2_content(dst, tmp_path) == data


@pytest.mark.parametrize('options, why', [
    (['-o', 'compression_type=zstd'], 'incompatible features'),
    (['-o', 'cluster_size=2M'], 'not whole clusters'),
    (['-o', 'refcount_bits=64'], 'refcounts other than 16-bit'),
    (['-o', 'compat=0.10'], 'version 3'),
])
def test_what_the_writer_does_not_write_is_left_to_qemu_nbd(tmp_path, options, why):
    dst = str(tmp_path / 'dst.qcow2')
    subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2'] + options + [dst, str(SIZE)], check=True)
    fd = os.open(dst, os.O_RDWR)
    try:
        with pytest.raises(_images.NotPlain, match=why):
            _qcow2_writer.Qcow2Writer(fd, dst, SIZE, 65536)
    finally:
        os.close(fd)


def test_writes_that_are_not_whole_clusters_or_repeat_one_fail(tmp_path):
    dst = str(tmp_path / 'dst.qcow2')
    subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2', dst, str(SIZE)], check=True)
    fd = os.open(dst, os.O_RDWR)
    try:
        writer = _qcow2_writer.Qcow2Writer(fd, dst, SIZE, 65536)
        with pytest.raises(_images.ImageError, match='not whole clusters'):
            writer.pwrite(memoryview(bytes(4096)), 0)
        with pytest.raises(_images.ImageError, match='not whole clusters'):
            writer.pwrite(memoryview(bytes(65536)), SIZE)
        writer.pwrite(memoryview(os.urandom(65536)), 65536)
        with pytest.raises(_images.ImageError, match='written twice'):
            writer.zero(0, 2 * 65536)
        writer.release()
    finally:
        os.close(fd)


def _half_compressible(tmp_path):
    """A raw disk whose data clusters are half random, half text; holes and a short tail as _disk."""
    src, data = _disk(tmp_path)
    data = bytearray(data)
    text = (b'virtops compresses this line well. ' * 2000)[:32 * 1024]
    with open(src, 'r+b') as out:
        for start in range(0, SIZE, 64 * 1024):
            if any(data[start:start + 64]):
                piece = text[:min(32 * 1024, SIZE - start)]
                data[start:start + len(piece)] = piece
                out.seek(start)
                out.write(piece)
    return src, bytes(data)


@pytest.mark.parametrize('compress, cluster', [('zstd', 65536), ('zlib', 65536), ('zstd', 4096), ('zlib', 512)])
def test_compressed_clusters_read_back_bit_exact_and_check_clean(tmp_path, compress, cluster):
    if compress == 'zstd':
        pytest.importorskip('zstandard')
    src, data = _half_compressible(tmp_path)
    dst = str(tmp_path / 'dst.qcow2')
    options = 'cluster_size=%d%s' % (cluster, ',compression_type=zstd' if compress == 'zstd' else '')
    subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2', '-o', options, dst, str(SIZE)], check=True)
    fd = os.open(dst, os.O_RDWR)
    try:
        writer = _qcow2_writer.Qcow2Writer(fd, dst, SIZE, 65536, compress=compress)
        hashmap = _blockhash.BlockHashMap(SIZE)
        with _nbdio.QemuNbdServer(src, fmt='raw', workdir=str(tmp_path)) as reader:
            transfer = _nbdio.Transfer(reader.export(), SIZE, hashmap, writer, workers=3)
            transfer.run([], _nbdio.select_all)
        writer.finish()
        writer.release()
    finally:
        os.close(fd)
    assert qcow2_content(dst, tmp_path) == data
    _check(dst)
    info = json.loads(subprocess.run(['qemu-img', 'info', '--output=json', dst], capture_output=True,
                                     check=True).stdout)
    assert info['format-specific']['data'].get('compression-type', 'zlib') == compress
    # Half of each data cluster is text: the image holds clearly less than the data read.
    assert os.path.getsize(dst) < 0.8 * transfer.bytes_read
    assert writer.bytes_stored < 0.8 * transfer.bytes_read


def test_incompressible_clusters_stay_plain(tmp_path):
    src, data = _disk(tmp_path)
    dst = str(tmp_path / 'dst.qcow2')
    subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2', dst, str(SIZE)], check=True)
    fd = os.open(dst, os.O_RDWR)
    try:
        writer = _qcow2_writer.Qcow2Writer(fd, dst, SIZE, 65536, compress='zlib')
        with _nbdio.QemuNbdServer(src, fmt='raw', workdir=str(tmp_path)) as reader:
            _nbdio.Transfer(reader.export(), SIZE, _blockhash.BlockHashMap(SIZE), writer).run([], _nbdio.select_all)
        writer.finish()
        writer.release()
    finally:
        os.close(fd)
    assert qcow2_content(dst, tmp_path) == data
    # Only the four clusters that random data covers in part (the rest zeroes) shrink: the edges of
    # the second and fourth pieces, and the short tail padded to a cluster.
    assert _check(dst).get('compressed-clusters') == 4


def test_a_compression_type_other_than_the_images_is_refused(tmp_path):
    dst = str(tmp_path / 'dst.qcow2')
    subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2', dst, str(SIZE)], check=True)
    fd = os.open(dst, os.O_RDWR)
    try:
        with pytest.raises(_images.NotPlain, match='compression type is not zstd|incompatible'):
            _qcow2_writer.Qcow2Writer(fd, dst, SIZE, 65536, compress='zstd')
    finally:
        os.close(fd)


def test_the_direct_writer_falls_back_to_the_page_cache_for_what_o_direct_refuses(tmp_path):
    path = str(tmp_path / 'file')
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    out = _nbdio.DirectWriter(fd)
    try:
        out.reserve(64 * 1024)
        aligned = mmap.mmap(-1, 8192)
        aligned[:] = os.urandom(8192)
        out.pwrite(memoryview(aligned), 8192)
        assert out.use_direct == _nbdio.direct_io_supported(str(tmp_path))
        # Not whole pages, and a buffer that is not page aligned: both written through fd.
        out.pwrite(b'x' * 100, 100)
        unaligned = memoryview(bytearray(b'y' * 8193))[1:]
        out.pwrite(unaligned, 16384)
        reserved = out.preallocate
    finally:
        out.release()
        os.close(fd)
    with open(path, 'rb') as src:
        content = src.read()
    assert content[100:200] == b'x' * 100
    assert content[8192:16384] == aligned[:]
    assert content[16384:24576] == b'y' * 8192
    # Blocks were reserved beyond what was written (the writer's finish() truncates to its end).
    assert len(content) >= 64 * 1024 or not reserved
