# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The backup role's level policy (filter virtops.libvirt.backup_plan): every branch, and the
reason texts the role's report shows."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime

import pytest

from ansible_collections.virtops.libvirt.plugins.filter.backup_plan import FilterModule, backup_plan

NOW = datetime.datetime(2026, 12, 6, 12, 0, 0, tzinfo=datetime.timezone.utc)
HOUR = 3600
DAY = 86400


def stamp(seconds_ago):
    """A backup time as virt_backup_info returns it (UTC, microseconds)."""
    return (NOW - datetime.timedelta(seconds=seconds_ago)).strftime('%Y-%m-%dT%H:%M:%S.%f')


def chain(chain_id, *ages):
    """A chain whose backups were taken ages (seconds ago, oldest first) ago."""
    return {'id': chain_id, 'backups': [{'id': '%s-%d' % (chain_id, n), 'time': stamp(age)}
                                        for n, age in enumerate(ages)]}


def plan(repository, domains=('web',), states=None, **policy):
    return backup_plan(list(domains), states or dict((d, 'running') for d in domains), NOW.timestamp(),
                       repository=repository, **policy)


def repo(**chains_by_domain):
    return [{'name': name, 'chains': chains} for name, chains in chains_by_domain.items()]


def test_the_filter_is_registered():
    assert FilterModule().filters() == {'backup_plan': backup_plan}


def test_a_domain_without_backups_is_left_to_the_module():
    entries = plan([], domains=('web', 'db'), states={'web': 'running', 'db': 'shutoff'},
                   full_every=7, full_max_age=DAY, min_interval=HOUR)
    assert entries == [
        {'domain': 'web', 'state': 'running', 'chain': None, 'chain_backups': 0, 'action': 'backup',
         'level': 'auto', 'policy': None},
        {'domain': 'db', 'state': 'shutoff', 'chain': None, 'chain_backups': 0, 'action': 'backup',
         'level': 'auto', 'policy': None},
    ]


def test_a_domain_with_an_empty_chain_list_has_no_chain():
    assert plan(repo(web=[]), full_every=1)[0]['chain'] is None


def test_the_newest_chain_is_the_last_one():
    entry = plan(repo(web=[chain('c1', 9 * DAY, 8 * DAY), chain('c2', 2 * DAY, DAY, HOUR)]))[0]
    assert (entry['chain'], entry['chain_backups'], entry['level'], entry['policy']) == ('c2', 3, 'auto', None)


def test_no_policy_set_means_auto():
    entry = plan(repo(web=[chain('c1', 400 * DAY, 10, 5)]))[0]
    assert (entry['action'], entry['level'], entry['policy']) == ('backup', 'auto', None)


@pytest.mark.parametrize('age, shown', [
    (30, '30s'), (119, '119s'), (120, '2m'), (7199, '119m'), (7200, '2.0h'), (5400 * 3, '4.5h'),
    (172799, '48.0h'), (172800, '2.0d'), (3 * DAY + 12 * HOUR, '3.5d'),
])
def test_a_recent_backup_skips_the_domain(age, shown):
    entry = plan(repo(web=[chain('c1', 10 * DAY, age)]), min_interval=10 * DAY, min_interval_text='10d',
                 full_every=1)
    assert entry[0] == {
        'domain': 'web', 'state': 'running', 'chain': 'c1', 'chain_backups': 2, 'action': 'skip', 'level': None,
        'policy': 'skipped: the newest backup (c1-1) is %s old, younger than backup_min_interval (10d)' % shown}


def test_a_backup_as_old_as_the_interval_is_not_skipped():
    entry = plan(repo(web=[chain('c1', HOUR)]), min_interval=HOUR, min_interval_text='1h')[0]
    assert (entry['action'], entry['level']) == ('backup', 'auto')


def test_min_interval_zero_never_skips():
    entry = plan(repo(web=[chain('c1', 1)]), min_interval=0, min_interval_text='')[0]
    assert entry['action'] == 'backup'


def test_a_backup_in_the_future_is_not_skipped():
    # A clock that went back: the age is negative, the interval rule does not apply.
    entry = plan(repo(web=[chain('c1', -HOUR)]), min_interval=DAY, min_interval_text='1d')[0]
    assert entry['action'] == 'backup'


