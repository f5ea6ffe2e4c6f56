# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Private to the virtops.libvirt collection: may change without notice.
"""Domains of libvirt hosts as inventory records: what the inventory plugin virtops.libvirt.libvirt
reads from each URI (plain, JSON-serialisable dicts, so they can be cached), the tags of the
collection's metadata namespace, and the choice of one address to reach a domain at.
The records hold what guests and domain editors wrote; the plugin marks them unsafe (templates
stay text), not this file: module_utils cannot import ansible.utils, and the cache wants plain data.
Raises VirtError; never exits."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ipaddress

from ansible.module_utils.six.moves.urllib.parse import urlparse

from ansible_collections.virtops.libvirt.plugins.module_utils._libvirt import (
    Connection,
    VirtError,
    libvirt_call,
    optional_flag as _flag,
)
from ansible_collections.virtops.libvirt.plugins.module_utils import _domain
from ansible_collections.virtops.libvirt.plugins.module_utils.xml import _document
from ansible_collections.virtops.libvirt.plugins.module_utils._vocabulary import STATE_NAMES


# Domain metadata of this collection: <metadata><vo:tags xmlns:vo="TAGS_NS"><vo:tag>web</vo:tag>
# </vo:tags></metadata>. Versioned, so a later layout can live next to this one.
TAGS_NS = 'https://virtops.example/libvirt/tags/1'

ADDRESS_SOURCES = ('lease', 'agent', 'arp')


def hypervisor_name(uri, conn):
    """The host part of the URI as the user wrote it (qemu+ssh://root@hv1/system gives hv1);
    for a local URI the daemon's host name."""
    host = urlparse(uri).hostname
    if host:
        return host
    with libvirt_call('reading the host name', uri):
        return conn.getHostname()


def _text(root, path):
    elem = root.find(path)
    if elem is None or elem.text is None:
        return None
    return elem.text.strip() or None


def tags_of(root):
    """The tags of the collection's metadata namespace, in document order, without repeats."""
    tags = []
    for elem in root.findall('metadata/{%s}tags/{%s}tag' % (TAGS_NS, TAGS_NS)):
        tag = (elem.text or '').strip()
        if tag and tag not in tags:
            tags.append(tag)
    return tags


def _mib(elem):
    kib = _domain._kib(elem)
    return kib // 1024 if kib is not None else None


def usable_address(text, networks=None, family='any'):
    """An ipaddress object when text is an address one can connect to (not loopback, link-local,
    multicast or unspecified), of the family asked, inside one of networks (when given)."""
    try:
        addr = ipaddress.ip_address(u'%s' % text)
    except ValueError:
        return None
    if addr.is_loopback or addr.is_link_local or addr.is_multicast or addr.is_unspecified:
        return None
    if family == 'ipv4' and addr.version != 4 or family == 'ipv6' and addr.version != 6:
        return None
    if networks and not any(addr.version == net.version and addr in net for net in networks):
        return None
    return addr


def parse_networks(cidrs):
    """ip_network objects of the user's CIDR list; VirtError naming a bad entry."""
    nets = []
    for cidr in cidrs or []:
        try:
            nets.append(ipaddress.ip_network(u'%s' % cidr, strict=False))
        except ValueError as exc:
            raise VirtError('address_networks: %s is not a network in CIDR notation: %s' % (cidr, exc))
    return nets


def read_addresses(dom, interfaces, sources, networks=None, family='any', note=None):
    """Ask the address sources in order; add what each says to the interfaces' 'addresses' and
    return the address to reach the domain at, or None.

    IPv4 wins over IPv6 (family 'any'); the first source that gives an IPv4 address (or, for
    'ipv6', an IPv6 one) ends the search, so later, slower sources (the guest agent) are asked
    only when needed."""
    note = note or (lambda msg: None)
    by_mac = dict((i['mac'], i) for i in interfaces if i.get('mac'))
    fallback = None
    for source in sources:
        found = _domain.interface_addresses(dom, source, note)
        best = None
        for iface in interfaces:
            for addr in found.get(iface.get('mac') or '', []):
                entry = dict(address=addr['address'], prefix=addr['prefix'], type=addr['type'], source=source)
                iface.setdefault('addresses', []).append(entry)
                ip = usable_address(addr['address'], networks, family)
                if ip is None:
                    continue
                if ip.version == 4 or family == 'ipv6':
                    best = best or str(ip)
                else:
                    fallback = fallback or str(ip)
        # Addresses of guest interfaces with a MAC libvirt does not know (the agent reports
        # bonds and bridges inside the guest) belong to no libvirt interface: noted at -vvv only.
        for mac, addrs in found.items():
            if mac not in by_mac:
                shown = ', '.join(a['address'] for a in addrs)
                guest_if = addrs[0]['interface'] if addrs else mac
                note('domain %s: the %s source reports %s on guest interface %s, which has no '
                     'libvirt interface' % (dom.name(), source, shown, guest_if))
        if best:
            return best
    return fallback


def domain_record(dom, uri, hypervisor, sources=(), networks=None, family='any', note=None):
    """One domain as an inventory record (a plain dict)."""
    name = dom.name()
    xml = _domain.live_xml(dom)
    root = _document.parse(xml, 'the XML of domain %s' % name)
    with libvirt_call('reading the state', 'domain %s on %s' % (name, uri)):
        state = STATE_NAMES.get(dom.state()[0], 'unknown')
        active = bool(dom.isActive())
        persistent = bool(dom.isPersistent())
        autostart = bool(dom.autostart()) if persistent else False
        dom_id = dom.ID() if active else None
    vcpu = root.find('vcpu')
    vcpus = None
    if vcpu is not None:
        vcpus = _domain._int(vcpu.get('current'), _domain._int(vcpu.text))
    os_type = root.find('os/type')
    interfaces = [_domain.interface_facts(i) for i in root.findall('devices/interface')]
    for iface in interfaces:
        iface['addresses'] = []
    address = None
    if active and sources:
        address = read_addresses(dom, interfaces, sources, networks, family, note)
    return dict(
        name=name,
        uuid=dom.UUIDString(),
        id=dom_id,
        state=state,
        persistent=persistent,
        autostart=autostart,
        domain_type=root.get('type'),
        arch=os_type.get('arch') if os_type is not None else None,
        vcpus=vcpus,
        memory_mib=_mib(root.find('memory')),
        current_memory_mib=_mib(root.find('currentMemory')),
        title=_text(root, 'title'),
        description=_text(root, 'description'),
        tags=tags_of(root),
        interfaces=interfaces,
        address=address,
        uri=uri,
        hypervisor=hypervisor,
    )


def collect(uri, username=None, password=None, read_only=True, sources=(), networks=None,
            family='any', note=None):
    """{'uri', 'hypervisor', 'domains': [records sorted by name]} of one libvirt URI."""
    conn = Connection(uri, username, password, read_only=read_only).conn
    try:
        hypervisor = hypervisor_name(uri, conn)
        with libvirt_call('listing domains', uri):
            doms = conn.listAllDomains(0)
        records = []
        for dom in doms:
            try:
                records.append(domain_record(dom, uri, hypervisor, sources, networks, family, note))
            except VirtError as exc:
                # A domain undefined while we read it is simply gone.
                if exc.code == _flag('VIR_ERR_NO_DOMAIN'):
                    continue
                raise
        return dict(uri=uri, hypervisor=hypervisor, domains=sorted(records, key=lambda r: r['name']))
    finally:
        try:
            conn.close()
        except Exception:  # pylint: disable=broad-except
            pass
