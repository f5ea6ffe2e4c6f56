# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""virt_domain on XML as users and tools write it (issue 15, user XML): the XML of a running
domain copied back (virsh dumpxml), a balloon of 0, against libvirt's test:///default driver
(same domain parser as the QEMU driver); tests/corpus/user-xml runs more of it on qemu:///system."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import itertools

import pytest

libvirt = pytest.importorskip('libvirt')
pytest.importorskip('lxml')

from ansible_collections.virtops.libvirt.plugins.module_utils import _domain  # noqa: E402
from ansible_collections.virtops.libvirt.plugins.module_utils._domain_profile import DOMAIN  # noqa: E402
from ansible_collections.virtops.libvirt.plugins.module_utils.xml import _compare, _document  # noqa: E402
from ansible_collections.virtops.libvirt.tests.unit.plugins.module_utils.domain_runs import run  # noqa: E402

_counter = itertools.count()

# As `virsh dumpxml` writes a running QEMU domain: a generated tap name, the network port id
# and the bridge of the actual connection, pty paths and the console's tty, a channel's
# connection state, a dynamic security label's label and image label. A define drops all of it.
LIVE_XML = """
<domain type='test' id='7'>
  <name>{name}</name>
  <memory unit='KiB'>131072</memory>
  <currentMemory unit='KiB'>{balloon}</currentMemory>
  <vcpu placement='static'>1</vcpu>
  <os><type>hvm</type></os>
  <devices>
    <interface type='network'>
      <mac address='52:54:00:15:99:01'/>
      <source network='default' portid='bfab1680-c793-4cce-9cdb-aefc7e733ef9' bridge='virbr0'/>
      <target dev='vnet3405'/>
      <model type='virtio'/>
    </interface>
    <interface type='network'>
      <mac address='52:54:00:15:99:02'/>
      <source network='default'/>
      <target dev='mytap15'/>
      <model type='virtio'/>
    </interface>
    <serial type='pty'>
      <source path='/dev/pts/3'/>
      <target port='0'/>
    </serial>
    <console type='pty' tty='/dev/pts/3'>
      <source path='/dev/pts/3'/>
      <target type='serial' port='0'/>
    </console>
    <channel type='unix'>
      <target type='virtio' name='org.qemu.guest_agent.0' state='disconnected'/>
    </channel>
  </devices>
  <seclabel type='dynamic' model='dac' relabel='yes'>
    <label>+64055:+64055</label>
    <imagelabel>+64055:+64055</imagelabel>
  </seclabel>
</domain>
"""


@pytest.fixture
def name(conn):
    value = 'ut-userxml-%d' % next(_counter)
    yield value
    dom = conn.lookup_domain(value)
    if dom is not None:
        if dom.isActive():
            dom.destroy()
        dom.undefine()


def test_running_state_is_not_part_of_the_intent():
    desired = _compare.apply_implied(_document.parse(LIVE_XML.format(name='x', balloon=131072)),
                                     DOMAIN)
    first, second = desired.findall('devices/interface')
    assert first.find('target') is None and first.find('source').attrib == {'network': 'default'}
    assert second.find('target').get('dev') == 'mytap15'  # a name the user chose is kept
    assert desired.find('devices/serial/source') is None
    assert desired.find('devices/console').get('tty') is None
    assert desired.find('devices/channel/target').get('state') is None
    assert desired.find('seclabel/label') is None and desired.find('seclabel/imagelabel') is None


