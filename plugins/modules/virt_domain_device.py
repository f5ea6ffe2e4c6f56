#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: virt_domain_device
short_description: Attach, update and detach one device of a libvirt domain
version_added: 0.1.0
description:
  - Makes one device of a domain (a disk, CD-ROM, interface, host device, controller, RNG,
    watchdog, serial port, ...) exist as described by its XML, or not, in the running domain
    (O(live)) and/or in its persistent definition (O(config)).
  - 'The device is found again by identity, not by text: a user alias
    (C(<alias name="ua-..."/>)) identifies a device of any kind; otherwise a disk is found by
    C(<target dev>), an interface by C(<mac address>), a host device by the attributes of its
    C(<source>) (host PCI/USB/SCSI address, vendor and product), and any other device by the
    identity attributes the XML gives (controller C(type) and C(index), serial C(target port),
    channel C(target type) and C(name), RNG C(model), input C(type) and C(bus), graphics
    C(type), ...), or by its kind alone (watchdog, TPM, memory balloon, panic, ...). When more
    than one device of the domain matches, the module fails and asks for a user alias.'
  - An interface needs C(<mac address>) or a user alias; without them libvirt would generate a
    new MAC address on every attach, and no later run could recognise the interface.
  - The device XML is compared with the existing device by intent, with the same engine as
    M(virtops.libvirt.virt_domain). Only what the XML sets is compared; what libvirt generates
    (MAC and PCI addresses, its own aliases, default attributes, the C(<readonly/>) of a CD-ROM)
    never causes a change.
  - A missing device is attached (C(virDomainAttachDeviceFlags)). A device that differs is
    updated. In the running domain with C(virDomainUpdateDeviceFlags) where libvirt can change a
    running device (CD-ROM and floppy media, an interface's link state, bandwidth, network
    source and filter, graphics passwords); in the persistent definition by redefining the
    domain with that one device replaced in place (atomic, the device keeps its position and
    bus address).
  - When the running device differs in a way libvirt cannot change live, the persistent
    definition is updated and the module returns RV(restart_required=true) with a warning; with
    O(config=false) (or a transient domain) it fails instead and changes nothing.
  - O(state=absent) detaches the device from the chosen scopes; for that the XML only needs what
    identifies the device, for example C(<disk><target dev="vdb"/></disk>).
  - Before attaching or updating, the domain with the new device is validated against libvirt's
    schema (local URIs), because libvirt silently ignores device XML it does not know.
author:
  - virtops.libvirt developers (@virtops)
extends_documentation_fragment:
  - virtops.libvirt.connection
  - virtops.libvirt.attributes
attributes:
  check_mode:
    support: full
    details:
      - Check mode finds, compares and plans exactly as a real run does, validates the XML
        against the local schema files, and makes no call that changes anything.
  diff_mode:
    support: full
    details:
      - One diff per scope (live, config) with the normalised existing device, reduced to what
        the XML sets, against the desired device.
  idempotent:
    support: full
options:
  name:
    description:
      - Name of the domain.
    type: str
    required: true
  xml:
    description:
      - The device, as one libvirt device element (the child of C(<devices>) in the domain
        XML), for example C(<disk>), C(<interface>), C(<hostdev>), C(<controller>), C(<rng>).
      - Exactly one device; give one task per device.
      - Passwords in the XML (graphics passwd and the like) are masked in the output.
    type: str
    required: true
  state:
    description:
      - V(present) attaches the device, or updates it when it differs.
      - V(absent) detaches it.
    type: str
    choices: [present, absent]
    default: present
  live:
    description:
      - Act on the running domain (C(VIR_DOMAIN_AFFECT_LIVE)).
      - When not set, true when the domain is running or paused, false when it is shut off.
      - V(true) on a domain that is shut off fails.
    type: bool
  config:
    description:
      - Act on the persistent definition (C(VIR_DOMAIN_AFFECT_CONFIG)), which the domain uses
        from its next start on.
      - When not set, true when the domain is persistent, false for a transient domain.
      - V(true) on a transient domain fails.
    type: bool
  timeout:
    description:
      - Seconds to wait for the guest to release a device detached from the running domain.
      - libvirt only requests the removal; the device disappears when QEMU (and for PCI devices
        the guest OS) releases it. When it is still there after O(timeout) seconds, the module
        fails; the request stays pending.
    type: int
    default: 30
