# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Private to the virtops.libvirt collection: may change without notice.
"""What the backup modules run: the managers of virt_backup, virt_restore, virt_backup_copy,
virt_backup_prune and virt_backup_export on the lifecycle base, and virt_backup_info's reader.

These modules act on a backup repository rather than converge one libvirt object, and the engine
plans and acts in one call (take_backup, restore, Copier.run, Pruner.run, _export.ensure) that
takes a check_mode flag. So each plan is one step that calls the engine; in check mode, planning
asks the engine for its own prediction, which is what check mode has always returned.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.virtops.libvirt.plugins.module_utils._libvirt import VirtError
from ansible_collections.virtops.libvirt.plugins.module_utils._lifecycle import ObjectManager, Plan
from ansible_collections.virtops.libvirt.plugins.module_utils.xml._document import require_lxml
from ansible_collections.virtops.libvirt.plugins.module_utils import _checkpoint
from ansible_collections.virtops.libvirt.plugins.module_utils.backup import (
    _blockhash,
    _crypt,
    _engine,
    _images,
    _nbdio,
    _options,
    _repository,
)

# The parts of the engine that only restore, copy, prune and export use (and, through _copy, boto3)
# are imported by the methods that use them: every module imports this file, and a module run by
# Ansible compiles what it imports on each run (about 50 ms for these, most of a backup's start).


class EngineManager(ObjectManager):
    """A module whose one step is a call of the backup engine; the engine's result is the
    module's. Subclasses give step (its name), identify, and outcome_of."""

    step = None
    # True: the engine's 'warnings' become Ansible warnings (a warnings key passed to exit_json
    # is deprecated); virt_backup returns its warnings as a result key, as it always has.
    warnings_to_ansible = False

    def __init__(self, connection, params, check_mode=False, diff_mode=False, warn=None):
        ObjectManager.__init__(self, connection, params, check_mode, diff_mode, warn)
        self.outcome = {}

    def lookup(self):
        """Nothing: the engine finds (and locks) what it works on itself."""
        return None

    def outcome_of(self, check_mode):
        """The engine's result: what it did or, with check_mode, what it would do."""
        raise NotImplementedError

    def plan_present(self, live):
        return self.engine_plan(self.step)

    def engine_plan(self, name):
        plan = Plan()

        def run(live):
            self.take(plan, self.outcome_of(False))
            return live

        plan.add(name, run)
        if self.check_mode:
            self.take(plan, self.outcome_of(True))
        return plan

    def take(self, plan, outcome):
        """The engine's result split into changed, the diff, and the result's other fields."""
        plan.changed = outcome.pop('changed')
        plan.diff = outcome.pop('diff', None)
        if self.warnings_to_ansible:
            for warning in outcome.pop('warnings', None) or []:
                self.warn(warning)
        self.outcome = outcome

    def diff_of(self, plan):
        # The engine's own view (backups, files, exports), shown in diff mode only.
        return plan.diff if self.diff_mode else None

    def result_fields(self, live, plan):
        return self.outcome


# -- virt_backup ------------------------------------------------------------------------------------

class BackupManager(EngineManager):
    """virt_backup: one backup of the domain, every run."""

    kind = 'domain'
    step = 'backup'
    argument_spec = _options.BACKUP_ARGS

    def __init__(self, connection, params, check_mode=False, diff_mode=False, warn=None):
        EngineManager.__init__(self, connection, params, check_mode, diff_mode, warn)
        self.request = None
        self.before = None

    def check_options(self):
        require_lxml()
        if _nbdio.nbd is None:
            raise VirtError('virt_backup needs the libnbd Python bindings (Debian/Ubuntu: python3-libnbd, '
                            'RHEL: python3-libnbd)', exception=_nbdio.NBD_IMPORT_ERROR)
        self.request = _options.backup_request(self.params)

    def identify(self):
        return self.params['domain']

    def plan_present(self, live):
        self.connection.require('backup')
        self.request.key = _crypt.load_key(self.params.get('encryption'), lambda: self.connection)
        # The listing for diff mode costs a second read of every manifest: only when asked for.
        if self.diff_mode:
            self.before = backup_listing(self.params['repository'], self.params['domain'])
        return EngineManager.plan_present(self, live)

    def outcome_of(self, check_mode):
        return _engine.take_backup(self.connection, self.request, check_mode=check_mode)

    def take(self, plan, outcome):
        EngineManager.take(self, plan, outcome)
        if self.before is not None:
            backup = outcome['backup']
            after = self.before + [backup['id'] or '(new %s backup)' % backup['level']]
            plan.diff = dict(before=dict(backups=self.before), after=dict(backups=after))


