#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: virt_nwfilter
short_description: Define and remove libvirt network filters declaratively
version_added: 0.1.0
description:
  - Makes a libvirt network filter (nwfilter) match a desired definition, or removes it.
  - The desired XML is compared with the filter's definition by intent, not as text. Only what
    the XML sets is compared; the uuid, the default chain priority and rule priorities libvirt
    adds never cause a change. Rules and filter references are ordered lists that the XML owns,
    matched by position; one the XML leaves out is removed.
  - libvirt applies a new definition to the running domains that use the filter at once, so
    there is no restart.
  - The XML is checked before anything changes. It must be well-formed, have the same name as
    O(name) and follow libvirt's schema (C(VIR_NWFILTER_DEFINE_VALIDATE)).
  - Rule attributes are compared in the form libvirt stores them (MAC addresses zero-padded, IP masks
    as prefix lengths, variable references without blanks, ...), so a second run with the same XML
    reports no change. See docs/idempotency.md.
author:
  - virtops.libvirt developers (@virtops)
extends_documentation_fragment:
  - virtops.libvirt.connection
  - virtops.libvirt.attributes
attributes:
  check_mode:
    support: full
    details:
      - Check mode compares exactly as a real run does and changes nothing. It validates the XML
        against the local schema files instead of asking libvirt to define it, and foresees the
        refusal of a filter whose references lead back to itself or whose uuid another filter has.
  diff_mode:
    support: full
    details:
      - Shows the normalised XML of the live filter reduced to what the desired XML sets,
        against the normalised desired XML.
  idempotent:
    support: full
options:
  name:
    description:
      - Name of the filter.
      - Optional when O(xml) has a C(name) attribute; when both are given they must be the same.
      - Required for O(state=absent).
    type: str
  xml:
    description:
      - The desired filter definition (libvirt nwfilter XML, root element C(<filter>)).
      - A C(<uuid>) is optional; the existing filter's uuid is kept.
    type: str
  state:
    description:
      - V(present) defines the filter, or updates its definition.
      - V(absent) removes it. A filter that does not exist is not an error; one that a domain
        or another filter still uses cannot be removed (libvirt refuses).
    type: str
    choices: [present, absent]
    default: present
notes:
  - Moving a rule before or after a filter reference (different elements) is not seen as a
    change; the order among rules and among references is.
seealso:
  - module: virtops.libvirt.virt_nwfilter_info
  - name: libvirt network filter XML format
    description: Reference of the nwfilter XML.
    link: https://libvirt.org/formatnwfilter.html
'''

EXAMPLES = r'''
- name: Let guests receive SSH only, on top of clean-traffic
  virtops.libvirt.virt_nwfilter:
    xml: |
      <filter name='ssh-only' chain='root'>
        <filterref filter='clean-traffic'/>
        <rule action='accept' direction='in'>
          <tcp dstportstart='22'/>
        </rule>
        <rule action='drop' direction='in'>
          <all/>
        </rule>
      </filter>

- name: Remove it
  virtops.libvirt.virt_nwfilter:
    name: ssh-only
    state: absent
'''

RETURN = r'''
nwfilter:
  description:
    - The filter after the run. Empty after O(state=absent), and in check mode when the filter
      does not exist yet. In check mode, the live filter as it is (unchanged).
  returned: always
  type: dict
  contains:
    name:
      description: Name of the filter.
      type: str
      sample: ssh-only
    uuid:
      description: UUID of the filter.
      type: str
    chain:
      description: Chain the filter belongs to.
      type: str
      sample: root
    priority:
      description: Priority of the chain.
      type: int
    xml:
      description: The XML of the filter.
      type: str
actions:
  description: What the run did (or would do in check mode).
  returned: always
  type: list
  elements: str
  sample: [define]
'''

from ansible_collections.virtops.libvirt.plugins.module_utils._lifecycle import run_module
from ansible_collections.virtops.libvirt.plugins.module_utils._nwfilter import NwfilterManager


def main():
    run_module(NwfilterManager)


if __name__ == '__main__':
    main()
