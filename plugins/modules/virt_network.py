#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: virt_network
short_description: Define, start, stop, update and remove libvirt virtual networks declaratively
version_added: 0.1.0
description:
  - Makes a libvirt virtual network match a desired definition, run state and autostart.
  - The definition of an existing network is updated, never silently ignored. The desired XML is
    compared with the network's persistent definition by intent, not as text; only what the XML
    sets is compared, so values libvirt generates (uuid, bridge MAC address, a bridge name it
    chose, default attributes, element order) never cause a change. IP addresses are matched by
    address, DHCP hosts by MAC address, DHCP ranges by start, DNS hosts by IP address and port
    groups by name.
  - DHCP hosts and ranges (of an C(<ip>) with a C(<dhcp>) element in the XML), DNS host entries
    (when the XML has C(<dns>)) and port groups are authoritative; one the XML leaves out is
    removed.
  - When only DHCP hosts, DHCP ranges, DNS host entries and port groups differ, the module
    changes them with C(virNetworkUpdate), in the running network and its persistent definition
    at once when the network is active (no restart needed), in the definition only when it is
    inactive. RV(updates) lists the commands.
  - Any other difference redefines the persistent definition. An active network keeps running
    with its old configuration; the module returns RV(restart_required=true) until the network
    has been restarted, and restarts it (destroy, then start) with O(restart_on_change=true).
  - The XML is checked before anything changes. It must be well-formed, have the same name as
    O(name) and follow libvirt's schema (C(VIR_NETWORK_DEFINE_VALIDATE)).
  - The XML is compared in the form libvirt stores it, so a second run with the same XML reports no
    change, for example C(<forward dev='eth1'>) (libvirt adds C(<interface dev='eth1'/>)),
    C(ipv6='no'), and IP and MAC addresses written in another form. See docs/idempotency.md.
author:
  - virtops.libvirt developers (@virtops)
extends_documentation_fragment:
  - virtops.libvirt.connection
  - virtops.libvirt.attributes
attributes:
  check_mode:
    support: full
    details:
      - Check mode compares and plans exactly as a real run does, including the
        C(virNetworkUpdate) commands, and changes nothing.
      - Before a define it foresees a refusal with libvirt's own message, without defining
        anything - libvirt's parser and schema (through the in-process C(test:///default) driver,
        local URIs only) and the network driver's own rules (a bridge name another network uses,
        what the forward mode does not allow, SR-IOV virtual functions of a local hostdev pool).
      - Not foreseen, and reported by the real define before it changes anything - the parser of a
        remote daemon, devices of a remote host, checks of libvirt versions newer than 9.0.
  diff_mode:
    support: full
    details:
      - Shows the run state and autostart, and the normalised XML of the live definition reduced
        to what the desired XML sets, against the normalised desired XML.
  idempotent:
    support: full
options:
  name:
    description:
      - Name of the network.
      - Optional when O(xml) has a C(<name>); when both are given they must be the same.
      - Required for O(state) changes of a network without O(xml), and for O(state=absent).
    type: str
  xml:
    description:
      - The desired network definition (libvirt network XML).
      - Only what it sets is compared with the live definition. A C(<uuid>) is optional; the
        existing network's uuid is kept.
      - Without it, the module manages only the run state and autostart of an existing network.
    type: str
  state:
    description:
      - V(present) defines the network (or updates its definition) and leaves its run state alone.
      - V(active) also starts it.
      - V(inactive) stops it (destroy) when it runs.
      - V(absent) stops it if it runs and removes its definition. A network that does not exist
        is not an error.
    type: str
    choices: [present, active, inactive, absent]
    default: present
  autostart:
    description:
      - Whether libvirt starts the network when the host boots. Not changed when not set.
    type: bool
  restart_on_change:
    description:
      - When the definition of an active network changed in a way C(virNetworkUpdate) cannot
        apply to the running network (or changed earlier and the network has not been restarted
        since), restart it (destroy, then start) to apply the change.
      - Domains attached to the network lose their connection until they are reattached.
    type: bool
    default: false
notes:
  - Intent comparison cannot see values the user removed from the XML when libvirt keeps them
    (for example a removed C(<forward>) element); set them explicitly.
seealso:
  - module: virtops.libvirt.virt_network_info
  - name: libvirt network XML format
    description: Reference of the network XML.
    link: https://libvirt.org/formatnetwork.html
'''

EXAMPLES = r'''
- name: An isolated network with DHCP, started at boot
  virtops.libvirt.virt_network:
    state: active
    autostart: true
    xml: |
      <network>
        <name>lab</name>
        <bridge name='virbr-lab'/>
        <ip address='10.231.0.1' netmask='255.255.255.0'>
          <dhcp>
            <range start='10.231.0.100' end='10.231.0.199'/>
            <host mac='52:54:00:00:00:11' name='web1' ip='10.231.0.11'/>
          </dhcp>
        </ip>
      </network>

- name: Give web2 a fixed address as well (applied live, no restart)
  virtops.libvirt.virt_network:
    state: active
    xml: "{{ lookup('template', 'lab-network.xml.j2') }}"
  register: lab

- name: Change the bridge's address and restart the network to use it
  virtops.libvirt.virt_network:
    state: active
    restart_on_change: true
    xml: "{{ lookup('template', 'lab-network-v2.xml.j2') }}"

- name: Remove the network
  virtops.libvirt.virt_network:
    name: lab
    state: absent
'''

RETURN = r'''
network:
  description:
    - The network after the run. Empty after O(state=absent), and in check mode when the network
      does not exist yet. In check mode, the live network as it is (unchanged).
  returned: always
  type: dict
  contains:
    name:
      description: Name of the network.
      type: str
      sample: lab
    uuid:
      description: UUID of the network.
      type: str
      sample: 4dea22b3-1d52-d8f3-2516-782e98ab3fa0
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
      sample: virbr-lab
    xml:
      description: The live XML of the network (the running configuration when it is active).
      type: str
restart_required:
  description:
    - True when the network runs with a configuration older than its persistent definition (the
      desired XML), so it needs a restart to use it. Never true after a restart by
      O(restart_on_change).
  returned: always
  type: bool
  sample: false
updates:
  description:
    - The C(virNetworkUpdate) commands issued (or to issue in check mode), in order.
  returned: always
  type: list
  elements: dict
  contains:
    command:
      description: V(add-last), V(delete) or V(modify).
      type: str
      sample: add-last
    section:
      description: V(ip-dhcp-host), V(ip-dhcp-range), V(dns-host) or V(portgroup).
      type: str
      sample: ip-dhcp-host
    parent_index:
      description: Index of the C(<ip>) element for DHCP sections, else -1.
      type: int
      sample: 0
    xml:
      description: The XML of the item.
      type: str
      sample: <host mac="52:54:00:00:00:12" ip="10.231.0.12"/>
    affect:
      description: V(live+config) for an active network, V(config) for an inactive one.
      type: str
      sample: live+config
  sample:
    - command: add-last
      section: ip-dhcp-host
      parent_index: 0
      xml: <host mac="52:54:00:00:00:12" ip="10.231.0.12"/>
      affect: live+config
actions:
  description: What the run did (or would do in check mode), in order.
  returned: always
  type: list
  elements: str
  sample: [define, start, autostart]
'''

from ansible_collections.virtops.libvirt.plugins.module_utils._lifecycle import run_module
from ansible_collections.virtops.libvirt.plugins.module_utils._network import NetworkManager


def main():
    run_module(NetworkManager)


if __name__ == '__main__':
    main()
