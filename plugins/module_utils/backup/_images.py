# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Private to the virtops.libvirt collection: may change without notice.
"""qemu-img for image work, and hashing a whole image through qemu-nbd."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import subprocess

from ansible_collections.virtops.libvirt.plugins.module_utils.backup import _blockhash, _nbdio


class ImageError(Exception):
    pass


def run_qemu_img(args, what):
    """Run qemu-img with an argument list (never a shell line); its stdout, or ImageError."""
    proc = subprocess.run(['qemu-img'] + list(args), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, check=False)
    if proc.returncode != 0:
        raise ImageError('%s failed: %s' % (what, proc.stderr.decode('utf-8', 'replace').strip()))
    return proc.stdout.decode('utf-8', 'replace')


def create(path, size, backing=None):
    """A new qcow2 image; backing is a path relative to the image's directory (not opened now)."""
    args = ['create', '-q', '-f', 'qcow2']
    if backing:
        args += ['-u', '-b', backing, '-F', 'qcow2']
    args += [path, str(size)]
    run_qemu_img(args, 'creating image %s' % path)


def info(path, force_share=False):
    args = ['info', '--output=json']
    if force_share:
        args.append('-U')
    return json.loads(run_qemu_img(args + [path], 'reading image %s' % path))


def in_use(path):
    """True when another process (a running domain) holds the image's lock."""
    proc = subprocess.run(['qemu-img', 'info', path], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, check=False)
    return proc.returncode != 0 and b'lock' in proc.stderr


def check(path):
    """qemu-img check: (ok, message)."""
    proc = subprocess.run(['qemu-img', 'check', '--output=json', path], stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
    if proc.returncode == 0:
        return True, 'no errors'
    out = proc.stdout.decode('utf-8', 'replace').strip()
    err = proc.stderr.decode('utf-8', 'replace').strip()
    try:
        data = json.loads(out)
        return False, 'check errors: %s, leaks: %s' % (data.get('check-errors', 0), data.get('leaks', 0))
    except ValueError:
        return False, err or out or 'qemu-img check exit code %d' % proc.returncode


def convert(source, dest, fmt):
    """Flatten an image chain into one image of format fmt (sparse)."""
    run_qemu_img(['convert', '-q', '-f', 'qcow2', '-O', fmt, '-S', '64k', source, dest],
                 'writing %s from %s' % (dest, source))


def hash_image(path, size, block_size, fmt='qcow2', workers=_nbdio.DEFAULT_WORKERS, workdir=None,
               force_share=False):
    """The block hash map of what the image (with its backing chain) holds."""
    result = _blockhash.BlockHashMap(size, block_size)
    with _nbdio.QemuNbdServer(path, fmt=fmt, readonly=True, clients=workers, workdir=workdir,
                              force_share=force_share) as server:
        transfer = _nbdio.Transfer(server.export(), size, result, workers=workers)
        transfer.run([], _nbdio.select_all)
    return result
