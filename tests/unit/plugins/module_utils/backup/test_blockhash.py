# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Block hash maps: the integrity data must describe exactly the bytes of the disk."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import gzip
import hashlib
import os

import pytest
import xxhash

from ansible_collections.virtops.libvirt.plugins.module_utils.backup import _blockhash as bh

BS = 65536
ALGORITHMS = pytest.mark.parametrize('algorithm', [bh.XXH3_128, bh.SHA256])


def reference_map(data, block=BS, algorithm=bh.SHA256):
    """What docs/repository-format.md tells a user to compute with hashlib or xxhash alone."""
    digest = (lambda b: hashlib.sha256(b).digest()) if algorithm == bh.SHA256 else xxhash.xxh3_128_digest
    return b''.join(digest(data[i:i + block]) for i in range(0, len(data), block))


def test_new_chains_hash_with_xxh3_128_in_16_byte_digests():
    assert bh.ALGORITHM == bh.XXH3_128
    m = bh.BlockHashMap(4 * BS)
    assert m.algorithm == bh.XXH3_128 and m.digest_size == 16 and len(m.data) == 4 * 16
    # The documented definition: the XXH3 128-bit hash with seed 0, its canonical (big-endian) bytes.
    assert bh.hash_function(bh.XXH3_128)(b'abc') == xxhash.xxh3_128(b'abc', seed=0).digest()


def test_an_unknown_algorithm_is_refused():
    with pytest.raises(bh.BlockHashError, match='not one this collection knows'):
        bh.BlockHashMap(4 * BS, algorithm='md5')
    with pytest.raises(bh.BlockHashError, match='unknown'):
        bh.BlockHashMap.load('/nonexistent', 4 * BS, BS, algorithm='crc32')


def test_xxh3_without_the_module_names_the_package(monkeypatch):
    monkeypatch.setattr(bh, 'xxhash', None)
    with pytest.raises(bh.BlockHashError, match='python3-xxhash'):
        bh.BlockHashMap(4 * BS, algorithm=bh.XXH3_128)
    assert len(bh.BlockHashMap(4 * BS, algorithm=bh.SHA256).data) == 4 * 32


@ALGORITHMS
def test_new_map_describes_a_disk_of_zeroes_including_a_short_last_block(algorithm):
    size = 3 * BS + 1000
    m = bh.BlockHashMap(size, algorithm=algorithm)
    assert m.blocks == 4
    assert bytes(m.data) == reference_map(bytes(size), algorithm=algorithm)


@ALGORITHMS
def test_update_hashes_each_block_and_matches_the_documented_algorithm(algorithm):
    data = bytearray(4 * BS)
    data[BS:2 * BS] = b'\xab' * BS
    data[3 * BS + 7] = 1
    m = bh.BlockHashMap(len(data), algorithm=algorithm)
    m.update(0, bytes(data))
    assert bytes(m.data) == reference_map(bytes(data), algorithm=algorithm)


@ALGORITHMS
def test_incremental_update_changes_only_the_blocks_written(algorithm):
    data = bytearray(8 * BS)
    m = bh.BlockHashMap(len(data), algorithm=algorithm)
    m.update(0, bytes(data))
    before = m.copy()
    assert before.algorithm == algorithm
    data[2 * BS:3 * BS] = b'\x11' * BS
    m.update(2 * BS, bytes(data[2 * BS:3 * BS]))
    assert m.first_difference(before) == 2 * BS
    assert bytes(m.data) == reference_map(bytes(data), algorithm=algorithm)


def test_maps_of_different_algorithms_never_compare_equal():
    a = bh.BlockHashMap(4 * BS, algorithm=bh.SHA256)
    b = bh.BlockHashMap(4 * BS, algorithm=bh.XXH3_128)
    assert a.first_difference(b) == 0


@ALGORITHMS
def test_set_zero_restores_zero_digests(algorithm):
    m = bh.BlockHashMap(4 * BS, algorithm=algorithm)
    m.update(0, b'\x01' * (4 * BS))
    m.set_zero(BS, 3 * BS)
    assert bytes(m.data) == reference_map(b'\x01' * BS + bytes(2 * BS) + b'\x01' * BS, algorithm=algorithm)


def test_unaligned_update_is_refused():
    m = bh.BlockHashMap(4 * BS)
    with pytest.raises(bh.BlockHashError):
        m.update(512, b'x' * 512)


