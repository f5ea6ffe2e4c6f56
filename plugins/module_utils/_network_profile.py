# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Private to the virtops.libvirt collection: may change without notice.
"""The NETWORK profile: how a virtual network's XML is compared (xml/_compare.py), and the
canonical forms libvirt writes MAC and IP addresses in (network filters use them too)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ipaddress

from ansible_collections.virtops.libvirt.plugins.module_utils.xml._profile import Profile, lower


# Canonical forms libvirt writes (normalizers of the NETWORK profile and of _nwfilter_profile's).

def mac_address(value):
    """A MAC address as virMacAddrFormat writes it: lower case, two digits per byte
    (virMacAddrParse reads '0:a:b:c:d:e' as well); anything else only in lower case."""
    parts = value.strip().split(':')
    if len(parts) == 6 and all(1 <= len(p) <= 2 and all(c in '0123456789abcdefABCDEF' for c in p)
                               for p in parts):
        return ':'.join('%02x' % int(p, 16) for p in parts)
    return value.lower()


def ip_address(value):
    """An IP address in one canonical form (libvirt parses addresses and writes them with
    virSocketAddrFormat: IPv6 compressed and in lower case); anything else as it is."""
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        return value


def _forward_dev_in_pool(root):
    """<forward dev='X'> without a device pool: libvirt makes X the pool's first interface
    (virNetworkForwardDefParseXML) and writes <interface dev='X'/> back."""
    forward = root.find('forward')
    if forward is None or not forward.get('dev'):
        return
    if any(forward.find(tag) is not None for tag in ('interface', 'address', 'pf')):
        return
    forward.append(forward.makeelement('interface', {'dev': forward.get('dev')}))


NETWORK = Profile(
    'network', 'network',
    identity={
        'ip': ('@family', '@address'),
        'ip/dhcp/range': ('@start',),
        'ip/dhcp/host': ('@mac',),
        'portgroup': ('@name',),
        'route': ('@family', '@address'),
        'dns/host': ('@ip',),
        'dns/srv': ('@service', '@protocol'),
        'dns/txt': ('@name',),
        'forward/interface': ('@dev',),
        'forward/pf': ('@dev',),
    },
    owned=('ip', 'ip/dhcp/range', 'ip/dhcp/host', 'portgroup', 'route', 'dns/host', 'dns/srv',
           'dns/txt', 'forward/interface'),
    ignored=('@connections',),
    normalizers=dict(
        [('**@mac', mac_address), ('mac@address', mac_address), ('uuid', lower)] +
        # Every address libvirt parses as an IP address is written in canonical form.
        [(p, ip_address) for p in ('ip@address', 'ip@netmask', 'ip/dhcp/range@start',
                                   'ip/dhcp/range@end', 'ip/dhcp/host@ip', 'ip/dhcp/bootp@server',
                                   'dns/host@ip', 'dns/forwarder@addr', 'route@address',
                                   'route@netmask', 'route@gateway', 'forward/nat/address@start',
                                   'forward/nat/address@end')]),
    defaults={
        # virNetworkDefFormatBuf writes ipv6 and a port group's default only when 'yes'.
        '@ipv6': 'no',
        'portgroup@default': 'no',
    },
    implied=(_forward_dev_in_pool,),
)
