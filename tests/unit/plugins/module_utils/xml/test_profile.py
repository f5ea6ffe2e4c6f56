# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests of the profiles' path patterns (xml/_profile.py)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest

from ansible_collections.virtops.libvirt.plugins.module_utils.xml._profile import PathTable


@pytest.mark.parametrize('pattern, path, hit', [
    ('**/alias', 'alias', True),
    ('**/alias', 'devices/disk/alias', True),
    ('**/alias', 'devices/disk/aliases', False),
    ('devices/*/address', 'devices/disk/address', True),
    ('devices/*/address', 'devices/disk/source/address', False),
    ('memtune/*', 'memtune/hard_limit', True),
    ('', '', True),
])
def test_path_patterns(pattern, path, hit):
    table = PathTable([(pattern, True)])
    assert (table.lookup(path) is True) is hit
