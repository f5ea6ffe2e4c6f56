# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Private to the virtops.libvirt collection: may change without notice.
"""The checkpoint profiles: how a checkpoint's XML is compared (xml/_compare.py), for what
virt_checkpoint's options say (CHECKPOINT) and for a whole definition given as redefine_xml
(CHECKPOINT_DEFINITION)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.virtops.libvirt.plugins.module_utils.xml._profile import Profile, blank


def _without_bitmap(disk):
    """A disk listed with checkpoint='no' asks for what a disk the checkpoint does not list has."""
    return disk.get('checkpoint') == 'no'


def _disks_without_bitmap(disks):
    """A <disks> that lists only disks without a bitmap (or none) asks for what no <disks> has."""
    return all(_without_bitmap(disk) for disk in disks)


def _bitmap_by_default(root):
    """libvirt's parser reads a <disk> without checkpoint= as checkpoint='bitmap'."""
    for disk in root.findall('disks/disk'):
        if disk.get('checkpoint') is None:
            disk.set('checkpoint', 'bitmap')


# The desired XML holds the name, the description (_checkpoint.CheckpointManager fills in the
# live one when the option is unset, so a description it lacks is a removal) and the disks
# listed in the options: only whether each of those has a bitmap is compared, disks not
# listed are libvirt's choice, and when and after which checkpoint it was made is history.
CHECKPOINT = Profile(
    'checkpoint', 'domaincheckpoint',
    identity={'disks/disk': ('@name',)},
    owned=('description',),
    ignored=('creationTime', 'parent', 'parent/**', 'domain', 'domain/**', 'disks/disk@size',
             'disks/disk@bitmap', ('description', blank)),
    droppable={'disks': _disks_without_bitmap, 'disks/disk': _without_bitmap},
)

# redefine_xml restores a checkpoint's metadata exactly: every element of it counts, except the
# copy of the domain definition and the sizes libvirt reports for a running domain.
CHECKPOINT_DEFINITION = Profile(
    'checkpoint', 'domaincheckpoint',
    identity={'disks/disk': ('@name',)},
    owned=('description', 'parent', 'creationTime', 'disks', 'disks/disk'),
    ignored=('domain', 'domain/**', 'disks/disk@size', ('description', blank)),
    implied=(_bitmap_by_default,),
)
