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

import json
import os
import stat
import struct
import subprocess

from ansible_collections.virtops.libvirt.plugins.module_utils.backup import _blockhash, _nbdio


class ImageError(Exception):
    pass


QCOW2_MAGIC = b'QFI\xfb'
# Incompatible feature bits this reader accepts: dirty (0), compression type (3), extended L2 (4).
# Corrupt (1) and, above all, an external data file (2) are refused, like any bit it does not know.
QCOW2_INCOMPATIBLE_OK = (1 << 0) | (1 << 3) | (1 << 4)
QCOW2_HEADER = struct.Struct('>4sIQIIQIIQQIIQQQQII')


def run_qemu_img(args, what, pass_fds=()):
    """Run qemu-img with an argument list (never a shell line); its stdout, or ImageError."""
    proc = subprocess.run(['qemu-img'] + list(args), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, check=False, pass_fds=tuple(pass_fds))
    if proc.returncode != 0:
        raise ImageError('%s failed: %s' % (what, proc.stderr.decode('utf-8', 'replace').strip()))
    return proc.stdout.decode('utf-8', 'replace')


def create(path, size, backing=None, fd=None):
    """A new qcow2 image; backing is a path relative to the image's directory (not opened now).

    fd: the file, already created (O_EXCL, private) by the caller: qemu-img writes into it by
    /dev/fd/N and never opens the path itself.
    """
    args = ['create', '-q', '-f', 'qcow2']
    if backing:
        args += ['-u', '-b', backing, '-F', 'qcow2']
    args += ['--', fd_path(fd) if fd is not None else path, str(size)]
    run_qemu_img(args, 'creating image %s' % path, pass_fds=[fd] if fd is not None else ())


def fd_path(fd):
    """The name under which a child process that inherited fd opens that very file again."""
    return '/dev/fd/%d' % fd


def qcow2_header(fd, label):
    """The fields of a qcow2 header this reader relies on: version, size, backing file name,
    incompatible features, encryption. ImageError for anything that is not a plain qcow2."""
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
    if crypt:
        raise ImageError('%s is an encrypted qcow2 image; this repository format stores none' % label)
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
    return dict(version=version, size=size, backing=backing)


class Layer:
    """One image file of a chain, opened by its caller; expected_backing is what its header must say."""

    def __init__(self, fd, label, size, expected_backing=None):
        self.fd = fd
        self.label = label
        self.size = size
        self.expected_backing = expected_backing


class ImageChain:
    """Layers (newest first) handed to QEMU by file descriptor, each one's backing given explicitly.

    Owns the descriptors: close() (or the with statement) closes them.
    """

    def __init__(self, layers, fmt='qcow2', locking=True):
        self.layers = list(layers)
        self.fmt = fmt
        self.locking = locking
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

    def _check(self):
        for layer in self.layers:
            st = os.fstat(layer.fd)
            if not stat.S_ISREG(st.st_mode):
                raise ImageError('%s is not a regular file' % layer.label)
            if self.fmt != 'qcow2':
                continue
            header = qcow2_header(layer.fd, layer.label)
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
                                allocation_depth=allocation_depth, pass_fds=chain.fds, label=chain.label)


def info(path, force_share=False):
    args = ['info', '--output=json']
    if force_share:
        args.append('-U')
    return json.loads(run_qemu_img(args + ['--', path], 'reading image %s' % path))


def in_use(chain):
    """True when another process (a running domain) holds the lock of an ImageChain's file."""
    proc = subprocess.run(['qemu-img', 'info', '--', chain.filename()], stdin=subprocess.DEVNULL,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False, pass_fds=tuple(chain.fds))
    return proc.returncode != 0 and b'lock' in proc.stderr


def check(chain):
    """qemu-img check of the top layer of an ImageChain: (ok, message)."""
    proc = subprocess.run(['qemu-img', 'check', '--output=json', '--image-opts', '--',
                           'driver=qcow2,file.driver=file,file.filename=%s,backing=' % fd_path(chain.fds[0])],
                          stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False,
                          pass_fds=tuple(chain.fds))
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
    run_qemu_img(['convert', '-q', '-n', '--target-is-zero', '-O', fmt, '-S', '64k', '--',
                  chain.filename(), fd_path(dest_fd)],
                 'writing %s from %s' % (dest_label, chain.label), pass_fds=chain.fds + [dest_fd])


def hash_image(chain, size, block_size, workers=_nbdio.DEFAULT_WORKERS, workdir=None):
    """The block hash map of what an ImageChain holds; its exported size must be size."""
    result = _blockhash.BlockHashMap(size, block_size)
    with serve(chain, clients=workers, workdir=workdir) as server:
        transfer = _nbdio.Transfer(server.export(), size, result, workers=workers)
        transfer.run([], _nbdio.select_all)
    return result
