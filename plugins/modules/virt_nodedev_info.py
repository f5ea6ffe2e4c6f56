#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: virt_nodedev_info
short_description: Facts about the host devices libvirt knows (node devices)
version_added: 0.1.0
description:
  - Returns the node devices of a libvirt host (C(virConnectListAllNodeDevices)); PCI and USB
    devices, network interfaces, SCSI hosts and disks, mediated devices and their types, s390
    channel devices and so on, each with its parent, sysfs path, driver and its capabilities
    parsed into dicts, plus the raw XML.
  - Use it to find the PCI address, IOMMU group or SR-IOV virtual functions of a device to pass
    through to a domain, the MAC address and link state of a host interface, or the mediated
    device types a GPU offers.
author:
  - virtops.libvirt developers (@virtops)
extends_documentation_fragment:
  - virtops.libvirt.connection
  - virtops.libvirt.attributes.INFO_MODULE
options:
  name:
    description:
      - Name of one node device, for example V(pci_0000_03_00_0) or V(net_eth0_52_54_00_12_34_56).
      - A device that does not exist gives an empty list, not a failure.
    type: str
  capability:
    description:
      - Only devices with at least one of these capabilities.
      - V(pci) is a PCI device, V(usb_device) a USB device, V(usb) a USB interface, V(net) a
        network interface, V(storage) a block device, V(fc_host) and V(vports) SCSI hosts of a
        Fibre Channel HBA (that can create vHBAs), V(mdev_types) a device that can create mediated
        devices, V(mdev) a mediated device, V(ccw) and V(css) s390 channel devices, V(ap_card),
        V(ap_queue) and V(ap_matrix) s390 crypto devices, V(vdpa) a vDPA device, V(vpd) a PCI
        device with vital product data.
    type: list
    elements: str
    choices: [ap_card, ap_matrix, ap_queue, ccw, css, drm, fc_host, mdev, mdev_types, net, pci, scsi,
              scsi_generic, scsi_host, scsi_target, storage, system, usb, usb_device, vdpa, vpd, vports]
  active:
    description:
      - V(true) gives active devices only, V(false) only inactive ones (mediated devices that are
        defined but not started). Omitted, both.
      - Drivers that cannot define inactive devices (the test driver, libvirt before 7.3) have
        active devices only.
    type: bool
notes:
  - The devices come from the host's udev database. In a container without udev the list holds
    what sysfs shows (PCI devices, network interfaces, disks) and fewer names (no vendor and
    product names, no drivers of some devices), read once when libvirtd started; devices added or
    removed since then (hot-plugged disks, new bridges and tap devices) show only after a restart
    of libvirtd.
seealso:
  - module: virtops.libvirt.virt_host_info
  - name: libvirt node device XML format
    description: The C(<device>) element.
    link: https://libvirt.org/formatnode.html
'''

EXAMPLES = r'''
- name: Every PCI device
  virtops.libvirt.virt_nodedev_info:
    capability: [pci]
  register: pci

- name: Network cards that offer SR-IOV virtual functions
  ansible.builtin.debug:
    msg: "{{ item.pci.address }} {{ item.pci.product }}: {{ item.pci.sriov_vfs | length }} VFs"
  loop: "{{ pci.devices | selectattr('pci.sriov_max_vfs') }}"
  loop_control:
    label: "{{ item.name }}"

- name: Host interfaces whose link is up
  virtops.libvirt.virt_nodedev_info:
    capability: [net]
  register: nics

- name: Their names
  ansible.builtin.debug:
    msg: "{{ nics.devices | selectattr('net.link_state', 'eq', 'up') | map(attribute='net.interface') }}"

- name: Mediated device types a GPU offers
  virtops.libvirt.virt_nodedev_info:
    name: pci_0000_41_00_0
  register: gpu

- name: Mediated devices that are defined but not started
  virtops.libvirt.virt_nodedev_info:
    capability: [mdev]
    active: false
