# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The inventory plugin virtops.libvirt.libvirt end to end on libvirt's test:///default driver:
a generated x.libvirt.yml read by Ansible's InventoryManager and DataLoader, the plugin found by
Ansible's own plugin loader. No mocks.

The test driver keeps one shared state per process while a connection is open: the fixture's
connection holds the domains and networks it defines while the plugin opens its own
(read-only) connections. The test driver also answers virDomainInterfaceAddresses with an
address out of the DHCP range of the domain's network, which makes ansible_host testable.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ipaddress
import os
import sys

import pytest
import yaml

libvirt = pytest.importorskip('libvirt')
pytest.importorskip('lxml')

from ansible.errors import AnsibleError  # noqa: E402
from ansible.inventory.data import InventoryData  # noqa: E402
from ansible.inventory.manager import InventoryManager  # noqa: E402
from ansible.parsing.dataloader import DataLoader  # noqa: E402
from ansible.plugins.loader import init_plugin_loader, inventory_loader  # noqa: E402
from ansible.utils.collection_loader import AnsibleCollectionConfig  # noqa: E402

# Ansible finds plugins only through its collection loader, as the CLI installs it: the same
# here, with the link to this checkout that `make link` makes. Collection modules imported
# before (plainly, by other test files of the session) would lack the collection's metadata.
CHECKOUT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..', '..', '..'))
COLLECTIONS = (os.environ.get('ANSIBLE_COLLECTIONS_PATH') or os.path.join(CHECKOUT, 'build', 'collections')).split(':')
if AnsibleCollectionConfig.collection_finder is None:
    for _name in [m for m in sys.modules if m == 'ansible_collections' or m.startswith('ansible_collections.')]:
        del sys.modules[_name]
    init_plugin_loader(COLLECTIONS)

from ansible_collections.virtops.libvirt.plugins.module_utils import _inventory  # noqa: E402

URI = 'test:///default'
NS = 'https://virtops.example/libvirt/tags/1'
PREFIX = 'it-inv-ut-%d-' % os.getpid()

NETWORK = """<network>
  <name>{name}</name>
  <bridge name='virbr-itinv'/>
  <ip address='10.77.0.1' netmask='255.255.255.0'>
    <dhcp><range start='10.77.0.100' end='10.77.0.200'/></dhcp>
  </ip>
</network>"""

DOMAIN = """<domain type='test'>
  <name>{name}</name>
  {extra}
  <memory unit='MiB'>64</memory>
  <currentMemory unit='MiB'>48</currentMemory>
  <vcpu current='1'>2</vcpu>
  <os><type arch='x86_64'>hvm</type></os>
  <devices>{interfaces}</devices>
</domain>"""

TAGS = "<metadata><vo:tags xmlns:vo='%s'>%s</vo:tags></metadata>" % (NS, '{tags}')


def iface(network, mac):
    return "<interface type='network'><mac address='%s'/><source network='%s'/></interface>" % (mac, network)


@pytest.fixture
def lab():
    """web (running, autostart, tags web+prod, title, two NICs), db (shut off, tag db),
    tmp (transient, running), next to the driver's own running domain 'test'."""
    conn = libvirt.open(URI)
    names = dict(net=PREFIX + 'mgmt', web=PREFIX + 'web', db=PREFIX + 'db', tmp=PREFIX + 'tmp')
    net = conn.networkDefineXML(NETWORK.format(name=names['net']))
    net.create()
    web = conn.defineXML(DOMAIN.format(
        name=names['web'],
        extra="<title>Web front</title><description>serves www</description>" +
              TAGS.format(tags='<vo:tag>web</vo:tag><vo:tag>prod</vo:tag><vo:tag>web</vo:tag>'),
        interfaces=iface('default', '52:54:00:aa:00:01') + iface(names['net'], '52:54:00:aa:00:02')))
    web.setAutostart(1)
    web.create()
    conn.defineXML(DOMAIN.format(name=names['db'], extra=TAGS.format(tags='<vo:tag>db</vo:tag>'),
                                 interfaces=iface('default', '52:54:00:aa:00:03')))
    conn.createXML(DOMAIN.format(name=names['tmp'], extra='', interfaces=''), 0)
    yield dict(names, conn=conn)
    for key in ('web', 'db', 'tmp'):
        try:
            dom = conn.lookupByName(names[key])
        except libvirt.libvirtError:
            continue
        persistent = dom.isPersistent()
        if dom.isActive():
            dom.destroy()
        if persistent:
            dom.undefine()
    net.destroy()
    net.undefine()
    conn.close()


