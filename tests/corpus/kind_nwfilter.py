# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Network filters of the corpus: tests/nwfilterxml2xmlin through virt_nwfilter's NwfilterManager.

Preparation: the filter's name attribute set to corpus-nwfilter-<stem>, <uuid> dropped.
Filter references (<filterref filter='X'>): libvirt resolves them by name. A reference to a
filter that exists on the host and is not a corpus object (the filters libvirt ships, such as
clean-traffic) stays as it is. A reference to the original name of a corpus file (every file of
libvirt 9.0 is called 'testcase') is renamed to that file's corpus name (the first such file in
sorted order), so references stay consistent within the corpus. Any other reference stays and
libvirt judges it (it accepts a reference to a filter that does not exist yet).
Edit: the root's priority attribute changed (libvirt allows -1000..1000); a filter without a
chain attribute gets chain='root' (libvirt's default chain, which it writes back anyway), since
libvirt ignores the priority of a filter without a chain.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy

import corpuslib
from ansible_collections.virtops.libvirt.plugins.module_utils import _nwfilter
from ansible_collections.virtops.libvirt.plugins.module_utils._libvirt import is_error, libvirt

# original filter name -> corpus name, filled by prepare_all
_RENAMED = {}
_HOST_FILTERS = set()


def prepare_all(found):
    _RENAMED.clear()
    _HOST_FILTERS.clear()
    conn = libvirt.openReadOnly(corpuslib.URI)
    try:
        _HOST_FILTERS.update(n for n in list_names(conn) if not n.startswith(corpuslib.PREFIX))
    finally:
        conn.close()
    for item in found:
        try:
            original = corpuslib.parse_file(item.path).get('name')
        except Exception:  # pylint: disable=broad-except
            continue
        if original and original not in _HOST_FILTERS:
            _RENAMED.setdefault(original, item.name)


def prepare(item, root):
    if root.tag != 'filter':
        return 'root element <%s>, not <filter>' % root.tag
    corpuslib.rename_root(root, item.name, attr='name')
    for ref in root.iter('filterref'):
        target = ref.get('filter')
        if target in _RENAMED and target not in _HOST_FILTERS:
            ref.set('filter', _RENAMED[target])
    return root


def edit(root):
    root = copy.deepcopy(root)
    root.set('priority', '-123' if root.get('priority') != '-123' else '-124')
    if root.get('chain') is None:
        root.set('chain', 'root')
    return root


def lookup(conn, name):
    try:
        return conn.nwfilterLookupByName(name)
    except libvirt.libvirtError as exc:
        if is_error(exc, 'VIR_ERR_NO_NWFILTER'):
            return None
        raise


def remove(conn, nwf):
    nwf.undefine()


def list_names(conn):
    return [f.name() for f in conn.listAllNWFilters(0)]


KIND = corpuslib.Kind(
    'nwfilter', ['nwfilterxml2xmlin'], _nwfilter.NwfilterManager, _nwfilter.NWFILTER_ARGS,
    prepare=prepare, edit=edit, lookup=lookup, remove=remove, list_names=list_names,
    live_xml=_nwfilter.filter_xml, prepare_all=prepare_all)