'''

RETURN = r'''
devices:
  description:
    - The node devices, sorted by name.
    - Besides the keys below, each device has one key per capability type in RV(devices[].capabilities)
      that is a top-level capability of the device (V(pci), V(net), ...), holding that capability
      parsed. Types not described here are returned as a dict of the XML's attributes and children.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: Name of the device.
      type: str
      sample: pci_0000_00_03_0
    parent:
      description: Name of the parent device, null for the root (V(computer)).
      type: str
      sample: computer
    path:
      description: sysfs path.
      type: str
      sample: /sys/devices/pci0000:00/0000:00:03.0
    devnode:
      description: Device node in C(/dev), when the device has one.
      type: str
      sample: /dev/vda
    devlinks:
      description: Other names of the device node (C(/dev/disk/by-id/...)).
      type: list
      elements: str
    driver:
      description: Name of the host driver bound to the device, null when none is.
      type: str
      sample: vfio-pci
    active:
      description: Whether the device is active; null when the driver cannot tell (then it is).
      type: bool
    type:
      description: Type of the device's top-level capability.
      type: str
      sample: pci
    capabilities:
      description: Every capability of the device, nested ones (V(fc_host), V(vports), V(mdev_types), ...) too.
      type: list
      elements: str
      sample: [pci, mdev_types]
    pci:
      description:
        - A PCI device; C(address) (V(0000:03:00.0)), C(domain), C(bus), C(slot), C(function) (integers),
          C(class_id), C(vendor_id), C(vendor), C(product_id), C(product) (names when udev knows them),
          C(iommu_group) and C(iommu_group_devices) (addresses), C(numa_node),
          C(sriov_max_vfs), C(sriov_vfs) (addresses of the virtual functions) and C(sriov_pf)
          (address of the physical function of a VF), C(bridge), C(pcie_link), C(mdev_types)
          (list of C(id), C(name), C(device_api), C(available_instances)).
      returned: for PCI devices
      type: dict
    net:
      description:
        - A network interface; C(interface), C(address) (MAC, lower case), C(link_state),
          C(link_speed) (Mbit/s), C(features), C(subtype) (V(80203) Ethernet, V(80211) wireless).
      returned: for network interfaces
      type: dict
    usb_device:
      description: A USB device; C(bus), C(device), C(vendor_id), C(vendor), C(product_id), C(product).
      returned: for USB devices
      type: dict
    usb:
      description: A USB interface; C(number), C(class_id), C(subclass), C(protocol), C(description).
      returned: for USB interfaces
      type: dict
    storage:
      description:
        - A block device; C(block), C(bus), C(drive_type), C(model), C(vendor), C(serial), C(size)
          (bytes), C(logical_block_size), C(num_blocks), C(removable), C(media_available), C(media_size).
      returned: for block devices
      type: dict
    scsi_host:
      description: A SCSI host; C(host), C(unique_id), C(fc_host) (C(wwnn), C(wwpn), C(fabric_wwn)), C(vports) (C(max_vports), C(vports)).
      returned: for SCSI hosts
      type: dict
    scsi:
      description: A SCSI device; C(host), C(bus), C(target), C(lun), C(type).
      returned: for SCSI devices
      type: dict
    system:
      description: The host itself; C(product), C(hardware) (C(vendor), C(version), C(serial), C(uuid)), C(firmware).
      returned: for the root device
      type: dict
    mdev:
      description: A mediated device; C(type), C(uuid), C(parent_address), C(iommu_group), C(attributes).
      returned: for mediated devices
      type: dict
    xml:
      description: The device's XML.
      type: str
'''

from ansible_collections.virtops.libvirt.plugins.module_utils._lifecycle import run_info_module
from ansible_collections.virtops.libvirt.plugins.module_utils._nodedev import NODEDEV_INFO_ARGS, read_nodedevs


def main():
    run_info_module(NODEDEV_INFO_ARGS, read_nodedevs)


if __name__ == '__main__':
    main()
