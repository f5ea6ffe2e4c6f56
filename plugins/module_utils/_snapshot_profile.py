# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Private to the virtops.libvirt collection: may change without notice.
"""The SNAPSHOT profile: how a snapshot's XML is compared (xml/_compare.py) with what
virt_snapshot's options can change of an existing snapshot."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.virtops.libvirt.plugins.module_utils.xml._profile import Profile, blank


# The desired XML holds the name and the description (_snapshot.SnapshotManager fills in the
# live one when the option is unset, so a description it lacks is a removal): the disks and the
# memory state are made with the snapshot and never change, and its type is checked apart.
SNAPSHOT = Profile(
    'snapshot', 'domainsnapshot',
    owned=('description',),
    ignored=('domain', 'domain/**', 'inactiveDomain', 'inactiveDomain/**', ('description', blank)),
)
