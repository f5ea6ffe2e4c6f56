# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Private to the virtops.libvirt collection: may change without notice.
"""What diff mode shows: Ansible's before/after of one object and unified diffs of texts."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import difflib


def diff_view(obj, before, after):
    """Ansible's diff of one object: before is what libvirt has, after what the user asked for."""
    return dict(before_header='%s (live)' % obj, after_header='%s (desired)' % obj, before=before, after=after)


def facts_text(facts, xml='', keys=('state', 'autostart')):
    """An object's state lines (# state: running, # autostart: yes) above its XML, for diff mode;
    facts None is an object that does not exist."""
    if facts is None:
        return ''
    lines = ['# %s: %s' % (k, _yes_no(facts[k])) for k in keys if facts.get(k) is not None]
    return '\n'.join(lines) + '\n' + (xml or '')


def _yes_no(value):
    if isinstance(value, bool):
        return 'yes' if value else 'no'
    return str(value)


def unified_diff(before, after, before_header='before', after_header='after'):
    """A unified diff of two texts, as one string ('' when equal)."""
    lines = difflib.unified_diff(before.splitlines(True), after.splitlines(True),
                                 before_header, after_header)
    return ''.join(line if line.endswith('\n') else line + '\n' for line in lines)
