#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: virt_snapshot_info
short_description: Read the snapshots of a libvirt domain
version_added: 0.1.0
description:
  - Returns the snapshot tree of a domain, parents before their children, or one snapshot, and
    which snapshot is the current one.
author:
  - virtops.libvirt developers (@virtops)
extends_documentation_fragment:
  - virtops.libvirt.connection
  - virtops.libvirt.attributes
  - virtops.libvirt.attributes.INFO_MODULE
options:
  domain:
    description:
      - Name of the domain. A domain that does not exist is an error.
    type: str
    required: true
  name:
    description:
      - Name of one snapshot to return. RV(snapshots) is empty when there is none of that name.
      - When omitted, every snapshot of the domain is returned.
    type: str
seealso:
  - module: virtops.libvirt.virt_snapshot
'''

EXAMPLES = r'''
- name: Read the snapshot tree of a VM
  virtops.libvirt.virt_snapshot_info:
    domain: web01
  register: result

- name: Show the current snapshot
  ansible.builtin.debug:
    msg: "{{ result.current }}"
'''

RETURN = r'''
current:
  description: Name of the domain's current snapshot, null when it has none.
  returned: always
  type: str
  sample: before-upgrade
snapshots:
  description:
    - The snapshots of the domain, parents before their children (libvirt's topological order).
    - Only the one named O(name) when given; empty when the domain has no snapshots or none of
      that name.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: Snapshot name.
      type: str
      sample: before-upgrade
    description:
      description: Its description, null when it has none.
      type: str
    parent:
      description: Name of the parent snapshot, null for a root of the tree.
      type: str
    children:
      description: Names of its direct children.
      type: list
      elements: str
    state:
      description: State of the domain the snapshot holds (V(running), V(shutoff)...); V(disk-snapshot) for disk-only ones.
      type: str
    creation_time:
      description: Creation time, seconds since the epoch.
      type: int
    current:
      description: Whether it is the domain's current snapshot.
      type: bool
    type:
      description: V(internal), V(disk-only) or V(external).
      type: str
    memory_file:
      description: Memory state file of an external snapshot, else null.
      type: str
    disks:
      description: The disks of the snapshot.
      type: list
      elements: dict
      contains:
        name:
          description: Target name of the disk.
          type: str
          sample: vda
        snapshot:
          description: V(internal), V(external) or V(no).
          type: str
        file:
          description: The overlay of an external snapshot, else null.
          type: str
    xml:
      description: The snapshot XML, including the domain definition, as C(virsh snapshot-dumpxml) prints it.
      type: str
'''

from ansible_collections.virtops.libvirt.plugins.module_utils._lifecycle import run_info_module
from ansible_collections.virtops.libvirt.plugins.module_utils._snapshot import SNAPSHOT_INFO_ARGS, read_snapshots


def main():
    run_info_module(SNAPSHOT_INFO_ARGS, read_snapshots)


if __name__ == '__main__':
    main()
