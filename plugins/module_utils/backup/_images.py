# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Private to the virtops.libvirt collection: may change without notice.
"""qemu-img for image work, and hashing a whole image through qemu-nbd.

Images read from a repository are untrusted: qemu-img and qemu-nbd never open them by a name,
and never follow a backing file or data file named in their headers. Each layer is opened here
(without following links), its header checked (QCOW2_* below), and handed to QEMU as /dev/fd/N
in a json: description that gives every layer's backing explicitly and none below the last.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import array
import json
import mmap
import os
import stat
import struct
import subprocess
import sys
import threading

from ansible_collections.virtops.libvirt.plugins.module_utils._errors import VirtError
from ansible_collections.virtops.libvirt.plugins.module_utils.backup import _blockhash, _crypt, _nbdio


class ImageError(VirtError):
    pass


QCOW2_MAGIC = b'QFI\xfb'
# Incompatible feature bits this reader accepts: dirty (0), compression type (3), extended L2 (4).
# Corrupt (1) and, above all, an external data file (2) are refused, like any bit it does not know.
QCOW2_INCOMPATIBLE_OK = (1 << 0) | (1 << 3) | (1 << 4)
QCOW2_HEADER = struct.Struct('>4sIQIIQIIQQIIQQQQII')
QCOW2_CRYPT_LUKS = 2


def run_qemu_img(args, what, pass_fds=()):
    """Run qemu-img with an argument list (never a shell line); its stdout, or ImageError."""
    proc = subprocess.run(['qemu-img'] + list(args), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, check=False, pass_fds=tuple(pass_fds))
    if proc.returncode != 0:
        raise ImageError('%s failed: %s' % (what, proc.stderr.decode('utf-8', 'replace').strip()))
    return proc.stdout.decode('utf-8', 'replace')


COMPRESSION_TYPES = ('zlib', 'zstd')


def create(path, size, backing=None, fd=None, compress=None, key=None, cluster_size=None):
    """A new qcow2 image; backing is a path relative to the image's directory (not opened now).

    fd: the file, already created (O_EXCL, private) by the caller: qemu-img writes into it by
    /dev/fd/N and never opens the path itself.
    compress: None, or the compression type (COMPRESSION_TYPES) of the compressed clusters that
    will be written into it (zlib is qcow2's default and needs no header extension).
    key: a _crypt.Key: the image is encrypted with LUKS under that passphrase.
    cluster_size: in bytes; None for qcow2's default (64 KiB).
    """
    args = ['create', '-q', '-f', 'qcow2']
    options = []
    if cluster_size:
        options.append('cluster_size=%d' % cluster_size)
    if compress == 'zstd':
        options.append('compression_type=zstd')
    pass_fds = [fd] if fd is not None else []
    if key is not None:
        args += key.object_args()
        options += ['encrypt.format=luks', 'encrypt.key-secret=%s' % _crypt.SECRET_ID]
        if key.iter_time is not None:
            options.append('encrypt.iter-time=%d' % key.iter_time)
        pass_fds.append(key.fd)
    if options:
        args += ['-o', ','.join(options)]
    if backing:
        args += ['-u', '-b', backing, '-F', 'qcow2']
    args += ['--', fd_path(fd) if fd is not None else path, str(size)]
    for attempt in range(CREATE_ATTEMPTS if key is not None else 1):
        try:
            run_qemu_img(args, 'creating image %s' % path, pass_fds=pass_fds)
            return
        except ImageError as exc:
            # QEMU times PBKDF2 to choose the LUKS iteration count; where the thread CPU clock is
            # coarse, a first round measured as 0 ms fails the create ("Unable to get accurate CPU
            # usage") before anything is written. Another try measures again.
            if 'accurate CPU usage' not in str(exc) or attempt == CREATE_ATTEMPTS - 1:
                raise
            if fd is not None:
                os.ftruncate(fd, 0)


CREATE_ATTEMPTS = 8


def fd_path(fd):
    """The name under which a child process that inherited fd opens that very file again."""
    return '/dev/fd/%d' % fd


def qcow2_header(fd, label):
    """The fields of a qcow2 header this reader relies on: version, size, backing file name,
    incompatible features, encryption (LUKS only). ImageError for anything else."""
    head = os.pread(fd, 4096, 0)
    if len(head) < 72 or head[:4] != QCOW2_MAGIC:
        raise ImageError('%s is not a qcow2 image' % label)
    (_magic, version, backing_offset, backing_size, _cluster_bits, size, crypt, _l1_size, _l1_offset,
     _refcount_offset, _refcount_clusters, _snapshots, _snapshots_offset, incompatible, _compatible,
     _autoclear, _refcount_order, header_length) = QCOW2_HEADER.unpack_from(head + bytes(max(0, 104 - len(head))))
    if version not in (2, 3):
        raise ImageError('%s is a qcow2 image of version %d, which this collection does not read' % (label, version))
    if version == 2:
        incompatible = 0
    if crypt not in (0, QCOW2_CRYPT_LUKS):
        raise ImageError('%s is a qcow2 image with the legacy AES encryption, which this repository format '
                         'never stores' % label)
    if incompatible & (1 << 2):
        raise ImageError('%s names an external data file in its qcow2 header; a repository image holds its own '
                         'data, and a data file is never opened' % label)
    if incompatible & ~QCOW2_INCOMPATIBLE_OK:
        raise ImageError('%s has qcow2 incompatible features 0x%x that this collection refuses (corrupt or '
                         'unknown)' % (label, incompatible))
    backing = None
    if backing_offset:
        if backing_size > 1023 or backing_offset > (1 << 21):
            raise ImageError('%s has a malformed backing file name in its qcow2 header' % label)
        raw = os.pread(fd, backing_size, backing_offset)
        backing = raw.decode('utf-8', 'replace')
    return dict(version=version, size=size, backing=backing, encrypted=crypt == QCOW2_CRYPT_LUKS)


class Layer:
    """One image file of a chain, opened by its caller; expected_backing is what its header must say,
    encrypted whether its manifest says it is encrypted (LUKS)."""

    def __init__(self, fd, label, size, expected_backing=None, encrypted=False):
        self.fd = fd
        self.label = label
        self.size = size
        self.expected_backing = expected_backing
        self.encrypted = encrypted


class ImageChain:
    """Layers (newest first) handed to QEMU by file descriptor, each one's backing given explicitly.

    Owns the descriptors: close() (or the with statement) closes them. key: the _crypt.Key of its
    encrypted layers (not owned).
    """

    def __init__(self, layers, fmt='qcow2', locking=True, key=None):
        self.layers = list(layers)
        self.fmt = fmt
        self.locking = locking
        self.key = key
        try:
            self._check()
        except BaseException:
            self.close()
            raise

    @property
    def label(self):
        return self.layers[0].label if self.layers else '?'

    @property
    def fds(self):
        return [layer.fd for layer in self.layers]

    @property
    def pass_fds(self):
        """Every descriptor a QEMU process opening the chain inherits: the layers and the key."""
        return self.fds + ([self.key.fd] if self.key is not None and self.encrypted else [])

    @property
    def encrypted(self):
        return any(layer.encrypted for layer in self.layers)

    def object_args(self):
        """qemu-img / qemu-nbd arguments defining the key's secret, when a layer needs it."""
        return self.key.object_args() if self.key is not None and self.encrypted else []

    def _check(self):
        for layer in self.layers:
            st = os.fstat(layer.fd)
            if not stat.S_ISREG(st.st_mode):
                raise ImageError('%s is not a regular file' % layer.label)
            if self.fmt != 'qcow2':
                continue
            header = qcow2_header(layer.fd, layer.label)
            if header['encrypted'] != layer.encrypted:
                raise ImageError('%s is %s in its qcow2 header, but its manifest says it is %s; it is not opened' % (
                    (layer.label,) + (('encrypted', 'not') if header['encrypted'] else ('not encrypted', 'encrypted'))))
            if layer.encrypted and self.key is None:
                raise ImageError('%s is encrypted and no key was given' % layer.label)
            if header['backing'] != layer.expected_backing:
                if layer.expected_backing is None:
                    raise ImageError('%s names a backing file (%r) in its qcow2 header, but the repository format '
                                     'gives it none; it is not opened' % (layer.label, header['backing']))
                raise ImageError('%s names the backing file %r in its qcow2 header, but the repository format '
                                 'gives %r; it is not opened' % (layer.label, header['backing'], layer.expected_backing))
            if layer.size is not None and header['size'] != layer.size:
                raise ImageError('%s has a virtual size of %d bytes, but the manifest records %d' % (
                    layer.label, header['size'], layer.size))

    def options(self):
        """The blockdev options of the chain: a dict for json:."""
        spec = None
        for layer in reversed(self.layers):
            node = {'driver': self.fmt, 'file': {'driver': 'file', 'filename': fd_path(layer.fd)}}
            if not self.locking:
                node['file']['locking'] = 'off'
            if layer.encrypted:
                node['encrypt'] = {'format': 'luks', 'key-secret': _crypt.SECRET_ID}
            if self.fmt == 'qcow2':
                node['backing'] = spec     # None (json null): no backing file at all
            spec = node
        return spec

    def filename(self):
        return 'json:' + json.dumps(self.options(), sort_keys=True)

    def close(self):
        for layer in self.layers:
            if layer.fd is not None:
                try:
                    os.close(layer.fd)
                except OSError:
                    pass
                layer.fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def open_layer(path, size=None, backing=None):
    """A Layer of the file at path, opened without following a link (and without blocking on a FIFO)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise ImageError('cannot open %s: %s' % (path, exc.strerror or exc))
    return Layer(fd, path, size, backing)


def open_file(path, fmt, size=None, locking=True):
    """An ImageChain of one flat file given by a trusted path (a restored disk): not followed if it is
    a link, and a qcow2 with a backing or data file named in its header is refused."""
    return ImageChain([open_layer(path, size)], fmt=fmt, locking=locking)


def serve(chain, clients=_nbdio.DEFAULT_WORKERS, workdir=None, allocation_depth=False):
    """A read-only qemu-nbd export of an ImageChain, which it opens by descriptor only."""
    return _nbdio.QemuNbdServer(chain.filename(), fmt=None, readonly=True, clients=clients, workdir=workdir,
                                allocation_depth=allocation_depth, pass_fds=chain.pass_fds, label=chain.label,
                                objects=chain.object_args())


def info(path, force_share=False):
    args = ['info', '--output=json']
    if force_share:
        args.append('-U')
    return json.loads(run_qemu_img(args + ['--', path], 'reading image %s' % path))


def in_use(chain):
    """True when another process (a running domain) holds the lock of an ImageChain's file."""
    proc = subprocess.run(['qemu-img', 'info'] + chain.object_args() + ['--', chain.filename()],
                          stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False,
                          pass_fds=tuple(chain.pass_fds))
    return proc.returncode != 0 and b'lock' in proc.stderr


def check(chain):
    """qemu-img check of the top layer of an ImageChain: (ok, message)."""
    encrypt = 'encrypt.key-secret=%s,' % _crypt.SECRET_ID if chain.layers[0].encrypted else ''
    image = 'driver=qcow2,%sfile.driver=file,file.filename=%s,backing=' % (encrypt, fd_path(chain.fds[0]))
    proc = subprocess.run(['qemu-img', 'check', '--output=json'] + chain.object_args() + ['--image-opts', '--', image],
                          stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False,
                          pass_fds=tuple(chain.pass_fds))
    if proc.returncode == 0:
        return True, 'no errors'
    out = proc.stdout.decode('utf-8', 'replace').strip()
    err = proc.stderr.decode('utf-8', 'replace').strip()
    try:
        data = json.loads(out)
        return False, 'check errors: %s, leaks: %s' % (data.get('check-errors', 0), data.get('leaks', 0))
    except ValueError:
        return False, err or out or 'qemu-img check exit code %d' % proc.returncode


def convert(chain, dest_fd, dest_label, fmt, size):
    """Flatten an ImageChain into dest_fd, a new empty file the caller created (private, O_EXCL):
    qemu-img writes through /dev/fd/N, so the file is never opened by name, and is sparse."""
    if fmt == 'raw':
        os.ftruncate(dest_fd, size)
    else:
        create(dest_label, size, fd=dest_fd)
    run_qemu_img(['convert', '-q', '-n', '--target-is-zero', '-O', fmt, '-S', '64k'] + chain.object_args() +
                 ['--', chain.filename(), fd_path(dest_fd)],
                 'writing %s from %s' % (dest_label, chain.label), pass_fds=chain.pass_fds + [dest_fd])


class Flusher:
    """Writes a file being filled by another process to disk while it is written: fdatasync in a
    loop on a thread (it releases the GIL) until finish(), then one fsync. So the wait for the disk
    overlaps the copy and the read-back verification instead of following them. wait() returns
    once the last fsync is done and raises its error."""

    PAUSE = 0.05

    def __init__(self, fd, loop=True):
        """loop: False when the data skips the page cache (O_DIRECT): a sync then only makes the
        device flush its cache, which each one does again, so only the final fsync is run."""
        self.fd = fd
        self.loop = loop
        self.error = None
        self._abandoned = False
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name='flusher', daemon=True)
        self._thread.start()

    def _run(self):
        try:
            while not self._done.wait(self.PAUSE if self.loop else None):
                os.fdatasync(self.fd)
            if not self._abandoned:
                os.fsync(self.fd)
        except OSError as exc:
            self.error = exc

    def finish(self):
        """The writer is done: the final fsync starts (or follows the running fdatasync)."""
        self._done.set()

    def wait(self):
        self._done.set()
        self._thread.join()
        if self.error is not None:
            raise self.error

    def abandon(self):
        """The file is not kept (a failure): stop without the final fsync, errors ignored."""
        self._abandoned = True
        self._done.set()
        self._thread.join()