def write_source(tmp_path, name='x.libvirt.yml', **options):
    config = dict(plugin='virtops.libvirt.libvirt', uri=URI)
    config.update(options)
    path = tmp_path / name
    path.write_text(yaml.safe_dump(config))
    return str(path)


def inventory(tmp_path, **options):
    return InventoryManager(loader=DataLoader(), sources=[write_source(tmp_path, **options)])


def hostvars(inv, host):
    return inv.get_host(host).get_vars()


def group_hosts(inv, group):
    return sorted(h.name for h in inv.groups[group].get_hosts()) if group in inv.groups else []


def parse_directly(tmp_path, **options):
    """Run the plugin's parse() itself, so its errors reach the test (InventoryManager turns
    them into warnings about an unparsed source)."""
    plugin = inventory_loader.get('virtops.libvirt.libvirt')
    data = InventoryData()
    plugin.parse(data, DataLoader(), write_source(tmp_path, **options), cache=False)
    return data


def addresses_from_driver(conn, name, mac):
    found = conn.lookupByName(name).interfaceAddresses(libvirt.VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_LEASE, 0)
    return [a['addr'] for data in found.values() if data['hwaddr'] == mac for a in data['addrs']]


def test_domains_become_hosts_with_their_facts(tmp_path, lab):
    inv = inventory(tmp_path, include_names=['^' + PREFIX, '^test$'])
    assert sorted(inv.hosts) == sorted([lab['web'], lab['db'], lab['tmp'], 'test'])

    web = hostvars(inv, lab['web'])
    dom = lab['conn'].lookupByName(lab['web'])
    assert web['libvirt_name'] == lab['web']
    assert web['libvirt_uuid'] == dom.UUIDString()
    assert web['libvirt_id'] == dom.ID()
    assert web['libvirt_state'] == 'running'
    assert web['libvirt_autostart'] is True
    assert web['libvirt_persistent'] is True
    assert web['libvirt_vcpus'] == 1
    assert web['libvirt_memory_mib'] == 64
    assert web['libvirt_current_memory_mib'] == 48
    assert web['libvirt_domain_type'] == 'test'
    assert web['libvirt_arch'] == 'x86_64'
    assert web['libvirt_title'] == 'Web front'
    assert web['libvirt_description'] == 'serves www'
    assert web['libvirt_tags'] == ['web', 'prod']
    assert web['libvirt_uri'] == URI
    assert web['libvirt_hypervisor'] == lab['conn'].getHostname()
    assert [(i['mac'], i['type'], i['source']) for i in web['libvirt_interfaces']] == [
        ('52:54:00:aa:00:01', 'network', 'default'), ('52:54:00:aa:00:02', 'network', lab['net'])]

    db = hostvars(inv, lab['db'])
    assert db['libvirt_state'] == 'shutoff'
    assert db['libvirt_id'] is None
    assert db['libvirt_autostart'] is False
    assert db['libvirt_tags'] == ['db']
    assert db['libvirt_title'] is None
    tmp = hostvars(inv, lab['tmp'])
    assert tmp['libvirt_persistent'] is False and tmp['libvirt_tags'] == []


def test_groups_by_state_autostart_hypervisor_and_tags(tmp_path, lab):
    inv = inventory(tmp_path, include_names=['^' + PREFIX])
    assert group_hosts(inv, 'libvirt_state_running') == sorted([lab['web'], lab['tmp']])
    assert group_hosts(inv, 'libvirt_state_shutoff') == [lab['db']]
    assert 'libvirt_state_paused' not in inv.groups
    assert group_hosts(inv, 'libvirt_autostart') == [lab['web']]
    assert group_hosts(inv, 'libvirt_tag_web') == [lab['web']]
    assert group_hosts(inv, 'libvirt_tag_prod') == [lab['web']]
    assert group_hosts(inv, 'libvirt_tag_db') == [lab['db']]
    hv_group = 'libvirt_hypervisor_' + ''.join(c if c.isalnum() else '_' for c in lab['conn'].getHostname())
    assert group_hosts(inv, hv_group) == sorted([lab['web'], lab['db'], lab['tmp']])


