# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
name: backup_plan
short_description: The level policy of the backup role, per domain
version_added: 0.1.0
author:
  - contributors to virtops.libvirt
description:
  - Decides, for each domain to back up, what the P(virtops.libvirt.backup#role) role does with it
    in this run; it skips it, takes a full backup by policy, or lets M(virtops.libvirt.virt_backup) choose
    (level V(auto)).
  - The rules, first match wins. B(skip) when O(min_interval) is set and the domain's newest backup is
    younger than it. B(full) when O(full_every) is set and the newest chain holds at least that many
    backups. B(full) when O(full_max_age) is set and the full backup of the newest chain is at least
    that old. Otherwise B(auto).
  - Backup times are read as UTC, to the second, as M(virtops.libvirt.virt_backup_info) returns them.
positional: ''
options:
  _input:
    description: Names of the domains to back up, in the order of the plan.
    type: list
    elements: str
    required: true
  repository:
    description:
      - The RV(virtops.libvirt.virt_backup_info#module:domains) list of the repository before the run
        (each with C(name) and C(chains), each chain with C(id) and C(backups), each backup with C(id) and C(time)).
      - A domain that is not in it has no backup yet.
    type: list
    elements: dict
    default: []
  states:
    description: The run state of every domain, by name (C(running), C(shutoff), ...).
    type: dict
    required: true
  now:
    description: The time of the run, in seconds since the epoch.
    type: float
    required: true
  full_every:
    description: A new chain starts when the newest chain holds this many backups; V(0) for no limit.
    type: int
    default: 0
  full_max_age:
    description: A new chain starts when the full backup of the newest chain is this old, in seconds; V(0) for no limit.
    type: float
    default: 0
  full_max_age_text:
    description: O(full_max_age) as the user wrote it (V(7d)), for the reason in the plan.
    type: str
    default: ''
  min_interval:
    description: Skip a domain whose newest backup is younger than this, in seconds; V(0) never skips.
    type: float
    default: 0
  min_interval_text:
    description: O(min_interval) as the user wrote it (V(20h)), for the reason in the plan.
    type: str
    default: ''
'''

EXAMPLES = r'''
- name: Choose each domain's level by policy
  ansible.builtin.set_fact:
    plan: >-
      {{ ['web01', 'db01'] | virtops.libvirt.backup_plan(
           repository=repo_info.domains, states={'web01': 'running', 'db01': 'shutoff'},
           now=now().timestamp(), full_every=7, full_max_age=604800, full_max_age_text='7d') }}
# plan:
#   - {domain: web01, state: running, chain: 20261201T..., chain_backups: 3, action: backup, level: auto, policy: null}
#   - {domain: db01, state: shutoff, chain: 20261124T..., chain_backups: 7, action: backup, level: full,
#      policy: "full: policy: chain 20261124T... holds 7 backups (backup_full_every: 7)"}
'''

RETURN = r'''
_value:
  description: One entry per input domain, in input order.
  type: list
  elements: dict
  contains:
    domain:
      description: The domain's name.
      type: str
    state:
      description: Its run state, from O(states).
      type: str
    chain:
      description: The id of its newest chain, V(null) when it has none.
      type: str
    chain_backups:
      description: How many backups that chain holds.
      type: int
    action:
      description: V(backup) or V(skip).
      type: str
    level:
      description: V(full) by policy, V(auto) (the module decides), V(null) when skipped.
      type: str
    policy:
      description: Why the policy skipped the domain or chose a full backup; V(null) for V(auto).
      type: str
'''

import datetime

from ansible.module_utils.common.text.converters import to_text


def _epoch(stamp):
    """Seconds since the epoch of a backup time (ISO 8601, read as UTC to the second)."""
    moment = datetime.datetime.strptime(stamp[:19] + '+0000', '%Y-%m-%dT%H:%M:%S%z')
    return moment.timestamp()


def _human(seconds):
    """A short age for the reason text: 90s, 5m, 3.0h, 2.5d."""
    if seconds >= 172800:
        return '%.1fd' % (seconds / 86400)
    if seconds >= 7200:
        return '%.1fh' % (seconds / 3600)
    if seconds >= 120:
        return '%dm' % (seconds // 60)
    return '%ds' % seconds


def backup_plan(domains, states, now, repository=None, full_every=0, full_max_age=0, full_max_age_text='',
                min_interval=0, min_interval_text=''):
    """The plan entry of each domain (see DOCUMENTATION)."""
    now = float(now)
    full_every_text = to_text(full_every)
    full_every = int(full_every)
    full_max_age = float(full_max_age)
    min_interval = float(min_interval)
    chains_of = dict((entry['name'], entry['chains']) for entry in repository or [])
    plan = []
    for name in domains:
        chains = chains_of.get(name) or []
        newest = chains[-1] if chains else {'id': None, 'backups': []}
        backups = newest['backups']
        last_age = now - _epoch(backups[-1]['time']) if backups else -1
        full_age = now - _epoch(backups[0]['time']) if backups else -1
        entry = {'domain': name, 'state': states[name], 'chain': newest['id'], 'chain_backups': len(backups),
                 'action': 'backup', 'level': 'auto', 'policy': None}
        if min_interval > 0 and 0 <= last_age < min_interval:
            entry.update(action='skip', level=None, policy='skipped: the newest backup (%s) is %s old, younger than '
                         'backup_min_interval (%s)' % (backups[-1]['id'], _human(last_age), to_text(min_interval_text)))
        elif full_every > 0 and len(backups) >= full_every:
            entry.update(level='full', policy='full: policy: chain %s holds %d %s (backup_full_every: %s)' % (
                newest['id'], len(backups), 'backup' if len(backups) == 1 else 'backups', full_every_text))
        elif full_max_age > 0 and full_age >= full_max_age:
            entry.update(level='full', policy='full: policy: the full backup of chain %s is %s old (backup_full_max_age: %s)'
                         % (newest['id'], _human(full_age), to_text(full_max_age_text)))
        plan.append(entry)
    return plan


class FilterModule(object):

    def filters(self):
        return {'backup_plan': backup_plan}