def hash_image(chain, size, block_size, workers=_nbdio.DEFAULT_WORKERS, workdir=None,
               algorithm=_blockhash.ALGORITHM, own_file=False):
    """The block hash map of what an ImageChain holds; its exported size must be size.

    A raw file is read directly. own_file: the chain is one qcow2 file this run has just written
    (a restored disk), which is read directly too (hash_qcow2_file) where it is plain enough."""
    if chain.fmt == 'raw' and len(chain.layers) == 1:
        return hash_raw_file(chain.layers[0].fd, size, block_size, algorithm, chain.label, mapped=own_file)
    if own_file and chain.fmt == 'qcow2' and len(chain.layers) == 1 and chain.layers[0].expected_backing is None:
        try:
            return hash_qcow2_file(chain.layers[0].fd, size, block_size, algorithm, chain.label, mapped=True)[0]
        except NotPlain:
            pass
    result = _blockhash.BlockHashMap(size, block_size, algorithm=algorithm)
    with serve(chain, clients=workers, workdir=workdir) as server:
        transfer = _nbdio.Transfer(server.export(), size, result, workers=workers)
        transfer.run([], _nbdio.select_all)
    return result


RAW_READ = 4 * 1024 * 1024


def _data_segments(fd, size):
    """(start, end) of the parts of a file that may hold data (SEEK_DATA/SEEK_HOLE); the rest are
    holes, which read as zeroes. Where the file system cannot tell, all of it is data."""
    pos = 0
    while pos < size:
        try:
            start = os.lseek(fd, pos, os.SEEK_DATA)
        except OSError:
            return   # ENXIO: only a hole from pos on
        if start >= size:
            return
        end = min(size, os.lseek(fd, start, os.SEEK_HOLE))
        yield start, end
        pos = end