def test_group_prefix_and_group_by(tmp_path, lab):
    inv = inventory(tmp_path, include_names=['^' + PREFIX], group_prefix='kvm-', group_by=['tags'])
    assert group_hosts(inv, 'kvm_tag_web') == [lab['web']]
    assert not [g for g in inv.groups if 'state' in g or 'autostart' in g or 'hypervisor' in g]


def test_ansible_host_from_the_lease_source(tmp_path, lab):
    inv = inventory(tmp_path, include_names=['^' + PREFIX])
    web = hostvars(inv, lab['web'])
    first = addresses_from_driver(lab['conn'], lab['web'], '52:54:00:aa:00:01')
    assert first and ipaddress.ip_address(first[0]) in ipaddress.ip_network('192.168.122.0/24')
    # IPv4 of the first interface with one, as the driver reports it.
    assert web['ansible_host'] == first[0] == web['libvirt_address']
    addrs = web['libvirt_interfaces'][1]['addresses']
    assert [a['address'] for a in addrs] == addresses_from_driver(lab['conn'], lab['web'], '52:54:00:aa:00:02')
    assert addrs[0]['source'] == 'lease' and addrs[0]['type'] == 'ipv4' and addrs[0]['prefix'] == 24
    # Shut-off domains have no address, and no ansible_host.
    assert 'ansible_host' not in hostvars(inv, lab['db'])
    assert hostvars(inv, lab['db'])['libvirt_address'] is None


def test_address_networks_pick_the_management_interface(tmp_path, lab):
    inv = inventory(tmp_path, include_names=['^' + PREFIX], address_networks=['10.77.0.0/24'])
    mgmt = addresses_from_driver(lab['conn'], lab['web'], '52:54:00:aa:00:02')
    assert ipaddress.ip_address(mgmt[0]) in ipaddress.ip_network('10.77.0.0/24')
    assert hostvars(inv, lab['web'])['ansible_host'] == mgmt[0]
    # The running domain 'test' is on the default network only: no address in 10.77.0.0/24.
    inv = inventory(tmp_path, include_names=['^test$'], address_networks=['10.77.0.0/24'])
    assert 'ansible_host' not in hostvars(inv, 'test')
    assert hostvars(inv, 'test')['libvirt_interfaces'][0]['addresses']


def test_no_address_sources_and_ipv6_only(tmp_path, lab):
    inv = inventory(tmp_path, include_names=['^' + PREFIX], address_sources=[])
    assert 'ansible_host' not in hostvars(inv, lab['web'])
    assert hostvars(inv, lab['web'])['libvirt_interfaces'][0]['addresses'] == []
    inv = inventory(tmp_path, include_names=['^' + PREFIX], address_family='ipv6')
    assert 'ansible_host' not in hostvars(inv, lab['web'])


def test_filters(tmp_path, lab):
    inv = inventory(tmp_path, include_names=['^' + PREFIX], states=['running'])
    assert sorted(inv.hosts) == sorted([lab['web'], lab['tmp']])
    inv = inventory(tmp_path, include_names=['^' + PREFIX], persistent_only=True)
    assert sorted(inv.hosts) == sorted([lab['web'], lab['db']])
    inv = inventory(tmp_path, include_names=['^' + PREFIX], exclude_names=['db$', 'tmp$'])
    assert list(inv.hosts) == [lab['web']]


def test_host_names_by_uuid_and_by_hypervisor(tmp_path, lab):
    uuid = lab['conn'].lookupByName(lab['web']).UUIDString()
    inv = inventory(tmp_path, include_names=['^' + PREFIX + 'web'], host_name='uuid')
    assert list(inv.hosts) == [uuid]
    inv = inventory(tmp_path, include_names=['^' + PREFIX + 'web'], host_name='hypervisor_name')
    assert list(inv.hosts) == ['%s_%s' % (lab['conn'].getHostname(), lab['web'])]


