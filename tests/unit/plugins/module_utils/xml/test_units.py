# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests of sizes with a unit (xml/_units.py)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.virtops.libvirt.plugins.module_utils.xml._units import from_bytes, to_bytes


def test_unit_conversion_helpers():
    assert to_bytes('64', 'MiB') == 64 * 1024 * 1024
    assert to_bytes('1', 'KB') == 1000
    assert to_bytes('x', 'KiB') is None
    assert to_bytes('1', 'furlong') is None
    assert from_bytes(1024 * 1024, 'KiB') == ('1024', 'KiB')
    assert from_bytes(1000, 'KiB') == ('1000', 'bytes')
