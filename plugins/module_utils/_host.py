# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Private to the virtops.libvirt collection: may change without notice.
"""Facts about a libvirt host: node info, capabilities, domain capabilities, CPU models, free
memory per NUMA cell, versions. Used by the virt_host_info module. Raises VirtError; never exits
a module."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type


from ansible_collections.virtops.libvirt.plugins.module_utils._libvirt import (
    is_error,
    libvirt_call,
    translate,
    version_string,
)
from ansible_collections.virtops.libvirt.plugins.module_utils.xml._document import parse as parse_xml

try:
    import libvirt
except ImportError:  # pragma: no cover - reported by VirtModule
    libvirt = None


HOST_INFO_ARGS = dict(
    arch=dict(type='str'),
    machine=dict(type='str'),
    virttype=dict(type='str'),
    emulator=dict(type='path'),
    domain_capabilities=dict(type='bool', default=True),
)

KIB = 1024


def _int(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _text(elem, path):
    node = elem.find(path)
    if node is None or node.text is None:
        return None
    return node.text.strip()


def _parse(xml, what):
    return parse_xml(xml, 'the %s XML' % what)


def _bytes(elem):
    """Size of an element with a unit attribute (libvirt writes KiB) in bytes."""
    if elem is None or elem.text is None:
        return None
    units = dict(b=1, bytes=1, KiB=KIB, MiB=KIB ** 2, GiB=KIB ** 3, TiB=KIB ** 4)
    factor = units.get(elem.get('unit', 'KiB'), KIB)
    value = _int(elem.text.strip())
    return value * factor if value is not None else None


def node_info(raw):
    """virNodeGetInfo's list as a dict."""
    model, memory_mib, cpus, mhz, nodes, sockets, cores, threads = raw[:8]
    return dict(arch=model, memory=memory_mib * KIB * KIB, cpus=cpus, mhz=mhz, numa_nodes=nodes,
                sockets=sockets, cores=cores, threads=threads)


def parse_capabilities(xml):
    """The essentials of virConnectGetCapabilities: host (uuid, arch, cpu model and vendor,
    topology, NUMA cells, security models) and guests (os_type, arch, wordsize, emulator,
    machines, domain types)."""
    root = _parse(xml, 'capabilities')
    host = root.find('host')
    cpu = host.find('cpu') if host is not None else None
    topo = cpu.find('topology') if cpu is not None else None
    cells = []
    for cell in root.findall('host/topology/cells/cell'):
        cells.append(dict(id=_int(cell.get('id')), memory=_bytes(cell.find('memory')),
                          cpus=len(cell.findall('cpus/cpu'))))
    guests = []
    for guest in root.findall('guest'):
        arch = guest.find('arch')
        if arch is None:
            continue
        machines = []
        for machine in arch.findall('machine'):
            if machine.text and machine.text.strip() not in machines:
                machines.append(machine.text.strip())
        guests.append(dict(
            os_type=_text(guest, 'os_type'),
            arch=arch.get('name'),
            wordsize=_int(_text(arch, 'wordsize')),
            emulator=_text(arch, 'emulator'),
            machines=machines,
            domain_types=[d.get('type') for d in arch.findall('domain')],
        ))
    return dict(
        host=dict(
            uuid=_text(root, 'host/uuid'),
            arch=_text(cpu, 'arch') if cpu is not None else None,
            cpu_model=_text(cpu, 'model') if cpu is not None else None,
            cpu_vendor=_text(cpu, 'vendor') if cpu is not None else None,
            topology=dict((k, _int(topo.get(k))) for k in ('sockets', 'dies', 'cores', 'threads'))
            if topo is not None else None,
            numa_cells=cells,
            secmodels=[m.text for m in root.findall('host/secmodel/model') if m.text],
        ),
        guests=guests,
    )


