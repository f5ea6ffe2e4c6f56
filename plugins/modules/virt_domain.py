#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: virt_domain
short_description: Define, start, stop and remove libvirt domains declaratively
version_added: 0.1.0
description:
  - Makes a libvirt domain (virtual machine) match a desired definition and run state.
  - The desired XML is compared with the domain's persistent definition by intent, not as text.
    Only what the XML sets is compared; values libvirt generates when they are not set (uuid,
    MAC addresses, PCI and drive addresses, aliases, controllers and devices libvirt adds,
    default attributes, element order) never cause a change. Disks are matched by target
    device, interfaces by MAC address when given (else by position), controllers by type and
    index. Sizes are compared in bytes, so C(<memory unit='MiB'>64</memory>) equals
    C(<memory unit='KiB'>65536</memory>). Machine type aliases such as V(pc) are resolved with
    the hypervisor's domain capabilities.
  - Devices libvirt never adds by itself (disks, interfaces, host devices, filesystems,
    graphics, channels, RNG, TPM, ...) are authoritative in the XML; one the XML leaves out is
    removed from the definition.
  - The XML is checked before anything changes. It must be well-formed, have the same name as O(name), use an
    emulator, machine type, architecture and domain type the hypervisor offers (domain
    capabilities), and follow libvirt's schema (C(VIR_DOMAIN_DEFINE_VALIDATE); in check mode the
    schema files of the local host).
  - A new definition for a running domain changes the persistent definition only; the module
    returns RV(restart_required=true) until the domain has been restarted. With
    O(restart_on_change=true) it restarts the domain gracefully to apply it.
author:
  - virtops.libvirt developers (@virtops)
extends_documentation_fragment:
  - virtops.libvirt.connection
  - virtops.libvirt.attributes
attributes:
  check_mode:
    support: full
    details:
      - Check mode compares and plans exactly as a real run does and changes nothing. It
        validates the XML against the local schema files instead of asking libvirt to define it.
  diff_mode:
    support: full
    details:
      - Shows the run state and autostart, and the normalised XML of the live definition
        reduced to what the desired XML sets, against the normalised desired XML.
  idempotent:
    support: full
options:
  name:
    description:
      - Name of the domain.
      - Optional when O(xml) has a C(<name>); when both are given they must be the same.
      - Required for O(state) changes of a domain without O(xml), and for O(state=absent).
    type: str
  xml:
    description:
      - The desired domain definition (libvirt domain XML).
      - Only what it sets is compared with the live definition. A C(<uuid>) is optional; the
        existing domain's uuid is kept.
      - Without it, the module manages only the run state and autostart of an existing domain.
      - Passwords in the XML (graphics passwd and the like) are masked in the output.
    type: str
  state:
    description:
      - V(present) defines the domain (or updates its definition) and leaves its run state alone.
      - V(running) also starts it (or resumes it when paused).
      - V(paused) starts it paused, or pauses it when running.
      - V(shutdown) asks the guest to shut down (ACPI) and waits up to O(timeout) seconds. When
        the guest does not stop in time, O(force=true) destroys it; otherwise the module fails
        and leaves the domain as it was.
      - V(destroyed) stops it at once (power off).
      - V(absent) stops it if it runs (power off) and removes its definition; see
        O(remove_metadata) and O(remove_storage).
    type: str
    choices: [present, running, paused, shutdown, destroyed, absent]
    default: present
  autostart:
    description:
      - Whether libvirt starts the domain when the host boots. Not changed when not set.
    type: bool
  timeout:
    description:
      - Seconds to wait for a graceful shutdown (O(state=shutdown), or a restart with
        O(restart_on_change=true)).
    type: int
    default: 120
  force:
    description:
      - Destroy the domain when a graceful shutdown did not finish within O(timeout).
    type: bool
    default: false
  remove_metadata:
    description:
      - With O(state=absent), also remove the domain's NVRAM file, managed save image, and
        its snapshot and checkpoint metadata (the data in disk images is not touched).
      - When false, undefining a domain that has snapshot or checkpoint metadata fails, and an
        NVRAM file is kept.
    type: bool
    default: true
  remove_storage:
    description:
      - With O(state=absent), also delete the storage volumes that libvirt manages (volumes of
        a libvirt storage pool) and that are the sources of the domain's disks
        (C(device='disk'); CD-ROMs and floppies are never deleted).
      - Disk images outside every storage pool are left in place, with a warning.
    type: bool
    default: false
  restart_on_change:
    description:
      - When the definition of a running or paused domain changes (or changed earlier and the
        domain has not been restarted since), restart it to apply the change, by a graceful
        shutdown with O(timeout) and O(force), then a start (paused again when O(state=paused),
        or when O(state=present) and it was paused).
    type: bool
    default: false
