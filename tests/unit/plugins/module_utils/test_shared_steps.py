# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the managers share instead of writing it each: ObjectManager.call_step, plan_autostart
and warn_not_kept, DefinedObjectManager (identify, lookup, check_uuid) and
_libvirt.lookup_or_none, on networks of libvirt's test driver."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import itertools

import pytest

libvirt = pytest.importorskip('libvirt')
pytest.importorskip('lxml')

from ansible_collections.virtops.libvirt.plugins.module_utils._errors import REASON_UUID_MISMATCH  # noqa: E402
from ansible_collections.virtops.libvirt.plugins.module_utils._libvirt import VirtError, lookup_or_none  # noqa: E402
from ansible_collections.virtops.libvirt.plugins.module_utils._lifecycle import (  # noqa: E402
    DefinedObjectManager,
    ObjectManager,
    Plan,
)
from ansible_collections.virtops.libvirt.plugins.module_utils._network import (  # noqa: E402
    DesiredNetwork,
    lookup_network,
)

_names = itertools.count()

NETWORK_XML = "<network><name>%s</name><bridge name='vbr-ss%d'/></network>"


class Probe(ObjectManager):
    """An ObjectManager whose name and object label are set as run() sets them."""

    kind = 'network'

    def __init__(self, conn, params=None, warnings=None):
        ObjectManager.__init__(self, conn, params or {}, warn=(warnings if warnings is not None else []).append)
        self.name = 'probe'
        self.obj = self.label()


class Networks(DefinedObjectManager):
    kind = 'network'
    desired_type = DesiredNetwork

    def find(self, name):
        return lookup_network(self.connection, name)


@pytest.fixture
def network(conn):
    number = next(_names)
    net = conn.conn.networkDefineXML(NETWORK_XML % ('ut-shared-%d' % number, number))
    yield net
    if net.isActive():
        net.destroy()
    net.undefine()


def test_call_step_returns_live_or_none_once_gone(conn, network):
    probe = Probe(conn)
    assert probe.call_step('starting', lambda net: net.create())(network) is network
    assert network.isActive()
    assert probe.call_step('stopping', lambda net: net.destroy(), gone=True)(network) is None
    assert not network.isActive()


def test_call_step_names_the_action_and_object(conn, network):
    step = Probe(conn).call_step('starting', lambda net: net.create())
    step(network)
    with pytest.raises(VirtError) as err:
        step(network)  # running already: libvirt refuses
    assert err.value.msg.startswith('starting on network probe failed: ')


def test_plan_autostart(conn, network):
    plan = Plan()
    assert Probe(conn, dict(autostart=None)).plan_autostart(plan, False) is False
    assert Probe(conn, dict(autostart=False)).plan_autostart(plan, False) is False
    assert plan.names == []
    probe = Probe(conn, dict(autostart=True))
    assert probe.plan_autostart(plan, False) is True
    assert plan.names == ['autostart']
    plan.steps[0].run(network)
    assert network.autostart()
    assert Probe(conn, dict(autostart=False)).plan_autostart(plan, True) is False
    assert plan.names == ['autostart', 'no autostart']


def test_warn_not_kept(conn):
    class Intent:
        changed = True

        @staticmethod
        def summary():
            return ['bridge/@stp: yes -> no']

    warnings = []
    Probe(conn, warnings=warnings).warn_not_kept(Intent)
    assert warnings == ['network probe: libvirt did not keep all of the XML as written '
                        '(bridge/@stp: yes -> no); the next run will report a change again']
    Intent.changed = False
    Probe(conn, warnings=warnings).warn_not_kept(Intent)
    assert len(warnings) == 1


def test_lookup_or_none(conn, network):
    find = conn.conn.networkLookupByName
    assert lookup_or_none(lambda: find(network.name()), ('VIR_ERR_NO_NETWORK',), 'looking up').name() == network.name()
    assert lookup_or_none(lambda: find('ut-shared-none'), ('VIR_ERR_NO_NETWORK',), 'looking up') is None
    with pytest.raises(VirtError) as err:
        lookup_or_none(lambda: find('ut-shared-none'), ('VIR_ERR_NO_DOMAIN',), 'looking up', 'network x')
    assert err.value.msg.startswith('looking up on network x failed: ')


def test_defined_object_identify_and_lookup(conn, network):
    manager = Networks(conn, dict(name=None, xml=NETWORK_XML % (network.name(), 99), state='present'))
    assert manager.identify() == network.name()
    manager.name, manager.obj = network.name(), 'network %s' % network.name()
    assert manager.lookup().name() == network.name()
    with pytest.raises(VirtError) as err:
        Networks(conn, dict(name=None, xml=None, state='present')).identify()
    assert err.value.msg == 'give name or xml to say which network'
    missing = Networks(conn, dict(name='ut-shared-none', xml=None, state='present'))
    missing.name, missing.obj = 'ut-shared-none', 'network ut-shared-none'
    with pytest.raises(VirtError) as err:
        missing.lookup()
    assert err.value.msg == 'network ut-shared-none does not exist on test:///default; give xml to define it'
    missing.params['state'] = 'absent'
    assert missing.lookup() is None


def test_check_uuid(conn, network):
    other = '6ad3a4b6-1b0a-4e4c-8f63-4d3a2b1c0d9e'
    xml = "<network><name>%s</name><uuid>%s</uuid></network>" % (network.name(), other)
    manager = Networks(conn, dict(name=None, xml=xml, state='present'))
    manager.name = manager.identify()
    manager.obj = manager.label()
    manager.check_uuid(None, 'network')  # nothing there yet: any uuid will do
    with pytest.raises(VirtError) as err:
        manager.check_uuid(network, 'network')
    assert err.value.details['reason'] == REASON_UUID_MISMATCH
    assert err.value.msg == ("network %s exists with uuid %s; the XML asks for uuid %s and libvirt cannot change a "
                             "network's uuid (nothing was changed)" % (network.name(), network.UUIDString(), other))
