# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Private to the virtops.libvirt collection: may change without notice.
"""The NWFILTER profile: how a network filter's XML is compared (xml/_compare.py), with the
canonical form libvirt writes every rule attribute in."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ipaddress
import re

from ansible_collections.virtops.libvirt.plugins.module_utils._network_profile import ip_address, mac_address
from ansible_collections.virtops.libvirt.plugins.module_utils.xml._profile import Profile, lower


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
NWFILTER = Profile(
    'network filter', 'filter',
    identity={'rule': (), 'filterref': (), 'rule/*': (), 'filterref/parameter': ('@name',)},
    owned=('rule', 'filterref', 'rule/*', 'filterref/parameter'),
    normalizers=dict(
        [('uuid', lower),
         # MAC addresses and masks: virMacAddrFormat (lower case, two digits per byte).
         ] + [('rule/*@' + a, _typed(mac_address)) for a in MAC_ATTRIBUTES] +
        # IPv4 and IPv6 addresses: virSocketAddrFormat.
        [('rule/*@' + a, _typed(ip_address)) for a in IP_ATTRIBUTES] +
        # Masks: prefix lengths ("display all masks in CIDR format").
        [('rule/*@' + a, _typed(mask)) for a in MASK_ATTRIBUTES] +
        # Numbers: '%d' or '0x%x' by the type the value was parsed as.
        [('rule/*@' + a, _typed(number)) for a in NUMBER_ATTRIBUTES] +
        [('rule/*@flags', _typed(flag_set)),          # TCP flags (STP: a number)
         ('rule/*@state', _typed(flag_set)),          # connection states
         ('rule/*@ipsetflags', _typed(lower)),  # 'src,dst' in the user's order
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
