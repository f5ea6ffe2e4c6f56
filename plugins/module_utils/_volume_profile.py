# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Private to the virtops.libvirt collection: may change without notice.
"""The VOLUME profile: how virt_volume compares the volume it is asked for with a live volume's
XML (xml/_compare.py). The desired side holds only what the module's options set: capacity,
target/format@type and backingStore/path."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

from ansible_collections.virtops.libvirt.plugins.module_utils.xml._profile import Profile
from ansible_collections.virtops.libvirt.plugins.module_utils.xml._units import UnitSpec


VOLUME = Profile(
    'storage volume', 'volume',
    # What libvirt computes for a volume (allocation, its key and path, timestamps) says nothing
    # about what the user asked for.
    ignored=('allocation', 'physical', 'key', 'target/path', 'target/timestamps',
             'target/timestamps/**'),
    units={'capacity': UnitSpec('bytes'), 'allocation': UnitSpec('bytes'),
           'physical': UnitSpec('bytes')},
    # The same backing file written as /a/./b or /a//b.
    normalizers={'backingStore/path': os.path.normpath},
)
