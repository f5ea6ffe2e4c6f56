# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Private to the virtops.libvirt collection: may change without notice.
"""Intent diff of libvirt XML: does the live object already satisfy what the user wrote?

One engine for every object type; a Profile (xml/_profile.py) describes the type. Everything
follows from one rule: only what the user wrote is compared. Elements, attributes and text that
exist only in the live XML (uuid, MAC and PCI addresses, auto-added controllers, default
attributes, element order libvirt normalises) never cause a change.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy
import re

from ansible_collections.virtops.libvirt.plugins.module_utils.xml._document import (
    children,
    etree,
    localname,
    parse,
    render,
    require_lxml,
    text_of,
)
from ansible_collections.virtops.libvirt.plugins.module_utils.xml._profile import ANY, PathTable, split_path
from ansible_collections.virtops.libvirt.plugins.module_utils.xml._units import from_bytes, to_bytes
from ansible_collections.virtops.libvirt.plugins.module_utils.xml._view import unified_diff


_INT = re.compile(r'^\s*(?:[+-]?\d+|0x[0-9a-fA-F]+)\s*$')


def _as_int(value):
    value = value.strip()
    return int(value, 16) if value.lower().startswith('0x') else int(value, 10)


def values_equal(desired, live):
    """Equal as text, or as integers when both are (decimal or 0x hex: libvirt writes 0x05)."""
    if desired is None or live is None:
        return desired is live
    if desired.strip() == live.strip():
        return True
    if _INT.match(desired) and _INT.match(live):
        return _as_int(desired) == _as_int(live)
    return False


def _join(path, tag):
    step = localname(tag)
    return step if not path else path + '/' + step


class Difference:
    """One place where the live object does not have what the user asked for."""

    def __init__(self, path, before, after):
        self.path = path
        self.before = before
        self.after = after

    def __repr__(self):
        return 'Difference(%r, %r, %r)' % (self.path, self.before, self.after)

    def __str__(self):
        if self.before is None:
            return '%s: missing, wanted %s' % (self.path, self.after)
        if self.after is None:
            return '%s: %s present, not wanted' % (self.path, self.before)
        return '%s: %s, wanted %s' % (self.path, self.before, self.after)

    def as_dict(self):
        return dict(path=self.path, before=self.before, after=self.after)


class IntentDiff:
    """The result of comparing desired with live XML.

    ``changed``: the live object does not satisfy the desired one. ``differences``: where.
    ``before`` / ``after``: normalised XML of the live object projected onto what the user wrote,
    and of the desired object; their unified diff shows exactly the intended change.
    """

    def __init__(self, differences, before, after):
        self.differences = differences
        self.before = before
        self.after = after

    @property
    def changed(self):
        return bool(self.differences)

    def unified(self, before_header='before', after_header='after'):
        return unified_diff(self.before, self.after, before_header, after_header)

    def summary(self):
        return [str(d) for d in self.differences]


class Comparer:

    def __init__(self, profile, normalizers=None, runtime=False):
        self.profile = profile
        self.extra = PathTable(normalizers or {})
        self.runtime = runtime
        self.differences = []
        self.roots = None  # (desired, live) roots, for Profile.derived

    def derived(self, path):
        rule = self.profile.derived.lookup(path)
        return rule is not None and self.roots is not None and rule(*self.roots)

    # -- per-value helpers ------------------------------------------------------------------

    def ignored(self, path, attr=None, elem=None):
        hit = self.profile.ignored.lookup(path, attr)
        if hit is not None and (hit is True or elem is None or hit(elem)):
            return True
        return self.runtime and (path, attr) in self.profile.runtime_ignored

    def normalize(self, path, attr, value):
        if value is None:
            return None
        for table in (self.extra, self.profile.normalizers):
            func = table.lookup(path, attr)
            if func is not None:
                value = func(value)
        return value

    def sized(self, path, elem):
        """(bytes, canonical unit) of a sized element per the profile, or None."""
        spec = self.profile.units.lookup(path)
        if spec is None:
            return None, None
        raw = text_of(elem) if spec.value is None else elem.get(spec.value)
        size = to_bytes(raw, elem.get(spec.unit_attr) or spec.default_unit)
        if size is not None and spec.granule:
            size = (size + spec.granule - 1) // spec.granule * spec.granule   # rounded up
        return (size, spec) if size is not None else (None, spec)

    # -- identity ---------------------------------------------------------------------------

    def key_of(self, elem, path, spec):
        """The identity key of a list item: one normalised value per key part (None if unset)."""
        key = []
        for part in spec:
            sub, attr = split_path(part)
            target = elem.find(sub) if sub else elem
            if target is None:
                key.append(None)
                continue
            subpath = path + ('/' + sub if sub else '')
            value = target.get(attr) if attr else text_of(target)
            key.append(self.normalize(subpath, attr, value))
        return tuple(key)

    def describe(self, label, path, elem, spec):
        """A readable place for messages: devices/disk[vda], devices/interface[52:54:...]."""
        label = '%s/%s' % (label, localname(elem.tag)) if label else localname(elem.tag)
        if not spec:
            return label
        key = [k for k in self.key_of(elem, path, spec) if k is not None]
        return '%s[%s]' % (label, ','.join(key)) if key else label

    def match(self, desired_children, live_children, path):
        """Pair each desired child with a live child of the same kind: [(desired, live|None)].

        Items whose identity key is fully given are matched by key first; the others take the
        first unmatched live item whose key agrees on the parts they do give (position).
        """
        pairs = {}
        used = set()
        keyed = []
        for d in desired_children:
            spec = self.profile.identity.lookup(_join(path, d.tag))
            spec = spec if spec is not None else ()
            keyed.append((d, spec, self.key_of(d, _join(path, d.tag), spec) if spec else ()))
        # Pass 1: complete keys. Several live items may share a key (USB companion
        # controllers share an index): first pair the items that agree on every attribute the
        # desired one has, then the rest with the one that agrees on most of them.
        for exact in (True, False):
            for d, spec, key in keyed:
                if id(d) in pairs or not spec or any(k is None for k in key):
                    continue
                cpath = _join(path, d.tag)
                agreeing = [i for i, candidate in enumerate(live_children)
                            if i not in used and candidate.tag == d.tag and
                            self._keys_agree(key, self.key_of(candidate, cpath, spec))]
                if not agreeing:
                    continue
                i = max(agreeing, key=lambda j: (_agreement(d, live_children[j]), -j))
                if exact and _agreement(d, live_children[i]) < len(d.attrib):
                    continue
                pairs[id(d)] = live_children[i]
                used.add(i)
        # Pass 2: partial or no key, by position: the live item at the same position among
        # items of its kind when it is free and agrees, else the first free one that agrees.
        ordinals = {}
        for d, spec, key in keyed:
            ordinal = ordinals[d.tag] = ordinals.get(d.tag, -1) + 1
            if id(d) in pairs or (spec and all(k is not None for k in key)):
                continue
            cpath = _join(path, d.tag)
            same_kind = [i for i, c in enumerate(live_children) if c.tag == d.tag]
            agreeing = [i for i in same_kind if i not in used and
                        (not spec or self._keys_agree(key, self.key_of(live_children[i],
                                                                       cpath, spec)))]
            if not agreeing:
                continue
            i = same_kind[ordinal] if ordinal < len(same_kind) and \
                same_kind[ordinal] in agreeing else agreeing[0]
            pairs[id(d)] = live_children[i]
            used.add(i)
        leftovers = [c for i, c in enumerate(live_children) if i not in used]
        return [(d, pairs.get(id(d))) for d in desired_children], leftovers

    @staticmethod
    def _keys_agree(desired_key, live_key):
        return all(d is None or values_equal(d, l) for d, l in zip(desired_key, live_key))

    # -- the walk ---------------------------------------------------------------------------

    def walk(self, desired, live, path, before_parent, after_parent, label):
        """Compare one desired element with its live match (or None); build both projections."""
        if live is None:
            droppable = self.profile.droppable.lookup(path)
            if droppable is not None and droppable(desired):
                return  # libvirt does not store it: nothing to compare
            self.differences.append(Difference(label or localname(desired.tag), None,
                                               _short(desired)))
            self._copy_into(desired, path, after_parent)
            return
        after = etree.SubElement(after_parent, desired.tag,
                                 nsmap=_own_nsmap(desired, after_parent))
        before = etree.SubElement(before_parent, live.tag, nsmap=_own_nsmap(live, before_parent))
        sized = self._compare_size(desired, live, path, before, after, label)
        self._compare_attributes(desired, live, path, before, after, label, sized)
        if sized is None or sized.value is not None:
            self._compare_text(desired, live, path, before, after, label)
        self._compare_children(desired, live, path, before, after, label)

    def _compare_attributes(self, desired, live, path, before, after, label, sized):
        for attr, dvalue in desired.attrib.items():
            if self.ignored(path, attr):
                continue
            if sized is not None and attr in (sized.value, sized.unit_attr):
                continue
            shown = _mask(self.profile, path, attr)
            dnorm = self.normalize(path, attr, dvalue)
            lvalue = live.get(attr)
            default = self.profile.defaults.lookup(path, attr)
            if callable(default):
                default = default(live)
            if default is ANY:  # libvirt ignores the value here: whatever it stored
                after.set(attr, shown or dnorm)
                before.set(attr, shown or dnorm)
                continue
            if lvalue is None:
                lvalue = default
            lnorm = self.normalize(path, attr, lvalue)
            after.set(attr, shown or dnorm)
            if lnorm is not None and values_equal(dnorm, lnorm):
                before.set(attr, shown or dnorm)
                continue
            if lnorm is not None:
                before.set(attr, (shown + ' (differs)') if shown else lnorm)
            self.differences.append(Difference('%s@%s' % (label, attr),
                                               None if lnorm is None else (shown or lnorm),
                                               shown or dnorm))

    def _compare_size(self, desired, live, path, before, after, label):
        """Compare a sized value in bytes; its spec when the desired one is a size, else None."""
        dsize, spec = self.sized(path, desired)
        if dsize is None:
            return None  # not a size the engine understands: compared as written
        lsize = self.sized(path, live)[0]
        value, unit = from_bytes(dsize, spec.canonical)
        _set_size(after, spec, value, unit)
        if lsize == dsize or (self.runtime and lsize in spec.runtime_sizes(dsize)):
            _set_size(before, spec, value, unit)
            return spec
        if lsize is not None:
            _set_size(before, spec, *from_bytes(lsize, spec.canonical))
        where = label if spec.value is None else '%s@%s' % (label, spec.value)
        self.differences.append(Difference(
            where, None if lsize is None else '%s %s' % from_bytes(lsize, spec.canonical),
            '%s %s' % (value, unit)))
        return spec

    def _compare_text(self, desired, live, path, before, after, label):
        dtext = text_of(desired)
        if dtext is None:
            return
        dnorm = self.normalize(path, None, dtext)
        lnorm = self.normalize(path, None, text_of(live))
        after.text = dnorm
        if lnorm is not None and values_equal(dnorm, lnorm):
            before.text = dnorm
            return
        before.text = lnorm
        self.differences.append(Difference(label, lnorm, dnorm))

    def _compare_children(self, desired, live, path, before, after, label):
        dchildren = [c for c in children(desired)
                     if not self.ignored(_join(path, c.tag), None, c) and
                     not self.derived(_join(path, c.tag))]
        lchildren = [c for c in children(live)
                     if not self.ignored(_join(path, c.tag), None, c)]
        pairs, leftovers = self.match(dchildren, lchildren, path)
        given = set(d.tag for d in dchildren)
        for d, l in pairs:
            cpath = _join(path, d.tag)
            spec = self.profile.identity.lookup(cpath) or ()
            self.walk(d, l, cpath, before, after, self.describe(label, cpath, d, spec))
        for extra in leftovers:
            cpath = _join(path, extra.tag)
            if (cpath in self.profile.owned or
                    (extra.tag in given and cpath in self.profile.owned_when_given)):
                spec = self.profile.identity.lookup(cpath) or ()
                self.differences.append(Difference(self.describe(label, cpath, extra, spec),
                                                   _short(extra), None))
                self._copy_into(extra, cpath, before)

    def _copy_into(self, source, path, parent):
        """Normalised copy of a whole element (desired-only or live-only) into a projection."""
        elem = etree.SubElement(parent, source.tag, nsmap=_own_nsmap(source, parent))
        spec = self.profile.units.lookup(path)
        size = self.sized(path, source)[0] if spec is not None else None
        for attr, value in source.attrib.items():
            if self.ignored(path, attr):
                continue
            if size is not None and attr in (spec.value, spec.unit_attr):
                continue
            elem.set(attr, _mask(self.profile, path, attr) or self.normalize(path, attr, value))
        if size is not None:
            _set_size(elem, spec, *from_bytes(size, spec.canonical))
        elif text_of(source) is not None:
            elem.text = self.normalize(path, None, text_of(source))
        for child in children(source):
            cpath = _join(path, child.tag)
            if not self.ignored(cpath, None, child):
                self._copy_into(child, cpath, elem)
        return elem


def _agreement(desired, live):
    """How many of desired's attributes live has with the same value."""
    return sum(1 for k, v in desired.attrib.items() if live.get(k) == v)