def hash_raw_file(fd, size, block_size, algorithm, label, mapped=False):
    """The block hash map of a raw file read directly (a restored disk): data segments are read,
    holes hashed as zeroes without being read. The file must be exactly size bytes long.

    mapped: hash the file through mmap, without copying it out of the page cache (a third less
    time per GiB), one window at a time (the process's RSS stays at a window). Only for a private
    file of this run that nobody else can truncate (a restored disk before its rename): a file
    shrinking under the map would kill the process (SIGBUS)."""
    actual = os.fstat(fd).st_size
    if actual != size:
        raise ImageError('%s holds %d bytes, but the disk is %d bytes' % (label, actual, size))
    result = _blockhash.BlockHashMap(size, block_size, algorithm=algorithm)
    if mapped:
        def hash_range(start, end):
            with _FileMap(fd, start, end - start) as view:
                result.update(start, view)
    else:
        buf = bytearray(max(block_size, RAW_READ - RAW_READ % block_size))
        view = memoryview(buf)

        def hash_range(start, end):
            got = os.preadv(fd, [view[:end - start]], start)
            if got != end - start:
                raise ImageError('%s: short read of %d bytes at offset %d' % (label, got, start))
            result.update(start, view[:end - start])

    _hash_segments(fd, size, block_size, result, hash_range)
    return result


