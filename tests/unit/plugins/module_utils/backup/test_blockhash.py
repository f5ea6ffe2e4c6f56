# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Block hash maps: the integrity data must describe exactly the bytes of the disk."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import gzip
import hashlib

import pytest

from ansible_collections.virtops.libvirt.plugins.module_utils.backup import _blockhash as bh

BS = 65536


def reference_map(data, block=BS):
    """What docs/repository-format.md tells a user to compute with hashlib alone."""
    return b''.join(hashlib.sha256(data[i:i + block]).digest() for i in range(0, len(data), block))


def test_new_map_describes_a_disk_of_zeroes_including_a_short_last_block():
    size = 3 * BS + 1000
    m = bh.BlockHashMap(size)
    assert m.blocks == 4
    assert bytes(m.data) == reference_map(bytes(size))


def test_update_hashes_each_block_and_matches_the_documented_algorithm():
    data = bytearray(4 * BS)
    data[BS:2 * BS] = b'\xab' * BS
    data[3 * BS + 7] = 1
    m = bh.BlockHashMap(len(data))
    m.update(0, bytes(data))
    assert bytes(m.data) == reference_map(bytes(data))


def test_incremental_update_changes_only_the_blocks_written():
    data = bytearray(8 * BS)
    m = bh.BlockHashMap(len(data))
    m.update(0, bytes(data))
    before = m.copy()
    data[2 * BS:3 * BS] = b'\x11' * BS
    m.update(2 * BS, bytes(data[2 * BS:3 * BS]))
    assert m.first_difference(before) == 2 * BS
    assert bytes(m.data) == reference_map(bytes(data))


def test_set_zero_restores_zero_digests():
    m = bh.BlockHashMap(4 * BS)
    m.update(0, b'\x01' * (4 * BS))
    m.set_zero(BS, 3 * BS)
    assert bytes(m.data) == reference_map(b'\x01' * BS + bytes(2 * BS) + b'\x01' * BS)


def test_unaligned_update_is_refused():
    m = bh.BlockHashMap(4 * BS)
    with pytest.raises(bh.BlockHashError):
        m.update(512, b'x' * 512)


def test_save_and_load_round_trip_and_detect_tampering(tmp_path):
    m = bh.BlockHashMap(5 * BS + 512)
    m.update(BS, b'\x42' * BS)
    path = str(tmp_path / 'vda.blockhash.gz')
    digest = m.save(path)
    assert digest == hashlib.sha256(gzip.open(path).read()).hexdigest()
    loaded = bh.BlockHashMap.load(path, m.size, BS, digest)
    assert loaded.first_difference(m) is None
    with pytest.raises(bh.BlockHashError):
        bh.BlockHashMap.load(path, m.size, BS, '0' * 64)
    with pytest.raises(bh.BlockHashError):
        bh.BlockHashMap.load(path, m.size + BS, BS)


def test_truncated_map_file_is_an_error(tmp_path):
    m = bh.BlockHashMap(4 * BS)
    path = tmp_path / 'm.gz'
    m.save(str(path))
    path.write_bytes(path.read_bytes()[:20])
    with pytest.raises(bh.BlockHashError):
        bh.BlockHashMap.load(str(path), 4 * BS, BS)


def test_set_zero_up_to_a_short_last_block():
    size = 3 * BS + 100
    data = b'\x07' * size
    m = bh.BlockHashMap(size)
    m.update(0, data)
    m.set_zero(BS, size)
    assert bytes(m.data) == reference_map(data[:BS] + bytes(size - BS))


@pytest.mark.parametrize('size, block', [
    (1 << 30, BS),                      # 1 GiB: the bitmap granularity
    (32 << 30, BS),                     # 32 GiB: exactly the largest map at 64 KiB
    ((32 << 30) + 1, 2 * BS),
    (1 << 40, 2 << 20),                 # 1 TiB: 2 MiB blocks
])
def test_block_size_keeps_every_map_within_16_mib(size, block):
    assert bh.choose_block_size(size) == block
    assert (size + block - 1) // block * bh.DIGEST_SIZE <= 16 << 20


def test_changed_ranges_are_what_a_compared_disk_writes():
    """A disk without a bitmap is read in full; only blocks whose digest changed are written."""
    from ansible_collections.virtops.libvirt.plugins.module_utils.backup._blockhash import BlockHashMap
    block = 64 * 1024
    size = 10 * block + 512           # a short last block
    parent = BlockHashMap(size, block)
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