def _set_size(elem, spec, value, unit):
    if elem is None:
        return
    if spec.value is None:
        elem.text = value
    else:
        elem.set(spec.value, value)
    elem.set(spec.unit_attr, unit)


def _mask(profile, path, attr):
    return '********' if (path, attr) in profile.masked else None


def _short(elem):
    """A one-line rendering of an element for messages."""
    text = etree.tostring(elem, encoding='unicode', with_tail=False)
    text = re.sub(r'\s*\n\s*', '', text)
    for match in re.finditer(r'(passwd)=(["\'])[^"\']*\2', text):
        text = text.replace(match.group(0), '%s="********"' % match.group(1))
    return text if len(text) <= 200 else text[:197] + '...'


def _own_nsmap(elem, parent):
    """Namespace declarations elem needs beyond what parent already declares."""
    if parent is None:
        return dict(elem.nsmap)
    inherited = parent.nsmap
    return dict((k, v) for k, v in elem.nsmap.items() if inherited.get(k) != v)


class _Holder:
    """A throwaway parent so the root goes through the same code as every other element."""

    def __init__(self):
        self.elem = etree.Element('holder')


def apply_implied(desired, profile):
    """desired as libvirt will store it per profile.implied: a callable returning a (copy of
    the) root, or a sequence of rules that edit one copy in place."""
    if profile.implied is None:
        return desired
    if callable(profile.implied):
        return profile.implied(desired)
    desired = copy.deepcopy(desired)
    for rule in profile.implied:
        rule(desired)
    return desired


