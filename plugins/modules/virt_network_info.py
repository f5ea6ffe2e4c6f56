#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: virt_network_info
short_description: Facts about libvirt virtual networks
version_added: 0.1.0
description:
  - Returns one network (O(name)) or all networks with identity, run state, autostart, bridge,
    forward mode, IP addresses with their DHCP ranges and hosts, the DHCP leases of active
    networks and the live XML.
author:
  - virtops.libvirt developers (@virtops)
extends_documentation_fragment:
  - virtops.libvirt.connection
  - virtops.libvirt.attributes.INFO_MODULE
options:
  name:
    description:
      - Name of the network. Without it, every network is returned.
      - A network that does not exist gives an empty list, not a failure.
    type: str
seealso:
  - module: virtops.libvirt.virt_network
'''

EXAMPLES = r'''
- name: One network
  virtops.libvirt.virt_network_info:
    name: default
  register: default_net

- name: The addresses handed out by its DHCP server
  ansible.builtin.debug:
    msg: "{{ default_net.networks[0].dhcp_leases | map(attribute='ip') | list }}"

- name: All networks
  virtops.libvirt.virt_network_info:
  register: all_networks
'''

RETURN = r'''
networks:
  description: The networks, sorted by name.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: Name.
      type: str
      sample: default
    uuid:
      description: UUID.
      type: str
    active:
      description: Whether the network runs.
      type: bool
    autostart:
      description: Whether the network starts when the host boots.
      type: bool
    persistent:
      description: Whether the network has a persistent definition.
      type: bool
    bridge:
      description: Name of the host bridge, when the network has one.
      type: str
      sample: virbr0
    forward_mode:
      description: Forward mode (nat, route, open, bridge, ...); null for an isolated network.
      type: str
      sample: nat
    ips:
      description: IP addresses of the network.
      type: list
      elements: dict
      contains:
        family:
          description: V(ipv4) or V(ipv6).
          type: str
        address:
          description: Address of the host on the network.
          type: str
          sample: 192.168.122.1
        netmask:
          description: Netmask, when given as one.
          type: str
          sample: 255.255.255.0
        prefix:
          description: Prefix length, when given as one.
          type: int
        dhcp_ranges:
          description: DHCP ranges, each with C(start) and C(end).
          type: list
          elements: dict
        dhcp_hosts:
          description: Static DHCP hosts, each with C(mac) (lower case), C(ip), C(name) and C(id).
          type: list
          elements: dict
    dhcp_leases:
      description:
        - Current DHCP leases of an active network, each with C(mac), C(ip), C(prefix),
          C(hostname), C(type) (ipv4/ipv6), C(client_id), C(expiry_time) (seconds since the
          epoch) and C(interface). Empty for an inactive network.
      type: list
      elements: dict
    xml:
      description: Live XML.
      type: str
'''

from ansible_collections.virtops.libvirt.plugins.module_utils._lifecycle import run_info_module
from ansible_collections.virtops.libvirt.plugins.module_utils._network import NETWORK_INFO_ARGS, read_networks


def main():
    run_info_module(NETWORK_INFO_ARGS, read_networks)


if __name__ == '__main__':
    main()