@ALGORITHMS
def test_save_and_load_round_trip_and_detect_tampering(tmp_path, algorithm):
    m = bh.BlockHashMap(5 * BS + 512, algorithm=algorithm)
    m.update(BS, b'\x42' * BS)
    path = str(tmp_path / 'vda.blockhash.gz')
    digest = m.save(path)
    assert digest == hashlib.sha256(gzip.open(path).read()).hexdigest()
    loaded = bh.BlockHashMap.load(path, m.size, BS, digest, algorithm=algorithm)
    assert loaded.first_difference(m) is None and loaded.algorithm == algorithm
    with pytest.raises(bh.BlockHashError):
        bh.BlockHashMap.load(path, m.size, BS, '0' * 64, algorithm=algorithm)
    with pytest.raises(bh.BlockHashError):
        bh.BlockHashMap.load(path, m.size + BS, BS, algorithm=algorithm)
    # A map read as the other algorithm has the wrong length for the disk: refused.
    other = bh.SHA256 if algorithm == bh.XXH3_128 else bh.XXH3_128
    with pytest.raises(bh.BlockHashError):
        bh.BlockHashMap.load(path, m.size, BS, algorithm=other)


def test_a_map_saved_on_a_thread_is_on_disk_with_its_digest_after_result_and_its_failure_is_raised_there(tmp_path):
    m = bh.BlockHashMap(64 * BS)
    m.update(3 * BS, b'\x17' * BS)
    path = str(tmp_path / 'vda.blockhash.gz')
    assert bh.Background(m.save, path).result() == m.digest()
    assert bh.BlockHashMap.load(path, m.size, BS, m.digest()).first_difference(m) is None
    writer = bh.Background(m.save, str(tmp_path / 'gone' / 'vda.blockhash.gz'))
    with pytest.raises(OSError):
        writer.result()
    # A load on a thread raises its failure in result() too: here, a map that is not the manifest's.
    loading = bh.Background(bh.BlockHashMap.load, path, m.size, BS, '0' * 64)
    with pytest.raises(bh.BlockHashError, match='does not match the digest'):
        loading.result()


def test_a_map_in_several_gzip_members_reads_as_one_and_what_is_not_gzip_is_refused(tmp_path):
    m = bh.BlockHashMap(8 * BS)
    m.update(2 * BS, b'\x01' * BS)
    raw = bytes(m.data)
    path = tmp_path / 'm.gz'
    path.write_bytes(gzip.compress(raw[:40]) + gzip.compress(raw[40:]))      # what `cat a.gz b.gz` gives
    assert bh.BlockHashMap.load(str(path), 8 * BS, BS).data == m.data
    path.write_bytes(gzip.compress(raw) + b'not gzip')
    with pytest.raises(bh.BlockHashError):
        bh.BlockHashMap.load(str(path), 8 * BS, BS)
    # A small file that inflates to 64 MiB: refused after the first bytes too many.
    path.write_bytes(gzip.compress(bytes(64 << 20)))
    with pytest.raises(bh.BlockHashError, match='holds more than'):
        bh.BlockHashMap.load(str(path), 8 * BS, BS)
    # Larger on disk than any gzip of such a map can be: refused before it is decompressed.
    path.write_bytes(gzip.compress(raw, compresslevel=0) + os.urandom(70000))
    with pytest.raises(bh.BlockHashError, match='larger than a map'):
        bh.BlockHashMap.load(str(path), 8 * BS, BS)


def test_truncated_map_file_is_an_error(tmp_path):
    m = bh.BlockHashMap(4 * BS)
    path = tmp_path / 'm.gz'
    m.save(str(path))
    path.write_bytes(path.read_bytes()[:20])
    with pytest.raises(bh.BlockHashError):
        bh.BlockHashMap.load(str(path), 4 * BS, BS)


@ALGORITHMS
def test_set_zero_up_to_a_short_last_block(algorithm):
    size = 3 * BS + 100
    data = b'\x07' * size
    m = bh.BlockHashMap(size, algorithm=algorithm)
    m.update(0, data)
    m.set_zero(BS, size)
    assert bytes(m.data) == reference_map(data[:BS] + bytes(size - BS), algorithm=algorithm)


@pytest.mark.parametrize('size, block', [
    (1 << 30, BS),                      # 1 GiB: the bitmap granularity
    (32 << 30, BS),                     # 32 GiB: exactly the largest map at 64 KiB
    ((32 << 30) + 1, 2 * BS),
    (1 << 40, 2 << 20),                 # 1 TiB: 2 MiB blocks
])
def test_block_size_keeps_every_map_within_16_mib(size, block):
    assert bh.choose_block_size(size) == block
    assert (size + block - 1) // block * max(bh.DIGEST_SIZES.values()) <= 16 << 20


