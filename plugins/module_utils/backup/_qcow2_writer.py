# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Private to the virtops.libvirt collection: may change without notice.
"""Write the data of a new backup image straight into its qcow2 file, without qemu-nbd.

A full pull backup used to spend most of its time above nbdcopy's in the qemu-nbd process that
wrote the qcow2 image (docs/benchmarks.md). This writer fills an image that `qemu-img create`
has just made (header, backing file name, compression type, refcount table, L1 table: all QEMU's)
with data clusters, written by descriptor from the transfer's buffers, and then writes the
metadata QEMU would have written: L2 tables, the L1 table and refcount blocks. With compression,
each cluster is compressed in the worker thread that wrote it (zlib and zstandard release the GIL,
so the compression runs on every core, where qemu-nbd compressed on one). It never reads an image
from a repository and never writes encrypted clusters; those stay with qemu-nbd.

The layout is the simplest a qcow2 allows: data clusters, runs of compressed clusters packed one
after the other, and L2 tables, appended in the order they are written. Every cluster of the file
is used once (refcount 1, OFLAG_COPIED set), except those holding compressed data, which count
the compressed clusters whose sectors touch them, so `qemu-img check` finds nothing to say. A
write must cover whole clusters (the transfer writes whole hash blocks, which are whole clusters)
or end at the end of the disk, so that a cluster of an overlay is never half written and half left
to its backing file.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import array
import os
import struct
import sys
import threading
import zlib

try:
    import zstandard
except ImportError:  # pragma: no cover - zstd images are then written by qemu-nbd
    zstandard = None

from ansible_collections.virtops.libvirt.plugins.module_utils.backup import _images, _nbdio

OFLAG_COPIED = 1 << 63     # L1/L2 entry: the cluster's refcount is exactly 1
OFLAG_COMPRESSED = 1 << 62  # L2 entry: a compressed cluster (offset and sector count follow)
OFLAG_ZERO = 1             # L2 entry (version 3): the cluster reads as zeroes
REFCOUNT_ORDER = 4         # 16-bit refcounts, qemu-img's default and the only width written here
COMPRESSION_TYPES = dict(zlib=0, zstd=1)     # the header's compression_type values
ZSTD_LEVEL = 3             # zstd's default level, as QEMU uses it


class Qcow2Writer:
    """A transfer destination that is a new qcow2 image (see the module docstring).

    Workers call pwrite and zero from several threads: host clusters and L2 tables are allocated
    under a lock, data and L2 entries are written outside it (different bytes of the file). finish()
    writes the L1 table and the refcounts; the caller then fsyncs the file once."""

    direct = True    # the transfer writes to it by call, not over NBD

    def __init__(self, fd, label, size, block_size, compress=None):
        """fd: the image qemu-img created (no data yet), opened read-write. NotPlain when it is not
        the plain, empty qcow2 version 3 this writer fills, or block_size is not whole clusters.
        compress: None, or the image's compression type ('zlib', 'zstd'): data clusters are then
        written as compressed clusters where that makes them smaller (NotPlain when the Python
        library for it is missing)."""
        self.fd = fd
        self.label = label
        self.size = size
        head = os.pread(fd, 4096, 0)
        (magic, version, _backing_offset, _backing_size, cluster_bits, virtual_size, crypt, l1_size, l1_offset,
         refcount_table_offset, refcount_table_clusters, snapshots, _snapshots_offset, incompatible,
         _compatible, _autoclear, refcount_order, header_length) = _images.QCOW2_HEADER.unpack_from(
             head + bytes(max(0, 104 - len(head))))
        # The compression type byte (offset 104) exists when the header is that long; zstd also sets
        # incompatible feature bit 3.
        compression_type = head[104] if header_length > 104 and len(head) > 104 else 0
        expected = (1 << 3) if compress == 'zstd' else 0
        why = None
        if magic != _images.QCOW2_MAGIC or version != 3:
            why = 'not a qcow2 image of version 3'
        elif crypt or incompatible != expected or snapshots or refcount_order != REFCOUNT_ORDER:
            why = 'encrypted, with incompatible features, snapshots or refcounts other than 16-bit'
        elif compression_type != COMPRESSION_TYPES.get(compress, 0):
            why = 'its compression type is not %s' % compress
        elif not 9 <= cluster_bits <= 21 or virtual_size != size:
            why = 'a cluster size or virtual size this writer does not expect'
        self.compress = compress
        self._local = threading.local()
        if why is None and compress == 'zstd' and zstandard is None:
            why = 'the Python zstandard module (Debian: python3-zstandard) is not installed'
        if why is None:
            self.cluster = 1 << cluster_bits
            if block_size % self.cluster:
                why = 'hash blocks of %d bytes are not whole clusters of %d' % (block_size, self.cluster)
        if why is not None:
            raise _images.NotPlain('%s: %s' % (label, why))
        self.per_l2 = self.cluster // 8
        self.l1_offset = l1_offset
        self.l1 = array.array('Q', bytes(8 * l1_size))
        if l1_size * self.per_l2 * self.cluster < size:
            raise _images.ImageError('%s: its L1 table of %d entries does not cover the disk' % (label, l1_size))
        self.refcount_table_offset = refcount_table_offset
        self.refcount_table = _images.big_endian_array(
            'Q', os.pread(fd, refcount_table_clusters * self.cluster, refcount_table_offset))
        # Every cluster qemu-img wrote is in use (header, refcount table and block, L1 table); ours
        # come after them.
        self.end = -(-os.fstat(fd).st_size // self.cluster) * self.cluster
        self.written = bytearray(-(-size // self.cluster) // 8 + 1)    # a bit per guest cluster
        self.zero_run = bytes(self.cluster)
        self.bytes_stored = 0
        self.compressed_x = 62 - (cluster_bits - 8)     # where the sector count of a compressed entry starts
        # Refcounts of host clusters that hold compressed data (0 to many compressed clusters touch
        # one), stored + 1 by host cluster index; 0: not such a cluster (refcount 1 or unused).
        # Two bytes per cluster of the file: 32 MiB for a 1 TiB file.
        self.shared = array.array('H')
        self._lock = threading.Lock()
        # Runs of data clusters skip the page cache where they can (whole pages from the transfer's
        # page-aligned buffers); tables and compressed clusters are written through fd.
        self.data_out = _nbdio.DirectWriter(fd) if self.cluster >= _nbdio.DirectWriter.ALIGN else None

    @property
    def serial_writes(self):
        """Plain writes through the page cache are only copies, which take turns best; O_DIRECT
        writes wait for the disk and compressed ones are mostly compression, both best side by
        side (see _nbdio._FileWrites)."""
        return not self.compress and not self.skips_page_cache()

    def connect(self):
        return self

    def flush(self):
        pass    # finish() completes the image; the caller fsyncs it once

    def aio_is_ready(self):
        return False

    def pwrite(self, view, offset):
        """Write guest data at offset: clusters that hold only zeroes become zero clusters (as
        qemu-nbd's detect-zeroes did); with compress, the others become compressed clusters where
        that makes them smaller, packed one after the other; the rest are appended as one run."""
        first, count = self._clusters(offset, len(view))
        cluster = self.cluster
        # Per guest cluster: None (zeroes), True (stored as it is) or its compressed bytes.
        # bytes.startswith compares at memcmp speed; a memoryview == bytes goes element by element.
        kinds = [None if self.zero_run.startswith(view[i * cluster:(i + 1) * cluster])
                 else self._compressed(view[i * cluster:(i + 1) * cluster]) if self.compress else True
                 for i in range(count)]
        plain = sum(1 for k in kinds if k is True)
        packed = [k for k in kinds if k is not None and k is not True]
        packed_length = sum(len(k) for k in packed)
        with self._lock:
            self._claim(first, count)
            host = self.end
            self.end += plain * cluster
            packed_base = self.end
            self.end += -(-packed_length // cluster) * cluster
            tables = self._tables(first, count)
            if self.data_out is not None:
                self.data_out.reserve(self.end)
        entries = []
        pos = 0           # where the next data cluster goes, relative to host
        run_start = None  # the view offset where the current run of data clusters begins
        packed_pos = packed_base
        shared = dict.fromkeys(range(packed_base // cluster, (packed_base + packed_length - 1) // cluster + 1), 0) \
            if packed_length else {}
        for i, kind in enumerate(kinds):
            if kind is not True and run_start is not None:
                self._write_run(view[run_start:i * cluster], host + pos - (i * cluster - run_start))
                run_start = None
            if kind is None:
                entries.append(OFLAG_ZERO)
            elif kind is True:
                entries.append((host + pos) | OFLAG_COPIED)
                if run_start is None:
                    run_start = i * cluster
                pos += cluster
            else:
                entries.append(self._compressed_entry(packed_pos, len(kind), shared))
                packed_pos += len(kind)
        if run_start is not None:
            self._write_run(view[run_start:], host + pos - (count * cluster - run_start))
        if packed:
            _nbdio.pwrite_all(self.fd, b''.join(packed), packed_base)
            with self._lock:
                last = max(shared)
                if len(self.shared) <= last:
                    self.shared.extend(array.array('H', bytes(2 * (last + 1 - len(self.shared)))))
                for index, refs in shared.items():
                    self.shared[index] = refs + 1
        self.bytes_stored += plain * cluster + packed_length
        self._set_entries(tables, first, entries)

    def _write_run(self, data, offset):
        if self.data_out is not None:
            self.data_out.pwrite(data, offset)
        else:
            _nbdio.pwrite_all(self.fd, data, offset)

    def skips_page_cache(self):
        """Whether data clusters are written with O_DIRECT (so far)."""
        return self.data_out is not None and self.data_out.use_direct

    def release(self):
        """Close what the writer opened besides fd (after finish(), or after a failure)."""
        if self.data_out is not None:
            self.data_out.release()

    def _compressed(self, piece):
        """A cluster's compressed bytes (as QEMU writes them: a zstd frame, or raw deflate with a
        4 KiB window), or True when they would not be smaller than the cluster. The last cluster
        of a disk whose size is not whole clusters is compressed padded with zeroes, as QEMU does."""
        if len(piece) < self.cluster:
            piece = bytes(piece) + bytes(self.cluster - len(piece))
        if self.compress == 'zstd':
            compressor = getattr(self._local, 'zstd', None)
            if compressor is None:
                compressor = self._local.zstd = zstandard.ZstdCompressor(level=ZSTD_LEVEL)
            packed = compressor.compress(piece)
        else:
            deflate = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -12, 9)
            packed = deflate.compress(piece) + deflate.flush()
        return packed if len(packed) < self.cluster else True

    def _compressed_entry(self, offset, length, shared):
        """The L2 entry of compressed data at offset; counts, in shared, each host cluster that
        the sectors it names touch (qemu-img check counts them so)."""
        extra_sectors = ((offset + length - 1) >> 9) - (offset >> 9)
        span = (extra_sectors + 1) * 512 - (offset & 511)
        for index in range(offset // self.cluster, (offset + span - 1) // self.cluster + 1):
            shared[index] = shared.get(index, 0) + 1
        return OFLAG_COMPRESSED | (extra_sectors << self.compressed_x) | offset

    def zero(self, start, end):
        """Guest clusters that read as zeroes, whatever a backing file holds there."""
        first, count = self._clusters(start, end - start)
        with self._lock:
            self._claim(first, count)
            tables = self._tables(first, count)
        self._set_entries(tables, first, [OFLAG_ZERO] * count)

    def finish(self):
        """Write the L1 table and the refcounts of every cluster; the image is then complete."""
        _nbdio.pwrite_all(self.fd, _big_endian(self.l1), self.l1_offset)
        per_block = self.cluster * 8 // (1 << REFCOUNT_ORDER)
        table = self.refcount_table
        table_offset = self.refcount_table_offset
        unused = set()    # clusters no longer referenced (a refcount table that was moved)
        # Refcount blocks (and a larger refcount table) are appended and count themselves too:
        # allocate until nothing more is needed.
        while True:
            wanted = -(-(self.end // self.cluster) // per_block)
            if wanted > len(table):
                old_clusters = len(table) * 8 // self.cluster
                unused.update(range(table_offset // self.cluster, table_offset // self.cluster + old_clusters))
                table_offset = self.end
                clusters = -(-wanted * 8 // self.cluster) + 1
                table = table + array.array('Q', bytes(8 * (clusters * self.cluster // 8 - len(table))))
                self.end += clusters * self.cluster
                continue
            missing = [index for index in range(wanted) if not table[index]]
            if not missing:
                break
            for index in missing:
                table[index] = self.end
                self.end += self.cluster
        clusters = self.end // self.cluster
        for index in range(wanted):
            first = index * per_block
            used = min(per_block, clusters - first)
            counts = array.array('H', [1]) * used + array.array('H', bytes(2 * (per_block - used)))
            shared = self.shared[first:first + per_block]
            if shared.count(0) != len(shared):
                for offset, count in enumerate(shared):
                    if count:
                        counts[offset] = count - 1
            for cluster in unused:
                if first <= cluster < first + per_block:
                    counts[cluster - first] = 0
            _nbdio.pwrite_all(self.fd, _big_endian(counts, 'H'), table[index] & _images.QCOW2_OFFSET_MASK)
        _nbdio.pwrite_all(self.fd, _big_endian(table), table_offset)
        if table_offset != self.refcount_table_offset:
            # The header's refcount_table_offset (byte 48) and refcount_table_clusters (56).
            _nbdio.pwrite_all(self.fd, struct.pack('>QI', table_offset, len(table) * 8 // self.cluster), 48)
        os.ftruncate(self.fd, self.end)

    def _clusters(self, offset, length):
        end = offset + length
        if offset % self.cluster or (end % self.cluster and end != self.size) or end > self.size or length <= 0:
            raise _images.ImageError('%s: a write of %d bytes at offset %d is not whole clusters of the disk'
                                     % (self.label, length, offset))
        return offset // self.cluster, -(-length // self.cluster)

    def _claim(self, first, count):
        """Mark guest clusters written; a cluster written twice is a bug, never a silent overwrite."""
        for index in range(first, first + count):
            byte, bit = divmod(index, 8)
            if self.written[byte] & (1 << bit):
                raise _images.ImageError('%s: guest cluster %d written twice' % (self.label, index))
            self.written[byte] |= 1 << bit

    def _tables(self, first, count):
        """The host offset of the L2 table of each L1 index the clusters span, allocated when new."""
        tables = {}
        for index in range(first // self.per_l2, (first + count - 1) // self.per_l2 + 1):
            if not self.l1[index]:
                # A new table is a hole of the file until entries are written into it: zeroes.
                self.l1[index] = self.end | OFLAG_COPIED
                self.end += self.cluster
            tables[index] = self.l1[index] & _images.QCOW2_OFFSET_MASK
        return tables

    def _set_entries(self, tables, first, entries):
        pos = 0
        while pos < len(entries):
            index, slot = divmod(first + pos, self.per_l2)
            take = min(len(entries) - pos, self.per_l2 - slot)
            _nbdio.pwrite_all(self.fd, struct.pack('>%dQ' % take, *entries[pos:pos + take]), tables[index] + 8 * slot)
            pos += take


def _big_endian(entries, typecode='Q'):
    out = array.array(typecode, entries)
    if sys.byteorder == 'little':
        out.byteswap()
    return out.tobytes()
