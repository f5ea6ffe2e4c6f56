#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: virt_nwfilter_info
short_description: Facts about libvirt network filters
version_added: 0.1.0
description:
  - Returns one network filter (O(name)) or all, with chain, priority, rules, filter
    references and XML.
author:
  - virtops.libvirt developers (@virtops)
extends_documentation_fragment:
  - virtops.libvirt.connection
  - virtops.libvirt.attributes.INFO_MODULE
options:
  name:
    description:
      - Name of the filter. Without it, every filter is returned.
      - A filter that does not exist gives an empty list, not a failure.
    type: str
seealso:
  - module: virtops.libvirt.virt_nwfilter
'''

EXAMPLES = r'''
- name: One filter
  virtops.libvirt.virt_nwfilter_info:
    name: clean-traffic
  register: clean

- name: What it refers to
  ansible.builtin.debug:
    msg: "{{ clean.nwfilters[0].filterrefs }}"
'''

RETURN = r'''
nwfilters:
  description: The filters, sorted by name.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: Name.
      type: str
      sample: clean-traffic
    uuid:
      description: UUID.
      type: str
    chain:
      description: Chain the filter belongs to.
      type: str
      sample: root
    priority:
      description: Priority of the chain.
      type: int
    rules:
      description: Rules in order, each with C(action), C(direction), C(priority) and C(protocol).
      type: list
      elements: dict
    filterrefs:
      description: Names of the filters it refers to, in order.
      type: list
      elements: str
    xml:
      description: XML.
      type: str
'''

from ansible_collections.virtops.libvirt.plugins.module_utils._lifecycle import run_info_module
from ansible_collections.virtops.libvirt.plugins.module_utils._nwfilter import NWFILTER_INFO_ARGS, read_nwfilters


def main():
    run_info_module(NWFILTER_INFO_ARGS, read_nwfilters)


if __name__ == '__main__':
    main()
