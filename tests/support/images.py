# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Disk images and raw files: what qemu-img says about them, and byte-for-byte comparisons."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import json
import os
import subprocess

from support.host import MiB, sh


def same_content(expected_raw, image, fmt):
    """(True, '') when image (format fmt) holds exactly the bytes of the raw file expected_raw."""
    proc = subprocess.run(['qemu-img', 'compare', '-U', '-f', 'raw', '-F', fmt, str(expected_raw), str(image)],
                          stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
    return proc.returncode == 0, (proc.stdout + proc.stderr).decode('utf-8', 'replace').strip()


def assert_same_content(expected_raw, image, fmt):
    same, message = same_content(expected_raw, image, fmt)
    assert same, 'image %s (%s) differs from %s: %s' % (image, fmt, expected_raw, message)


def image_info(path, chain=False):
    args = ['qemu-img', 'info', '-U', '--output=json']
    if chain:
        args.append('--backing-chain')
    return json.loads(sh(*(args + [path])))


def image_bitmaps(path):
    """{name: flags} of the persistent dirty bitmaps in a qcow2 image."""
    data = image_info(path)
    bitmaps = (data.get('format-specific') or {}).get('data', {}).get('bitmaps') or []
    return dict((b['name'], b.get('flags', [])) for b in bitmaps)


def sha256_file(path):
    digest = hashlib.sha256()
    with open(path, 'rb') as src:
        for block in iter(lambda: src.read(4 * MiB), b''):
            digest.update(block)
    return digest.hexdigest()


def sparse_copy(src, dst):
    sh('cp', '--sparse=always', src, dst)


def fill(path, offset, length, pattern):
    """Write length bytes of the value pattern at offset into an existing file."""
    chunk = bytes([pattern]) * min(length, 4 * MiB)
    fd = os.open(str(path), os.O_RDWR)
    try:
        pos = 0
        while pos < length:
            n = min(len(chunk), length - pos)
            os.pwrite(fd, chunk[:n], offset + pos)
            pos += n
    finally:
        os.close(fd)


def differing_bytes(path_a, path_b, chunk=4 * MiB):
    """Bytes that differ between two raw files (a missing tail counts as different)."""
    size_a, size_b = os.path.getsize(path_a), os.path.getsize(path_b)
    diff = abs(size_a - size_b)
    with open(path_a, 'rb') as a, open(path_b, 'rb') as b:
        pos = 0
        end = min(size_a, size_b)
        while pos < end:
            n = min(chunk, end - pos)
            x, y = a.read(n), b.read(n)
            if x != y:
                diff += _count_differences(x, y)
            pos += n
    return diff


def _count_differences(x, y):
    n = 0
    step = 4096
    for i in range(0, len(x), step):
        xs, ys = x[i:i + step], y[i:i + step]
        if xs != ys:
            n += sum(1 for p, q in zip(xs, ys) if p != q)
    return n
