# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Private to the virtops.libvirt collection: may change without notice.
"""What libvirt would refuse when a network is defined, foreseen without changing anything.

Check mode cannot define, so virt_network asks three sources instead (foresee_define):

1. libvirt's own network parser and schema (virNetworkDefParse with validation, src/conf/
   network_conf.c), through the test driver (test:///default) of the libvirt library on the
   managed host: an in-process, in-memory driver whose define runs the parser and keeps nothing
   outside this process. Only for local URIs, where that library is the daemon's own version
   (for test:///default itself the probe is a network of the same in-process driver for the
   moment of the check).
2. The rules of the network driver's own check (networkValidate in src/network/bridge_driver.c,
   libvirt 9.0) that depend only on the XML: mirrored in driver_refusal, one rule per check.
   Not for test:/// URIs, whose driver runs the parser only.
3. The host's state that check consults: a bridge name another network already uses (read
   through the connection, local or remote) and, for a hostdev network, whether each PCI address
   is an SR-IOV virtual function (sysfs: local hosts only).

What cannot be foreseen (the real define still reports it, before anything changes):
- SR-IOV virtual functions of a remote host; parser checks of a remote daemon (a local library
  of another version must not judge it).
- Checks that a libvirt newer than 9.0 adds to networkValidate.
- Networks defined by someone else between check mode and the real run (a bridge name taken).
Failures of a network's start (dnsmasq, firewall backend, a missing host bridge or device) are
no define failures: libvirt accepts such a definition, and so does check mode.

Facts this code relies on: the test driver's network define calls virNetworkDefParse only (no
networkValidate, no bridge check); libvirt formats a uuid it generated itself.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy
import os
import uuid as uuidlib

try:
    from urllib.parse import urlparse
except ImportError:  # pragma: no cover - Python 2 is not supported, import kept for sanity
    from urlparse import urlparse  # type: ignore

from ansible_collections.virtops.libvirt.plugins.module_utils._libvirt import (
    VirtError,
    flags_rejected,
    libvirt,
    optional_flag as _flag,
)
from ansible_collections.virtops.libvirt.plugins.module_utils._errors import (
    REASON_DEFINE_REFUSED,
    REASON_INVALID_XML,
)
from ansible_collections.virtops.libvirt.plugins.module_utils._vocabulary import is_local_uri
from ansible_collections.virtops.libvirt.plugins.module_utils.xml import _document

# Forward modes whose bridge (and its addresses, DNS and DHCP) libvirt sets up itself.
L3_MODES = ('none', 'nat', 'route', 'open')
SYSFS_PCI = '/sys/bus/pci/devices'


def is_test_driver(uri):
    return urlparse(uri).scheme.split('+')[0] == 'test'


def foresee_define(connection, root, name):
    """Raise the VirtError a define of root (the desired <network>) would end in, if foreseen."""
    uri = connection.uri
    if is_local_uri(uri):
        message = parser_refusal(root)
        if message:
            raise VirtError('defining on network %s would fail: %s (check mode; nothing was '
                            'changed)' % (name, message), action='defining', obj=name,
                            libvirt_message=message, reason=REASON_INVALID_XML)
    if is_test_driver(uri):
        return  # the test driver runs the parser only (no networkValidate): the define says
    message = driver_refusal(root, name, other_bridges(connection, name),
                             is_virtual_function if is_local_uri(uri) else None)
    if message:
        raise VirtError('defining on network %s would fail: %s (check mode; nothing was changed)'
                        % (name, message), action='defining', obj=name, libvirt_message=message,
                        reason=REASON_DEFINE_REFUSED)


# ---------------------------------------------------------------------------------------------
# 1. libvirt's parser, through the in-process test driver

def parser_refusal(root):
    """libvirt's message when its network parser (and schema) refuse root, else None.

    The probe is defined under a unique name (and without a uuid the test driver already
    uses) and undefined again at once; libvirt's messages name the probe, so they are given
    back with the network's own name.
    """
    if libvirt is None:
        return None
    try:
        conn = libvirt.open('test:///default')
    except libvirt.libvirtError:
        return None  # no test driver in this build of libvirt: nothing foreseen here
    probe_name = 'virtops-check-%s' % uuidlib.uuid4().hex
    probe = copy.deepcopy(root)
    name_elem = probe.find('name')
    own_name = (name_elem.text or '') if name_elem is not None else ''
    if name_elem is None:
        name_elem = probe.makeelement('name')
        probe.insert(0, name_elem)
    name_elem.text = probe_name
    for elem in probe.findall('uuid'):
        try:
            conn.networkLookupByUUIDString((elem.text or '').strip())
        except libvirt.libvirtError:
            continue
        probe.remove(elem)  # the test driver's own network has this uuid
    xml = _document.render(probe)
    try:
        try:
            net = conn.networkDefineXMLFlags(xml, _flag('VIR_NETWORK_DEFINE_VALIDATE'))
        except libvirt.libvirtError as exc:
            if not flags_rejected(exc):
                raise
            net = conn.networkDefineXML(xml)
    except libvirt.libvirtError as exc:
        message = exc.get_error_message() or str(exc)
        return message.replace(probe_name, own_name) if own_name else message
    finally:
        conn.close()
    try:
        net.undefine()
    except libvirt.libvirtError:
        pass
    return None


# ---------------------------------------------------------------------------------------------
# 2. and 3. the network driver's own check (networkValidate, libvirt 9.0)

def other_bridges(connection, name):
    """{bridge name: network} of every other network, in its running and its persistent
    definition (virNetworkObjBridgeInUse looks at both)."""
    bridges = {}
    try:
        nets = connection.conn.listAllNetworks(0)
    except libvirt.libvirtError:
        return bridges
    for net in nets:
        try:
            if net.name() == name:
                continue
            xmls = [net.XMLDesc(0)]
            if net.isPersistent() and net.isActive():
                xmls.append(net.XMLDesc(_flag('VIR_NETWORK_XML_INACTIVE')))
        except libvirt.libvirtError:
            continue  # removed meanwhile
        for xml in xmls:
            bridge = _document.parse(xml).find('bridge')
            if bridge is not None and bridge.get('name'):
                bridges.setdefault(bridge.get('name'), net.name())
    return bridges


def _pci_number(value):
    value = (value or '0').strip()
    return int(value, 16) if value.lower().startswith('0x') else int(value, 10)


def pci_sysfs_path(address):
    """/sys/bus/pci/devices/DDDD:BB:SS.F of a <address type='pci' .../> element."""
    return os.path.join(SYSFS_PCI, '%04x:%02x:%02x.%x' % tuple(
        _pci_number(address.get(a)) for a in ('domain', 'bus', 'slot', 'function')))


def is_virtual_function(address):
    """virPCIIsVirtualFunction: the device's sysfs directory has a physfn link."""
    try:
        path = pci_sysfs_path(address)
    except ValueError:
        return True, None  # the parser judges malformed addresses
    return os.path.exists(os.path.join(path, 'physfn')), path


