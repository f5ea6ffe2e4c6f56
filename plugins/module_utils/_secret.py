# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Private to the virtops.libvirt collection: may change without notice.
"""libvirt secrets: read, define, set the value, undefine. Used by virt_secret (SecretManager,
its definition compared with the SECRET profile of _secret_profile.py, its value apart) and
virt_secret_info (read_secrets). Raises VirtError (or SecretError); never exits a module.

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
    lookup_or_none,
    translate,
)
from ansible_collections.virtops.libvirt.plugins.module_utils._lifecycle import ObjectManager, Plan
from ansible_collections.virtops.libvirt.plugins.module_utils._secret_profile import SECRET
from ansible_collections.virtops.libvirt.plugins.module_utils.xml._compare import compare
from ansible_collections.virtops.libvirt.plugins.module_utils.xml._document import etree, parse as parse_xml, require_lxml

try:
    import libvirt
except ImportError:  # pragma: no cover - reported by VirtModule
    libvirt = None


USAGE_TYPES = ['volume', 'ceph', 'iscsi', 'tls', 'vtpm']

SECRET_ARGS = dict(
    uuid=dict(type='str'),
    usage_type=dict(type='str', choices=USAGE_TYPES),
    usage_id=dict(type='str'),
    state=dict(type='str', choices=['present', 'absent'], default='present'),
    description=dict(type='str'),
    ephemeral=dict(type='bool'),
    private=dict(type='bool'),
    value=dict(type='str', no_log=True),
    value_encoding=dict(type='str', choices=['text', 'base64'], default='text'),
    force_value=dict(type='bool', default=False),
)

# Options that say what a secret holds: they mean nothing to one that is removed.
PRESENT_ONLY = ('description', 'ephemeral', 'private', 'value')

SECRET_INFO_ARGS = dict(
    uuid=dict(type='str'),
    usage_type=dict(type='str', choices=USAGE_TYPES),
    usage_id=dict(type='str'),
)

SECRET_INFO_OPTIONS = dict(
    required_together=[('usage_type', 'usage_id')],
    mutually_exclusive=[('uuid', 'usage_type')],
)

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
    action = 'looking up %s' % _label(uuid, usage_type, usage_id)
    if uuid:
        return lookup_or_none(lambda: conn.secretLookupByUUIDString(uuid), ('VIR_ERR_NO_SECRET',), action)
    usage = getattr(libvirt, USAGE[usage_type][0])
    return lookup_or_none(lambda: conn.secretLookupByUsage(usage, usage_id), ('VIR_ERR_NO_SECRET',), action)


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


def read_secrets(connection, params, warn):
    """virt_secret_info's result."""
    return dict(secrets=secrets_info(connection.conn, params['uuid'], params['usage_type'], params['usage_id']))


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


