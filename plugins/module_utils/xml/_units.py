# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Private to the virtops.libvirt collection: may change without notice.
"""Sizes with a unit, as libvirt writes them: conversion to and from bytes, size options of the
modules (parse_size), and where a profile finds a size in an element (UnitSpec)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

from ansible_collections.virtops.libvirt.plugins.module_utils._errors import REASON_INVALID_SIZE, VirtError


UNIT_FACTORS = {
    'b': 1, 'bytes': 1,
    'kb': 1000, 'k': 1024, 'kib': 1024,
    'mb': 1000 ** 2, 'm': 1024 ** 2, 'mib': 1024 ** 2,
    'gb': 1000 ** 3, 'g': 1024 ** 3, 'gib': 1024 ** 3,
    'tb': 1000 ** 4, 't': 1024 ** 4, 'tib': 1024 ** 4,
    'pb': 1000 ** 5, 'p': 1024 ** 5, 'pib': 1024 ** 5,
    'eb': 1000 ** 6, 'e': 1024 ** 6, 'eib': 1024 ** 6,
}

CANONICAL_UNIT_NAMES = {'bytes': 'bytes', 'kib': 'KiB', 'mib': 'MiB', 'gib': 'GiB', 'tib': 'TiB'}


def to_bytes(value, unit):
    """A size and its unit (libvirt's spellings, case-insensitive) in bytes; None if not a size."""
    try:
        number = int(str(value).strip(), 10)
    except (TypeError, ValueError):
        return None
    factor = UNIT_FACTORS.get(str(unit).strip().lower())
    if factor is None:
        return None
    return number * factor


_SIZE = re.compile(r'^\s*(\d+)\s*([A-Za-z]*)\s*$')


def parse_size(text, what='capacity'):
    """A size option ('1G', '512M', '1048576') in bytes: bare numbers are bytes, K/M/G/T and
    KiB/MiB/... powers of 1024, KB/MB/GB/TB powers of 1000 (libvirt's spellings). what names
    the option in the VirtError for anything else."""
    match = _SIZE.match(str(text))
    if match is None:
        raise VirtError('%s %r is not a size (examples: 1048576, 512M, 1G, 10GiB)' % (what, text),
                        reason=REASON_INVALID_SIZE)
    size = to_bytes(match.group(1), match.group(2) or 'bytes')
    if size is None:
        raise VirtError('%s %r has an unknown unit %r (use K, M, G, T, KiB, MiB, GiB, TiB, KB, '
                        'MB, GB or TB)' % (what, text, match.group(2)), reason=REASON_INVALID_SIZE)
    return size


def from_bytes(size, unit):
    """(value, unit) for size in bytes: in unit when it divides evenly, else in bytes."""
    factor = UNIT_FACTORS[unit.lower()]
    if size % factor == 0:
        return str(size // factor), CANONICAL_UNIT_NAMES.get(unit.lower(), unit)
    return str(size), 'bytes'


class UnitSpec:
    """Where a sized value lives: the element's text (value=None) or an attribute."""

    def __init__(self, default_unit, value=None, unit_attr='unit', canonical=None,
                 runtime_align=None, granule=None):
        self.default_unit = default_unit
        self.value = value
        self.unit_attr = unit_attr
        self.canonical = canonical or default_unit
        # libvirt stores the size in whole units of this many bytes, rounding up: a size kept
        # in KiB (virDomainParseMemory: VIR_DIV_UP(bytes, 1024)) given in MB, GB or bytes.
        self.granule = granule if granule is not None else (
            1024 if default_unit == 'KiB' else None)
        # A running object may show the size rounded up to this many bytes (QEMU aligns guest
        # memory to 1 MiB on x86); only used when comparing with the running XML.
        self.runtime_align = runtime_align

    def runtime_sizes(self, size):
        """Sizes a running object may report for a defined size."""
        if not self.runtime_align:
            return (size,)
        align = self.runtime_align
        return (size, -(-size // align) * align)
