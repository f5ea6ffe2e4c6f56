# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""virt_domain on XML that libvirt rewrites when it stores it (issue 15), against libvirt's
test:///default driver, which shares the domain parser with the QEMU driver; and the check mode
foresight of refusals from domain capabilities and qemu.conf (pure functions; the QEMU driver's
own refusals are covered by the corpus test, tests/corpus)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import itertools

import pytest

libvirt = pytest.importorskip('libvirt')
pytest.importorskip('lxml')

from ansible_collections.virtops.libvirt.plugins.module_utils import _domain  # noqa: E402
from ansible_collections.virtops.libvirt.plugins.module_utils.xml import _document  # noqa: E402
from ansible_collections.virtops.libvirt.tests.unit.plugins.module_utils.domain_runs import run  # noqa: E402
from ansible_collections.virtops.libvirt.plugins.module_utils._libvirt import VirtError  # noqa: E402

_counter = itertools.count()

# What the parser derives or drops: the balloon capped to the memory (the QEMU driver also
# derives the memory from the NUMA cells: covered by the corpus test), a node set in canonical form, vCPUs 2-3 added to cell 0,
# a host-model CPU's nameless <model>, raw chardev protocols, zero rx coalescing, an empty
# volume CD-ROM stored as a file, USB companion controllers written in another order.
XML = """
<domain type='test'>
  <name>{name}</name>
  <memory unit='KiB'>219100</memory>
  <currentMemory unit='KiB'>4194304</currentMemory>
  <vcpu placement='static'>4</vcpu>
  <numatune><memory mode='strict' nodeset='0-3,^1'/></numatune>
  <os><type>hvm</type></os>
  <cpu mode='host-model'>
    <model fallback='forbid'/>
    <numa>
      <cell id='0' cpus='0' memory='1048576' unit='KiB'/>
      <cell id='1' cpus='1' memory='1048576' unit='KiB'/>
    </numa>
  </cpu>
  <devices>
    <disk type='volume' device='cdrom'>
      <target dev='hdc' bus='ide'/>
    </disk>
    <controller type='usb' index='0' model='ich9-uhci2'/>
    <controller type='usb' index='0' model='ich9-ehci1'/>
    <controller type='usb' index='0' model='ich9-uhci1'/>
    <interface type='network'>
      <mac address='52:54:00:12:34:56'/>
      <source network='default'/>
      <model type='virtio'/>
      <coalesce><rx><frames max='0'/></rx></coalesce>
    </interface>
    <serial type='unix'>
      <source mode='bind' path='/tmp/{name}.sock'/>
      <protocol type='raw'/>
      <target port='0'/>
    </serial>
  </devices>
</domain>
"""


@pytest.fixture
def name(conn):
    value = 'ut-corpusrules-%d' % next(_counter)
    yield value
    dom = conn.lookup_domain(value)
    if dom is not None:
        if dom.isActive():
            dom.destroy()
        dom.undefine()


def test_rewritten_xml_is_idempotent_and_a_real_change_is_seen(conn, name):
    xml = XML.format(name=name)
    check, real, check2, real2 = [run(conn, c, xml=xml) for c in (True, False, True, False)]
    assert check['changed'] and real['changed']
    assert real['warnings'] == []  # libvirt kept everything as the rules expect
    # libvirt did rewrite the XML: the rules, not luck, make the second run quiet.
    stored = _document.parse(_domain.inactive_xml(conn.lookup_domain(name)))
    assert stored.find('devices/disk').get('type') == 'file'
    assert stored.find('numatune/memory').get('nodeset') == '0,2-3'
    assert stored.find('cpu/model') is None and stored.find('devices/serial/protocol') is None
    assert stored.find('devices/interface/coalesce') is None
    assert stored.findtext('currentMemory') != '4194304'
    assert not check2['changed'] and not real2['changed'], real2['diff']
    # A real change (another node set) is predicted, applied, then idempotent.
    edited = xml.replace("nodeset='0-3,^1'", "nodeset='0-1'")
    check3, real3, real4 = run(conn, True, xml=edited), run(conn, False, xml=edited), run(conn, False, xml=edited)
    assert check3['changed'] and real3['changed'] and not real4['changed']
    assert check3['diff']['after'] == real3['diff']['after']


