# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The asynchronous data path: many requests in flight per connection, every block hashed once,
bytes written equal bytes read, whatever the depth, request size and number of connections.
Real qemu-img, qemu-nbd and libnbd."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import shutil
import subprocess
import time

import pytest

nbd = pytest.importorskip('nbd')

from ansible_collections.virtops.libvirt.plugins.module_utils.backup import _blockhash, _images, _nbdio  # noqa: E402
from ansible_collections.virtops.libvirt.tests.unit.plugins.module_utils.backup.image_content import qcow2_content  # noqa: E402

pytestmark = pytest.mark.skipif(not shutil.which('qemu-nbd'), reason='qemu-nbd is not installed')

MiB = 1024 * 1024
SIZE = 24 * MiB + 64 * 1024 + 4096      # not a multiple of the request size; a short last hash block


def _disk(tmp_path):
    """A raw disk with random data, zero runs inside data, holes and a short tail."""
    data = bytearray(SIZE)
    pieces = [(0, 3 * MiB), (5 * MiB + 4096, 2 * MiB), (12 * MiB, 64 * 1024), (SIZE - 100 * 1024, 100 * 1024)]
    for start, length in pieces:
        data[start:start + length] = os.urandom(length)
    data[MiB:MiB + 128 * 1024] = bytes(128 * 1024)           # zeroes written inside a data extent
    path = str(tmp_path / 'src.raw')
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.ftruncate(fd, SIZE)
        for start, length in pieces:
            os.pwrite(fd, bytes(data[start:start + length]), start)
    finally:
        os.close(fd)
    return path, bytes(data)


def _reference(data, algorithm=_blockhash.XXH3_128):
    ref = _blockhash.BlockHashMap(SIZE, algorithm=algorithm)
    ref.update(0, data)
    return ref


@pytest.mark.parametrize('workers, depth, request_size', [
    (4, 16, 256 * 1024),     # the defaults
    (1, 1, 64 * 1024),       # one request at a time
    (3, 64, 128 * 1024),
    (2, 4, 1000 * 1000),     # rounded down to 4 KiB
])
def test_copy_writes_what_it_read_and_hashes_every_block(tmp_path, workers, depth, request_size):
    src, data = _disk(tmp_path)
    dst = str(tmp_path / 'dst.qcow2')
    subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2', dst, str(SIZE)], check=True)
    hashmap = _blockhash.BlockHashMap(SIZE)
    with _nbdio.QemuNbdServer(src, fmt='raw', clients=workers, workdir=str(tmp_path)) as reader, \
            _nbdio.QemuNbdServer(dst, readonly=False, clients=workers, workdir=str(tmp_path)) as writer:
        transfer = _nbdio.Transfer(reader.export(), SIZE, hashmap, writer.export(), workers=workers,
                                   depth=depth, request_size=request_size)
        transfer.run([], _nbdio.select_all)
    assert qcow2_content(dst, tmp_path) == data
    assert hashmap.data == _reference(data).data
    assert transfer.bytes_read == transfer.bytes_written
    assert transfer.bytes_read + transfer.zero_bytes == SIZE
    # Holes are not read: far less than the disk crossed the socket.
    assert transfer.bytes_read < SIZE // 2