def parse_domain_capabilities(xml):
    """The essentials of virConnectGetDomainCapabilities: path, domain (virt type), machine,
    arch, vcpu_max, firmware and loader types, CPU modes supported, custom CPU models (name,
    usable, vendor), disk buses."""
    root = _parse(xml, 'domain capabilities')

    def values(path):
        return [v.text for v in root.findall(path) if v.text]

    models = [dict(name=m.text, usable=m.get('usable'), vendor=m.get('vendor'))
              for m in root.findall("cpu/mode[@name='custom']/model") if m.text]
    vcpu = root.find('vcpu')
    return dict(
        path=_text(root, 'path'),
        domain=_text(root, 'domain'),
        machine=_text(root, 'machine'),
        arch=_text(root, 'arch'),
        vcpu_max=_int(vcpu.get('max')) if vcpu is not None else None,
        firmware=values("os/enum[@name='firmware']/value"),
        loader_types=values("os/loader/enum[@name='type']/value"),
        cpu_modes=[m.get('name') for m in root.findall('cpu/mode') if m.get('supported') == 'yes'],
        cpu_models=models,
        disk_buses=values("devices/disk/enum[@name='bus']/value"),
    )


def _unsupported(exc):
    return is_error(exc, 'VIR_ERR_NO_SUPPORT', 'VIR_ERR_OPERATION_UNSUPPORTED')


def domain_capabilities(conn, emulator=None, arch=None, machine=None, virttype=None):
    """parse_domain_capabilities() plus xml, or None when the driver has no domain capabilities."""
    try:
        xml = conn.getDomainCapabilities(emulator, arch, machine, virttype, 0)
    except libvirt.libvirtError as exc:
        if _unsupported(exc):
            return None
        raise translate(exc, 'reading the domain capabilities', 'arch %s, machine %s, virttype %s' % (
            arch or 'default', machine or 'default', virttype or 'default'))
    result = parse_domain_capabilities(xml)
    result['xml'] = xml
    return result


def cpu_models(conn, arch):
    """CPU model names libvirt knows for arch, or None when the driver cannot list them."""
    if not arch:
        return None
    try:
        return conn.getCPUModelNames(arch, 0)
    except libvirt.libvirtError as exc:
        if _unsupported(exc) or is_error(exc, 'VIR_ERR_INVALID_ARG'):
            return None
        raise translate(exc, 'listing CPU models', arch)


def free_memory(conn, cells):
    """Free memory in bytes: total, and per NUMA cell (list of dicts cell, free)."""
    with libvirt_call('reading the free memory'):
        total = conn.getFreeMemory()
        per_cell = conn.getCellsFreeMemory(0, max(cells, 1))
    return total, [dict(cell=i, free=free) for i, free in enumerate(per_cell)]


def host_info(connection, arch=None, machine=None, virttype=None, emulator=None, with_domain_capabilities=True):
    """Everything virt_host_info returns."""
    conn = connection.conn
    with libvirt_call('reading the node info', connection.uri):
        node = node_info(conn.getInfo())
        hostname = conn.getHostname()
        caps_xml = conn.getCapabilities()
        driver = conn.getType()
        hv_version = conn.getVersion()
    caps = parse_capabilities(caps_xml)
    caps['xml'] = caps_xml
    total_free, cells_free = free_memory(conn, node['numa_nodes'])
    domcaps = domain_capabilities(conn, emulator, arch, machine, virttype) if with_domain_capabilities else None
    models_arch = arch or (domcaps or {}).get('arch') or caps['host']['arch']
    return dict(
        hostname=hostname,
        uri=connection.uri,
        driver=driver,
        libvirt_version=version_string(connection.lib_version),
        hypervisor_version=version_string(hv_version) if hv_version else None,
        node=node,
        free_memory=total_free,
        numa_free_memory=cells_free,
        capabilities=caps,
        domain_capabilities=domcaps,
        cpu_models=cpu_models(conn, models_arch),
        cpu_models_arch=models_arch,
    )


def read_host(connection, params, warn):
    """virt_host_info's result."""
    return host_info(connection, arch=params['arch'], machine=params['machine'], virttype=params['virttype'],
                     emulator=params['emulator'], with_domain_capabilities=params['domain_capabilities'])