def test_seclabel_without_model_on_a_host_without_security_driver():
    root = _document.parse("<domain><name>d</name><seclabel type='dynamic' relabel='yes'/></domain>")
    stored = _domain.seclabel_as_stored(root, 'none')
    assert _document.render(stored.find('seclabel')).strip() == '<seclabel type="none"/>'
    assert root.find('seclabel').get('type') == 'dynamic'  # the user's XML is left alone
    # Under a real security driver, or with a model or a baselabel, it is stored as written.
    assert _domain.seclabel_as_stored(root, 'apparmor') is root
    with_base = _document.parse("<domain><seclabel type='dynamic'><baselabel>x</baselabel>"
                                "</seclabel></domain>")
    assert _domain.seclabel_as_stored(with_base, 'none') is with_base


CAPS = "<domainCapabilities><features><sev supported='%s'/><sgx supported='%s'/></features></domainCapabilities>"


def refusals(xml, sev='no', sgx='no', conf=None):
    return _domain.foreseen_refusals(_document.parse(xml), _document.parse(CAPS % (sev, sgx)),
                                     conf or {})


@pytest.mark.parametrize('graphics, conf, refused', [
    ("<graphics type='spice' port='5901' tlsPort='5902' autoport='no'/>", {}, True),
    ("<graphics type='spice' tlsPort='5902'><listen type='address' address='127.0.0.1'/></graphics>",
     {'spice_tls': '0'}, True),
    ("<graphics type='spice' port='5901' tlsPort='5902' autoport='no'/>", {'spice_tls': '1'}, False),
    ("<graphics type='spice' autoport='yes'/>", {}, False),
    ("<graphics type='spice' tlsPort='5902'><listen type='socket'/></graphics>", {}, False),
    ("<graphics type='vnc' port='5902'/>", {}, False),
])
def test_spice_tls_port_needs_spice_tls_in_qemu_conf(graphics, conf, refused):
    found = refusals('<domain><devices>%s</devices></domain>' % graphics, conf=conf)
    assert bool(found) == refused
    if refused:
        assert 'spice_tls' in found[0]


def test_sev_and_sgx_need_the_domain_capability():
    sev = "<domain><launchSecurity type='sev'><policy>0x0003</policy></launchSecurity></domain>"
    sgx = ("<domain><devices><memory model='sgx-epc'><target><size unit='KiB'>16384</size>"
           "</target></memory></devices></domain>")
    assert 'SEV' in refusals(sev)[0]
    assert refusals(sev, sev='yes') == []
    assert 'sgx' in refusals(sgx)[0]
    assert refusals(sgx, sgx='yes') == []
    assert refusals("<domain><devices/></domain>") == []


def test_qemu_conf_settings(tmp_path, monkeypatch):
    conf = tmp_path / 'qemu.conf'
    conf.write_text('# spice_tls = 1\nspice_tls = 1  # on\nvnc_tls=0\nuser = "libvirt-qemu"\n')
    monkeypatch.setitem(_domain.QEMU_CONF, '/system', str(conf))
    assert _domain.qemu_conf_settings('qemu:///system', ('spice_tls', 'user')) == \
        {'spice_tls': '1', 'user': 'libvirt-qemu'}
    # Remote hosts, other drivers and missing files tell nothing.
    assert _domain.qemu_conf_settings('qemu+ssh://host/system', ('spice_tls',)) == {}
    assert _domain.qemu_conf_settings('test:///default', ('spice_tls',)) == {}
    monkeypatch.setitem(_domain.QEMU_CONF, '/system', str(tmp_path / 'missing.conf'))
    assert _domain.qemu_conf_settings('qemu:///system', ('spice_tls',)) == {}


def test_check_mode_refuses_what_the_hypervisor_rules_out(monkeypatch):
    desired = _domain.DesiredDomain(
        "<domain type='qemu'><name>d</name><memory>1</memory><os><type>hvm</type></os>"
        "<devices><graphics type='spice' tlsPort='5902' autoport='no'/></devices></domain>")
    desired.capabilities = _document.parse(CAPS % ('no', 'no'))

    class Conn:
        uri = 'qemu:///system'
    monkeypatch.setattr(_domain, 'qemu_conf_settings', lambda uri, names: {})
    with pytest.raises(VirtError) as err:
        _domain.check_foreseeable(Conn(), desired)
    assert 'would refuse it' in str(err.value) and 'nothing was changed' in str(err.value)
