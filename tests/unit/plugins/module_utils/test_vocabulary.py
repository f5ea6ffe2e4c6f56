# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests of the shared vocabulary: the local-URI test, the disk model, the one base
exception and the fixed set of failure reasons (documented in README.md, used as constants)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re

import pytest

from ansible_collections.virtops.libvirt.plugins.module_utils import _errors
from ansible_collections.virtops.libvirt.plugins.module_utils._disks import xml_disks
from ansible_collections.virtops.libvirt.plugins.module_utils._libvirt import VirtError
from ansible_collections.virtops.libvirt.plugins.module_utils._vocabulary import is_local_uri
from ansible_collections.virtops.libvirt.plugins.module_utils.backup import (
    _blockhash, _export, _firmware, _images, _nbdio, _repository, _retention, _s3)

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..', '..', '..'))


@pytest.mark.parametrize('uri, local', [
    ('qemu:///system', True),
    ('qemu:///session', True),
    ('test:///default', True),
    ('qemu+unix:///system?socket=/run/libvirt/libvirt-sock', True),
    ('qemu://localhost/system', True),
    ('qemu+tcp://127.0.0.1:16509/system', True),
    ('qemu+tls://[::1]/system', True),
    ('qemu+ssh://root@hv1/system', False),
    ('qemu+tcp://hv1.example.com/system', False),
    ('QEMU+SSH://HV1/system', False),
    (None, True),
])
def test_is_local_uri(uri, local):
    assert is_local_uri(uri) is local


DOMAIN = """<domain type='kvm'><name>d</name><devices>
  <disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='/img/a.qcow2'/>
    <target dev='vda'/></disk>
  <disk type='block' device='lun'><source dev='/dev/sdb'/><target dev='sda'/><shareable/></disk>
  <disk type='network' device='disk'><driver type='raw'/>
    <source protocol='nbd' name='exp'><host name='h'/></source><target dev='vdb'/></disk>
  <disk type='volume' device='disk'><source pool='p' volume='v'/><target dev='vdc'/></disk>
  <disk device='disk'><source file='/img/untyped.raw'/><target dev='vdd'/></disk>
  <disk type='file' device='cdrom'><target dev='hdc'/><readonly/></disk>
  <disk type='file' device='disk'><source file='/img/nameless'/></disk>
</devices></domain>"""


def test_disk_model():
    disks = dict((d.name, d) for d in xml_disks(DOMAIN))
    assert sorted(disks) == ['hdc', 'sda', 'vda', 'vdb', 'vdc', 'vdd']
    vda, sda, vdb, vdc, vdd, hdc = (disks[n] for n in ('vda', 'sda', 'vdb', 'vdc', 'vdd', 'hdc'))
    assert (vda.type, vda.device, vda.format, vda.path, vda.source) == (
        'file', 'disk', 'qcow2', '/img/a.qcow2', '/img/a.qcow2')
    assert (sda.type, sda.device, sda.path, sda.shareable, sda.format) == ('block', 'lun', '/dev/sdb', True, None)
    assert (vdb.type, vdb.path, vdb.source, vdb.format) == ('network', None, 'exp', 'raw')
    assert (vdc.type, vdc.path, vdc.source) == ('volume', None, 'v')
    assert (vdd.type, vdd.path) == ('file', '/img/untyped.raw')   # libvirt's default type
    assert (hdc.device, hdc.source, hdc.readonly) == ('cdrom', None, True)


@pytest.mark.parametrize('cls', [
    _blockhash.BlockHashError, _export.ExportError, _firmware.FirmwareError, _images.ImageError,
    _images.NotPlain, _nbdio.NbdIoError, _repository.RepositoryError, _repository.LockedError,
    _retention.RetentionError, _s3.S3Error,
])
def test_backup_errors_are_virt_errors(cls):
    err = cls('it broke')
    assert isinstance(err, VirtError)
    assert (err.msg, str(err), err.result()) == ('it broke', 'it broke', dict(msg='it broke'))


def _constants():
    return dict((name, value) for name, value in vars(_errors).items() if name.startswith('REASON_'))


def test_reasons_are_distinct_and_documented():
    values = list(_constants().values())
    assert len(values) == len(set(values))
    with open(os.path.join(ROOT, 'README.md')) as readme:
        text = readme.read()
    section = text.split('## Failure reasons', 1)[1].split('\n## ', 1)[0]
    documented = re.findall(r'^\| `([^`]+)` \|', section, re.M)
    assert sorted(documented) == sorted(values)


def test_reasons_are_written_as_constants():
    literal = re.compile(r"""reason=['"]""")
    found = []
    for top, _dirs, files in os.walk(os.path.join(ROOT, 'plugins', 'module_utils')):
        for name in files:
            if name.endswith('.py'):
                path = os.path.join(top, name)
                with open(path) as source:
                    for number, line in enumerate(source, 1):
                        # A backup's reason (why this level) is a sentence, not a failure reason.
                        if literal.search(line) and 'synthetic full' not in line:
                            found.append('%s:%d' % (os.path.relpath(path, ROOT), number))
    assert found == []