def test_compare_writes_only_changed_blocks_into_an_overlay(tmp_path):
    """A disk without a bitmap: read in full, only blocks whose digest changed are written; a data
    extent that became a hole is written as zeroes over the parent (never left to show through)."""
    src, data = _disk(tmp_path)
    base = str(tmp_path / 'base.qcow2')
    subprocess.run(['qemu-img', 'convert', '-O', 'qcow2', '-f', 'raw', src, base], check=True)
    parent = _reference(data)
    changed = bytearray(data)
    changed[9 * MiB:9 * MiB + 64 * 1024] = b'\x5a' * (64 * 1024)       # a hole that now holds data
    changed[0:4096] = bytes(4096)                                       # part of a data block zeroed
    changed[5 * MiB + 4096:7 * MiB + 4096] = bytes(2 * MiB)             # a whole data extent punched out
    fd = os.open(src, os.O_WRONLY)
    try:
        os.pwrite(fd, bytes(changed[9 * MiB:9 * MiB + 64 * 1024]), 9 * MiB)
        os.pwrite(fd, bytes(4096), 0)
    finally:
        os.close(fd)
    subprocess.run(['fallocate', '-p', '-o', str(5 * MiB + 4096), '-l', str(2 * MiB), src], check=True)
    overlay = str(tmp_path / 'overlay.qcow2')
    subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2', '-b', base, '-F', 'qcow2', overlay, str(SIZE)],
                   check=True)
    hashmap = parent.copy()
    with _nbdio.QemuNbdServer(src, fmt='raw', workdir=str(tmp_path)) as reader, \
            _nbdio.QemuNbdServer(overlay, readonly=False, workdir=str(tmp_path)) as writer:
        transfer = _nbdio.Transfer(reader.export(), SIZE, hashmap, writer.export(), compare=True, write_zeroes=True)
        transfer.run([], _nbdio.select_all)
    assert qcow2_content(overlay, tmp_path) == bytes(changed)
    assert hashmap.data == _reference(bytes(changed)).data
    assert transfer.bytes_written == 2 * 64 * 1024         # the new data block and the partly zeroed one
    # The punched extent covers hash blocks 80 to 112 (5 MiB to 7 MiB + 64 KiB), all zero now.
    assert transfer.changed_zero_bytes == 33 * 64 * 1024


def test_direct_raw_hash_agrees_with_the_nbd_path(tmp_path):
    src, data = _disk(tmp_path)
    out = str(tmp_path / 'out.raw')
    subprocess.run(['qemu-img', 'convert', '-f', 'raw', '-O', 'raw', src, out], check=True)  # holes where zero
    for algorithm in (_blockhash.XXH3_128, _blockhash.SHA256):
        # A raw file is hashed by reading it directly, holes skipped; a qcow2 through qemu-nbd.
        with _images.open_file(out, 'raw', SIZE) as chain:
            direct = _images.hash_image(chain, SIZE, 65536, algorithm=algorithm)
        assert direct.data == _reference(data, algorithm).data
        with _images.ImageChain([_images.Layer(os.open(out, os.O_RDONLY), out, SIZE)], fmt='raw') as chain:
            with _images.serve(chain) as server:
                via_nbd = _blockhash.BlockHashMap(SIZE, 65536, algorithm=algorithm)
                _nbdio.Transfer(server.export(), SIZE, via_nbd).run([], _nbdio.select_all)
        assert via_nbd.data == direct.data


