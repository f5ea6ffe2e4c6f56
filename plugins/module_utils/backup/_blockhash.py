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


class BlockHashMap:
    """Digests of every block of one disk, held in one bytearray (32 bytes a block)."""

    def __init__(self, size, block_size=DEFAULT_BLOCK_SIZE, data=None):
        if block_size <= 0 or block_size % 512:
            raise BlockHashError('block size %d is not a positive multiple of 512' % block_size)
        self.size = size
        self.block_size = block_size
        self.blocks = (size + block_size - 1) // block_size
        if data is None:
            data = self._zero_map()
        if len(data) != self.blocks * DIGEST_SIZE:
            raise BlockHashError('hash map holds %d bytes, a %d-byte disk in %d-byte blocks needs %d' % (
                len(data), size, block_size, self.blocks * DIGEST_SIZE))
        self.data = bytearray(data)

    def _zero_map(self):
        if not self.blocks:
            return bytearray()
        full = zero_digest(self.block_size)
        data = bytearray(full * self.blocks)
        last = self.block_length(self.blocks - 1)
        if last != self.block_size:
            data[-DIGEST_SIZE:] = zero_digest(last)
        return data

    def block_length(self, index):
        return min(self.block_size, self.size - index * self.block_size)

    def set_zero(self, start, end):
        """Blocks covering [start, end) hold zeroes; start and end are block aligned (or end = size)."""
        for index in range(start // self.block_size, (end + self.block_size - 1) // self.block_size):
            self.data[index * DIGEST_SIZE:(index + 1) * DIGEST_SIZE] = zero_digest(self.block_length(index))

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

    def digest(self):
        """One digest for the whole disk: SHA-256 of the map."""
        return hashlib.sha256(bytes(self.data)).hexdigest()

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
        return BlockHashMap(self.size, self.block_size, self.data)

    def save(self, path):
        """Write the map gzip-compressed (mode 0600); returns the digest of the raw map."""
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, 'wb') as raw:
            # mtime=0: the same map always gives the same file.
            with gzip.GzipFile(fileobj=raw, mode='wb', mtime=0) as out:
                out.write(self.data)
            raw.flush()
            os.fsync(raw.fileno())
        return self.digest()

    @classmethod
    def load(cls, path, size, block_size, expected_digest=None):
        try:
            with gzip.open(path, 'rb') as src:
                data = src.read()
        except (OSError, EOFError) as exc:
            raise BlockHashError('cannot read hash map %s: %s' % (path, exc))
        result = cls(size, block_size, data)
        if expected_digest and result.digest() != expected_digest:
            raise BlockHashError('hash map %s does not match the digest its manifest records' % path)
        return result
