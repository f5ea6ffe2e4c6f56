# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests of virt_domain and virt_domain_info logic against libvirt's test:///default driver
(no mocks of libvirt). The real hypervisor paths (domain capabilities, ACPI shutdown timeouts)
are covered by the integration targets."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import itertools

import pytest

libvirt = pytest.importorskip('libvirt')
pytest.importorskip('lxml')

from ansible_collections.virtops.libvirt.plugins.module_utils import _domain  # noqa: E402
from ansible_collections.virtops.libvirt.plugins.module_utils._libvirt import VirtError  # noqa: E402
from ansible_collections.virtops.libvirt.tests.unit.plugins.module_utils.domain_runs import four_times, run  # noqa: E402

URI = 'test:///default'
_counter = itertools.count()

XML = """
<domain type='test'>
  <name>{name}</name>
  <memory unit='MiB'>{memory}</memory>
  <vcpu>1</vcpu>
  <os><type>hvm</type></os>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='{disk}'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <interface type='network'>
      <source network='default'/>
      <model type='virtio'/>
    </interface>
  </devices>
</domain>
"""


@pytest.fixture
def name(conn):
    """A fresh domain name; whatever the test left behind is removed."""
    value = 'ut-dom-%d' % next(_counter)
    yield value
    dom = conn.lookup_domain(value)
    if dom is not None:
        if dom.isActive():
            dom.destroy()
        if dom.isPersistent():
            dom.undefine()


def xml(name, memory=64, disk=None):
    return XML.format(name=name, memory=memory, disk=disk or '/images/%s.qcow2' % name)


def state_of(conn, name):
    dom = conn.lookup_domain(name)
    return None if dom is None else _domain.domain_state(dom)


# ------------------------------------------------------------------ define

def test_define_four_times(conn, name):
    check, real, check2, real2 = four_times(conn, xml=xml(name))
    assert check['changed'] and check['actions'] == ['define']
    assert check['domain'] == {}
    assert real['changed'] and real['actions'] == ['define']
    assert real['domain']['name'] == name and real['domain']['state'] == 'shutoff'
    assert real['domain']['persistent'] is True
    assert not check2['changed'] and not real2['changed']
    assert check2['actions'] == [] and real2['actions'] == []
    assert real2['domain']['uuid'] == real['domain']['uuid']
    assert real['restart_required'] is False
    assert real['warnings'] == []


def test_check_mode_changes_nothing(conn, name):
    run(conn, check_mode=True, xml=xml(name), state='running', autostart=True)
    assert conn.lookup_domain(name) is None


def test_diff_of_a_new_domain(conn, name):
    result = run(conn, check_mode=True, xml=xml(name), state='running')
    diff = result['diff']
    assert diff['before'] == '# state: absent\n# autostart: no\n'
    assert diff['after'].startswith('# state: running\n# autostart: no\n<domain type="test">')
    assert '<memory unit="KiB">65536</memory>' in diff['after']


def test_update_compares_intent_and_keeps_the_uuid(conn, name):
    first = run(conn, xml=xml(name))
    result = run(conn, xml=xml(name, memory=128))
    assert result['changed'] and result['actions'] == ['define']
    assert result['domain']['uuid'] == first['domain']['uuid']
    assert "<memory unit='KiB'>131072</memory>" in result['domain']['xml']
    diff = result['diff']
    assert '<memory unit="KiB">65536</memory>' in diff['before']
    assert '<memory unit="KiB">131072</memory>' in diff['after']
    # The MAC address libvirt generated is not part of either side of the diff.
    assert 'mac' not in diff['before'] + diff['after']
    assert not run(conn, xml=xml(name, memory=128))['changed']


def test_name_from_the_module_option_when_xml_has_none(conn, name):
    text = xml(name).replace('<name>%s</name>' % name, '')
    result = run(conn, name=name, xml=text)
    assert result['changed'] and result['domain']['name'] == name
    assert not run(conn, name=name, xml=text)['changed']


