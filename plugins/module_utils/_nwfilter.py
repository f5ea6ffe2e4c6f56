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
    VirtError,
    call_with_flags,
    libvirt,
    libvirt_call,
    lookup_or_none,
    optional_flag as _flag,
)
from ansible_collections.virtops.libvirt.plugins.module_utils._errors import (
    REASON_DEFINE_REFUSED,
    REASON_INVALID_XML,
    REASON_NAME_MISMATCH,
)
from ansible_collections.virtops.libvirt.plugins.module_utils._lifecycle import DefinedObjectManager, Plan, read_each
from ansible_collections.virtops.libvirt.plugins.module_utils._nwfilter_profile import NWFILTER
from ansible_collections.virtops.libvirt.plugins.module_utils.xml import _compare, _document, _view


NWFILTER_ARGS = dict(
    name=dict(type='str'),
    xml=dict(type='str'),
    state=dict(type='str', default='present', choices=['present', 'absent']),
)

NWFILTER_INFO_ARGS = dict(
    name=dict(type='str'),
)


def lookup_nwfilter(connection, name):
    """The filter called name, or None when there is none."""
    return lookup_or_none(lambda: connection.conn.nwfilterLookupByName(name), ('VIR_ERR_NO_NWFILTER',),
                          'looking up', 'network filter %s' % name)


def filter_xml(nwf):
    with libvirt_call('reading the XML', 'network filter %s' % nwf.name()):
        return nwf.XMLDesc(0)


def nwfilter_result(nwf):
    """What virt_nwfilter returns about a filter: name, uuid, chain, priority, xml."""
    if nwf is None:
        return {}
    xml = filter_xml(nwf)
    root = _document.parse(xml, 'the XML of network filter %s' % nwf.name())
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
        self.root = _document.parse(xml, 'the network filter XML')
        if self.root.tag != 'filter':
            raise VirtError('the network filter XML has root element <%s>, expected <filter>'
                            % self.root.tag, reason=REASON_INVALID_XML)
        self.name = (self.root.get('name') or '').strip() or None
        if self.name is None and name is None:
            raise VirtError('the network filter XML has no name attribute and no name was given',
                            reason=REASON_INVALID_XML)
        if name is not None and self.name is not None and name != self.name:
            raise VirtError('name %s differs from the XML\'s <filter name=\'%s\'>; they must '
                            'agree (leave out name, or fix one of them)' % (name, self.name),
                            obj=name, reason=REASON_NAME_MISMATCH)
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
        return _document.render(root)


def _references(root):
    return [ref.get('filter') for ref in root.findall('filterref') if ref.get('filter')]


def reference_loop(name, root, references_of):
    """True when the filter references of root (the filter called name) lead back to name
    (virNWFilterObjListDefLoopDetect). references_of(other name): the references of an
    existing filter, or None when there is no such filter."""
    pending, seen = _references(root), set()
    while pending:
        ref = pending.pop()
        if ref == name:
            return True
        if ref in seen:
            continue
        seen.add(ref)
        pending.extend(references_of(ref) or [])
    return False


def define_refusal(connection, desired):
    """What the filter list would refuse beyond the schema, foreseen by reading the other
    filters (virNWFilterObjListAssignDef): its uuid taken by a filter of another name, or a
    chain of filter references that leads back to the filter itself. None when neither.

    Not foreseen: the parser's value checks the schema does not make (a port above 65535, a
    chain name with an unknown prefix), and the rebuild of the rules of running domains that
    use the filter, which can fail on the host's firewall (the define is then undone)."""
    conn = connection.conn
    if desired.uuid:
        try:
            other = conn.nwfilterLookupByUUIDString(desired.uuid)
        except libvirt.libvirtError:
            other = None
        if other is not None and other.name() != desired.name:
            return ("filter with same UUID but different name ('%s') already exists"
                    % other.name())

    def references_of(name):
        nwf = lookup_nwfilter(connection, name)
        return _references(_document.parse(filter_xml(nwf))) if nwf is not None else None

    if reference_loop(desired.name, desired.root, references_of):
        return 'filter would introduce a loop'
    return None