class _FileMap:
    """A read-only memoryview of length bytes of a file from offset, through mmap: the page cache
    itself, not a copy of it. Only for a file nobody else can truncate (a page beyond its end
    kills the process with SIGBUS) and for ranges inside it."""

    def __init__(self, fd, offset, length):
        self.skip = offset % mmap.ALLOCATIONGRANULARITY      # a map starts on a page boundary
        self.mapping = mmap.mmap(fd, length + self.skip, mmap.MAP_SHARED, mmap.PROT_READ, offset=offset - self.skip)
        self.view = None

    def __enter__(self):
        self.view = memoryview(self.mapping)[self.skip:]
        return self.view

    def __exit__(self, exc_type, exc, tb):
        self.view.release()
        self.mapping.close()


def no_other_writer(fd):
    """True when no process (this one included) holds the file of fd (opened read-only) open for
    writing: a read lease is granted only then (fcntl(2), F_SETLEASE), and is let go at once. With
    a file only root may open, that stays true. False where leases are not available."""
    import fcntl    # pylint: disable=import-outside-toplevel  # only for push targets
    set_lease = getattr(fcntl, 'F_SETLEASE', 1024)       # Linux's value, for Pythons that do not name it
    try:
        fcntl.fcntl(fd, set_lease, fcntl.F_RDLCK)
    except OSError:
        return False     # EAGAIN: a writer; EINVAL, ENOLCK: no leases on this file system
    fcntl.fcntl(fd, set_lease, fcntl.F_UNLCK)
    return True


