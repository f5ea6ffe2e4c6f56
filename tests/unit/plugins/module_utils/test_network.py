# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests of virt_network and virt_network_info logic against libvirt's test:///default driver
(no mocks of libvirt). The test driver keeps one definition per network (no separate running
configuration) and no DHCP leases; those paths are covered by the integration target."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import itertools

import pytest

libvirt = pytest.importorskip('libvirt')
pytest.importorskip('lxml')

from ansible_collections.virtops.libvirt.plugins.module_utils import _network  # noqa: E402
from ansible_collections.virtops.libvirt.plugins.module_utils._libvirt import VirtError  # noqa: E402
from ansible_collections.virtops.libvirt.plugins.module_utils.xml import _document  # noqa: E402

URI = 'test:///default'
_counter = itertools.count()

XML = """
<network>
  <name>{name}</name>
  <bridge name='{bridge}'/>
  <ip address='10.{octet}.0.1' netmask='255.255.255.0'>
    <dhcp>
      <range start='10.{octet}.0.100' end='10.{octet}.0.199'/>{hosts}
    </dhcp>
  </ip>{extra}
</network>
"""


@pytest.fixture
def name(conn):
    """A fresh network name; whatever the test left behind is removed."""
    value = 'ut-net-%d' % next(_counter)
    yield value
    net = _network.lookup_network(conn, value)
    if net is not None:
        if net.isActive():
            net.destroy()
        if net.isPersistent():
            net.undefine()


def xml(name, hosts='', extra='', bridge=None, octet=None):
    number = int(name.rsplit('-', 1)[1])
    return XML.format(name=name, bridge=bridge or 'virbr-ut%d' % number,
                      octet=octet or 100 + number % 100, hosts=hosts, extra=extra)


def host(name, mac, last):
    number = int(name.rsplit('-', 1)[1])
    return "\n      <host mac='%s' ip='10.%d.0.%d'/>" % (mac, 100 + number % 100, last)


def params(**kwargs):
    p = dict(name=None, xml=None, state='present', autostart=None, restart_on_change=False)
    p.update(kwargs)
    return p


class Recorder:
    def __init__(self):
        self.warnings = []

    def __call__(self, msg):
        self.warnings.append(msg)


def run(conn, check_mode=False, diff_mode=True, **kwargs):
    warn = Recorder()
    result = _network.NetworkManager(conn, params(**kwargs), check_mode=check_mode,
                                     diff_mode=diff_mode, warn=warn).run()
    result['warnings'] = warn.warnings
    return result


def four_times(conn, **kwargs):
    """check mode, real run, check mode again, real run again (community.crypto style)."""
    return [run(conn, check_mode=c, **kwargs) for c in (True, False, True, False)]


def definition(conn, name):
    net = _network.lookup_network(conn, name)
    return None if net is None else _network.inactive_xml(net)


# ------------------------------------------------------------------ define and states

def test_define_four_times(conn, name):
    check, real, check2, real2 = four_times(conn, xml=xml(name))
    assert check['changed'] and check['actions'] == ['define'] and check['network'] == {}
    assert real['changed'] and real['actions'] == ['define']
    net = real['network']
    assert net['name'] == name and net['active'] is False and net['persistent'] is True
    assert net['bridge'] == 'virbr-ut%s' % name.rsplit('-', 1)[1]
    assert not check2['changed'] and not real2['changed']
    assert check2['actions'] == [] and real2['updates'] == []
    assert real2['network']['uuid'] == net['uuid']
    assert real['restart_required'] is False and real['warnings'] == []


def test_check_mode_changes_nothing(conn, name):
    result = run(conn, check_mode=True, xml=xml(name), state='active', autostart=True)
    assert result['actions'] == ['define', 'start', 'autostart']
    assert _network.lookup_network(conn, name) is None


def test_diff_of_a_new_network(conn, name):
    diff = run(conn, check_mode=True, xml=xml(name), state='active')['diff']
    assert diff['before'] == '# state: absent\n# autostart: no\n'
    assert diff['after'].startswith('# state: active\n# autostart: no\n<network>')
    assert '<range start=' in diff['after']