# ------------------------------------------------------------------ run states

def test_every_state_transition(conn, name):
    run(conn, xml=xml(name))
    steps = [
        ('running', ['start'], 'running'),
        ('paused', ['suspend'], 'paused'),
        ('running', ['resume'], 'running'),
        ('destroyed', ['destroy'], 'shutoff'),
        ('paused', ['start paused'], 'paused'),
        ('shutdown', ['shutdown'], 'shutoff'),
        ('running', ['start'], 'running'),
        ('shutdown', ['shutdown'], 'shutoff'),
        ('present', [], 'shutoff'),
    ]
    for state, actions, after in steps:
        results = four_times(conn, name=name, state=state)
        assert [r['changed'] for r in results] == [bool(actions), bool(actions), False, False], state
        assert results[0]['actions'] == actions, state
        assert results[1]['actions'] == actions, state
        assert results[1]['domain']['state'] == after, state
        assert state_of(conn, name) == after
        if actions:
            assert results[0]['diff']['after'].startswith('# state: %s\n' % after)


def test_present_leaves_the_run_state_alone(conn, name):
    run(conn, xml=xml(name), state='running')
    result = run(conn, xml=xml(name), state='present')
    assert not result['changed'] and result['domain']['state'] == 'running'


def test_autostart(conn, name):
    results = four_times(conn, xml=xml(name), autostart=True)
    assert [r['changed'] for r in results] == [True, True, False, False]
    assert results[1]['actions'] == ['define', 'autostart']
    assert results[1]['domain']['autostart'] is True
    result = run(conn, name=name, autostart=False)
    assert result['actions'] == ['no autostart'] and result['domain']['autostart'] is False
    # Not set: not managed.
    assert not run(conn, name=name)['changed']


# ------------------------------------------------------------------ running domains

def test_new_definition_of_a_running_domain_needs_a_restart(conn, name):
    run(conn, xml=xml(name), state='running')
    check = run(conn, check_mode=True, xml=xml(name, memory=96), state='running')
    real = run(conn, xml=xml(name, memory=96), state='running')
    assert check['changed'] and check['restart_required'] and check['actions'] == ['define']
    assert real['changed'] and real['restart_required'] and real['actions'] == ['define']
    # The running domain still has 64 MiB; the definition has 96.
    dom = conn.lookup_domain(name)
    assert "<memory unit='KiB'>65536</memory>" in dom.XMLDesc(0)
    assert "<memory unit='KiB'>98304</memory>" in _domain.inactive_xml(dom)
    # Nothing more to define, but the restart is still pending.
    again = run(conn, xml=xml(name, memory=96), state='running')
    assert not again['changed'] and again['restart_required']

    # restart_on_change applies it: four times.
    results = four_times(conn, xml=xml(name, memory=96), state='running', restart_on_change=True)
    assert [r['changed'] for r in results] == [True, True, False, False]
    assert results[0]['actions'] == ['restart'] and results[1]['actions'] == ['restart']
    assert [r['restart_required'] for r in results] == [False] * 4
    assert "<memory unit='KiB'>98304</memory>" in conn.lookup_domain(name).XMLDesc(0)
    assert state_of(conn, name) == 'running'


def test_restart_on_change_keeps_a_paused_domain_paused(conn, name):
    run(conn, xml=xml(name), state='paused')
    result = run(conn, xml=xml(name, memory=80), restart_on_change=True)
    assert result['actions'] == ['define', 'restart']
    assert result['domain']['state'] == 'paused'
    assert not result['restart_required']


def test_change_of_a_stopped_domain_needs_no_restart(conn, name):
    run(conn, xml=xml(name))
    result = run(conn, xml=xml(name, memory=80), restart_on_change=True)
    assert result['actions'] == ['define'] and not result['restart_required']
    assert state_of(conn, name) == 'shutoff'