@pytest.mark.parametrize('block_size', [512, 1536, 65536])
def test_a_restored_raw_file_hashed_through_mmap_matches_reading_it(tmp_path, block_size):
    """own_file (a restored disk) hashes through mmap windows, which start on page boundaries:
    the map equals the one read with pread, blocks smaller than a page and unaligned included."""
    size = block_size * 3000
    path = str(tmp_path / 'disk.raw')
    with open(path, 'wb') as out:
        out.truncate(size)
        for offset, length in ((0, 9000), (block_size * 7 + 3, 70000), (size // 2, 5 << 20), (size - 10, 10)):
            if offset + length <= size:
                out.seek(offset)
                out.write(os.urandom(length))
    fd = os.open(path, os.O_RDONLY)
    try:
        read = _images.hash_raw_file(fd, size, block_size, _blockhash.XXH3_128, path)
        mapped = _images.hash_raw_file(fd, size, block_size, _blockhash.XXH3_128, path, mapped=True)
    finally:
        os.close(fd)
    with open(path, 'rb') as src:
        whole = _blockhash.BlockHashMap(size, block_size, algorithm=_blockhash.XXH3_128)
        whole.update(0, src.read())
    assert mapped.data == read.data == whole.data


def test_hash_raw_file_refuses_a_file_of_another_size(tmp_path):
    path = str(tmp_path / 'short.raw')
    with open(path, 'wb') as out:
        out.truncate(SIZE - 512)
    with _images.open_file(path, 'raw', SIZE) as chain:
        with pytest.raises(_images.ImageError, match='holds %d bytes' % (SIZE - 512)):
            _images.hash_image(chain, SIZE, 65536)


def test_a_source_of_another_size_fails_before_anything_is_written(tmp_path):
    src, dummy = _disk(tmp_path)
    hashmap = _blockhash.BlockHashMap(SIZE + 65536)
    with _nbdio.QemuNbdServer(src, fmt='raw', workdir=str(tmp_path)) as reader:
        with pytest.raises(_nbdio.NbdIoError, match='holds %d bytes' % SIZE):
            _nbdio.Transfer(reader.export(), SIZE + 65536, hashmap).run([], _nbdio.select_all)


def test_a_failing_writer_fails_the_transfer(tmp_path):
    """A read-only destination refuses every write: the transfer raises, and does not hang."""
    src, dummy = _disk(tmp_path)
    dst = str(tmp_path / 'ro.qcow2')
    subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2', dst, str(SIZE)], check=True)
    with _nbdio.QemuNbdServer(src, fmt='raw', workdir=str(tmp_path)) as reader, \
            _nbdio.QemuNbdServer(dst, readonly=True, workdir=str(tmp_path)) as writer:
        transfer = _nbdio.Transfer(reader.export(), SIZE, _blockhash.BlockHashMap(SIZE), writer.export(), timeout=60)
        with pytest.raises(_nbdio.NbdIoError):
            transfer.run([], _nbdio.select_all)


def _qemu_io(image, *commands):
    args = ['qemu-io', '-f', 'qcow2']
    for command in commands:
        args += ['-c', command]
    subprocess.run(args + [image], check=True, stdout=subprocess.DEVNULL)


def _via_nbd(path, size, algorithm, hashmap=None, top_only=False, backing_chain=None, block_size=65536):
    """What the qemu-nbd path computes for the same image (the reference)."""
    hashmap = hashmap if hashmap is not None else _blockhash.BlockHashMap(size, block_size, algorithm=algorithm)
    layers = [_images.Layer(os.open(p, os.O_RDONLY), p, size, b) for p, b in (backing_chain or [(path, None)])]
    with _images.ImageChain(layers) as chain, _images.serve(chain, allocation_depth=top_only) as server:
        transfer = _nbdio.Transfer(server.export(), size, hashmap)
        if top_only:
            transfer.run([_nbdio.ALLOCATION_DEPTH], _nbdio.select_top_layer)
        else:
            transfer.run([], _nbdio.select_all)
    return hashmap


@pytest.mark.parametrize('algorithm', [_blockhash.XXH3_128, _blockhash.SHA256])
def test_a_qcow2_read_directly_hashes_like_qemu_reads_it(tmp_path, algorithm):
    size = 9 * MiB + 4096                      # a short last cluster
    image = str(tmp_path / 'own.qcow2')
    subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2', image, str(size)], check=True)
    _qemu_io(image, 'write -P 0x11 0 1M', 'write -P 0x22 3M 64k', 'write -z 4M 1M', 'write -P 0x33 8M 1M',
             'write -P 0x44 9M 4k', 'write -z 192k 64k')
    fd = os.open(image, os.O_RDONLY)
    try:
        direct, stats = _images.hash_qcow2_file(fd, size, 65536, algorithm, image)
    finally:
        os.close(fd)
    assert direct.data == _via_nbd(image, size, algorithm).data
    assert stats.bytes_read == (1 * MiB - 64 * 1024) + 64 * 1024 + 1 * MiB + 4096
    assert stats.bytes_read + stats.zero_bytes == size
    # A restored qcow2 is verified this way (own_file), a repository image never is.
    with _images.open_file(image, 'qcow2', size) as chain:
        assert _images.hash_image(chain, size, 65536, algorithm=algorithm, own_file=True).data == direct.data


@pytest.mark.parametrize('mapped', [False, True])
@pytest.mark.parametrize('block_size', [64 * 1024, 128 * 1024, MiB])
def test_blocks_without_data_get_the_zero_digest_whatever_the_block_size(tmp_path, monkeypatch, block_size, mapped):
    # Data interleaved with zeroes as a guest leaves it: a block with one data cluster among zero
    # or unallocated ones, a data run across a block boundary, whole zero blocks between data. One
    # reader thread: the second 4 MiB window reuses the buffer that held the first one's data.
    monkeypatch.setattr(_images._TableReaders, 'THREADS', 1)
    size = 8 * MiB + 64 * 1024
    image = str(tmp_path / 'mixed.qcow2')
    subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2', image, str(size)], check=True)
    _qemu_io(image, 'write -P 0x11 64k 64k', 'write -P 0x22 960k 128k', 'write -z 2M 64k',
             'write -P 0x33 2112k 64k', 'write -P 0x44 3M 1M', 'write -P 0x55 4224k 64k',
             'write -P 0x66 7M 64k', 'write -P 0x77 8M 64k')
    fd = os.open(image, os.O_RDONLY)
    try:
        direct, stats = _images.hash_qcow2_file(fd, size, block_size, _blockhash.XXH3_128, image, mapped=mapped)
    finally:
        os.close(fd)
    assert direct.data == _via_nbd(image, size, _blockhash.XXH3_128, block_size=block_size).data
    assert stats.bytes_read == (64 + 128 + 64 + 1024 + 64 + 64 + 64) * 1024
    assert stats.bytes_read + stats.zero_bytes == size


@pytest.mark.parametrize('mapped', [False, True])
@pytest.mark.parametrize('cluster', [128 * 1024, 256 * 1024])
def test_clusters_of_several_hash_blocks_are_hashed_block_by_block(tmp_path, cluster, mapped):
    # A whole-disk push target has clusters larger than the hash block: a write of 64 KiB
    # allocates a whole cluster, whose other blocks read as zeroes and must hash as such.
    size = 6 * MiB + 64 * 1024             # ends inside a cluster
    image = str(tmp_path / 'big-clusters.qcow2')
    subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2', '-o', 'cluster_size=%d' % cluster, image, str(size)],
                   check=True)
    _qemu_io(image, 'write -P 0x11 64k 64k', 'write -P 0x22 1M 1M', 'write -z 2M 256k', 'write -P 0x33 5M 64k',
             'write -P 0x44 6M 64k')
    fd = os.open(image, os.O_RDONLY)
    try:
        direct, stats = _images.hash_qcow2_file(fd, size, 65536, _blockhash.XXH3_128, image, mapped=mapped)
    finally:
        os.close(fd)
    assert direct.data == _via_nbd(image, size, _blockhash.XXH3_128).data
    # Whole clusters are read, but the zeroes around what was written count as zeroes: the figures
    # are those of clusters of one block.
    assert stats.bytes_read == 64 * 1024 + MiB + 64 * 1024 + 64 * 1024
    assert stats.bytes_read + stats.zero_bytes == size


@pytest.mark.parametrize('mapped', [False, True])
def test_the_top_layer_of_an_overlay_read_directly_updates_only_its_own_blocks(tmp_path, mapped):
    size = 8 * MiB
    base = str(tmp_path / 'base.qcow2')
    subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2', base, str(size)], check=True)
    _qemu_io(base, 'write -P 0x11 0 4M')
    top = str(tmp_path / 'top.qcow2')
    subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2', '-u', '-b', 'base.qcow2', '-F', 'qcow2', top,
                    str(size)], check=True)
    _qemu_io(top, 'write -P 0x55 1M 128k', 'write -z 2M 64k', 'write -P 0x66 6M 64k')
    parent = _via_nbd(base, size, _blockhash.XXH3_128)
    expected = _via_nbd(top, size, _blockhash.XXH3_128, hashmap=parent.copy(), top_only=True,
                        backing_chain=[(top, 'base.qcow2'), (base, None)])
    fd = os.open(top, os.O_RDONLY)
    try:
        got, stats = _images.hash_qcow2_file(fd, size, 65536, _blockhash.XXH3_128, top, hashmap=parent.copy(),
                                             top_only=True, mapped=mapped)
    finally:
        os.close(fd)
    assert got.data == expected.data
    assert (stats.bytes_read, stats.zero_bytes) == (192 * 1024, 64 * 1024)


