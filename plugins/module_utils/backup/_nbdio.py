# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Private to the virtops.libvirt collection: may change without notice.
"""The data path: read extents over NBD (libnbd), write them to a qcow2 image, hash every block.

Sources are NBD exports: QEMU's pull-mode backup export (a frozen point in time with a dirty
bitmap) or an image chain exported read-only by qemu-nbd. Writes go to a qcow2 image exported by
a qemu-nbd process of our own (or, for a restored raw disk, straight into the file). Several
worker threads, each with its own connections, keep many requests in flight asynchronously
(libnbd's aio_* calls; libnbd releases the GIL while it works). Memory stays bounded: extents are
planned one window at a time, and each worker holds at most _Pump.HELD chunks.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import collections
import ctypes
import errno
import mmap
import os
import queue
import select
import shutil
import signal
import subprocess
import tempfile
import threading
import time

from ansible_collections.virtops.libvirt.plugins.module_utils._errors import VirtError
from ansible_collections.virtops.libvirt.plugins.module_utils.backup import _crypt

NBD_IMPORT_ERROR = None
try:
    import nbd
except ImportError:  # pragma: no cover - reported by the modules
    nbd = None
    import traceback
    NBD_IMPORT_ERROR = traceback.format_exc()

BASE_ALLOCATION = 'base:allocation'
ALLOCATION_DEPTH = 'qemu:allocation-depth'
STATE_ZERO = 2           # base:allocation: the extent reads as zeroes
DIRTY = 1                # qemu:dirty-bitmap:*: the extent changed since the checkpoint

WINDOW = 1024 * 1024 * 1024      # extents are planned this much of the disk at a time
MAX_REQUEST = 4 * 1024 * 1024    # one work item of the planner, at most
DEFAULT_WORKERS = 4              # connections (each its own source and destination)
DEFAULT_DEPTH = 32               # read requests in flight per connection
DEFAULT_REQUEST = 256 * 1024     # bytes per read request


class NbdIoError(VirtError):
    pass


def dirty_bitmap_context(bitmap):
    return 'qemu:dirty-bitmap:%s' % bitmap


_LIBC = []


def _libc():
    """The C library, loaded once: prctl and a fallocate that never writes zeroes have no os wrapper."""
    if not _LIBC:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
        _LIBC.append(libc)
    return _LIBC[0]


def _die_with_parent():
    """In the child before exec: get SIGTERM when the module process dies, even by kill -9."""
    try:
        _libc().prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:  # pylint: disable=broad-except
        pass


def _close(handle):
    """Disconnect cleanly; older libnbd bindings have no close() and free the handle when dropped."""
    try:
        if handle.aio_is_ready():
            handle.shutdown()
    except Exception:  # pylint: disable=broad-except
        pass
    if hasattr(handle, 'close'):
        handle.close()


class Export:
    """Where to connect: a unix socket, or TCP with TLS (client certificates in tls_dir)."""

    def __init__(self, socket=None, name='', host=None, port=None, tls_dir=None):
        self.socket = socket
        self.name = name
        self.host = host
        self.port = port
        self.tls_dir = tls_dir

    def describe(self):
        if self.socket:
            return self.socket
        return '%s:%s (TLS)' % (self.host, self.port)

    def connect(self, contexts=()):
        handle = nbd.NBD()
        if hasattr(handle, 'set_pread_initialize'):
            # libnbd zeroes every read buffer first unless told not to: 4 % of a full backup's CPU.
            # A failed read fails the transfer, so no buffer is ever used half filled.
            handle.set_pread_initialize(False)
        for ctx in contexts:
            handle.add_meta_context(ctx)
        handle.set_export_name(self.name)
        try:
            if self.socket:
                handle.connect_unix(self.socket)
            else:
                # Never in clear text over TCP: TLS is required, the server's certificate verified.
                handle.set_tls(nbd.TLS_REQUIRE)
                handle.set_tls_certificates(self.tls_dir)
                handle.set_tls_verify_peer(True)
                handle.connect_tcp(self.host, str(self.port))
        except nbd.Error as exc:
            _close(handle)
            raise NbdIoError('cannot connect to NBD export %r on %s: %s' % (self.name, self.describe(), exc))
        for ctx in contexts:
            if not handle.can_meta_context(ctx):
                _close(handle)
                raise NbdIoError('NBD export %r on %s does not offer %s' % (self.name, self.describe(), ctx))
        return handle


class QemuNbdServer:
    """A qemu-nbd process exporting one image on a private unix socket, for several clients.

    image: a path, or (fmt None) a json: description whose files are the descriptors in pass_fds.
    The socket and pid file live in a new 0700 directory of ours inside workdir, which must be a
    directory only root can write (never one of QEMU's user): that user could otherwise swap the
    socket for its own server.
    """

    def __init__(self, image, fmt='qcow2', readonly=True, clients=DEFAULT_WORKERS, allocation_depth=False,
                 bitmap=None, workdir=None, pass_fds=(), label=None, compress=False, objects=(), key=None):
        """compress: a writer whose every write becomes qcow2 compressed clusters (QEMU's compress
        filter over the qcow2 node). A compressed cluster is written once: every write must cover
        whole clusters that nothing wrote before, which the Transfer's whole hash blocks do.
        objects: --object arguments (the secret of an encrypted json: chain, with its fd in pass_fds).
        key: a writer of a LUKS-encrypted image (a _crypt.Key). Its backing chain is not opened: the
        writer writes whole clusters and zero clusters only, which never read the backing file."""
        self.image = label or image
        objects = list(objects)
        pass_fds = list(pass_fds)
        if key is not None:
            objects += key.object_args()
            pass_fds.append(key.fd)
        self.tmpdir = tempfile.mkdtemp(prefix='virtops-nbd-', dir=workdir)
        os.chmod(self.tmpdir, 0o700)
        self.socket = os.path.join(self.tmpdir, 'nbd.sock')
        # qemu-nbd writes its pid file once the socket listens and the export is set up; the
        # socket file alone appears at bind(), before listen(): a connect then is refused.
        self.pid_file = os.path.join(self.tmpdir, 'qemu-nbd.pid')
        # Writers never flush (cache.no-flush / cache=unsafe): qemu-nbd would otherwise sync at
        # every new qcow2 metadata table (dozens of syncs on a large disk). The caller fsyncs the
        # finished image once, before the manifest makes the backup exist. Where the file system
        # allows it they write with O_DIRECT and asynchronous I/O: the data then skips the page cache,
        # which roughly halves qemu-nbd's CPU time (the backup is not read back soon).
        direct = not readonly and direct_io_supported(os.path.dirname(os.path.abspath(image)))
        self.direct_io = direct
        cmd = ['qemu-nbd', '--socket', self.socket, '--shared', str(clients + 1),
               '--persistent', '--pid-file', self.pid_file] + objects
        if not direct:
            cmd += ['--cache', 'writeback' if readonly else 'unsafe']
        if readonly:
            cmd += ['--read-only']
        else:
            # Blocks of zeroes become zero clusters instead of allocated data.
            cmd += ['--detect-zeroes', 'on']
        if allocation_depth:
            cmd += ['--allocation-depth']
        if bitmap:
            cmd += ['--bitmap=%s' % bitmap]
        if fmt is None:
            # Already a complete description (json:, see _images.ImageChain); no probing, no names.
            cmd += ['--', image]
        elif direct:
            # io_uring where QEMU and the kernel have it: the qcow2 writer takes 1.9 to 2.1 s per
            # GiB of 4 MiB writes against 2.7 to 3.2 s with Linux native AIO (docs/benchmarks.md).
            # A qemu-nbd that cannot set it up exits at once; it is started again with native AIO.
            for aio in ('io_uring', 'native'):
                try:
                    self._start(cmd + ['--image-opts', '--', '%s,%s.aio=%s,cache.direct=on,cache.no-flush=on'
                                       % (_file_node(fmt, image, compress, key is not None),
                                          'file.file' if compress else 'file', aio)], pass_fds)
                    return
                except NbdIoError:
                    if aio == 'native':
                        raise
                    # The failed start removed the private directory: a new one for the retry.
                    old = {self.socket: None, self.pid_file: None}
                    self.tmpdir = tempfile.mkdtemp(prefix='virtops-nbd-', dir=workdir)
                    os.chmod(self.tmpdir, 0o700)
                    self.socket = os.path.join(self.tmpdir, 'nbd.sock')
                    self.pid_file = os.path.join(self.tmpdir, 'qemu-nbd.pid')
                    old = dict(zip(old, (self.socket, self.pid_file)))
                    cmd = [old.get(arg, arg) for arg in cmd]
        elif compress or key is not None:
            cmd += ['--image-opts', '--', _file_node(fmt, image, compress, key is not None)]
        else:
            cmd += ['--format', fmt, '--', image]
        self._start(cmd, pass_fds)

    def _start(self, cmd, pass_fds):
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, preexec_fn=_die_with_parent,
                                     pass_fds=tuple(pass_fds))
        self._wait_ready()

    def _wait_ready(self, timeout=30):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode('utf-8', 'replace').strip()
                self.close()
                raise NbdIoError('qemu-nbd could not export %s: %s' % (self.image, err))
            if os.path.exists(self.pid_file):
                return
            time.sleep(0.02)
        self.close()
        raise NbdIoError('qemu-nbd did not open its socket for %s within %d s' % (self.image, timeout))

    def export(self):
        return Export(self.socket, '')

    def close(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stderr:
            self.proc.stderr.close()
        shutil.rmtree(self.tmpdir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _file_node(fmt, image, compress, encrypted=False):
    """--image-opts of an image file by path; with compress, under the compress filter (the image's
    options are then file.*); encrypted: a LUKS qcow2 opened with the key's secret and without its
    backing chain."""
    prefix = 'file.' if compress else ''
    options = ['driver=compress'] if compress else []
    options.append('%sdriver=%s' % (prefix, fmt))
    if encrypted:
        options += ['%sencrypt.key-secret=%s' % (prefix, _crypt.SECRET_ID), '%sbacking=' % prefix]
    options += ['%sfile.driver=file' % prefix, '%sfile.filename=%s' % (prefix, image.replace(',', ',,'))]
    return ','.join(options)


def direct_io_supported(directory):
    """Whether files in directory can be opened with O_DIRECT (tmpfs, for one, cannot)."""
    if not hasattr(os, 'O_DIRECT'):
        return False
    try:
        fd, path = tempfile.mkstemp(prefix='.virtops-odirect-', dir=directory)
    except OSError:
        return False
    os.close(fd)
    try:
        fd = os.open(path, os.O_RDWR | os.O_DIRECT)
    except OSError:
        return False
    else:
        os.close(fd)
        return True
    finally:
        os.unlink(path)


def _extents(handle, offset, length, contexts):
    """Extents per context for [offset, offset+length): {ctx: [(start, end, flags)]}, and where they stop."""
    found = dict((ctx, []) for ctx in contexts)

    def collect(metacontext, start, entries, err):
        if metacontext in found:
            pos = start
            items = found[metacontext]
            for i in range(0, len(entries), 2):
                items.append((pos, pos + entries[i], entries[i + 1]))
                pos += entries[i]
        return 0

    handle.block_status(length, offset, collect)
    end = offset + length
    for ctx in contexts:
        items = found[ctx]
        if not items:
            raise NbdIoError('the NBD server sent no %s extents at offset %d' % (ctx, offset))
        end = min(end, items[-1][1])
    return found, end


def _intersect(ranges, start, end):
    for s, e in ranges:
        s, e = max(s, start), min(e, end)
        if s < e:
            yield s, e


def _merge(ranges):
    merged = []
    for s, e in ranges:
        if merged and s <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], e))
        else:
            merged.append((s, e))
    return merged


def plan_window(alloc, selected, block, size):
    """Split a window into work: ('data', start, end) to copy and ('zero', start, end) that read as zeroes.

    alloc: base:allocation extents (start, end, flags); selected: the ranges to consider (dirty or
    top-layer extents), or None for everything. Ranges are widened to whole hash blocks, and a
    block is zero only if every byte of it is in a zero extent.
    """
    if not alloc:
        return []
    w_start, w_end = alloc[0][0], alloc[-1][1]
    if selected is None:
        wanted = [(w_start, w_end)]
    else:
        wanted = _merge((max(0, s - s % block), min(size, e + (-e) % block)) for s, e in selected)
    data = _merge((s - s % block, min(size, e + (-e) % block))
                  for s, e, flags in alloc if not flags & STATE_ZERO)
    work = []
    for ws, we in wanted:
        pos = ws
        for ds, de in _intersect(data, ws, we):
            if pos < ds:
                work.append(('zero', pos, ds))
            work.append(('data', ds, de))
            pos = de
        if pos < we:
            work.append(('zero', pos, we))
    return work


class Transfer:
    """Copy (or only hash) what a source export holds into a destination, block hashes included.

    Each worker owns one connection to the source and one to the destination and keeps up to
    `depth` read requests of `request_size` bytes in flight, asynchronously (libnbd's aio_* calls,
    one poll loop per worker): the layout nbdcopy uses. A chunk whose reads completed is hashed at
    once, while its data is in the CPU cache, and written from the same buffer (see _Pump).
    """

    def __init__(self, source, size, hashmap, destination=None, workers=DEFAULT_WORKERS,
                 write_zeroes=False, timeout=None, compare=False, depth=DEFAULT_DEPTH,
                 request_size=DEFAULT_REQUEST):
        """compare: hashmap holds the parent's digests; only blocks whose digest differs are written
        (a disk without a dirty bitmap, read in full). Otherwise everything read is written.
        destination: an Export, or a direct writer: a _qcow2_writer.Qcow2Writer (a new qcow2 image
        written by descriptor)."""
        self.source = source
        self.destination = destination
        self.size = size
        self.hashmap = hashmap
        self.workers = max(1, workers)
        self.write_zeroes = write_zeroes
        self.compare = compare
        self.depth = max(1, depth)
        # Chunks (the planner's work items, hashed and written whole) are whole hash blocks;
        # read requests are pieces of a chunk.
        self.chunk_size = max(MAX_REQUEST, hashmap.block_size)
        self.request_size = max(4096, min(self.chunk_size, request_size - request_size % 4096))
        self.changed_zero_bytes = 0
        self.deadline = time.time() + timeout if timeout else None
        self.bytes_read = 0
        self.bytes_written = 0
        self.zero_bytes = 0
        self.selected_bytes = 0
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()     # see _FileWrites
        self._error = None
        # Items are small tuples: a long queue keeps every worker fed without holding any data.
        self._queue = queue.Queue(maxsize=self.workers * 8)

    def run(self, contexts, select):
        """contexts: meta contexts to ask for; select(found) -> selected ranges or None (all).

        Returns after every byte is copied and flushed; raises NbdIoError on any failure.
        """
        planner = self.source.connect([BASE_ALLOCATION] + [c for c in contexts if c != BASE_ALLOCATION])
        exported = planner.get_size()
        if exported != self.size:
            # The whole disk and nothing else: a longer or shorter image is not this disk.
            _close(planner)
            raise NbdIoError('the NBD export of %s holds %d bytes, but the disk is %d bytes (its virtual size)'
                             % (self.source.describe(), exported, self.size))
        threads = [threading.Thread(target=self._worker, name='virtops-nbd-%d' % i) for i in range(self.workers)]
        for t in threads:
            t.daemon = True
            t.start()
        try:
            offset = 0
            all_contexts = [BASE_ALLOCATION] + [c for c in contexts if c != BASE_ALLOCATION]
            while offset < self.size and self._error is None:
                self._check_deadline()
                found, end = _extents(planner, offset, min(WINDOW, self.size - offset), all_contexts)
                alloc = [(s, min(e, end), f) for s, e, f in found[BASE_ALLOCATION] if s < end]
                selected = select(found, end)
                if selected is not None:
                    selected = [(s, min(e, end)) for s, e in selected if s < end]
                    self.selected_bytes += sum(e - s for s, e in selected)
                else:
                    self.selected_bytes += end - offset
                for kind, s, e in plan_window(alloc, selected, self.hashmap.block_size, self.size):
                    self._put_chunks(kind, s, e)
                offset = end
        except nbd.Error as exc:
            self._fail(NbdIoError('reading extents failed: %s' % exc))
        except NbdIoError as exc:
            self._fail(exc)
        finally:
            for dummy in threads:
                self._put(None)
            for t in threads:
                t.join()
            _close(planner)
        if self._error is not None:
            raise self._error

    def _check_deadline(self):
        if self.deadline and time.time() > self.deadline:
            raise NbdIoError('the transfer did not finish within the timeout')

    def _put(self, item):
        # Workers always drain the queue, so a put never waits for long.
        self._queue.put(item)

    def _put_chunks(self, kind, start, end):
        step = self.chunk_size if kind == 'data' else WINDOW
        pos = start
        while pos < end and self._error is None:
            self._check_deadline()
            stop = min(end, pos + step)
            self._put((kind, pos, stop))
            pos = stop

    def _fail(self, exc):
        with self._lock:
            if self._error is None:
                self._error = exc

    def _count(self, read=0, written=0, zero=0, changed_zero=0):
        with self._lock:
            self.bytes_read += read
            self.bytes_written += written
            self.zero_bytes += zero
            self.changed_zero_bytes += changed_zero

    def _worker(self):
        src = dst = None
        try:
            src = self.source.connect()
            if self.destination is not None:
                dst = self.destination.connect()
        except Exception as exc:  # pylint: disable=broad-except
            self._fail(exc if isinstance(exc, NbdIoError) else NbdIoError('NBD connection failed: %s' % exc))
        pump = _Pump(self, src, dst)
        try:
            if self._error is None:
                pump.run()
            if dst is not None and self._error is None:
                dst.flush()
        except Exception as exc:  # pylint: disable=broad-except
            self._fail(exc if isinstance(exc, NbdIoError) else NbdIoError(
                'NBD transfer near offset %d failed: %s' % (pump.position, exc)))
        finally:
            # No write of ours runs past this point: the caller finishes the destination next.
            pump.stop_file_writes()
            # Always consume until our end marker, so the producer never blocks on a dead worker.
            pump.drain_queue()
            for handle in (src, dst):
                if handle is not None:
                    _close(handle)


def pwrite_all(fd, data, offset):
    """Write all of data (bytes or a buffer) at offset: pwrite may write less than asked."""
    view = memoryview(data)
    while len(view):
        done = os.pwrite(fd, view, offset)
        view, offset = view[done:], offset + done


def _fallocate(fd, offset, length):
    """Reserve blocks for [offset, offset+length) of fd (the file grows to cover them); False where
    the file system cannot (no emulation by writing zeroes, unlike posix_fallocate)."""
    try:
        return _libc().fallocate(fd, 0, offset, length) == 0
    except (OSError, AttributeError):
        return False


class DirectWriter:
    """Writes of whole pages from page-aligned buffers into a file that another descriptor (fd)
    also writes, with O_DIRECT where the file system allows it: the data then skips the page cache,
    whose copy, writeback and reclaim cost a full backup about a third of its CPU time
    (docs/benchmarks.md). Blocks are reserved ahead of the writes (fallocate), so that concurrent
    writes are overwrites of reserved blocks, which ext4 and XFS run in parallel. Anything else, and
    every write once O_DIRECT failed, goes through fd.

    The O_DIRECT descriptor is a second open of the same file through /proc/self/fd (no path is
    looked up); release() closes it once no write can be running."""

    ALIGN = 4096
    RESERVE = 256 * 1024 * 1024     # reserved ahead of the writes at a time

    def __init__(self, fd):
        self.fd = fd
        self.direct_fd = None
        self.reserved = 0
        if hasattr(os, 'O_DIRECT'):
            try:
                self.direct_fd = os.open('/proc/self/fd/%d' % fd, os.O_RDWR | os.O_DIRECT | os.O_CLOEXEC)
            except OSError:
                self.direct_fd = None
        self.use_direct = self.preallocate = self.direct_fd is not None

    def reserve(self, end):
        """The file will be written up to end: reserve blocks beyond it. Call under the caller's
        allocation lock (ends only grow); the caller truncates the file to its real end at last."""
        if self.preallocate and end > self.reserved:
            start = max(self.reserved, os.fstat(self.fd).st_size)
            stop = end + self.RESERVE
            if _fallocate(self.fd, start, stop - start):
                self.reserved = stop
            else:
                self.preallocate = False

    def pwrite(self, view, offset):
        if self.use_direct and not (offset % self.ALIGN or len(view) % self.ALIGN):
            try:
                pwrite_all(self.direct_fd, view, offset)
                return
            except OSError as exc:
                if exc.errno != errno.EINVAL:
                    raise
                # The buffer or the file system does not allow O_DIRECT after all: buffered from
                # now on (the descriptor stays open until release(): other threads may use it).
                self.use_direct = False
        pwrite_all(self.fd, view, offset)

    def release(self):
        self.use_direct = False
        if self.direct_fd is not None:
            os.close(self.direct_fd)
            self.direct_fd = None


class _FileWrites:
    """A pump's writes into a direct destination (a file written by descriptor), on a thread of
    their own: the pump keeps its reads going while a write waits (the page cache throttles
    writers when the disk falls behind). A finished write wakes the pump's poll through a pipe.

    The writes of all pumps take turns (lock) unless the destination says its writes are mostly
    work of their own (serial_writes False: compression): concurrent buffered writes to one file
    spin on its inode lock in the kernel, 7 % of a full backup's CPU time, and one writer at a time
    keeps up."""

    def __init__(self, destination, lock):
        self.destination = destination
        self.lock = lock
        self.todo = queue.SimpleQueue()
        self.finished = collections.deque()     # (chunk buffer, exception or None)
        self.wake_fd, self._wake_w = os.pipe()
        os.set_blocking(self.wake_fd, False)
        self._thread = threading.Thread(target=self._run, name='virtops-write', daemon=True)
        self._thread.start()

    def submit(self, buf, pieces):
        """Write pieces, (view, offset) pairs of buf; buf comes back from collect() when they are done."""
        self.todo.put((buf, pieces))

    def _run(self):
        while True:
            item = self.todo.get()
            if item is None:
                return
            buf, pieces = item
            error = None
            try:
                if self.lock is None:
                    self._write(pieces)
                else:
                    with self.lock:
                        self._write(pieces)
            except Exception as exc:  # pylint: disable=broad-except
                error = exc
            self.finished.append((buf, error))
            os.write(self._wake_w, b'.')

    def _write(self, pieces):
        for view, offset in pieces:
            self.destination.pwrite(view, offset)

    def collect(self):
        try:
            while os.read(self.wake_fd, 4096):
                pass
        except BlockingIOError:
            pass
        done = []
        while self.finished:
            done.append(self.finished.popleft())
        return done

    def stop(self):
        """Wait for the writes submitted so far, then end the thread."""
        self.todo.put(None)
        self._thread.join()
        os.close(self.wake_fd)
        os.close(self._wake_w)


class _Pump:
    """One worker's asynchronous loop over its source and destination connections.

    Work items are chunks of up to MAX_REQUEST bytes. A chunk is read as several requests of
    transfer.request_size in flight at once (reads want many small requests), hashed when its last
    piece arrived, and written with one request per changed range (the qemu-nbd writer spends half
    the CPU time on 4 MiB writes that it spends on 256 KiB ones). At most transfer.depth reads are
    in flight, and at most HELD chunks are held (being read or written) per connection.

    Completion callbacks run inside this thread (during aio_notify_*) and only record what
    completed; the loop does the work, so no libnbd call is made from inside a callback.
    """

    HELD = 2

    def __init__(self, transfer, src, dst):
        self.t = transfer
        self.src = src
        self.dst = dst
        self.done = collections.deque()      # chunks whose every read completed: [buf, start, end, left]
        self.reads = 0                       # read requests in flight
        self.writes = 0                      # write and zero requests in flight
        self.held = 0                        # chunk buffers in use
        self.pool = []                       # free chunk buffers
        self.ended = False                   # the end marker was taken from the queue
        self.position = 0
        # A direct writer (a raw file, or a new qcow2 image) is written by a thread of this pump's
        # (_FileWrites), whose finished writes wake the poll; NBD handles are polled.
        self.file = dst if getattr(dst, 'direct', False) else None
        self.handles = [h for h in (src, dst) if h is not None and h is not self.file]
        self.file_writes = None
        if self.file is not None:
            self.file_writes = _FileWrites(
                self.file, transfer._write_lock if getattr(self.file, 'serial_writes', True) else None)

    def stop_file_writes(self):
        if self.file_writes is not None:
            self.file_writes.stop()
            self.file_writes = None

    def drain_queue(self):
        while not self.ended:
            if self.t._queue.get() is None:
                self.ended = True

    def _next(self, block):
        if self.ended:
            return None
        try:
            item = self.t._queue.get(block=block)
        except queue.Empty:
            return None
        if item is None:
            self.ended = True
        return item

    def run(self):
        t = self.t
        while t._error is None:
            while self.held < self.HELD and self.reads < t.depth:
                item = self._next(block=not (self.reads or self.writes or self.done))
                if item is None:
                    break
                self._issue(item)
            while self.done:
                self._written(self.done.popleft())
            if not (self.reads or self.writes):
                if self.ended and not self.done:
                    return
                continue
            t._check_deadline()
            self._wait()

    def _issue(self, item):
        kind, start, end = item
        self.position = start
        t = self.t
        if kind == 'data':
            # Anonymous mappings are page aligned, which O_DIRECT writes need (Qcow2Writer).
            buf = self.pool.pop() if self.pool else mmap.mmap(-1, t.chunk_size)
            view = memoryview(buf)
            chunk = [buf, start, end, 0]
            step = t.request_size
            for pos in range(start, end, step):
                stop = min(end, pos + step)
                self.src.aio_pread(nbd.Buffer.from_buffer(view[pos - start:stop - start]), pos,
                                   completion=self._read_done(chunk, pos, stop))
                chunk[3] += 1
                self.reads += 1
            self.held += 1
            return
        if t.compare:
            ranges = t.hashmap.set_zero_changed(start, end)
        else:
            t.hashmap.set_zero(start, end)
            ranges = [(start, end)] if t.write_zeroes else []
        t._count(zero=end - start, changed_zero=sum(e - s for s, e in ranges) if t.compare else 0)
        if self.file is not None and (t.write_zeroes or t.compare):
            for s, e in ranges:
                self.file.zero(s, e)
        elif self.dst is not None and (t.write_zeroes or t.compare):
            for s, e in ranges:
                self.dst.aio_zero(e - s, s, completion=self._write_done(None, s, e))
                self.writes += 1

    def _read_done(self, chunk, start, end):
        def read_done(error):
            self.reads -= 1
            if error.value:
                self.t._fail(NbdIoError('reading %d bytes at offset %d failed: %s' % (
                    end - start, start, os.strerror(error.value))))
            chunk[3] -= 1
            if not chunk[3]:
                self.done.append(chunk)
            return 1
        return read_done

    def _write_done(self, holder, start, end):
        def write_done(error):
            self.writes -= 1
            if error.value:
                self.t._fail(NbdIoError('writing %d bytes at offset %d failed: %s' % (
                    end - start, start, os.strerror(error.value))))
            if holder is not None:
                holder[1] -= 1
                if not holder[1]:
                    self._release(holder[0])
            return 1
        return write_done

    def _release(self, buf):
        self.pool.append(buf)
        self.held -= 1

    def _written(self, chunk):
        """Every read of a chunk completed: hash it, then write what must be written from the same buffer."""
        buf, start, end, dummy = chunk
        t = self.t
        if t._error is not None:
            return
        view = memoryview(buf)[:end - start]
        if t.compare:
            ranges = t.hashmap.update_changed(start, view)
        else:
            t.hashmap.update(start, view)
            ranges = [(start, end)]
        written = 0
        if self.file is not None and ranges:
            self.file_writes.submit(buf, [(view[s - start:e - start], s) for s, e in ranges])
            self.writes += 1
            written = sum(e - s for s, e in ranges)
        elif self.dst is not None and ranges:
            holder = [buf, len(ranges)]
            for s, e in ranges:
                self.dst.aio_pwrite(nbd.Buffer.from_buffer(view[s - start:e - start]), s,
                                    completion=self._write_done(holder, s, e))
                self.writes += 1
                written += e - s
        else:
            self._release(buf)
        t._count(read=end - start, written=written)

    def _wait(self):
        readers, writers = [], []
        for handle in self.handles:
            direction = handle.aio_get_direction()
            if direction & nbd.AIO_DIRECTION_READ:
                readers.append(handle.aio_get_fd())
            if direction & nbd.AIO_DIRECTION_WRITE:
                writers.append(handle.aio_get_fd())
        if self.file_writes is not None:
            readers.append(self.file_writes.wake_fd)
        ready_r, ready_w, dummy = select.select(readers, writers, [], 1.0)
        if self.file_writes is not None and self.file_writes.wake_fd in ready_r:
            for buf, error in self.file_writes.collect():
                self.writes -= 1
                if error is not None:
                    self.t._fail(error if isinstance(error, NbdIoError) else NbdIoError(
                        'writing into %s failed: %s' % (getattr(self.file, 'label', 'the destination'), error)))
                self._release(buf)
        for handle in self.handles:
            fd = handle.aio_get_fd()
            if fd in ready_r:
                handle.aio_notify_read()
            elif fd in ready_w:
                handle.aio_notify_write()


def select_dirty(bitmap_context):
    def select(found, end):
        return [(s, e) for s, e, flags in found[bitmap_context] if flags & DIRTY]
    return select


def select_top_layer(found, end):
    """With qemu-nbd --allocation-depth, depth 1 is the image itself (not its backing chain)."""
    return [(s, e) for s, e, depth in found[ALLOCATION_DEPTH] if depth == 1]


def select_all(found, end):
    return None