@pytest.mark.parametrize('balloon', ['131072', '0'])
def test_xml_of_a_running_domain_fed_back_is_idempotent(conn, name, balloon):
    xml = LIVE_XML.format(name=name, balloon=balloon)
    real = run(conn, False, xml=xml)
    assert real['changed']
    if conn.lookup_domain(name) is None:
        pytest.skip('the test driver refused the XML')
    stored = _document.parse(_domain.inactive_xml(conn.lookup_domain(name)))
    # libvirt dropped the run-time state and took 0 as the whole memory: rules, not luck.
    assert stored.find('devices/console').get('tty') is None
    assert stored.findtext('currentMemory') == '131072'
    assert real['warnings'] == []
    again, check = run(conn, False, xml=xml), run(conn, True, xml=xml)
    assert not again['changed'] and not check['changed'], again['diff']
    # A real change is predicted, applied, then idempotent.
    edited = xml.replace("'52:54:00:15:99:02'/>\n      <source network='default'/>",
                         "'52:54:00:15:99:02'/>\n      <source network='default'/>\n      <link state='down'/>")
    check2, real2, real3 = run(conn, True, xml=edited), run(conn, False, xml=edited), run(conn, False, xml=edited)
    assert check2['changed'] and real2['changed'] and not real3['changed']


def test_a_start_refused_after_a_define_reports_the_change(conn, name, monkeypatch):
    """state=running stores the new definition, then the start fails (on QEMU: a network that
    is not active): the failure must say changed, since the definition did change."""
    xml = LIVE_XML.format(name=name, balloon=131072)
    assert run(conn, False, xml=xml)['changed']
    from ansible_collections.virtops.libvirt.plugins.module_utils._libvirt import VirtError

    def refused(self, dom, paused=False):
        raise VirtError('starting on domain %s failed: network is not active' % name)
    monkeypatch.setattr(_domain.DomainManager, 'start', refused)
    params = dict(name=None, xml=xml.replace('131072', '262144'), state='running', autostart=None,
                  timeout=5, force=False, remove_metadata=True, remove_storage=False,
                  restart_on_change=False)
    with pytest.raises(VirtError) as failure:
        _domain.DomainManager(conn, params, check_mode=False, diff_mode=False,
                              warn=lambda m: None, sleep=lambda s: None).run()
    assert failure.value.result()['changed'] is True
    assert failure.value.result()['actions'] == ['define']
    assert 'already done: define' in failure.value.msg
    stored = _document.parse(_domain.inactive_xml(conn.lookup_domain(name)))
    assert stored.findtext('memory') == '262144'


@pytest.mark.parametrize('size, unit, stored', [
    ('1', 'GB', '976563'),            # 10**9 bytes: 976562.5 KiB, rounded up
    ('1000', 'MB', '976563'),
    ('1000001', 'KB', '976564'),
    ('1000000001', 'b', '976563'),
    ('2', 'GiB', '2097152'),
])
def test_sizes_are_stored_in_whole_kib_rounded_up(size, unit, stored):
    desired = ("<domain><memory unit='%s'>%s</memory><currentMemory unit='%s'>%s</currentMemory>"
               "<cpu><numa><cell id='0' cpus='0' memory='%s' unit='%s'/></numa></cpu></domain>"
               % (unit, size, unit, size, size, unit))
    live = ("<domain><memory unit='KiB'>%s</memory><currentMemory unit='KiB'>%s</currentMemory>"
            "<cpu><numa><cell id='0' cpus='0' memory='%s' unit='KiB'/></numa></cpu></domain>"
            % (stored, stored, stored))
    assert not _compare.compare(desired, live, DOMAIN).changed
    # One KiB less is a real difference.
    smaller = live.replace(stored, str(int(stored) - 1))
    assert _compare.compare(desired, smaller, DOMAIN).changed


def test_memory_in_gigabytes_is_idempotent(conn, name):
    xml = LIVE_XML.format(name=name, balloon=131072).replace(
        "<memory unit='KiB'>131072</memory>", "<memory unit='GB'>1</memory>").replace(
        "<currentMemory unit='KiB'>131072</currentMemory>", "<currentMemory unit='MB'>500</currentMemory>")
    real, again, check = run(conn, False, xml=xml), run(conn, False, xml=xml), run(conn, True, xml=xml)
    assert real['changed'] and real['warnings'] == []
    assert not again['changed'] and not check['changed'], again['diff']
    stored = _document.parse(_domain.inactive_xml(conn.lookup_domain(name)))
    assert stored.findtext('memory') == '976563' and stored.findtext('currentMemory') == '488282'
