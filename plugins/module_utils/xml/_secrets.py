# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Private to the virtops.libvirt collection: may change without notice.
"""Secrets written in clear in the user's XML, for a module's no_log values.

Where libvirt XML holds a secret in clear: graphics passwd (VNC, SPICE, RDP) and any other
passwd or password attribute, the text (or value) of <secret>, <passwd> and <password>, and the
cookies of network disk sources. What names a secret (<secret usage=... uuid=...>) is not one.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

from ansible_collections.virtops.libvirt.plugins.module_utils._libvirt import VirtError
from ansible_collections.virtops.libvirt.plugins.module_utils.xml._document import escape_text, localname, parse

SECRET_ATTRIBUTES = ('passwd', 'password')
SECRET_ELEMENTS = ('secret', 'passwd', 'password', 'cookie')
_SECRET_ATTRIBUTE = re.compile(r'''\b(?:passwd|password)\s*=\s*(?:"([^"]*)"|'([^']*)')''', re.IGNORECASE)


def secrets(text):
    """The secrets written in XML text, for a module's no_log values: each as parsed and as XML
    escapes it (diffs show the escaped form), and each password attribute as written, found by
    pattern, so that XML too broken to parse (whose failure echoes it) hides them as well."""
    if not isinstance(text, str) or not text.strip():
        return set()
    found = set(m.group(1) or m.group(2) for m in _SECRET_ATTRIBUTE.finditer(text))
    try:
        root = parse(text)
    except (VirtError, ValueError):
        root = None
    for elem in root.iter() if root is not None else ():
        for value in _secrets_of(elem):
            found.update((value, escape_text(value, [('"', '&quot;')]), escape_text(value, [("'", '&apos;')])))
    # An empty password hides nothing, and masking blanks would garble every result.
    return set(value for value in found if value.strip())


def _secrets_of(elem):
    if not isinstance(elem.tag, str):
        return []
    values = [v for k, v in elem.attrib.items() if localname(k).lower() in SECRET_ATTRIBUTES]
    if localname(elem.tag).lower() in SECRET_ELEMENTS:
        values += [(elem.text or '').strip(), elem.get('value') or '']
    return values


def xml_option_secrets(params):
    """secrets() of a module's xml option (VirtModule's secrets hook)."""
    return secrets(params.get('xml'))
