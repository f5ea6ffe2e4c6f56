# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The NETWORK profile's rules for what libvirt stores (found with libvirt's own test XML, see
tests/corpus), and what check mode foresees before a network define (_network_check): pure XML,
and libvirt's parser through test:///default."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import itertools

import pytest

libvirt = pytest.importorskip('libvirt')
pytest.importorskip('lxml')

from ansible_collections.virtops.libvirt.plugins.module_utils import _network  # noqa: E402
from ansible_collections.virtops.libvirt.plugins.module_utils import _network_check  # noqa: E402
from ansible_collections.virtops.libvirt.plugins.module_utils import _network_profile  # noqa: E402
from ansible_collections.virtops.libvirt.plugins.module_utils.xml import _compare, _document  # noqa: E402
from ansible_collections.virtops.libvirt.plugins.module_utils._libvirt import VirtError  # noqa: E402

_counter = itertools.count()


def changed(desired, live):
    return _compare.compare(desired, live, _network_profile.NETWORK).changed


# -- what libvirt stores -------------------------------------------------------------------

ROUTED = "<network><name>n</name><forward mode='route' dev='eth1'/>%s</network>"
ROUTED_LIVE = ("<network><name>n</name><uuid>1c8e2ab4-6f4b-4d8e-9d7c-2b5b0f3e3a11</uuid>"
               "<forward dev='eth1' mode='route'><interface dev='eth1'/></forward>"
               "<bridge name='virbr9' stp='on' delay='0'/>%s</network>")


def test_forward_dev_is_the_first_interface_of_the_pool():
    assert not changed(ROUTED % '', ROUTED_LIVE % '')
    # another interface in the live pool is still a difference: the pool is the user's
    live = ROUTED_LIVE.replace("<interface dev='eth1'/>", "<interface dev='eth1'/><interface dev='eth2'/>")
    assert changed(ROUTED % '', live % '')
    # and a forward device that is not the one stored is one
    assert changed((ROUTED % '').replace("dev='eth1'", "dev='eth3'"), ROUTED_LIVE % '')


def test_forward_dev_with_its_own_pool_is_compared_as_written():
    desired = "<network><name>n</name><forward mode='bridge' dev='eth1'><interface dev='eth1'/><interface dev='eth2'/></forward></network>"
    live = "<network><name>n</name><forward dev='eth1' mode='bridge'><interface dev='eth1'/><interface dev='eth2'/></forward></network>"
    assert not changed(desired, live)
    assert changed(desired, live.replace("<interface dev='eth2'/>", ''))


def test_ipv6_no_and_portgroup_default_no_are_what_libvirt_leaves_out():
    desired = ("<network ipv6='no'><name>n</name><portgroup name='a' default='no'/>"
               "<portgroup name='b' default='yes'/></network>")
    live = "<network><name>n</name><portgroup name='a'/><portgroup name='b' default='yes'/></network>"
    assert not changed(desired, live)
    assert changed(desired.replace("ipv6='no'", "ipv6='yes'"), live)
    assert changed(desired, live.replace(" default='yes'", ''))


def test_ip_addresses_compare_in_canonical_form():
    desired = ("<network><name>n</name><ip family='ipv6' address='2001:DB8:0:0::1' prefix='64'>"
               "<dhcp><range start='2001:db8::0100' end='2001:db8::1FF'/></dhcp></ip></network>")
    live = ("<network><name>n</name><ip family='ipv6' address='2001:db8::1' prefix='64'>"
            "<dhcp><range start='2001:db8::100' end='2001:db8::1ff'/></dhcp></ip></network>")
    assert not changed(desired, live)
    assert changed(desired, live.replace('::1ff', '::2ff'))


def test_mac_addresses_compare_zero_padded():
    desired = ("<network><name>n</name><mac address='52:54:0:A:B:C'/><ip address='10.9.0.1' "
               "prefix='24'><dhcp><host mac='0:16:3E:1:2:3' ip='10.9.0.5'/></dhcp></ip></network>")
    live = ("<network><name>n</name><mac address='52:54:00:0a:0b:0c'/><ip address='10.9.0.1' "
            "prefix='24'><dhcp><host mac='00:16:3e:01:02:03' ip='10.9.0.5'/></dhcp></ip></network>")
    assert not changed(desired, live)
    assert changed(desired, live.replace('0a:0b:0c', '0a:0b:0d'))