class NwfilterManager(DefinedObjectManager):
    """virt_nwfilter: compare the desired filter with the live one, then define or undefine
    (unless check mode). params: the module's parameters (NWFILTER_ARGS).

    A filter has no run state, so the plan is at most one step (define or undefine), and diff
    mode shows the normalised XML alone."""

    kind = 'network filter'
    argument_spec = NWFILTER_ARGS
    desired_type = DesiredFilter

    def find(self, name):
        return lookup_nwfilter(self.connection, name)

    def _plan(self, before_xml='', after_xml=''):
        plan = Plan()
        plan.diff = _view.diff_view(self.obj, before_xml, after_xml)
        return plan

    def plan_absent(self, live):
        if live is None:
            return self._plan()
        return self._plan(_compare.normalized(filter_xml(live), NWFILTER)).add(
            'undefine', self.call_step('undefining', lambda nwf: nwf.undefine(), gone=True))

    def plan_present(self, live):
        desired = self.desired
        if desired is None:
            return self._plan()  # an existing filter, named only: nothing to compare
        self.check_uuid(live, 'filter')
        stored = filter_xml(live) if live is not None else None
        intent = _compare.compare(desired.root, stored, NWFILTER)
        plan = self._plan(intent.before if intent.changed else intent.after, intent.after)
        if not intent.changed:
            return plan
        if self.check_mode:
            # What a real define would refuse, foreseen without defining.
            _document.check_schema(self.connection.uri, desired.root, 'nwfilter.rng', 'network filter',
                                   desired.name)
            refusal = define_refusal(self.connection, desired)
            if refusal:
                raise VirtError('defining on %s would fail: %s (check mode; nothing was '
                                'changed)' % (self.obj, refusal), action='defining',
                                obj=desired.name, libvirt_message=refusal,
                                reason=REASON_DEFINE_REFUSED)
        return plan.add('define', self._define)

    # -- steps ------------------------------------------------------------------------------

    def _define(self, nwf):
        xml = self.desired.xml_for_define(nwf.UUIDString() if nwf else None)
        return call_with_flags('defining', self.obj,
                               lambda: self.conn.nwfilterDefineXMLFlags(xml, _flag('VIR_NWFILTER_DEFINE_VALIDATE')),
                               lambda: self.conn.nwfilterDefineXML(xml), suffix=' (nothing was changed)')

    # -- after the steps, and the result -------------------------------------------------------

    def after_apply(self, live, plan):
        """After a define: anything libvirt did not keep would cause a change on every run."""
        if self.wants_absent():
            return live
        self.warn_not_kept(_compare.compare(self.desired.root, filter_xml(live), NWFILTER))
        return live

    def result_fields(self, live, plan):
        # After state=absent the filter is gone, or would be in check mode.
        return dict(nwfilter=nwfilter_result(None if self.wants_absent() else live), actions=list(self.actions))


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
    root = _document.parse(facts['xml'], 'the XML of network filter %s' % nwf.name())
    facts['rules'] = [rule_facts(r) for r in root.findall('rule')]
    facts['filterrefs'] = [f.get('filter') for f in root.findall('filterref')]
    return facts


def nwfilters_info(connection, name=None):
    """virt_nwfilter_info: one filter (by name; [] when missing) or all, sorted by name."""
    return read_each(name, lambda n: lookup_nwfilter(connection, n), lambda: connection.conn.listAllNWFilters(0),
                     'listing network filters', connection.uri, nwfilter_facts, 'VIR_ERR_NO_NWFILTER')


def read_nwfilters(connection, params, warn):
    """virt_nwfilter_info's result."""
    return dict(nwfilters=nwfilters_info(connection, name=params['name']))
