# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The virt_network and virt_network_info modules end to end on test:///default.

The modules open their own connection to test:///default; the driver keeps one shared state
per process while a connection is open, so the fixture's connection keeps what they define.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os

import pytest

libvirt = pytest.importorskip('libvirt')
pytest.importorskip('lxml')

from ansible_collections.virtops.libvirt.plugins.modules import virt_network, virt_network_info  # noqa: E402
from ansible_collections.virtops.libvirt.tests.unit.plugins.modules.module_args import patch_module_args  # noqa: E402

URI = 'test:///default'

XML = """
<network>
  <name>{name}</name>
  <bridge name='virbr-utm'/>
  <ip address='10.199.0.1' netmask='255.255.255.0'>
    <dhcp><range start='10.199.0.10' end='10.199.0.20'/>{host}</dhcp>
  </ip>
</network>
"""


@pytest.fixture
def name():
    conn = libvirt.open(URI)
    value = 'ut-net-mod-%d' % os.getpid()
    yield value
    try:
        net = conn.networkLookupByName(value)
    except libvirt.libvirtError:
        net = None
    if net is not None:
        if net.isActive():
            net.destroy()
        if net.isPersistent():
            net.undefine()
    conn.close()


def run_module(module, args, capsys, check_mode=False, diff=False):
    args = dict(args, uri=URI, _ansible_check_mode=check_mode, _ansible_diff=diff)
    with patch_module_args(args):
        with pytest.raises(SystemExit):
            module.main()
    return json.loads(capsys.readouterr().out)


def test_define_update_info_absent(name, capsys):
    args = dict(xml=XML.format(name=name, host=''), state='active', autostart=True)
    check = run_module(virt_network, args, capsys, check_mode=True, diff=True)
    assert check['changed'] and check['actions'] == ['define', 'start', 'autostart']
    assert check['diff']['before'] == '# state: absent\n# autostart: no\n'
    real = run_module(virt_network, args, capsys)
    assert real['changed'] and real['network']['active'] and 'diff' not in real
    assert not run_module(virt_network, args, capsys)['changed']

    host = "<host mac='52:54:00:00:00:31' ip='10.199.0.5'/>"
    args = dict(xml=XML.format(name=name, host=host), state='active')
    update = run_module(virt_network, args, capsys)
    assert update['changed'] and update['actions'] == ['update']
    assert update['updates'][0]['section'] == 'ip-dhcp-host'
    assert not run_module(virt_network, args, capsys)['changed']

    info = run_module(virt_network_info, dict(name=name), capsys)
    assert not info['changed']
    [net] = info['networks']
    assert net['autostart'] and net['ips'][0]['dhcp_hosts'][0]['ip'] == '10.199.0.5'

    gone = run_module(virt_network, dict(name=name, state='absent'), capsys)
    assert gone['changed'] and gone['network'] == {}
    assert not run_module(virt_network, dict(name=name, state='absent'), capsys)['changed']
    assert run_module(virt_network_info, dict(name=name), capsys)['networks'] == []


def test_failures_are_clear(name, capsys):
    result = run_module(virt_network, dict(xml='<network><name>%s' % name), capsys)
    assert result['failed'] and 'not well-formed' in result['msg']
    result = run_module(virt_network, dict(name=name + 'x', xml=XML.format(name=name, host='')),
                        capsys)
    assert result['failed'] and 'must agree' in result['msg']
    result = run_module(virt_network, dict(), capsys)
    assert result['failed'] and 'one of the following is required: name, xml' in result['msg']
    result = run_module(virt_network, dict(name=name, state='active'), capsys)
    assert result['failed'] and 'does not exist' in result['msg']