def test_mac_and_ip_normalizers():
    assert _network_profile.mac_address('1:2:3:a:B:c') == '01:02:03:0a:0b:0c'
    assert _network_profile.mac_address('not-a-mac') == 'not-a-mac'
    assert _network_profile.ip_address(' 2001:DB8::0:1 ') == '2001:db8::1'
    assert _network_profile.ip_address('10.0.0.1') == '10.0.0.1'
    assert _network_profile.ip_address('virbr0') == 'virbr0'


def test_dhcp_host_update_matches_canonical_addresses():
    desired = _document.parse(
        "<network><name>n</name><ip address='10.9.0.1' prefix='24'><dhcp>"
        "<host mac='0:16:3E:1:2:3' ip='10.9.0.5'/><host mac='52:54:00:00:00:09' ip='10.9.0.9'/>"
        "</dhcp></ip></network>")
    live = _document.parse(
        "<network><name>n</name><ip address='10.9.0.1' prefix='24'><dhcp>"
        "<host mac='00:16:3e:01:02:03' ip='10.9.0.5'/></dhcp></ip></network>")
    updates = _network.plan_updates(desired, live)
    assert [(u['command'], u['section']) for u in updates] == [('add-last', 'ip-dhcp-host')]


# -- check mode before a define: the network driver's own rules ----------------------------

def refusal(xml, bridges=None, vf=None):
    """The rule's message without libvirt's prefix for the error code (checked once below)."""
    message = _network_check.driver_refusal(_document.parse(xml), 'n', bridges or {}, vf)
    if message is not None:
        prefix, message = message.split(': ', 1)
        assert prefix in ('internal error', 'unsupported configuration')
    return message


def test_a_bridge_name_another_network_uses_is_refused():
    xml = "<network><name>n</name><bridge name='virbr0'/></network>"
    assert refusal(xml, {'virbr0': 'default'}) == "bridge name 'virbr0' already in use."
    # as libvirt says it: the code's text first
    assert _network_check.driver_refusal(_document.parse(xml), 'n', {'virbr0': 'default'}) == \
        "internal error: bridge name 'virbr0' already in use."
    assert refusal(xml) is None
    # a name template is filled in by libvirt; a bridge of a <forward mode='bridge'> is the host's
    assert refusal(xml.replace('virbr0', 'virbr%d'), {'virbr%d': 'x'}) is None
    assert refusal("<network><name>n</name><forward mode='bridge'/><bridge name='virbr0'/></network>",
                   {'virbr0': 'default'}) is None


@pytest.mark.parametrize('extra, message', [
    ("<ip address='10.1.0.1' prefix='24'/>", "Unsupported <ip> element in network n with forward mode='passthrough'"),
    ("<mac address='52:54:00:00:00:01'/>", "Unsupported <mac> element in network n with forward mode='passthrough'"),
    ("<domain name='lab'/>", "Unsupported <domain> element in network n with forward mode='passthrough'"),
    ("<dns><host ip='10.1.0.2'><hostname>a</hostname></host></dns>", "Unsupported <dns> element in network n with forward mode='passthrough'"),
    ("<bandwidth><inbound average='1000'/></bandwidth>", "Unsupported network-wide <bandwidth> element in network n with forward mode='passthrough'"),
    ("<vlan><tag id='42'/></vlan>", None),
])
def test_what_a_passthrough_network_cannot_have(extra, message):
    xml = "<network><name>n</name><forward mode='passthrough'><interface dev='eth3'/></forward>%s</network>"
    assert refusal(xml % extra) == message