def _hash_segments(fd, size, block_size, result, hash_range, window=RAW_READ):
    """Hash the data segments of a raw file into result (hash_range(start, end) hashes one window
    of them) and its holes as zeroes."""
    window = max(block_size, window - window % block_size)
    pos = 0      # everything before pos is hashed
    for start, end in _data_segments(fd, size):
        start -= start % block_size
        end = min(size, end + (-end) % block_size)
        start = max(start, pos)
        if start >= end:
            continue
        if pos < start:
            result.set_zero(pos, start)
        while start < end:
            length = min(window, end - start)
            hash_range(start, start + length)
            start += length
        pos = end
    if pos < size:
        result.set_zero(pos, size)


class NotPlain(ImageError):
    """A qcow2 feature hash_qcow2_file does not read (compressed clusters, extended L2 entries):
    the caller reads the image through qemu-nbd instead."""


QCOW2_OFFSET_MASK = 0x00fffffffffffe00
QCOW2_COMPRESSED = 1 << 62
QCOW2_ZERO = 1


class _Stats:
    def __init__(self):
        self.bytes_read = 0
        self.zero_bytes = 0
        self.selected_bytes = 0


def big_endian_array(typecode, raw):
    """The numbers of raw bytes in qcow2's byte order (big-endian) as an array of this machine's."""
    values = array.array(typecode, raw)
    if sys.byteorder == 'little':
        values.byteswap()
    return values


