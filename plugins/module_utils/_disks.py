# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Private to the virtops.libvirt collection: may change without notice.
"""The disks of a domain definition, read one way for every user: checkpoints, snapshots,
migration and the backup engine.

Facts this code relies on (libvirt's domain XML):
- a <disk> without a type attribute is a file disk, one without a device attribute a disk;
- the data of a disk is named by one attribute of <source>: file (type file), dev (block),
  name (network, with protocol and hosts), pool and volume (volume), dir (dir); a drive
  without <source> (an empty CD-ROM) has no medium;
- <driver type=...> is the image format; libvirt leaves it out when nobody set it.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.virtops.libvirt.plugins.module_utils._libvirt import (
    domain_label,
    flag,
    libvirt_call,
)
from ansible_collections.virtops.libvirt.plugins.module_utils.xml._document import parse


class Disk:
    """One <disk> of a domain definition.

    name: the target dev (vda); device: disk, cdrom, floppy or lun; type: file, block, network,
    volume, dir, ...; format: the driver type (qcow2, raw), None when the XML does not say;
    path: the local file or block device, None for other disks; source: what holds the data
    (the path, the network disk's name, the volume or the directory), None without a medium;
    readonly, shareable: whether the XML says so.
    """

    def __init__(self, name, device='disk', disk_type='file', fmt=None, path=None, source=None,
                 readonly=False, shareable=False):
        self.name = name
        self.device = device
        self.type = disk_type
        self.format = fmt
        self.path = path
        self.source = source
        self.readonly = readonly
        self.shareable = shareable

    @classmethod
    def from_element(cls, elem):
        """The Disk of a <disk> element, or None when it has no target dev (nothing names it)."""
        target = elem.find('target')
        if target is None or not target.get('dev'):
            return None
        driver = elem.find('driver')
        src = elem.find('source')
        path = source = None
        if src is not None:
            path = src.get('file') or src.get('dev')
            source = path or src.get('name') or src.get('volume') or src.get('dir')
        return cls(target.get('dev'), device=elem.get('device') or 'disk', disk_type=elem.get('type') or 'file',
                   fmt=driver.get('type') if driver is not None else None, path=path, source=source,
                   readonly=elem.find('readonly') is not None, shareable=elem.find('shareable') is not None)

    def __repr__(self):
        return 'Disk(%r, device=%r, type=%r, format=%r, source=%r)' % (
            self.name, self.device, self.type, self.format, self.source)


def xml_disks(xml, what='the domain definition'):
    """The disks of a domain XML (text or an element), in document order."""
    root = parse(xml, what) if isinstance(xml, str) else xml
    disks = []
    for elem in root.findall('devices/disk'):
        disk = Disk.from_element(elem)
        if disk is not None:
            disks.append(disk)
    return disks


def domain_disks(dom, inactive=False):
    """The disks of a libvirt domain: of its live definition, or with inactive of the
    persistent one (what the next start uses)."""
    label = domain_label(dom)
    flags = flag('VIR_DOMAIN_XML_INACTIVE') if inactive else 0
    with libvirt_call('reading the definition', label):
        xml = dom.XMLDesc(flags)
    return xml_disks(xml, 'the definition of %s' % label)
