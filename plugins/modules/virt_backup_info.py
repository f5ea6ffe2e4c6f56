#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: virt_backup_info
short_description: List, and optionally verify, the backups in a repository
version_added: 0.1.0
description:
  - Lists the domains of a backup repository written by M(virtops.libvirt.virt_backup), each with its
    chains and their backups. Only complete backups (with a valid manifest) are listed.
  - With O(verify), checks every image with C(qemu-img check) and reads every point in time back to
    compare it, block by block, with the integrity data recorded at backup time, and checks the saved UEFI
    variable store and TPM state files against their sizes and SHA-256 digests.
  - Needs no libvirt connection. The repository alone is read.
extends_documentation_fragment:
  - virtops.libvirt.connection
  - virtops.libvirt.attributes.INFO_MODULE
  - virtops.libvirt.s3
  - virtops.libvirt.encryption
options:
  repository:
    description:
      - Absolute path of the backup repository, or an S3 location C(s3://bucket/prefix) (see the C(s3_*)
        options). From S3, the manifests are read; O(verify) also downloads each domain's files in turn into a
        private scratch directory in the system's temporary directory.
    type: path
    required: true
  domain:
    description: Only this domain. Default is every domain in the repository.
    type: str
  verify:
    description: Check every image and its integrity data; reads every backup in full.
    type: bool
    default: false
requirements:
  - C(qemu-img) and C(qemu-nbd) (C(qemu-utils)) and libnbd Python bindings, for O(verify)
seealso:
  - module: virtops.libvirt.virt_backup
  - module: virtops.libvirt.virt_restore
author:
  - virtops.libvirt developers (@virtops)
'''

EXAMPLES = r'''
- name: What does the repository hold?
  virtops.libvirt.virt_backup_info:
    repository: /srv/backup/vms
  register: repo

- name: Verify every backup of web01
  virtops.libvirt.virt_backup_info:
    repository: /srv/backup/vms
    domain: web01
    verify: true
  register: check
  failed_when: not check.verified_ok

- name: Verify encrypted backups (without the key, verify fails at once and says so)
  virtops.libvirt.virt_backup_info:
    repository: /srv/backup/vms
    verify: true
    encryption:
      secret: virtops-backup-key
'''

RETURN = r'''
repository:
  description: The repository's path, id and format version.
  returned: always
  type: dict
domains:
  description: One entry per domain.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: Domain name.
      type: str
    chains:
      description: Chains, oldest first; each has C(id), C(size) (bytes on disk) and C(backups).
      type: list
      elements: dict
      contains:
        id:
          description: Chain id (id of its full backup).
          type: str
        size:
          description: Bytes the chain's images take.
          type: int
        backups:
          description:
            - Backups oldest first, each with C(id), C(level), C(reason), C(mode), C(parent), C(checkpoint),
              C(time), C(duration), C(size), C(path), C(disks), C(firmware) (null, or the C(loader) and the
              paths of the saved UEFI variable store C(nvram) and TPM state directory C(tpm), null when not
              saved, and C(tpm_version)), and with O(verify) a C(verify) result
              (C(ok), and per disk C(ok), C(qemu_img_check), C(integrity), and C(message), the reason, when
              the disk failed, such as an image whose header names a backing or data file the format does not
              give it, a wrong size, a damaged or oversized integrity map, a symbolic link; for a backup with
              firmware state, C(firmware), per file C(name), C(path), C(ok) and C(message), its size and
              SHA-256 compared with the manifest).
          type: list
          elements: dict
    errors:
      description:
        - Manifests that could not be read (corrupted, truncated, from a newer format version, a symbolic link)
          or that hold a field the repository format does not allow there (the message names the file and
          the field). The repository is untrusted input; see docs/repository-format.md.
      type: list
      elements: str
verified_ok:
  description: With O(verify), whether every backup passed.
  returned: when verify is true
  type: bool
'''

from ansible_collections.virtops.libvirt.plugins.module_utils._lifecycle import run_info_module
from ansible_collections.virtops.libvirt.plugins.module_utils.backup._managers import read_backups
from ansible_collections.virtops.libvirt.plugins.module_utils.backup._options import BACKUP_INFO_ARGS


def main():
    run_info_module(BACKUP_INFO_ARGS, read_backups)


if __name__ == '__main__':
    main()