def test_duplicate_host_names(tmp_path, lab):
    # The same URI twice: every domain name collides.
    with pytest.raises(AnsibleError) as err:
        parse_directly(tmp_path, uri=[URI, URI], include_names=['^' + PREFIX + 'web'])
    assert 'host name %s of domain %s on %s is already taken' % (lab['web'], lab['web'], URI) in str(err.value)
    assert 'hypervisor_name or uuid' in str(err.value)
    data = parse_directly(tmp_path, uri=[URI, URI], include_names=['^' + PREFIX + 'web'], duplicates='first')
    assert list(data.hosts) == [lab['web']]


def test_unreachable_uri(tmp_path, lab):
    missing = 'test:///%s/no-such-host.xml' % tmp_path
    with pytest.raises(AnsibleError) as err:
        parse_directly(tmp_path, uri=[missing, URI])
    assert 'cannot read the domains of %s' % missing in str(err.value)
    assert 'no-such-host.xml' in str(err.value).split(missing, 1)[1]
    data = parse_directly(tmp_path, uri=[missing, URI], skip_unreachable=True, include_names=['^' + PREFIX])
    assert sorted(data.hosts) == sorted([lab['web'], lab['db'], lab['tmp']])


def test_bad_options_are_clear(tmp_path, lab):
    with pytest.raises(AnsibleError) as err:
        parse_directly(tmp_path, address_networks=['10.0.0.0/33'])
    assert 'address_networks: 10.0.0.0/33 is not a network' in str(err.value)
    with pytest.raises(AnsibleError) as err:
        parse_directly(tmp_path, include_names=['(web'])
    assert "include_names: '(web' is not a regular expression" in str(err.value)


def test_constructable_compose_groups_keyed_groups(tmp_path, lab):
    inv = inventory(
        tmp_path, include_names=['^' + PREFIX],
        compose=dict(memory_gib='libvirt_memory_mib / 1024', ansible_host="'%s.example.com' % libvirt_name"),
        groups=dict(small='libvirt_memory_mib < 128', tagged='libvirt_tags | length > 0'),
        keyed_groups=[dict(key='libvirt_arch', prefix='arch'), dict(key='libvirt_tags', prefix='role')])
    web = hostvars(inv, lab['web'])
    # ansible-core before 2.19 renders compose results as text unless jinja2_native is on;
    # the value, not its Python type, is what the plugin is responsible for.
    assert float(web['memory_gib']) == 0.0625
    assert web['ansible_host'] == '%s.example.com' % lab['web']
    assert group_hosts(inv, 'small') == sorted([lab['web'], lab['db'], lab['tmp']])
    assert group_hosts(inv, 'tagged') == sorted([lab['web'], lab['db']])
    assert group_hosts(inv, 'arch_x86_64') == sorted([lab['web'], lab['db'], lab['tmp']])
    assert group_hosts(inv, 'role_prod') == [lab['web']]
    assert group_hosts(inv, 'role_db') == [lab['db']]


def test_strict_fails_on_a_broken_compose(tmp_path, lab):
    options = dict(include_names=['^' + PREFIX + 'web'], compose=dict(x='libvirt_no_such_var + 1'))
    data = parse_directly(tmp_path, **options)
    assert 'x' not in data.get_host(lab['web']).get_vars()
    with pytest.raises(AnsibleError) as err:
        parse_directly(tmp_path, strict=True, **options)
    assert 'Could not set x for host %s' % lab['web'] in str(err.value)


def test_cache_serves_the_last_result(tmp_path, lab):
    options = dict(include_names=['^' + PREFIX], cache=True, cache_plugin='ansible.builtin.jsonfile',
                   cache_connection=str(tmp_path / 'cache'), cache_timeout=3600)
    first = inventory(tmp_path, **options)
    assert lab['db'] in first.hosts
    assert os.listdir(str(tmp_path / 'cache'))
    # The domain goes; the cached inventory still has it, a fresh read does not.
    lab['conn'].lookupByName(lab['db']).undefine()
    cached = inventory(tmp_path, **options)
    assert lab['db'] in cached.hosts
    assert hostvars(cached, lab['web'])['libvirt_tags'] == ['web', 'prod']
    options['cache'] = False
    fresh = inventory(tmp_path, **options)
    assert lab['db'] not in fresh.hosts


