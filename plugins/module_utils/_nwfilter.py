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
import ipaddress
import re

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


# ---------------------------------------------------------------------------------------------
# How libvirt stores filter rules: every attribute of a protocol element (<tcp>, <mac>, ...) is
# parsed into its data type and written back in that type's canonical form
# (virNWFilterRuleDetailsParse / virNWFilterRuleDefDetailsFormat in src/conf/nwfilter_conf.c).

def variable(value):
    """A variable reference ('$NAME', '$NAME[2]', '$NAME[@1]') as virNWFilterVarAccessPrint
    writes it: no blanks, and '[@0]' (the default iterator) left out; None if not one."""
    match = re.match(r'^\$([A-Za-z0-9_]+)\s*(?:\[\s*(@?)\s*(\d+)\s*\])?', value.strip())
    if not match:
        return None
    name, iterator, number = match.groups()
    if number is None or (iterator and int(number) == 0):
        return '$' + name
    return '$%s[%s%d]' % (name, iterator, int(number))


def _typed(canonical):
    """A normalizer: variable references as libvirt writes them, other values by canonical."""
    def normalize(value):
        return variable(value) or canonical(value)
    return normalize


def number(value):
    """A number: decimal without leading zeros, hexadecimal input as '0x%x' (libvirt keeps
    which of the two the user wrote); anything else (a protocol name) as it is."""
    text = value.strip()
    if re.match(r'^[0-9]+$', text):
        return str(int(text, 10))
    if re.match(r'^0[xX][0-9a-fA-F]+$', text):
        return '0x%x' % int(text, 16)
    return value


def mask(value):
    """An IP mask as a prefix length: libvirt turns dotted masks (255.255.255.0, ffff:ffff::)
    into the number of leading one bits and writes every mask that way."""
    text = value.strip()
    if re.match(r'^[0-9]+$', text):
        return str(int(text, 10))
    try:
        bits = bin(int(ipaddress.ip_address(text)))[2:]
    except ValueError:
        return value
    width = 32 if '.' in text and ':' not in text else 128
    bits = bits.rjust(width, '0')
    ones = len(bits) - len(bits.lstrip('1'))
    return str(ones) if '1' not in bits[ones:] else value


def flag_set(value):
    """Comma-separated flags (NEW,ESTABLISHED; SYN,ACK/ALL for TCP flags): libvirt parses them
    case-insensitively into a bit set and writes them in its own order: compared as sets."""
    if number(value) != value or re.match(r'^[0-9]+$', value.strip()):
        return number(value)
    return '/'.join(','.join(sorted(set(p.strip().upper() for p in part.split(',') if p.strip())))
                    for part in value.split('/'))


def statematch(value):
    """The rule's statematch: '0' and 'false' (any case) switch it off, anything else is on;
    libvirt writes only statematch='false'."""
    return 'false' if value.strip().lower() in ('0', 'false') else 'true'


def boolean(value):
    """DATATYPE_BOOLEAN: 'true', '1' and 'yes' are true, anything else false."""
    return 'true' if value.strip() in ('true', '1', 'yes') else 'false'


MAC_ATTRIBUTES = ('srcmacaddr', 'srcmacmask', 'dstmacaddr', 'dstmacmask', 'arpsrcmacaddr',
                  'arpdstmacaddr', 'root-address', 'root-address-mask', 'sender-address',
                  'sender-address-mask')
IP_ATTRIBUTES = ('srcipaddr', 'dstipaddr', 'srcipfrom', 'srcipto', 'dstipfrom', 'dstipto',
                 'arpsrcipaddr', 'arpdstipaddr')
MASK_ATTRIBUTES = ('srcipmask', 'dstipmask', 'arpsrcipmask', 'arpdstipmask')
NUMBER_ATTRIBUTES = (
    'srcportstart', 'srcportend', 'dstportstart', 'dstportend', 'dscp', 'type', 'typeend',
    'code', 'codeend', 'connlimit-above', 'protocol', 'protocolid', 'opcode', 'hwtype',
    'protocoltype', 'vlanid', 'encap-protocol', 'option', 'age', 'age-hi', 'root-priority',
    'root-priority-hi', 'root-cost', 'root-cost-hi', 'sender-priority', 'sender-priority-hi',
    'port', 'port-hi', 'msg-age', 'msg-age-hi', 'max-age', 'max-age-hi', 'hello-time',
    'hello-time-hi', 'forward-delay', 'forward-delay-hi')


def _priority_needs_chain(root):
    """A filter's priority without a chain attribute is checked and then ignored
    (virNWFilterDefParseXML keeps priority 0 for the default root chain): not stored."""
    if root.get('chain') is None and root.get('priority') is not None:
        del root.attrib['priority']


# The profile of the shared intent-diff engine for <filter>. Rules and filter references are
# ordered lists the user owns: matched by position, one left out is a removal.
NWFILTER = _xmldiff.Profile(
    'network filter', 'filter',
    identity={'rule': (), 'filterref': (), 'rule/*': (), 'filterref/parameter': ('@name',)},
    owned=('rule', 'filterref', 'rule/*', 'filterref/parameter'),
    normalizers=dict(
        [('uuid', _xmldiff.lower),
         # MAC addresses and masks: virMacAddrFormat (lower case, two digits per byte).
         ] + [('rule/*@' + a, _typed(_xmldiff.mac_address)) for a in MAC_ATTRIBUTES] +
        # IPv4 and IPv6 addresses: virSocketAddrFormat.
        [('rule/*@' + a, _typed(_xmldiff.ip_address)) for a in IP_ATTRIBUTES] +
        # Masks: prefix lengths ("display all masks in CIDR format").
        [('rule/*@' + a, _typed(mask)) for a in MASK_ATTRIBUTES] +
        # Numbers: '%d' or '0x%x' by the type the value was parsed as.
        [('rule/*@' + a, _typed(number)) for a in NUMBER_ATTRIBUTES] +
        [('rule/*@flags', _typed(flag_set)),          # TCP flags (STP: a number)
         ('rule/*@state', _typed(flag_set)),          # connection states
         ('rule/*@ipsetflags', _typed(_xmldiff.lower)),  # 'src,dst' in the user's order
         ('rule/*@ipset', _typed(lambda v: v)),
         ('rule/*@gratuitous', _typed(boolean)),
         ('rule@statematch', statematch),
         ('rule@priority', number), ('@priority', number)]),
    defaults={
        # libvirt writes match only as match='no', statematch only as 'false', and the
        # filter's priority only when it is not 0.
        'rule/*@match': 'yes',
        'rule@statematch': 'true',
        '@priority': '0',
    },
    implied=(_priority_needs_chain,),
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
        return _references(_xmldiff.parse(filter_xml(nwf))) if nwf is not None else None

    if reference_loop(desired.name, desired.root, references_of):
        return 'filter would introduce a loop'
    return None


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
                refusal = define_refusal(self.connection, desired)
                if refusal:
                    raise VirtError('defining on %s would fail: %s (check mode; nothing was '
                                    'changed)' % (self.obj, refusal), action='defining',
                                    obj=desired.name, libvirt_message=refusal,
                                    reason='define refused')
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
