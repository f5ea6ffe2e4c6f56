#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: virt_host_info
short_description: Read facts about a libvirt host
version_added: 0.1.0
description:
  - Returns what the libvirt daemon knows about its host; node info (CPUs, memory, NUMA), the host
    and guest capabilities, the domain capabilities for one emulator, architecture, machine type
    and virtualization type, the CPU models libvirt knows, the free memory per NUMA cell, the
    libvirt and hypervisor versions and the host name.
author:
  - virtops.libvirt developers (@virtops)
extends_documentation_fragment:
  - virtops.libvirt.connection
  - virtops.libvirt.attributes
  - virtops.libvirt.attributes.INFO_MODULE
options:
  arch:
    description:
      - Guest architecture for the domain capabilities and the CPU model list, for example
        V(x86_64). When omitted, libvirt's default (the host's).
    type: str
  machine:
    description:
      - Machine type for the domain capabilities, for example V(q35). When omitted, libvirt's
        default for the architecture.
    type: str
  virttype:
    description:
      - Virtualization type for the domain capabilities, V(kvm) or V(qemu) (TCG). When omitted,
        libvirt's default, which is V(kvm) when the capabilities offer it.
    type: str
  emulator:
    description:
      - Emulator binary for the domain capabilities. When omitted, libvirt's default for the
        architecture.
    type: path
  domain_capabilities:
    description:
      - Whether to read the domain capabilities (C(virConnectGetDomainCapabilities)).
    type: bool
    default: true
notes:
  - Drivers without domain capabilities (the test driver) return RV(domain_capabilities) as null.
seealso:
  - module: virtops.libvirt.virt_domain
  - name: libvirt capabilities XML format
    description: The C(<capabilities>) element.
    link: https://libvirt.org/formatcaps.html
  - name: libvirt domain capabilities XML format
    description: The C(<domainCapabilities>) element.
    link: https://libvirt.org/formatdomaincaps.html
'''

EXAMPLES = r'''
- name: Read the host facts, domain capabilities for TCG guests
  virtops.libvirt.virt_host_info:
    virttype: qemu
  register: host

- name: Use KVM only where the host offers it
  ansible.builtin.set_fact:
    guest_type: "{{ 'kvm' if 'kvm' in (host.capabilities.guests | selectattr('arch', 'eq', 'x86_64') | first).domain_types else 'qemu' }}"
'''

RETURN = r'''
hostname:
  description: Host name of the libvirt host.
  returned: always
  type: str
uri:
  description: The connection URI used.
  returned: always
  type: str
driver:
  description: Name of the hypervisor driver (V(QEMU), V(TEST)...).
  returned: always
  type: str
libvirt_version:
  description: Version of the libvirt daemon.
  returned: always
  type: str
  sample: 9.0.0
hypervisor_version:
  description: Version of the hypervisor (QEMU), null when the driver reports none.
  returned: always
  type: str
  sample: 7.2.0
node:
  description: C(virNodeGetInfo) (arch, memory in bytes, cpus, mhz, numa_nodes, sockets, cores, threads).
  returned: always
  type: dict
free_memory:
  description: Free memory of the host in bytes, as the driver reports it.
  returned: always
  type: int
numa_free_memory:
  description: Free memory per NUMA cell (cell, free in bytes).
  returned: always
  type: list
  elements: dict
capabilities:
  description:
    - The essentials of the host capabilities; host (uuid, arch, cpu_model, cpu_vendor, topology,
      numa_cells (id, memory in bytes, cpus), secmodels) and guests (os_type, arch, wordsize,
      emulator, machines, domain_types), plus the full xml.
  returned: always
  type: dict
domain_capabilities:
  description:
    - The essentials of the domain capabilities; path, domain, machine, arch, vcpu_max, firmware,
      loader_types, cpu_modes (supported ones), cpu_models (custom mode; name, usable, vendor),
      disk_buses, plus the full xml.
    - Null when O(domain_capabilities=false) or the driver has none.
  returned: always
  type: dict
cpu_models:
  description: Names of the CPU models libvirt knows for RV(cpu_models_arch), null when the driver cannot list them.
  returned: always
  type: list
  elements: str
cpu_models_arch:
  description: The architecture of RV(cpu_models).
  returned: always
  type: str
'''

from ansible_collections.virtops.libvirt.plugins.module_utils._lifecycle import run_info_module
from ansible_collections.virtops.libvirt.plugins.module_utils._host import HOST_INFO_ARGS, read_host


def main():
    run_info_module(HOST_INFO_ARGS, read_host)


if __name__ == '__main__':
    main()
