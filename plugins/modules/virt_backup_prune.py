#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: virt_backup_prune
short_description: Apply calendar retention to a backup repository, and merge old backups into synthetic fulls
version_added: 0.2.0
description:
  - Decides, for each domain of a backup repository written by M(virtops.libvirt.virt_backup), which backups
    to keep by the usual grandfather-father-son rules, and removes the others together with their libvirt
    checkpoints on this host.
  - Each O(keep_hourly), O(keep_daily), O(keep_weekly), O(keep_monthly) and O(keep_yearly) rule keeps the
    newest backup of each of the last N periods (UTC; weeks are ISO weeks) that hold a backup; periods without
    a backup do not count. O(keep_last) keeps the newest N backups. The rules add up - a backup stays when any
    rule keeps it. These are the rules of restic's and borg's C(forget)/C(prune).
  - Always kept, whatever the rules say - protected backups (O(protect), or the C(protected) flag of a
    manifest); the newest backup of each domain (the next incremental builds on it); every backup of the newest
    O(keep_chains) chains; backups served from this repository by M(virtops.libvirt.virt_backup_export) or an
    instant restore of M(virtops.libvirt.virt_restore) (their chain is not merged either, the daemon reads its
    images); backups that a domain defined on this host (O(uri)) runs from as an instant restore, found by the
    restore's record in the domain's metadata and its disks backed by the export (so also after a reboot of the
    host, when the export is gone until the restore task serves it again), each with C(kept_by) C(used by
    instant-restored domain <name>); and every backup that a kept backup depends on (the earlier links of its
    chain).
    Removing whole chains and the newest part of a chain is therefore always safe.
  - With O(merge), a chain whose oldest backups are kept only because later ones depend on them is shortened
    instead - those backups are merged into a synthetic full backup at the oldest point that stays, inside the
    repository, from the images alone (the guest is not read again). The new image is proved against the
    point's integrity data before anything is switched, and every step is journaled, so that a crash at any
    moment leaves a repository in which every kept point still restores bit-exact; the next run of this module
    finishes or undoes the interrupted merge.
  - A backup is deleted manifest first, so that a half-deleted backup never looks whole. Backup directories
    without a manifest (left by interrupted runs) older than O(incomplete_grace) are removed too.
  - Checkpoints of removed backups are deleted from libvirt (with their dirty bitmaps) when the domain is
    defined on this host with the UUID the backups record; elsewhere they are left alone.
  - An S3 repository (O(repository) C(s3://bucket/prefix), written by M(virtops.libvirt.virt_backup_copy), with
    the C(s3_*) options) is pruned by the same rules, with the same dependencies, check mode and diff. Each
    backup is deleted manifest first (every version of it in a versioned bucket), then its other objects, so
    that an interrupted prune never leaves something that looks whole; the next run removes what is left at
    once. A backup any of whose objects is under S3 Object Lock retention (or a legal hold) is not deleted,
    nor any backup it depends on - every object of a backup is checked before any is deleted - and is listed
    in C(locked) with its retention date. Checkpoints are not touched (they belong to the directory
    repository the backups were taken into). O(merge), O(protect) and O(unprotect) are refused for S3
    repositories - merge in the local repository, then copy it with M(virtops.libvirt.virt_backup_copy).
extends_documentation_fragment:
  - virtops.libvirt.connection
  - virtops.libvirt.s3
  - virtops.libvirt.attributes
attributes:
  check_mode:
    support: full
    details:
      - Lists exactly what would be removed, merged and kept (and by which rule), and which checkpoints would
        be deleted. For an S3 repository the Object Lock retention of every object is read in check mode too, so
        that locked backups are predicted as kept.
  diff_mode:
    support: full
    details:
      - The backup ids of each domain before and after.
  idempotent:
    support: partial
    details:
      - A second run with the same rules removes nothing (the rules count periods that hold backups, not the
        clock). Incomplete backups become old enough for O(incomplete_grace) with time.
options:
  repository:
    description: Absolute path of the backup repository, or an S3 location C(s3://bucket/prefix) (see the C(s3_*) options).
    type: path
    required: true
  domains:
    description: Only these domains. Default is every domain in the repository.
    type: list
    elements: str
  keep_last:
    description: Keep the newest N backups. V(-1) keeps all.
    type: int
  keep_hourly:
    description: Keep the newest backup of each of the last N hours that hold one. V(-1) keeps one of every hour.
    type: int
  keep_daily:
    description: Keep the newest backup of each of the last N days that hold one.
    type: int
  keep_weekly:
    description: Keep the newest backup of each of the last N ISO weeks that hold one.
    type: int
  keep_monthly:
    description: Keep the newest backup of each of the last N months that hold one.
    type: int
  keep_yearly:
    description: Keep the newest backup of each of the last N years that hold one.
    type: int
  keep_chains:
    description:
      - Keep every backup of the newest N chains (a chain is a full backup and the backups built on it).
      - Without any C(keep_*) option, no backup is removed (only incomplete ones and, with O(protect), flags change).
    type: int
  merge:
    description:
      - Merge the oldest backups of a chain, which no rule keeps but later kept backups depend on, into a
        synthetic full backup at the oldest point that stays (a new chain named after that backup's id).
      - Needs free space in the repository for one flattened image per disk while it works.
      - Refused for an S3 repository (the images would have to be downloaded and uploaded again) - merge in the
        directory repository the backups are taken into, then copy it with M(virtops.libvirt.virt_backup_copy);
        a later prune of the S3 copy removes the old chain there.
    type: bool
    default: false
  protect:
    description:
      - Backup ids to protect - their manifests get C(protected) set, and no rule removes them until O(unprotect).
      - Needs exactly one domain in O(domains). Refused for an S3 repository, whose manifests stay byte for byte
        those of the source repository - protect a backup there before it is copied.
    type: list
    elements: str
    default: []
  unprotect:
    description:
      - Backup ids whose protection is removed (they are then subject to the rules). Needs exactly one domain in
        O(domains). Refused for an S3 repository.
    type: list
    elements: str
    default: []
  incomplete_grace:
    description:
      - Backup directories without a manifest whose id (their start time) is older than this are removed - C(36h),
        C(7d), C(90m), C(1w), or seconds. A backup still running is never touched (the domain's lock is held).
      - In an S3 repository, the objects of a backup without its manifest are removed when the newest of them
        was written longer ago than this (a copy may still be running; object storage has no lock); what an
        interrupted prune left of a backup is removed at once.
    type: str
    default: 24h
requirements:
  - C(qemu-img) and C(qemu-nbd) (C(qemu-utils)) and libnbd Python bindings, for O(merge)
  - libvirt Python bindings, for deleting checkpoints
notes:
  - "Test hook: when the environment variable C(VIRTOPS_TEST_PRUNE_KILL_AFTER) names a step (C(journal), C(image),
    C(verified), C(full), C(move), C(moved), C(unmanifest), C(old-removed), C(checkpoints), C(delete)), the module
    kills itself with SIGKILL right after it. The functional tests use it to prove crash safety; never set it
    otherwise."
seealso:
  - module: virtops.libvirt.virt_backup
  - module: virtops.libvirt.virt_backup_info
  - module: virtops.libvirt.virt_checkpoint
author:
  - virtops.libvirt developers (@virtops)
'''

EXAMPLES = r'''
- name: Keep 7 daily, 4 weekly and 6 monthly backups of every domain
  virtops.libvirt.virt_backup_prune:
    repository: /srv/backup/vms
    keep_daily: 7
    keep_weekly: 4
    keep_monthly: 6
    merge: true
  register: pruned

- name: What would go? (check mode lists the removals and the rule that keeps each backup)
  virtops.libvirt.virt_backup_prune:
    repository: /srv/backup/vms
    domains: [web01]
    keep_last: 3
  check_mode: true
  register: preview

- name: Longer retention for the off-host copy in S3 (after virt_backup_copy)
  virtops.libvirt.virt_backup_prune:
    repository: s3://vm-backups/hv01
    s3_endpoint_url: https://rgw.example.com
    keep_daily: 30
    keep_monthly: 12
  register: pruned_s3
# pruned_s3.domains[].locked: backups S3 Object Lock still keeps, with their retention date

- name: Protect the backup taken before an upgrade
  virtops.libvirt.virt_backup_prune:
    repository: /srv/backup/vms
    domains: [db01]
    protect: [20261206T020000Z]
'''

RETURN = r'''
domains:
  description: One entry per domain handled.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: The domain.
      type: str
    kept:
      description: Backups that stay (oldest first), each with C(kept_by), the rules and reasons that keep it.
      type: list
      elements: dict
      sample: [{"id": "20261206T010000Z", "chain": "20261201T010000Z", "time": "2026-12-06T01:00:00.000000Z",
                "kept_by": ["keep_daily (2026-12-06)", "newest"]}]
    removed:
      description: Backups removed (or that would be), each with C(action) C(deleted) or C(merged into <id>).
      type: list
      elements: dict
    merges:
      description: Synthetic fulls made - the old C(chain), the new C(full) (its id names the new chain), the
        C(merged) backups and the later backups C(moved) into the new chain.
      type: list
      elements: dict
    protected:
      description: Backups whose manifest got the protected flag.
      type: list
      elements: str
    unprotected:
      description: Backups whose protected flag was removed.
      type: list
      elements: str
    checkpoints_deleted:
      description: Checkpoints deleted from the domain on this host (with their bitmaps).
      type: list
      elements: str
    incomplete_removed:
      description: Directories of incomplete backups removed (for an S3 repository, the C(s3://) locations of their objects).
      type: list
      elements: str
    recovered:
      description: Interrupted merges found and finished (C(direction) C(forward)) or undone (C(back)).
      type: list
      elements: dict
    locked:
      description:
        - S3 repositories only - backups the rules would remove but S3 Object Lock keeps for now (they are in
          C(kept), with C(kept_by) naming the lock), each with C(mode) (C(compliance), C(governance) or
          C(legal hold)) and C(until) (the latest retention date among its objects, none for a legal hold); and
          leftovers of incomplete backups that are locked (C(incomplete) true).
      type: list
      elements: dict
      sample: [{"id": "20261201T010000Z", "chain": "20261201T010000Z", "mode": "compliance",
                "until": "2027-01-05T20:00:00.000000Z"}]
removed:
  description: C(<domain>/<backup id>) of every backup removed or merged.
  returned: always
  type: list
  elements: str
diff:
  description: Backup ids of each domain before and after (diff mode).
  returned: when diff mode is on
  type: dict
msg:
  description: What was done.
  returned: always
  type: str
  sample: 3 backups removed (1 merged into a synthetic full), 2 checkpoints deleted
'''

from ansible_collections.virtops.libvirt.plugins.module_utils._lifecycle import run_module
from ansible_collections.virtops.libvirt.plugins.module_utils.backup._managers import PruneManager


def main():
    run_module(PruneManager)


if __name__ == '__main__':
    main()
