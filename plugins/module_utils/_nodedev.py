# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Private to the virtops.libvirt collection: may change without notice.
"""Host node devices (virConnectListAllNodeDevices): listed by capability and activity, each
parsed into plain dicts. Used by virt_nodedev_info. Raises VirtError; never exits a module."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.virtops.libvirt.plugins.module_utils._libvirt import (
    VirtError,
    is_error,
    libvirt,
    libvirt_call,
    optional_flag as _flag,
    translate,
)
from ansible_collections.virtops.libvirt.plugins.module_utils.xml import _document


# Capability names as the node device XML spells them (<capability type='...'>), with the
# listing flag that selects them. fc_host, vports and mdev_types are nested capabilities; they
# are listed by the API all the same.
CAPABILITY_FLAGS = {
    'system': 'VIR_CONNECT_LIST_NODE_DEVICES_CAP_SYSTEM',
    'pci': 'VIR_CONNECT_LIST_NODE_DEVICES_CAP_PCI_DEV',
    'usb_device': 'VIR_CONNECT_LIST_NODE_DEVICES_CAP_USB_DEV',
    'usb': 'VIR_CONNECT_LIST_NODE_DEVICES_CAP_USB_INTERFACE',
    'net': 'VIR_CONNECT_LIST_NODE_DEVICES_CAP_NET',
    'scsi_host': 'VIR_CONNECT_LIST_NODE_DEVICES_CAP_SCSI_HOST',
    'scsi_target': 'VIR_CONNECT_LIST_NODE_DEVICES_CAP_SCSI_TARGET',
    'scsi': 'VIR_CONNECT_LIST_NODE_DEVICES_CAP_SCSI',
    'storage': 'VIR_CONNECT_LIST_NODE_DEVICES_CAP_STORAGE',
    'fc_host': 'VIR_CONNECT_LIST_NODE_DEVICES_CAP_FC_HOST',
    'vports': 'VIR_CONNECT_LIST_NODE_DEVICES_CAP_VPORTS',
    'scsi_generic': 'VIR_CONNECT_LIST_NODE_DEVICES_CAP_SCSI_GENERIC',
    'drm': 'VIR_CONNECT_LIST_NODE_DEVICES_CAP_DRM',
    'mdev_types': 'VIR_CONNECT_LIST_NODE_DEVICES_CAP_MDEV_TYPES',
    'mdev': 'VIR_CONNECT_LIST_NODE_DEVICES_CAP_MDEV',
    'ccw': 'VIR_CONNECT_LIST_NODE_DEVICES_CAP_CCW_DEV',
    'css': 'VIR_CONNECT_LIST_NODE_DEVICES_CAP_CSS_DEV',
    'vdpa': 'VIR_CONNECT_LIST_NODE_DEVICES_CAP_VDPA',
    'ap_card': 'VIR_CONNECT_LIST_NODE_DEVICES_CAP_AP_CARD',
    'ap_queue': 'VIR_CONNECT_LIST_NODE_DEVICES_CAP_AP_QUEUE',
    'ap_matrix': 'VIR_CONNECT_LIST_NODE_DEVICES_CAP_AP_MATRIX',
    'vpd': 'VIR_CONNECT_LIST_NODE_DEVICES_CAP_VPD',
}

NODEDEV_INFO_ARGS = dict(
    name=dict(type='str'),
    capability=dict(type='list', elements='str', choices=sorted(CAPABILITY_FLAGS)),
    active=dict(type='bool'),
)


# ---------------------------------------------------------------------------------------------
# XML helpers

def _text(elem, path):
    node = elem.find(path) if elem is not None else None
    if node is None or node.text is None:
        return None
    return node.text.strip() or None


def _int(value, base=10):
    if value is None:
        return None
    try:
        return int(str(value).strip(), base)
    except ValueError:
        return None


def _num(value):
    """An integer written in decimal or 0x-hex, as libvirt mixes both."""
    return _int(value, 0) if value is not None and str(value).strip().lower().startswith('0x') \
        else _int(value)


def _pci_address(elem):
    """'0000:03:00.0' from an <address domain= bus= slot= function=/> element."""
    parts = [_num(elem.get(k)) for k in ('domain', 'bus', 'slot', 'function')]
    if None in parts:
        return None
    return '%04x:%02x:%02x.%x' % tuple(parts)


def _generic(elem):
    """Any element as a dict: attributes, then children (text, or nested dicts; repeated
    children become lists). For capability types this module does not model in detail."""
    out = dict((k, v) for k, v in elem.attrib.items())
    for child in elem:
        if not isinstance(child.tag, str):
            continue
        key = _document.etree.QName(child).localname.replace('-', '_')
        if len(child) or child.attrib:
            value = _generic(child)
            if child.text and child.text.strip():
                value['value'] = child.text.strip()
        else:
            value = child.text.strip() if child.text and child.text.strip() else True
        if key in out:
            if not isinstance(out[key], list):
                out[key] = [out[key]]
            out[key].append(value)
        else:
            out[key] = value
    return out


def _id_and_name(elem):
    """(id, name) of a <vendor id='0x8086'>Intel</vendor> style element."""
    if elem is None:
        return None, None
    return elem.get('id'), (elem.text.strip() if elem.text and elem.text.strip() else None)


def _subcaps(cap):
    return dict((c.get('type'), c) for c in cap.findall('capability'))


def _mdev_types(cap):
    types = []
    if cap is None:
        return types
    for t in cap.findall('type'):
        types.append(dict(
            id=t.get('id'),
            name=_text(t, 'name'),
            device_api=_text(t, 'deviceAPI'),
            available_instances=_int(_text(t, 'availableInstances')),
        ))
    return types


# ---------------------------------------------------------------------------------------------
# One parser per capability type

def parse_pci(cap):
    vendor_id, vendor = _id_and_name(cap.find('vendor'))
    product_id, product = _id_and_name(cap.find('product'))
    sub = _subcaps(cap)
    domain, bus, slot, function = [_num(_text(cap, k)) for k in ('domain', 'bus', 'slot', 'function')]
    address = None
    if None not in (domain, bus, slot, function):
        address = '%04x:%02x:%02x.%x' % (domain, bus, slot, function)
    group = cap.find('iommuGroup')
    vfs = sub.get('virt_functions')
    pf = sub.get('phys_function')
    pf_addr = pf.find('address') if pf is not None else None
    numa = cap.find('numa')
    links = {}
    for link in cap.findall('pci-express/link'):
        links[link.get('validity') or 'link'] = dict(speed=link.get('speed'), width=_int(link.get('width')),
                                                     port=_int(link.get('port')))
    return dict(
        address=address,
        domain=domain, bus=bus, slot=slot, function=function,
        class_id=_text(cap, 'class'),
        vendor_id=vendor_id, vendor=vendor,
        product_id=product_id, product=product,
        iommu_group=_int(group.get('number')) if group is not None else None,
        iommu_group_devices=[_pci_address(a) for a in group.findall('address')] if group is not None else [],
        numa_node=_int(numa.get('node')) if numa is not None else None,
        sriov_max_vfs=_int(vfs.get('maxCount')) if vfs is not None else None,
        sriov_vfs=[_pci_address(a) for a in vfs.findall('address')] if vfs is not None else [],
        sriov_pf=_pci_address(pf_addr) if pf_addr is not None else None,
        bridge='pci-bridge' in sub or 'cardbus-bridge' in sub,
        pcie_link=links or None,
        mdev_types=_mdev_types(sub.get('mdev_types')),
    )


def _speed(link):
    # The kernel's "unknown" speed is -1, which libvirt prints as an unsigned 32-bit number.
    speed = _int(link.get('speed')) if link is not None else None
    return None if speed is None or speed >= 0xFFFFFFFF else speed


def parse_net(cap):
    link = cap.find('link')
    sub = cap.find('capability')
    return dict(
        interface=_text(cap, 'interface'),
        address=(_text(cap, 'address') or '').lower() or None,
        link_state=link.get('state') if link is not None else None,
        link_speed=_speed(link),
        features=[f.get('name') for f in cap.findall('feature') if f.get('name')],
        # 80203 is IEEE 802.3 (Ethernet), 80211 is IEEE 802.11 (wireless).
        subtype=sub.get('type') if sub is not None else None,
    )


def parse_usb_device(cap):
    vendor_id, vendor = _id_and_name(cap.find('vendor'))
    product_id, product = _id_and_name(cap.find('product'))
    return dict(bus=_int(_text(cap, 'bus')), device=_int(_text(cap, 'device')),
                vendor_id=vendor_id, vendor=vendor, product_id=product_id, product=product)


def parse_usb(cap):
    return dict(number=_int(_text(cap, 'number')), class_id=_text(cap, 'class'),
                subclass=_text(cap, 'subclass'), protocol=_text(cap, 'protocol'),
                description=_text(cap, 'description'))


def parse_storage(cap):
    removable = _subcaps(cap).get('removable')
    return dict(
        block=_text(cap, 'block'),
        bus=_text(cap, 'bus'),
        drive_type=_text(cap, 'drive_type'),
        model=_text(cap, 'model'),
        vendor=_text(cap, 'vendor'),
        serial=_text(cap, 'serial'),
        size=_int(_text(cap, 'size')),
        logical_block_size=_int(_text(cap, 'logical_block_size')),
        num_blocks=_int(_text(cap, 'num_blocks')),
        removable=removable is not None,
        media_available=(_text(removable, 'media_available') == '1') if removable is not None else None,
        media_size=_int(_text(removable, 'media_size')) if removable is not None else None,
    )


def parse_scsi_host(cap):
    sub = _subcaps(cap)
    fc = sub.get('fc_host')
    vports = sub.get('vport_ops')
    return dict(
        host=_int(_text(cap, 'host')),
        unique_id=_int(_text(cap, 'unique_id')),
        fc_host=dict(wwnn=_text(fc, 'wwnn'), wwpn=_text(fc, 'wwpn'), fabric_wwn=_text(fc, 'fabric_wwn'))
        if fc is not None else None,
        vports=dict(max_vports=_int(_text(vports, 'max_vports')), vports=_int(_text(vports, 'vports')))
        if vports is not None else None,
    )


def parse_scsi(cap):
    return dict((k, _int(_text(cap, k))) for k in ('host', 'bus', 'target', 'lun')) \
        if cap is not None else {}


def parse_scsi_device(cap):
    out = parse_scsi(cap)
    out['type'] = _text(cap, 'type')
    return out


def parse_scsi_target(cap):
    rport = _subcaps(cap).get('fc_remote_port')
    return dict(target=_text(cap, 'target'),
                fc_remote_port=dict(rport=_text(rport, 'rport'), wwpn=_text(rport, 'wwpn'))
                if rport is not None else None)


def parse_system(cap):
    return dict(
        product=_text(cap, 'product'),
        hardware=dict((k, _text(cap, 'hardware/' + k)) for k in ('vendor', 'version', 'serial', 'uuid')),
        firmware=dict((k, _text(cap, 'firmware/' + k)) for k in ('vendor', 'version', 'release_date')),
    )


def parse_mdev(cap):
    group = cap.find('iommuGroup')
    mtype = cap.find('type')
    return dict(
        type=mtype.get('id') if mtype is not None else None,
        uuid=_text(cap, 'uuid'),
        parent_address=_text(cap, 'parent_addr'),
        iommu_group=_int(group.get('number')) if group is not None else None,
        attributes=dict((a.get('name'), a.get('value')) for a in cap.findall('attr')),
    )


def parse_mdev_types(cap):
    return dict(types=_mdev_types(cap))


def parse_ccw(cap):
    out = dict((k, _text(cap, k)) for k in ('cssid', 'ssid', 'devno'))
    sub = _subcaps(cap)
    if 'mdev_types' in sub:
        out['mdev_types'] = _mdev_types(sub['mdev_types'])
    return out


PARSERS = {
    'pci': parse_pci,
    'net': parse_net,
    'usb_device': parse_usb_device,
    'usb': parse_usb,
    'storage': parse_storage,
    'scsi_host': parse_scsi_host,
    'scsi': parse_scsi_device,
    'scsi_target': parse_scsi_target,
    'system': parse_system,
    'mdev': parse_mdev,
    'mdev_types': parse_mdev_types,
    'ccw': parse_ccw,
    'css': parse_ccw,
}


def parse_device(xml):
    """The facts of one node device from its XML (without 'active', which the XML lacks)."""
    root = _document.parse(xml, 'the node device XML')
    driver = root.find('driver')
    caps = root.findall('capability')
    devnodes = root.findall('devnode')
    facts = dict(
        name=_text(root, 'name'),
        parent=_text(root, 'parent'),
        path=_text(root, 'path'),
        devnode=next((d.text.strip() for d in devnodes if d.get('type') == 'dev' and d.text), None),
        devlinks=[d.text.strip() for d in devnodes if d.get('type') == 'link' and d.text],
        driver=_text(driver, 'name') if driver is not None else None,
        type=caps[0].get('type') if caps else None,
        capabilities=[],
        xml=xml,
    )
    for cap in caps:
        kind = cap.get('type')
        if not kind:
            continue
        facts['capabilities'].append(kind)
        parser = PARSERS.get(kind)
        if parser is None:
            facts[kind] = _generic(cap)
            facts[kind].pop('type', None)
        else:
            facts[kind] = parser(cap)
        # Nested capabilities count as capabilities of the device (the API lists by them too).
        for sub in cap.findall('capability'):
            nested = {'vport_ops': 'vports'}.get(sub.get('type'), sub.get('type'))
            if nested in CAPABILITY_FLAGS and nested not in facts['capabilities']:
                facts['capabilities'].append(nested)
    return facts


# ---------------------------------------------------------------------------------------------
# Listing

def _unsupported(exc):
    return is_error(exc, 'VIR_ERR_NO_SUPPORT', 'VIR_ERR_OPERATION_UNSUPPORTED', 'VIR_ERR_INVALID_ARG')


def device_active(dev):
    """True/False, or None when the driver cannot tell (it then has active devices only)."""
    try:
        return bool(dev.isActive())
    except (AttributeError, libvirt.libvirtError) as exc:
        if isinstance(exc, AttributeError) or _unsupported(exc):
            return None
        raise translate(exc, 'reading whether it is active', 'node device %s' % dev.name())


def _list(conn, uri, cap_flags, active):
    """Devices matching the capability flags; the active/inactive flags are used when the
    driver knows them (libvirt >= 7.3 with a driver that can define devices)."""
    flags = cap_flags
    if active is True:
        flags |= _flag('VIR_CONNECT_LIST_NODE_DEVICES_ACTIVE')
    elif active is False:
        flags |= _flag('VIR_CONNECT_LIST_NODE_DEVICES_INACTIVE')
    try:
        return conn.listAllDevices(flags), flags != cap_flags
    except libvirt.libvirtError as exc:
        if flags == cap_flags or not _unsupported(exc):
            raise translate(exc, 'listing node devices', uri)
    with libvirt_call('listing node devices', uri):
        return conn.listAllDevices(cap_flags), False


def nodedevs_info(connection, name=None, capability=None, active=None):
    """virt_nodedev_info: the node devices, sorted by name."""
    conn = connection.conn
    capability = capability or []
    unknown = [c for c in capability if c not in CAPABILITY_FLAGS]
    if unknown:
        raise VirtError('unknown node device capability %s; known: %s' % (
            ', '.join(unknown), ', '.join(sorted(CAPABILITY_FLAGS))))
    cap_flags = 0
    for cap in capability:
        cap_flags |= _flag(CAPABILITY_FLAGS[cap])
    if capability and not cap_flags:
        raise VirtError('this libvirt-python knows none of the capabilities %s' % ', '.join(capability))

    if name:
        try:
            devs = [conn.nodeDeviceLookupByName(name)]
        except libvirt.libvirtError as exc:
            if is_error(exc, 'VIR_ERR_NO_NODE_DEVICE'):
                return []
            raise translate(exc, 'looking up node device', name)
        filtered_by_api = False
    else:
        devs, filtered_by_api = _list(conn, connection.uri, cap_flags, active)

    result = []
    for dev in devs:
        try:
            with libvirt_call('reading the XML', 'node device %s' % dev.name()):
                xml = dev.XMLDesc(0)
        except VirtError as exc:
            # A device unplugged while we read it is simply gone.
            if exc.code == _flag('VIR_ERR_NO_NODE_DEVICE'):
                continue
            raise
        facts = parse_device(xml)
        facts['active'] = device_active(dev)
        if name and capability and not set(capability) & set(facts['capabilities']):
            continue
        if active is not None and not filtered_by_api and (facts['active'] is not False) != active:
            continue
        result.append(facts)
    return sorted(result, key=lambda d: d['name'] or '')


def read_nodedevs(connection, params, warn):
    """virt_nodedev_info's result."""
    return dict(devices=nodedevs_info(connection, name=params['name'], capability=params['capability'],
                                      active=params['active']))
