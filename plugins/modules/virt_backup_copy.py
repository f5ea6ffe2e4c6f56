#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: virt_backup_copy
short_description: Copy backups to another repository, such as S3 object storage with object lock
version_added: 0.2.0
description:
  - Copies the backups of a repository written by M(virtops.libvirt.virt_backup) into another repository,
    incrementally (only the backups the target lacks, oldest first). A repository is a directory or an S3
    location C(s3://bucket/prefix) (AWS S3 or any S3-compatible server). The main use is an off-host copy
    of local backups in object storage, where the 3-2-1 rule wants one, optionally under S3 Object Lock so
    that even the credentials that wrote it cannot delete or change it before a date. S3 to a directory and
    directory to directory work too; one side at most is in S3.
  - Each backup's data files are written first and its C(manifest.json) last, byte for byte what the source
    holds. A backup without its manifest does not exist for any reader, so an interrupted copy leaves nothing
    that looks whole; the next run copies that backup again (unfinished multipart uploads are aborted,
    partly written objects replaced, a partial directory removed).
  - The source is untrusted input. Its manifests are validated; before a backup's manifest is written, every
    point in time is read back block by block and compared with its integrity data, and the UEFI variable
    store and TPM state files with their sizes and SHA-256 digests, as M(virtops.libvirt.virt_restore) does,
    on the source before an upload and on the copy itself for a directory target. Uploads send every part's
    MD5 (the server refuses a damaged part) and check the stored object's ETag.
  - A backup that the target holds already with the same manifest is left alone, so a second run copies
    nothing (C(changed=false)). A target backup with the same id and another manifest fails the run.
  - Large images are uploaded in parts of 16 MiB or more, four at a time, so memory stays bounded whatever
    their size.
  - Needs no libvirt connection.
extends_documentation_fragment:
  - virtops.libvirt.connection
  - virtops.libvirt.attributes
  - virtops.libvirt.s3
  - virtops.libvirt.encryption
options:
  source:
    description: The repository to copy from, an absolute directory path or C(s3://bucket/prefix).
    type: str
    required: true
  target:
    description:
      - The repository to copy into, an absolute directory path or C(s3://bucket/prefix).
      - A target without C(repository.json) gets the source's (the same repository id), so it is a mirror of
        the source. The S3 bucket must exist; the prefix may be new.
      - A target that holds another repository (another id), or a directory inside the source or holding
        it, is refused before anything is written; each repository needs a location of its own.
    type: str
    required: true
  domains:
    description: Only the backups of these domains. Default is every domain of the source.
    type: list
    elements: str
  s3_object_lock:
    description:
      - S3 Object Lock retention on every object written (the objects of each copied backup and the
        repository marker), in mode C(governance) (users with the C(s3:BypassGovernanceRetention) permission
        can still remove them) or C(compliance) (nobody can, not even the account's root user, until the date).
      - The target bucket must have been created with object lock enabled (which also enables versioning).
    type: str
    choices: [none, governance, compliance]
    default: none
  s3_retention_days:
    description: Days each object written stays locked, with O(s3_object_lock).
    type: int
attributes:
  check_mode:
    support: full
    description: Lists what would be copied, reading only metadata.
  diff_mode:
    support: full
    description: The source's backups that the target holds before and after the copy (C(domain/chain/id)).
  idempotent:
    support: full
    description: A second run with the same arguments copies nothing.
requirements:
  - boto3 on the managed host for an S3 repository
  - C(qemu-img), C(qemu-nbd) and libnbd Python bindings (the integrity checks)
seealso:
  - module: virtops.libvirt.virt_backup
  - module: virtops.libvirt.virt_restore
  - module: virtops.libvirt.virt_backup_info
notes:
  - Objects under object lock that were written by an interrupted run stay in the bucket (as older versions
    once the next run replaces them) until their retention ends.
author:
  - virtops.libvirt developers (@virtops)
'''

EXAMPLES = r'''
- name: Off-host copy of every local backup into S3, locked for 30 days
  virtops.libvirt.virt_backup_copy:
    source: /srv/backup/vms
    target: s3://backups-example/{{ inventory_hostname }}
    s3_region: eu-central-1
    s3_object_lock: compliance
    s3_retention_days: 30
  register: offsite

- name: Off-host copy of encrypted backups (they stay encrypted; the key proves them on the way)
  virtops.libvirt.virt_backup_copy:
    source: /srv/backup/vms
    target: s3://backups-example/{{ inventory_hostname }}
    encryption:
      key_file: /etc/virtops/backup.key

- name: Copy into a Ceph RGW or MinIO server, credentials from the environment
  virtops.libvirt.virt_backup_copy:
    source: /srv/backup/vms
    target: s3://vm-backups/hv01
    s3_endpoint_url: https://rgw.example.com
    domains: [web01, db01]
  environment:
    AWS_ACCESS_KEY_ID: "{{ vault_s3_key }}"
    AWS_SECRET_ACCESS_KEY: "{{ vault_s3_secret }}"

- name: Bring backups back from S3 into a directory on a new host
  virtops.libvirt.virt_backup_copy:
    source: s3://vm-backups/hv01
    target: /srv/backup/from-s3
    s3_endpoint_url: https://rgw.example.com
    s3_profile: backup
'''

RETURN = r'''
source:
  description: The source repository.
  returned: always
  type: str
target:
  description: The target repository.
  returned: always
  type: str
copied:
  description: The backups copied (in check mode, those that would be), oldest first.
  returned: always
  type: list
  elements: dict
  contains:
    domain:
      description: Domain name.
      type: str
    chain:
      description: Chain id.
      type: str
    id:
      description: Backup id.
      type: str
    level:
      description: C(full), C(incremental) or C(differential).
      type: str
    time:
      description: The point in time the backup holds.
      type: str
    bytes:
      description: Bytes copied for this backup (null in check mode).
      type: int
    seconds:
      description: Time this backup took, checks included (null in check mode).
      type: float
present:
  description: How many backups of the source the target held already.
  returned: always
  type: int
bytes:
  description: Bytes copied in all.
  returned: always
  type: int
seconds:
  description: Duration of the whole copy, integrity checks included.
  returned: always
  type: float
mib_per_s:
  description: Bytes copied per second, in MiB/s (null when nothing was copied).
  returned: always
  type: float
'''

from ansible_collections.virtops.libvirt.plugins.module_utils._lifecycle import run_module
from ansible_collections.virtops.libvirt.plugins.module_utils.backup._managers import CopyManager


def main():
    run_module(CopyManager)


if __name__ == '__main__':
    main()
