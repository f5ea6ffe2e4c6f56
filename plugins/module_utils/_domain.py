# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Private to the virtops.libvirt collection: may change without notice.
"""Domains: desired definition and run state, compared with the live domain, then applied.

Used by virt_domain and virt_domain_info. Every helper raises VirtError; nothing here exits.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy
import os
import re
import time

try:
    from urllib.parse import urlparse
except ImportError:  # pragma: no cover - Python 2 is not supported, import kept for sanity
    from urlparse import urlparse  # type: ignore

from ansible_collections.virtops.libvirt.plugins.module_utils._libvirt import (
    VirtError,
    call_with_flags,
    flags_rejected,
    is_error,
    libvirt,
    libvirt_call,
    lookup_or_none,
    optional_flag as _flag,
    read_autostart,
    read_persistent,
    translate,
)
from ansible_collections.virtops.libvirt.plugins.module_utils._errors import (
    REASON_SHUTDOWN_TIMEOUT,
    REASON_UNSUPPORTED_BY_HYPERVISOR,
)
from ansible_collections.virtops.libvirt.plugins.module_utils._domain_profile import DOMAIN
from ansible_collections.virtops.libvirt.plugins.module_utils.xml import _compare, _document, _secrets, _units
from ansible_collections.virtops.libvirt.plugins.module_utils._lifecycle import DefinedObjectManager, Plan, read_each
from ansible_collections.virtops.libvirt.plugins.module_utils._vocabulary import ACTIVE_STATES, domain_state, is_local_uri


STATES = ['present', 'running', 'paused', 'shutdown', 'destroyed', 'absent']

DOMAIN_ARGS = dict(
    name=dict(type='str'),
    xml=dict(type='str'),
    state=dict(type='str', default='present', choices=STATES),
    autostart=dict(type='bool'),
    timeout=dict(type='int', default=120),
    force=dict(type='bool', default=False),
    remove_metadata=dict(type='bool', default=True),
    remove_storage=dict(type='bool', default=False),
    restart_on_change=dict(type='bool', default=False),
)

INFO_STATES = ['running', 'paused', 'shutoff', 'crashed', 'pmsuspended', 'blocked', 'shutdown']

DOMAIN_INFO_ARGS = dict(
    name=dict(type='str'),
    state=dict(type='str', choices=INFO_STATES),
    interface_addresses=dict(type='str', choices=['lease', 'agent', 'arp']),
)

POLL_INTERVAL = 0.25


# ---------------------------------------------------------------------------------------------
# Reading a domain

def inactive_xml(dom, secure=True):
    """The persistent definition (with secrets when secure: passwords compare as written)."""
    flags = _flag('VIR_DOMAIN_XML_INACTIVE') | (_flag('VIR_DOMAIN_XML_SECURE') if secure else 0)
    with libvirt_call('reading the definition', 'domain %s' % dom.name()):
        return dom.XMLDesc(flags)


def live_xml(dom, secure=False):
    with libvirt_call('reading the XML', 'domain %s' % dom.name()):
        return dom.XMLDesc(_flag('VIR_DOMAIN_XML_SECURE') if secure else 0)


def autostart_of(dom):
    return read_autostart(dom, 'domain %s' % dom.name())


def persistent_of(dom):
    return read_persistent(dom, 'domain %s' % dom.name())


def domain_result(dom):
    """What virt_domain returns about a domain: name, uuid, state, autostart, persistent, xml."""
    if dom is None:
        return {}
    return dict(
        name=dom.name(),
        uuid=dom.UUIDString(),
        state=domain_state(dom),
        autostart=autostart_of(dom),
        persistent=persistent_of(dom),
        xml=live_xml(dom),
    )


# ---------------------------------------------------------------------------------------------
# The desired definition

class DesiredDomain:
    """The user's domain XML, parsed and checked against the name given and the hypervisor."""

    def __init__(self, xml, name=None):
        self.text = xml
        self.root, self.name, self.uuid = _document.parse_desired(xml, 'domain', 'domain', name)
        # <domain id='N'> is the run-time id of a running domain (in XML copied from one):
        # define ignores it, but with it libvirt's schema check refuses valid documents
        # (<description> between <name> and <genid>), so it is left out of what is defined.
        self.root.attrib.pop('id', None)
        self.virt_type = self.root.get('type')
        ostype = self.root.find('os/type')
        self.arch = ostype.get('arch') if ostype is not None else None
        self.machine = ostype.get('machine') if ostype is not None else None
        self.emulator = (self.root.findtext('devices/emulator') or '').strip() or None
        self.canonical_machine = None
        self.capabilities = None  # the hypervisor's domain capabilities (an element), once read
        # What is compared with the live domain: the XML as this host's libvirt will store it.
        self.compared = self.root

    def xml_for_define(self, uuid=None):
        """The XML to define; with the existing domain's uuid when the user did not write one
        (libvirt refuses a second definition of a name under a new uuid)."""
        if uuid is not None and self.uuid is None:
            return _document.render(_document.with_uuid(self.root, uuid))
        return _document.render(self.root)

    def normalizers(self):
        """Values only the hypervisor can normalise: the machine alias (pc -> pc-i440fx-7.2)."""
        if not self.canonical_machine or self.canonical_machine == self.machine:
            return {}
        alias, canonical = self.machine, self.canonical_machine
        return {'os/type@machine': lambda v: canonical if v == alias else v}


