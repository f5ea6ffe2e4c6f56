#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: virt_secret
short_description: Define, set and undefine libvirt secrets
version_added: 0.1.0
description:
  - Makes a libvirt secret (a passphrase for an encrypted volume, a Ceph or iSCSI key, a TLS or
    vTPM secret) exist with the given definition and value, or not.
  - A secret is found by O(uuid) when given, else by O(usage_type) and O(usage_id).
  - The value is compared with the stored one when libvirt lets it be read (O(private=false)). The
    value of a private secret cannot be read back; the module sets it when it defines the secret,
    and later only with O(force_value=true).
author:
  - virtops.libvirt developers (@virtops)
extends_documentation_fragment:
  - virtops.libvirt.connection
  - virtops.libvirt.attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
    details:
      - Before and after are the definition (uuid, description, ephemeral, private, usage); a value
        change shows as a placeholder, never the value.
  idempotent:
    support: partial
    details:
      - With O(private=true) and O(force_value=true), the value is set on every run.
options:
  uuid:
    description:
      - UUID of the secret. When omitted, libvirt generates one for a new secret and the secret is
        found by its usage.
    type: str
  usage_type:
    description:
      - What the secret is for. With O(usage_id), identifies the secret.
    type: str
    choices: [volume, ceph, iscsi, tls, vtpm]
  usage_id:
    description:
      - The usage's identifier; the volume path for V(volume), the name for V(ceph), V(tls) and
        V(vtpm), the target for V(iscsi).
    type: str
  state:
    description:
      - V(present) defines the secret (and sets its value), V(absent) undefines it.
    type: str
    choices: [present, absent]
    default: present
  description:
    description:
      - Free-form description. Not compared when omitted; the empty string removes it.
    type: str
  ephemeral:
    description:
      - Keep the secret in memory only. Not compared when omitted; V(false) for a new secret.
    type: bool
  private:
    description:
      - Never reveal the value through libvirt's API. Not compared when omitted; V(false) for a new
        secret.
    type: bool
  value:
    description:
      - The secret value. Not compared or set when omitted.
    type: str
  value_encoding:
    description:
      - V(text) stores O(value) as its UTF-8 bytes; V(base64) decodes it first (binary values).
    type: str
    choices: [text, base64]
    default: text
  force_value:
    description:
      - Set O(value) on an existing private secret, whose value cannot be compared. Reports a change.
    type: bool
    default: false
seealso:
  - module: virtops.libvirt.virt_secret_info
  - name: libvirt secret XML format
    description: The C(<secret>) element.
    link: https://libvirt.org/formatsecret.html
'''

EXAMPLES = r'''
- name: Passphrase of an encrypted volume
  virtops.libvirt.virt_secret:
    usage_type: volume
    usage_id: /var/lib/libvirt/images/db01-data.qcow2
    description: LUKS passphrase of db01's data disk
    private: true
    value: "{{ vault_db01_luks }}"

- name: Ceph client key with a fixed UUID
  virtops.libvirt.virt_secret:
    uuid: 2a6d8c5e-7d3c-4a43-a6f1-2c9f6c1a5b11
    usage_type: ceph
    usage_id: client.libvirt secret
    value: "{{ ceph_key }}"
    value_encoding: base64

- name: Remove it
  virtops.libvirt.virt_secret:
    uuid: 2a6d8c5e-7d3c-4a43-a6f1-2c9f6c1a5b11
    state: absent
'''

RETURN = r'''
secret:
  description:
    - The secret after the task (never its value); with O(state=absent) as it was before.
    - Null with O(state=absent) when there was no such secret.
  returned: always
  type: dict
  contains:
    uuid:
      description: UUID of the secret (null in check mode for a new secret without O(uuid)).
      type: str
    description:
      description: Its description, null when it has none.
      type: str
    ephemeral:
      description: Whether it is kept in memory only.
      type: bool
    private:
      description: Whether its value is hidden from the API.
      type: bool
    usage_type:
      description: Usage type, null when it has none.
      type: str
    usage_id:
      description: Usage identifier.
      type: str
    value_readable:
      description: Whether libvirt lets the value be read (false for private secrets).
      type: bool
    has_value:
      description: Whether it has a value; null when that cannot be known (private secrets).
      type: bool
    xml:
      description: The secret XML.
      type: str
value_changed:
  description: Whether the value was (or in check mode would be) set.
  returned: when O(state=present)
  type: bool
msg:
  description: What was done.
  returned: always
  type: str
'''

from ansible_collections.virtops.libvirt.plugins.module_utils._lifecycle import run_module
from ansible_collections.virtops.libvirt.plugins.module_utils._secret import SecretManager


def main():
    run_module(SecretManager)


if __name__ == '__main__':
    main()
