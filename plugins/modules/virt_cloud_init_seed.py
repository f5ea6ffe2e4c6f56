#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: virt_cloud_init_seed
short_description: Build cloud-init NoCloud seed images (ISO 9660, label cidata) for libvirt guests
version_added: 0.1.0
description:
  - Makes a cloud-init NoCloud seed image exist at O(path) (or not), to attach to a domain as a
    CD-ROM. The image is an ISO 9660 file system labelled C(cidata) whose root holds
    C(user-data), C(meta-data), and C(network-config) and C(vendor-data) when given, with Rock
    Ridge and Joliet names.
  - The image is built in Python with pycdlib; no C(genisoimage), C(xorriso) or
    C(cloud-localds) is needed.
  - An existing image is compared by the label and the files inside it, not by its bytes (every
    build has new time stamps), so a second run with the same data changes nothing. When they
    differ, a new image replaces the file in one rename.
author:
  - virtops.libvirt developers (@virtops)
extends_documentation_fragment:
  - virtops.libvirt.connection
  - virtops.libvirt.attributes
  - ansible.builtin.files
attributes:
  check_mode:
    support: full
    details:
      - Check mode reads the existing image, compares and reports exactly what a real run
        would do, and writes nothing.
  diff_mode:
    support: full
    details:
      - Shows the label and the text of each file that differs. C(user-data) and
        C(vendor-data) appear only as size and SHA-256 unless O(diff_user_data=true).
      - File attributes (O(mode), O(owner), O(group)) that change appear as a second diff.
  idempotent:
    support: full
options:
  path:
    description:
      - Absolute path of the seed image on the host the module runs on, for example
        V(/var/lib/libvirt/images/web1-seed.iso). Its directory must exist.
      - QEMU's user (C(libvirt-qemu) on Debian, C(qemu) on RHEL) must be able to reach it.
        libvirt's dynamic ownership (on by default) hands the file to that user when a domain
        that uses it starts.
    type: path
    required: true
  state:
    description:
      - V(present) builds the image when the file is missing or its label or files differ from
        the wanted ones.
      - V(absent) removes the file. A missing file is not an error.
    type: str
    choices: [present, absent]
    default: present
  user_data:
    description:
      - Content of C(user-data).
      - A dictionary is written as cloud-config YAML (keys sorted) after a C(#cloud-config)
        line.
      - A string is written as it is, so it can be cloud-config text (starting with
        C(#cloud-config)), a shell script, a C(#include) list or MIME multi-part data.
      - When not set, an empty cloud-config (C(#cloud-config) only).
      - 'It may hold secrets (password hashes, keys): see O(diff_user_data), and set
        C(no_log: true) on the task to keep the module arguments out of verbose output.'
    type: raw
  meta_data:
    description:
      - Content of C(meta-data).
      - A dictionary is written as YAML; O(instance_id) and O(hostname) fill in
        C(instance-id) and C(local-hostname) when it lacks them.
      - A string is written as it is; O(instance_id) and O(hostname) cannot be used with it.
      - The result must have an C(instance-id). cloud-init runs its once-per-instance steps
        (users, keys, packages) again whenever the instance-id changes.
    type: raw
  hostname:
    description:
      - C(local-hostname) of the meta-data, and its C(instance-id) when O(instance_id) is not
        set.
    type: str
  instance_id:
    description:
      - C(instance-id) of the meta-data.
    type: str
  network_config:
    description:
      - Content of C(network-config); no such file when not set (cloud-init then configures
        the first interface with DHCP).
      - A dictionary must be network configuration version 1 or 2 (C(version) key, optionally
        under a top-level C(network) key) and is written as YAML. A string is written as it is.
    type: raw
  vendor_data:
    description:
      - Content of C(vendor-data), treated like O(user_data); no such file when not set.
    type: raw
  diff_user_data:
    description:
      - Show the text of C(user-data) and C(vendor-data) in the diff. By default they show as
        size and SHA-256 only, as they often hold secrets.
    type: bool
    default: false
  force:
    description:
      - Replace (or with O(state=absent) remove) a file at O(path) that is not a seed image (not
        ISO 9660, or another label). Without it, such a file makes the module fail and nothing
        is changed.
    type: bool
    default: false
requirements:
  - pycdlib (Debian and Ubuntu C(python3-pycdlib)) on the host the module runs on
notes:
  - A new file gets mode V(0644) unless O(mode) is set; a replaced file keeps the owner, group
    and mode it had.
  - A running domain keeps reading the image it opened; a new image is seen after the domain
    restarts, and cloud-init acts on most changes only with a new instance-id.
  - The connection options (O(uri), O(username), O(password)) are accepted so that
    C(module_defaults) for the group C(virtops.libvirt.libvirt) apply; the image is written
    on the host the module runs on, without a libvirt connection.
seealso:
  - module: virtops.libvirt.virt_domain
  - module: virtops.libvirt.virt_volume
  - name: cloud-init NoCloud data source
    description: The seed format (label, file names).
    link: https://cloudinit.readthedocs.io/en/latest/reference/datasources/nocloud.html
'''

EXAMPLES = r'''
- name: A seed for web1 with a user and its SSH key
  virtops.libvirt.virt_cloud_init_seed:
    path: /var/lib/libvirt/images/web1-seed.iso
    hostname: web1
    user_data:
      users:
        - name: ops
          sudo: ALL=(ALL) NOPASSWD:ALL
          ssh_authorized_keys:
            - "{{ lookup('ansible.builtin.file', 'ops.pub') }}"
      packages: [qemu-guest-agent]

- name: A fixed address with network configuration version 2
  virtops.libvirt.virt_cloud_init_seed:
    path: /var/lib/libvirt/images/db1-seed.iso
    hostname: db1
    instance_id: db1-2026-01
    user_data: "{{ lookup('ansible.builtin.template', 'db1-user-data.j2') }}"
    network_config:
      version: 2
      ethernets:
        id0:
          match: {name: "en*"}
          addresses: [192.0.2.10/24]
          routes:
            - to: default
              via: 192.0.2.1
    mode: "0640"
    group: kvm
  no_log: true

- name: Remove it
  virtops.libvirt.virt_cloud_init_seed:
    path: /var/lib/libvirt/images/web1-seed.iso
    state: absent
'''

RETURN = r'''
path:
  description: Path of the seed image.
  returned: always
  type: str
  sample: /var/lib/libvirt/images/web1-seed.iso
files:
  description: Names of the files the seed holds (after the run, or as a real run would leave
    them in check mode). Empty with O(state=absent).
  returned: always
  type: list
  elements: str
  sample: [meta-data, network-config, user-data]
changed_files:
  description: Names of the files added, changed or removed compared with the existing image
    (all of them when there was none, or the image is removed).
  returned: always
  type: list
  elements: str
  sample: [user-data]
sha256:
  description: SHA-256 of each file in RV(files), to compare without reading secrets.
  returned: always
  type: dict
  sample: {"meta-data": "5f1c0c0d...", "user-data": "9a3e61f2..."}
instance_id:
  description: The instance-id of the meta-data, null when there is none or it cannot be read.
  returned: always
  type: str
  sample: web1
actions:
  description: What the run did (or would do in check mode), in order.
  returned: always
  type: list
  elements: str
  sample: [rebuild]
'''

from ansible_collections.virtops.libvirt.plugins.module_utils._cloudinit import SeedManager
from ansible_collections.virtops.libvirt.plugins.module_utils._lifecycle import run_module


def main():
    run_module(SeedManager)


if __name__ == '__main__':
    main()
