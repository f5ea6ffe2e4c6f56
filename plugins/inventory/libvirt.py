# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
name: libvirt
short_description: Domains of libvirt hosts as inventory hosts
version_added: 0.1.0
description:
  - Makes every domain (virtual machine) of one or more libvirt hosts an inventory host, with
    its facts as host variables, groups by run state, autostart, hypervisor and tags, and
    C(ansible_host) set to an address of the domain that libvirt knows.
  - 'The inventory source is a YAML file whose name ends in C(.libvirt.yml) or C(.libvirt.yaml)
    and which holds C(plugin: virtops.libvirt.libvirt).'
  - B(Tags) are read from the domain's C(<metadata>), namespace
    C(https://virtops.example/libvirt/tags/1), for example
    C(<metadata><vo:tags xmlns:vo="https://virtops.example/libvirt/tags/1"><vo:tag>web</vo:tag></vo:tags></metadata>)
    (the prefix is free; set it with the XML of M(virtops.libvirt.virt_domain) or
    C(virsh metadata DOMAIN https://virtops.example/libvirt/tags/1 --key vo --set '<tags><tag>web</tag></tags>')).
  - 'B(Host variables), all prefixed C(libvirt_): C(libvirt_name), C(libvirt_uuid), C(libvirt_id)
    (null when not running), C(libvirt_state) (running, paused, shutoff, crashed, pmsuspended,
    blocked, shutdown), C(libvirt_persistent), C(libvirt_autostart), C(libvirt_domain_type) (kvm, qemu),
    C(libvirt_arch), C(libvirt_vcpus), C(libvirt_memory_mib), C(libvirt_current_memory_mib),
    C(libvirt_title), C(libvirt_description), C(libvirt_tags) (list), C(libvirt_interfaces) (list of
    C(mac), C(type), C(source) (network, bridge or device), C(model), C(target) and C(addresses), each
    with C(address), C(prefix), C(type) (ipv4, ipv6) and C(source) (lease, agent, arp)), C(libvirt_address)
    (the address chosen, or null), C(libvirt_uri) and C(libvirt_hypervisor).'
  - 'B(Groups), with the prefix O(group_prefix): C(libvirt_state_<state>) for every run state that
    occurs, C(libvirt_autostart) for domains that start with their host (there is no group of the
    others; use O(keyed_groups) on C(libvirt_autostart) for that), C(libvirt_hypervisor_<hypervisor>)
    and C(libvirt_tag_<tag>). Characters other than letters, digits and C(_) in these names become C(_).'
  - 'B(ansible_host): for running domains, the address sources of O(address_sources) are asked in
    order; the first IPv4 address that is not loopback or link-local (and lies in
    O(address_networks) when given) wins, IPv6 when no source has IPv4 (see O(address_family)).
    When no address is known C(ansible_host) is not set, and Ansible connects to the host name.'
author:
  - virtops.libvirt developers (@virtops)
requirements:
  - libvirt-python (Debian and Ubuntu C(python3-libvirt)) and lxml on the controller
extends_documentation_fragment:
  - constructed
  - inventory_cache
options:
  plugin:
    description: Marks the file as a source of this plugin.
    required: true
    type: str
    choices: [virtops.libvirt.libvirt]
  uri:
    description:
      - libvirt connection URIs, one string or a list, for example V(qemu:///system) or
        V(qemu+ssh://root@hv1.example.com/system). Domains of every URI are merged.
      - The connections are made from the controller (the host running Ansible).
    type: list
    elements: str
    default: [qemu:///system]
  username:
    description: User name for libvirt authentication (SASL), for every URI.
    type: str
    env:
      - name: VIRTOPS_LIBVIRT_USERNAME
  password:
    description:
      - Password for libvirt authentication (SASL), for every URI.
      - Prefer the environment variable (or a vaulted file) to a password in the source file.
    type: str
    env:
      - name: VIRTOPS_LIBVIRT_PASSWORD
  read_only:
    description:
      - Open read-only connections (C(VIR_CONNECT_RO)); all this plugin needs, except the
        V(agent) address source, which libvirt allows on read-write connections only.
    type: bool
    default: true
  skip_unreachable:
    description:
      - When a URI cannot be connected to (or read), warn and go on with the other URIs instead of
        failing the inventory.
    type: bool
    default: false
  host_name:
    description:
      - What names the inventory host of a domain.
      - V(name) is the domain name, V(uuid) the domain UUID, V(hypervisor_name) the hypervisor name
        (C(libvirt_hypervisor)), C(_) and the domain name (V(hv1_web1)), for several hypervisors with
        domains of the same name.
    type: str
    choices: [name, uuid, hypervisor_name]
    default: name
  duplicates:
    description:
      - What to do when two domains (from different URIs, or the same URI twice) get the same host name.
      - V(error) fails with both URIs named; V(first) keeps the domain of the URI listed first and warns.
    type: str
    choices: [error, first]
    default: error
  states:
    description:
      - Only domains in one of these run states, for example V([running]). All domains when omitted.
    type: list
    elements: str
    choices: [running, paused, shutoff, crashed, pmsuspended, blocked, shutdown]
  persistent_only:
    description: Only persistent domains; transient domains (created, not defined) are left out.
    type: bool
    default: false
  include_names:
    description: Only domains whose name matches one of these regular expressions (Python C(re.search)).
    type: list
    elements: str
  exclude_names:
    description: Leave out domains whose name matches one of these regular expressions (Python C(re.search)).
    type: list
    elements: str
  address_sources:
    description:
      - Where to look for the addresses of running domains, in this order (C(virDomainInterfaceAddresses)).
      - V(lease) is the DHCP leases of libvirt's own networks, V(arp) the host's ARP table, V(agent) the
        QEMU guest agent in the domain (needs O(read_only=false) and a running agent; it is asked only
        when the sources before it gave no IPv4 address).
      - An empty list reads no addresses and never sets C(ansible_host).
    type: list
    elements: str
    choices: [lease, agent, arp]
    default: [lease, arp]
  address_networks:
    description:
      - Only addresses in one of these networks (CIDR, for example V(192.168.122.0/24)) are chosen
        for C(ansible_host). All addresses are still listed in C(libvirt_interfaces).
    type: list
    elements: str
  address_family:
    description:
      - V(any) chooses IPv4 and falls back to IPv6; V(ipv4) and V(ipv6) choose that family only.
    type: str
    choices: [any, ipv4, ipv6]
    default: any
  group_prefix:
    description: Prefix of the groups this plugin makes (state, autostart, hypervisor, tags).
    type: str
    default: libvirt_
  qemu_agent_connection:
    description:
      - Reach the listed domains through their QEMU guest agent instead of the network. This sets
        C(ansible_connection=virtops.libvirt.qemu_agent), C(ansible_libvirt_uri) (the URI the domain
        was read from) and C(ansible_libvirt_domain) (its name) for every host this source lists.
      - The domains need the guest agent channel and a running C(qemu-ga) that allows C(guest-exec) and
        the C(guest-file-*) commands; see the connection plugin P(virtops.libvirt.qemu_agent#connection).
      - The connection opens its own libvirt connection without O(username) and O(password); set
        C(ansible_libvirt_uri) in O(compose) to another URI when the one read needs them.
      - Variables set in O(compose) win over these.
    type: bool
    default: false
    version_added: 0.2.0
  group_by:
    description: Which groups to make.
    type: list
    elements: str
    choices: [state, autostart, hypervisor, tags]
    default: [state, autostart, hypervisor, tags]
notes:
  - A domain that is undefined while the inventory is read is left out.
  - Addresses are only as good as their source; domains without a guest OS, or on networks
    libvirt does not serve DHCP for, have none in V(lease). Set C(ansible_host) in O(compose) for
    anything else.
seealso:
  - module: virtops.libvirt.virt_domain_info
  - name: libvirt domain metadata
    description: The C(<metadata>) element of the domain XML.
    link: https://libvirt.org/formatdomain.html#general-metadata
'''

EXAMPLES = r'''
# hypervisors.libvirt.yml: every domain of the local host
plugin: virtops.libvirt.libvirt

# fleet.libvirt.yml: two hypervisors over SSH, running domains only, host names that cannot
# collide, addresses from the management network, extra groups
plugin: virtops.libvirt.libvirt
uri:
  - qemu+ssh://root@hv1.example.com/system
  - qemu+ssh://root@hv2.example.com/system
skip_unreachable: true
host_name: hypervisor_name
states: [running]
exclude_names: ['^template-']
address_networks: [192.168.122.0/24]
keyed_groups:
  - key: libvirt_arch
    prefix: arch
  - key: libvirt_autostart
    prefix: autostart
compose:
  # The domains run an SSH server for the user 'admin'.
  ansible_user: "'admin'"
groups:
  big: libvirt_memory_mib >= 8192

# cached.libvirt.yml: reuse the result for an hour
plugin: virtops.libvirt.libvirt
cache: true
cache_plugin: ansible.builtin.jsonfile
cache_connection: ~/.cache/ansible-libvirt-inventory
cache_timeout: 3600

# agent.libvirt.yml: the running domains whose name starts with "build-", reached through the
# QEMU guest agent (no network needed in the guests)
plugin: virtops.libvirt.libvirt
states: [running]
include_names: ['^build-']
qemu_agent_connection: true
compose:
  ansible_python_interpreter: "'/usr/bin/python3'"
'''

import re

from ansible.errors import AnsibleError, AnsibleParserError
from ansible.module_utils.common.text.converters import to_native
from ansible.plugins.inventory import BaseInventoryPlugin, Cacheable, Constructable
from ansible.utils.unsafe_proxy import wrap_var

from ansible_collections.virtops.libvirt.plugins.module_utils._libvirt import VirtError
from ansible_collections.virtops.libvirt.plugins.module_utils import _inventory

# Host variables: record key -> variable name.
HOST_VARS = ('name', 'uuid', 'id', 'state', 'persistent', 'autostart', 'domain_type', 'arch', 'vcpus',
             'memory_mib', 'current_memory_mib', 'title', 'description', 'tags', 'interfaces',
             'address', 'uri', 'hypervisor')


def safe_group_part(text):
    return re.sub(r'[^A-Za-z0-9_]', '_', u'%s' % text)


class InventoryModule(BaseInventoryPlugin, Constructable, Cacheable):

    NAME = 'virtops.libvirt.libvirt'

    def verify_file(self, path):
        return super(InventoryModule, self).verify_file(path) and \
            path.endswith(('.libvirt.yml', '.libvirt.yaml'))

    def parse(self, inventory, loader, path, cache=True):
        super(InventoryModule, self).parse(inventory, loader, path, cache=cache)
        self._read_config_data(path)

        cache_key = self.get_cache_key(path)
        use_cache = self.get_option('cache') and cache
        update_cache = self.get_option('cache') and not cache
        sources = None
        if use_cache:
            try:
                sources = self._cache[cache_key]
            except KeyError:
                update_cache = True
        if sources is None:
            sources = self._read_hypervisors()
        if update_cache:
            self._cache[cache_key] = sources
        self._populate(sources)

    # -----------------------------------------------------------------------------------------
    # Reading libvirt

    def _read_hypervisors(self):
        uris = self.get_option('uri') or []
        try:
            networks = _inventory.parse_networks(self.get_option('address_networks'))
        except VirtError as exc:
            raise AnsibleParserError('libvirt inventory: %s' % exc.msg)
        result = []
        for uri in uris:
            try:
                result.append(_inventory.collect(
                    uri,
                    username=self.get_option('username'),
                    password=self.get_option('password'),
                    read_only=self.get_option('read_only'),
                    sources=self.get_option('address_sources') or [],
                    networks=networks,
                    family=self.get_option('address_family'),
                    note=self.display.vvv,
                ))
            except VirtError as exc:
                if not self.get_option('skip_unreachable'):
                    raise AnsibleError('libvirt inventory: cannot read the domains of %s: %s' % (
                        uri, exc.libvirt_message or exc.msg))
                self.display.warning('libvirt inventory: skipping %s, which cannot be read: %s' % (
                    uri, exc.libvirt_message or exc.msg))
        return result

    # -----------------------------------------------------------------------------------------
    # Filling the inventory

    def _wanted(self, record):
        states = self.get_option('states')
        if states and record['state'] not in states:
            return False
        if self.get_option('persistent_only') and not record['persistent']:
            return False
        include = self.get_option('include_names')
        if include and not any(re.search(p, record['name']) for p in include):
            return False
        exclude = self.get_option('exclude_names') or []
        return not any(re.search(p, record['name']) for p in exclude)

    def _host_name(self, record):
        kind = self.get_option('host_name')
        if kind == 'uuid':
            return record['uuid']
        if kind == 'hypervisor_name':
            return '%s_%s' % (record['hypervisor'], record['name'])
        return record['name']

    def _groups_of(self, record):
        prefix = self.get_option('group_prefix') or ''
        by = self.get_option('group_by') or []
        groups = []
        if 'state' in by:
            groups.append('%sstate_%s' % (prefix, record['state']))
        if 'autostart' in by and record['autostart']:
            groups.append('%sautostart' % prefix)
        if 'hypervisor' in by and record['hypervisor']:
            groups.append('%shypervisor_%s' % (prefix, record['hypervisor']))
        if 'tags' in by:
            groups.extend('%stag_%s' % (prefix, tag) for tag in record['tags'])
        return [safe_group_part(g) for g in groups]

    def _check_patterns(self):
        for option in ('include_names', 'exclude_names'):
            for pattern in self.get_option(option) or []:
                try:
                    re.compile(pattern)
                except re.error as exc:
                    raise AnsibleParserError('libvirt inventory: %s: %r is not a regular expression: %s' % (
                        option, pattern, to_native(exc)))

    def _populate(self, sources):
        self._check_patterns()
        strict = self.get_option('strict')
        taken = {}
        for source in sources:
            for record in source['domains']:
                if not self._wanted(record):
                    continue
                # Everything in a record is data a guest (agent addresses, interface names) or
                # whoever edits the domain (name, title, description, tags) chose: marked unsafe,
                # so Ansible never templates it. Here, not when reading, because the cache is
                # plain JSON and gives back plain strings.
                host = wrap_var(self._host_name(record))
                if host in taken:
                    msg = ('libvirt inventory: host name %s of domain %s on %s is already taken by domain %s on %s' % (
                        host, record['name'], record['uri'], taken[host]['name'], taken[host]['uri']))
                    if self.get_option('duplicates') == 'error':
                        raise AnsibleError(msg + '; set host_name to hypervisor_name or uuid, or duplicates to first')
                    self.display.warning(msg + '; keeping the first')
                    continue
                taken[host] = record
                self.inventory.add_host(host)
                for key in HOST_VARS:
                    self.inventory.set_variable(host, 'libvirt_%s' % key, wrap_var(record[key]))
                if record['address']:
                    self.inventory.set_variable(host, 'ansible_host', wrap_var(record['address']))
                if self.get_option('qemu_agent_connection'):
                    self.inventory.set_variable(host, 'ansible_connection', 'virtops.libvirt.qemu_agent')
                    self.inventory.set_variable(host, 'ansible_libvirt_uri', wrap_var(record['uri']))
                    self.inventory.set_variable(host, 'ansible_libvirt_domain', wrap_var(record['name']))
                for group in self._groups_of(record):
                    self.inventory.add_group(group)
                    self.inventory.add_child(group, host)
                hostvars = self.inventory.get_host(host).get_vars()
                self._set_composite_vars(self.get_option('compose'), hostvars, host, strict=strict)
                self._add_host_to_composed_groups(self.get_option('groups'), hostvars, host, strict=strict)
                self._add_host_to_keyed_groups(self.get_option('keyed_groups'), hostvars, host, strict=strict)