def _qcow2_tables(fd, label):
    """(cluster size, [(guest offset of an L2 table's range, its entries)]) of a qcow2 file, one L2
    table at a time (memory stays at one table whatever the disk size)."""
    head = os.pread(fd, 4096, 0)
    fields = QCOW2_HEADER.unpack_from(head + bytes(max(0, 104 - len(head))))
    version, cluster_bits, l1_size, l1_offset, incompatible = fields[1], fields[4], fields[7], fields[8], fields[13]
    if version != 3 or incompatible & (1 << 4):
        raise NotPlain('%s is not a qcow2 of version 3 with standard L2 entries' % label)
    if fields[6]:
        # Its data clusters hold cipher text: only QEMU, with the key, reads the disk's data.
        raise NotPlain('%s is encrypted' % label)
    if not 9 <= cluster_bits <= 21 or l1_size > (1 << 26):
        raise ImageError('%s has a malformed qcow2 header' % label)
    cluster = 1 << cluster_bits
    per_l2 = cluster // 8
    l1 = big_endian_array('Q', os.pread(fd, l1_size * 8, l1_offset))
    if len(l1) != l1_size:
        raise ImageError('%s: its L1 table is cut short' % label)
    for index, entry in enumerate(l1):
        l2_offset = entry & QCOW2_OFFSET_MASK
        if not l2_offset:
            continue
        l2 = big_endian_array('Q', os.pread(fd, cluster, l2_offset))
        if len(l2) != per_l2:
            raise ImageError('%s: an L2 table lies beyond the end of the file' % label)
        yield cluster, index * per_l2 * cluster, l2


def hash_qcow2_file(fd, size, block_size, algorithm, label, hashmap=None, top_only=False, mapped=False):
    """Hash a qcow2 file this run wrote (a restored disk) or QEMU wrote for it (a push target) by
    reading its cluster tables and data clusters directly, without qemu-nbd and a socket in between.

    Without top_only, the file is the whole disk (no backing file): unallocated clusters read as
    zeroes. With top_only, only the clusters the file itself holds are hashed into hashmap (the
    parent's map) and the rest keeps the parent's digests; this needs hash blocks of one cluster.
    Returns (hashmap, stats with bytes_read, zero_bytes, selected_bytes): bytes_read counts the
    data hashed, less the blocks of zeroes inside clusters larger than a hash block (qcow2 fills
    the rest of such a cluster with zeroes when a guest writes part of it). NotPlain when the file
    uses what this reader does not read. Never used on images read from a repository: their
    reading stays with QEMU.

    mapped: data clusters are hashed through mmap where whole hash blocks lie in one run of them,
    without copying them out of the page cache (about half the CPU time of reading them); only
    for a file nobody else can truncate (see _FileMap): a restored disk before its rename, a push
    target no process holds open for writing (no_other_writer) and only root may open."""
    result = hashmap if hashmap is not None else _blockhash.BlockHashMap(size, block_size, algorithm=algorithm)
    stats = _Stats()
    if hasattr(os, 'posix_fadvise'):
        # Read ahead: a file written with O_DIRECT is not in the page cache.
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
    window = max(block_size, RAW_READ - RAW_READ % block_size)
    done = 0           # every block before this offset is hashed or given to the readers (not top_only)
    with _TableReaders(fd, label, result, stats, window, _hash_top if top_only else _hash_window,
                       os.fstat(fd).st_size if mapped else None) as readers:
        for cluster, base, l2 in _qcow2_tables(fd, label):
            if (block_size % cluster and cluster % block_size) or len(l2) * cluster % block_size:
                # Neither divides the other, or tiny clusters: an L2 table would end inside a block.
                raise NotPlain('%s: clusters of %d bytes and hash blocks of %d do not tile each other'
                               % (label, cluster, block_size))
            if top_only and block_size != cluster:
                raise NotPlain('%s: an overlay needs hash blocks of one cluster' % label)
            if base >= size:
                break
            span_end = min(size, base + len(l2) * cluster)
            if not top_only and done < base:
                result.set_zero(done, base)
                stats.zero_bytes += base - done
            readers.submit(l2, base, span_end, cluster)
            done = span_end
    if not top_only and done < size:
        result.set_zero(done, size)
        stats.zero_bytes += size - done
    stats.selected_bytes = stats.bytes_read + stats.zero_bytes
    return result, stats