def test_states_and_autostart(conn, name):
    run(conn, xml=xml(name))
    steps = [
        ('active', ['start'], True),
        ('present', [], True),
        ('inactive', ['destroy'], False),
        ('present', [], False),
    ]
    for state, actions, active in steps:
        results = four_times(conn, name=name, state=state)
        assert [r['changed'] for r in results] == [bool(actions), bool(actions), False, False]
        assert results[0]['actions'] == actions and results[1]['actions'] == actions
        assert results[1]['network']['active'] is active
        assert bool(_network.lookup_network(conn, name).isActive()) is active
    results = four_times(conn, name=name, autostart=True)
    assert [r['changed'] for r in results] == [True, True, False, False]
    assert results[1]['network']['autostart'] is True
    assert run(conn, name=name, autostart=False)['actions'] == ['no autostart']
    assert not run(conn, name=name)['changed']


def test_absent(conn, name):
    assert not run(conn, name=name, state='absent')['changed']
    run(conn, xml=xml(name), state='active')
    check, real, check2, real2 = four_times(conn, name=name, state='absent')
    assert check['changed'] and check['actions'] == ['destroy', 'undefine']
    assert real['changed'] and real['network'] == {}
    assert not check2['changed'] and not real2['changed']
    assert _network.lookup_network(conn, name) is None
    assert check['diff']['after'] == '# state: absent\n'


def test_state_without_xml_needs_an_existing_network(conn, name):
    with pytest.raises(VirtError, match='does not exist'):
        run(conn, name=name, state='active')


# ------------------------------------------------------------------ invalid input

def test_malformed_xml_changes_nothing(conn, name):
    with pytest.raises(VirtError, match='not well-formed'):
        run(conn, xml='<network><name>%s</name>' % name)
    assert _network.lookup_network(conn, name) is None


def test_name_mismatch_changes_nothing(conn, name):
    with pytest.raises(VirtError, match='must agree'):
        run(conn, name=name, xml=xml(name).replace(name, name + 'x'))
    assert _network.lookup_network(conn, name) is None


def test_wrong_root_element(conn, name):
    with pytest.raises(VirtError, match='expected <network>'):
        run(conn, xml='<pool><name>%s</name></pool>' % name)


def test_uuid_mismatch_changes_nothing(conn, name):
    run(conn, xml=xml(name))
    before = definition(conn, name)
    other = xml(name).replace('</name>', '</name><uuid>11111111-2222-3333-4444-555555555555</uuid>')
    with pytest.raises(VirtError, match='cannot change'):
        run(conn, xml=other)
    assert definition(conn, name) == before


def test_name_from_the_module_option(conn, name):
    text = xml(name).replace('<name>%s</name>' % name, '')
    assert run(conn, name=name, xml=text)['changed']
    assert not run(conn, name=name, xml=text)['changed']


# ------------------------------------------------------------------ live updates

def test_dhcp_host_added_live(conn, name):
    run(conn, xml=xml(name), state='active')
    wanted = xml(name, hosts=host(name, '52:54:00:AA:00:01', 5))
    check, real, check2, real2 = four_times(conn, xml=wanted, state='active')
    assert check['changed'] and check['actions'] == ['update']
    assert len(check['updates']) == 1
    update = check['updates'][0]
    assert update['command'] == 'add-last' and update['section'] == 'ip-dhcp-host'
    assert update['parent_index'] == 0 and update['affect'] == 'live+config'
    assert real['updates'] == check['updates']
    assert real['restart_required'] is False and not check['restart_required']
    assert "mac='52:54:00:AA:00:01'" in real['network']['xml'] or \
        "mac='52:54:00:aa:00:01'" in real['network']['xml']
    assert not check2['changed'] and not real2['changed'] and real2['updates'] == []
    assert '52:54:00:aa:00:01' in check['diff']['after']
    assert '52:54:00:aa:00:01' not in check['diff']['before']


def test_inactive_network_is_updated_in_its_config(conn, name):
    run(conn, xml=xml(name))
    result = run(conn, xml=xml(name, hosts=host(name, '52:54:00:aa:00:02', 6)))
    assert result['updates'][0]['affect'] == 'config'
    assert result['restart_required'] is False


