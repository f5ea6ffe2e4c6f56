# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Private to the virtops.libvirt collection: may change without notice.
"""Per-block hash maps: the integrity data of every backed-up disk.

A map holds the SHA-256 digest of every block (64 KiB by default) of a disk at the moment a
backup started; the last block may be shorter. An incremental copies its parent's map and
re-hashes only the blocks it wrote, so integrity data never needs the whole disk to be read.
On disk a map is the concatenation of the raw 32-byte digests, gzip-compressed.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import gzip
import hashlib
import os

ALGORITHM = 'sha256'
DIGEST_SIZE = 32
DEFAULT_BLOCK_SIZE = 64 * 1024


class BlockHashError(Exception):
    pass


def zero_digest(length, _cache={}):  # pylint: disable=dangerous-default-value
    """Digest of a block of zeroes of the given length (cached: most disks are mostly empty)."""
    digest = _cache.get(length)
    if digest is None:
        digest = hashlib.sha256(bytes(length)).digest()
        _cache[length] = digest
    return digest


MAX_BLOCKS = 1 << 19   # a map never exceeds 16 MiB, whatever the disk size


def choose_block_size(size):
    """64 KiB blocks (the bitmap granularity), doubled until the map stays within MAX_BLOCKS.

    Memory then stays bounded for any disk (a 1 TiB disk gets 2 MiB blocks and a 16 MiB map);
    an incremental re-reads whole blocks around what changed, a small cost on such disks.
    """
    block = DEFAULT_BLOCK_SIZE
    while (size + block - 1) // block > MAX_BLOCKS:
        block *= 2
    return block


class BlockHashMap:
    """Digests of every block of one disk, held in one bytearray (32 bytes a block)."""

    def __init__(self, size, block_size=None, data=None):
        block_size = block_size or choose_block_size(size)
        if block_size <= 0 or block_size % 512:
            raise BlockHashError('block size %d is not a positive multiple of 512' % block_size)
        self.size = size
        self.block_size = block_size
        self.blocks = (size + block_size - 1) // block_size
        if data is None:
            data = self._zero_map()
        elif not isinstance(data, bytearray):
            data = bytearray(data)
        if len(data) != self.blocks * DIGEST_SIZE:
            raise BlockHashError('hash map holds %d bytes, a %d-byte disk in %d-byte blocks needs %d' % (
                len(data), size, block_size, self.blocks * DIGEST_SIZE))
        self.data = data

    def _zero_map(self):
        if not self.blocks:
            return bytearray()
        data = bytearray(zero_digest(self.block_size)) * self.blocks
        last = self.block_length(self.blocks - 1)
        if last != self.block_size:
            data[-DIGEST_SIZE:] = zero_digest(last)
        return data

    def block_length(self, index):
        return min(self.block_size, self.size - index * self.block_size)

    def set_zero(self, start, end):
        """Blocks covering [start, end) hold zeroes; start and end are block aligned (or end = size)."""
        first = start // self.block_size
        stop = min(self.blocks, (end + self.block_size - 1) // self.block_size)
        if stop <= first:
            return
        full_stop = stop if self.block_length(stop - 1) == self.block_size else stop - 1
        if full_stop > first:
            self.data[first * DIGEST_SIZE:full_stop * DIGEST_SIZE] = \
                bytearray(zero_digest(self.block_size)) * (full_stop - first)
        if full_stop < stop:
            self.data[full_stop * DIGEST_SIZE:stop * DIGEST_SIZE] = zero_digest(self.block_length(full_stop))

    def update(self, offset, buf):
        """Hash buf, read at offset (block aligned; its length a multiple of the block size or up to the end)."""
        if offset % self.block_size:
            raise BlockHashError('offset %d is not aligned to the %d-byte hash block' % (offset, self.block_size))
        view = memoryview(buf)
        index = offset // self.block_size
        pos = 0
        while pos < len(view):
            length = self.block_length(index)
            digest = hashlib.sha256(view[pos:pos + length]).digest()
            self.data[index * DIGEST_SIZE:(index + 1) * DIGEST_SIZE] = digest
            pos += length
            index += 1

    def update_changed(self, offset, buf):
        """update(), and the [start, end) byte ranges whose digest changed (adjacent ones merged):
        what a disk without a bitmap must write into its incremental."""
        first = offset // self.block_size
        count = (len(buf) + self.block_size - 1) // self.block_size
        before = bytes(self.data[first * DIGEST_SIZE:(first + count) * DIGEST_SIZE])
        self.update(offset, buf)
        return self._changed(first, count, before)

    def set_zero_changed(self, start, end):
        """set_zero(), and the byte ranges whose digest changed (blocks that were not zero before)."""
        first = start // self.block_size
        stop = min(self.blocks, (end + self.block_size - 1) // self.block_size)
        before = bytes(self.data[first * DIGEST_SIZE:stop * DIGEST_SIZE])
        self.set_zero(start, end)
        return self._changed(first, stop - first, before)

    def _changed(self, first, count, before):
        ranges = []
        after = memoryview(self.data)
        for i in range(count):
            pos = i * DIGEST_SIZE
            index = first + i
            if before[pos:pos + DIGEST_SIZE] != after[index * DIGEST_SIZE:(index + 1) * DIGEST_SIZE]:
                start = index * self.block_size
                end = start + self.block_length(index)
                if ranges and ranges[-1][1] == start:
                    ranges[-1] = (ranges[-1][0], end)
                else:
                    ranges.append((start, end))
        return ranges

    def digest(self):
        """One digest for the whole disk: SHA-256 of the map."""
        return hashlib.sha256(self.data).hexdigest()

    def first_difference(self, other):
        """Offset of the first block whose digest differs from other's, or None."""
        if self.size != other.size or self.block_size != other.block_size:
            return 0
        if self.data == other.data:
            return None
        mine, theirs = memoryview(self.data), memoryview(other.data)
        for index in range(self.blocks):
            a = mine[index * DIGEST_SIZE:(index + 1) * DIGEST_SIZE]
            if a != theirs[index * DIGEST_SIZE:(index + 1) * DIGEST_SIZE]:
                return index * self.block_size
        return None

    def copy(self):
        return BlockHashMap(self.size, self.block_size, bytearray(self.data))

    def save(self, path):
        """Write the map gzip-compressed (mode 0600); returns the digest of the raw map."""
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, 'wb') as raw:
            # mtime=0: the same map always gives the same file. Level 1: the map is mostly
            # repeated digests of zeroes, which compress well at any level; speed matters more.
            with gzip.GzipFile(fileobj=raw, mode='wb', mtime=0, compresslevel=1) as out:
                out.write(self.data)
            raw.flush()
            os.fsync(raw.fileno())
        return self.digest()

    @classmethod
    def load(cls, source, size, block_size, expected_digest=None, label=None):
        """Read a map saved by save(). source: a path, or a file descriptor (closed here).

        The map comes from a repository, which is untrusted: at most the bytes a map of this disk
        can hold are decompressed (a small gzip of a huge stream is refused early, without memory).
        """
        label = label or (source if isinstance(source, str) else 'hash map')
        if size <= 0 or block_size <= 0 or block_size % 512:
            raise BlockHashError('hash map %s: disk size %r and block size %r are not usable' % (label, size, block_size))
        expected = ((size + block_size - 1) // block_size) * DIGEST_SIZE
        data = bytearray()
        try:
            raw = os.fdopen(source, 'rb') if isinstance(source, int) else open(source, 'rb')
            with raw, gzip.GzipFile(fileobj=raw, mode='rb') as src:
                while len(data) <= expected:
                    chunk = src.read(min(1 << 20, expected + 1 - len(data)))
                    if not chunk:
                        break
                    data += chunk
        except (OSError, EOFError) as exc:
            raise BlockHashError('cannot read hash map %s: %s' % (label, exc))
        if len(data) > expected:
            raise BlockHashError('hash map %s holds more than the %d bytes a %d-byte disk in %d-byte blocks needs'
                                 % (label, expected, size, block_size))
        result = cls(size, block_size, data)
        if expected_digest and result.digest() != expected_digest:
            raise BlockHashError('hash map %s does not match the digest its manifest records' % label)
        return result
