#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: virt_secret_info
short_description: Read libvirt secrets (never their values)
version_added: 0.1.0
description:
  - Returns the definition of every libvirt secret, or of the one found by O(uuid) or by
    O(usage_type) and O(usage_id). Values are never returned.
author:
  - virtops.libvirt developers (@virtops)
extends_documentation_fragment:
  - virtops.libvirt.connection
  - virtops.libvirt.attributes
  - virtops.libvirt.attributes.INFO_MODULE
options:
  uuid:
    description: UUID of one secret to return.
    type: str
  usage_type:
    description: Usage type of one secret to return, with O(usage_id).
    type: str
    choices: [volume, ceph, iscsi, tls, vtpm]
  usage_id:
    description: Usage identifier of one secret to return, with O(usage_type).
    type: str
seealso:
  - module: virtops.libvirt.virt_secret
'''

EXAMPLES = r'''
- name: List the secrets of a host
  virtops.libvirt.virt_secret_info:
  register: result
'''

RETURN = r'''
secrets:
  description:
    - The secrets (uuid, description, ephemeral, private, usage_type, usage_id, value_readable,
      has_value, xml); empty when none matches.
  returned: always
  type: list
  elements: dict
'''

from ansible_collections.virtops.libvirt.plugins.module_utils._lifecycle import run_info_module
from ansible_collections.virtops.libvirt.plugins.module_utils._secret import (
    SECRET_INFO_ARGS,
    SECRET_INFO_OPTIONS,
    read_secrets,
)


def main():
    run_info_module(SECRET_INFO_ARGS, read_secrets, **SECRET_INFO_OPTIONS)


if __name__ == '__main__':
    main()