def test_shutdown_with_a_new_definition(conn, name):
    run(conn, xml=xml(name), state='running')
    result = run(conn, xml=xml(name, memory=80), state='shutdown', restart_on_change=True)
    assert result['actions'] == ['define', 'shutdown']
    assert not result['restart_required'] and result['domain']['state'] == 'shutoff'


# ------------------------------------------------------------------ absent

def test_absent_four_times(conn, name):
    run(conn, xml=xml(name), state='running')
    results = four_times(conn, name=name, state='absent')
    assert [r['changed'] for r in results] == [True, True, False, False]
    assert results[0]['actions'] == ['destroy', 'undefine']
    assert results[1]['domain'] == {}
    assert results[1]['diff']['before'].startswith('# state: running\n')
    assert results[1]['diff']['after'] == '# state: absent\n'
    assert conn.lookup_domain(name) is None


def test_absent_with_snapshot_metadata(conn, name):
    run(conn, xml=xml(name))
    dom = conn.lookup_domain(name)
    dom.snapshotCreateXML('<domainsnapshot><name>s1</name></domainsnapshot>', 0)
    with pytest.raises(VirtError) as exc:
        run(conn, name=name, state='absent', remove_metadata=False)
    assert 'undefining on domain %s failed' % name in exc.value.msg
    assert conn.lookup_domain(name) is not None
    assert run(conn, name=name, state='absent')['changed']
    assert conn.lookup_domain(name) is None


def test_absent_with_remove_storage(conn, name):
    pool = conn.conn.storagePoolLookupByName('default-pool')
    vol = pool.createXML("<volume><name>%s.img</name><capacity unit='MiB'>1</capacity>"
                         "</volume>" % name, 0)
    path = vol.path()
    text = xml(name, disk=path).replace(
        '</devices>', "<disk type='file' device='disk'><source file='/elsewhere/%s.img'/>"
                      "<target dev='vdb'/></disk></devices>" % name)
    run(conn, xml=text)
    check = run(conn, check_mode=True, name=name, state='absent', remove_storage=True)
    assert check['removed_volumes'] == [path]
    assert pool.storageVolLookupByName('%s.img' % name) is not None
    result = run(conn, name=name, state='absent', remove_storage=True)
    assert result['removed_volumes'] == [path]
    assert result['actions'] == ['undefine', 'delete volume %s' % path]
    assert any('/elsewhere/%s.img' % name in w for w in result['warnings'])
    assert '%s.img' % name not in pool.listVolumes()


def test_absent_of_a_missing_domain_is_ok(conn, name):
    result = run(conn, name=name, state='absent')
    assert not result['changed'] and result['domain'] == {} and result['actions'] == []


# ------------------------------------------------------------------ errors change nothing

def test_name_mismatch(conn, name):
    with pytest.raises(VirtError) as exc:
        run(conn, name=name, xml=xml(name + '-other'))
    assert 'name %s differs from the XML\'s <name>%s-other</name>' % (name, name) in exc.value.msg
    assert conn.lookup_domain(name) is None and conn.lookup_domain(name + '-other') is None


def test_malformed_xml(conn, name):
    with pytest.raises(VirtError) as exc:
        run(conn, xml=xml(name).replace('</devices>', '</device>'))
    assert 'the domain XML is not well-formed' in exc.value.msg
    assert conn.lookup_domain(name) is None


def test_wrong_root_element(conn, name):
    with pytest.raises(VirtError) as exc:
        run(conn, xml='<network><name>%s</name></network>' % name)
    assert 'root element <network>, expected <domain>' in exc.value.msg


@pytest.mark.parametrize('check_mode', [True, False])
def test_schema_violation_fails_in_check_mode_and_real_run(conn, name, check_mode):
    run(conn, xml=xml(name))
    before = _domain.inactive_xml(conn.lookup_domain(name))
    bad = xml(name, memory=80).replace('<vcpu>1</vcpu>', '<vcpu>1</vcpu><bogus/>')
    with pytest.raises(VirtError) as exc:
        run(conn, check_mode=check_mode, xml=bad)
    assert 'bogus' in exc.value.msg
    assert _domain.inactive_xml(conn.lookup_domain(name)) == before