def backup_listing(path, domain):
    """What diff mode shows of a domain's backups: 'id (level)' each, [] without a repository."""
    try:
        repo = _repository.Repository(path, create=False)
        return ['%s (%s)' % (b.id, b.level) for b in repo.backups(domain)]
    except _repository.RepositoryError:
        return []


# -- virt_restore -----------------------------------------------------------------------------------

class RestoreManager(EngineManager):
    """virt_restore: a point in time restored to files (and a domain defined on them), or served
    for an instant restore."""

    kind = 'domain'
    step = 'restore'
    argument_spec = _options.RESTORE_ARGS
    module_options = _options.RESTORE_RULES
    warnings_to_ansible = True      # what the restore moved or left out (or let through)

    def check_options(self):
        require_lxml()

    def identify(self):
        return self.params['domain']

    def outcome_of(self, check_mode):
        from ansible_collections.virtops.libvirt.plugins.module_utils.backup import _restore
        return _restore.restore(lambda: self.connection, self.params, check_mode)


# -- virt_backup_copy -------------------------------------------------------------------------------

class CopyManager(EngineManager):
    """virt_backup_copy: the backups the target lacks, copied. Opens no libvirt connection: the
    connection options are accepted for module_defaults of the group."""

    kind = 'repository'
    step = 'copy'
    argument_spec = _options.COPY_ARGS
    warnings_to_ansible = True      # source backups not copied

    def __init__(self, connection, params, check_mode=False, diff_mode=False, warn=None):
        EngineManager.__init__(self, connection, params, check_mode, diff_mode, warn)
        self.lock = None

    def check_options(self):
        self.lock = _options.copy_lock(self.params)

    def identify(self):
        return self.params['target']

    def outcome_of(self, check_mode):
        from ansible_collections.virtops.libvirt.plugins.module_utils.backup import _copy
        key = _crypt.load_key(self.params.get('encryption'), lambda: self.connection)
        return _copy.Copier(self.params, check_mode, self.lock, key).run()


# -- virt_backup_prune ------------------------------------------------------------------------------

class HostCheckpoints:
    """The checkpoints of backed-up domains on this host, through the module's libvirt connection."""

    def __init__(self, connection):
        self.connection = connection

    def _domain(self, name, uuid):
        dom = self.connection.lookup_domain(name)
        if dom is None:
            return None
        if uuid and dom.UUIDString() != uuid:
            return None     # another domain of that name: its checkpoints are not ours to touch
        return dom

    def existing(self, domain, uuid, names):
        dom = self._domain(domain, uuid)
        if dom is None:
            return []
        self.connection.require('checkpoints')
        return [n for n in names if _checkpoint.lookup_checkpoint(dom, n) is not None]

    def delete(self, domain, name):
        dom = self._domain(domain, None)
        chk = _checkpoint.lookup_checkpoint(dom, name) if dom is not None else None
        if chk is not None:
            _checkpoint.delete_checkpoint(dom, chk)


class PruneManager(EngineManager):
    """virt_backup_prune: the retention rules applied to each domain's backups."""

    kind = 'repository'
    step = 'prune'
    argument_spec = _options.PRUNE_ARGS

    def __init__(self, connection, params, check_mode=False, diff_mode=False, warn=None):
        EngineManager.__init__(self, connection, params, check_mode, diff_mode, warn)
        self.grace = None

    def check_options(self):
        self.grace = _options.prune_grace(self.params)

    def identify(self):
        return self.params['repository']

    def outcome_of(self, check_mode):
        from ansible_collections.virtops.libvirt.plugins.module_utils.backup import _retention, _s3
        if _s3.is_location(self.params['repository']):
            return self._outcome_s3(check_mode)
        p = self.params
        connection = self.connection
        try:
            repo = _repository.Repository(p['repository'])
            if not check_mode:
                repo.check_writable()
            store = _retention.LocalStore(repo)
            present = repo.domains()
            names = present if p['domains'] is None else [_repository.check_name('domain name', n)
                                                          for n in p['domains']]
            rules = dict((r, p[r]) for r in _retention.RULES)
            pruner = _retention.Pruner(store, rules, keep_chains=p['keep_chains'], merge=p['merge'],
                                       protect=p['protect'], unprotect=p['unprotect'], incomplete_grace=self.grace,
                                       checkpoints=HostCheckpoints(connection), check_mode=check_mode,
                                       restored_from=lambda name: store.restored_from(connection.conn, name))
            domains = []
            for name in names:
                if name not in present:
                    if p['protect'] or p['unprotect']:
                        raise VirtError('repository %s holds no backup of domain %s; nothing was changed'
                                        % (repo.path, name))
                    continue
                domains.append(pruner.run(name))
        except (_repository.RepositoryError, _retention.RetentionError, _images.ImageError,
                _blockhash.BlockHashError, _nbdio.NbdIoError, OSError) as exc:
            raise VirtError('pruning repository %s: %s' % (p['repository'], exc))
        return prune_result(domains, check_mode)

    def _outcome_s3(self, check_mode):
        """The same rules on an S3 repository: no checkpoints (they belong to the directory the
        backups were taken into), no exports, no merges (refused by the options)."""
        from ansible_collections.virtops.libvirt.plugins.module_utils.backup import _copy, _retention
        p = self.params
        repo = None
        try:
            repo = _copy.open_repository(p['repository'], p)
            store = _retention.S3Store(repo)
            present = store.domains()
            names = present if p['domains'] is None else [_repository.check_name('domain name', n)
                                                          for n in p['domains']]
            rules = dict((r, p[r]) for r in _retention.RULES)
            pruner = _retention.Pruner(store, rules, keep_chains=p['keep_chains'], incomplete_grace=self.grace,
                                       check_mode=check_mode)
            domains = [pruner.run(name) for name in names if name in present]
        except (_repository.RepositoryError, _retention.RetentionError, OSError) as exc:
            raise VirtError('pruning repository %s: %s' % (p['repository'], repo.local_path(str(exc)) if repo else exc))
        except VirtError as exc:
            if repo is None:
                raise
            raise VirtError(repo.local_path(exc.msg))
        finally:
            if repo is not None:
                repo.close()
        return prune_result(domains, check_mode)


