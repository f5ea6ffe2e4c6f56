#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: virt_volume_info
short_description: Facts about libvirt storage volumes
version_added: 0.1.0
description:
  - Returns the volumes of one storage pool (O(pool)) or of every active pool, optionally only
    those called O(name), with path, key, capacity, allocation, format and backing file.
author:
  - virtops.libvirt developers (@virtops)
extends_documentation_fragment:
  - virtops.libvirt.connection
  - virtops.libvirt.attributes.INFO_MODULE
options:
  pool:
    description:
      - Name of the pool. Without it, the volumes of every active pool are returned.
      - A pool that does not exist, or is not active, is a failure.
    type: str
  name:
    description:
      - Only the volume of this name. A volume that does not exist gives an empty list.
    type: str
seealso:
  - module: virtops.libvirt.virt_volume
  - module: virtops.libvirt.virt_pool_info
'''

EXAMPLES = r'''
- name: The volumes of one pool
  virtops.libvirt.virt_volume_info:
    pool: images
  register: images

- name: One volume
  virtops.libvirt.virt_volume_info:
    pool: images
    name: web1.qcow2
  register: web1
'''

RETURN = r'''
volumes:
  description: The volumes, sorted by pool, then name.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: Name.
      type: str
      sample: web1.qcow2
    pool:
      description: Name of the pool.
      type: str
      sample: images
    path:
      description: Path on the host.
      type: str
      sample: /srv/images/web1.qcow2
    key:
      description: libvirt's unique key.
      type: str
    type:
      description: Volume type (file, block, ...).
      type: str
      sample: file
    capacity:
      description: Capacity (virtual size) in bytes.
      type: int
      sample: 1073741824
    allocation:
      description: Bytes allocated on the host.
      type: int
    format:
      description: Format (raw, qcow2, ...).
      type: str
      sample: qcow2
    backing:
      description: Backing file (C(path), C(format)), or null.
      type: dict
    xml:
      description: Live XML.
      type: str
'''

from ansible_collections.virtops.libvirt.plugins.module_utils._lifecycle import run_info_module
from ansible_collections.virtops.libvirt.plugins.module_utils._volume import VOLUME_INFO_ARGS, read_volumes


def main():
    run_info_module(VOLUME_INFO_ARGS, read_volumes)


if __name__ == '__main__':
    main()
