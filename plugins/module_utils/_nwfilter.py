# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Private to the virtops.libvirt collection: may change without notice.
"""Network filters (nwfilter): desired definition compared with the live one, then applied.

Used by virt_nwfilter and virt_nwfilter_info. Every helper raises VirtError; nothing here exits.
A filter has no run state: libvirt applies a new definition to the running domains that use it.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy

from ansible_collections.virtops.libvirt.plugins.module_utils._libvirt import (
    ObjectManager,
    VirtError,
    call_with_flags,
    is_error,
    libvirt,
    libvirt_call,
    optional_flag as _flag,
    translate,
)
from ansible_collections.virtops.libvirt.plugins.module_utils import _xmldiff


NWFILTER_ARGS = dict(
    name=dict(type='str'),
    xml=dict(type='str'),
    state=dict(type='str', default='present', choices=['present', 'absent']),
)

NWFILTER_INFO_ARGS = dict(
    name=dict(type='str'),
)


# The profile of the shared intent-diff engine for <filter>. Rules and filter references are
# ordered lists the user owns: matched by position, one left out is a removal.
NWFILTER = _xmldiff.Profile(
    'network filter', 'filter',
    identity={'rule': (), 'filterref': (), 'rule/*': (), 'filterref/parameter': ('@name',)},
    owned=('rule', 'filterref', 'rule/*', 'filterref/parameter'),
    normalizers={'**@srcmacaddr': _xmldiff.lower, '**@dstmacaddr': _xmldiff.lower,
                 '**@srcmacmask': _xmldiff.lower, '**@dstmacmask': _xmldiff.lower,
                 'uuid': _xmldiff.lower},
)


def lookup_nwfilter(connection, name):
    """The filter called name, or None when there is none."""
    try:
        return connection.conn.nwfilterLookupByName(name)
    except libvirt.libvirtError as exc:
        if is_error(exc, 'VIR_ERR_NO_NWFILTER'):
            return None
        raise translate(exc, 'looking up', 'network filter %s' % name)


def filter_xml(nwf):
    with libvirt_call('reading the XML', 'network filter %s' % nwf.name()):
        return nwf.XMLDesc(0)


def nwfilter_result(nwf):
    """What virt_nwfilter returns about a filter: name, uuid, chain, priority, xml."""
    if nwf is None:
        return {}
    xml = filter_xml(nwf)
    root = _xmldiff.parse(xml, 'the XML of network filter %s' % nwf.name())
    priority = root.get('priority')
    return dict(
        name=nwf.name(),
        uuid=nwf.UUIDString(),
        chain=root.get('chain'),
        priority=int(priority) if priority and priority.lstrip('-').isdigit() else None,
        xml=xml,
    )


class DesiredFilter:
    """The user's filter XML, parsed and checked against the name given."""

    def __init__(self, xml, name=None):
        self.root = _xmldiff.parse(xml, 'the network filter XML')
        if self.root.tag != 'filter':
            raise VirtError('the network filter XML has root element <%s>, expected <filter>'
                            % self.root.tag, reason='invalid XML')
        self.name = (self.root.get('name') or '').strip() or None
        if self.name is None and name is None:
            raise VirtError('the network filter XML has no name attribute and no name was given',
                            reason='invalid XML')
        if name is not None and self.name is not None and name != self.name:
            raise VirtError('name %s differs from the XML\'s <filter name=\'%s\'>; they must '
                            'agree (leave out name, or fix one of them)' % (name, self.name),
                            obj=name, reason='name mismatch')
        if self.name is None:
            self.root.set('name', name)
            self.name = name
        self.uuid = (self.root.findtext('uuid') or '').strip().lower() or None

    def xml_for_define(self, uuid=None):
        """The XML to define; with the existing filter's uuid when the user wrote none."""
        root = self.root
        if uuid is not None and self.uuid is None:
            root = copy.deepcopy(self.root)
            elem = root.makeelement('uuid')
            elem.text = uuid
            root.insert(0, elem)
        return _xmldiff.render(root)


