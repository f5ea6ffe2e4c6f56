# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Private to the virtops.libvirt collection: may change without notice.
"""Per-block hash maps: the integrity data of every backed-up disk.

A map holds the digest of every block (64 KiB by default) of a disk at the moment a backup
started; the last block may be shorter. An incremental copies its parent's map and re-hashes
only the blocks it wrote, so integrity data never needs the whole disk to be read. On disk a
map is the concatenation of the raw digests, gzip-compressed, one gzip member per MAP_SEGMENT bytes.

The algorithm belongs to a chain: XXH3-128 (16-byte digests, repository format 2, over 10 GB/s
on one core) for chains started by this version, SHA-256 (32 bytes, format 1) for older ones,
which incrementals continue. Both detect accidental corruption; neither is tamper evidence, as
whoever can change an image can rewrite its map and manifest too (docs/repository-format.md).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import os
import threading
import zlib

from ansible_collections.virtops.libvirt.plugins.module_utils._errors import VirtError

XXHASH_IMPORT_ERROR = None
try:
    import xxhash
except ImportError:  # pragma: no cover - reported when a chain needs it
    xxhash = None
    import traceback
    XXHASH_IMPORT_ERROR = traceback.format_exc()

SHA256 = 'sha256'
XXH3_128 = 'xxh3-128'
# algorithm -> digest size in bytes
DIGEST_SIZES = {SHA256: 32, XXH3_128: 16}
ALGORITHM = XXH3_128            # what new chains use
DEFAULT_BLOCK_SIZE = 64 * 1024
# A map is saved as one gzip member per MAP_SEGMENT bytes of digests (64 MiB of disk in 64 KiB
# blocks with XXH3-128). An incremental's map is its parent's with a few blocks changed: the members
# of segments that did not change are copied from the parent's file as they are, and only the
# others are compressed again (on a 16 GiB disk, 18 ms of compression per backup otherwise).
MAP_SEGMENT = 16 * 1024
_FEED = 64 * 1024               # compressed bytes handed to zlib at a time when a map is read


class BlockHashError(VirtError):
    pass


def _sha256(data):
    return hashlib.sha256(data).digest()


def hash_function(algorithm):
    """bytes-like -> raw digest, for a known algorithm; BlockHashError when it cannot be used here."""
    if algorithm == SHA256:
        return _sha256
    if algorithm == XXH3_128:
        if xxhash is None:
            raise BlockHashError('the XXH3-128 block hash needs the xxhash Python module (Debian/Ubuntu: '
                                 'python3-xxhash, RHEL: python3-xxhash from EPEL, or pip install xxhash)')
        return xxhash.xxh3_128_digest
    raise BlockHashError('block hash algorithm %r is not one this collection knows (%s)'
                         % (algorithm, ', '.join(sorted(DIGEST_SIZES))))


def zero_digest(length, algorithm=SHA256, _cache={}):  # pylint: disable=dangerous-default-value
    """Digest of a block of zeroes of the given length (cached: most disks are mostly empty)."""
    digest = _cache.get((algorithm, length))
    if digest is None:
        digest = hash_function(algorithm)(bytes(length))
        _cache[(algorithm, length)] = digest
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
    """Digests of every block of one disk, held in one bytearray (digest_size bytes a block)."""

    def __init__(self, size, block_size=None, data=None, algorithm=ALGORITHM):
        block_size = block_size or choose_block_size(size)
        if block_size <= 0 or block_size % 512:
            raise BlockHashError('block size %d is not a positive multiple of 512' % block_size)
        self._hash = hash_function(algorithm)
        self.algorithm = algorithm
        self.digest_size = DIGEST_SIZES[algorithm]
        self.size = size
        self.block_size = block_size
        self.blocks = (size + block_size - 1) // block_size
        if data is None:
            data = self._zero_map()
        elif not isinstance(data, bytearray):
            data = bytearray(data)
        if len(data) != self.blocks * self.digest_size:
            raise BlockHashError('hash map holds %d bytes, a %d-byte disk in %d-byte blocks needs %d' % (
                len(data), size, block_size, self.blocks * self.digest_size))
        self.data = data
        self._origin = None     # the file it was loaded from (_Origin), for save()

    def _zero_map(self):
        if not self.blocks:
            return bytearray()
        data = bytearray(zero_digest(self.block_size, self.algorithm)) * self.blocks
        last = self.block_length(self.blocks - 1)
        if last != self.block_size:
            data[-self.digest_size:] = zero_digest(last, self.algorithm)
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
        size = self.digest_size
        if full_stop > first:
            self.data[first * size:full_stop * size] = \
                bytearray(zero_digest(self.block_size, self.algorithm)) * (full_stop - first)
        if full_stop < stop:
            self.data[full_stop * size:stop * size] = zero_digest(self.block_length(full_stop), self.algorithm)

    def zero_bytes(self, start, end):
        """Bytes of [start, end) (block aligned, or end = size) in blocks whose digest is that of zeroes."""
        size, total = self.digest_size, 0
        whole = zero_digest(self.block_size, self.algorithm)
        view = memoryview(self.data)
        for index in range(start // self.block_size, min(self.blocks, (end + self.block_size - 1) // self.block_size)):
            length = self.block_length(index)
            if view[index * size:(index + 1) * size] == (
                    whole if length == self.block_size else zero_digest(length, self.algorithm)):
                total += length
        return total

    def update(self, offset, buf):
        """Hash buf, read at offset (block aligned; its length a multiple of the block size or up to the end)."""
        if offset % self.block_size:
            raise BlockHashError('offset %d is not aligned to the %d-byte hash block' % (offset, self.block_size))
        view = memoryview(buf)
        index = offset // self.block_size
        size, block, data, digest = self.digest_size, self.block_size, self.data, self._hash
        pos = 0
        while pos < len(view):
            length = self.block_length(index)
            data[index * size:(index + 1) * size] = digest(view[pos:pos + length])
            pos += length
            index += 1

    def update_changed(self, offset, buf):
        """update(), and the [start, end) byte ranges whose digest changed (adjacent ones merged):
        what a disk without a bitmap must write into its incremental."""
        first = offset // self.block_size
        count = (len(buf) + self.block_size - 1) // self.block_size
        before = bytes(self.data[first * self.digest_size:(first + count) * self.digest_size])
        self.update(offset, buf)
        return self._changed(first, count, before)

    def set_zero_changed(self, start, end):
        """set_zero(), and the byte ranges whose digest changed (blocks that were not zero before)."""
        first = start // self.block_size
        stop = min(self.blocks, (end + self.block_size - 1) // self.block_size)
        before = bytes(self.data[first * self.digest_size:stop * self.digest_size])
        self.set_zero(start, end)
        return self._changed(first, stop - first, before)

    def _changed(self, first, count, before):
        ranges = []
        size = self.digest_size
        after = memoryview(self.data)
        for i in range(count):
            pos = i * size
            index = first + i
            if before[pos:pos + size] != after[index * size:(index + 1) * size]:
                start = index * self.block_size
                end = start + self.block_length(index)
                if ranges and ranges[-1][1] == start:
                    ranges[-1] = (ranges[-1][0], end)
                else:
                    ranges.append((start, end))
        return ranges

    def digest(self):
        """One digest for the whole disk: SHA-256 of the map (whatever the block hash; the map is
        small, at most 16 MiB)."""
        return hashlib.sha256(self.data).hexdigest()

    def first_difference(self, other):
        """Offset of the first block whose digest differs from other's, or None."""
        if self.size != other.size or self.block_size != other.block_size or self.algorithm != other.algorithm:
            return 0
        if self.data == other.data:
            return None
        size = self.digest_size
        mine, theirs = memoryview(self.data), memoryview(other.data)
        for index in range(self.blocks):
            a = mine[index * size:(index + 1) * size]
            if a != theirs[index * size:(index + 1) * size]:
                return index * self.block_size
        return None

    def copy(self):
        return BlockHashMap(self.size, self.block_size, bytearray(self.data), self.algorithm)

    def save(self, path):
        """Write the map as gzip members of MAP_SEGMENT bytes (mode 0600); returns the digest of the raw map."""
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, 'wb') as out:
            for member in self._members():
                out.write(member)
            out.flush()
            os.fsync(out.fileno())
        return self.digest()

    def _members(self):
        origin = self._origin
        view = memoryview(self.data)
        for start in range(0, max(1, len(self.data)), MAP_SEGMENT):
            end = min(len(self.data), start + MAP_SEGMENT)
            kept = origin.member(start, end, self.data) if origin is not None else None
            yield kept if kept is not None else _gzip_member(view[start:end])

    @classmethod
    def load(cls, source, size, block_size, expected_digest=None, label=None, algorithm=ALGORITHM,
             keep_members=False):
        """Read a map saved by save(). source: a path, or a file descriptor (closed here).
        keep_members: the map will be changed and saved (an incremental's start): keep what save()
        needs to copy the members of unchanged segments (the file, and a copy of the map).

        The map comes from a repository, which is untrusted: at most the bytes a map of this disk
        can hold are decompressed (a small gzip of a huge stream is refused early, without memory).
        """
        label = label or (source if isinstance(source, str) else 'hash map')
        if size <= 0 or block_size <= 0 or block_size % 512:
            raise BlockHashError('hash map %s: disk size %r and block size %r are not usable' % (label, size, block_size))
        if algorithm not in DIGEST_SIZES:
            raise BlockHashError('hash map %s: block hash algorithm %r is unknown' % (label, algorithm))
        expected = ((size + block_size - 1) // block_size) * DIGEST_SIZES[algorithm]
        # What a gzip of that many bytes can take at most: deflate's stored blocks add 5 bytes per
        # 64 KiB, and a header of any sane length.
        limit = expected + expected // 1024 + 65536
        try:
            raw = os.fdopen(source, 'rb') if isinstance(source, int) else open(source, 'rb')
            with raw:
                packed = raw.read(limit + 1)
        except OSError as exc:
            raise BlockHashError('cannot read hash map %s: %s' % (label, exc))
        if len(packed) > limit:
            raise BlockHashError('hash map %s is larger than a map of a %d-byte disk in %d-byte blocks can be'
                                 % (label, size, block_size))
        data, members = _gunzip(packed, expected + 1, label)
        if len(data) > expected:
            raise BlockHashError('hash map %s holds more than the %d bytes a %d-byte disk in %d-byte blocks needs'
                                 % (label, expected, size, block_size))
        result = cls(size, block_size, data, algorithm)
        if expected_digest and result.digest() != expected_digest:
            raise BlockHashError('hash map %s does not match the digest its manifest records' % label)
        if keep_members:
            result._origin = _Origin.of(data, packed, members)
        return result


def _gzip_member(raw):
    """raw as one gzip member: no name, mtime 0 (the same map always gives the same bytes), level 1
    (a map is mostly repeated digests of zeroes, which compress well at any level)."""
    deflate = zlib.compressobj(1, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    return deflate.compress(raw) + deflate.flush()


_MEMBER_HEADER = _gzip_member(b'')[:10]


class _Origin:
    """The gzip members a map was read from, kept so that save() copies those of unchanged segments.

    Only members this module writes (its own 10-byte header, so no name, comment or extra field)
    that hold exactly one segment qualify; zlib checked each one's CRC and length as it read it, and
    a member is copied only while its segment still holds the bytes it decompressed to.
    """

    def __init__(self, raw, packed, members):
        self.raw = raw
        self.packed = packed
        self.members = members      # {raw start: (raw end, packed start, packed end)}

    @classmethod
    def of(cls, data, packed, members):
        reusable = dict((rs, (re, ps, pe)) for rs, re, ps, pe in members
                        if rs % MAP_SEGMENT == 0 and re == min(len(data), rs + MAP_SEGMENT) and re > rs
                        and packed[ps:ps + len(_MEMBER_HEADER)] == _MEMBER_HEADER)
        return cls(bytes(data), packed, reusable) if reusable else None

    def member(self, start, end, data):
        found = self.members.get(start)
        if found is None or found[0] != end or data[start:end] != self.raw[start:end]:
            return None
        return self.packed[found[1]:found[2]]


def _gunzip(packed, most, label):
    """The bytes of a gzip file held in packed (one member or several, as gzip allows), at most
    most of them: decompression stops there, whatever the file claims (a small gzip of a huge
    stream costs no memory). zlib checks each member's CRC and length. Returns (data, members):
    members lists (raw start, raw end, packed start, packed end) of each member read whole."""
    view = memoryview(packed)
    data = bytearray()
    members = []
    pos = 0
    try:
        while True:
            inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)      # a gzip header, not zlib's
            start, raw_start = pos, len(data)
            while not inflater.eof:
                # Fed in pieces: what zlib keeps past a member's end (unused_data) stays small.
                piece = view[pos:pos + _FEED]
                if not piece:
                    raise BlockHashError('cannot read hash map %s: it ends before its end-of-stream marker' % label)
                data += inflater.decompress(piece, most - len(data))
                if len(data) >= most:
                    return data, members
                pos += len(piece) - len(inflater.unused_data)
            members.append((raw_start, len(data), start, pos))
            if pos >= len(view):
                return data, members
    except zlib.error as exc:
        raise BlockHashError('cannot read hash map %s: %s' % (label, exc))


class Background:
    """fn(*args) on a thread of its own, for work that lets go of the GIL (zlib, hashlib on large
    buffers, file I/O) while the caller waits on libvirt or QEMU: an incremental of a 16 GiB disk
    loads a 4 MiB parent map (13 ms) and saves its own (18 ms of compression) that way, off its
    critical path. result() waits, then returns what fn returned or raises what it raised."""

    def __init__(self, fn, *args):
        self._value = self._error = None
        self._thread = threading.Thread(target=self._run, args=(fn, args), name='virtops-map', daemon=True)
        self._thread.start()

    def _run(self, fn, args):
        try:
            self._value = fn(*args)
        except BaseException as exc:  # pylint: disable=broad-except  # handed to result()
            self._error = exc

    def result(self):
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._value
