# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Private to the virtops.libvirt collection: may change without notice.
"""The one lifecycle every state module follows, and the one way a module's main() calls it.

A manager subclass says what kind of object it manages and gives hooks; the base owns the order:

    check_options -> identify -> lookup -> plan_absent or plan_present -> apply -> after_apply
    -> finish -> result

- ``plan_*`` compute the desired state and compare it with the live one. They return a Plan: the
  steps to take, in order, each a name (what ``actions`` reports) and a callable, plus the
  before/after views that diff mode shows. Planning never changes anything, so check mode runs
  the same code as a real run and predicts exactly; only ``apply`` is skipped.
- ``apply`` runs the steps in order. A step that fails after others changed the object reports
  what was already done and ``changed: true`` (VirtError.after_steps).
- ``result`` builds the module's return value from the plan and the object after the steps.

Modules are then three lines: ``def main(): run_module(NetworkManager)``; the argument spec and
the AnsibleModule option rules are class attributes of the manager, beside its hooks.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.virtops.libvirt.plugins.module_utils._errors import REASON_UUID_MISMATCH
from ansible_collections.virtops.libvirt.plugins.module_utils._libvirt import VirtError, VirtModule, libvirt_call, optional_flag
from ansible_collections.virtops.libvirt.plugins.module_utils.xml import _view


class Step:
    """One change the plan makes: ``name`` is what the result's ``actions`` lists; ``run(live)``
    makes the change and returns the live object afterwards (a new handle after a define, None
    once it is gone, else the same one)."""

    __slots__ = ('name', 'run')

    def __init__(self, name, run):
        self.name = name
        self.run = run

    def __repr__(self):
        return 'Step(%r)' % self.name


class Plan:
    """What planning found: the steps, and what diff mode shows.

    before/after: dicts of facts (state, autostart, ...) and before_xml/after_xml the normalised
    definitions, rendered by the base into one diff. A manager with its own diff view sets
    ``diff`` instead. ``changed`` defaults to "there are steps"."""

    def __init__(self, steps=None, before=None, after=None, before_xml='', after_xml='', changed=None):
        self.steps = list(steps or [])
        self.before = before
        self.after = after
        self.before_xml = before_xml
        self.after_xml = after_xml
        self.diff = None
        self._changed = changed

    def add(self, name, run):
        self.steps.append(Step(name, run))
        return self

    def show(self, before, after, intent, redefines):
        """What diff mode shows: the facts before and after, and intent's definitions (an
        IntentDiff, None when no XML was given). A definition that is not redefined shows as
        it stays, the normalised one, on both sides."""
        self.before, self.after = before, after
        if intent is not None:
            self.before_xml = intent.before if redefines else intent.after
            self.after_xml = intent.after

    @property
    def names(self):
        return [step.name for step in self.steps]

    @property
    def changed(self):
        return bool(self.steps) if self._changed is None else self._changed

    @changed.setter
    def changed(self, value):
        self._changed = value


class ObjectManager:
    """The lifecycle of one libvirt object, driven by a module's parameters.

    Class attributes a subclass sets:
    - kind: the word for the object in messages ('network', 'storage pool', ...);
    - argument_spec: the module's own options (VirtModule adds the connection options);
    - module_options: AnsibleModule's option rules (required_one_of, mutually_exclusive, ...);
    - secrets: optional function(params) returning values to mask in everything returned;
    - connect_first: open the connection before check_options (see below).

    The connection opens on first use of self.connection or self.conn, so bad options fail
    before any connection error, and a manager that works on a backup repository alone never
    needs a libvirtd. The modules that always reported an unreachable host before a wrong option
    (domain, device, network, pool, network filter, secret, block job) set connect_first, so
    they still do.

    Hooks (see each): check_options, identify, lookup, plan_absent, plan_present, after_apply,
    finish, result_fields. The run order lives here only.
    """

    kind = 'object'
    argument_spec = {}
    module_options = {}
    secrets = None
    connect_first = False

    def __init__(self, connection, params, check_mode=False, diff_mode=False, warn=None):
        self.connection = connection
        self.params = params
        self.check_mode = check_mode
        self.diff_mode = diff_mode
        self.warn = warn or (lambda msg: None)
        self.name = None
        self.obj = None
        self.actions = []
        # The AnsibleModule, set by run_module (None when a test runs the manager): for what only
        # it can do, such as a file's owner, group and mode (add_file_common_args).
        self.module = None

    @property
    def conn(self):
        """The libvirt virConnect (opening the connection if it is not open yet)."""
        return self.connect()

    def connect(self):
        """Open the connection now rather than on first use; returns the virConnect."""
        return self.connection.conn

    # -- hooks ------------------------------------------------------------------------------

    def check_options(self):
        """Option checks that AnsibleModule's rules cannot express; raise VirtError."""

    def identify(self):
        """The name of the object the parameters mean (from name, or from the XML)."""
        raise NotImplementedError

    def label(self):
        """How messages name the object."""
        return '%s %s' % (self.kind, self.name)

    def lookup(self):
        """The live object (a libvirt handle), or None when there is none."""
        raise NotImplementedError

    def wants_absent(self):
        return self.params.get('state') == 'absent'

    def plan_absent(self, live):
        """The Plan that removes live (None: nothing to do)."""
        raise NotImplementedError

    def plan_present(self, live):
        """The Plan that brings live (None: not there yet) to the desired state."""
        raise NotImplementedError

    def after_apply(self, live, plan):
        """Checks once the steps ran (what libvirt kept of the definition, ...); returns live."""
        return live

    def finish(self, live, plan):
        """Work after the steps that runs on every run, check mode included (it guards its own
        changes): a download compared with the file there, a pool refresh, file attributes. It
        may add to self.actions and set plan.changed; returns live."""
        return live

    def result_fields(self, live, plan):
        """The kind-specific part of the result (the object's facts, actions, ...)."""
        return dict(actions=list(self.actions))

    # -- steps and checks the managers share ------------------------------------------------

    def call_step(self, action, call, gone=False):
        """The Step callable of a change that is one libvirt call: call(live) inside
        libvirt_call(action, self.obj), so that a failure names the action and the object.
        It returns live, or None when gone (the call removed the object)."""
        def run(live):
            with libvirt_call(action, self.obj):
                call(live)
            return None if gone else live
        return run

    def plan_autostart(self, plan, before):
        """Adds to plan the step that sets autostart when the autostart option asks to change it
        from before; returns autostart as it is after the plan."""
        wanted = self.params.get('autostart')
        if wanted is None or wanted == before:
            return before
        plan.add('autostart' if wanted else 'no autostart',
                 self.call_step('setting autostart', lambda live: live.setAutostart(1 if wanted else 0)))
        return wanted

    def warn_not_kept(self, intent):
        """After a define: what libvirt did not keep of the XML as written (intent, from
        comparing it with the definition now) would show as a change on every run."""
        if intent.changed:
            self.warn('%s: libvirt did not keep all of the XML as written (%s); the next run '
                      'will report a change again' % (self.obj, '; '.join(intent.summary())))

    # -- the lifecycle ----------------------------------------------------------------------

    def run(self):
        if self.connect_first:
            self.connect()
        self.check_options()
        self.name = self.identify()
        self.obj = self.label()
        live = self.lookup()
        plan = self.plan_absent(live) if self.wants_absent() else self.plan_present(live)
        self.actions = plan.names
        if plan.steps and not self.check_mode:
            live = self.apply(live, plan)
            live = self.after_apply(live, plan)
        live = self.finish(live, plan)
        return self.result(live, plan)

    def apply(self, live, plan):
        done = []
        try:
            for step in plan.steps:
                live = step.run(live)
                done.append(step.name)
        except VirtError as exc:
            raise exc.after_steps(done)
        return live

    def diff_of(self, plan):
        if not self.diff_mode:
            return None
        if plan.diff is not None:
            return plan.diff
        return _view.diff_view(self.obj, _view.facts_text(plan.before, plan.before_xml),
                               _view.facts_text(plan.after, plan.after_xml))

    def result(self, live, plan):
        res = dict(changed=plan.changed)
        res.update(self.result_fields(live, plan))
        diff = self.diff_of(plan)
        if diff is not None:
            res['diff'] = diff
        return res


