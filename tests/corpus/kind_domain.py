# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Domains of the corpus: tests/qemuxml2argvdata and tests/qemuxml2xmloutdata through
virt_domain's DomainManager.

Only x86_64 domains: <os><type arch='x86_64'>, or no arch and no emulator of another
architecture (libvirt then picks the host's). A file of qemuxml2xmloutdata that is a link to one
of qemuxml2argvdata is the same object and runs once.
Preparation: renamed to corpus-domain-<stem>, <uuid> dropped, <domain type='qemu'> (TCG: the
tests run anywhere), <emulator> set to the host's x86_64 emulator (from the capabilities).
Defined only (state=present), never started.
Edit: <description> set (added after <name> when absent).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy

import corpuslib
from ansible_collections.virtops.libvirt.plugins.module_utils import _domain
from ansible_collections.virtops.libvirt.plugins.module_utils._libvirt import is_error, libvirt

_EMULATOR = []


def host_emulator():
    """The x86_64 emulator of the host's capabilities (hvm, type qemu)."""
    if not _EMULATOR:
        conn = libvirt.openReadOnly(corpuslib.URI)
        try:
            caps = corpuslib.etree.fromstring(conn.getCapabilities().encode())
        finally:
            conn.close()
        found = caps.findtext("guest[os_type='hvm']/arch[@name='x86_64']/emulator")
        _EMULATOR.append((found or '/usr/bin/qemu-system-x86_64').strip())
    return _EMULATOR[0]


def prepare(item, root):
    if root.tag != 'domain':
        return 'root element <%s>, not <domain>' % root.tag
    arch = root.find('os/type')
    arch = arch.get('arch') if arch is not None else None
    emulator = (root.findtext('devices/emulator') or '').strip()
    if arch is not None and arch != 'x86_64':
        return 'architecture %s' % arch
    if arch is None and 'qemu-system-' in emulator and not emulator.endswith('qemu-system-x86_64'):
        return 'emulator %s' % emulator
    corpuslib.rename_root(root, item.name)
    root.set('type', 'qemu')
    elem = root.find('devices/emulator')
    if elem is not None:
        elem.text = host_emulator()
    return root


def edit(root):
    root = copy.deepcopy(root)
    desc = root.find('description')
    if desc is None:
        desc = root.makeelement('description')
        name = root.find('name')
        root.insert(root.index(name) + 1 if name is not None else 0, desc)
    desc.text = 'corpus edit' if (desc.text or '') != 'corpus edit' else 'corpus edit 2'
    return root


def lookup(conn, name):
    try:
        return conn.lookupByName(name)
    except libvirt.libvirtError as exc:
        if is_error(exc, 'VIR_ERR_NO_DOMAIN'):
            return None
        raise


def remove(conn, dom):
    if dom.isActive():
        dom.destroy()
    if not dom.isPersistent():
        return
    flags = 0
    for name in ('VIR_DOMAIN_UNDEFINE_NVRAM', 'VIR_DOMAIN_UNDEFINE_MANAGED_SAVE',
                 'VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA',
                 'VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA'):
        flags |= getattr(libvirt, name, 0)
    try:
        dom.undefineFlags(flags)
    except libvirt.libvirtError:
        dom.undefine()


def list_names(conn):
    return [d.name() for d in conn.listAllDomains(0)]


def live_xml(dom):
    return _domain.inactive_xml(dom)


KIND = corpuslib.Kind(
    'domain', ['qemuxml2argvdata', 'qemuxml2xmloutdata'], _domain.DomainManager,
    _domain.DOMAIN_ARGS, prepare=prepare, edit=edit, lookup=lookup, remove=remove,
    list_names=list_names, live_xml=live_xml)
