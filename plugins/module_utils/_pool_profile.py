# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Private to the virtops.libvirt collection: may change without notice.
"""The STORAGE_POOL profile: how a storage pool's XML is compared (xml/_compare.py), and the
rules libvirt applies to a pool's paths (sanitised, derived from the source name)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

from ansible_collections.virtops.libvirt.plugins.module_utils.xml._document import children, localname
from ansible_collections.virtops.libvirt.plugins.module_utils.xml._profile import Profile, lower
from ansible_collections.virtops.libvirt.plugins.module_utils.xml._units import UnitSpec


def sanitize_path(path):
    """libvirt's virFileSanitizePath: repeated slashes collapsed, no trailing slash, a
    leading '//' (valid POSIX) kept; URIs (scheme://...) are left as they are."""
    uri = path.find('://')
    if uri != -1 and path.find('/') > uri:
        return path
    prefix = ''
    if path.startswith('//') and not path.startswith('///'):
        prefix, path = '//', path[2:]
    clean = re.sub('/+', '/', path)
    if clean.endswith('/') and (prefix or len(clean) > 1):
        clean = clean[:-1]
    return prefix + clean


# Pool types whose target path libvirt derives from the source name (virStoragePoolDefParseXML).
DERIVED_POOL_TARGETS = {'logical': '/dev/', 'zfs': '/dev/zvol/'}


def pool_source_name(root):
    """The source name libvirt uses: <source><name>, else the pool's <name> (libvirt's default
    for the pool types that have one)."""
    return (root.findtext('source/name') or '') or (root.findtext('name') or '').strip()


def _derived_pool_target(root):
    """A logical pool's target path is /dev/<source name> (zfs: /dev/zvol/<source name>),
    whatever the XML says: libvirt replaces it when it parses the definition."""
    prefix = DERIVED_POOL_TARGETS.get(root.get('type'))
    if prefix is not None and root.find('target/path') is not None:
        root.find('target/path').text = prefix + pool_source_name(root)


def _permission_unset(elem):
    """An empty permission field, or <owner>/<group> -1: libvirt reads it as "not set"
    (virStorageDefParsePerms) and writes nothing for it."""
    text = (elem.text or '').strip()
    return not text or (localname(elem.tag) in ('owner', 'group') and text == '-1')


def _no_permissions(elem):
    """<permissions> with every field unset: libvirt writes no <permissions> at all."""
    return all(_permission_unset(c) for c in children(elem))


STORAGE_POOL = Profile(
    'storage pool', 'pool',
    # Hosts that share a name (ceph monitors on other ports) pair in order (libvirt keeps it).
    identity={'source/device': ('@path',), 'source/host': ('@name',)},
    owned=('source/device',),
    ignored=(
        'capacity', 'allocation', 'available',
        # Free extents of a disk pool's device: run-time data a refresh of the active pool
        # fills in; virStoragePoolDefParseSource ignores them in a definition.
        'source/device/freeExtent',
        # Unset permission fields (-1 or empty) and a <permissions> made only of them:
        # virStorageDefParsePerms reads them as unset, virStoragePoolDefFormatBuf writes none.
        ('target/permissions/*', _permission_unset),
        ('target/permissions', _no_permissions),
    ),
    units={'capacity': UnitSpec('bytes'), 'allocation': UnitSpec('bytes'),
           'available': UnitSpec('bytes')},
    normalizers={
        'uuid': lower,
        # libvirt stores both paths through virFileSanitizePath ('//a///b/' -> '/a/b').
        'target/path': sanitize_path,
        'source/dir@path': sanitize_path,
    },
    # A host port of 0 is no port: virStoragePoolSourceFormat writes none.
    defaults={'source/host@port': '0'},
    # logical, zfs: virStoragePoolDefParseXML derives the target path from the source name.
    implied=(_derived_pool_target,),
)