def prune_result(domains, check_mode):
    """virt_backup_prune's result (with changed and diff) from the domains' outcomes."""
    # any() stops at the first changed domain: the later ones keep their 'changed' key, as
    # the module has always returned them.
    result = dict(changed=any(d.pop('changed') for d in domains), domains=domains,
                  removed=['%s/%s' % (d['name'], r['id']) for d in domains for r in d['removed']],
                  msg=prune_message(domains, check_mode))
    result['diff'] = dict(
        before=dict((d['name'], sorted([k['id'] for k in d['kept']] + [r['id'] for r in d['removed']]))
                    for d in domains),
        after=dict((d['name'], [k['id'] for k in d['kept']]) for d in domains))
    return result


def prune_message(domains, check_mode):
    """virt_backup_prune's msg: what was (or would be) removed, deleted, changed or resolved."""
    removed = sum(len(d['removed']) for d in domains)
    merged = sum(1 for d in domains for r in d['removed'] if r['action'] != 'deleted')
    checkpoints = sum(len(d['checkpoints_deleted']) for d in domains)
    incomplete = sum(len(d['incomplete_removed']) for d in domains)
    flags = sum(len(d['protected']) + len(d['unprotected']) for d in domains)
    would = 'would be ' if check_mode else ''
    parts = []
    if removed:
        how = ' (%d merged into synthetic fulls)' % merged if merged else ''
        parts.append('%d backup%s %sremoved%s' % (removed, '' if removed == 1 else 's', would, how))
    if checkpoints:
        parts.append('%d checkpoint%s %sdeleted' % (checkpoints, '' if checkpoints == 1 else 's', would))
    if incomplete:
        parts.append('%d incomplete backup%s %sremoved' % (incomplete, '' if incomplete == 1 else 's', would))
    if flags:
        parts.append('%d protection flag%s %schanged' % (flags, '' if flags == 1 else 's', would))
    recovered = sum(len(d['recovered']) for d in domains)
    if recovered:
        parts.append('%d interrupted merge%s %sresolved' % (recovered, '' if recovered == 1 else 's', would))
    locked = sum(len(d.get('locked') or []) for d in domains)
    if locked:
        parts.append('%d backup%s kept by S3 Object Lock' % (locked, '' if locked == 1 else 's'))
    return ', '.join(parts) if parts else 'nothing to remove: every backup is kept'


# -- virt_backup_export -----------------------------------------------------------------------------

class ExportManager(EngineManager):
    """virt_backup_export: a backup's point in time served over NBD (present), or no longer
    (absent)."""

    kind = 'export'
    argument_spec = _options.EXPORT_ARGS
    module_options = _options.EXPORT_RULES

    def identify(self):
        return self.params['name']

    def plan_absent(self, live):
        return self.engine_plan('stop')

    def plan_present(self, live):
        return self.engine_plan('export')

    def outcome_of(self, check_mode):
        from ansible_collections.virtops.libvirt.plugins.module_utils.backup import _export
        return _export.ensure(lambda: self.connection, self.params, check_mode)


# -- virt_backup_info -------------------------------------------------------------------------------

def read_backups(connection, params, warn):
    """virt_backup_info's result: every domain, chain and backup of the repository (verified
    with verify). Opens no libvirt connection."""
    require_lxml()
    from ansible_collections.virtops.libvirt.plugins.module_utils.backup import _restore
    result = _restore.describe(params, lambda: connection)
    result.pop('changed', None)
    return result