def test_a_full_chain_starts_a_new_one():
    entry = plan(repo(web=[chain('c1', 3 * DAY, 2 * DAY, DAY)]), full_every=3)[0]
    assert (entry['action'], entry['level']) == ('backup', 'full')
    assert entry['policy'] == 'full: policy: chain c1 holds 3 backups (backup_full_every: 3)'


def test_a_chain_of_one_backup_is_counted_in_the_singular():
    entry = plan(repo(web=[chain('c1', DAY)]), full_every=1)[0]
    assert entry['policy'] == 'full: policy: chain c1 holds 1 backup (backup_full_every: 1)'


def test_a_chain_below_full_every_goes_on():
    entry = plan(repo(web=[chain('c1', 2 * DAY, DAY)]), full_every=3)[0]
    assert (entry['level'], entry['policy']) == ('auto', None)


def test_full_every_zero_means_no_limit():
    entry = plan(repo(web=[chain('c1', *range(100, 0, -1))]), full_every=0)[0]
    assert entry['level'] == 'auto'


def test_an_old_full_starts_a_new_chain():
    entry = plan(repo(web=[chain('c1', 8 * DAY, DAY)]), full_max_age=7 * DAY, full_max_age_text='7d')[0]
    assert (entry['action'], entry['level']) == ('backup', 'full')
    assert entry['policy'] == 'full: policy: the full backup of chain c1 is 8.0d old (backup_full_max_age: 7d)'


def test_the_age_of_the_full_is_the_age_of_the_chain_s_first_backup():
    entry = plan(repo(web=[chain('c1', 6 * DAY, 8 * DAY)]), full_max_age=7 * DAY, full_max_age_text='7d')[0]
    assert entry['level'] == 'auto'


def test_a_full_exactly_as_old_as_the_limit_starts_a_new_chain():
    entry = plan(repo(web=[chain('c1', 3 * HOUR)]), full_max_age=3 * HOUR, full_max_age_text='3h')[0]
    assert entry['policy'] == 'full: policy: the full backup of chain c1 is 3.0h old (backup_full_max_age: 3h)'


def test_skip_wins_over_full_and_chain_length_over_age():
    chains = repo(web=[chain('c1', 30 * DAY, 60)])
    assert plan(chains, min_interval=HOUR, min_interval_text='1h', full_every=2, full_max_age=DAY)[0]['action'] == 'skip'
    entry = plan(chains, full_every=2, full_max_age=DAY, full_max_age_text='1d')[0]
    assert entry['policy'].startswith('full: policy: chain c1 holds 2 backups')


def test_values_as_templates_give_them():
    # set_fact may hand over numbers as text; the role's durations in seconds are ints.
    entries = backup_plan(['web'], {'web': 'paused'}, str(NOW.timestamp()), repository=repo(web=[chain('c1', DAY)]),
                          full_every='1', full_max_age='0', min_interval='0')
    assert entries[0]['state'] == 'paused'
    assert entries[0]['policy'] == 'full: policy: chain c1 holds 1 backup (backup_full_every: 1)'


def test_times_are_read_as_utc_to_the_second():
    # Microseconds and any offset after the seconds are ignored, as the role always did.
    backups = [{'id': 'b1', 'time': (NOW - datetime.timedelta(seconds=90)).strftime('%Y-%m-%dT%H:%M:%S') + '.999999+05:00'}]
    entry = plan([{'name': 'web', 'chains': [{'id': 'c1', 'backups': backups}]}], min_interval=HOUR,
                 min_interval_text='1h')[0]
    assert entry['policy'] == 'skipped: the newest backup (b1) is 90s old, younger than backup_min_interval (1h)'


def test_domains_keep_their_order_and_each_its_own_chains():
    entries = plan(repo(a=[chain('ca', DAY)], b=[chain('cb', DAY, 60)]), domains=('b', 'a', 'c'), full_every=2)
    assert [(e['domain'], e['chain'], e['level']) for e in entries] == [('b', 'cb', 'full'), ('a', 'ca', 'auto'),
                                                                        ('c', None, 'auto')]