def check_against_hypervisor(conn, desired):
    """Fail clearly when the hypervisor cannot run the domain as written: unknown emulator,
    machine type, architecture or virtualisation type. Read-only; also learns the canonical
    machine type. Drivers without domain capabilities (test:///) are not checked here."""
    obj = 'domain %s' % desired.name
    try:
        caps = conn.conn.getDomainCapabilities(desired.emulator, desired.arch, desired.machine,
                                               desired.virt_type, 0)
    except libvirt.libvirtError as exc:
        if is_error(exc, 'VIR_ERR_NO_SUPPORT'):
            return
        what = []
        if desired.emulator:
            what.append('emulator %s' % desired.emulator)
        if desired.machine:
            what.append('machine type %s' % desired.machine)
        if desired.arch:
            what.append('architecture %s' % desired.arch)
        if desired.virt_type:
            what.append("domain type '%s'" % desired.virt_type)
        err = translate(exc, 'checking %s against the hypervisor' % ', '.join(what or ['the XML']),
                        obj)
        err.msg = ('%s: the hypervisor at %s cannot run it as written: %s (nothing was changed)'
                   % (obj, conn.uri, err.libvirt_message))
        err.details['reason'] = REASON_UNSUPPORTED_BY_HYPERVISOR
        raise err
    root = _document.parse(caps, 'domain capabilities')
    desired.capabilities = root
    seclabels = desired.root.findall('seclabel')
    if len(seclabels) == 1 and not seclabels[0].get('model'):
        with libvirt_call('reading the host capabilities', obj):
            host = _document.parse(conn.conn.getCapabilities(), 'host capabilities')
        desired.compared = seclabel_as_stored(desired.root,
                                              (host.findtext('host/secmodel/model') or '').strip())
    machine = (root.findtext('machine') or '').strip()
    if machine:
        desired.canonical_machine = machine


def seclabel_as_stored(root, host_model):
    """root (a copy when changed) with its only <seclabel>, which names no model, as libvirt
    stores it: it takes the host's first security model (virSecurityLabelDefsParseXML), and
    under model 'none' a type='none' or a dynamic label without a baselabel becomes
    <seclabel type='none'/> ("fix older configurations"), relabel dropped."""
    label = root.find('seclabel')
    if host_model != 'none' or label is None or label.get('model') or not (
            label.get('type') == 'none' or
            (label.get('type', 'dynamic') == 'dynamic' and label.find('baselabel') is None)):
        return root
    root = copy.deepcopy(root)
    label = root.find('seclabel')
    label.attrib.clear()
    for child in list(label):
        label.remove(child)
    label.set('type', 'none')
    return root


