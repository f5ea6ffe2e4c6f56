# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A task that stores a new definition and then fails to start the object (on qemu:///system:
a network whose bridge cannot be created, a pool whose directory is missing) changed the host:
its failure says what was done and reports changed (issue 15, user XML). test:///default starts
anything, so the start is made to fail at libvirt's API."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import itertools

import pytest

libvirt = pytest.importorskip('libvirt')
pytest.importorskip('lxml')

from ansible_collections.virtops.libvirt.plugins.module_utils import _network, _pool  # noqa: E402
from ansible_collections.virtops.libvirt.plugins.module_utils._libvirt import VirtError  # noqa: E402

_counter = itertools.count()


def refuse(*args, **kwargs):
    raise libvirt.libvirtError('start refused for the test')


@pytest.fixture
def name(conn):
    value = 'ut-partly-%d' % next(_counter)
    yield value
    for lookup in (conn.conn.networkLookupByName, conn.conn.storagePoolLookupByName):
        try:
            obj = lookup(value)
        except libvirt.libvirtError:
            continue
        if obj.isActive():
            obj.destroy()
        obj.undefine()


def test_network_defined_then_start_refused(conn, name, monkeypatch):
    monkeypatch.setattr(libvirt.virNetwork, 'create', refuse)
    xml = "<network><name>%s</name><bridge name='utp%d'/></network>" % (name, next(_counter))
    params = dict(name=None, xml=xml, state='active', autostart=None, restart_on_change=False)
    with pytest.raises(VirtError) as failure:
        _network.NetworkManager(conn, params, check_mode=False, diff_mode=False,
                                warn=lambda m: None).run()
    result = failure.value.result()
    assert result['changed'] is True and result['actions'] == ['define']
    assert 'already done: define' in result['msg']
    assert conn.conn.networkLookupByName(name).isPersistent()


def test_pool_defined_then_start_refused(conn, name, monkeypatch):
    monkeypatch.setattr(libvirt.virStoragePool, 'create', refuse)
    xml = "<pool type='dir'><name>%s</name><target><path>/%s</path></target></pool>" % (name, name)
    params = dict(name=None, xml=xml, state='active', autostart=None, build=False, refresh=False,
                  restart_on_change=False)
    with pytest.raises(VirtError) as failure:
        _pool.PoolManager(conn, params, check_mode=False, diff_mode=False,
                          warn=lambda m: None).run()
    result = failure.value.result()
    assert result['changed'] is True and result['actions'] == ['define']
    assert conn.conn.storagePoolLookupByName(name).isPersistent()


def test_a_first_step_refused_changes_nothing(conn, name, monkeypatch):
    """Nothing done before the failure: changed stays false."""
    xml = "<network><name>%s</name><bridge name='utq%d'/></network>" % (name, next(_counter))
    params = dict(name=None, xml=xml, state='present', autostart=None, restart_on_change=False)
    monkeypatch.setattr(conn.conn, 'networkDefineXMLFlags', refuse, raising=False)
    monkeypatch.setattr(conn.conn, 'networkDefineXML', refuse)
    with pytest.raises(VirtError) as failure:
        _network.NetworkManager(conn, params, check_mode=False, diff_mode=False,
                                warn=lambda m: None).run()
    assert 'changed' not in failure.value.result()
