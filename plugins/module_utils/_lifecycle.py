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

from ansible_collections.virtops.libvirt.plugins.module_utils._libvirt import VirtError, VirtModule
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
    - secrets: optional function(params) returning values to mask in everything returned.

    The connection opens on first use of self.connection or self.conn, so bad options fail
    before any connection error, and a manager that works on a backup repository alone never
    needs a libvirtd.

    Hooks (see each): check_options, identify, lookup, plan_absent, plan_present, after_apply,
    finish, result_fields. The run order lives here only.
    """

    kind = 'object'
    argument_spec = {}
    module_options = {}
    secrets = None

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

    # -- the lifecycle ----------------------------------------------------------------------

    def run(self):
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