class DefinedObjectManager(ObjectManager):
    """A manager of an object the user names, or defines with an XML whose <name> names it
    (domain, network, storage pool, network filter).

    Class attribute: desired_type(xml, name), the parsed desired definition (its .name is the
    object's). Hook: find(name), the live object or None."""

    module_options = dict(required_one_of=[('name', 'xml')])
    desired_type = None
    connect_first = True
    # What read_before reads of an object with a run state (domain, network, pool), as
    # staticmethods: state_of(live), its run state as a word; persistent_of(live); autostart_of(live).
    state_of = persistent_of = autostart_of = None

    def __init__(self, connection, params, check_mode=False, diff_mode=False, warn=None):
        ObjectManager.__init__(self, connection, params, check_mode, diff_mode, warn)
        self.desired = None

    def find(self, name):
        """The live object called name, or None."""
        raise NotImplementedError

    def identify(self):
        p = self.params
        if p.get('xml'):
            self.desired = self.desired_type(p['xml'], p.get('name'))
        name = self.desired.name if self.desired is not None else p.get('name')
        if not name:
            raise VirtError('give name or xml to say which %s' % self.kind)
        return name

    def lookup(self):
        live = self.find(self.name)
        if live is None and self.desired is None and not self.wants_absent():
            raise VirtError('%s does not exist on %s; give xml to define it'
                            % (self.obj, self.connection.uri), obj=self.name)
        return live

    def check_uuid(self, live, noun):
        """libvirt cannot change an object's uuid: fail when the XML asks live (None: not there
        yet) for another one. noun: the object in "a <noun>'s uuid"."""
        desired = self.desired
        if live is not None and desired.uuid and desired.uuid != live.UUIDString().lower():
            raise VirtError('%s exists with uuid %s; the XML asks for uuid %s and libvirt cannot '
                            'change a %s\'s uuid (nothing was changed)'
                            % (self.obj, live.UUIDString(), desired.uuid, noun), obj=self.name,
                            reason=REASON_UUID_MISMATCH)

    def read_before(self, live):
        """What live (None: not there yet) is before the plan: (state, persistent, autostart),
        read in this order; ('absent', False, False) when there is none. A transient object has
        no autostart: it is not read."""
        if live is None:
            return 'absent', False, False
        state = self.state_of(live)
        persistent = self.persistent_of(live)
        return state, persistent, self.autostart_of(live) if persistent else False

    def needs_define(self, live, persistent, intent):
        """Whether present defines: with XML, when the object is new, transient, or its stored
        definition differs (intent, the IntentDiff); without, when it is transient (present
        means defined: it is made persistent as it is)."""
        if self.desired is None:
            return live is not None and not persistent
        return live is None or not persistent or intent.changed


