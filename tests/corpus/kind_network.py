# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Networks of the corpus: tests/networkxml2xmlin through virt_network's NetworkManager.

Preparation: renamed to corpus-network-<stem>, <uuid> dropped. A bridge name that a network of
the host already uses (virbr0 of the 'default' network, which most files of libvirt's test data
name too) is replaced by a unique one (cbr<hash>): libvirt refuses a second network on the same
bridge, and the file would test nothing else. Defined only (state=present), never started.
Edit: the root's trustGuestRxFilters attribute flipped (set to yes when absent): valid for every
forward mode, and not one of the parts virNetworkUpdate changes, so the edit goes through a
redefine.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy
import hashlib

import corpuslib
from ansible_collections.virtops.libvirt.plugins.module_utils import _network
from ansible_collections.virtops.libvirt.plugins.module_utils._libvirt import is_error, libvirt


# bridge names of the host's own networks, filled by prepare_all
_HOST_BRIDGES = set()


def prepare_all(found):
    _HOST_BRIDGES.clear()
    conn = libvirt.openReadOnly(corpuslib.URI)
    try:
        for net in conn.listAllNetworks(0):
            if net.name().startswith(corpuslib.PREFIX):
                continue
            for flags in (0, libvirt.VIR_NETWORK_XML_INACTIVE):
                bridge = corpuslib.etree.fromstring(net.XMLDesc(flags).encode()).find('bridge')
                if bridge is not None and bridge.get('name'):
                    _HOST_BRIDGES.add(bridge.get('name'))
    finally:
        conn.close()


def prepare(item, root):
    if root.tag != 'network':
        return 'root element <%s>, not <network>' % root.tag
    bridge = root.find('bridge')
    if bridge is not None and bridge.get('name') in _HOST_BRIDGES:
        bridge.set('name', 'cbr' + hashlib.sha1(item.name.encode()).hexdigest()[:8])
    return corpuslib.rename_root(root, item.name)


def edit(root):
    root = copy.deepcopy(root)
    root.set('trustGuestRxFilters', 'no' if root.get('trustGuestRxFilters') == 'yes' else 'yes')
    return root


def lookup(conn, name):
    try:
        return conn.networkLookupByName(name)
    except libvirt.libvirtError as exc:
        if is_error(exc, 'VIR_ERR_NO_NETWORK'):
            return None
        raise


def remove(conn, net):
    if net.isActive():
        net.destroy()
    if net.isPersistent():
        net.undefine()


def list_names(conn):
    return [n.name() for n in conn.listAllNetworks(0)]


KIND = corpuslib.Kind(
    'network', ['networkxml2xmlin'], _network.NetworkManager, _network.NETWORK_ARGS,
    prepare=prepare, edit=edit, lookup=lookup, remove=remove, list_names=list_names,
    live_xml=_network.inactive_xml, prepare_all=prepare_all)
