# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Storage pools of the corpus: tests/storagepoolxml2xmlin through virt_pool's PoolManager.

Preparation: renamed to corpus-pool-<stem>, <uuid> dropped. Defined only (state=present,
build=false), never started or built.
Edit: the target directory's permission mode (target/permissions/mode) changed; pools without a
<target> (network pools such as rbd or gluster) get no edit.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy

import corpuslib
from ansible_collections.virtops.libvirt.plugins.module_utils import _pool
from ansible_collections.virtops.libvirt.plugins.module_utils._libvirt import is_error, libvirt


def prepare(item, root):
    if root.tag != 'pool':
        return 'root element <%s>, not <pool>' % root.tag
    return corpuslib.rename_root(root, item.name)


def edit(root):
    root = copy.deepcopy(root)
    target = root.find('target')
    if target is None:
        return None
    perms = target.find('permissions')
    if perms is None:
        perms = target.makeelement('permissions')
        target.append(perms)
    mode = perms.find('mode')
    if mode is None:
        mode = perms.makeelement('mode')
        perms.insert(0, mode)
    mode.text = '0711' if (mode.text or '').strip() != '0711' else '0750'
    return root


def lookup(conn, name):
    try:
        return conn.storagePoolLookupByName(name)
    except libvirt.libvirtError as exc:
        if is_error(exc, 'VIR_ERR_NO_STORAGE_POOL'):
            return None
        raise


def remove(conn, pool):
    if pool.isActive():
        pool.destroy()
    if pool.isPersistent():
        pool.undefine()


def list_names(conn):
    return [p.name() for p in conn.listAllStoragePools(0)]


KIND = corpuslib.Kind(
    'pool', ['storagepoolxml2xmlin'], _pool.PoolManager, _pool.POOL_ARGS,
    prepare=prepare, edit=edit, lookup=lookup, remove=remove, list_names=list_names,
    live_xml=_pool.pool_inactive_xml)
