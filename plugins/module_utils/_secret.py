# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Private to the virtops.libvirt collection: may change without notice.
"""libvirt secrets: read, define, set the value, undefine. Used by virt_secret and
virt_secret_info. Raises VirtError (or SecretError); never exits a module.

Facts this code relies on (libvirt 9.0): a secret is found by uuid or by usage (type + id); the
value of a private secret cannot be read back (VIR_ERR_INVALID_SECRET "secret is private"), nor can
one tell whether it has a value; redefining a secret keeps its value; the test driver has no secrets.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64

from ansible_collections.virtops.libvirt.plugins.module_utils._libvirt import (
    VirtError,
    is_error,
    libvirt_call,
    translate,
)
from ansible_collections.virtops.libvirt.plugins.module_utils._xmldiff import parse as parse_xml, require_lxml

try:
    from lxml import etree
except ImportError:  # pragma: no cover - reported by require_lxml
    etree = None

try:
    import libvirt
except ImportError:  # pragma: no cover - reported by VirtModule
    libvirt = None


# usage type -> (libvirt constant name, element holding the usage id)
USAGE = {
    'volume': ('VIR_SECRET_USAGE_TYPE_VOLUME', 'volume'),
    'ceph': ('VIR_SECRET_USAGE_TYPE_CEPH', 'name'),
    'iscsi': ('VIR_SECRET_USAGE_TYPE_ISCSI', 'target'),
    'tls': ('VIR_SECRET_USAGE_TYPE_TLS', 'name'),
    'vtpm': ('VIR_SECRET_USAGE_TYPE_VTPM', 'name'),
}


class SecretError(VirtError):
    """A secret operation that cannot or must not be done, explained for the user."""


def _bool(value):
    return value == 'yes'


def parse_secret_xml(xml):
    """A secret XML document as a dict: uuid, description, ephemeral, private, usage_type,
    usage_id."""
    try:
        root = parse_xml(xml, 'the secret XML')
    except VirtError as exc:
        raise SecretError(exc.msg)
    if root.tag != 'secret':
        raise SecretError('the secret XML has root element <%s>; expected <secret>' % root.tag)
    usage = root.find('usage')
    usage_type = usage.get('type') if usage is not None else None
    usage_id = None
    if usage is not None and usage_type in USAGE:
        node = usage.find(USAGE[usage_type][1])
        usage_id = node.text.strip() if node is not None and node.text else None
    uuid = root.find('uuid')
    desc = root.find('description')
    return dict(
        uuid=uuid.text.strip() if uuid is not None and uuid.text else None,
        description=desc.text.strip() if desc is not None and desc.text else None,
        ephemeral=_bool(root.get('ephemeral', 'no')),
        private=_bool(root.get('private', 'no')),
        usage_type=usage_type,
        usage_id=usage_id,
    )


def build_secret_xml(uuid=None, description=None, ephemeral=False, private=False, usage_type=None, usage_id=None):
    require_lxml()
    root = etree.Element('secret', dict(ephemeral='yes' if ephemeral else 'no', private='yes' if private else 'no'))
    if uuid:
        etree.SubElement(root, 'uuid').text = uuid
    if description:
        etree.SubElement(root, 'description').text = description
    if usage_type:
        usage = etree.SubElement(root, 'usage', dict(type=usage_type))
        etree.SubElement(usage, USAGE[usage_type][1]).text = usage_id
    return etree.tostring(root, encoding='unicode')


def _label(uuid=None, usage_type=None, usage_id=None):
    if uuid:
        return 'secret %s' % uuid
    return 'secret of usage %s %s' % (usage_type, usage_id)


def lookup_secret(conn, uuid=None, usage_type=None, usage_id=None):
    """The virSecret by uuid (when given) or usage, or None."""
    try:
        if uuid:
            return conn.secretLookupByUUIDString(uuid)
        return conn.secretLookupByUsage(getattr(libvirt, USAGE[usage_type][0]), usage_id)
    except libvirt.libvirtError as exc:
        if is_error(exc, 'VIR_ERR_NO_SECRET'):
            return None
        raise translate(exc, 'looking up %s' % _label(uuid, usage_type, usage_id))


def read_value(secret):
    """(readable, value bytes or None). A private secret is not readable; a readable secret
    without a value gives (True, None)."""
    try:
        return True, secret.value()
    except libvirt.libvirtError as exc:
        if is_error(exc, 'VIR_ERR_INVALID_SECRET'):
            return False, None
        if is_error(exc, 'VIR_ERR_NO_SECRET'):
            return True, None
        raise translate(exc, 'reading the value', 'secret %s' % secret.UUIDString())


def describe(secret):
    """A secret as the modules return it (never its value)."""
    with libvirt_call('reading the XML', 'secret'):
        xml = secret.XMLDesc(0)
    result = parse_secret_xml(xml)
    readable, value = read_value(secret)
    result['value_readable'] = readable
    result['has_value'] = (value is not None) if readable else None
    result['xml'] = xml
    return result


def list_secrets(conn):
    with libvirt_call('listing secrets'):
        return conn.listAllSecrets(0)


def secrets_info(conn, uuid=None, usage_type=None, usage_id=None):
    if uuid or usage_type:
        secret = lookup_secret(conn, uuid, usage_type, usage_id)
        return [describe(secret)] if secret is not None else []
    return [describe(s) for s in list_secrets(conn)]


def decode_value(value, encoding):
    if value is None:
        return None
    if encoding == 'base64':
        try:
            return base64.b64decode(value, validate=True)
        except Exception as exc:  # binascii.Error and TypeError
            raise SecretError('value is not valid base64: %s' % exc)
    return value.encode('utf-8')


def _comparable(desc):
    if not desc:
        return {}
    keys = ('uuid', 'description', 'ephemeral', 'private', 'usage_type', 'usage_id')
    return dict((k, desc.get(k)) for k in keys)


def ensure_present(conn, uuid=None, usage_type=None, usage_id=None, description=None, ephemeral=None,
                   private=None, value=None, value_encoding='text', force_value=False, check_mode=False):
    """Make the secret exist as requested. Returns dict(changed, secret, diff, msg,
    value_changed)."""
    if usage_type and not usage_id:
        raise SecretError('usage_type needs usage_id')
    if not uuid and not usage_type:
        raise SecretError('a secret is found by uuid or by usage_type and usage_id; give one of them')
    raw = decode_value(value, value_encoding)
    secret = lookup_secret(conn.conn, uuid, usage_type, usage_id)
    label = _label(uuid, usage_type, usage_id)
    if secret is None:
        after = dict(uuid=uuid, description=description or None, ephemeral=bool(ephemeral), private=bool(private),
                     usage_type=usage_type, usage_id=usage_id if usage_type else None,
                     value_readable=not private, has_value=raw is not None, xml=None)
        diff = dict(before={}, after=_comparable(after))
        if check_mode:
            return dict(changed=True, secret=after, diff=diff, value_changed=raw is not None,
                        msg='%s would be defined' % label)
        xml = build_secret_xml(uuid, description, ephemeral, private, usage_type, usage_id)
        with libvirt_call('defining %s' % label):
            secret = conn.conn.secretDefineXML(xml, 0)
        if raw is not None:
            with libvirt_call('setting the value', 'secret %s' % secret.UUIDString()):
                secret.setValue(raw, 0)
        after = describe(secret)
        return dict(changed=True, secret=after, diff=dict(before={}, after=_comparable(after)),
                    value_changed=raw is not None, msg='%s defined' % label)

    before = describe(secret)
    if usage_type and (before['usage_type'], before['usage_id']) != (usage_type, usage_id):
        raise SecretError('secret %s has usage %s %s, requested %s %s; the usage of a secret cannot be '
                          'changed. Nothing was changed.' % (before['uuid'], before['usage_type'],
                                                             before['usage_id'], usage_type, usage_id),
                          secret=before)
    wanted = dict(before)
    if description is not None:
        wanted['description'] = description or None
    if ephemeral is not None:
        wanted['ephemeral'] = ephemeral
    if private is not None:
        wanted['private'] = private
    redefine = _comparable(wanted) != _comparable(before)
    set_value = False
    if raw is not None:
        if before['value_readable']:
            _readable, current = read_value(secret)
            set_value = current != raw
        else:
            # The value of a private secret cannot be compared: set only when asked to.
            set_value = force_value
    if not redefine and not set_value:
        return dict(changed=False, secret=before, diff=dict(before=_comparable(before), after=_comparable(before)),
                    value_changed=False, msg='%s exists as requested' % label)
    what = ' and '.join(w for w, on in (('definition', redefine), ('value', set_value)) if on)
    after = dict(wanted)
    if set_value:
        after['has_value'] = True if after['value_readable'] else None
    diff = dict(before=_comparable(before), after=_comparable(after))
    if set_value:
        diff['before']['value'] = '(previous value)'
        diff['after']['value'] = '(new value)'
    if check_mode:
        return dict(changed=True, secret=after, diff=diff, value_changed=set_value,
                    msg='%s of %s would be changed' % (what, label))
    if redefine:
        xml = build_secret_xml(before['uuid'], wanted['description'], wanted['ephemeral'], wanted['private'],
                               before['usage_type'], before['usage_id'])
        with libvirt_call('redefining %s' % label):
            secret = conn.conn.secretDefineXML(xml, 0)
    if set_value:
        with libvirt_call('setting the value', 'secret %s' % before['uuid']):
            secret.setValue(raw, 0)
    after = describe(secret)
    diff['after'].update(_comparable(after))
    return dict(changed=True, secret=after, diff=diff, value_changed=set_value,
                msg='%s of %s changed' % (what, label))


def ensure_absent(conn, uuid=None, usage_type=None, usage_id=None, check_mode=False):
    if not uuid and not usage_type:
        raise SecretError('a secret is found by uuid or by usage_type and usage_id; give one of them')
    label = _label(uuid, usage_type, usage_id)
    secret = lookup_secret(conn.conn, uuid, usage_type, usage_id)
    if secret is None:
        return dict(changed=False, secret=None, diff=dict(before={}, after={}), msg='%s does not exist' % label)
    before = describe(secret)
    if check_mode:
        return dict(changed=True, secret=before, diff=dict(before=_comparable(before), after={}),
                    msg='%s would be undefined' % label)
    with libvirt_call('undefining %s' % label):
        secret.undefine()
    return dict(changed=True, secret=before, diff=dict(before=_comparable(before), after={}),
                msg='%s undefined' % label)