@pytest.mark.parametrize('mapped', [False, True])
@pytest.mark.parametrize('top_only', [False, True])
def test_a_data_cluster_past_the_end_of_the_file_is_an_error_not_a_crash(tmp_path, mapped, top_only):
    # The file is cut after QEMU wrote its tables: its last data cluster now lies past the end.
    # Read through a map, that would be SIGBUS; it must be a clear error either way.
    size = 4 * MiB
    image = str(tmp_path / 'cut.qcow2')
    subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2', image, str(size)], check=True)
    _qemu_io(image, 'write -P 0x11 0 1M', 'write -P 0x22 3M 64k')
    os.truncate(image, os.path.getsize(image) - 32 * 1024)
    fd = os.open(image, os.O_RDONLY)
    try:
        hashmap = _blockhash.BlockHashMap(size, 65536, algorithm=_blockhash.XXH3_128)
        with pytest.raises(_images.ImageError, match='lies beyond the end of the file'):
            _images.hash_qcow2_file(fd, size, 65536, _blockhash.XXH3_128, image, hashmap=hashmap, top_only=top_only,
                                    mapped=mapped)
    finally:
        os.close(fd)


def test_a_file_open_for_writing_elsewhere_is_not_mapped(tmp_path):
    image = str(tmp_path / 'pushed.qcow2')
    subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2', image, str(MiB)], check=True)
    fd = os.open(image, os.O_RDONLY)
    try:
        assert _images.no_other_writer(fd)
        # Another process holds it open for writing, as QEMU does during a push job.
        holder = subprocess.Popen(['sh', '-c', 'exec 3<>"$0"; read line', image], stdin=subprocess.PIPE)
        try:
            deadline = time.time() + 10
            while not any(os.path.realpath('/proc/%d/fd/%s' % (holder.pid, n)) == image
                          for n in os.listdir('/proc/%d/fd' % holder.pid)):
                assert time.time() < deadline
                time.sleep(0.01)
            assert not _images.no_other_writer(fd)
        finally:
            holder.communicate(b'\n')
        assert _images.no_other_writer(fd)
        # The lease is let go at once: a writer opening the file later is not held up.
        started = time.time()
        os.close(os.open(image, os.O_WRONLY))
        assert time.time() - started < 1
    finally:
        os.close(fd)


