# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Private to the virtops.libvirt collection: may change without notice.
"""XML documents: the one hardened parser every file uses, the user's object XML (root, name,
uuid), libvirt's RelaxNG schema check, rendering, and small element helpers.

The parser resolves no entities, reads nothing from the network and refuses huge trees: XML
comes from users, from libvirt and from backup repositories, and none of it is trusted.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy
import os

from ansible_collections.virtops.libvirt.plugins.module_utils._libvirt import VirtError
from ansible_collections.virtops.libvirt.plugins.module_utils._errors import (
    REASON_INVALID_XML,
    REASON_MALFORMED_XML,
    REASON_NAME_MISMATCH,
)
from ansible_collections.virtops.libvirt.plugins.module_utils._vocabulary import is_local_uri

try:
    from lxml import etree
except ImportError:  # pragma: no cover - reported by require_lxml
    etree = None


def require_lxml():
    if etree is None:
        raise VirtError('the Python lxml library is required on the managed host '
                        '(Debian/Ubuntu python3-lxml, RHEL python3-lxml)')


def escape_text(text, entities=()):
    """text as XML character data: &, < and > escaped, and each (character, entity) of entities.
    (xml.sax.saxutils would do the same, at the cost of importing urllib and http for it.)"""
    text = text.replace('&', '&amp;').replace('<', '&lt;').replace('>', '&gt;')
    for char, entity in entities:
        text = text.replace(char, entity)
    return text


def parse(text, what='XML'):
    """Parse XML text (or pass an element through); a VirtError that says where it is broken."""
    require_lxml()
    if etree.iselement(text):
        return text
    if text is None or not str(text).strip():
        raise VirtError('%s is empty' % what)
    parser = etree.XMLParser(remove_blank_text=True, remove_comments=True, remove_pis=True,
                             resolve_entities=False, no_network=True, huge_tree=False)
    data = text.encode('utf-8') if not isinstance(text, bytes) else text
    try:
        return etree.fromstring(data, parser)
    except etree.XMLSyntaxError as exc:
        raise VirtError('%s is not well-formed XML: %s' % (what, exc), reason=REASON_MALFORMED_XML)


def parse_desired(xml, tag, what, name=None):
    """The user's XML for an object named by its <name> element: (root, name, uuid).

    The root element must be <tag>; name (the module option) and <name> must agree, and a
    <name> the user left out is filled in from name. what names the object type in messages.
    """
    root = parse(xml, 'the %s XML' % what)
    if root.tag != tag:
        raise VirtError('the %s XML has root element <%s>, expected <%s>' % (what, root.tag, tag),
                        reason=REASON_INVALID_XML)
    found = (root.findtext('name') or '').strip() or None
    if found is None and name is None:
        raise VirtError('the %s XML has no <name> and no name was given' % what, reason=REASON_INVALID_XML)
    if name is not None and found is not None and name != found:
        raise VirtError('name %s differs from the XML\'s <name>%s</name>; they must agree '
                        '(leave out name, or fix one of them)' % (name, found),
                        obj=name, reason=REASON_NAME_MISMATCH)
    if found is None:
        elem = root.makeelement('name')
        elem.text = name
        root.insert(0, elem)
        found = name
    return root, found, (root.findtext('uuid') or '').strip().lower() or None


def with_uuid(root, uuid):
    """A copy of root with a <uuid> after its <name> (first when it has none): defining an
    existing object again under its own uuid, when the user wrote none."""
    root = copy.deepcopy(root)
    elem = root.makeelement('uuid')
    elem.text = uuid
    name = root.find('name')
    root.insert(root.index(name) + 1 if name is not None else 0, elem)
    return root


SCHEMA_DIR = '/usr/share/libvirt/schemas'
# Compiled schemas by (file, mtime, size): compiling domain.rng takes about 50 ms, which a
# process that checks many objects (the corpus test) need not pay for each of them.
_SCHEMAS = {}


def _compiled_schema(schema_file):
    stat = os.stat(schema_file)
    key = (schema_file, stat.st_mtime, stat.st_size)
    if key not in _SCHEMAS:
        _SCHEMAS[key] = etree.RelaxNG(etree.parse(schema_file))
    return _SCHEMAS[key]


def check_schema(uri, root, schema_name, what, name):
    """Validate against libvirt's RelaxNG schema when this host has it and the URI is local.

    Real runs validate with the define call's VALIDATE flag; check mode cannot define, so it
    uses the schema directly to predict the same failure.
    """
    schema_file = os.path.join(SCHEMA_DIR, schema_name)
    if not is_local_uri(uri) or not os.path.exists(schema_file):
        return
    try:
        schema = _compiled_schema(schema_file)
    except Exception:  # pylint: disable=broad-except
        return  # an unreadable schema is no reason to fail; the real run validates
    if not schema.validate(root):
        errors = '; '.join(e.message for e in list(schema.error_log)[:3])
        raise VirtError('%s %s: the XML does not validate against libvirt\'s schema: %s '
                        '(nothing was changed)' % (what, name, errors), obj=name, reason=REASON_INVALID_XML)


def render(elem):
    """Pretty-printed text of an element (empty string for None)."""
    if elem is None:
        return ''
    require_lxml()
    return etree.tostring(elem, pretty_print=True, encoding='unicode')


# Element helpers shared by the comparer and the profiles' rules.

def localname(tag):
    """A tag without its namespace ('{uri}name' -> 'name')."""
    return etree.QName(tag).localname if tag.startswith('{') else tag


def children(elem):
    """The child elements (no comments or processing instructions)."""
    return [c for c in elem if isinstance(c.tag, str)]


def text_of(elem):
    """An element's text without surrounding blanks; None when it has none."""
    text = elem.text or ''
    return text.strip() or None