def test_device_pool_rules():
    assert 'require all devices to be listed by PCI address' in refusal(
        "<network><name>n</name><forward mode='hostdev'><interface dev='eth1'/></forward></network>")
    assert 'lists a device by PCI address' in refusal(
        "<network><name>n</name><forward mode='passthrough'><address type='pci' domain='0' bus='3' slot='0' function='1'/></forward></network>")
    assert 'mutually exclusive' in refusal(
        "<network><name>n</name><forward mode='passthrough'><pf dev='eth0'/><interface dev='eth1'/></forward></network>")
    hostdev = ("<network><name>n</name><forward mode='hostdev' managed='yes'>"
               "<address type='pci' domain='0x0000' bus='0x03' slot='0x00' function='0x1'/></forward></network>")
    seen = []

    def not_a_vf(address):
        seen.append(_network_check.pci_sysfs_path(address))
        return False, seen[-1]

    assert refusal(hostdev, vf=not_a_vf) == ("device '/sys/bus/pci/devices/0000:03:00.1' in network "
                                             "'n' is not an SR-IOV Virtual Function")
    assert refusal(hostdev, vf=lambda a: (True, '')) is None
    assert refusal(hostdev) is None  # remote host: sysfs cannot be read, nothing foreseen


def test_vlan_rules():
    ovs = "<network><name>n</name><forward mode='bridge'/><bridge name='br0'/><virtualport type='openvswitch'/>%s</network>"
    assert refusal(ovs % "<vlan><tag id='42'/></vlan>") is None
    assert 'doesn\'t support vlan' in refusal((ovs % "<vlan><tag id='42'/></vlan>").replace(
        "<virtualport type='openvswitch'/>", ''))
    # a port group's own <virtualport> must say openvswitch too (libvirt 9.0 networkValidate)
    group = "<portgroup name='a'><vlan><tag id='7'/></vlan><virtualport><parameters profileid='p'/></virtualport></portgroup>"
    assert 'doesn\'t support vlan' in refusal(ovs % group)
    assert refusal(ovs % group.replace('<virtualport>', "<virtualport type='openvswitch'>")) is None


def test_portgroup_and_dhcp_rules():
    assert 'multiple default <portgroup>' in refusal(
        "<network><name>n</name><portgroup name='a' default='yes'/><portgroup name='b' default='yes'/></network>")
    assert 'same name (a)' in refusal(
        "<network><name>n</name><portgroup name='a'/><portgroup name='a'/></network>")
    two = ("<network><name>n</name><ip address='10.1.0.1' prefix='24'><dhcp><range start='10.1.0.5' end='10.1.0.9'/></dhcp></ip>"
           "<ip address='10.2.0.1' prefix='24'><dhcp><range start='10.2.0.5' end='10.2.0.9'/></dhcp></ip></network>")
    assert refusal(two).startswith('Multiple IPv4 dhcp sections found')


# -- check mode before a define: libvirt's parser (test:///default) -------------------------

def test_parser_refusal_names_the_network_and_leaves_nothing(conn):
    before = sorted(n.name() for n in conn.conn.listAllNetworks(0))
    bad = ("<network><name>lab-x</name><forward mode='open' dev='eth1'/>"
           "<ip address='10.3.0.1' prefix='24'/></network>")
    message = _network_check.parser_refusal(_document.parse(bad))
    assert message == "XML error: forward dev not allowed for network 'lab-x' with forward mode='open'"
    assert _network_check.parser_refusal(_document.parse(bad.replace(" dev='eth1'", ''))) is None
    assert sorted(n.name() for n in conn.conn.listAllNetworks(0)) == before


def test_check_mode_predicts_the_refusal_of_the_real_define(conn):
    name = 'ut-rules-%d' % next(_counter)
    xml = ("<network><name>%s</name><dns enable='no'><forwarder addr='8.8.8.8'/></dns>"
           "<ip address='10.4.0.1' prefix='24'/></network>" % name)
    params = dict(name=None, xml=xml, state='present', autostart=None, restart_on_change=False)
    errors = []
    for check_mode in (True, False):
        with pytest.raises(VirtError) as err:
            _network.NetworkManager(conn, params, check_mode=check_mode).run()
        errors.append(err.value)
    assert errors[0].libvirt_message == errors[1].libvirt_message
    assert 'Extra data in disabled network' in errors[0].msg and 'nothing was changed' in errors[0].msg
    assert _network.lookup_network(conn, name) is None
