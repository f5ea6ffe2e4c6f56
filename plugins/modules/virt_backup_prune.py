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
  - Directory repositories only in this version.
extends_documentation_fragment:
  - virtops.libvirt.connection
  - virtops.libvirt.attributes
attributes:
  check_mode:
    support: full
    details:
      - Lists exactly what would be removed, merged and kept (and by which rule), and which checkpoints would
        be deleted.
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
    description: Absolute path of the backup repository.
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
    type: bool
    default: false
  protect:
    description:
      - Backup ids to protect - their manifests get C(protected) set, and no rule removes them until O(unprotect).
      - Needs exactly one domain in O(domains).
    type: list
    elements: str
    default: []
  unprotect:
    description: Backup ids whose protection is removed (they are then subject to the rules). Needs exactly one domain in O(domains).
    type: list
    elements: str
    default: []
  incomplete_grace:
    description:
      - Backup directories without a manifest whose id (their start time) is older than this are removed - C(36h),
        C(7d), C(90m), C(1w), or seconds. A backup still running is never touched (the domain's lock is held).
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
      description: Directories of incomplete backups removed.
      type: list
      elements: str
    recovered:
      description: Interrupted merges found and finished (C(direction) C(forward)) or undone (C(back)).
      type: list
      elements: dict
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

from ansible_collections.virtops.libvirt.plugins.module_utils._libvirt import VirtError, VirtModule
from ansible_collections.virtops.libvirt.plugins.module_utils import _checkpoint
from ansible_collections.virtops.libvirt.plugins.module_utils.backup import (
    _blockhash, _images, _nbdio, _repository, _retention)

ARGUMENT_SPEC = dict(
    repository=dict(type='path', required=True),
    domains=dict(type='list', elements='str'),
    keep_last=dict(type='int'),
    keep_hourly=dict(type='int'),
    keep_daily=dict(type='int'),
    keep_weekly=dict(type='int'),
    keep_monthly=dict(type='int'),
    keep_yearly=dict(type='int'),
    keep_chains=dict(type='int'),
    merge=dict(type='bool', default=False),
    protect=dict(type='list', elements='str', default=[]),
    unprotect=dict(type='list', elements='str', default=[]),
    incomplete_grace=dict(type='str', default='24h'),
)


class HostCheckpoints:
    """The checkpoints of backed-up domains on this host, through the module's libvirt connection."""

    def __init__(self, vm):
        self.vm = vm

    def _domain(self, name, uuid):
        dom = self.vm.connection.lookup_domain(name)
        if dom is None:
            return None
        if uuid and dom.UUIDString() != uuid:
            return None     # another domain of that name: its checkpoints are not ours to touch
        return dom

    def existing(self, domain, uuid, names):
        dom = self._domain(domain, uuid)
        if dom is None:
            return []
        self.vm.connection.require('checkpoints')
        return [n for n in names if _checkpoint.lookup_checkpoint(dom, n) is not None]

    def delete(self, domain, name):
        dom = self._domain(domain, None)
        chk = _checkpoint.lookup_checkpoint(dom, name) if dom is not None else None
        if chk is not None:
            _checkpoint.delete_checkpoint(dom, chk)


def _check_params(p):
    if isinstance(p['repository'], str) and p['repository'].startswith('s3://'):
        raise VirtError('repository %s: virt_backup_prune works on directory repositories in this version; prune '
                        'the local repository and copy it again with virt_backup_copy' % p['repository'])
    for rule in _retention.RULES + ('keep_chains',):
        value = p[rule]
        if value is not None and (value < -1 or (rule == 'keep_chains' and value < 0)):
            raise VirtError('%s is %d: give a number of %s >= 0%s' % (
                rule, value, 'chains' if rule == 'keep_chains' else 'periods',
                '' if rule == 'keep_chains' else ', or -1 for all'))
    if (p['protect'] or p['unprotect']) and len(p['domains'] or []) != 1:
        raise VirtError('protect and unprotect name backups of one domain: give exactly one domain in domains')
    both = set(p['protect']) & set(p['unprotect'])
    if both:
        raise VirtError('backup %s is both in protect and unprotect' % ', '.join(sorted(both)))
    for backup_id in p['protect'] + p['unprotect']:
        if not _repository.BACKUP_ID.match(backup_id):
            raise VirtError('%r is not a backup id (YYYYMMDDTHHMMSSZ with an optional -N)' % backup_id)
    try:
        return _retention.parse_duration(p['incomplete_grace'])
    except _retention.RetentionError as exc:
        raise VirtError('incomplete_grace: %s' % exc)


def _message(domains, check_mode):
    removed = sum(len(d['removed']) for d in domains)
    merged = sum(1 for d in domains for r in d['removed'] if r['action'] != 'deleted')
    checkpoints = sum(len(d['checkpoints_deleted']) for d in domains)
    incomplete = sum(len(d['incomplete_removed']) for d in domains)
    flags = sum(len(d['protected']) + len(d['unprotected']) for d in domains)
    would = 'would be ' if check_mode else ''
    parts = []
    if removed:
        how = ' (%d merged into synthetic fulls)' % merged if merged else ''
        parts.append('%d backup%s %sremoved%s' % (removed, '' if removed == 1 else 's', would, how))
    if checkpoints:
        parts.append('%d checkpoint%s %sdeleted' % (checkpoints, '' if checkpoints == 1 else 's', would))
    if incomplete:
        parts.append('%d incomplete backup%s %sremoved' % (incomplete, '' if incomplete == 1 else 's', would))
    if flags:
        parts.append('%d protection flag%s %schanged' % (flags, '' if flags == 1 else 's', would))
    recovered = sum(len(d['recovered']) for d in domains)
    if recovered:
        parts.append('%d interrupted merge%s %sresolved' % (recovered, '' if recovered == 1 else 's', would))
    return ', '.join(parts) if parts else 'nothing to remove: every backup is kept'


def run(vm):
    p = vm.params
    grace = _check_params(p)
    try:
        repo = _repository.Repository(p['repository'])
        if not vm.check_mode:
            repo.check_writable()
        store = _retention.LocalStore(repo)
        present = repo.domains()
        names = present if p['domains'] is None else [_repository.check_name('domain name', n) for n in p['domains']]
        rules = dict((r, p[r]) for r in _retention.RULES)
        pruner = _retention.Pruner(store, rules, keep_chains=p['keep_chains'], merge=p['merge'],
                                   protect=p['protect'], unprotect=p['unprotect'], incomplete_grace=grace,
                                   checkpoints=HostCheckpoints(vm), check_mode=vm.check_mode,
                                   restored_from=lambda name: store.restored_from(vm.connection.conn, name))
        domains = []
        for name in names:
            if name not in present:
                if p['protect'] or p['unprotect']:
                    raise VirtError('repository %s holds no backup of domain %s; nothing was changed'
                                    % (repo.path, name))
                continue
            domains.append(pruner.run(name))
    except (_repository.RepositoryError, _retention.RetentionError, _images.ImageError,
            _blockhash.BlockHashError, _nbdio.NbdIoError, OSError) as exc:
        raise VirtError('pruning repository %s: %s' % (p['repository'], exc))
    result = dict(changed=any(d.pop('changed') for d in domains), domains=domains,
                  removed=['%s/%s' % (d['name'], r['id']) for d in domains for r in d['removed']],
                  msg=_message(domains, vm.check_mode))
    if vm.module._diff:
        result['diff'] = dict(
            before=dict((d['name'], sorted([k['id'] for k in d['kept']] + [r['id'] for r in d['removed']]))
                        for d in domains),
            after=dict((d['name'], [k['id'] for k in d['kept']]) for d in domains))
    return result


def main():
    vm = VirtModule(ARGUMENT_SPEC, supports_check_mode=True)
    vm.run(run)


if __name__ == '__main__':
    main()