# Where the QEMU driver reads its configuration, per connection URI path (local URIs only).
QEMU_CONF = {'/system': '/etc/libvirt/qemu.conf',
             '/session': os.path.expanduser('~/.config/libvirt/qemu.conf')}


def qemu_conf_settings(uri, names):
    """{name: value} of settings in the QEMU driver's qemu.conf, when the URI is a local qemu
    one and the file is readable; {} otherwise (nothing is foreseen from it then)."""
    parsed = urlparse(uri)
    path = QEMU_CONF.get(parsed.path) if parsed.scheme == 'qemu' and is_local_uri(uri) else None
    try:
        with open(path) as conf:
            text = conf.read()
    except (IOError, OSError, TypeError):
        return {}
    found = {}
    for line in text.splitlines():
        match = re.match(r'^\s*(\w+)\s*=\s*"?([^"#]*?)"?\s*(?:#.*)?$', line)
        if match and match.group(1) in names:
            found[match.group(1)] = match.group(2).strip()
    return found


def _feature_supported(capabilities, name):
    elem = capabilities.find('features/%s' % name) if capabilities is not None else None
    return elem is None or elem.get('supported') == 'yes'


def foreseen_refusals(root, capabilities, qemu_conf):
    """Why the QEMU driver's define would refuse this domain, as far as the domain capabilities
    and qemu.conf tell without defining anything: a list of messages (empty when none)."""
    refusals = []
    # qemuValidateDomainDeviceDefSPICEGraphics: a fixed spice TLS port needs spice_tls = 1.
    if qemu_conf.get('spice_tls', '0') != '1':
        for graphics in root.iterfind('devices/graphics'):
            listen = graphics.find('listen')
            listen_type = listen.get('type') if listen is not None else 'address'
            try:
                tls_port = int(graphics.get('tlsPort') or 0)
            except ValueError:
                continue
            if graphics.get('type') == 'spice' and tls_port > 0 and \
                    listen_type in ('address', 'network'):
                refusals.append('spice TLS port %s is set, but spice_tls is disabled in '
                                'qemu.conf' % tls_port)
    # qemuValidateDomainDef: launch security needs the QEMU capability that domain
    # capabilities report as <sev supported='yes'/> (libvirt clears it when the host has no SEV).
    security = root.find('launchSecurity')
    if security is not None and security.get('type') == 'sev' and \
            not _feature_supported(capabilities, 'sev'):
        refusals.append('SEV launch security is not supported by this QEMU binary or host')
    # qemuValidateDomainDeviceDefMemory: an sgx-epc memory device needs <sgx supported='yes'/>.
    for memory in root.iterfind('devices/memory'):
        if memory.get('model') == 'sgx-epc' and not _feature_supported(capabilities, 'sgx'):
            refusals.append('an sgx-epc memory device needs SGX, which this QEMU binary or '
                            'host does not support')
            break
    return refusals


def check_foreseeable(conn, desired, warn=None):
    """Check mode before a define: fail as define would, where domain capabilities and
    qemu.conf rule the XML out (read-only). Then, on the QEMU driver, convert the XML to a QEMU
    command line without defining anything (virConnectDomainXMLToNative): its parser and
    validator are define's, but it also checks what only a start needs (hugetlbfs, host NUMA
    nodes, secrets, host devices), so what it reports is a warning, not a refusal. See
    docs/idempotency.md for what is not foreseen."""
    refusals = foreseen_refusals(desired.root, desired.capabilities,
                                 qemu_conf_settings(conn.uri, ('spice_tls',)))
    if refusals:
        raise VirtError('domain %s: the hypervisor at %s would refuse it: %s (nothing was changed)'
                        % (desired.name, conn.uri, '; '.join(refusals)), obj=desired.name,
                        reason=REASON_UNSUPPORTED_BY_HYPERVISOR)
    if warn is None or urlparse(conn.uri).scheme.split('+')[0] != 'qemu':
        return
    try:
        conn.conn.domainXMLToNative('qemu-argv', desired.xml_for_define(), 0)
    except libvirt.libvirtError as exc:
        if is_error(exc, 'VIR_ERR_NO_SUPPORT'):
            return
        warn('domain %s: libvirt reports a problem with the XML when it converts it to a QEMU '
             'command line without defining it: %s. define may refuse it, or the domain may '
             'fail to start' % (desired.name, exc.get_error_message() or exc))


