# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Planning which extents to copy: only dirty and allocated data is read; zeroes are never read."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.virtops.libvirt.plugins.module_utils.backup._nbdio import plan_window

BS = 65536
MiB = 1024 * 1024
DATA, ZERO = 0, 3   # base:allocation flags: 0 data, 3 hole+zero


def covered(work, kind):
    return sum(e - s for k, s, e in work if k == kind)


def test_full_backup_reads_only_allocated_data():
    alloc = [(0, MiB, DATA), (MiB, 10 * MiB, ZERO), (10 * MiB, 11 * MiB, DATA), (11 * MiB, 64 * MiB, ZERO)]
    work = plan_window(alloc, None, BS, 64 * MiB)
    assert [w for w in work if w[0] == 'data'] == [('data', 0, MiB), ('data', 10 * MiB, 11 * MiB)]
    assert covered(work, 'data') + covered(work, 'zero') == 64 * MiB


def test_incremental_reads_only_dirty_extents_widened_to_hash_blocks():
    alloc = [(0, 64 * MiB, DATA)]
    dirty = [(4096, 8192), (5 * MiB, 5 * MiB + 3 * BS)]
    work = plan_window(alloc, dirty, BS, 64 * MiB)
    assert work == [('data', 0, BS), ('data', 5 * MiB, 5 * MiB + 3 * BS)]


def test_dirty_extent_that_reads_as_zeroes_is_written_as_zeroes_not_read():
    alloc = [(0, MiB, ZERO), (MiB, 2 * MiB, DATA)]
    dirty = [(0, 2 * BS), (MiB, MiB + BS)]
    work = plan_window(alloc, dirty, BS, 2 * MiB)
    assert work == [('zero', 0, 2 * BS), ('data', MiB, MiB + BS)]


def test_block_partly_zero_is_read_whole_so_its_hash_is_right():
    # A data extent ending inside a block makes the whole block data, never a wrong "zero".
    alloc = [(0, BS + 4096, DATA), (BS + 4096, 4 * BS, ZERO)]
    work = plan_window(alloc, None, BS, 4 * BS)
    assert work == [('data', 0, 2 * BS), ('zero', 2 * BS, 4 * BS)]


def test_short_last_block_is_clamped_to_the_disk_size():
    size = 2 * BS + 512
    alloc = [(0, size, DATA)]
    work = plan_window(alloc, [(2 * BS, size)], BS, size)
    assert work == [('data', 2 * BS, size)]


def test_nothing_dirty_means_no_work():
    assert plan_window([(0, 4 * BS, DATA)], [], BS, 4 * BS) == []