def test_uuid_mismatch(conn, name):
    run(conn, xml=xml(name))
    text = xml(name).replace('<vcpu>', '<uuid>00000000-0000-0000-0000-00000000abcd</uuid><vcpu>')
    with pytest.raises(VirtError) as exc:
        run(conn, xml=text)
    assert 'cannot change a domain\'s uuid' in exc.value.msg


def test_present_without_xml_makes_a_transient_domain_persistent(conn, name):
    """state present means defined: a transient domain is defined as it runs, with no XML of
    the user's to check what libvirt kept against."""
    conn.conn.createXML(xml(name), 0)
    results = four_times(conn, name=name)
    assert [r['changed'] for r in results] == [True, True, False, False]
    assert results[1]['actions'] == ['define']
    assert results[1]['domain']['persistent'] is True
    assert results[1]['warnings'] == []
    assert state_of(conn, name) == 'running'


def test_missing_domain_without_xml(conn, name):
    with pytest.raises(VirtError) as exc:
        run(conn, name=name, state='running')
    assert exc.value.msg == 'domain %s does not exist on %s; give xml to define it' % (name, URI)


def test_negative_timeout(conn, name):
    with pytest.raises(VirtError):
        run(conn, name=name, timeout=-1)


def test_plan_state_table():
    plan = _domain.DomainManager.plan_state
    assert plan('running', 'crashed') == (['destroy', 'start'], 'running')
    assert plan('paused', 'pmsuspended') == (['wakeup', 'suspend'], 'paused')
    assert plan('running', 'pmsuspended') == (['wakeup'], 'running')
    assert plan('shutdown', 'shutoff') == ([], 'shutoff')
    assert plan('destroyed', 'paused') == (['destroy'], 'shutoff')
    assert plan('present', 'absent') == ([], 'shutoff')


# ------------------------------------------------------------------ virt_domain_info

def test_info_of_one_domain(conn, name):
    run(conn, xml=xml(name), state='running', autostart=True)
    domains = _domain.domains_info(conn, name=name)
    assert len(domains) == 1
    d = domains[0]
    assert d['name'] == name and d['state'] == 'running' and d['autostart'] is True
    assert d['persistent'] is True and d['vcpus'] == 1 and d['memory'] == 65536
    assert d['disks'] == [dict(target='vda', bus='virtio', device='disk', type='file',
                               source='/images/%s.qcow2' % name, format='qcow2')]
    assert len(d['interfaces']) == 1
    iface = d['interfaces'][0]
    assert iface['source'] == 'default' and iface['model'] == 'virtio'
    assert iface['mac'].startswith('52:54:00:') and 'addresses' not in iface
    assert d['xml'].startswith("<domain type='test'")


def test_info_filters_and_missing_domain(conn, name):
    run(conn, xml=xml(name), state='paused')
    assert _domain.domains_info(conn, name=name + '-missing') == []
    paused = [d['name'] for d in _domain.domains_info(conn, state='paused')]
    assert name in paused
    running = [d['name'] for d in _domain.domains_info(conn, state='running')]
    assert name not in running and 'test' in running
    everything = [d['name'] for d in _domain.domains_info(conn)]
    assert everything == sorted(everything) and name in everything and 'test' in everything


def test_info_interface_addresses_from_leases(conn, name):
    run(conn, xml=xml(name), state='running')
    warnings = []
    d = _domain.domains_info(conn, name=name, addresses_from='lease', warn=warnings.append)[0]
    # The test driver answers with made-up addresses or not at all; both are fine, the key is
    # there and nothing fails.
    assert isinstance(d['interfaces'][0]['addresses'], list)
