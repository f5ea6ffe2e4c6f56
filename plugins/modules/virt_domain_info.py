#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: virt_domain_info
short_description: Facts about libvirt domains
version_added: 0.1.0
description:
  - Returns one domain (O(name)) or all domains, optionally only those in one run state,
    with identity, run state, autostart, size, disks, interfaces and the live XML.
author:
  - virtops.libvirt developers (@virtops)
extends_documentation_fragment:
  - virtops.libvirt.connection
  - virtops.libvirt.attributes.INFO_MODULE
options:
  name:
    description:
      - Name of the domain. Without it, every domain is returned.
      - A domain that does not exist gives an empty list, not a failure.
    type: str
  state:
    description:
      - Only domains in this run state.
    type: str
    choices: [running, paused, shutoff, crashed, pmsuspended, blocked, shutdown]
  interface_addresses:
    description:
      - Also return the IP addresses of each interface of running domains, from the DHCP
        leases of libvirt networks (V(lease)), the QEMU guest agent (V(agent)) or the host's
        ARP table (V(arp)).
      - A source that cannot answer for a domain (no guest agent, ...) gives no addresses and
        a warning.
    type: str
    choices: [lease, agent, arp]
seealso:
  - module: virtops.libvirt.virt_domain
'''

EXAMPLES = r'''
- name: One domain
  virtops.libvirt.virt_domain_info:
    name: web1
  register: web1

- name: Its first disk image
  ansible.builtin.debug:
    msg: "{{ web1.domains[0].disks[0].source }}"

- name: Running domains with their addresses from libvirt's DHCP leases
  virtops.libvirt.virt_domain_info:
    state: running
    interface_addresses: lease
  register: running
'''

RETURN = r'''
domains:
  description: The domains, sorted by name.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: Name.
      type: str
      sample: web1
    uuid:
      description: UUID.
      type: str
    id:
      description: Hypervisor id of a running domain, else null.
      type: int
    state:
      description: Run state (running, paused, shutoff, crashed, pmsuspended, blocked, shutdown).
      type: str
      sample: running
    autostart:
      description: Whether the domain starts when the host boots.
      type: bool
    persistent:
      description: Whether the domain has a persistent definition.
      type: bool
    vcpus:
      description: Number of virtual CPUs (the current number when it is below the maximum).
      type: int
      sample: 1
    memory:
      description: Maximum memory in KiB.
      type: int
      sample: 65536
    current_memory:
      description: Current memory in KiB.
      type: int
      sample: 65536
    disks:
      description: Disks.
      type: list
      elements: dict
      contains:
        target:
          description: Target device name.
          type: str
          sample: vda
        source:
          description: Image file, block device, C(pool/volume) or C(protocol:name).
          type: str
          sample: /var/lib/libvirt/images/web1.qcow2
        format:
          description: Image format (driver type).
          type: str
          sample: qcow2
        bus:
          description: Bus.
          type: str
          sample: virtio
        device:
          description: Kind of device (disk, cdrom, floppy, lun).
          type: str
          sample: disk
        type:
          description: Kind of source (file, block, volume, network, ...).
          type: str
          sample: file
    interfaces:
      description: Network interfaces.
      type: list
      elements: dict
      contains:
        mac:
          description: MAC address (lower case).
          type: str
          sample: 52:54:00:12:34:56
        type:
          description: Interface type (network, bridge, user, direct, ...).
          type: str
        source:
          description: Network, bridge or device it is attached to.
          type: str
          sample: default
        model:
          description: Device model.
          type: str
          sample: virtio
        target:
          description: Host side device name while the domain runs.
          type: str
        addresses:
          description:
            - IP addresses, each with C(type) (ipv4/ipv6), C(address), C(prefix) and the guest's
              C(interface) name.
          returned: when O(interface_addresses) is set
          type: list
          elements: dict
    xml:
      description: Live XML.
      type: str
'''

from ansible_collections.virtops.libvirt.plugins.module_utils._domain import DOMAIN_INFO_ARGS, read_domains
from ansible_collections.virtops.libvirt.plugins.module_utils._lifecycle import run_info_module


def main():
    run_info_module(DOMAIN_INFO_ARGS, read_domains)


if __name__ == '__main__':
    main()
