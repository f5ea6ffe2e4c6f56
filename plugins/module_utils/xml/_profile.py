# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Private to the virtops.libvirt collection: may change without notice.
"""Profiles: how one object type's XML is compared, as data, and the rule vocabulary every
profile shares.

- ``identity``: how items of a list are matched between desired and live XML (disks by
  ``target@dev``, controllers by ``@type`` + ``@index``, ...). Key parts the user left out fall
  back to the position among the remaining items of the same kind.
- ``owned``: lists libvirt never fills in by itself (disks, interfaces, ...): a live item the
  desired XML does not have means the user removed it, and that is a change.
- ``owned_when_given``: lists libvirt fills in only when the user wrote none of them (boot
  order, ...): authoritative as soon as the desired XML lists one.
- ``ignored``: paths never compared (runtime ids, aliases libvirt assigns, ...).
- ``units``: elements or attributes that carry a size with a unit, compared in bytes.
- ``normalizers``: per-path value normalisation (MAC addresses in lower case, ...).
- ``defaults``: attribute values libvirt drops from its output when they are the default.
- ``runtime_ignored``: paths that differ between a running object and its definition by design
  (used when comparing against the running XML).
- ``implied``: a callable that returns a copy of the desired XML with what libvirt always adds
  by itself (a CD-ROM is always read-only), so that owned lists do not see it as the user's
  removal; or a sequence of rules that each edit one such copy in place.
- ``derived``: values libvirt computes from others (a domain's memory from its NUMA cells):
  not compared when the callable says so for the desired and live XML.
- ``droppable``: elements libvirt does not store when they say only what it assumes anyway
  (a raw chardev protocol): a live object without them is no difference.

Paths are written relative to the root element: ``memory``, ``devices/disk``,
``devices/disk/target@dev`` (an attribute), ``@id`` (an attribute of the root). ``*`` matches
one path step, ``**`` any number of steps.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import fnmatch

from ansible_collections.virtops.libvirt.plugins.module_utils.xml._document import children, text_of


def split_path(path):
    """'devices/disk@dev' -> ('devices/disk', 'dev'); '@id' -> ('', 'id')."""
    if '@' in path:
        elem, attr = path.split('@', 1)
        return elem.rstrip('/'), attr
    return path, None


def _steps(path):
    return [s for s in path.split('/') if s] if path else []


def _match_steps(pattern, steps):
    """fnmatch per path step; '**' matches any number of steps (also none)."""
    if not pattern:
        return not steps
    if pattern[0] == '**':
        return any(_match_steps(pattern[1:], steps[i:]) for i in range(len(steps) + 1))
    return bool(steps) and fnmatch.fnmatchcase(steps[0], pattern[0]) and \
        _match_steps(pattern[1:], steps[1:])


class PathTable:
    """Patterns -> values; the first pattern (in the order given) that matches wins."""

    def __init__(self, entries):
        self.entries = []
        for pattern, value in (entries.items() if isinstance(entries, dict) else entries):
            elem, attr = split_path(pattern)
            self.entries.append((_steps(elem), attr, value))
        self._cache = {}

    def lookup(self, path, attr=None):
        cache_key = (path, attr)
        if cache_key not in self._cache:
            steps = _steps(path)
            found = None
            for pattern, pattern_attr, value in self.entries:
                if pattern_attr == attr and _match_steps(pattern, steps):
                    found = value
                    break
            self._cache[cache_key] = found
        return self._cache[cache_key]

    def __contains__(self, item):
        path, attr = item if isinstance(item, tuple) else (item, None)
        return self.lookup(path, attr) is not None


class Profile:
    """How one object type's XML is compared. Pure data plus tiny callables; see module doc."""

    def __init__(self, name, root, identity=None, owned=(), owned_when_given=(), ignored=(),
                 units=None, normalizers=None, defaults=None, runtime_ignored=(), masked=(), implied=None,
                 derived=None, droppable=None):
        self.name = name
        self.root = root
        self.identity = PathTable(identity or {})
        self.owned = PathTable([(p, True) for p in owned])
        self.owned_when_given = PathTable([(p, True) for p in owned_when_given])
        self.ignored = PathTable([(p, True) if isinstance(p, str) else p for p in ignored])
        self.units = PathTable(units or {})
        self.normalizers = PathTable(normalizers or {})
        self.defaults = PathTable(defaults or {})
        self.runtime_ignored = PathTable([(p, True) for p in runtime_ignored])
        self.masked = PathTable([(p, True) for p in masked])
        self.implied = implied
        # path -> callable(desired_root, live_root): True when libvirt computes the value from
        # others (it then says nothing about the user's intent and is not compared).
        self.derived = PathTable(derived or {})
        # path -> callable(desired element): True when libvirt stores nothing for an element
        # written like this (only defaults): a live object without it is no difference.
        self.droppable = PathTable(droppable or {})


# The rule vocabulary: values and small rule builders any profile may use.

def lower(value):
    """A normalizer: the value in lower case."""
    return value.lower()


# Attribute values libvirt drops as written (Profile.defaults): a default that matches any value.
ANY = object()


def any_when(attr, value):
    """A default: any value of the attribute when the live element's attr is value (libvirt
    ignores it then)."""
    return lambda live: ANY if live.get(attr) == value else None


def blank(elem):
    """An ignored rule: an element of blanks only (a description a module's facts read as
    none), neither a value nor a change."""
    return text_of(elem) is None


def only(**values):
    """A droppable rule: an element without text or children whose attributes are all these
    values."""
    def only_these(elem):
        return (text_of(elem) is None and not children(elem) and
                all(values.get(k) == v for k, v in elem.attrib.items()))
    return only_these