class _TableReaders:
    """Threads that read and hash the windows of hash_qcow2_file, an L2 table at a time: each
    thread takes every THREADS-th window of the table (interleaved, so data at one end of the
    disk is shared too). While one waits for a read (preadv releases the GIL), another hashes.
    Handing out whole tables, not windows, keeps the threads from queueing for the GIL behind
    each hand-over (per window it cost half again the time of the reads). Windows are
    independent (each writes the digests of its own blocks); at most two tables are in flight,
    so memory stays at a few windows and tables whatever the disk size.

    With the file mapped (mapped_size), nothing waits outside the GIL (the hash holds it, page
    faults included): the caller's thread does it all, which measured faster than two threads."""

    THREADS = 2

    def __init__(self, fd, label, result, stats, window, work, mapped_size=None):
        self.fd, self.label, self.result, self.stats, self.window, self.work = fd, label, result, stats, window, work
        self.mapped_size = mapped_size      # the file's size when runs are hashed through mmap
        self.threads = 1 if mapped_size is not None else self.THREADS
        self.zeroes = memoryview(bytes(window))
        self.lock = threading.Lock()
        self.pending = []
        self.pool = None
        self.views = []

    def __enter__(self):
        self.views = [memoryview(bytearray(self.window)) for _i in range(self.threads)]
        if self.threads > 1:
            import concurrent.futures    # pylint: disable=import-outside-toplevel  # only when a file is hashed
            self.pool = concurrent.futures.ThreadPoolExecutor(self.threads, thread_name_prefix='virtops-hash')
        return self

    def submit(self, l2, base, end, cluster):
        """Hash the table l2, whose first entry maps guest offset base, up to guest offset end."""
        if self.pool is None:
            self._run(0, l2, base, end, cluster)
            return
        while len(self.pending) >= 2 * self.threads:
            self.pending.pop(0).result()
        for part in range(self.threads):
            self.pending.append(self.pool.submit(self._run, part, l2, base, end, cluster))

    def _run(self, part, l2, base, end, cluster):
        view = self.views[part]
        read = zero = 0
        for start in range(base + part * self.window, end, self.threads * self.window):
            stop = min(end, start + self.window)
            first = (start - base) // cluster
            entries = l2[first:first + (stop - start + cluster - 1) // cluster]
            if any(e & QCOW2_COMPRESSED for e in entries):
                raise NotPlain('%s holds compressed clusters' % self.label)
            got_read, got_zero = self.work(self, view, entries, start, stop, cluster)
            read += got_read
            zero += got_zero
        with self.lock:
            self.stats.bytes_read += read
            self.stats.zero_bytes += zero

    def hash_run(self, view, guest, host, length):
        """Hash length bytes of data clusters found at file offset host, which hold the disk from
        guest offset guest (whole hash blocks): where they lie in the page cache when the file is
        mapped, else read into view. A range past the end of the file is an error either way."""
        if self.mapped_size is None:
            _read_exact(self.fd, view[:length], host, self.label)
            self.result.update(guest, view[:length])
            return
        if host + length > self.mapped_size:
            raise ImageError('%s: a data cluster at file offset %d lies beyond the end of the file'
                             % (self.label, host))
        with _FileMap(self.fd, host, length) as source:
            self.result.update(guest, source)

    def __exit__(self, exc_type, exc, tb):
        try:
            for future in self.pending:
                if exc_type is None:
                    future.result()
                else:
                    future.cancel()
        finally:
            if self.pool is not None:
                self.pool.shutdown(wait=True)


def _hash_window(readers, view, entries, start, end, cluster):
    """A window of a whole disk: the hash blocks that hold a data cluster are read (the rest of such
    a block is zeroes) and hashed; blocks without one get the zero digest without being hashed
    (a disk's data is often interleaved with zeroes: hashing them doubled the time). -> (read, zero)."""
    fd, label, zeroes, result = readers.fd, readers.label, readers.zeroes, readers.result
    data = [(i, e & QCOW2_OFFSET_MASK) for i, e in enumerate(entries) if e & QCOW2_OFFSET_MASK and not e & QCOW2_ZERO]
    if not data:
        result.set_zero(start, end)
        return 0, end - start
    length = end - start
    block = result.block_size
    # A cluster of several hash blocks holds zeroes around what the guest wrote into it: those
    # blocks count as zeroes, not data, as they would in clusters of one block.
    padded = cluster > block
    # Runs of clusters adjacent in the disk and the file, as window-relative [start, end, host)
    # byte ranges, grouped by the adjacent hash blocks they touch: [first block, end block, runs].
    # Clusters may be smaller than a hash block or larger (a multiple of it).
    spans = []
    for first, host, count in _runs(data, cluster):
        run = (first * cluster, min(length, (first + count) * cluster), host)
        first_block, end_block = run[0] // block, (run[1] + block - 1) // block
        if spans and spans[-1][1] >= first_block:
            spans[-1][1] = end_block
            spans[-1][2].append(run)
        else:
            spans.append([first_block, end_block, [run]])
    read = 0
    done = 0        # window-relative: everything before it is hashed or zero
    for first_block, end_block, span_runs in spans:
        span_start = first_block * block
        span_end = min(length, end_block * block)
        if done < span_start:
            result.set_zero(start + done, start + span_start)
        if all(not pos % block and (not stop % block or stop == length) for pos, stop, _host in span_runs):
            # Each run is whole hash blocks (always so when a cluster is one or more whole
            # blocks): hashed on its own; the blocks between runs are zeroes.
            for pos, stop, host in span_runs:
                if done < pos:
                    result.set_zero(start + done, start + pos)
                readers.hash_run(view, start + pos, host, stop - pos)
                done = stop
                read += stop - pos - (result.zero_bytes(start + pos, start + stop) if padded else 0)
        else:
            # Runs that share a hash block (clusters smaller than a block): the blocks are put
            # together in view, the gaps between runs zeroed.
            filled = span_start
            for pos, stop, host in span_runs:
                if filled < pos:
                    # Zero only the gaps between runs (a fresh 4 MiB of zeroes per window cost more
                    # than the hashing).
                    view[filled:pos] = zeroes[:pos - filled]
                _read_exact(fd, view[pos:stop], host, label)
                filled = stop
                read += stop - pos
            if filled < span_end:
                view[filled:span_end] = zeroes[:span_end - filled]
            result.update(start + span_start, view[span_start:span_end])
        done = span_end
    if done < length:
        result.set_zero(start + done, end)
    return read, length - read


def _runs(data, cluster):
    """(first index, host offset, clusters) of runs of clusters adjacent both in the disk and in
    the file: read with one call each (the file was just written, mostly in disk order)."""
    runs = []
    for index, host in data:
        if runs and runs[-1][0] + runs[-1][2] == index and runs[-1][1] + runs[-1][2] * cluster == host:
            runs[-1][2] += 1
        else:
            runs.append([index, host, 1])
    return runs


def _hash_top(readers, view, entries, start, end, cluster):
    """A window of an overlay: only the clusters it holds itself hashed (zero clusters as zeroes),
    the parent's digests kept for the rest. -> (read, zero)."""
    data = []
    read = zero = 0
    for i, entry in enumerate(entries):
        pos = start + i * cluster
        stop = min(end, pos + cluster)
        if entry & QCOW2_ZERO:
            readers.result.set_zero(pos, stop)
            zero += stop - pos
        elif entry & QCOW2_OFFSET_MASK:
            data.append((i, entry & QCOW2_OFFSET_MASK))
    for first, host, count in _runs(data, cluster):
        pos = start + first * cluster
        stop = min(end, pos + count * cluster)
        readers.hash_run(view, pos, host, stop - pos)
        read += stop - pos
    return read, zero


def _read_exact(fd, target, offset, label):
    got = os.preadv(fd, [target], offset)
    if got != len(target):
        raise ImageError('%s: a data cluster at file offset %d lies beyond the end of the file' % (label, offset))