def test_section_updates_modify_delete_and_add(conn, name):
    first = host(name, '52:54:00:aa:00:01', 5) + host(name, '52:54:00:aa:00:02', 6)
    extra = "\n  <dns><host ip='10.1.1.1'><hostname>a</hostname></host></dns>" \
            "\n  <portgroup name='pg1'/>"
    run(conn, xml=xml(name, hosts=first, extra=extra), state='active')
    second = host(name, '52:54:00:aa:00:01', 7) + host(name, '52:54:00:aa:00:03', 8)
    extra2 = "\n  <dns><host ip='10.1.1.1'><hostname>b</hostname></host></dns>" \
             "\n  <portgroup name='pg1'><bandwidth><inbound average='1000'/></bandwidth>" \
             "</portgroup><portgroup name='pg2'/>"
    wanted = xml(name, hosts=second, extra=extra2).replace('.0.199', '.0.150')
    check, real, check2, real2 = four_times(conn, xml=wanted, state='active')
    commands = [(u['command'], u['section']) for u in real['updates']]
    assert commands == [
        ('delete', 'ip-dhcp-range'), ('add-last', 'ip-dhcp-range'),
        ('delete', 'ip-dhcp-host'), ('modify', 'ip-dhcp-host'), ('add-last', 'ip-dhcp-host'),
        ('delete', 'dns-host'), ('add-last', 'dns-host'),
        ('modify', 'portgroup'), ('add-last', 'portgroup'),
    ]
    assert check['updates'] == real['updates']
    assert real['actions'] == ['update'] and not real['restart_required']
    assert not check2['changed'] and not real2['changed']
    assert real['warnings'] == []


def test_libvirts_own_dump_changes_nothing(conn, name):
    run(conn, xml=xml(name, hosts=host(name, '52:54:00:aa:00:01', 5)), state='active')
    dump = _network.network_result(_network.lookup_network(conn, name))['xml']
    assert not run(conn, xml=dump)['changed']


def test_items_left_out_are_not_managed_without_their_section(conn, name):
    extra = "\n  <dns><host ip='10.1.1.1'><hostname>a</hostname></host></dns>"
    run(conn, xml=xml(name, extra=extra))
    # No <dns> in the XML: its hosts are not managed.
    assert not run(conn, xml=xml(name))['changed']
    # An empty <dns>: they are.
    result = run(conn, xml=xml(name, extra='\n  <dns/>'))
    assert [(u['command'], u['section']) for u in result['updates']] == [('delete', 'dns-host')]


# ------------------------------------------------------------------ redefinition

def test_other_changes_redefine_and_need_a_restart(conn, name):
    # The test driver keeps the new definition of an active network only until it stops (and
    # cannot show it apart from the running one): idempotency after this is covered by the
    # integration target on qemu:///system.
    run(conn, xml=xml(name), state='active')
    wanted = xml(name, bridge='virbr-utx%s' % name.rsplit('-', 1)[1])
    check = run(conn, check_mode=True, xml=wanted, state='active')
    real = run(conn, xml=wanted, state='active')
    assert check['actions'] == ['define'] and check['restart_required'] is True
    assert real['actions'] == ['define'] and real['restart_required'] is True
    assert check['updates'] == [] and real['updates'] == []
    assert real['network']['active'] is True


def test_restart_on_change(conn, name):
    run(conn, xml=xml(name), state='active')
    wanted = xml(name, bridge='virbr-uty%s' % name.rsplit('-', 1)[1])
    check = run(conn, check_mode=True, xml=wanted, restart_on_change=True)
    assert check['actions'] == ['define', 'restart'] and check['restart_required'] is False
    real = run(conn, xml=wanted, restart_on_change=True)
    assert real['actions'] == ['define', 'restart'] and real['restart_required'] is False
    assert real['network']['active'] is True


