# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The virt_checkpoint and virt_checkpoint_info modules end to end on test:///default.

The modules open their own connection to test:///default; the driver keeps one shared state
per process while a connection is open, so the fixture's domain is what they see.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os

import pytest

libvirt = pytest.importorskip('libvirt')

from ansible_collections.virtops.libvirt.plugins.modules import virt_checkpoint, virt_checkpoint_info  # noqa: E402
from ansible_collections.virtops.libvirt.tests.unit.plugins.modules.module_args import patch_module_args  # noqa: E402

URI = 'test:///default'

DOMAIN_XML = """
<domain type='test'>
  <name>{name}</name>
  <memory unit='MiB'>64</memory>
  <os><type>hvm</type></os>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='/images/{name}-a.qcow2'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw'/>
      <source file='/images/{name}-b.raw'/>
      <target dev='vdb' bus='virtio'/>
    </disk>
  </devices>
</domain>
"""


@pytest.fixture
def dom():
    conn = libvirt.open(URI)
    name = 'it-ck-mod-%d' % os.getpid()
    d = conn.defineXML(DOMAIN_XML.format(name=name))
    d.create()
    yield d
    for chk in reversed(d.listAllCheckpoints(libvirt.VIR_DOMAIN_CHECKPOINT_LIST_TOPOLOGICAL)):
        chk.delete(libvirt.VIR_DOMAIN_CHECKPOINT_DELETE_METADATA_ONLY)
    if d.isActive():
        d.destroy()
    d.undefine()
    conn.close()


def run_module(module, args, capsys, check_mode=False, diff=False):
    args = dict(args, uri=URI, _ansible_check_mode=check_mode, _ansible_diff=diff)
    with patch_module_args(args):
        with pytest.raises(SystemExit):
            module.main()
    out = capsys.readouterr().out
    return json.loads(out)


def test_create_with_check_and_diff(dom, capsys):
    args = dict(domain=dom.name(), name='c1', description='d', disks=[dict(name='vda'), dict(name='vdb', checkpoint='no')])
    check = run_module(virt_checkpoint, args, capsys, check_mode=True, diff=True)
    assert check['changed'] and not check.get('failed')
    assert check['diff']['before'] == {}
    assert dom.listAllCheckpoints() == []
    real = run_module(virt_checkpoint, args, capsys)
    assert real['changed'] and 'diff' not in real
    assert real['checkpoint']['disks'] == check['checkpoint']['disks']
    again = run_module(virt_checkpoint, args, capsys, check_mode=True)
    assert not again['changed']
    info = run_module(virt_checkpoint_info, dict(domain=dom.name()), capsys)
    assert not info['changed']
    assert [c['xml'] for c in info['checkpoints']] == [real['checkpoint']['xml']]
    assert info['checkpoints'][0]['size'] == {}


def test_unquoted_yaml_no_is_accepted(dom, capsys):
    # YAML reads an unquoted no as False; Ansible maps it back to the choice 'no'.
    args = dict(domain=dom.name(), name='c1', disks=[dict(name='vda'), dict(name='vdb', checkpoint=False)])
    result = run_module(virt_checkpoint, args, capsys)
    assert result['changed'] and not result.get('failed'), result
    assert result['checkpoint']['disks'][1] == dict(name='vdb', checkpoint='no', bitmap=None)


def test_raw_disk_fails_clearly(dom, capsys):
    result = run_module(virt_checkpoint, dict(domain=dom.name(), name='c1'), capsys)
    assert result['failed']
    assert 'disk vdb' in result['msg'] and 'format raw' in result['msg']
    assert result['disks'] == ['vdb']


@pytest.mark.parametrize('args, fragment', [
    (dict(name='c1', children=True), 'children applies only to state=absent'),
    (dict(name='c1', metadata_only=True), 'metadata_only applies only to state=absent'),
    (dict(name='c1', state='absent', description='x'), 'description applies only to state=present'),
    (dict(name='c1', state='absent', disks=[dict(name='vda')]), 'disks applies only to state=present'),
    (dict(state='absent', redefine_xml='<domaincheckpoint/>'), 'state is absent but all of the following are missing: name'),
    (dict(), 'one of the following is required: name, redefine_xml'),
    (dict(redefine_xml='<x/>', description='d'), 'parameters are mutually exclusive: redefine_xml|description'),
    (dict(name='c1', disks=[dict(name='vda', checkpoint='sometimes')]), 'value of checkpoint must be one of'),
])
def test_option_errors(dom, capsys, args, fragment):
    result = run_module(virt_checkpoint, dict(args, domain=dom.name()), capsys)
    assert result['failed']
    assert fragment in result['msg']


def test_missing_domain(capsys):
    result = run_module(virt_checkpoint_info, dict(domain='it-ck-mod-no-such-domain'), capsys)
    assert result['failed'] and 'it-ck-mod-no-such-domain' in result['msg']
