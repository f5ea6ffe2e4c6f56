# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The backup writer: O_DIRECT where the file system has it, the page cache where not; both
write the same bytes. Real qemu-img, qemu-nbd and libnbd."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import shutil
import subprocess

import pytest

nbd = pytest.importorskip('nbd')

from ansible_collections.virtops.libvirt.plugins.module_utils.backup import _nbdio  # noqa: E402

pytestmark = pytest.mark.skipif(not shutil.which('qemu-nbd'), reason='qemu-nbd is not installed')

TMPFS = '/dev/shm'


def _fs_type(path):
    best, kind = '', None
    with open('/proc/mounts') as mounts:
        for line in mounts:
            fields = line.split()
            if path.startswith(fields[1]) and len(fields[1]) > len(best):
                best, kind = fields[1], fields[2]
    return kind


def _write_and_read(directory):
    image = os.path.join(directory, 'w.qcow2')
    subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2', image, '4M'], check=True)
    data = bytes(range(256)) * 4096  # 1 MiB, not zero (zeroes would become zero clusters)
    with _nbdio.QemuNbdServer(image, readonly=False, clients=1, workdir=directory) as writer:
        handle = writer.export().connect()
        handle.pwrite(data, 65536)
        handle.pwrite(b'\x07' * 512, 3 * 1024 * 1024 + 512)  # unaligned: qemu does the read-modify-write
        handle.shutdown()
        direct = writer.direct_io
    raw = os.path.join(directory, 'w.raw')
    subprocess.run(['qemu-img', 'convert', '-O', 'raw', image, raw], check=True)
    with open(raw, 'rb') as f:
        content = f.read()
    return direct, content


def _expected():
    out = bytearray(4 * 1024 * 1024)
    out[65536:65536 + 1024 * 1024] = bytes(range(256)) * 4096
    out[3 * 1024 * 1024 + 512:3 * 1024 * 1024 + 1024] = b'\x07' * 512
    return bytes(out)


def test_writer_uses_o_direct_on_a_disk_file_system(tmp_path):
    if _fs_type(str(tmp_path)) in ('tmpfs', None):
        pytest.skip('the temporary directory is on tmpfs')
    assert _nbdio.direct_io_supported(str(tmp_path))
    direct, content = _write_and_read(str(tmp_path))
    assert direct
    assert content == _expected()
    assert sorted(os.listdir(str(tmp_path))) == ['w.qcow2', 'w.raw']


def test_writer_without_o_direct_writes_the_same_bytes(tmp_path, monkeypatch):
    # File systems without O_DIRECT (older tmpfs, some FUSE and network file systems) get the
    # page-cache writer; this host's file systems all have O_DIRECT, so the probe is overruled.
    monkeypatch.setattr(_nbdio, 'direct_io_supported', lambda directory: False)
    direct, content = _write_and_read(str(tmp_path))
    assert not direct
    assert content == _expected()


@pytest.mark.skipif(_fs_type(TMPFS) != 'tmpfs', reason='no tmpfs at /dev/shm')
def test_writer_on_tmpfs():
    # tmpfs has O_DIRECT since Linux 6.6 and not before: whatever the probe finds, the bytes are right
    import tempfile
    directory = tempfile.mkdtemp(dir=TMPFS)
    try:
        direct, content = _write_and_read(directory)
        assert direct == _nbdio.direct_io_supported(directory)
        assert content == _expected()
        # the probe left no file behind
        assert sorted(os.listdir(directory)) == ['w.qcow2', 'w.raw']
    finally:
        shutil.rmtree(directory)


def test_probe_of_a_missing_directory_says_no(tmp_path):
    assert not _nbdio.direct_io_supported(str(tmp_path / 'missing'))