# ---------------------------------------------------------------------------------------------
# The manager

class DomainManager(DefinedObjectManager):
    """virt_domain: compute the desired state, compare it with the live domain, then apply
    (unless check mode). params: the module's parameters (DOMAIN_ARGS)."""

    kind = 'domain'
    argument_spec = DOMAIN_ARGS
    desired_type = DesiredDomain
    secrets = staticmethod(_secrets.xml_option_secrets)
    state_of = staticmethod(domain_state)
    persistent_of = staticmethod(persistent_of)
    autostart_of = staticmethod(autostart_of)

    def __init__(self, connection, params, check_mode=False, diff_mode=False, warn=None,
                 sleep=time.sleep, clock=time.monotonic):
        DefinedObjectManager.__init__(self, connection, params, check_mode, diff_mode, warn)
        self.sleep = sleep
        self.clock = clock
        self.restart_required = False
        # set when a shutdown (or the shutdown of a restart) timed out and force destroyed it
        self.forced_off = False
        self.restart_paused = False
        self.removed_volumes = []
        # what the plan stores or restarts, checked once the steps ran
        self.defining = False
        self.restarting = False

    def check_options(self):
        p = self.params
        if p.get('timeout') is not None and p['timeout'] < 0:
            raise VirtError('timeout must be 0 or more seconds, got %s' % p['timeout'])

    def find(self, name):
        return self.connection.lookup_domain(name)

    # -- absent -----------------------------------------------------------------------------

    def plan_absent(self, live):
        if live is None:
            return Plan()
        before_state, _persistent, before_autostart = self.read_before(live)
        plan = Plan(before=dict(state=before_state, autostart=before_autostart),
                    after=dict(state='absent'),
                    before_xml=_compare.normalized(inactive_xml(live, secure=False), DOMAIN))
        volumes = self.managed_volumes(live) if self.params['remove_storage'] else []
        if live.isActive():
            plan.add('destroy', self._destroy())
        plan.add('undefine', self._undefine)
        self.removed_volumes = [v.path() for v in volumes]
        for vol, path in zip(volumes, self.removed_volumes):
            plan.add('delete volume %s' % path,
                     self.call_step('deleting volume %s' % path, lambda dom, vol=vol: vol.delete(0)))
        return plan

    def _undefine(self, dom):
        if self.params['remove_metadata']:
            flags = (_flag('VIR_DOMAIN_UNDEFINE_MANAGED_SAVE') |
                     _flag('VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA') |
                     _flag('VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA') |
                     _flag('VIR_DOMAIN_UNDEFINE_NVRAM'))
        else:
            flags = _flag('VIR_DOMAIN_UNDEFINE_KEEP_NVRAM')
        try:
            dom.undefineFlags(flags)
            return None
        except libvirt.libvirtError as exc:
            # Some drivers (test:///) reject flags they have no use for; then ask only for
            # what this domain actually has.
            if not flags_rejected(exc):
                raise translate(exc, 'undefining', self.obj)
        with libvirt_call('undefining', self.obj):
            dom.undefineFlags(self._needed_undefine_flags(dom, flags))
        return None

    def _needed_undefine_flags(self, dom, wanted):
        needed = 0
        checks = (
            ('VIR_DOMAIN_UNDEFINE_MANAGED_SAVE', lambda: dom.hasManagedSaveImage(0)),
            ('VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA', lambda: dom.snapshotNum(0)),
            ('VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA', lambda: dom.listAllCheckpoints(0)),
            ('VIR_DOMAIN_UNDEFINE_NVRAM',
             lambda: _document.parse(inactive_xml(dom, False)).find('os/nvram') is not None),
        )
        for name, has in checks:
            if not wanted & _flag(name):
                continue
            try:
                if has():
                    needed |= _flag(name)
            except libvirt.libvirtError:
                pass
        return needed

    def managed_volumes(self, dom):
        """Storage volumes (known to a libvirt pool) that are the sources of the domain's disks."""
        root = _document.parse(inactive_xml(dom, secure=False))
        volumes = []
        for disk in root.findall('devices/disk'):
            if disk.get('device', 'disk') != 'disk':
                continue  # CD-ROMs and floppies are usually shared media: never deleted
            source = disk.find('source')
            if source is None:
                continue
            vol = None
            if disk.get('type') == 'volume':
                vol = self._volume_by_name(source.get('pool'), source.get('volume'))
            elif source.get('file') or source.get('dev'):
                vol = self._volume_by_path(source.get('file') or source.get('dev'))
            if vol is not None:
                volumes.append(vol)
            else:
                facts = disk_facts(disk)
                self.warn('%s: disk %s (%s) is not a volume of any libvirt storage pool; '
                          'remove_storage leaves it in place' % (self.obj, facts['target'],
                                                                 facts['source']))
        return volumes

    def _volume_by_name(self, pool_name, vol_name):
        return lookup_or_none(lambda: self.conn.storagePoolLookupByName(pool_name).storageVolLookupByName(vol_name),
                              ('VIR_ERR_NO_STORAGE_POOL', 'VIR_ERR_NO_STORAGE_VOL'),
                              'looking up volume %s/%s' % (pool_name, vol_name), self.obj)

    def _volume_by_path(self, path):
        for attempt in (1, 2):
            try:
                return self.conn.storageVolLookupByPath(path)
            except libvirt.libvirtError as exc:
                if not is_error(exc, 'VIR_ERR_NO_STORAGE_VOL'):
                    raise translate(exc, 'looking up the volume of %s' % path, self.obj)
            if attempt == 1 and not self._refresh_pools_holding(path):
                return None
        return None

    def _refresh_pools_holding(self, path):
        """Refresh active pools whose target directory holds path (files made outside libvirt
        are known to a pool only after a refresh). True when one was refreshed."""
        refreshed = False
        directory = os.path.dirname(path)
        with libvirt_call('listing storage pools', self.obj):
            pools = self.conn.listAllStoragePools(_flag('VIR_CONNECT_LIST_STORAGE_POOLS_ACTIVE'))
        for pool in pools:
            try:
                target = _document.parse(pool.XMLDesc(0)).findtext('target/path')
                if target and os.path.normpath(target) == os.path.normpath(directory):
                    pool.refresh(0)
                    refreshed = True
            except libvirt.libvirtError:
                continue
        return refreshed

    # -- present / running / paused / shutdown / destroyed ----------------------------------

    def plan_present(self, live):
        p = self.params
        state = p['state']
        desired = self.desired
        exists = live is not None
        before_state, persistent, before_autostart = self.read_before(live)

        intent = None
        if desired is not None:
            self.check_uuid(live, 'domain')
            check_against_hypervisor(self.connection, desired)
            stored = inactive_xml(live) if exists else None
            intent = _compare.compare(desired.compared, stored, DOMAIN,
                                      normalizers=desired.normalizers())
        define = self.needs_define(live, persistent, intent)
        if define and self.check_mode and desired is not None:
            _document.check_schema(self.connection.uri, desired.root, 'domain.rng', 'domain', desired.name)
            check_foreseeable(self.connection, desired, self.warn)

        active = before_state in ACTIVE_STATES
        # Does the running domain lag behind its (desired) definition?
        pending = False
        if active and desired is not None:
            pending = define or self._running_differs(live, desired)
        restart = pending and p['restart_on_change'] and state in ('present', 'running', 'paused')

        plan = Plan()
        if define:
            plan.add('define', self._define)
        current = before_state
        if restart:
            plan.add('restart', self._restart)
            # present keeps the run state: a paused domain comes back paused.
            self.restart_paused = state == 'paused' or (state == 'present' and
                                                        before_state == 'paused')
            current = 'paused' if self.restart_paused else 'running'
        names, after_state = self.plan_state(state, current)
        run_state_steps = self._run_state_steps()
        for step_name in names:
            plan.add(step_name, run_state_steps[step_name])
        after_autostart = self.plan_autostart(plan, before_autostart)
        self.restart_required = pending and not restart and after_state in ACTIVE_STATES

        self.defining, self.restarting = define, restart
        plan.show(dict(state=before_state, autostart=before_autostart),
                  dict(state=after_state, autostart=after_autostart), intent, define)
        return plan

    @staticmethod
    def plan_state(state, current):
        """Steps from the run state current to the state asked for, and the state after them."""
        if current == 'absent':
            current = 'shutoff'  # defined by this run, not started
        if state == 'present':
            return [], current
        if state == 'running':
            return {
                'shutoff': (['start'], 'running'),
                'nostate': (['start'], 'running'),
                'paused': (['resume'], 'running'),
                'pmsuspended': (['wakeup'], 'running'),
                'crashed': (['destroy', 'start'], 'running'),
            }.get(current, ([], current))
        if state == 'paused':
            return {
                'shutoff': (['start paused'], 'paused'),
                'nostate': (['start paused'], 'paused'),
                'running': (['suspend'], 'paused'),
                'blocked': (['suspend'], 'paused'),
                'pmsuspended': (['wakeup', 'suspend'], 'paused'),
                'crashed': (['destroy', 'start paused'], 'paused'),
            }.get(current, ([], current))
        if state == 'shutdown':
            return (['shutdown'], 'shutoff') if current in ACTIVE_STATES else ([], current)
        if state == 'destroyed':
            return (['destroy'], 'shutoff') if current in ACTIVE_STATES else ([], current)
        raise VirtError('unknown state %s' % state)  # pragma: no cover - argument_spec choices

    # -- steps ------------------------------------------------------------------------------

    def _define(self, dom):
        uuid = dom.UUIDString() if dom is not None else None
        xml = self.desired.xml_for_define(uuid) if self.desired is not None else live_xml(dom, True)
        with libvirt_call('defining', self.obj):
            return self.conn.defineXMLFlags(xml, _flag('VIR_DOMAIN_DEFINE_VALIDATE'))

    def _restart(self, dom):
        self.graceful_shutdown(dom, purpose='restarting to apply the new definition')
        self.start(dom, paused=self.restart_paused)
        return dom

    def _run_state_steps(self):
        """The steps plan_state names, by name."""
        return {
            'start': self._start,
            'start paused': self._start_paused,
            'resume': self.call_step('resuming', lambda dom: dom.resume()),
            'suspend': self.call_step('pausing (suspend)', lambda dom: dom.suspend()),
            'wakeup': self.call_step('waking up', lambda dom: dom.pMWakeup(0)),
            'shutdown': self._shutdown,
            'destroy': self._destroy(),
        }

    def _start(self, dom):
        self.start(dom)
        return dom

    def _start_paused(self, dom):
        self.start(dom, paused=True)
        return dom

    def _shutdown(self, dom):
        self.graceful_shutdown(dom, purpose='shutting down')
        return dom

    def _destroy(self):
        return self.call_step('stopping (destroy)', lambda dom: dom.destroy())

    def start(self, dom, paused=False):
        if not paused:
            with libvirt_call('starting', self.obj):
                dom.createWithFlags(0)
            return

        def start_then_pause():
            # Drivers without VIR_DOMAIN_START_PAUSED (test:///): start, then pause at once.
            dom.createWithFlags(0)
            dom.suspend()
        call_with_flags('starting paused', self.obj,
                        lambda: dom.createWithFlags(_flag('VIR_DOMAIN_START_PAUSED')), start_then_pause)

    def graceful_shutdown(self, dom, purpose):
        """ACPI shutdown, wait up to timeout; then destroy (force) or fail leaving it as it was."""
        timeout = self.params['timeout']
        was_paused = domain_state(dom) == 'paused'
        if was_paused:
            # A paused guest cannot react to the ACPI request.
            with libvirt_call('resuming before shutdown', self.obj):
                dom.resume()
        with libvirt_call(purpose + ' (shutdown)', self.obj):
            dom.shutdown()
        deadline = self.clock() + timeout
        while True:
            if not dom.isActive():
                return
            if self.clock() >= deadline:
                break
            self.sleep(POLL_INTERVAL)
        if self.params['force']:
            self.forced_off = True
            self.warn('%s did not shut down within %s s; destroyed it (force: true)'
                      % (self.obj, timeout))
            with libvirt_call('stopping (destroy) after the shutdown timeout', self.obj):
                try:
                    dom.destroy()
                except libvirt.libvirtError as exc:
                    if dom.isActive():
                        raise exc
            return
        if was_paused:
            with libvirt_call('pausing again after the shutdown timeout', self.obj):
                dom.suspend()
        left = 'paused' if was_paused else 'running'
        raise VirtError(
            '%s did not shut down within %s s while %s: the guest did not act on the ACPI '
            'shutdown request; it is left %s. Set force: true to destroy it after the timeout, '
            'or give it a longer timeout.' % (self.obj, timeout, purpose, left),
            obj=self.name, reason=REASON_SHUTDOWN_TIMEOUT, actions=self.actions)

    # -- helpers ----------------------------------------------------------------------------

    def _running_differs(self, dom, desired):
        running = live_xml(dom, secure=True)
        intent = _compare.compare(desired.compared, running, DOMAIN,
                                  normalizers=desired.normalizers(), runtime=True)
        return intent.changed

    def _check_kept(self, dom, desired):
        """After a define: anything libvirt did not keep would cause a change on every run."""
        self.warn_not_kept(_compare.compare(desired.compared, inactive_xml(dom), DOMAIN,
                                            normalizers=desired.normalizers()))

    def _check_restarted(self, dom, desired):
        """After a restart: a running domain that still differs would be restarted again by
        every run with restart_on_change."""
        running = live_xml(dom, secure=True)
        intent = _compare.compare(desired.compared, running, DOMAIN,
                                  normalizers=desired.normalizers(), runtime=True)
        if intent.changed:
            self.warn('%s: after the restart the running domain still differs from the XML (%s); '
                      'restart_on_change will restart it again on the next run'
                      % (self.obj, '; '.join(intent.summary())))

    # -- after the steps, and the result ----------------------------------------------------

    def after_apply(self, live, plan):
        """After a define: anything libvirt did not keep would cause a change on every run.
        After a restart: a domain that still differs would be restarted by every run."""
        if self.defining and self.desired is not None:
            # A transient domain made persistent as it is has no XML to keep.
            self._check_kept(live, self.desired)
        if self.restarting:
            self._check_restarted(live, self.desired)
        return live

    def result_fields(self, live, plan):
        res = dict(
            domain=domain_result(live) if live is not None and not self.wants_absent() else {},
            restart_required=self.restart_required,
            actions=list(self.actions),
            forced_off=self.forced_off,
        )
        if self.wants_absent():
            res['removed_volumes'] = self.removed_volumes
        return res