def test_verify_file_wants_the_libvirt_suffix(tmp_path):
    plugin = inventory_loader.get('virtops.libvirt.libvirt')
    good = write_source(tmp_path, name='hv.libvirt.yaml')
    other = write_source(tmp_path, name='hv.yml')
    assert plugin.verify_file(good)
    assert not plugin.verify_file(other)
    assert not plugin.verify_file(str(tmp_path / 'missing.libvirt.yml'))


def test_usable_address():
    nets = _inventory.parse_networks(['10.0.0.0/8', 'fd00::/8'])
    assert _inventory.usable_address('10.1.2.3', nets) is not None
    assert _inventory.usable_address('192.168.1.1', nets) is None
    assert _inventory.usable_address('fd00::5', nets) is not None
    for bad in ('127.0.0.1', '169.254.1.1', 'fe80::1', '::1', '0.0.0.0', '224.0.0.1', 'nonsense'):
        assert _inventory.usable_address(bad) is None, bad
    assert _inventory.usable_address('2001:db8::1', family='ipv4') is None
    assert _inventory.usable_address('192.0.2.1', family='ipv6') is None


def test_agent_source_needs_a_read_write_connection(tmp_path, lab):
    # libvirt refuses the agent source on read-only connections: no address, no failure.
    inv = inventory(tmp_path, include_names=['^' + PREFIX + 'web'], address_sources=['agent'])
    assert 'ansible_host' not in hostvars(inv, lab['web'])
    inv = inventory(tmp_path, include_names=['^' + PREFIX + 'web'], address_sources=['agent'], read_only=False)
    web = hostvars(inv, lab['web'])
    assert web['libvirt_interfaces'][0]['addresses'][0]['source'] == 'agent'
    assert web['ansible_host'] == web['libvirt_interfaces'][0]['addresses'][0]['address']


# ---------------------------------------------------------------------------------------------
# Guest-controlled values are data, never templates (issue 10). Title, description and metadata
# are written by whoever edits the domain, addresses and interface names come from the guest
# (agent) or its DHCP client: Ansible must not template them on the controller. Ansible before
# 2.19 templates every plain string of a host variable when a play reads it; AnsibleUnsafe
# (wrap_var) stops that. From 2.19 on, strings are untrusted unless tagged TrustedAsTemplate.

try:
    from ansible.template import is_trusted_as_template, trust_as_template  # 2.19 and later
except ImportError:
    from ansible.utils.unsafe_proxy import AnsibleUnsafe

    def is_trusted_as_template(value):
        return not isinstance(value, AnsibleUnsafe)

    def trust_as_template(value):
        return value

from ansible.template import Templar  # noqa: E402
from ansible.vars.manager import VariableManager  # noqa: E402

SEVEN_SIX = '{{ 7 * 6 }}'
LOOKUP = "{{ lookup('pipe', 'echo PWNED') }}"


@pytest.fixture
def hostile():
    """A running domain whose name, title, description and tags are templates."""
    conn = libvirt.open(URI)
    name = PREFIX + SEVEN_SIX
    dom = conn.defineXML(DOMAIN.format(
        name=name,
        extra='<title>%s</title><description>%s</description>' % (SEVEN_SIX, LOOKUP) +
              TAGS.format(tags='<vo:tag>%s</vo:tag><vo:tag>%s</vo:tag>' % (SEVEN_SIX, LOOKUP)),
        interfaces=iface('default', '52:54:00:aa:00:09')))
    dom.create()
    yield name
    dom.destroy()
    dom.undefine()
    conn.close()