notes:
  - 'Guest cooperation: unplugging a PCI device from a running domain (a virtio disk, a virtio
    or e1000 NIC, ...) completes only when the guest OS acknowledges the ACPI hot-unplug
    request. A guest without an OS, or one that ignores the request, keeps the device and the
    live detach times out. Disks on a virtio-scsi or USB bus, and CD-ROM media changes, need no
    guest help. Attaching PCI devices needs no guest help, but an i440fx (C(pc)) domain needs
    C(<features><acpi/></features>) for PCI hot-plug.'
  - Changes apply in the order live then config for O(state=present), and config then live for
    O(state=absent); when a step fails, the failure lists the steps already done.
  - The test driver (C(test:///default)) has no device attach, update or detach calls.
seealso:
  - module: virtops.libvirt.virt_domain
  - module: virtops.libvirt.virt_domain_info
  - name: libvirt domain XML, devices
    description: The device elements.
    link: https://libvirt.org/formatdomain.html#devices
'''

EXAMPLES = r'''
- name: A data disk on virtio-scsi, in the running domain and its definition
  virtops.libvirt.virt_domain_device:
    name: web1
    xml: |
      <disk type='file' device='disk'>
        <driver name='qemu' type='qcow2'/>
        <source file='/var/lib/libvirt/images/web1-data.qcow2'/>
        <target dev='sdb' bus='scsi'/>
      </disk>

- name: Insert an installation ISO (media change of an existing CD-ROM)
  virtops.libvirt.virt_domain_device:
    name: web1
    xml: |
      <disk type='file' device='cdrom'>
        <driver name='qemu' type='raw'/>
        <source file='/var/lib/libvirt/isos/debian-12.iso'/>
        <target dev='sdc' bus='scsi'/>
      </disk>

- name: A second NIC with a fixed MAC, link down for now
  virtops.libvirt.virt_domain_device:
    name: web1
    xml: |
      <interface type='network'>
        <mac address='52:54:00:12:34:56'/>
        <source network='default'/>
        <model type='virtio'/>
        <link state='down'/>
      </interface>

- name: An RNG device recognised by its user alias
  virtops.libvirt.virt_domain_device:
    name: web1
    config: true
    live: false
    xml: |
      <rng model='virtio'>
        <alias name='ua-rng0'/>
        <backend model='random'>/dev/urandom</backend>
      </rng>

- name: Detach the data disk; wait up to two minutes for the guest to release it
  virtops.libvirt.virt_domain_device:
    name: web1
    state: absent
    timeout: 120
    xml: "<disk><target dev='sdb'/></disk>"
'''

RETURN = r'''
device:
  description:
    - The device XML per scope after the run (in check mode, as it is now); null in a scope
      where the domain has no such device.
  returned: always
  type: dict
  contains:
    live:
      description: The device in the running domain. Only when the live scope was used.
      type: str
    config:
      description: The device in the persistent definition. Only when the config scope was used.
      type: str
scopes:
  description: The scopes the module acted on (from O(live) and O(config), or their defaults).
  returned: always
  type: list
  elements: str
  sample: [live, config]
changed_scopes:
  description: The scopes that changed (or would change in check mode).
  returned: always
  type: list
  elements: str
  sample: [live, config]
actions:
  description: What the run did (or would do in check mode), in order.
  returned: always
  type: list
  elements: str
  sample: [attach live, attach config]
restart_required:
  description:
    - True when the running domain differs from the persistent definition for this device and
      cannot be brought in line live (a change libvirt cannot apply to a running device, or a
      device changed with O(live=false)). It stays true on later runs until the domain restarts.
  returned: always
  type: bool
  sample: false
msg:
  description: What was done.
  returned: always
  type: str
'''

from ansible_collections.virtops.libvirt.plugins.module_utils._device import DeviceManager
from ansible_collections.virtops.libvirt.plugins.module_utils._lifecycle import run_module


def main():
    run_module(DeviceManager)


if __name__ == '__main__':
    main()