class LazyConnection:
    """The module's libvirt Connection, opened when first used: a module that reads a backup
    repository runs where no libvirtd is, and option errors come before any connection error."""

    def __init__(self, vm):
        self._vm = vm

    def __getattr__(self, name):
        return getattr(self._vm.connection, name)


def run_module(manager_class, **module_options):
    """A state module's whole main(): parse the options, run the manager, exit or fail once."""
    options = dict(manager_class.module_options)
    options.update(module_options)
    options.setdefault('supports_check_mode', True)
    vm = VirtModule(manager_class.argument_spec, secrets=manager_class.secrets, **options)

    def run(vm):
        manager = manager_class(LazyConnection(vm), vm.params, check_mode=vm.check_mode,
                                diff_mode=vm.module._diff, warn=vm.module.warn)
        manager.module = vm.module
        return manager.run()

    vm.run(run)


def read_each(name, lookup, list_all, listing, where, facts, missing):
    """What an info module returns about objects of one type: facts(obj) of the object called
    name (none when there is none) or, without name, of every object, sorted by name.

    lookup(name): the object or None; list_all(): every object, called inside
    libvirt_call(listing, where); facts(obj): its facts, None to leave it out. An object removed
    while it is read (a VirtError whose code is the VIR_ERR_* constant named missing) is gone."""
    if name:
        found = lookup(name)
        objects = [found] if found is not None else []
    else:
        with libvirt_call(listing, where):
            objects = list_all()
    result = []
    for obj in sorted(objects, key=lambda o: o.name()):
        try:
            item = facts(obj)
        except VirtError as exc:
            if exc.code == optional_flag(missing):
                continue
            raise
        if item is not None:
            result.append(item)
    return result


def run_info_module(argument_spec, read, **module_options):
    """An info module's whole main(): read(connection, params, warn) returns the result's
    fields; nothing changes, so check mode is always supported and changed is always false.
    The connection opens only if read uses it."""
    module_options.setdefault('supports_check_mode', True)
    secrets = module_options.pop('secrets', None)
    vm = VirtModule(argument_spec, secrets=secrets, **module_options)

    def run(vm):
        result = dict(changed=False)
        result.update(read(LazyConnection(vm), vm.params, vm.module.warn))
        return result

    vm.run(run)
