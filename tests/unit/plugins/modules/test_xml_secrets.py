# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Passwords inside the user's XML (graphics passwd and the like) never leave virt_domain or
virt_domain_device in clear: not in results, diffs, failures, nor the invocation the module logs
on the host (issue 10). The modules run end to end on test:///default."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os

import pytest

libvirt = pytest.importorskip('libvirt')
pytest.importorskip('lxml')

from ansible.module_utils import basic  # noqa: E402
from ansible.module_utils.common.parameters import remove_values  # noqa: E402

from ansible_collections.virtops.libvirt.plugins.module_utils.xml import _secrets  # noqa: E402
from ansible_collections.virtops.libvirt.plugins.module_utils._domain import DOMAIN_ARGS  # noqa: E402
from ansible_collections.virtops.libvirt.plugins.module_utils._libvirt import VirtModule  # noqa: E402
from ansible_collections.virtops.libvirt.plugins.modules import virt_domain, virt_domain_device  # noqa: E402

from ansible_collections.virtops.libvirt.tests.unit.plugins.modules.module_args import patch_module_args  # noqa: E402

URI = 'test:///default'
VNC_PW = 'Vnc-s3cret'
SPICE_PW = 'Sp1ce&s3cret'
GRAPHICS = ("<graphics type='vnc' port='-1' autoport='yes' passwd='%s'/>"
            "<graphics type='spice' autoport='yes' passwd='%s'/>" % (VNC_PW, SPICE_PW.replace('&', '&amp;')))

DOMAIN = """<domain type='test'>
  <name>{name}</name>
  <memory unit='MiB'>64</memory>
  <os><type arch='x86_64'>hvm</type></os>
  <devices>{devices}</devices>
</domain>"""


@pytest.fixture
def name():
    conn = libvirt.open(URI)
    value = 'ut-secrets-%d' % os.getpid()
    yield value
    try:
        conn.lookupByName(value).undefine()
    except libvirt.libvirtError:
        pass
    conn.close()


def run_module(module, args, capsys, check_mode=False, diff=False):
    """The module's JSON output as text (to search for a password) and parsed."""
    args = dict(args, uri=URI, _ansible_check_mode=check_mode, _ansible_diff=diff)
    with patch_module_args(args):
        with pytest.raises(SystemExit):
            module.main()
    out = capsys.readouterr().out
    return out, json.loads(out)


def assert_masked(out, *secrets):
    for secret in secrets:
        assert secret not in out
        assert secret.replace('&', '&amp;') not in out
    assert '********' in out


def test_secrets_of_xml():
    xml = ("<domain><devices>" + GRAPHICS +
           "<graphics type='rdp' autoport='yes' passwd='Rdp-pw'/>"
           "<disk type='network'><source protocol='https' name='x'>"
           "<cookies><cookie name='token'>C00kie</cookie></cookies>"
           "<auth username='u' password='Auth-pw'><secret type='iscsi' usage='lun0'/></auth>"
           "</source></disk><foo><bar passwd='Deep-pw'/><secret>Lit3ral</secret></foo>"
           "<graphics type='vnc' passwd=''/></devices></domain>")
    found = _secrets.secrets(xml)
    for value in (VNC_PW, SPICE_PW, SPICE_PW.replace('&', '&amp;'), 'Rdp-pw', 'C00kie', 'Auth-pw',
                  'Deep-pw', 'Lit3ral'):
        assert value in found, value
    # Names of secrets (usage, uuid, type) are not secret; an empty password hides nothing.
    assert not {'', 'lun0', 'iscsi', 'token', 'u'} & set(found)


def test_secrets_of_unparsable_or_missing_xml():
    # The module reports broken XML itself, with the XML in its invocation: its passwords are
    # still found, by pattern.
    assert set(_secrets.secrets("<domain><graphics passwd='Br0ken' type='vnc'></domain")) == {'Br0ken'}
    assert set(_secrets.secrets('<graphics password="x&amp;y"')) >= {'x&amp;y'}
    for nothing in (None, '', '   ', 42):
        assert not _secrets.secrets(nothing)


def test_module_knows_the_secrets_before_it_returns(name):
    xml = DOMAIN.format(name=name, devices=GRAPHICS)
    with patch_module_args(dict(xml=xml, uri=URI)):
        vm = VirtModule(argument_spec=DOMAIN_ARGS, secrets=_secrets.xml_option_secrets)
    assert VNC_PW in vm.module.no_log_values and SPICE_PW in vm.module.no_log_values
    diff = dict(before='', after=xml)
    masked = remove_values(dict(diff=diff, msg='graphics passwd %s' % VNC_PW), vm.module.no_log_values)
    assert_masked(json.dumps(masked), VNC_PW, SPICE_PW)


def test_virt_domain_masks_graphics_passwords(name, capsys):
    args = dict(xml=DOMAIN.format(name=name, devices=GRAPHICS), state='present')
    out, check = run_module(virt_domain, args, capsys, check_mode=True, diff=True)
    assert check['changed'] and not check.get('failed'), check
    assert_masked(out, VNC_PW, SPICE_PW)
    assert '********' in json.dumps(check['diff']) and '********' in check['invocation']['module_args']['xml']
    out, real = run_module(virt_domain, args, capsys, diff=True)
    assert real['changed'] and not real.get('failed'), real
    assert_masked(out, VNC_PW, SPICE_PW)


def test_virt_domain_masks_passwords_when_the_options_are_wrong(name, capsys):
    # AnsibleModule fails on a bad option inside its constructor: the secrets must be known by then.
    args = dict(xml=DOMAIN.format(name=name, devices=GRAPHICS), state='bogus')
    out, result = run_module(virt_domain, args, capsys)
    assert result['failed'] and 'state' in result['msg']
    assert_masked(out, VNC_PW, SPICE_PW)


def test_virt_domain_masks_passwords_in_the_invocation_log(name, capsys, monkeypatch):
    # AnsibleModule logs its invocation (host journal or syslog) at the end of its constructor.
    logged = []
    monkeypatch.setattr(basic, 'has_journal', False)
    monkeypatch.setattr(basic.AnsibleModule, '_log_to_syslog', lambda self, msg: logged.append(msg))
    run_module(virt_domain, dict(xml=DOMAIN.format(name=name, devices=GRAPHICS)), capsys, check_mode=True)
    invoked = [m for m in logged if 'Invoked with' in m]
    assert invoked
    assert_masked(' '.join(invoked), VNC_PW, SPICE_PW)


def test_virt_domain_device_masks_graphics_passwords(name, capsys):
    conn = libvirt.open(URI)
    conn.defineXML(DOMAIN.format(name=name, devices=''))
    conn.close()
    args = dict(name=name, xml="<graphics type='vnc' port='-1' autoport='yes' passwd='%s'/>" % VNC_PW)
    out, check = run_module(virt_domain_device, args, capsys, check_mode=True, diff=True)
    assert check['changed'] and not check.get('failed'), check
    assert_masked(out, VNC_PW)
    assert '********' in json.dumps(check['diff']) and '********' in check['invocation']['module_args']['xml']
    out, broken = run_module(virt_domain_device, dict(args, xml=args['xml'][:-2]), capsys)
    assert broken['failed'] and 'well-formed' in broken['msg']
    assert_masked(out, VNC_PW)