notes:
  - Domains on a host without hardware virtualisation need C(<domain type='qemu'>) (TCG);
    C(type='kvm') fails the domain capabilities check there.
  - Intent comparison cannot see values the user removed from the XML when libvirt keeps them
    as its own default (for example a removed C(<on_crash>) element); set them explicitly.
seealso:
  - module: virtops.libvirt.virt_domain_info
  - name: libvirt domain XML format
    description: Reference of the domain XML.
    link: https://libvirt.org/formatdomain.html
'''

EXAMPLES = r'''
- name: Define a small TCG domain and start it
  virtops.libvirt.virt_domain:
    state: running
    autostart: true
    xml: |
      <domain type='qemu'>
        <name>web1</name>
        <memory unit='MiB'>512</memory>
        <vcpu>1</vcpu>
        <os><type arch='x86_64' machine='pc'>hvm</type></os>
        <devices>
          <disk type='file' device='disk'>
            <driver name='qemu' type='qcow2'/>
            <source file='/var/lib/libvirt/images/web1.qcow2'/>
            <target dev='vda' bus='virtio'/>
          </disk>
          <interface type='network'>
            <source network='default'/>
            <model type='virtio'/>
          </interface>
        </devices>
      </domain>

- name: Grow its memory and apply it now with a graceful restart
  virtops.libvirt.virt_domain:
    state: running
    restart_on_change: true
    timeout: 60
    force: true
    xml: "{{ lookup('template', 'web1.xml.j2') }}"

- name: Shut it down, powering it off after two minutes if the guest does not react
  virtops.libvirt.virt_domain:
    name: web1
    state: shutdown
    timeout: 120
    force: true

- name: Remove it with its NVRAM, snapshot metadata and its pool-managed disk volumes
  virtops.libvirt.virt_domain:
    name: web1
    state: absent
    remove_storage: true

- name: Set the connection once for every module of the collection
  module_defaults:
    group/virtops.libvirt.libvirt:
      uri: qemu+ssh://root@hv1.example.com/system
  block:
    - name: Make sure db1 runs
      virtops.libvirt.virt_domain:
        name: db1
        state: running
'''

RETURN = r'''
domain:
  description:
    - The domain after the run. Empty after O(state=absent), and in check mode when the domain
      does not exist yet. In check mode, the live domain as it is (unchanged).
  returned: always
  type: dict
  contains:
    name:
      description: Name of the domain.
      type: str
      sample: web1
    uuid:
      description: UUID of the domain.
      type: str
      sample: 4dea22b3-1d52-d8f3-2516-782e98ab3fa0
    state:
      description: Run state (running, paused, shutoff, crashed, pmsuspended, ...).
      type: str
      sample: running
    autostart:
      description: Whether the domain starts when the host boots.
      type: bool
    persistent:
      description: Whether the domain has a persistent definition.
      type: bool
    xml:
      description: The live XML of the domain (the running configuration when it runs).
      type: str
restart_required:
  description:
    - True when the domain runs with a configuration older than its persistent definition
      (the desired XML), so it needs a restart to use it. Never true after a restart by
      O(restart_on_change).
  returned: always
  type: bool
  sample: false
actions:
  description: What the run did (or would do in check mode), in order.
  returned: always
  type: list
  elements: str
  sample: [define, start, autostart]
forced_off:
  description:
    - True when the guest did not act on the ACPI shutdown request within O(timeout) and the
      module destroyed the domain (O(force=true)), as for pulling the power cable; false after a
      clean shutdown by the guest, and in check mode.
  returned: always
  type: bool
removed_volumes:
  description: Paths of the storage volumes deleted (or to delete in check mode) by O(remove_storage).
  returned: when O(state=absent)
  type: list
  elements: str
  sample: [/var/lib/libvirt/images/web1.qcow2]
'''

from ansible_collections.virtops.libvirt.plugins.module_utils._domain import DomainManager
from ansible_collections.virtops.libvirt.plugins.module_utils._lifecycle import run_module


def main():
    run_module(DomainManager)


if __name__ == '__main__':
    main()
