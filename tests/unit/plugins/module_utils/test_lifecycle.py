# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The lifecycle base (_lifecycle.ObjectManager): the order every state module runs in, check
mode that plans but never applies, partly done failures, and the diff view. The manager under
test is a small subclass that manages the autostart flag and the run state of a network on
libvirt's test driver, so every step is a real libvirt call."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import itertools

import pytest

libvirt = pytest.importorskip('libvirt')
pytest.importorskip('lxml')

from ansible_collections.virtops.libvirt.plugins.module_utils._lifecycle import (  # noqa: E402
    ObjectManager,
    Plan,
)
from ansible_collections.virtops.libvirt.plugins.module_utils._libvirt import VirtError  # noqa: E402

_names = itertools.count()

NETWORK_XML = "<network><name>%s</name><bridge name='vbr-lc%d'/></network>"


class AutostartManager(ObjectManager):
    """Sets a network's autostart flag and starts it; state absent stops it. A step named
    'refused' fails, to test partly done runs."""

    kind = 'network'

    def __init__(self, *args, **kwargs):
        ObjectManager.__init__(self, *args, **kwargs)
        self.calls = []

    def check_options(self):
        self.calls.append('check_options')
        if self.params.get('autostart') not in (True, False):
            raise VirtError('autostart must be true or false', reason='invalid option')

    def identify(self):
        self.calls.append('identify')
        return self.params['name']

    def lookup(self):
        self.calls.append('lookup')
        return self.conn.networkLookupByName(self.name)

    def plan_absent(self, live):
        plan = Plan(before=dict(state='active' if live.isActive() else 'inactive'),
                    after=dict(state='inactive'))
        if live.isActive():
            plan.add('destroy', self._destroy)
        return plan

    def plan_present(self, live):
        before = bool(live.autostart())
        plan = Plan(before=dict(autostart=before), after=dict(autostart=self.params['autostart']))
        if before != self.params['autostart']:
            plan.add('autostart', self._autostart)
        if not live.isActive():
            plan.add('start', self._start)
        if self.params.get('refuse'):
            plan.add('refused', self._refused)
        return plan

    def _autostart(self, net):
        net.setAutostart(1 if self.params['autostart'] else 0)
        return net

    def _start(self, net):
        net.create()
        return net

    def _destroy(self, net):
        net.destroy()
        return net

    def _refused(self, net):
        raise VirtError('%s: refused for the test' % self.obj)

    def after_apply(self, live, plan):
        self.calls.append('after_apply')
        return live

    def result_fields(self, live, plan):
        return dict(actions=self.actions, autostart=bool(live.autostart()), active=bool(live.isActive()))


@pytest.fixture
def network(conn):
    number = next(_names)
    name = 'ut-lifecycle-%d' % number
    net = conn.conn.networkDefineXML(NETWORK_XML % (name, number))
    yield net
    if net.isActive():
        net.destroy()
    net.undefine()


def run(conn, net, check_mode=False, diff_mode=False, **params):
    params.setdefault('name', net.name())
    params.setdefault('state', 'present')
    manager = AutostartManager(conn, params, check_mode=check_mode, diff_mode=diff_mode)
    return manager, manager.run()


def test_runs_the_hooks_in_order_and_applies_the_plan(conn, network):
    manager, result = run(conn, network, autostart=True)
    assert manager.calls == ['check_options', 'identify', 'lookup', 'after_apply']
    assert result['changed'] is True
    assert result['actions'] == ['autostart', 'start']
    assert network.autostart() and network.isActive()
    assert manager.obj == 'network %s' % network.name()
    # The second identical run plans nothing, changes nothing and skips after_apply.
    manager, result = run(conn, network, autostart=True)
    assert result == dict(changed=False, actions=[], autostart=True, active=True)
    assert 'after_apply' not in manager.calls


def test_check_mode_predicts_and_changes_nothing(conn, network):
    manager, predicted = run(conn, network, check_mode=True, autostart=True)
    assert predicted['changed'] is True
    assert predicted['actions'] == ['autostart', 'start']
    assert not network.autostart() and not network.isActive()
    assert 'after_apply' not in manager.calls
    done = run(conn, network, autostart=True)[1]
    assert done['actions'] == predicted['actions']


def test_state_absent_uses_plan_absent(conn, network):
    network.create()
    result = run(conn, network, state='absent', autostart=False)[1]
    assert result['actions'] == ['destroy']
    assert not network.isActive()


def test_a_failed_step_reports_what_was_already_done(conn, network):
    with pytest.raises(VirtError) as failure:
        run(conn, network, autostart=True, refuse=True)
    result = failure.value.result()
    assert result['msg'] == ('network %s: refused for the test (already done: autostart, start)'
                             % network.name())
    assert result['changed'] is True
    assert result['actions'] == ['autostart', 'start']
    assert network.isActive()


def test_bad_options_fail_before_the_object_is_looked_up(conn, network):
    manager = AutostartManager(conn, dict(name=network.name(), state='present', autostart='maybe'))
    with pytest.raises(VirtError) as failure:
        manager.run()
    assert failure.value.details['reason'] == 'invalid option'
    assert manager.calls == ['check_options']


def test_diff_mode_shows_before_and_after(conn, network):
    result = run(conn, network, check_mode=True, diff_mode=True, autostart=True)[1]
    assert result['diff'] == dict(before_header='network %s (live)' % network.name(),
                                  after_header='network %s (desired)' % network.name(),
                                  before='# autostart: no\n', after='# autostart: yes\n')
    quiet = run(conn, network, check_mode=True, autostart=True)[1]
    assert 'diff' not in quiet
