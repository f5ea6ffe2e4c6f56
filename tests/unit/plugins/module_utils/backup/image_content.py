# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What QEMU reads from an image, for the unit tests that write images."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import subprocess


def qcow2_content(path, tmp_path):
    """The guest-visible bytes of the image at path, as qemu-img reads them (through a raw copy)."""
    raw = str(tmp_path / 'check.raw')
    subprocess.run(['qemu-img', 'convert', '-O', 'raw', path, raw], check=True)
    with open(raw, 'rb') as src:
        content = src.read()
    os.unlink(raw)
    return content
