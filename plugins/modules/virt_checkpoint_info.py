#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: virt_checkpoint_info
short_description: Read the checkpoints of a libvirt domain
version_added: 0.1.0
description:
  - Returns the checkpoint tree of a domain, parents before their children, or one checkpoint.
  - For a running domain, also how many bytes each disk has changed since each checkpoint.
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
      - Name of one checkpoint to return. RV(checkpoints) is empty when there is none of that name.
      - When omitted, every checkpoint of the domain is returned.
    type: str
seealso:
  - module: virtops.libvirt.virt_checkpoint
'''

EXAMPLES = r'''
- name: Read the checkpoint tree of a VM
  virtops.libvirt.virt_checkpoint_info:
    domain: web01
  register: result

- name: Show how much changed since the last checkpoint
  ansible.builtin.debug:
    msg: "{{ (result.checkpoints | last).size }}"

- name: Save one checkpoint's XML for redefinition
  virtops.libvirt.virt_checkpoint_info:
    domain: web01
    name: ck-2024-06-01
  register: saved
'''

RETURN = r'''
checkpoints:
  description:
    - The checkpoints of the domain, parents before their children (libvirt's topological order).
    - Only the one named O(name) when given; empty when the domain has no checkpoints or none
      of that name.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: Checkpoint name.
      type: str
      sample: ck-2024-06-01
    description:
      description: Its description, null when it has none.
      type: str
    parent:
      description: Name of the parent checkpoint, null for a root of the tree.
      type: str
      sample: ck-2024-05-31
    creation_time:
      description: Creation time, seconds since the epoch.
      type: int
      sample: 1717200000
    disks:
      description: Every disk of the domain at checkpoint time.
      type: list
      elements: dict
      contains:
        name:
          description: Target name of the disk.
          type: str
          sample: vda
        checkpoint:
          description: V(bitmap) or V(no).
          type: str
          sample: bitmap
        bitmap:
          description: Name of the bitmap in the image, null without one.
          type: str
          sample: ck-2024-06-01
    size:
      description:
        - Bytes written to each disk since the checkpoint, keyed by disk target name, for disks
          with a bitmap (C(VIR_DOMAIN_CHECKPOINT_XML_SIZE)). Counted in whole bitmap clusters
          (64 KiB by default).
        - Null when the domain is not running (libvirt asks QEMU for the figures).
        - Empty with drivers that do not report sizes (the test driver).
      type: dict
      sample: {vda: 1048576}
    xml:
      description:
        - The checkpoint XML, including the domain definition, as C(virsh checkpoint-dumpxml)
          prints it; usable as O(virtops.libvirt.virt_checkpoint#module:redefine_xml).
      type: str
'''

from ansible_collections.virtops.libvirt.plugins.module_utils._checkpoint import CHECKPOINT_INFO_ARGS, read_checkpoints
from ansible_collections.virtops.libvirt.plugins.module_utils._lifecycle import run_info_module


def main():
    run_info_module(CHECKPOINT_INFO_ARGS, read_checkpoints)


if __name__ == '__main__':
    main()