def test_redefine_while_inactive_needs_no_restart(conn, name):
    run(conn, xml=xml(name))
    result = run(conn, xml=xml(name, bridge='virbr-utz%s' % name.rsplit('-', 1)[1]))
    assert result['actions'] == ['define'] and result['restart_required'] is False


def test_diff_of_a_redefinition(conn, name):
    run(conn, xml=xml(name))
    result = run(conn, check_mode=True, xml=xml(name, bridge='virbr-new'))
    diff = result['diff']
    assert '<bridge name="virbr-ut' in diff['before'] and '<bridge name="virbr-new"/>' in diff['after']
    assert 'uuid' not in diff['before'] + diff['after']


def test_uuid_is_kept(conn, name):
    first = run(conn, xml=xml(name))
    second = run(conn, xml=xml(name, bridge='virbr-k%s' % name.rsplit('-', 1)[1]))
    assert second['network']['uuid'] == first['network']['uuid']


# ------------------------------------------------------------------ plan_updates / simulate

def test_plan_updates_refuses_other_differences():
    live = _document.parse(
        "<network><name>n</name><forward mode='nat'/><ip address='10.0.0.1'><dhcp>"
        "<range start='10.0.0.2' end='10.0.0.9'/></dhcp></ip></network>")
    desired = _document.parse(
        "<network><name>n</name><ip address='10.0.0.1' netmask='255.255.255.0'><dhcp>"
        "<range start='10.0.0.2' end='10.0.0.9'/></dhcp></ip></network>")
    assert _network.plan_updates(desired, live) is None


def test_plan_updates_for_the_second_ip():
    live = _document.parse(
        "<network><name>n</name><ip address='10.0.0.1'/>"
        "<ip address='10.0.1.1'><dhcp><range start='10.0.1.2' end='10.0.1.9'/></dhcp></ip>"
        "</network>")
    desired = _document.parse(
        "<network><name>n</name>"
        "<ip address='10.0.1.1'><dhcp><range start='10.0.1.2' end='10.0.1.9'/>"
        "<host mac='52:54:00:00:00:01' ip='10.0.1.3'/></dhcp></ip>"
        "<ip address='10.0.0.1'/></network>")
    updates = _network.plan_updates(desired, live)
    assert [(u['command'], u['parent_index']) for u in updates] == [('add-last', 1)]


# ------------------------------------------------------------------ virt_network_info

def test_info_of_one_and_all(conn, name):
    run(conn, xml=xml(name, hosts=host(name, '52:54:00:AA:00:09', 9)), state='active',
        autostart=True)
    [facts] = _network.networks_info(conn, name)
    assert facts['name'] == name and facts['active'] and facts['autostart'] and facts['persistent']
    assert facts['forward_mode'] is None
    assert facts['bridge'].startswith('virbr-ut')
    [ip] = facts['ips']
    assert ip['family'] == 'ipv4' and ip['netmask'] == '255.255.255.0'
    assert ip['dhcp_ranges'][0]['end'].endswith('.0.199')
    assert ip['dhcp_hosts'][0]['mac'] == '52:54:00:aa:00:09'
    assert facts['dhcp_leases'] == []  # the test driver keeps no leases
    assert '<network' in facts['xml']
    everything = _network.networks_info(conn)
    names = [n['name'] for n in everything]
    assert names == sorted(names) and name in names and 'default' in names
    default = [n for n in everything if n['name'] == 'default'][0]
    assert default['forward_mode'] == 'nat'
    assert _network.networks_info(conn, name + '-missing') == []


def test_transient_network_is_made_persistent(conn, name):
    net = conn.conn.networkCreateXML(xml(name))
    assert not net.isPersistent()
    check, real, check2, real2 = four_times(conn, name=name)
    assert check['actions'] == ['define'] and real['actions'] == ['define']
    assert real['network']['persistent'] is True and real['network']['active'] is True
    assert real['restart_required'] is False
    assert not check2['changed'] and not real2['changed']


def test_transient_network_is_removed_by_destroy(conn, name):
    conn.conn.networkCreateXML(xml(name))
    result = run(conn, name=name, state='absent')
    assert result['actions'] == ['destroy']
    assert _network.lookup_network(conn, name) is None
