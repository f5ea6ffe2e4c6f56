# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The pure parts of instant recovery and backup exports: the explicit backing chain written into the
new domain's XML, the blockdev description every node of which is read-only, what is compared to
decide that a running export already serves the point, and how a stale state is told apart."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os

import pytest
from lxml import etree

from ansible_collections.virtops.libvirt.plugins.module_utils.backup import _export, _instant


class FakeRepo:
    path = '/srv/backup/vms'
    id = '3f0c6a9e-8d2b-4c1e-9a55-0d7c2b1e4f60'


class FakeBackup:
    id = '20261206T101500Z'
    chain = '20261206T000000Z'
    manifest = dict(domain='web01')

    def disk(self, name):
        return dict(name=name, virtual_size=4 << 30, image_digest='ab' * 32)


NEW_XML = """<domain type='qemu'><name>web01-rescue</name><devices>
<disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='/d/vda.qcow2'/>
<target dev='vda' bus='virtio'/></disk>
<disk type='file' device='cdrom'><target dev='sda' bus='sata'/><readonly/></disk>
</devices></domain>"""


def spec(**kw):
    return _export.desired('instant-web01-rescue', FakeRepo(), FakeBackup(), ['vda'], qemu_group=64055, **kw)


def test_backing_chain_is_explicit_and_ends():
    root = etree.fromstring(_instant._with_backing(NEW_XML, spec(), FakeBackup()).encode())
    disk = root.find('./devices/disk')
    store = disk.find('backingStore')
    assert store.get('type') == 'network' and store.find('format').get('type') == 'raw'
    source = store.find('source')
    assert (source.get('protocol'), source.get('name')) == ('nbd', 'vda')
    assert source.find('host').attrib == {'transport': 'unix',
                                          'socket': '/run/virtops-libvirt/exports/instant-web01-rescue/nbd.sock'}
    end = store.find('backingStore')
    assert end is not None and len(end) == 0 and not end.attrib       # the chain ends here: nothing probed
    assert root.find("./devices/disk[@device='cdrom']/backingStore") is None
    marker = root.find('./metadata/{%s}restore' % _instant.METADATA_NS)
    assert marker.get('backup') == FakeBackup.id and marker.get('export') == 'instant-web01-rescue'


def test_every_node_read_only():
    chain = {'driver': 'qcow2', 'file': {'driver': 'file', 'filename': '/dev/fd/5'},
             'backing': {'driver': 'qcow2', 'file': {'driver': 'file', 'filename': '/dev/fd/6'}, 'backing': None}}
    node = _export._read_only(chain)
    assert node['read-only'] and node['file']['read-only']
    assert node['backing']['read-only'] and node['backing']['file']['read-only']
    assert node['backing']['backing'] is None


def test_same_compares_what_is_served_not_how_it_runs():
    want = spec()
    state = dict(want, pid=1234, pid_start=99, started='x', alive=True, version=1)
    assert _export.same(want, state)
    assert not _export.same(want, dict(state, backup='20261207T000000Z'))
    assert not _export.same(want, dict(state, disks=[]))
    assert not _export.same(want, None)


def test_uris():
    disks = _export.connect_info(spec())
    assert disks[0]['uri'] == 'nbd+unix:///vda?socket=/run/virtops-libvirt/exports/instant-web01-rescue/nbd.sock'
    tcp = _export.desired('x', FakeRepo(), FakeBackup(), ['vda'], transport='tcp', bind_address='::1', port=10809,
                          tls_dir='/etc/pki/x')
    assert _export.connect_info(tcp)[0]['uri'] == 'nbds://[::1]:10809/vda'
    with pytest.raises(_export.ExportError):
        _export.desired('x', FakeRepo(), FakeBackup(), ['vda'], transport='tcp', bind_address='::1', port=1)


@pytest.mark.parametrize('name', ['../x', '', '.hidden', 'a/b', 'x' * 101])
def test_bad_names(name):
    with pytest.raises(_export.ExportError):
        _export.check_export_name(name)


def test_stale_state_is_not_alive(tmp_path, monkeypatch):
    monkeypatch.setattr(_export, 'EXPORT_ROOT', str(tmp_path))
    directory = tmp_path / 'old'
    directory.mkdir(mode=0o700)
    # Our own pid: alive, but not a qemu-storage-daemon of that directory.
    (directory / 'state.json').write_text(json.dumps(dict(version=1, pid=os.getpid(),
                                                          pid_start=_export._proc_start(os.getpid()))))
    state = _export.current('old')
    assert state['alive'] is False
    assert _export.stop('old') is True and not directory.exists()
    assert _export.current('old') is None and _export.stop('old') is False