class NwfilterManager(ObjectManager):
    """Compare the desired filter with the live one, then define or undefine (unless check
    mode). params: the module's parameters (NWFILTER_ARGS). run() returns the result dict."""

    def __init__(self, connection, params, check_mode=False, diff_mode=False, warn=None):
        ObjectManager.__init__(self, connection, params, check_mode, diff_mode, warn)
        self.actions = []

    def run(self):
        p = self.params
        desired = DesiredFilter(p['xml'], p.get('name')) if p.get('xml') else None
        name = desired.name if desired is not None else p.get('name')
        if not name:
            raise VirtError('give name or xml to say which network filter')
        self.obj = 'network filter %s' % name
        nwf = lookup_nwfilter(self.connection, name)
        if p['state'] == 'absent':
            return self.absent(nwf)
        if desired is None:
            if nwf is None:
                raise VirtError('%s does not exist on %s; give xml to define it'
                                % (self.obj, self.connection.uri), obj=name)
            return self.result(False, nwf, self.diff('', ''))
        return self.present(nwf, desired)

    def absent(self, nwf):
        if nwf is None:
            return self.result(False, None, self.diff('', ''))
        before = _xmldiff.normalized(filter_xml(nwf), NWFILTER)
        self.actions.append('undefine')
        if not self.check_mode:
            with libvirt_call('undefining', self.obj):
                nwf.undefine()
        return self.result(True, None, self.diff(before, ''))

    def present(self, nwf, desired):
        if nwf is not None and desired.uuid and desired.uuid != nwf.UUIDString().lower():
            raise VirtError('%s exists with uuid %s; the XML asks for uuid %s and libvirt cannot '
                            'change a filter\'s uuid (nothing was changed)'
                            % (self.obj, nwf.UUIDString(), desired.uuid), obj=desired.name,
                            reason='uuid mismatch')
        live = filter_xml(nwf) if nwf is not None else None
        intent = _xmldiff.compare(desired.root, live, NWFILTER)
        if intent.changed:
            self.actions.append('define')
            if self.check_mode:
                _xmldiff.check_schema(self.connection.uri, desired.root, 'nwfilter.rng', 'network filter',
                                      desired.name)
            else:
                nwf = self.define(desired.xml_for_define(nwf.UUIDString() if nwf else None))
                kept = _xmldiff.compare(desired.root, filter_xml(nwf), NWFILTER)
                if kept.changed:
                    self.warn('%s: libvirt did not keep all of the XML as written (%s); the next '
                              'run will report a change again'
                              % (self.obj, '; '.join(kept.summary())))
        before = intent.before if intent.changed else intent.after
        return self.result(intent.changed, nwf, self.diff(before, intent.after))

    def define(self, xml):
        return call_with_flags('defining', self.obj,
                               lambda: self.conn.nwfilterDefineXMLFlags(xml, _flag('VIR_NWFILTER_DEFINE_VALIDATE')),
                               lambda: self.conn.nwfilterDefineXML(xml), suffix=' (nothing was changed)')

    def diff(self, before, after):
        if not self.diff_mode:
            return None
        return _xmldiff.diff_view(self.obj, before, after)

    def result(self, changed, nwf, diff):
        res = dict(changed=changed, nwfilter=nwfilter_result(nwf), actions=self.actions)
        if diff is not None:
            res['diff'] = diff
        return res


# ---------------------------------------------------------------------------------------------
# virt_nwfilter_info

def rule_facts(rule):
    protocols = [c for c in rule if isinstance(c.tag, str)]
    priority = rule.get('priority')
    return dict(
        action=rule.get('action'),
        direction=rule.get('direction'),
        priority=int(priority) if priority and priority.lstrip('-').isdigit() else None,
        protocol=protocols[0].tag if protocols else None,
    )


def nwfilter_facts(nwf):
    facts = nwfilter_result(nwf)
    root = _xmldiff.parse(facts['xml'], 'the XML of network filter %s' % nwf.name())
    facts['rules'] = [rule_facts(r) for r in root.findall('rule')]
    facts['filterrefs'] = [f.get('filter') for f in root.findall('filterref')]
    return facts


def nwfilters_info(connection, name=None):
    """virt_nwfilter_info: one filter (by name; [] when missing) or all, sorted by name."""
    if name:
        nwf = lookup_nwfilter(connection, name)
        filters = [nwf] if nwf is not None else []
    else:
        with libvirt_call('listing network filters', connection.uri):
            filters = connection.conn.listAllNWFilters(0)
    result = []
    for nwf in sorted(filters, key=lambda f: f.name()):
        try:
            result.append(nwfilter_facts(nwf))
        except VirtError as exc:
            if exc.code == _flag('VIR_ERR_NO_NWFILTER'):
                continue
            raise
    return result