def compare(desired, live, profile, normalizers=None, runtime=False):
    """Does live satisfy desired? An IntentDiff.

    desired, live: XML text or lxml elements; live may be None (the object does not exist).
    profile: a Profile.
    normalizers: extra {path: callable} for values only the caller can normalise (for example
    machine type aliases the caller resolved with the hypervisor's capabilities).
    runtime: live is the running XML of an active object; ignore what differs at run time by
    design and do not treat extra items as removals.
    """
    require_lxml()
    desired = parse(desired, 'desired %s XML' % profile.name)
    desired = apply_implied(desired, profile)
    comparer = Comparer(profile, normalizers, runtime)
    after_holder, before_holder = _Holder(), _Holder()
    if live is None:
        root = comparer._copy_into(desired, '', after_holder.elem)
        return IntentDiff([Difference('', None, 'the whole %s' % profile.name)], '',
                          render(root))
    live = parse(live, 'live %s XML' % profile.name)
    if desired.tag != live.tag:
        root = comparer._copy_into(desired, '', after_holder.elem)
        other = comparer._copy_into(live, '', before_holder.elem)
        return IntentDiff([Difference('', localname(live.tag), localname(desired.tag))],
                          render(other), render(root))
    comparer.roots = (desired, live)
    comparer.walk(desired, live, '', before_holder.elem, after_holder.elem, '')
    after = children(after_holder.elem)[0]
    befores = children(before_holder.elem)
    before = befores[0] if befores else None
    return IntentDiff(comparer.differences, render(before), render(after))


def normalized(xml, profile, normalizers=None):
    """Normalised text of one XML document (sizes in canonical units, ignored paths dropped)."""
    require_lxml()
    holder = _Holder()
    comparer = Comparer(profile, normalizers)
    return render(comparer._copy_into(parse(xml), '', holder.elem))
