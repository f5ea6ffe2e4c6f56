# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Private to the virtops.libvirt collection: may change without notice.
"""libvirt XML, one job per file; this package knows no object type.

- ``_document.py``: the one hardened parser (no entities, no network, no huge trees) that every
  file uses, backup/ included; the user's object XML (parse_desired, with_uuid); libvirt's
  RelaxNG schema check; rendering; small element helpers; lxml's ``etree`` for building XML.
- ``_units.py``: sizes with a unit (to_bytes, from_bytes) and where a profile finds them (UnitSpec).
- ``_profile.py``: Profile, the data that says how one object type is compared, and the rule
  vocabulary every profile shares (lower, ANY, any_when, only).
- ``_compare.py``: the comparer: does the live XML satisfy the desired one (compare, IntentDiff,
  Difference, normalized, apply_implied, values_equal).
- ``_view.py``: what diff mode shows (diff_view, facts_text, unified_diff).
- ``_secrets.py``: secrets written in clear in the user's XML, for no_log.

Each object type's profile lives beside its manager, in
``plugins/module_utils/_<type>_profile.py`` next to ``_<type>.py`` (``_domain_profile.py``
holds DOMAIN, ``_pool_profile.py`` STORAGE_POOL, and so on): the manager stays one job, and the
profile module holds the profile and the rules it needs (what libvirt's parser rewrites, drops
or derives for that type). A profile module imports only from this package, except that
``_nwfilter_profile.py`` takes the MAC and IP address forms of ``_network_profile.py``.
"""
