# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Private to the virtops.libvirt collection: may change without notice.
"""One device of a domain (disk, interface, host device, controller, ...): attached, updated or
detached, in the running domain (live) and/or its persistent definition (config).

Used by virt_domain_device. Every helper raises VirtError; nothing here exits.

Facts this code relies on (libvirt 9.0, QEMU 7.2):
- virDomainAttachDeviceFlags / UpdateDeviceFlags / DetachDeviceFlags act on the live domain
  and/or the persistent definition (VIR_DOMAIN_AFFECT_LIVE / _CONFIG). The test:///default
  driver has none of the three.
- A live detach only asks QEMU to unplug the device: libvirt waits 5 s for QEMU's
  DEVICE_DELETED event and then returns success even when the device is still there. A PCI
  device (virtio disk or NIC) goes away only when the guest OS acknowledges the ACPI request; a
  disk on a virtio-scsi or USB bus goes at once. Asking again while it is pending is harmless.
- libvirt's parser silently ignores unknown elements in device XML, so the schema is checked
  before attaching (else the next run would report a change again, for ever).
- libvirt marks every CD-ROM read-only (<readonly/> appears even when the XML has none).
- Live updates in the QEMU driver: CD-ROM and floppy media (<source>), an interface's link
  state, bandwidth, network source and filter, graphics passwords. Anything else of a running
  device needs a detach and attach (guest cooperation) or a restart.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy
import os
import re
import time

from ansible_collections.virtops.libvirt.plugins.module_utils._libvirt import (
    VirtError,
    libvirt,
    libvirt_call,
    optional_flag as _flag,
    translate,
)
from ansible_collections.virtops.libvirt.plugins.module_utils._errors import (
    REASON_AMBIGUOUS_DEVICE,
    REASON_DETACH_TIMEOUT,
    REASON_DOMAIN_NOT_PERSISTENT,
    REASON_DOMAIN_NOT_RUNNING,
    REASON_INVALID_XML,
    REASON_NOT_FOUND,
    REASON_NOT_UPDATABLE_LIVE,
    REASON_NO_IDENTITY,
    REASON_NO_SCOPE,
)
from ansible_collections.virtops.libvirt.plugins.module_utils._domain_profile import DOMAIN
from ansible_collections.virtops.libvirt.plugins.module_utils.xml import _compare, _document
from ansible_collections.virtops.libvirt.plugins.module_utils.xml._secrets import xml_option_secrets
from ansible_collections.virtops.libvirt.plugins.module_utils._lifecycle import ObjectManager, Plan
from ansible_collections.virtops.libvirt.plugins.module_utils._vocabulary import ACTIVE_STATES, domain_state, is_local_uri


DEVICE_ARGS = dict(
    name=dict(type='str', required=True),
    xml=dict(type='str', required=True),
    state=dict(type='str', default='present', choices=['present', 'absent']),
    live=dict(type='bool'),
    config=dict(type='bool'),
    timeout=dict(type='int', default=30),
)

# The device elements of libvirt's domain XML (children of <devices>).
DEVICE_TAGS = (
    'disk', 'controller', 'lease', 'filesystem', 'interface', 'input', 'sound', 'hostdev',
    'graphics', 'video', 'console', 'serial', 'parallel', 'channel', 'smartcard', 'hub',
    'redirdev', 'redirfilter', 'rng', 'tpm', 'shmem', 'memory', 'watchdog', 'memballoon',
    'nvram', 'panic', 'iommu', 'vsock', 'audio', 'crypto',
)

# What libvirt's QEMU driver changes on a running device (virDomainUpdateDeviceFlags), as
# paths relative to the device element. A difference anywhere else cannot be applied live.
LIVE_UPDATABLE = {
    'disk': ('source', '@type'),  # media change; only for device='cdrom' / 'floppy'
    'interface': ('link', 'bandwidth', 'source', 'filterref'),
    'graphics': ('@passwd', '@passwdValidTo', '@connected'),
}

POLL_INTERVAL = 0.25


AFFECT = {'live': 'VIR_DOMAIN_AFFECT_LIVE', 'config': 'VIR_DOMAIN_AFFECT_CONFIG'}


# ---------------------------------------------------------------------------------------------
# The desired device

def _user_alias(elem):
    """The user alias (ua-...) of a device element, or None (libvirt's own aliases are not)."""
    alias = elem.find('alias')
    name = (alias.get('name') or '') if alias is not None else ''
    return name if name.startswith('ua-') else None


def _identity_spec(tag):
    spec = DOMAIN.identity.lookup('devices/' + tag)
    return tuple(spec) if spec else ()


def _key_of(elem):
    """The identity key of a device per the shared DOMAIN profile (normalised; None if unset)."""
    tag = elem.tag
    # The diff engine's own key extraction, so identity means the same everywhere.
    comparer = _compare.Comparer(DOMAIN)
    return comparer.key_of(elem, 'devices/' + tag, _identity_spec(tag))


def _source_attrs(elem):
    """A hostdev's <source> as [(path, attribute, value)]: what identifies the host device."""
    source = elem.find('source')
    found = []
    if source is None:
        return found
    for node in source.iter():
        if not isinstance(node.tag, str):
            continue
        path = _relpath(source, node)
        for attr, value in sorted(node.attrib.items()):
            found.append((path, attr, value))
    return found


def _relpath(top, node):
    steps = []
    while node is not top and node is not None:
        steps.append(node.tag)
        node = node.getparent()
    return '/'.join(reversed(steps))


class DesiredDevice:
    """The user's device XML, parsed and checked: one known device element that can be found
    again in the domain (by alias, target dev, MAC, host source or kind)."""

    def __init__(self, xml, domain_name):
        self.domain_name = domain_name
        where = 'the device XML for domain %s' % domain_name
        text = xml if xml is None else str(xml).strip()
        if text and re.match(r'^<\?xml[^>]*\?>\s*$', text):
            text = ''
        self.root = _document.parse(text, where)
        tag = self.root.tag if isinstance(self.root.tag, str) else ''
        if tag in ('devices', 'domain'):
            holder = self.root.find('devices') if tag == 'domain' else self.root
            children = [c for c in holder if isinstance(c.tag, str)] if holder is not None else []
            raise VirtError(
                '%s has a <%s> element holding %d device(s); give exactly one device element '
                '(for example <disk>...</disk>) and one task per device (nothing was changed)'
                % (where, tag, len(children)), obj=domain_name, reason=REASON_INVALID_XML)
        if tag not in DEVICE_TAGS:
            raise VirtError(
                '%s has root element <%s>, which is not a libvirt device; expected one of %s '
                '(nothing was changed)' % (where, tag, ', '.join(DEVICE_TAGS)),
                obj=domain_name, reason=REASON_INVALID_XML)
        self.tag = tag
        self.alias = _user_alias(self.root)
        alias = self.root.find('alias')
        if alias is not None and self.alias is None:
            raise VirtError(
                '%s: <alias name=\'%s\'> is not a user alias; libvirt keeps only aliases that '
                'start with "ua-" (nothing was changed)' % (where, alias.get('name') or ''),
                obj=domain_name, reason=REASON_INVALID_XML)
        self.key = _key_of(self.root)
        self.source = _source_attrs(self.root) if tag == 'hostdev' else []
        self.label = self._label()
        self.obj = '%s on domain %s' % (self.label, domain_name)
        self._check_identity()

    def _label(self):
        if self.tag == 'disk':
            words = [self.root.get('device') or 'disk']  # disk, cdrom, floppy, lun
        else:
            words = [self.tag]
        if self.tag == 'hostdev':
            words.extend('%s=%s' % (attr, value) for _path, attr, value in self.source)
        else:
            words.extend(k for k in self.key if k is not None)
        if self.alias and self.alias not in words:
            words.append('(%s)' % self.alias)
        return ' '.join(words)

    def _check_identity(self):
        where = 'device XML for domain %s' % self.domain_name
        if self.tag == 'disk' and self.key[0] is None:
            raise VirtError('%s: a <disk> needs <target dev=...>, which identifies it in the '
                            'domain (nothing was changed)' % where, obj=self.domain_name,
                            reason=REASON_NO_IDENTITY)
        if self.tag == 'interface' and self.key[0] is None and self.alias is None:
            raise VirtError(
                '%s: an <interface> needs <mac address=...> or a user alias '
                '(<alias name=\'ua-...\'/>) to be recognised: without them libvirt generates a '
                'new MAC address on every attach, so every run would add another interface '
                '(nothing was changed)' % where, obj=self.domain_name, reason=REASON_NO_IDENTITY)
        if self.tag == 'hostdev' and not self.source and self.alias is None:
            raise VirtError('%s: a <hostdev> needs its <source> (host address, or vendor and '
                            'product) or a user alias to be recognised (nothing was changed)'
                            % where, obj=self.domain_name, reason=REASON_NO_IDENTITY)

    def compared(self):
        """The desired device as compared: libvirt makes every CD-ROM read-only."""
        root = copy.deepcopy(self.root)
        if root.tag == 'disk' and root.get('device') == 'cdrom' and root.find('readonly') is None:
            root.append(root.makeelement('readonly'))
        return root


# ---------------------------------------------------------------------------------------------
# Finding the device in a domain XML

def _agree(desired_key, live_key):
    return all(d is None or _compare.values_equal(d, l) for d, l in zip(desired_key, live_key))


def _source_agrees(desired_source, elem):
    live = _source_attrs(elem)
    for path, attr, value in desired_source:
        if not any(p == path and a == attr and _compare.values_equal(value, v)
                   for p, a, v in live):
            return False
    return True


def find_device(desired, root, scope):
    """The element of root (a domain XML) that is the desired device, or None.

    A user alias identifies a device of any kind. Without a match by alias, a disk is found by
    target dev, an interface by MAC, a hostdev by its host source, and other kinds by the
    identity attributes of the shared DOMAIN profile that the XML gives (controller type and
    index, serial port, RNG model, ...), or by kind alone: more than one candidate is an error.
    """
    candidates = root.findall('devices/' + desired.tag)
    if desired.alias:
        for elem in candidates:
            if _user_alias(elem) == desired.alias:
                return elem
        # An alias nobody has yet: a disk's target and an interface's MAC are unique anyway;
        # any other kind with a new alias is a new device.
        unique = (desired.tag == 'disk' or
                  (desired.tag == 'interface' and desired.key[0] is not None))
        if not unique:
            return None
    if desired.tag == 'hostdev':
        hits = [e for e in candidates if _source_agrees(desired.source, e)]
    else:
        hits = [e for e in candidates if _agree(desired.key, _key_of(e))]
    if len(hits) > 1:
        raise VirtError(
            '%s: the %s configuration has %d <%s> devices that match the XML; give the device a '
            'user alias (<alias name=\'ua-...\'/>) or the attributes that tell them apart '
            '(nothing was changed)' % (desired.obj, scope, len(hits), desired.tag),
            obj=desired.domain_name, reason=REASON_AMBIGUOUS_DEVICE)
    return hits[0] if hits else None


# ---------------------------------------------------------------------------------------------
# Comparing

def _wrap(device):
    """A <domain><devices>device</devices></domain> around a copy of device, so the shared
    DOMAIN profile (paths under devices/) applies unchanged."""
    root = _document.etree.Element('domain')
    devices = _document.etree.SubElement(root, 'devices')
    devices.append(copy.deepcopy(device))
    return root


def _unwrap(text):
    """The device element's text from a rendered wrapped document ('' when there is none)."""
    if not text:
        return ''
    root = _document.parse(text)
    found = list(root.iterfind('devices/*'))
    return _document.render(found[0]) if found else ''


def compare_device(desired, existing, scope):
    """The IntentDiff of the desired device against the existing element (None: missing)."""
    return _compare.compare(_wrap(desired.compared()),
                            _wrap(existing) if existing is not None else None,
                            DOMAIN, runtime=scope == 'live')


def normalized_device(elem):
    return _unwrap(_compare.normalized(_wrap(elem), DOMAIN))


def _relative(difference):
    """A Difference's path relative to the device element: 'source@file', 'link@state', ''."""
    path = re.sub(r'\[[^\]]*\]', '', difference.path)
    parts = path.split('/', 2)
    if len(parts) < 2 or parts[0] != 'devices':
        return None  # the whole device
    if len(parts) == 2:
        step = parts[1]
        return step[step.index('@'):] if '@' in step else ''
    return parts[2]


def live_updatable(desired, existing, intent):
    """Can libvirt apply these differences to the running device (virDomainUpdateDeviceFlags)?"""
    allowed = LIVE_UPDATABLE.get(desired.tag, ())
    if desired.tag == 'disk' and (existing.get('device') or 'disk') not in ('cdrom', 'floppy'):
        return False
    for diff in intent.differences:
        rel = _relative(diff)
        if not rel:
            return False
        if not any(rel == p or rel.startswith(p + '/') or rel.startswith(p + '@')
                   for p in allowed):
            return False
    return True


def merged(desired, existing, carry_address=True):
    """The device XML to apply: the user's element plus what libvirt generated for the existing
    device and the user left out (MAC address, bus address, user alias), so an update keeps the
    device where the guest sees it."""
    root = copy.deepcopy(desired.root)
    if existing is None:
        return root
    names = ['mac'] if root.tag == 'interface' else []
    if carry_address:
        names.append('address')
    for name in names:
        if root.find(name) is None and existing.find(name) is not None:
            root.append(copy.deepcopy(existing.find(name)))
    if root.find('alias') is None and _user_alias(existing):
        root.append(copy.deepcopy(existing.find('alias')))
    return root


# ---------------------------------------------------------------------------------------------
# Schema

# Device element -> the name of its definition in libvirt's domain schema.
SCHEMA_DEFINES = {'graphics': 'graphic', 'memory': 'memorydev'}

_GRAMMAR = ('<grammar xmlns="http://relaxng.org/ns/structure/1.0" '
            'datatypeLibrary="http://www.w3.org/2001/XMLSchema-datatypes">'
            '<include href="domain.rng"><start><ref name="%s"/></start></include></grammar>')


def validate_device(uri, elem, obj, domain_name):
    """Validate one device element against its definition in libvirt's domain schema, when
    this host has the schema and the URI is local (as _document.check_schema does for whole
    documents). libvirt ignores unknown device XML silently, and its attach API has no
    validate flag, so this runs in real runs too."""
    schema_file = os.path.join(_document.SCHEMA_DIR, 'domain.rng')
    if not is_local_uri(uri) or not os.path.exists(schema_file):
        return
    define = SCHEMA_DEFINES.get(elem.tag, elem.tag)
    try:
        grammar = _document.etree.fromstring(
            _GRAMMAR % define, base_url=os.path.join(_document.SCHEMA_DIR, 'device.rng'))
        schema = _document.etree.RelaxNG(grammar)
    except Exception:  # pylint: disable=broad-except
        return  # a schema without this device's definition is no reason to fail
    if not schema.validate(elem):
        errors = '; '.join(e.message for e in list(schema.error_log)[:3])
        raise VirtError('%s: the device XML does not validate against libvirt\'s schema: %s '
                        '(nothing was changed)' % (obj, errors), obj=domain_name,
                        reason=REASON_INVALID_XML)


# ---------------------------------------------------------------------------------------------
# The manager

class Change:
    """One planned change of the device: action (attach, update, detach) in scope (live,
    config). str() is the step's name in the result's actions."""

    def __init__(self, action, scope, existing=None, xml=None):
        self.action = action
        self.scope = scope
        self.existing = existing
        self.xml = xml

    def __str__(self):
        return '%s %s' % (self.action, self.scope)


class DeviceManager(ObjectManager):
    """virt_domain_device: compute the desired device per scope, compare with the domain, then
    apply (unless check mode). params: DEVICE_ARGS values."""

    kind = 'device'
    argument_spec = DEVICE_ARGS
    secrets = staticmethod(xml_option_secrets)
    connect_first = True

    def __init__(self, connection, params, check_mode=False, diff_mode=False, warn=None,
                 sleep=time.sleep, clock=time.monotonic):
        ObjectManager.__init__(self, connection, params, check_mode, diff_mode, warn)
        self.sleep = sleep
        self.clock = clock
        self.desired = None
        self.restart_required = False
        # What planning found: the scopes acted on, each one's domain XML and device in it.
        self.in_scopes = []
        self.roots = {}
        self.found = {}
        self.changes = []

    # -- reading ----------------------------------------------------------------------------

    def read(self, dom, scope, secure=True):
        """The domain XML of one scope, parsed (config: the persistent definition). secure:
        with passwords, so they compare as written and survive a redefine; never returned."""
        flags = _flag('VIR_DOMAIN_XML_SECURE') if secure else 0
        if scope == 'config':
            flags |= _flag('VIR_DOMAIN_XML_INACTIVE')
            action = 'reading the persistent definition'
        else:
            action = 'reading the live XML'
        with libvirt_call(action, 'domain %s' % self.name):
            text = dom.XMLDesc(flags)
        return _document.parse(text, 'the %s XML of domain %s' % (scope, self.name))

    def scopes(self, dom):
        """The scopes to act on: the options, else config when persistent plus live when active."""
        p = self.params
        state = domain_state(dom)
        active = state in ACTIVE_STATES
        with libvirt_call('reading persistence', 'domain %s' % self.name):
            persistent = bool(dom.isPersistent())
        live = p.get('live')
        config = p.get('config')
        if live and not active:
            raise VirtError('%s: live is true but domain %s is %s, so it has no live '
                            'configuration; leave live unset to change the running domain only '
                            'while it runs (nothing was changed)'
                            % (self.desired.obj, self.name, state), obj=self.name,
                            reason=REASON_DOMAIN_NOT_RUNNING)
        if config and not persistent:
            raise VirtError('%s: config is true but domain %s is transient (it has no persistent '
                            'definition); leave config unset (nothing was changed)'
                            % (self.desired.obj, self.name), obj=self.name,
                            reason=REASON_DOMAIN_NOT_PERSISTENT)
        scopes = []
        if live if live is not None else active:
            scopes.append('live')
        if config if config is not None else persistent:
            scopes.append('config')
        if not scopes:
            raise VirtError('%s: live and config are both false, so there is nothing to act on; '
                            'set at least one of them (nothing was changed)' % self.desired.obj,
                            obj=self.name, reason=REASON_NO_SCOPE)
        return scopes

    # -- the lifecycle's hooks ----------------------------------------------------------------

    def check_options(self):
        p = self.params
        if p.get('timeout') is not None and p['timeout'] < 0:
            raise VirtError('timeout must be 0 or more seconds, got %s' % p['timeout'])

    def identify(self):
        self.desired = DesiredDevice(self.params['xml'], self.params['name'])
        return self.params['name']

    def label(self):
        return self.desired.obj

    def lookup(self):
        dom = self.connection.lookup_domain(self.name)
        if dom is None:
            verb = 'attach' if self.params['state'] == 'present' else 'detach'
            raise VirtError('domain %s not found on %s: cannot %s %s (nothing was changed)'
                            % (self.name, self.connection.uri, verb, self.desired.label),
                            obj=self.name, reason=REASON_NOT_FOUND)
        return dom

    def survey(self, dom):
        """Read the device in every scope acted on (and what a restart would change)."""
        self.in_scopes = self.scopes(dom)
        self.roots = dict((scope, self.read(dom, scope)) for scope in self.in_scopes)
        self.found = dict((scope, find_device(self.desired, self.roots[scope], scope))
                          for scope in self.in_scopes)
        self.pending_restart(dom, self.in_scopes)

    def plan_present(self, live):
        self.survey(live)
        changes, diffs = self.plan_changes_present(self.in_scopes, self.roots, self.found)
        return self.plan_of(changes, diffs)

    def plan_absent(self, live):
        self.survey(live)
        changes, diffs = self.plan_changes_absent(self.in_scopes, self.found)
        return self.plan_of(changes, diffs)

    def plan_of(self, changes, diffs):
        """The Plan of the changes, with the per-scope diff view diff mode shows."""
        self.changes = changes
        plan = Plan()
        for change in changes:
            plan.add(str(change), self.step_of(change))
        plan.diff = []
        for scope in self.in_scopes:
            header = 'domain %s, %s: %s' % (self.name, scope, self.desired.label)
            plan.diff.append(dict(before_header=header, after_header=header + ' (desired)',
                                  before=diffs[scope][0], after=diffs[scope][1]))
        return plan

    # -- planning ---------------------------------------------------------------------------

    def pending_restart(self, dom, scopes):
        """A running domain left out of the scopes (live: false) lags behind the definition
        when its device is not what the task asks for: restart_required, as virt_domain says."""
        if 'live' in scopes or 'config' not in scopes or not dom.isActive():
            return
        existing = find_device(self.desired, self.read(dom, 'live'), 'live')
        if self.params['state'] == 'absent':
            self.restart_required = existing is not None
        else:
            self.restart_required = existing is None or \
                compare_device(self.desired, existing, 'live').changed

    def plan_changes_present(self, scopes, roots, found):
        steps = []
        diffs = {}
        updates = {}
        for scope in scopes:
            existing = found[scope]
            intent = compare_device(self.desired, existing, scope)
            diffs[scope] = [_unwrap(intent.before) if existing is not None else '',
                            _unwrap(intent.after)]
            if existing is None:
                steps.append(Change('attach', scope))
            elif intent.changed:
                updates[scope] = intent
        for scope, intent in updates.items():
            existing = found[scope]
            if scope == 'live' and not live_updatable(self.desired, existing, intent):
                where = '; '.join(intent.summary())
                if 'config' not in scopes:
                    raise VirtError(
                        '%s: the running device differs (%s) and libvirt cannot change that on a '
                        'running device (live updates: CD-ROM/floppy media; interface link, '
                        'bandwidth, source, filter; graphics passwords); set config: true to '
                        'change the persistent definition (applies at the next restart), or '
                        'detach and attach it (nothing was changed)' % (self.desired.obj, where),
                        obj=self.name, reason=REASON_NOT_UPDATABLE_LIVE, differences=intent.summary())
                self.restart_required = True
                self.warn('%s: the running device differs (%s) and libvirt cannot change that '
                          'live; the persistent definition is updated and the domain needs a '
                          'restart to use it' % (self.desired.obj, where))
                diffs[scope][1] = diffs[scope][0]
                continue
            steps.append(Change('update', scope, existing))
        # Live first: hotplug refusals are the common failure, and leave nothing changed.
        steps.sort(key=lambda s: 0 if s.scope == 'live' else 1)
        for step in steps:
            step.xml = merged(self.desired, step.existing)
            self.check_schema(step)
        return steps, diffs

    def plan_changes_absent(self, scopes, found):
        steps = []
        diffs = {}
        for scope in scopes:
            existing = found[scope]
            if existing is None:
                diffs[scope] = ['', '']
                continue
            diffs[scope] = [normalized_device(existing), '']
            steps.append(Change('detach', scope, existing))
        # Config first: it always completes; a live detach may wait for the guest.
        steps.sort(key=lambda s: 0 if s.scope == 'config' else 1)
        return steps, diffs

    def check_schema(self, step):
        validate_device(self.connection.uri, step.xml, self.desired.obj, self.name)

    # -- applying ---------------------------------------------------------------------------

    def step_of(self, change):
        """The step that makes one change (attach, update or detach it in its scope)."""
        act = dict(attach=self.attach, update=self.update, detach=self.detach)[change.action]

        def step(dom):
            act(dom, change)
            return dom
        return step

    def apply(self, live, plan):
        try:
            return ObjectManager.apply(self, live, plan)
        except VirtError as exc:
            # A failed change says what was done even when that is nothing.
            exc.details.setdefault('actions', [])
            raise

    def _call(self, what, step, func, xml, flags):
        try:
            func(_document.render(xml) if not isinstance(xml, str) else xml, flags)
        except libvirt.libvirtError as exc:
            err = translate(exc, '%s (%s)' % (what, step.scope), self.desired.obj)
            raise err

    def attach(self, dom, step):
        xml = step.xml
        if self.desired.tag == 'interface' and xml.find('mac') is None:
            # Found by alias only: give both scopes the MAC libvirt generated for the first.
            other = self.find_now(dom, 'live' if step.scope == 'config' else 'config')
            if other is not None and other.find('mac') is not None:
                xml = copy.deepcopy(xml)
                xml.append(copy.deepcopy(other.find('mac')))
        self._call('attaching', step, dom.attachDeviceFlags, xml, _flag(AFFECT[step.scope]))

    def find_now(self, dom, scope):
        try:
            return find_device(self.desired, self.read(dom, scope), scope)
        except VirtError:
            return None

    def update(self, dom, step):
        if step.scope == 'live':
            self._call('updating', step, dom.updateDeviceFlags, step.xml,
                       _flag(AFFECT['live']))
            return
        # Config: the persistent definition with this one device replaced in place, defined
        # in one call (atomic, keeps the device's position; libvirt's update API refuses most
        # changes other than media).
        root = copy.deepcopy(self.roots['config'])
        old = find_device(self.desired, root, 'config')
        old.addprevious(copy.deepcopy(step.xml))
        old.getparent().remove(old)
        with libvirt_call('updating (config: redefining the domain with the device replaced)',
                          self.desired.obj):
            self.conn.defineXMLFlags(_document.render(root), _flag('VIR_DOMAIN_DEFINE_VALIDATE'))

    def detach(self, dom, step):
        if step.scope == 'config':
            self._call('detaching', step, dom.detachDeviceFlags, step.existing,
                       _flag(AFFECT['config']))
            return
        timeout = self.params.get('timeout')
        timeout = 30 if timeout is None else timeout
        deadline = self.clock() + timeout
        alias = step.existing.find('alias')
        try:
            if alias is not None and alias.get('name'):
                # The live alias names exactly this device, whatever else its XML says.
                dom.detachDeviceAlias(alias.get('name'), _flag(AFFECT['live']))
            else:
                dom.detachDeviceFlags(_document.render(step.existing), _flag(AFFECT['live']))
        except libvirt.libvirtError as exc:
            # An unplug still pending from an earlier run: keep waiting for it.
            if 'in the process of unplug' not in str(exc):
                raise translate(exc, 'detaching (live)', self.desired.obj)
        while True:
            if self.find_now(dom, 'live') is None:
                return
            if self.clock() >= deadline:
                break
            self.sleep(POLL_INTERVAL)
        raise VirtError(
            '%s: the guest did not release the device within %s s after the live detach '
            'request (a PCI device such as a virtio disk or NIC goes away only when the guest OS '
            'acknowledges the unplug; disks on a virtio-scsi or USB bus do not need the guest). '
            'The request stays pending and the device disappears when the guest acts on it; '
            'raise timeout to wait longer, or use live: false to change only the persistent '
            'definition' % (self.desired.obj, timeout), obj=self.name, reason=REASON_DETACH_TIMEOUT)

    # -- result -----------------------------------------------------------------------------

    def after_apply(self, live, plan):
        """After a change: what libvirt did not keep of the device, in each scope."""
        if self.params['state'] == 'present':
            for scope in self.in_scopes:
                self.check_kept(scope, find_device(self.desired, self.read(live, scope), scope))
        return live

    def result_fields(self, live, plan):
        scopes, steps = self.in_scopes, self.changes
        device = {}
        for scope in scopes:
            # Without secrets (graphics passwords); in check mode: what is there now.
            elem = find_device(self.desired, self.read(live, scope, secure=False), scope)
            device[scope] = _document.render(elem) if elem is not None else None
        changed_scopes = [s for s in scopes if any(step.scope == s for step in steps)]
        verb = dict(attach='attached to', update='updated in', detach='detached from')
        if steps:
            msg = '; '.join('%s %s %s' % (self.desired.label, verb[s.action],
                                          'the running domain' if s.scope == 'live' else
                                          'the persistent definition') for s in steps)
            if self.check_mode:
                msg = 'would be: ' + msg
        elif self.params['state'] == 'present':
            msg = '%s is present as requested (%s)' % (self.desired.label, ', '.join(scopes))
        else:
            msg = '%s is absent (%s)' % (self.desired.label, ', '.join(scopes))
        if self.restart_required:
            msg += '; the running domain needs a restart to use the persistent definition'
        return dict(
            device=device,
            scopes=scopes,
            changed_scopes=changed_scopes,
            actions=list(self.actions),
            restart_required=self.restart_required,
            msg=msg,
        )

    def check_kept(self, scope, elem):
        """After a change: anything libvirt did not keep would cause a change on every run."""
        if scope == 'live' and self.restart_required:
            return
        intent = compare_device(self.desired, elem, scope)
        if intent.changed:
            self.warn('%s: libvirt did not keep all of the device XML as written in the %s '
                      'configuration (%s); the next run will report a change again'
                      % (self.desired.obj, scope, '; '.join(intent.summary())))