def strings_in(value):
    """Every string in a nested structure of dicts and lists, keys included."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from strings_in(key)
            yield from strings_in(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from strings_in(item)
    elif isinstance(value, str):
        yield value


def assert_untrusted(host, hostvars_, expected=()):
    """The host name and every string of the plugin's variables are unsafe; expected are among them."""
    assert not is_trusted_as_template(host.name)
    names = [k for k in hostvars_ if k.startswith('libvirt_')] + ['ansible_host']
    assert 'libvirt_tags' in names and 'libvirt_interfaces' in names
    checked = []
    for key in names:
        for text in strings_in(hostvars_[key]):
            assert not is_trusted_as_template(text), (key, text)
            checked.append(text)
    for text in expected:
        assert text in checked


def test_guest_values_are_unsafe(tmp_path, lab, hostile):
    options = dict(include_names=['^' + PREFIX], read_only=False, address_sources=['agent', 'lease'],
                   cache=True, cache_plugin='ansible.builtin.jsonfile',
                   cache_connection=str(tmp_path / 'cache'), cache_timeout=3600)
    inv = inventory(tmp_path, **options)
    evil = hostvars(inv, hostile)
    assert evil['libvirt_title'] == SEVEN_SIX and evil['libvirt_description'] == LOOKUP
    assert evil['libvirt_tags'] == [SEVEN_SIX, LOOKUP]
    assert [a['source'] for a in evil['libvirt_interfaces'][0]['addresses']] == ['agent']
    expected = (SEVEN_SIX, LOOKUP, '52:54:00:aa:00:09', 'default', 'agent', evil['ansible_host'])
    assert_untrusted(inv.get_host(hostile), evil, expected)
    assert_untrusted(inv.get_host(lab['web']), hostvars(inv, lab['web']))
    # The cache is plain JSON: what it gives back is marked again.
    cached = inventory(tmp_path, **options)
    assert_untrusted(cached.get_host(hostile), hostvars(cached, hostile), expected)


def test_guest_values_stay_literal_in_plays_and_groups(tmp_path, lab, hostile):
    loader = DataLoader()
    inv = InventoryManager(loader=loader, sources=[write_source(
        tmp_path, include_names=['^' + PREFIX],
        keyed_groups=[dict(key='libvirt_tags', prefix='role'), dict(key='libvirt_title', prefix='title')],
        compose=dict(shown="libvirt_description + '!'"))])
    host = inv.get_host(hostile)
    templar = Templar(loader=loader, variables=VariableManager(loader=loader, inventory=inv).get_vars(host=host))

    def render(expr):
        return templar.template(trust_as_template('{{ %s }}' % expr))

    assert render('libvirt_title') == SEVEN_SIX
    assert render('libvirt_description') == LOOKUP
    assert render('libvirt_tags') == [SEVEN_SIX, LOOKUP]
    assert render('shown') == LOOKUP + '!'
    assert render('inventory_hostname') == render('inventory_hostname_short') == hostile
    assert hostile in render('groups')['all']
    # keyed_groups template their key: the values must not be evaluated there either.
    groups = render('group_names')
    assert 'PWNED' not in ' '.join(g for g in groups if 'lookup' not in g)
    assert not [g for g in inv.groups if g.endswith('_42')]
    assert 'libvirt_tag____7___6___' in groups


def test_qemu_agent_connection_is_off_by_default(tmp_path, lab):
    web = hostvars(inventory(tmp_path, include_names=['^' + PREFIX]), lab['web'])
    assert 'ansible_connection' not in web
    assert 'ansible_libvirt_domain' not in web


def test_qemu_agent_connection_sets_the_connection_uri_and_domain(tmp_path, lab):
    # host_name=uuid: the domain name must come from ansible_libvirt_domain, not the host name
    inv = inventory(tmp_path, include_names=['^' + PREFIX], host_name='uuid', qemu_agent_connection=True,
                    compose={'ansible_python_interpreter': "'/usr/bin/python3'"})
    uuid = lab['conn'].lookupByName(lab['web']).UUIDString()
    web = hostvars(inv, uuid)
    assert web['ansible_connection'] == 'virtops.libvirt.qemu_agent'
    assert web['ansible_libvirt_uri'] == URI
    assert web['ansible_libvirt_domain'] == lab['web']
    assert web['ansible_python_interpreter'] == '/usr/bin/python3'