# ---------------------------------------------------------------------------------------------
# virt_domain_info

def _int(text, default=None):
    try:
        return int((text or '').strip())
    except ValueError:
        return default


def _kib(elem):
    if elem is None:
        return None
    size = _units.to_bytes(elem.text, elem.get('unit') or 'KiB')
    return size // 1024 if size is not None else None


def disk_facts(disk):
    source = disk.find('source')
    target = disk.find('target')
    driver = disk.find('driver')
    src = None
    if source is not None:
        if disk.get('type') == 'volume':
            src = '%s/%s' % (source.get('pool'), source.get('volume'))
        elif disk.get('type') == 'network':
            src = '%s:%s' % (source.get('protocol'), source.get('name'))
        else:
            src = source.get('file') or source.get('dev') or source.get('dir')
    return dict(
        target=target.get('dev') if target is not None else None,
        bus=target.get('bus') if target is not None else None,
        device=disk.get('device', 'disk'),
        type=disk.get('type'),
        source=src,
        format=driver.get('type') if driver is not None else None,
    )


def interface_facts(iface):
    mac = iface.find('mac')
    model = iface.find('model')
    source = iface.find('source')
    src = None
    if source is not None:
        for attr in ('network', 'bridge', 'dev', 'name', 'path'):
            if source.get(attr):
                src = source.get(attr)
                break
    target = iface.find('target')
    return dict(
        type=iface.get('type'),
        mac=mac.get('address').lower() if mac is not None and mac.get('address') else None,
        source=src,
        model=model.get('type') if model is not None else None,
        target=target.get('dev') if target is not None else None,
    )


