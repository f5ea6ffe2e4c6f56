# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests of the hardened parser (xml/_document.py)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest

pytest.importorskip('lxml')

from ansible_collections.virtops.libvirt.plugins.module_utils.xml._document import parse  # noqa: E402


def test_entities_are_not_resolved():
    text = ('<!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
            '<domain><name>&x;</name></domain>')
    root = parse(text)
    assert 'root:' not in (root.findtext('name') or '')