def _tags(elem):
    return elem is not None and elem.find('tag') is not None


def driver_refusal(root, name, bridges, virtual_function=None):
    """networkValidate's message for root, or None. bridges: {bridge: network} of the other
    networks. virtual_function(address) -> (bool, sysfs path): None where sysfs cannot be read
    (remote hosts). The message starts as libvirt's does: with the text of its error code
    (VIR_ERR_INTERNAL_ERROR for a bridge in use, VIR_ERR_CONFIG_UNSUPPORTED for the rest)."""
    message = _driver_rules(root, name, bridges, virtual_function)
    if message is None:
        return None
    if message.startswith('bridge name'):
        return 'internal error: ' + message
    return 'unsupported configuration: ' + message


def _driver_rules(root, name, bridges, virtual_function):
    forward = root.find('forward')
    mode = 'none' if forward is None else (forward.get('mode') or 'nat')
    bridge = root.find('bridge')
    bridge_name = bridge.get('name') if bridge is not None else None

    if mode in L3_MODES:
        # networkBridgeNameValidate: a fixed bridge name (no %d template) must be free.
        if bridge_name and '%d' not in bridge_name and bridge_name in bridges:
            return "bridge name '%s' already in use." % bridge_name
        bandwidth_allowed = True
    else:
        # Only libvirt's own bridges have host-side addresses, DNS and a domain.
        bandwidth_allowed = mode == 'bridge' and bool(bridge_name)
        for tag, what in (('mac', '<mac>'), ('ip', '<ip>'), ('domain', '<domain>')):
            if root.find(tag) is not None:
                return ("Unsupported %s element in network %s with forward mode='%s'"
                        % (what, name, mode))
        if any(root.find('dns/' + t) is not None for t in ('txt', 'host', 'srv')):
            return "Unsupported <dns> element in network %s with forward mode='%s'" % (name, mode)

    bandwidth = root.find('bandwidth')
    if bandwidth is not None and len(bandwidth) and not bandwidth_allowed:
        return ("Unsupported network-wide <bandwidth> element in network %s with forward "
                "mode='%s'" % (name, mode))

    # The device pool: netdev names, PCI addresses or one PF, never two kinds.
    uses_interface = forward is not None and bool(
        forward.get('dev') or forward.find('interface') is not None)
    uses_address = False
    if uses_interface and mode == 'hostdev':
        dev = forward.get('dev') or forward.find('interface').get('dev')
        return ("hostdev network '%s' lists '%s' in the device pool, but hostdev networks "
                "require all devices to be listed by PCI address, not network device name"
                % (name, dev))
    for address in (forward.findall('address') if forward is not None else []):
        if address.get('type', 'pci') != 'pci':
            continue
        uses_address = True
        if mode != 'hostdev':
            return ("network '%s' has forward mode '%s'  but lists a device by PCI address in "
                    "the device pool. This is only supported for networks with forward mode "
                    "'hostdev'" % (name, mode))
        if virtual_function is not None:
            is_vf, path = virtual_function(address)
            if not is_vf:
                return ("device '%s' in network '%s' is not an SR-IOV Virtual Function"
                        % (path, name))
    uses_pf = forward is not None and forward.find('pf') is not None
    if uses_pf + uses_interface + uses_address > 1:
        return ('<address>, <interface>, and <pf> elements of <forward> in network %s are '
                'mutually exclusive' % name)

    # DHCP on one IPv4 and one IPv6 address at most.
    seen = set()
    for ip in root.findall('ip'):
        dhcp = ip.find('dhcp')
        if dhcp is None or (dhcp.find('range') is None and dhcp.find('host') is None):
            continue
        family = 'IPv6' if ':' in (ip.get('address') or '') else 'IPv4'
        if family in seen:
            return ('Multiple %s dhcp sections found -- dhcp is supported only for a single %s '
                    'address on each network' % (family, family))
        seen.add(family)

    # VLAN tags: only hostdev and passthrough networks and Open vSwitch bridges carry them.
    virtualport = root.find('virtualport')
    vlan_allowed = mode in ('hostdev', 'passthrough') or (
        mode == 'bridge' and virtualport is not None and virtualport.get('type') == 'openvswitch')
    vlan_used = _tags(root.find('vlan'))
    bad_vlan = False
    default_group = None
    names = set()
    for group in root.findall('portgroup'):
        group_name = group.get('name')
        if vlan_used or _tags(group.find('vlan')):
            group_port = group.find('virtualport')
            if group_port is not None:
                # the port group's own <virtualport> must itself say openvswitch
                if mode != 'bridge' or group_port.get('type') != 'openvswitch':
                    bad_vlan = True
            elif not vlan_allowed:
                bad_vlan = True
        if group.get('default') == 'yes':
            if default_group is not None:
                return ("network '%s' has multiple default <portgroup> elements (%s and %s), but "
                        "only one default is allowed" % (name, default_group, group_name))
            default_group = group_name
        if group_name in names:
            return ("multiple <portgroup> elements with the same name (%s) in network '%s'"
                    % (group_name, name))
        names.add(group_name)
        group_bandwidth = group.find('bandwidth')
        if group_bandwidth is not None and len(group_bandwidth) and not bandwidth_allowed:
            return ("Unsupported <bandwidth> element in network '%s' in portgroup '%s' with "
                    "forward mode='%s'" % (name, group_name, mode))
    if bad_vlan or (vlan_used and not vlan_allowed and default_group is None):
        return ("<vlan> element specified for network %s, whose type doesn't support vlan "
                "configuration" % name)
    if mode == 'hostdev':
        for group in root.findall('portgroup'):
            group_bandwidth = group.find('bandwidth')
            if group_bandwidth is not None and len(group_bandwidth):
                return ("unsupported <bandwidth> element in <portgroup name='%s'> of network "
                        "'%s' with forward mode='%s'" % (group.get('name'), name, mode))
    return None
