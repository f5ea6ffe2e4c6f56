# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Private to the virtops.libvirt collection: may change without notice.
"""Virtual networks: desired definition and state, compared with the live network, then applied.

Used by virt_network and virt_network_info. Every helper raises VirtError; nothing here exits.

A definition that differs only in DHCP hosts, DHCP ranges, DNS host entries and port groups is
brought in line with virNetworkUpdate (live and persistent when the network is active, so no
restart is needed); any other difference redefines the persistent configuration, which an
active network uses only after a restart.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy

from ansible_collections.virtops.libvirt.plugins.module_utils._libvirt import (
    call_with_flags,
    is_error,
    libvirt,
    libvirt_call,
    lookup_or_none,
    optional_flag as _flag,
)
from ansible_collections.virtops.libvirt.plugins.module_utils._network_profile import NETWORK, ip_address, mac_address
from ansible_collections.virtops.libvirt.plugins.module_utils.xml import _compare, _document
from ansible_collections.virtops.libvirt.plugins.module_utils._lifecycle import DefinedObjectManager, Plan, read_each
from ansible_collections.virtops.libvirt.plugins.module_utils._network_check import foresee_define


STATES = ['present', 'active', 'inactive', 'absent']

NETWORK_ARGS = dict(
    name=dict(type='str'),
    xml=dict(type='str'),
    state=dict(type='str', default='present', choices=STATES),
    autostart=dict(type='bool'),
    restart_on_change=dict(type='bool', default=False),
)

NETWORK_INFO_ARGS = dict(
    name=dict(type='str'),
)


# ---------------------------------------------------------------------------------------------
# Reading a network

def lookup_network(connection, name):
    """The network called name, or None when there is none."""
    return lookup_or_none(lambda: connection.conn.networkLookupByName(name), ('VIR_ERR_NO_NETWORK',),
                          'looking up', 'network %s' % name)


def inactive_xml(net):
    """The persistent definition (the running one for a transient network).

    Drivers without VIR_NETWORK_XML_INACTIVE (test:///) keep one definition: it is read plainly.
    """
    return call_with_flags('reading the definition', 'network %s' % net.name(),
                           lambda: net.XMLDesc(_flag('VIR_NETWORK_XML_INACTIVE')), lambda: net.XMLDesc(0))


def live_xml(net):
    with libvirt_call('reading the XML', 'network %s' % net.name()):
        return net.XMLDesc(0)


def _facts_basic(net):
    obj = 'network %s' % net.name()
    with libvirt_call('reading the state', obj):
        active = bool(net.isActive())
        persistent = bool(net.isPersistent())
        autostart = bool(net.autostart()) if persistent else False
    xml = live_xml(net)
    root = _document.parse(xml, 'the XML of %s' % obj)
    bridge = root.find('bridge')
    return dict(
        name=net.name(),
        uuid=net.UUIDString(),
        active=active,
        autostart=autostart,
        persistent=persistent,
        bridge=bridge.get('name') if bridge is not None else None,
        xml=xml,
    ), root


def network_state(net):
    """The network's run state as a word: active or inactive."""
    return 'active' if net.isActive() else 'inactive'


def network_result(net):
    """What virt_network returns about a network."""
    if net is None:
        return {}
    return _facts_basic(net)[0]


# ---------------------------------------------------------------------------------------------
# The desired definition

class DesiredNetwork:
    """The user's network XML, parsed and checked against the name given."""

    def __init__(self, xml, name=None):
        self.root, self.name, self.uuid = _document.parse_desired(xml, 'network', 'network', name)

    def xml_for_define(self, uuid=None):
        """The XML to define; with the existing network's uuid when the user wrote none."""
        if uuid is not None and self.uuid is None:
            return _document.render(_document.with_uuid(self.root, uuid))
        return _document.render(self.root)


# ---------------------------------------------------------------------------------------------
# Live updates (virNetworkUpdate)

# section name -> (libvirt section constant, tag of the items in their container)
SECTIONS = {
    'ip-dhcp-host': ('VIR_NETWORK_SECTION_IP_DHCP_HOST', 'host'),
    'ip-dhcp-range': ('VIR_NETWORK_SECTION_IP_DHCP_RANGE', 'range'),
    'dns-host': ('VIR_NETWORK_SECTION_DNS_HOST', 'host'),
    'portgroup': ('VIR_NETWORK_SECTION_PORTGROUP', 'portgroup'),
}

COMMANDS = {
    'add-last': 'VIR_NETWORK_UPDATE_COMMAND_ADD_LAST',
    'delete': 'VIR_NETWORK_UPDATE_COMMAND_DELETE',
    'modify': 'VIR_NETWORK_UPDATE_COMMAND_MODIFY',
}

# Where each section's items sit, to strip them before comparing the rest of the definition.
_UPDATABLE_PATHS = ('ip/dhcp/host', 'ip/dhcp/range', 'dns/host', 'portgroup')


def _strip_updatable(root, desired_side):
    root = copy.deepcopy(root)
    for path in _UPDATABLE_PATHS:
        for elem in root.findall(path):
            elem.getparent().remove(elem)
    if desired_side:
        # libvirt always has a DNS section, it only omits an empty one from the XML.
        dns = root.find('dns')
        if dns is not None and not len(dns) and not dns.attrib and not (dns.text or '').strip():
            root.remove(dns)
    return root


def _item_key(section, elem):
    if section == 'ip-dhcp-host':
        mac = elem.get('mac')
        if mac:
            return ('mac', mac_address(mac))
        for attr in ('id', 'name', 'ip'):
            if elem.get(attr):
                value = elem.get(attr).strip()
                return (attr, ip_address(value) if attr == 'ip' else value)
        return ('xml', _document.render(elem))
    if section == 'ip-dhcp-range':
        return (ip_address((elem.get('start') or '').strip()),
                ip_address((elem.get('end') or '').strip()))
    if section == 'dns-host':
        return ip_address((elem.get('ip') or '').strip())
    return (elem.get('name') or '').strip()


_WRAPPERS = {
    'ip-dhcp-host': ('ip', 'dhcp'),
    'ip-dhcp-range': ('ip', 'dhcp'),
    'dns-host': ('dns',),
    'portgroup': (),
}


def _wrapped(section, item):
    """A network document holding only item, so the NETWORK profile compares it."""
    etree = _document.etree
    root = etree.Element('network')
    parent = root
    for tag in _WRAPPERS[section]:
        parent = etree.SubElement(parent, tag)
    parent.append(copy.deepcopy(item))
    return root


def _item_differs(section, desired, live):
    return _compare.compare(_wrapped(section, desired), _wrapped(section, live),
                            NETWORK).changed


def _xml_of(elem):
    return _document.etree.tostring(elem, encoding='unicode', with_tail=False).strip()


def _section_updates(section, desired_items, live_items, parent_index):
    """Commands that turn live_items into desired_items: deletes, then modifications, then adds."""
    deletes, modifies, adds = [], [], []
    live_by_key = {}
    for item in live_items:
        live_by_key.setdefault(_item_key(section, item), []).append(item)
    matched = set()
    for item in desired_items:
        candidates = [c for c in live_by_key.get(_item_key(section, item), [])
                      if id(c) not in matched]
        if not candidates:
            adds.append(item)
            continue
        live = candidates[0]
        matched.add(id(live))
        if not _item_differs(section, item, live):
            continue
        if section == 'portgroup' or (section == 'ip-dhcp-host' and item.get('mac')):
            modifies.append(item)
        else:
            deletes.append(live)
            adds.append(item)
    deletes = [i for i in live_items if id(i) not in matched] + deletes

    def command(name, elem):
        return dict(command=name, section=section, parent_index=parent_index, xml=_xml_of(elem))

    return ([command('delete', e) for e in deletes] + [command('modify', e) for e in modifies] +
            [command('add-last', e) for e in adds])


def _match_ips(desired_root, live_root):
    """[(desired ip, live ip, index of the live ip among the live ips)] for desired ips that
    have a live match (by address, else by position)."""
    live_ips = live_root.findall('ip')
    used = set()
    pairs = []
    for pos, dip in enumerate(desired_root.findall('ip')):
        address = ip_address((dip.get('address') or '').strip())
        index = None
        for i, lip in enumerate(live_ips):
            if i not in used and address and \
                    ip_address((lip.get('address') or '').strip()) == address:
                index = i
                break
        if index is None and not address and pos < len(live_ips) and pos not in used:
            index = pos
        if index is None:
            continue
        used.add(index)
        pairs.append((dip, live_ips[index], index))
    return pairs


def plan_updates(desired_root, live_root):
    """virNetworkUpdate commands that bring the live definition in line with the desired one,
    or None when other parts differ (the network must be redefined)."""
    stripped = _compare.compare(_strip_updatable(desired_root, True),
                                _strip_updatable(live_root, False), NETWORK)
    if stripped.changed:
        return None
    updates = []
    for dip, lip, index in _match_ips(desired_root, live_root):
        ddhcp, ldhcp = dip.find('dhcp'), lip.find('dhcp')
        if ddhcp is None or ldhcp is None:
            continue
        updates += _section_updates('ip-dhcp-range', ddhcp.findall('range'),
                                    ldhcp.findall('range'), index)
        updates += _section_updates('ip-dhcp-host', ddhcp.findall('host'),
                                    ldhcp.findall('host'), index)
    if desired_root.find('dns') is not None:
        ldns = live_root.find('dns')
        updates += _section_updates('dns-host', desired_root.findall('dns/host'),
                                    ldns.findall('host') if ldns is not None else [], -1)
    updates += _section_updates('portgroup', desired_root.findall('portgroup'),
                                live_root.findall('portgroup'), -1)
    # The plan must reach the intent; when it cannot (an item libvirt matches differently),
    # redefine instead of guessing.
    if _compare.compare(desired_root, simulate(live_root, updates), NETWORK).changed:
        return None
    return updates


def _container(root, update, create=False):
    section = update['section']
    if section == 'portgroup':
        return root
    if section == 'dns-host':
        dns = root.find('dns')
        if dns is None and create:
            dns = _document.etree.SubElement(root, 'dns')
        return dns
    ips = root.findall('ip')
    index = update['parent_index']
    if index < 0 or index >= len(ips):
        return None
    return ips[index].find('dhcp')


def simulate(root, updates):
    """A copy of root with the update commands applied the way libvirt applies them."""
    root = copy.deepcopy(_document.parse(root))
    for update in updates:
        parent = _container(root, update, create=update['command'] == 'add-last')
        if parent is None:
            continue
        item = _document.parse(update['xml'])
        tag = SECTIONS[update['section']][1]
        key = _item_key(update['section'], item)
        same = [c for c in parent.findall(tag) if _item_key(update['section'], c) == key]
        if update['command'] == 'add-last':
            parent.append(item)
        elif update['command'] == 'delete' and same:
            parent.remove(same[0])
        elif update['command'] == 'modify' and same:
            parent.replace(same[0], item)
    return root


# ---------------------------------------------------------------------------------------------
# The manager

class NetworkManager(DefinedObjectManager):
    """virt_network: compute the desired state, compare it with the live network, then apply
    (unless check mode). params: the module's parameters (NETWORK_ARGS)."""

    kind = 'network'
    argument_spec = NETWORK_ARGS
    desired_type = DesiredNetwork
    state_of = staticmethod(network_state)
    persistent_of = staticmethod(lambda net: bool(net.isPersistent()))
    autostart_of = staticmethod(lambda net: bool(net.autostart()))

    def __init__(self, connection, params, check_mode=False, diff_mode=False, warn=None):
        DefinedObjectManager.__init__(self, connection, params, check_mode, diff_mode, warn)
        self.updates = []
        self.restart_required = False
        self.definition_changed = False

    def find(self, name):
        return lookup_network(self.connection, name)

    # -- absent -----------------------------------------------------------------------------

    def plan_absent(self, live):
        if live is None:
            return Plan()
        before_state, persistent, before_autostart = self.read_before(live)
        active = before_state == 'active'
        plan = Plan(before=dict(state=before_state, autostart=before_autostart),
                    after=dict(state='absent'),
                    before_xml=_compare.normalized(inactive_xml(live), NETWORK))
        if active:
            plan.add('destroy', self._destroy())
        if persistent:
            plan.add('undefine', self.call_step('undefining', lambda net: net.undefine()))
        return plan

    # -- present / active / inactive --------------------------------------------------------

    def plan_present(self, live):
        p = self.params
        state = p['state']
        desired = self.desired
        exists = live is not None
        before_state, persistent, before_autostart = self.read_before(live)
        active = before_state == 'active'

        intent = None
        define = False
        if desired is not None:
            self.check_uuid(live, 'network')
            stored = _document.parse(inactive_xml(live)) if exists else None
            intent = _compare.compare(desired.root, stored, NETWORK)
            if not exists or not persistent:
                define = True
            elif intent.changed:
                updates = plan_updates(desired.root, stored)
                if updates is None:
                    define = True
                else:
                    self.updates = updates
            if define and self.check_mode:
                # What the define would be refused for, as far as it can be known without one.
                foresee_define(self.connection, desired.root, desired.name)
        elif exists and not persistent:
            # present means defined: make a transient network persistent as it runs.
            desired = self.desired = DesiredNetwork(live_xml(live), self.name)
            intent = _compare.compare(desired.root, live_xml(live), NETWORK)
            define = True

        # The run state after the definition step, and whether it lags behind the definition.
        affect_live = active
        for update in self.updates:
            update['affect'] = 'live+config' if affect_live else 'config'
        pending = False
        if active and desired is not None:
            pending = self._running_differs(live, desired)
        plan = Plan()
        if define:
            plan.add('define', self._define)
        if self.updates:
            plan.add('update', self._update_all)
        after_active = active
        if state == 'active' and not active:
            plan.add('start', self.call_step('starting', lambda net: net.create()))
            after_active = True
            pending = False
        elif state == 'inactive' and active:
            plan.add('destroy', self._destroy())
            after_active = False
            pending = False
        restart = pending and p['restart_on_change']
        if restart:
            plan.add('restart', self._restart)
        after_autostart = self.plan_autostart(plan, before_autostart)
        self.restart_required = pending and not restart and after_active

        # A definition changed by live updates (no define) shows its change too.
        plan.show(dict(state=before_state, autostart=before_autostart),
                  dict(state='active' if after_active else 'inactive', autostart=after_autostart),
                  intent, intent is not None and (intent.changed or not exists or not persistent))
        self.definition_changed = define or bool(self.updates)
        return plan

    def _running_differs(self, net, desired):
        """Does the running network lag behind desired, beyond what the planned live updates
        change?"""
        running = _document.parse(live_xml(net))
        if self.updates:
            running = simulate(running, self.updates)
        return _compare.compare(desired.root, running, NETWORK).changed

    # -- steps ------------------------------------------------------------------------------

    def _define(self, net):
        xml = self.desired.xml_for_define(net.UUIDString() if net is not None else None)
        return call_with_flags('defining', self.obj,
                               lambda: self.conn.networkDefineXMLFlags(xml, _flag('VIR_NETWORK_DEFINE_VALIDATE')),
                               lambda: self.conn.networkDefineXML(xml), suffix=' (nothing was changed)')

    def _update_all(self, net):
        for update in self.updates:
            self.update(net, update)
        return net

    def update(self, net, update):
        flags = _flag('VIR_NETWORK_UPDATE_AFFECT_CONFIG')
        if update['affect'] == 'live+config':
            flags |= _flag('VIR_NETWORK_UPDATE_AFFECT_LIVE')
        action = 'updating (%s %s %s)' % (update['command'], update['section'], update['xml'])
        with libvirt_call(action, self.obj):
            net.update(_flag(COMMANDS[update['command']]), _flag(SECTIONS[update['section']][0]),
                       update['parent_index'], update['xml'], flags)

    def _destroy(self):
        return self.call_step('stopping (destroy)', lambda net: net.destroy())

    def _restart(self, net):
        with libvirt_call('restarting to apply the new definition (destroy)', self.obj):
            net.destroy()
        with libvirt_call('restarting to apply the new definition (start)', self.obj):
            net.create()
        return net

    # -- after the steps, and the result -------------------------------------------------------

    def after_apply(self, live, plan):
        """After a change of the definition: anything libvirt did not keep would cause a
        change on every run."""
        if self.wants_absent() or not self.definition_changed:
            return live
        self.warn_not_kept(_compare.compare(self.desired.root, inactive_xml(live), NETWORK))
        return live

    def result_fields(self, live, plan):
        return dict(
            network=network_result(live) if live is not None and not self.wants_absent() else {},
            restart_required=self.restart_required,
            updates=self.updates,
            actions=list(self.actions),
        )


# ---------------------------------------------------------------------------------------------
# virt_network_info

def _ip_facts(ip):
    dhcp = ip.find('dhcp')
    return dict(
        family=ip.get('family') or 'ipv4',
        address=ip.get('address'),
        netmask=ip.get('netmask'),
        prefix=int(ip.get('prefix')) if (ip.get('prefix') or '').isdigit() else None,
        dhcp_ranges=[dict(start=r.get('start'), end=r.get('end'))
                     for r in (dhcp.findall('range') if dhcp is not None else [])],
        dhcp_hosts=[dict(mac=h.get('mac').lower() if h.get('mac') else None, ip=h.get('ip'),
                         name=h.get('name'), id=h.get('id'))
                    for h in (dhcp.findall('host') if dhcp is not None else [])],
    )


LEASE_TYPES = {0: 'ipv4', 1: 'ipv6'}


def dhcp_leases(net, warn):
    """The DHCP leases of an active network; [] where the driver keeps none (test:///)."""
    try:
        leases = net.DHCPLeases() or []
    except libvirt.libvirtError as exc:
        if not is_error(exc, 'VIR_ERR_NO_SUPPORT'):
            warn('network %s: no DHCP leases: %s' % (net.name(), exc.get_error_message() or exc))
        return []
    return [dict(mac=(lease.get('mac') or '').lower() or None, ip=lease.get('ipaddr'),
                 prefix=lease.get('prefix'), hostname=lease.get('hostname'),
                 type=LEASE_TYPES.get(lease.get('type'), str(lease.get('type'))),
                 client_id=lease.get('clientid'), expiry_time=lease.get('expirytime'),
                 interface=lease.get('iface'))
            for lease in leases]


def network_facts(net, warn=None):
    """Facts about one network, as virt_network_info returns them."""
    warn = warn or (lambda msg: None)
    facts, root = _facts_basic(net)
    forward = root.find('forward')
    facts['forward_mode'] = (forward.get('mode') or 'nat') if forward is not None else None
    facts['ips'] = [_ip_facts(ip) for ip in root.findall('ip')]
    facts['dhcp_leases'] = dhcp_leases(net, warn) if facts['active'] else []
    return facts


def networks_info(connection, name=None, warn=None):
    """virt_network_info: one network (by name; [] when missing) or all, sorted by name."""
    return read_each(name, lambda n: lookup_network(connection, n), lambda: connection.conn.listAllNetworks(0),
                     'listing networks', connection.uri, lambda net: network_facts(net, warn), 'VIR_ERR_NO_NETWORK')


def read_networks(connection, params, warn):
    """virt_network_info's result."""
    return dict(networks=networks_info(connection, name=params['name'], warn=warn))