@pytest.mark.parametrize('options, write', [
    ('extended_l2=on', 'write -P 0x11 0 64k'),
    ('cluster_size=65536', None),      # compressed clusters (written by convert -c below)
])
def test_what_the_direct_reader_does_not_read_is_left_to_qemu(tmp_path, options, write):
    size = 4 * MiB
    image = str(tmp_path / 'odd.qcow2')
    if write:
        subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2', '-o', options, image, str(size)], check=True)
        _qemu_io(image, write)
    else:
        raw = str(tmp_path / 'src.raw')
        with open(raw, 'wb') as out:
            out.write(b'\x5a' * MiB)
            out.truncate(size)
        subprocess.run(['qemu-img', 'convert', '-c', '-O', 'qcow2', raw, image], check=True)
    fd = os.open(image, os.O_RDONLY)
    try:
        with pytest.raises(_images.NotPlain):
            _images.hash_qcow2_file(fd, size, 65536, _blockhash.XXH3_128, image)
    finally:
        os.close(fd)
    expected = _via_nbd(image, size, _blockhash.XXH3_128).data
    with _images.open_file(image, 'qcow2', size) as chain:
        assert _images.hash_image(chain, size, 65536, own_file=True).data == expected


def test_a_writer_that_cannot_use_io_uring_starts_with_native_aio(tmp_path, monkeypatch):
    """qemu-nbd refusing the io_uring writer (an old kernel, a seccomp filter; here an invalid
    aio value in its place) is started again with native AIO, in a new private directory."""
    dst = str(tmp_path / 'w.qcow2')
    subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2', dst, str(SIZE)], check=True)
    start = _nbdio.QemuNbdServer._start

    def refuse_io_uring(server, cmd, pass_fds):
        return start(server, [arg.replace('aio=io_uring', 'aio=unknown') for arg in cmd], pass_fds)

    monkeypatch.setattr(_nbdio.QemuNbdServer, '_start', refuse_io_uring)
    with _nbdio.QemuNbdServer(dst, readonly=False, workdir=str(tmp_path)) as writer:
        if not writer.direct_io:
            pytest.skip('%s does not support O_DIRECT' % tmp_path)
        with open('/proc/%d/cmdline' % writer.proc.pid) as cmdline:
            assert 'file.aio=native' in cmdline.read()
        hashmap = _blockhash.BlockHashMap(SIZE)
        src, data = _disk(tmp_path)
        with _nbdio.QemuNbdServer(src, fmt='raw', workdir=str(tmp_path)) as reader:
            _nbdio.Transfer(reader.export(), SIZE, hashmap, writer.export()).run([], _nbdio.select_all)
    assert qcow2_content(dst, tmp_path) == data
    assert sorted(os.listdir(str(tmp_path))) == ['src.raw', 'w.qcow2']     # no private directory left
