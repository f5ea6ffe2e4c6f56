# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Private to the virtops.libvirt collection: may change without notice.
"""The domain definition saved in a backup, made into a new domain that is safe to define.

A repository is untrusted input (docs/DESIGN.md, principle 7): it can come back from shared or
remote storage, and whoever could write it chose every byte of domain.xml. Defining that XML as it
is would let them pick what the new domain's QEMU opens on the host. The rule applied here:
nothing in the saved XML may make the new domain read or write a host path or device the user did
not choose, run a host program, or loosen QEMU's confinement. The only host paths the new domain
gets are the restored images (chosen by the restore), firmware under /usr/share/ and the files
libvirt makes for it in its own directories.

new_domain_xml() does three things:

1. Rewrites the definition as a new domain (always): new name, no uuid, a new VM generation id,
   no MAC addresses, its own UEFI variable store (the restored copy when the backup has one, else a
   new one from the template), disks on the restored images; disks that were not
   restored are left out (with a warning). Runtime paths libvirt generated for the original domain
   (guest agent sockets, pty paths) are dropped: they belong to the original.
2. Moves listeners to loopback (always, also with trust): graphics (VNC, SPICE, RDP) and
   character devices (tcp, udp) that listen on anything but loopback listen on 127.0.0.1, each
   with a warning. The saved XML carries no passwords (libvirt writes none without
   VIR_DOMAIN_XML_SECURE), so a console moved to a host with another network would be open to
   anyone. This is about the new domain's exposure, not about trusting the repository. Graphics
   with no listen address use the host's own default (qemu.conf), which is the admin's choice.
3. Refuses (unless trust) everything that reaches the host, listing every offending element with a
   short why: hypervisor passthrough namespaces (qemu:commandline, ...), host devices, host
   directories and files, host programs (emulator outside the usual places, interface scripts,
   bootloaders), non-default security labels, host sound and input devices, the host GPU, chardevs
   on host files, devices and sockets, and, as a backstop, any attribute or path-valued text naming
   an absolute host path that none of the rules above allowed, CD-ROM and floppy media included
   (an inserted ISO is a host file the guest would read). With trust the media are kept and what
   would have been refused is listed in one warning.

Judgement calls, documented:
- Network access is not host access: interfaces of type network, bridge, user, ethernet (without
  scripts), direct (macvtap, except mode passthrough, which hands the host NIC over to the guest),
  mcast, udp, server and client are kept; chardevs that connect out over tcp/udp too, except to the
  host's own loopback (that would let the guest talk to services only the host should reach, such
  as other domains' consoles).
- <memoryBacking><source type='file'/> is allowed: the files live in qemu.conf's
  memory_backing_dir; the XML cannot name a path.
- Domain types other than kvm, qemu and hvf are refused: backups are QEMU backups, and the
  definitions of other drivers (an LXC container shares the host's root file system unless told
  otherwise) were not reviewed here. The test driver's type is accepted: it touches nothing.
- Namespaced elements and attributes outside <metadata> are refused: libvirt reads some elements
  and attributes by local name whatever their namespace, so they cannot be checked. A DTD or an
  entity reference is refused even with trust (libvirt never writes one).
- Not refused, as they reach no host path or device: user networking (whose guests reach the host's
  loopback through the gateway address, as with any user-networking domain), listening socket
  interfaces (type server), passt port forwards, real-time vCPU scheduling, hugepages, cgroup
  partitions and blkiotune device weights.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ipaddress
import posixpath
import re

from ansible_collections.virtops.libvirt.plugins.module_utils._libvirt import VirtError
from ansible_collections.virtops.libvirt.plugins.module_utils._errors import (
    REASON_INVALID_XML,
)
from ansible_collections.virtops.libvirt.plugins.module_utils.xml._document import etree, parse

WHAT = 'domain.xml of backup'
LOOPBACK = '127.0.0.1'

QEMU_NS = 'http://libvirt.org/schemas/domain/qemu/1.0'
NAMESPACES = {
    QEMU_NS: 'passes arguments, capabilities or device properties straight to QEMU, past every check of libvirt',
    'http://libvirt.org/schemas/domain/lxc/1.0': "shares the host's namespaces with the domain",
    'http://libvirt.org/schemas/domain/bhyve/1.0': 'passes arguments straight to bhyve',
    'http://libvirt.org/schemas/domain/xen/1.0': 'passes arguments straight to the Xen device model',
    'http://libvirt.org/schemas/domain/vmware/1.0': 'a VMware ESX setting',
}

DOMAIN_TYPES = ('kvm', 'qemu', 'hvf', 'test')
FIRMWARE_DIRS = ('/usr/share/',)
ROM_DIRS = ('/usr/share/', '/usr/lib/ipxe/')
EMULATOR = re.compile(r'^(?:/usr(?:/local)?/(?:bin|libexec)|/run/libvirt/nix-emulators)/'
                      r'(?:qemu-system-[A-Za-z0-9_]+|qemu-kvm|kvm)$')
RNG_DEVICES = ('', '/dev/urandom', '/dev/random', '/dev/hwrng')
INTERFACE_BACKEND_DEVICES = {'tap': '/dev/net/tun', 'vhost': '/dev/vhost-net'}
# Where libvirt makes guest agent and other virtio channel sockets (system and session daemons).
CHANNEL_DIR = '/libvirt/qemu/channel/target/'

CHARDEVS = ('serial', 'parallel', 'console', 'channel')
SAFE_CHARDEV_TYPES = ('pty', 'vc', 'null', 'spicevmc', 'spiceport', 'qemu-vdagent', 'dbus', 'stdio')
SAFE_AUDIO_TYPES = ('none', 'spice', 'dbus')
LISTEN_GRAPHICS = ('vnc', 'spice', 'rdp')
# Subtrees whose text is free text, labels or blobs, never a path libvirt opens.
FREE_TEXT = ('description', 'title', 'cmdline', 'sysinfo', 'launchSecurity', 'seclabel', 'resource',
             'blkiotune', 'genid', 'uuid', 'name')


def new_domain_xml(saved_xml, new_name, disk_paths, fmt, trust=False, nvram_path=None):
    """The definition saved with a backup as a new domain named new_name, its disks
    {target dev: path} on the restored images (driver type fmt). nvram_path: the restored UEFI
    variable store the new domain uses (instead of a fresh copy of the template).

    -> (xml_text, warnings list). Raises VirtError when the saved XML is broken, or (unless trust)
    when it would reach the host (see the module docstring)."""
    root = _parse(saved_xml)
    review = _Review(trust)
    _as_new_domain(root, new_name, review, nvram_path)
    restored = _restore_disks(root, disk_paths, fmt, review)
    _drop_runtime_paths(root)
    _listen_on_loopback(root, review)
    if not trust:
        _drop_socket_paths(root, review)
    _check(root, review, restored)
    if nvram_path:
        # After the checks: the path is the restore's own file, not one the saved XML named.
        _use_nvram(root, nvram_path)
    if review.problems:
        if not trust:
            raise VirtError(
                '%s would give the new domain access to the host, so it was not defined: %s. '
                'trust_saved_xml: true allows them; set it only for a repository that nobody else can '
                'write' % (WHAT, '; '.join(review.problems)), refused=list(review.problems))
        review.warn('trust_saved_xml: true let through what the saved definition asks of the host: %s'
                    % '; '.join(review.problems))
    return etree.tostring(root, encoding='unicode', pretty_print=True), review.warnings


class _Review:
    def __init__(self, trust):
        self.trust = trust
        self.problems = []
        self.warnings = []
        self.reported = set()

    def refuse(self, elem, why):
        if elem.getparent() is not None:    # the root refused still has its contents checked
            self.reported.add(elem)
        self.problems.append('%s in %s: %s' % (_start_tag(elem), _location(elem), why))
        return True

    def warn(self, msg):
        self.warnings.append(msg)

    def covered(self, elem):
        """Already refused, by itself or with an ancestor."""
        while elem is not None:
            if elem in self.reported:
                return True
            elem = elem.getparent()
        return False


# ---------------------------------------------------------------------------------------------
# Parsing and naming

def _parse(saved_xml):
    root = parse(saved_xml, WHAT)       # no entities resolved, no network, no huge trees
    tree = root.getroottree()
    if tree.docinfo.internalDTD is not None or any(isinstance(n, etree._Entity) for n in root.iter()):
        raise VirtError('%s declares a DTD or uses entities, which libvirt never writes: refusing it'
                        % WHAT, reason=REASON_INVALID_XML)
    if root.tag != 'domain':
        raise VirtError('%s has root element <%s>, expected <domain>' % (WHAT, _name(root)),
                        reason=REASON_INVALID_XML)
    return root


def _name(elem):
    qname = etree.QName(elem)
    if qname.namespace is None:
        return qname.localname
    if elem.prefix:
        return '%s:%s' % (elem.prefix, qname.localname)
    return '{%s}%s' % (qname.namespace, qname.localname)


def _start_tag(elem):
    attrs = []
    for key, value in elem.attrib.items():
        qname = etree.QName(key)
        if qname.localname.lower() in ('passwd', 'password'):
            continue
        if qname.namespace:
            prefix = [p for p, ns in (elem.nsmap or {}).items() if ns == qname.namespace and p]
            key = '%s:%s' % (prefix[0], qname.localname) if prefix else '{%s}%s' % (qname.namespace,
                                                                                    qname.localname)
        value = value if len(value) <= 80 else value[:77] + '...'
        attrs.append(" %s='%s'" % (key, value))
    return '<%s%s>' % (_name(elem), ''.join(attrs))


def _location(elem):
    steps = []
    parent = elem.getparent()
    while parent is not None and parent.getparent() is not None:
        steps.append(_name(parent))
        parent = parent.getparent()
    return '/'.join(reversed(steps)) or 'domain'


def _device_name(elem):
    """serial 0, channel org.qemu.guest_agent.0, graphics spice, disk sda ..."""
    tag = _name(elem)
    target = elem.find('target')
    if target is not None:
        for attr in ('dev', 'name', 'port'):
            if target.get(attr):
                return '%s %s' % (tag, target.get(attr))
    if elem.get('type'):
        return '%s %s' % (tag, elem.get('type'))
    return tag


def _text(elem):
    return (elem.text or '').strip() if elem is not None else ''


def _under(path, dirs):
    return bool(path) and posixpath.isabs(path) and posixpath.normpath(path) == path and \
        any(path.startswith(d) for d in dirs)


def _loopback(host):
    host = (host or '').strip().strip('[]')
    if host.lower() == 'localhost':
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# ---------------------------------------------------------------------------------------------
# Rewriting (always)

def _as_new_domain(root, new_name, review, nvram_path=None):
    name = root.find('name')
    if name is None:
        name = etree.Element('name')
        root.insert(0, name)
    name.text = new_name
    root.attrib.pop('id', None)                 # a running domain's id
    for elem in root.findall('uuid'):
        root.remove(elem)
    # Empty <genid/>: libvirt makes a new VM generation id, so the guest knows it was restored.
    for elem in root.findall('genid'):
        elem.text = None
    for mac in root.findall('./devices/interface/mac'):
        mac.getparent().remove(mac)
    # The UEFI variable store is per domain: the original's path would be shared (and deleted by
    # `undefine --nvram` of either). Without a path, libvirt makes <new name>_VARS.fd from the template.
    for nvram in root.findall('./os/nvram'):
        nvram.text = None
        for child in list(nvram):
            nvram.remove(child)
        nvram.attrib.pop('type', None)
        if nvram_path:
            nvram.attrib.pop('template', None)      # the restored store exists: no template is copied
        template = nvram.get('template')
        if template and not _under(template, FIRMWARE_DIRS):
            review.refuse(nvram, 'the new UEFI variable store would be a copy of the host file %s (only '
                                 'templates under %s are allowed)' % (template, ', '.join(FIRMWARE_DIRS)))


def _use_nvram(root, path):
    if not posixpath.isabs(path) or posixpath.normpath(path) != path:
        raise VirtError('the restored UEFI variable store %r is not a normalised absolute path' % path)
    os_elem = root.find('os')
    if os_elem is None:
        os_elem = etree.SubElement(root, 'os')
    nvram = os_elem.find('nvram')
    if nvram is None:
        # A shut-off domain with firmware autoselection has no <nvram> in its definition (libvirt 9.0).
        nvram = etree.Element('nvram')
        loader = os_elem.find('loader')
        if loader is not None:
            loader.addnext(nvram)
        else:
            os_elem.append(nvram)
    nvram.text = path


def _restore_disks(root, disk_paths, fmt, review):
    """Disks on the restored images; disks not restored left out; removable media refused (unless
    trust). Returns the <source> elements this wrote (their paths are the restore's own)."""
    restored = set()
    for elem in root.findall('./devices/disk'):
        target = elem.find('target')
        name = target.get('dev') if target is not None else None
        device = elem.get('device', 'disk')
        if name in disk_paths:
            elem.set('type', 'file')
            if device == 'lun':
                elem.set('device', 'disk')      # a lun passes SCSI commands to a host device
            for attr in ('sgio', 'rawio'):
                elem.attrib.pop(attr, None)     # rawio would give QEMU CAP_SYS_RAWIO
            for child in elem.findall('source') + elem.findall('backingStore') + elem.findall('mirror') + \
                    elem.findall('auth'):
                elem.remove(child)
            source = etree.Element('source', file=disk_paths[name])
            driver = elem.find('driver')
            if driver is None:
                driver = etree.SubElement(elem, 'driver', name='qemu')
            driver.set('type', fmt)
            driver.addnext(source)
            restored.add(source)
        elif device in ('disk', 'lun'):
            # A disk that was not backed up would point at the original domain's storage.
            elem.getparent().remove(elem)
            review.warn('disk %s was not restored, so the new domain does not have it' % (name or '(no target)'))
        elif not review.trust:
            source = elem.find('source')
            if source is not None and (len(source.attrib) or len(source)):
                medium = source.get('file') or source.get('dev') or source.get('dir') or source.get('volume') \
                    or source.get('name') or source.get('protocol') or 'a medium'
                review.refuse(elem, 'the %s holds %s, a host file or device the new domain would open (eject it '
                                    'from the original domain before its backup, or insert it again after the '
                                    'restore)' % (device, medium))
    return restored


def _drop_runtime_paths(root):
    """Paths libvirt generated for the running original: a pty's device, the guest agent socket."""
    for tag in CHARDEVS:
        for elem in root.findall('./devices/' + tag):
            ctype = elem.get('type', 'pty')
            if ctype == 'pty':
                elem.attrib.pop('tty', None)
                for source in elem.findall('source'):
                    source.attrib.pop('path', None)
                    if not len(source.attrib) and not len(source):
                        elem.remove(source)
            elif ctype == 'unix' and tag == 'channel':
                target = elem.find('target')
                if target is None or target.get('type') != 'virtio':
                    continue
                for source in elem.findall('source'):
                    path = source.get('path') or ''
                    if source.get('mode') == 'bind' and CHANNEL_DIR in path and '..' not in path.split('/'):
                        source.attrib.pop('path')


def _listen_on_loopback(root, review):
    for elem in root.findall('./devices/graphics'):
        if elem.get('type') not in LISTEN_GRAPHICS:
            continue
        moved = []
        if elem.get('listen') and not _loopback(elem.get('listen')):
            moved.append(elem.get('listen'))
        listens = elem.findall('listen')
        for listen in listens:
            if listen.get('type') == 'address' and listen.get('address') and not _loopback(listen.get('address')):
                moved.append(listen.get('address'))
            elif listen.get('type') == 'network':
                moved.append('the addresses of network %s' % (listen.get('network') or '(none)'))
        if not moved:
            continue
        if elem.get('listen') is not None:
            elem.set('listen', LOOPBACK)
        for listen in listens:
            if listen.get('type') == 'network' or (listen.get('type') == 'address' and listen.get('address')):
                listen.set('type', 'address')
                listen.attrib.pop('network', None)
                listen.set('address', LOOPBACK)
        review.warn('%s listened on %s: moved to %s. The saved definition carries no password, so the '
                    'console would be open to anyone who can reach the host; reach it through an SSH '
                    'tunnel, or give it a listen address and a password with virtops.libvirt.virt_domain'
                    % (_device_name(elem), ', '.join(sorted(set(moved), key=moved.index)), LOOPBACK))
    for elem in _chardevs(root):
        if elem.get('type') not in ('tcp', 'udp'):
            continue
        for source in elem.findall('source'):
            if source.get('mode') != 'bind':
                continue
            host = source.get('host')
            if host and _loopback(host):
                continue
            source.set('host', LOOPBACK)
            review.warn('%s (%s) listened on %s port %s: moved to %s, so that no one on the network '
                        'reaches the guest through it' % (_device_name(elem), elem.get('type'),
                                                          host or 'every address', source.get('service'),
                                                          LOOPBACK))


def _chardevs(root):
    """Every element that carries a character device: serial ports, consoles, channels, USB
    redirection, smartcards in passthrough mode, the egd backend of a random number generator."""
    found = []
    for tag in CHARDEVS + ('redirdev', 'smartcard'):
        found.extend(root.findall('./devices/' + tag))
    found.extend(root.findall('./devices/rng/backend[@model="egd"]'))
    return found


def _drop_socket_paths(root, review):
    """A graphics socket at a path of the saved XML: libvirt makes one of its own instead."""
    for elem in root.findall('./devices/graphics'):
        paths = []
        if elem.get('socket'):
            paths.append(elem.attrib.pop('socket'))
        for listen in elem.findall('listen'):
            if listen.get('type') == 'socket' and listen.get('socket'):
                paths.append(listen.attrib.pop('socket'))
        if paths:
            review.warn('%s: dropped the socket path %s of the saved definition; libvirt makes a socket of '
                        'its own for the new domain' % (_device_name(elem), ', '.join(paths)))


# ---------------------------------------------------------------------------------------------
# Checking (refused unless trust; listed in a warning with trust)

def _check(root, review, restored):
    dtype = root.get('type')
    if dtype not in DOMAIN_TYPES:
        review.refuse(root, 'domain type %r: backups are of QEMU domains, and definitions for other '
                            'hypervisors are not checked for host access' % dtype)
    for key in root.attrib:
        if etree.QName(key).namespace is not None:
            review.refuse(root, 'the namespaced attribute %s: libvirt reads attributes by their local name '
                                'whatever their namespace, so it cannot be checked' % key)
    _visit(root, review, top=True)
    _backstop(root, review, restored)


def _visit(elem, review, top=False):
    for child in elem:
        if not isinstance(child.tag, str):
            continue
        if top and child.tag == 'metadata':
            continue                    # applications' data: stored, never read by libvirt
        if _check_element(child, review):
            continue                    # refused as a whole: its contents are not listed again
        _visit(child, review)


def _check_element(elem, review):
    """Refuse what elem itself asks of the host; True when elem as a whole was refused."""
    qname = etree.QName(elem)
    if qname.namespace is not None:
        why = NAMESPACES.get(qname.namespace)
        return review.refuse(elem, why or 'an element in namespace %s outside <metadata>: libvirt reads some '
                                          'elements by their local name whatever their namespace, so it '
                                          'cannot be checked' % qname.namespace)
    for key in elem.attrib:
        if etree.QName(key).namespace is not None:
            review.refuse(elem, 'the namespaced attribute %s: libvirt reads attributes by their local name '
                                'whatever their namespace, so it cannot be checked' % key)
    tag = qname.localname
    parent = elem.getparent()
    ptag = parent.tag if parent is not None else None
    check = _CHECKS.get((ptag, tag)) or _CHECKS.get((None, tag))
    if check is None:
        return False
    return bool(check(elem, review))


def _loader(elem, review):
    path = _text(elem)
    if path and not _under(path, FIRMWARE_DIRS):
        return review.refuse(elem, 'the firmware would be read from the host file %s (only firmware under %s '
                                   'is allowed)' % (path, ', '.join(FIRMWARE_DIRS)))
    if path and elem.get('readonly') == 'no':
        return review.refuse(elem, "lets the guest write the host's firmware file %s" % path)
    return False


def _boot_file(elem, review):
    path = _text(elem)
    if path:
        return review.refuse(elem, 'boots from the host file %s (libvirt labels it for QEMU and the guest '
                                   'reads it)' % path)
    return False


def _bootloader(elem, review):
    if _text(elem):
        return review.refuse(elem, 'runs the host program %s to boot the domain' % _text(elem))
    return False


def _acpi_table(elem, review):
    return review.refuse(elem, 'loads the host file %s into the guest as an ACPI table' % (_text(elem) or '?'))


def _smbios(elem, review):
    if elem.get('mode') == 'host':
        return review.refuse(elem, "copies the host's SMBIOS data (serial numbers, UUID) into the guest")
    return False


def _fwcfg_entry(elem, review):
    if elem.get('file'):
        return review.refuse(elem, 'exposes the host file %s to the guest through fw_cfg' % elem.get('file'))
    return False


def _emulator(elem, review):
    path = _text(elem)
    if path and not (EMULATOR.match(path) and posixpath.normpath(path) == path):
        return review.refuse(elem, 'runs the host program %s as the emulator (allowed: qemu-system-*, qemu-kvm '
                                   'or kvm in /usr/bin, /usr/libexec, /usr/local/bin)' % path)
    return False


def _seclabel(elem, review):
    domain_level = elem.getparent() is not None and elem.getparent().getparent() is None
    if not domain_level:
        # Per device (under a <source>): the file's own labelling.
        if elem.get('relabel') == 'no' or elem.get('model') == 'none' or elem.find('label') is not None:
            return review.refuse(elem, 'overrides how libvirt labels a host file for QEMU')
        return False
    stype = elem.get('type', 'dynamic')
    if stype == 'none' or elem.get('model') == 'none':
        return review.refuse(elem, 'turns off the confinement of QEMU (SELinux/AppArmor/DAC labels)')
    if stype != 'dynamic':
        return review.refuse(elem, 'runs QEMU with a fixed security label chosen by the saved definition '
                                   "(unconfined, root, or another domain's)")
    if elem.get('relabel') == 'no':
        return review.refuse(elem, "turns off the labelling of the domain's files, so QEMU is not confined "
                                   'to them')
    if elem.find('baselabel') is not None:
        return review.refuse(elem, 'chooses the security context QEMU runs in')
    # Labels the original domain was given at start: ignored on define, dropped for clarity.
    for child in elem.findall('label') + elem.findall('imagelabel'):
        elem.remove(child)
    return False


def _refuse_with(why):
    def check(elem, review):
        return review.refuse(elem, why)
    return check


def _interface(elem, review):
    itype = elem.get('type')
    source = elem.find('source')
    if itype == 'hostdev':
        return review.refuse(elem, 'passes a host network device (a PCI or SR-IOV function) through to the guest')
    if itype == 'vdpa':
        return review.refuse(elem, 'passes the host vDPA device %s to the guest'
                             % (source.get('dev') if source is not None else '?'))
    if itype == 'vhostuser':
        return review.refuse(elem, "connects the guest's network to the host socket %s"
                             % (source.get('path') if source is not None else '?'))
    if itype == 'direct' and source is not None and source.get('mode') == 'passthrough':
        return review.refuse(elem, 'hands the host network device %s over to the guest' % source.get('dev'))
    if itype == 'ethernet':
        target = elem.find('target')
        if target is not None and target.get('managed') == 'no':
            review.refuse(target, "uses the existing host device %s (maybe another domain's)" % target.get('dev'))
        for child in elem.findall('ip') + elem.findall('route'):
            review.refuse(child, 'configures addresses or routes of the host')
    for child in elem.findall('backend'):
        for attr, default in INTERFACE_BACKEND_DEVICES.items():
            if child.get(attr) and child.get(attr) != default:
                review.refuse(child, 'opens the host device %s instead of %s' % (child.get(attr), default))
        if child.get('logFile'):
            review.refuse(child, 'writes a log to the host file %s' % child.get('logFile'))
    return False


def _script(elem, review):
    return review.refuse(elem, 'runs the host program %s as root when the interface starts or stops'
                         % (elem.get('path') or '?'))


def _filesystem(elem, review):
    ftype = elem.get('type', 'mount')
    if ftype == 'ram':
        return False                    # memory of its own, no host path
    source = elem.find('source')
    what = '?'
    if source is not None:
        what = source.get('dir') or source.get('file') or source.get('dev') or source.get('socket') or \
            source.get('name') or '?'
    return review.refuse(elem, 'shares the host path %s with the guest' % what)


def _memory_device(elem, review):
    path = elem.find('./source/path')
    if path is not None and _text(path):
        return review.refuse(elem, 'maps the host file %s into guest memory' % _text(path))
    return False


def _pstore(elem, review):
    path = elem.find('path')
    if path is not None and _text(path):
        return review.refuse(elem, "keeps the guest's crash records in the host file %s" % _text(path))
    return False


def _smartcard(elem, review):
    if elem.get('mode') == 'passthrough' and elem.get('type') == 'spicevmc':
        return False                    # the SPICE client's card, not the host's
    if elem.get('mode') == 'passthrough':
        return review.refuse(elem, 'passes a smartcard through a host channel (only the SPICE client\'s card, '
                                   "type='spicevmc', is allowed)")
    return review.refuse(elem, "gives the guest the host's smartcard reader or certificate files")


def _chardev(elem, review):
    """Serial ports, consoles, channels, redirdev and egd backends: by type."""
    ctype = elem.get('type', 'pty')
    what = _device_name(elem)
    refused = False
    log = elem.find('log')
    if log is not None and log.get('file'):
        refused = review.refuse(log, 'writes the output of %s to the host file %s' % (what, log.get('file')))
    paths = [s.get('path') for s in elem.findall('source') if s.get('path')]
    where = ', '.join(paths) or '?'
    if ctype in SAFE_CHARDEV_TYPES:
        return refused
    if ctype == 'file':
        return review.refuse(elem, 'writes the output of %s to the host file %s' % (what, where))
    if ctype == 'pipe':
        return review.refuse(elem, 'connects %s to the host pipe %s' % (what, where))
    if ctype == 'dev':
        return review.refuse(elem, 'connects %s to the host device %s' % (what, where))
    if ctype == 'unix':
        if paths:
            return review.refuse(elem, 'connects %s to the host socket %s (or replaces it)' % (what, where))
        return refused                  # libvirt makes the socket in its own directory
    if ctype in ('tcp', 'udp'):
        for source in elem.findall('source'):
            if source.get('mode', 'connect') == 'connect' and (not source.get('host') or _loopback(source.get('host'))):
                return review.refuse(elem, 'connects %s to a service on the host itself (%s port %s)'
                                     % (what, source.get('host') or 'localhost', source.get('service')))
        return refused
    return review.refuse(elem, 'character device type %r is not known to be safe' % ctype)


def _rng(elem, review):
    backend = elem.find('backend')
    if backend is None:
        return False
    model = backend.get('model')
    if model == 'random':
        if _text(backend) not in RNG_DEVICES:
            return review.refuse(elem, 'feeds the guest from the host device %s (allowed: %s)'
                                 % (_text(backend), ', '.join(d for d in RNG_DEVICES if d)))
        return False
    if model == 'egd':
        return _chardev(backend, review)
    if model == 'builtin':
        return False
    return review.refuse(elem, 'random number generator backend %r is not known to be safe' % model)


def _tpm(elem, review):
    backend = elem.find('backend')
    if backend is None:
        return False
    btype = backend.get('type')
    if btype == 'emulator':
        source = backend.find('source')
        if source is not None:
            return review.refuse(elem, 'keeps the TPM state in the host path %s' % (source.get('path') or '?'))
        return False
    if btype == 'passthrough':
        device = backend.find('device')
        return review.refuse(elem, "passes the host's TPM %s through to the guest"
                             % (device.get('path') if device is not None else '/dev/tpm0'))
    if btype == 'external':
        source = backend.find('source')
        return review.refuse(elem, "connects the guest's TPM to the host socket %s"
                             % (source.get('path') if source is not None else '?'))
    return review.refuse(elem, 'TPM backend %r is not known to be safe' % btype)


def _input(elem, review):
    if elem.get('type') in ('passthrough', 'evdev'):
        source = elem.find('source')
        device = (source.get('evdev') or source.get('dev')) if source is not None else None
        return review.refuse(elem, 'passes the host input device %s to the guest' % (device or '?'))
    return False


def _audio(elem, review):
    atype = elem.get('type', 'none')
    if atype in SAFE_AUDIO_TYPES:
        return False
    if atype == 'file':
        return review.refuse(elem, "writes the guest's sound to the host file %s" % (elem.get('path') or '?'))
    return review.refuse(elem, "plays and records through the host's sound device or server (allowed types: %s)"
                         % ', '.join(SAFE_AUDIO_TYPES))


def _graphics(elem, review):
    gtype = elem.get('type')
    if gtype in ('sdl', 'desktop'):
        return review.refuse(elem, "opens a window on the host's display")
    if gtype == 'egl-headless':
        return review.refuse(elem, "renders on the host's GPU")
    if gtype == 'dbus' and elem.get('address'):
        return review.refuse(elem, 'connects the display to the D-Bus address %s of the host' % elem.get('address'))
    for gl in elem.findall('gl'):
        if gl.get('enable') == 'yes' or gl.get('rendernode'):
            review.refuse(gl, "renders on the host's GPU%s" % (
                ' (%s)' % gl.get('rendernode') if gl.get('rendernode') else ''))
    return False


def _acceleration(elem, review):
    if elem.get('accel3d') == 'yes' or elem.get('rendernode'):
        return review.refuse(elem, "renders on the host's GPU%s" % (
            ' (%s)' % elem.get('rendernode') if elem.get('rendernode') else ''))
    return False


def _video_driver(elem, review):
    if elem.get('name') == 'vhostuser':
        return review.refuse(elem, "runs a host helper (vhost-user-gpu) that renders on the host's GPU")
    return False


def _rom(elem, review):
    path = elem.get('file')
    if path and not _under(path, ROM_DIRS):
        return review.refuse(elem, 'loads the host file %s as the option ROM (allowed under %s)'
                             % (path, ', '.join(ROM_DIRS)))
    return False


def _devices_disk(elem, review):
    # What is left after _restore_disks: restored images and (without media) removable drives.
    if elem.get('type') in ('nvme', 'vhostuser'):
        return review.refuse(elem, 'connects the guest to a host device or socket')
    return False


_CHECKS = {
    ('os', 'loader'): _loader,
    ('os', 'kernel'): _boot_file,
    ('os', 'initrd'): _boot_file,
    ('os', 'dtb'): _boot_file,
    ('os', 'shim'): _boot_file,
    ('os', 'smbios'): _smbios,
    ('acpi', 'table'): _acpi_table,
    ('domain', 'bootloader'): _bootloader,
    ('sysinfo', 'entry'): _fwcfg_entry,
    ('devices', 'emulator'): _emulator,
    (None, 'seclabel'): _seclabel,
    (None, 'hostdev'): _refuse_with('passes a host device through to the guest'),
    ('devices', 'interface'): _interface,
    (None, 'script'): _script,
    (None, 'downscript'): _script,
    ('devices', 'filesystem'): _filesystem,
    ('devices', 'shmem'): _refuse_with('maps memory shared with the host (or other domains) into the guest'),
    ('devices', 'lease'): _refuse_with('takes a lock lease in a host file'),
    ('devices', 'smartcard'): _smartcard,
    ('devices', 'serial'): _chardev,
    ('devices', 'parallel'): _chardev,
    ('devices', 'console'): _chardev,
    ('devices', 'channel'): _chardev,
    ('devices', 'redirdev'): _chardev,
    ('devices', 'rng'): _rng,
    ('devices', 'tpm'): _tpm,
    ('devices', 'memory'): _memory_device,
    ('devices', 'pstore'): _pstore,
    ('devices', 'input'): _input,
    ('devices', 'audio'): _audio,
    ('devices', 'graphics'): _graphics,
    ('model', 'acceleration'): _acceleration,
    ('video', 'driver'): _video_driver,
    (None, 'rom'): _rom,
    ('devices', 'disk'): _devices_disk,
}


def _allowed_path(elem, attr, value, restored):
    """Host paths the rules allow: the restored images, firmware, ROMs, the default tap devices."""
    tag = etree.QName(elem).localname
    if attr is None:
        ptag = elem.getparent().tag if elem.getparent() is not None else None
        if (ptag, tag) == ('os', 'loader'):
            return _under(value, FIRMWARE_DIRS)
        if (ptag, tag) == ('devices', 'emulator'):
            return bool(EMULATOR.match(value)) and posixpath.normpath(value) == value
        if (ptag, tag) == ('rng', 'backend'):
            return value in RNG_DEVICES
        return False
    if elem in restored and attr == 'file':
        return True
    if tag == 'rom' and attr == 'file':
        return _under(value, ROM_DIRS)
    if tag == 'nvram' and attr == 'template':
        return _under(value, FIRMWARE_DIRS)
    if tag == 'backend' and INTERFACE_BACKEND_DEVICES.get(attr) == value:
        return True
    if tag == 'target' and attr == 'dir' and elem.getparent().tag == 'filesystem':
        return True                     # where the guest mounts it, not a host path
    return False


def _backstop(root, review, restored):
    """Whatever the rules above did not name: an absolute host path anywhere (an attribute, or the
    text of an element outside free text) is refused, so that a device type or option this module
    does not know cannot open host files either."""
    def walk(elem, top, free):
        for child in elem:
            if not isinstance(child.tag, str):
                continue
            name = etree.QName(child).localname
            if top and name == 'metadata':
                continue
            if review.covered(child):
                continue
            child_free = free or name in FREE_TEXT
            bad = [(k, v.strip()) for k, v in child.attrib.items()
                   if v.strip().startswith('/') and not _allowed_path(child, k, v.strip(), restored)]
            text = _text(child)
            if not child_free and text.startswith('/') and not _allowed_path(child, None, text, restored):
                bad.append((None, text))
            if bad:
                review.refuse(child, 'names the host path%s %s' % (
                    's' if len(bad) > 1 else '',
                    ', '.join('%s (%s)' % (v, 'attribute %s' % k if k else 'text') for k, v in bad)))
                continue
            walk(child, False, child_free)
    walk(root, True, False)