@ALGORITHMS
def test_changed_ranges_are_what_a_compared_disk_writes(algorithm):
    """A disk without a bitmap is read in full; only blocks whose digest changed are written."""
    from ansible_collections.virtops.libvirt.plugins.module_utils.backup._blockhash import BlockHashMap
    block = 64 * 1024
    size = 10 * block + 512           # a short last block
    parent = BlockHashMap(size, block, algorithm=algorithm)
    data = bytearray(size)
    data[block:3 * block] = b'\x11' * (2 * block)
    data[-100:] = b'\x22' * 100
    parent.update(0, bytes(data))
    child = parent.copy()
    same = child.update_changed(0, bytes(data))
    assert same == [] and child.data == parent.data
    data[2 * block + 7] = 0x33                          # one byte in block 2
    data[4 * block:6 * block] = b'\x44' * (2 * block)   # blocks 4 and 5, adjacent: one range
    assert child.update_changed(0, bytes(data)) == [(2 * block, 3 * block), (4 * block, 6 * block)]
    # Zeroes over blocks that held data are a change; over blocks that were zero already, none.
    assert child.set_zero_changed(6 * block, 10 * block) == []
    assert child.set_zero_changed(block, 3 * block) == [(block, 3 * block)]
    assert child.set_zero_changed(10 * block, size) == [(10 * block, size)]


def _members(path):
    packed = path.read_bytes()
    data, members = bh._gunzip(packed, 1 << 30, str(path))
    return data, [packed[ps:pe] for _rs, _re, ps, pe in members]


@ALGORITHMS
def test_a_map_is_saved_in_segments_and_an_incremental_copies_the_members_of_the_segments_it_did_not_change(
        tmp_path, algorithm):
    blocks = 3 * bh.MAP_SEGMENT // bh.DIGEST_SIZES[algorithm] + 5     # three whole segments and a short one
    size = blocks * BS
    parent = bh.BlockHashMap(size, BS, algorithm=algorithm)
    for index in range(0, blocks, 7):
        parent.update(index * BS, os.urandom(BS))
    first = tmp_path / 'parent.blockhash.gz'
    parent.save(str(first))
    raw, members = _members(first)
    assert raw == parent.data and len(members) == 4
    assert gzip.decompress(first.read_bytes()) == parent.data      # what gzip itself reads

    # Only a map that will be saved again keeps its file and a copy of itself in memory.
    assert bh.BlockHashMap.load(str(first), size, BS, parent.digest(), algorithm=algorithm)._origin is None
    loaded = bh.BlockHashMap.load(str(first), size, BS, parent.digest(), algorithm=algorithm, keep_members=True)
    second_segment = bh.MAP_SEGMENT // bh.DIGEST_SIZES[algorithm]
    loaded.update((second_segment + 3) * BS, b'\x42' * BS)         # one block in the second segment
    second = tmp_path / 'child.blockhash.gz'
    assert loaded.save(str(second)) == loaded.digest()
    raw2, members2 = _members(second)
    assert raw2 == loaded.data and raw2 != raw
    assert [a == b for a, b in zip(members, members2)] == [True, False, True, True]
    assert bh.BlockHashMap.load(str(second), size, BS, loaded.digest(), algorithm=algorithm).data == loaded.data
    # A block changed back and forth is compared, not tracked: its member is written again only if
    # the bytes differ.
    again = bh.BlockHashMap.load(str(second), size, BS, algorithm=algorithm, keep_members=True)
    again.data[:] = loaded.data
    third = tmp_path / 'third.blockhash.gz'
    again.save(str(third))
    assert third.read_bytes() == second.read_bytes()


def test_members_written_by_another_tool_are_not_copied_and_an_incompressible_map_still_loads(tmp_path):
    m = bh.BlockHashMap(bh.MAX_BLOCKS * BS)
    m.data[:] = os.urandom(len(m.data))                 # the worst case: nothing compresses
    path = tmp_path / 'vda.blockhash.gz'
    m.save(str(path))
    assert bh.BlockHashMap.load(str(path), m.size, BS, m.digest()).data == m.data
    # One member with a file name in its header (gzip's own tool writes one): its bytes hold more
    # than digests, so a save writes every segment anew.
    with open(str(path), 'wb') as raw, gzip.GzipFile(filename='name', fileobj=raw, mode='wb', mtime=0) as out:
        out.write(bytes(m.data[:bh.MAP_SEGMENT]))
    small = bh.BlockHashMap.load(str(path), bh.MAP_SEGMENT // 16 * BS, BS, keep_members=True)
    resaved = tmp_path / 'resaved.gz'
    small.save(str(resaved))
    assert b'name' not in resaved.read_bytes() and gzip.decompress(resaved.read_bytes()) == small.data