ADDRESS_SOURCES = {
    'lease': 'VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_LEASE',
    'agent': 'VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_AGENT',
    'arp': 'VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_ARP',
}


def interface_addresses(dom, source, warn):
    """{mac: [{'type': 'ipv4', 'address': ..., 'prefix': ...}]} from the chosen source."""
    try:
        found = dom.interfaceAddresses(_flag(ADDRESS_SOURCES[source]), 0) or {}
    except libvirt.libvirtError as exc:
        warn('domain %s: no interface addresses from %s: %s' % (
            dom.name(), source, exc.get_error_message() or exc))
        return {}
    by_mac = {}
    for ifname, data in found.items():
        mac = (data.get('hwaddr') or '').lower()
        addrs = []
        for addr in data.get('addrs') or []:
            kind = {0: 'ipv4', 1: 'ipv6'}.get(addr.get('type'), str(addr.get('type')))
            addrs.append(dict(type=kind, address=addr.get('addr'), prefix=addr.get('prefix'),
                              interface=ifname))
        by_mac.setdefault(mac, []).extend(addrs)
    return by_mac


def domain_facts(dom, addresses_from=None, warn=None):
    """Facts about one domain, as virt_domain_info returns them."""
    warn = warn or (lambda msg: None)
    xml = live_xml(dom)
    root = _document.parse(xml, 'the XML of domain %s' % dom.name())
    state = domain_state(dom)
    persistent = persistent_of(dom)
    vcpu = root.find('vcpu')
    vcpus = None
    if vcpu is not None:
        vcpus = _int(vcpu.get('current'), _int(vcpu.text))
    facts = dict(
        name=dom.name(),
        uuid=dom.UUIDString(),
        id=dom.ID() if dom.isActive() else None,
        state=state,
        autostart=autostart_of(dom) if persistent else False,
        persistent=persistent,
        vcpus=vcpus,
        memory=_kib(root.find('memory')),
        current_memory=_kib(root.find('currentMemory')),
        disks=[disk_facts(d) for d in root.findall('devices/disk')],
        interfaces=[interface_facts(i) for i in root.findall('devices/interface')],
        xml=xml,
    )
    if addresses_from:
        found = interface_addresses(dom, addresses_from, warn) if dom.isActive() else {}
        for iface in facts['interfaces']:
            iface['addresses'] = found.get(iface['mac'] or '', [])
    return facts


def domains_info(connection, name=None, state=None, addresses_from=None, warn=None):
    """virt_domain_info: one domain (by name; [] when missing) or all, optionally by state."""
    def facts(dom):
        if state and domain_state(dom) != state:
            return None
        return domain_facts(dom, addresses_from, warn)
    return read_each(name, connection.lookup_domain, lambda: connection.conn.listAllDomains(0),
                     'listing domains', connection.uri, facts, 'VIR_ERR_NO_DOMAIN')


def read_domains(connection, params, warn):
    """virt_domain_info's result."""
    return dict(domains=domains_info(connection, name=params['name'], state=params['state'],
                                     addresses_from=params['interface_addresses'], warn=warn))
