#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: virt_pool_info
short_description: Facts about libvirt storage pools
version_added: 0.1.0
description:
  - Returns one storage pool (O(name)) or all pools, optionally only active or inactive ones,
    with state, autostart, capacity, allocation, available space and the live XML.
author:
  - virtops.libvirt developers (@virtops)
extends_documentation_fragment:
  - virtops.libvirt.connection
  - virtops.libvirt.attributes.INFO_MODULE
options:
  name:
    description:
      - Name of the pool. Without it, every pool is returned.
      - A pool that does not exist gives an empty list, not a failure.
    type: str
  state:
    description:
      - Only active pools, or only pools that are not active.
    type: str
    choices: [active, inactive]
seealso:
  - module: virtops.libvirt.virt_pool
  - module: virtops.libvirt.virt_volume_info
'''

EXAMPLES = r'''
- name: One pool
  virtops.libvirt.virt_pool_info:
    name: images
  register: images

- name: Its free space
  ansible.builtin.debug:
    msg: "{{ images.pools[0].available | human_readable }}"

- name: Every active pool
  virtops.libvirt.virt_pool_info:
    state: active
  register: active_pools
'''

RETURN = r'''
pools:
  description: The pools, sorted by name.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: Name.
      type: str
      sample: images
    uuid:
      description: UUID.
      type: str
    type:
      description: Pool type (dir, logical, ...).
      type: str
      sample: dir
    state:
      description: inactive, building, active, degraded or inaccessible.
      type: str
      sample: active
    autostart:
      description: Whether the pool starts when libvirt starts.
      type: bool
    persistent:
      description: Whether the pool has a persistent definition.
      type: bool
    capacity:
      description: Capacity in bytes (0 when inactive).
      type: int
    allocation:
      description: Bytes allocated (0 when inactive).
      type: int
    available:
      description: Bytes free (0 when inactive).
      type: int
    path:
      description: Target path.
      type: str
      sample: /srv/images
    volumes:
      description: Number of volumes of an active pool; null when inactive.
      type: int
    xml:
      description: Live XML.
      type: str
'''

from ansible_collections.virtops.libvirt.plugins.module_utils._lifecycle import run_info_module
from ansible_collections.virtops.libvirt.plugins.module_utils._pool import POOL_INFO_ARGS, read_pools


def main():
    run_info_module(POOL_INFO_ARGS, read_pools)


if __name__ == '__main__':
    main()