class SecretManager(ObjectManager):
    """virt_secret: compare the desired definition (SECRET_ARGS) with the live secret, and its
    value apart (the XML has none), then define, set the value or undefine (unless check mode).

    The result says what the secret is (never its value): its facts, a structured diff of them
    (the value shown only as '(previous value)' / '(new value)'), msg and value_changed."""

    kind = 'secret'
    argument_spec = SECRET_ARGS
    module_options = dict(
        required_one_of=[('uuid', 'usage_type')],
        required_together=[('usage_type', 'usage_id')],
    )
    connect_first = True

    def __init__(self, connection, params, check_mode=False, diff_mode=False, warn=None):
        ObjectManager.__init__(self, connection, params, check_mode, diff_mode, warn)
        self.raw = None            # the value to set, as bytes
        self.desired_xml = None    # the definition to store
        self.uuid = None           # the existing secret's uuid
        self.facts = None          # the secret as the result shows it
        self.value_changed = False
        self.msg = None

    def check_options(self):
        p = self.params
        if self.wants_absent():
            for opt in PRESENT_ONLY:
                if p.get(opt) is not None:
                    raise VirtError('%s applies only to state=present' % opt)
        elif p.get('usage_type') and not p.get('usage_id'):
            raise SecretError('usage_type needs usage_id')
        if not p.get('uuid') and not p.get('usage_type'):
            raise SecretError('a secret is found by uuid or by usage_type and usage_id; give one of them')
        if not self.wants_absent():
            self.raw = decode_value(p.get('value'), p.get('value_encoding') or 'text')

    def identify(self):
        return self.params.get('uuid') or self.params.get('usage_id')

    def label(self):
        p = self.params
        return _label(p.get('uuid'), p.get('usage_type'), p.get('usage_id'))

    def lookup(self):
        p = self.params
        return lookup_secret(self.conn, p.get('uuid'), p.get('usage_type'), p.get('usage_id'))

    def _message(self, done, planned):
        return (planned if self.check_mode else done) % self.obj

    # -- absent -----------------------------------------------------------------------------

    def plan_absent(self, live):
        plan = Plan()
        if live is None:
            self.msg = '%s does not exist' % self.obj
            plan.diff = dict(before={}, after={})
            return plan
        self.facts = describe(live)
        plan.add('undefine', self._undefine)
        plan.diff = dict(before=_comparable(self.facts), after={})
        self.msg = self._message('%s undefined', '%s would be undefined')
        return plan

    # -- present ----------------------------------------------------------------------------

    def plan_present(self, live):
        if live is None:
            return self._plan_new()
        return self._plan_existing(live)

    def _plan_new(self):
        p = self.params
        usage_type = p.get('usage_type')
        self.desired_xml = build_secret_xml(p.get('uuid'), p.get('description'), p.get('ephemeral'), p.get('private'),
                                            usage_type, p.get('usage_id'))
        self.facts = dict(uuid=p.get('uuid'), description=p.get('description') or None,
                          ephemeral=bool(p.get('ephemeral')), private=bool(p.get('private')),
                          usage_type=usage_type, usage_id=p.get('usage_id') if usage_type else None,
                          value_readable=not p.get('private'), has_value=self.raw is not None, xml=None)
        self.value_changed = self.raw is not None
        # A new secret is whole once its value is set: one step.
        plan = Plan().add('define', self._define)
        plan.diff = dict(before={}, after=_comparable(self.facts))
        self.msg = self._message('%s defined', '%s would be defined')
        return plan

    def _plan_existing(self, secret):
        p = self.params
        before = describe(secret)
        usage_type, usage_id = p.get('usage_type'), p.get('usage_id')
        if usage_type and (before['usage_type'], before['usage_id']) != (usage_type, usage_id):
            raise SecretError('secret %s has usage %s %s, requested %s %s; the usage of a secret cannot be '
                              'changed. Nothing was changed.' % (before['uuid'], before['usage_type'],
                                                                 before['usage_id'], usage_type, usage_id),
                              secret=before)
        self.uuid = before['uuid']
        # What the options leave out stays as it is: the desired definition starts from the live one.
        wanted = dict(before)
        if p.get('description') is not None:
            wanted['description'] = p['description'] or None
        for opt in ('ephemeral', 'private'):
            if p.get(opt) is not None:
                wanted[opt] = p[opt]
        self.desired_xml = build_secret_xml(before['uuid'], wanted['description'], wanted['ephemeral'],
                                            wanted['private'], before['usage_type'], before['usage_id'])
        redefine = compare(self.desired_xml, before['xml'], SECRET).changed
        set_value = False
        if self.raw is not None:
            if before['value_readable']:
                _readable, current = read_value(secret)
                set_value = current != self.raw
            else:
                # The value of a private secret cannot be compared: set only when asked to.
                set_value = bool(p.get('force_value'))
        self.value_changed = set_value
        plan = Plan()
        if not redefine and not set_value:
            self.facts = before
            plan.diff = dict(before=_comparable(before), after=_comparable(before))
            self.msg = '%s exists as requested' % self.obj
            return plan
        what = ' and '.join(w for w, on in (('definition', redefine), ('value', set_value)) if on)
        after = dict(wanted)
        if set_value:
            after['has_value'] = True if after['value_readable'] else None
        self.facts = after
        plan.diff = dict(before=_comparable(before), after=_comparable(after))
        if set_value:
            plan.diff['before']['value'] = '(previous value)'
            plan.diff['after']['value'] = '(new value)'
        # One step: virt_secret reports no actions, so a failure reads as libvirt's message alone.
        plan.add(' and '.join(w for w, on in (('redefine', redefine), ('set value', set_value)) if on),
                 self._change(redefine, set_value))
        self.msg = self._message('%s of %%s changed' % what, '%s of %%s would be changed' % what)
        return plan

    # -- steps ------------------------------------------------------------------------------

    def _define(self, secret):
        with libvirt_call('defining %s' % self.obj):
            secret = self.conn.secretDefineXML(self.desired_xml, 0)
        if self.raw is not None:
            self._set_value(secret, secret.UUIDString())
        return secret

    def _change(self, redefine, set_value):
        def step(secret):
            if redefine:
                with libvirt_call('redefining %s' % self.obj):
                    secret = self.conn.secretDefineXML(self.desired_xml, 0)
            if set_value:
                self._set_value(secret, self.uuid)
            return secret
        return step

    def _set_value(self, secret, uuid):
        with libvirt_call('setting the value', 'secret %s' % uuid):
            secret.setValue(self.raw, 0)

    def _undefine(self, secret):
        with libvirt_call('undefining %s' % self.obj):
            secret.undefine()
        return None

    # -- the result -------------------------------------------------------------------------

    def result_fields(self, live, plan):
        if self.wants_absent():
            return dict(secret=self.facts, msg=self.msg)
        if plan.steps and not self.check_mode:
            # What libvirt stored, read back.
            self.facts = describe(live)
            plan.diff['after'].update(_comparable(self.facts))
        return dict(secret=self.facts, value_changed=self.value_changed, msg=self.msg)
