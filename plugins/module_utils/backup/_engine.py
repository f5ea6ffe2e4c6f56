# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Private to the virtops.libvirt collection: may change without notice.
"""Taking one backup of one domain: choose the level, run the job, write the repository.

Order of work, and what cleans up if it fails at any point:
  lock the domain in the repository -> remove debris of interrupted runs (partial directories,
  this repository's checkpoints that no backup records, a stale job of ours) -> plan the level,
  checking the base checkpoint's bitmaps (drift) -> create the backup directory -> start the
  watchdog -> begin the job, which creates the next checkpoint atomically (running domains), or
  add the bitmaps and read the images through qemu-nbd (shut-off domains) -> copy (pull) or wait
  (push) -> hash -> end the job -> write the manifest (the commit point).
Before the commit, a failure ends the job, deletes the checkpoint this run created, and removes
the backup directory, scratch files and socket directory; if the process dies, the watchdog does.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re
import shutil
import stat
import tempfile
import time

try:
    import libvirt
except ImportError:  # pragma: no cover - reported by VirtModule
    libvirt = None

from ansible_collections.virtops.libvirt.plugins.module_utils._libvirt import (
    VirtError,
    libvirt_call,
    translate,
)
from ansible_collections.virtops.libvirt.plugins.module_utils._vocabulary import domain_state
from ansible_collections.virtops.libvirt.plugins.module_utils import _checkpoint
from ansible_collections.virtops.libvirt.plugins.module_utils.backup import (
    _blockhash,
    _crypt,
    _drift,
    _firmware,
    _images,
    _job,
    _nbdio,
    _qcow2_writer,
    _reaper,
    _repository,
)

CHECKPOINT_PREFIX = 'virtops-'
SOCKET_ROOT = '/run/virtops-libvirt'
ONLINE_STATES = ('running', 'paused', 'blocked', 'pmsuspended')


class Request:
    """What the user asked for, validated."""

    def __init__(self, domain, repository, mode='pull', level='auto', disks=None, scratch_dir=None,
                 timeout=None, verify=False, workers=_nbdio.DEFAULT_WORKERS, uri='qemu:///system',
                 tcp=None, quiesce='never', exclude=None, compress=None, key=None):
        self.domain = _repository.check_name('domain name', domain)
        self.repository = repository
        self.mode = mode
        self.level = level
        self.disks = disks
        self.scratch_dir = scratch_dir
        self.timeout = timeout
        self.verify = verify
        self.workers = workers
        self.uri = uri
        self.tcp = tcp  # None (unix socket) or dict(bind_address, port, connect_address, tls_dir)
        self.quiesce = quiesce  # auto, always or never: freeze the guest's file systems (guest agent)
        self.exclude = exclude  # disk target names left out on purpose
        self.compress = compress  # None, zlib or zstd: the new images hold compressed clusters of that type
        self.key = key  # None, or the _crypt.Key the new images are encrypted with (LUKS)


class Plan:
    """The backup that will be taken."""

    def __init__(self, level, reason, chain=None, parent=None, since=None, disks=None, skipped=None,
                 full_disks=None, repaired=None, since_bitmaps=None):
        self.level = level
        self.reason = reason
        self.chain = chain          # existing chain id (incremental, differential) or None (new chain)
        self.parent = parent        # the Backup whose images are the backing files
        self.since = since          # checkpoint the dirty bitmaps start at
        self.disks = disks or []    # _job.Disk to back up
        self.skipped = skipped or []  # (disk name, reason)
        self.full_disks = set(full_disks or ())  # disks new since the parent: copied in full
        self.repaired = repaired or []
        self.since_bitmaps = since_bitmaps or {}  # {disk: bitmap} for shut-off domains
        self.parent_maps = {}       # {disk: its parent's map, loading on a thread}: _check_base_chain
        # The block hash of the chain: a new chain takes the newest this host can compute; an
        # incremental keeps its chain's (its maps continue the parent's, block by block).
        self.algorithm = _repository.chain_algorithm(parent) if parent is not None else new_chain_algorithm()

    def disk_parent(self, name):
        if self.parent is None or name in self.full_disks:
            return None
        return self.parent

    def disk_level(self, name):
        return 'full' if self.disk_parent(name) is None else self.level

    @property
    def tracked(self):
        """Disks whose changes a dirty bitmap records (qcow2): the checkpoint covers these."""
        return [d for d in self.disks if d.method == 'bitmap']

    @property
    def compared(self):
        """Names of the disks without a bitmap: read in full, compared with the parent's integrity data."""
        return [d.name for d in self.disks if d.method == 'compare']

    @property
    def job_full_disks(self):
        """Disks the job copies in full even when it is incremental: new since the parent, or
        without a bitmap (compared)."""
        return set(self.full_disks) | set(self.compared)


def new_chain_algorithm():
    """XXH3-128 where the xxhash module is installed; SHA-256 (repository format 1) otherwise, with a
    warning in the result: a backup never fails for want of the faster hash."""
    return _blockhash.XXH3_128 if _blockhash.xxhash is not None else _blockhash.SHA256


def checkpoint_prefix(repo):
    # The repository id in the name lets two repositories track one domain independently.
    return '%s%s-' % (CHECKPOINT_PREFIX, repo.short_id)


def checkpoint_name(repo, backup_id):
    return checkpoint_prefix(repo) + backup_id


def select_disks(domain_name, all_disks, wanted, exclude=None, running=True):
    """The disks to back up, and the others with the reason each is left out.

    By default every disk that holds data; only what holds nothing to back up (CD-ROM, floppy,
    read-only, no medium) is left out by itself. A disk that holds data and cannot be backed up
    fails the run unless the user excluded it: nothing is left out in silence.
    """
    by_name = dict((d.name, d) for d in all_disks)
    known = ', '.join(sorted(by_name)) or 'none'
    exclude = list(exclude or [])
    unknown = [n for n in list(wanted or []) + exclude if n not in by_name]
    if unknown:
        raise VirtError('domain %s has no disk %s (its disks: %s)' % (domain_name, ', '.join(unknown), known))

    def problem(disk):
        return disk.reason or (None if running else disk.offline_problem())

    if wanted:
        bad = [problem(by_name[n]) for n in wanted if problem(by_name[n])]
        if bad:
            raise VirtError('cannot back up %s: %s' % (domain_name, '; '.join(bad)))
        chosen = [by_name[n] for n in sorted(set(wanted)) if n not in exclude]
    else:
        stuck = [problem(d) for d in all_disks if d.skip is None and d.name not in exclude and problem(d)]
        if stuck:
            raise VirtError('cannot back up %s: %s. Nothing was changed; exclude such a disk (option exclude) to '
                            'back up the others without it' % (domain_name, '; '.join(stuck)))
        chosen = [d for d in all_disks if d.skip is None and d.name not in exclude]
    if not chosen:
        raise VirtError('domain %s has no disk to back up: %s' % (
            domain_name, '; '.join(d.reason or '%s is excluded' % d.name for d in all_disks) or 'it has no disks'))
    names = set(d.name for d in chosen)
    skipped = [(d.name, 'excluded' if d.name in exclude else d.skip or 'not selected')
               for d in all_disks if d.name not in names]
    return chosen, skipped


def plan_backup(dom, repo, request, disks, skipped, running, check_only=False):
    """Decide the level; the reason says why, in words a user understands.

    check_only: check mode, where lost checkpoint metadata is not redefined (the prediction then
    says what a real run would try).
    """
    wanted = request.level
    chains = repo.chains(request.domain) if repo is not None else {}
    names = [d.name for d in disks]
    by_name = dict((d.name, d) for d in disks)
    disk_paths = dict((d.name, d.source) for d in disks)

    def full(reason):
        if wanted in ('incremental', 'differential'):
            raise VirtError('cannot take a %s backup of %s: %s; use level full or auto' % (
                wanted, request.domain, reason))
        return Plan('full', 'full: %s' % reason, disks=disks, skipped=skipped)

    if wanted == 'full':
        return Plan('full', 'full: requested', disks=disks, skipped=skipped)
    if not chains:
        return full('no backup of this domain in the repository yet')
    newest_chain = sorted(chains.values(), key=lambda c: (c[0].manifest['started'], c[0].id))[-1]
    base = newest_chain[0] if wanted == 'differential' else newest_chain[-1]
    base_disks = set(d['name'] for d in base.disks)
    # A disk new since the base is copied in full inside the incremental; one the base lacks a
    # bitmap for cannot be incremental.
    continuing = [n for n in names if n in base_disks]
    new = [n for n in names if n not in base_disks]
    if not continuing:
        return full('none of the disks to back up (%s) is in chain %s' % (', '.join(names), base.chain))
    # A disk whose size changed since the base starts a new chain (docs/backup.md), decided here,
    # before a job starts: found only while copying, it failed every run with level auto.
    resized = []
    for name in continuing:
        with libvirt_call('reading the size of disk %s' % name, 'domain %s' % request.domain):
            size = dom.blockInfo(name, 0)[0]
        recorded = base.disk(name).get('virtual_size')
        if recorded is not None and recorded != size:
            resized.append('%s (%d -> %d bytes)' % (name, recorded, size))
    if resized:
        return full('disk %s changed size since backup %s' % (', '.join(resized), base.id))
    # An incremental is encrypted as its chain is, with the same key. Without a key an encrypted
    # chain is never continued, nor silently followed by a plain full: the run fails (level full
    # starts a plain chain on purpose).
    encryption = base.manifest.get('encryption')
    _crypt.check_key(base.id, encryption, request.key)
    if request.key is not None and not encryption:
        return full('backup %s is not encrypted; encrypted backups start a new chain' % base.id)
    # Disks with dirty bitmaps continue from the base's checkpoint; the others are read in full and
    # compared with the base's integrity data, and need no checkpoint.
    tracked = [n for n in continuing if by_name[n].method == 'bitmap']
    compared = [n for n in continuing if by_name[n].method == 'compare']
    if not tracked:
        verdict = _drift.Verdict(True)
    elif check_only:
        ck = _checkpoint.lookup_checkpoint(dom, base.checkpoint) if base.checkpoint else None
        if ck is None:
            verdict = _drift.Verdict(True, repaired=['would redefine checkpoint %s from the repository'
                                                     % base.checkpoint])
        else:
            verdict = _drift.Verdict(True)
    else:
        verdict = _drift.check_base(dom, running, base, tracked, disk_paths)
    if not verdict.usable:
        return full(verdict.reason)
    since = base.checkpoint if tracked else None
    since_bitmaps = {}
    if tracked and not running and not check_only:
        ck = _checkpoint.lookup_checkpoint(dom, base.checkpoint)
        with libvirt_call('reading checkpoint %s' % base.checkpoint, 'domain %s' % request.domain):
            since_bitmaps = _drift.checkpoint_bitmaps(ck.getXMLDesc(libvirt.VIR_DOMAIN_CHECKPOINT_XML_NO_DOMAIN))
    level = 'differential' if wanted == 'differential' else 'incremental'
    reason = '%s: changes since %s backup %s' % (level, base.level, base.id)
    if since:
        reason += ' (checkpoint %s)' % since
    if compared:
        reason += '; disk %s read in full and compared block by block' % ', '.join(compared)
    if new:
        reason += '; new disk %s copied in full' % ', '.join(new)
    if verdict.repaired:
        reason += '; %s' % '; '.join(verdict.repaired)
    return Plan(level, reason, chain=base.chain, parent=base, since=since, disks=disks,
                skipped=skipped, full_disks=new, repaired=verdict.repaired, since_bitmaps=since_bitmaps)


class _Scratch:
    """Files and directories this run made outside the backup directory; removed at the end."""

    def __init__(self):
        self.paths = []

    def add(self, path):
        self.paths.append(path)
        return path

    def clean(self):
        for path in reversed(self.paths):
            try:
                if os.path.isdir(path) and not os.path.islink(path):
                    shutil.rmtree(path)
                elif os.path.lexists(path):
                    os.unlink(path)
            except OSError:
                pass


def _run_dir(repo, domain, owner):
    """A private directory for this run's sockets: only QEMU's user (and root) can enter it.

    Its name carries the repository id, so a stale job of this repository can be told apart from
    a job of another repository backing up the same domain.
    """
    os.makedirs(SOCKET_ROOT, 0o711, exist_ok=True)
    os.chmod(SOCKET_ROOT, 0o711)
    path = tempfile.mkdtemp(prefix='%s-%s-' % (repo.short_id, domain), dir=SOCKET_ROOT)
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        if owner:
            os.fchown(fd, owner[0], owner[1])
        os.fchmod(fd, 0o700)
    finally:
        os.close(fd)
    return path


def _nbd_dir(repo, domain):
    """A directory for the sockets and pid files of this run's own qemu-nbd servers: root's alone.

    Never inside the run directory, which QEMU's user owns: that user could replace a socket
    there with a server of its own, and be read from or written to by root.
    """
    os.makedirs(SOCKET_ROOT, 0o711, exist_ok=True)
    return tempfile.mkdtemp(prefix='.nbd-%s-%s-' % (repo.short_id, domain), dir=SOCKET_ROOT)


def _staging(repo, domain):
    return os.path.join(repo.path, _repository.STAGING, domain)


def _push_target(staging, domain, backup_id, disk):
    return os.path.join(staging, '%s-%s-%s.qcow2' % (domain, backup_id, disk))


SCRATCH_ROOT = '/var/lib/virtops-libvirt/scratch'


def _scratch_dir_path(domain):
    return os.path.join(SCRATCH_ROOT, domain)


def _scratch_dir(domain, owner):
    """The default directory of pull-mode scratch files: local and outside the repository, so QEMU
    sees it even when the repository is on a file system mounted after the domain started (QEMU's
    mount namespace does not see such mounts on hosts without mount propagation). Root's 0711
    parents, one directory per domain that belongs to its QEMU user, set up through descriptors."""
    os.makedirs(os.path.dirname(SCRATCH_ROOT), 0o755, exist_ok=True)
    try:
        return _repository.qemu_domain_dir(SCRATCH_ROOT, domain, owner)
    except _repository.RepositoryError as exc:
        raise VirtError('cannot prepare the scratch directory: %s' % exc)


def _scratch_file(scratch_dir, domain, backup_id, disk):
    return os.path.join(scratch_dir, '%s-%s-%s.scratch.qcow2' % (domain, backup_id, disk))


def _stale_leftovers(repo, domain):
    """Push targets and scratch files in the staging directory, and socket directories under
    SOCKET_ROOT, that runs of this repository for this domain left behind (the run and its
    watchdog both died). Only called with the domain's lock held and no job of ours running."""
    found = []
    own_file = re.compile(r'^%s-\d{8}T\d{6}Z(-\d+)?-[^/]+\.qcow2$' % re.escape(domain))
    # The domain's own staging directory, and .staging itself where older versions worked. Names
    # are only unlinked (never followed), so whatever QEMU's user put there cannot redirect it.
    staging_root = os.path.join(repo.path, _repository.STAGING)
    # .staging/<domain> only below a real .staging: a link there would lead the unlinks elsewhere.
    places = [staging_root, _staging(repo, domain)] if _repository.real_dir(staging_root) else []
    for staging in places + [_scratch_dir_path(domain)]:
        if _repository.real_dir(staging):
            found.extend(os.path.join(staging, n) for n in sorted(os.listdir(staging)) if own_file.match(n))
    # tempfile.mkdtemp adds 8 characters to the prefix _run_dir and _nbd_dir give it.
    own_dir = re.compile(r'^(\.nbd-)?%s-%s-[a-z0-9_]{8}$' % (re.escape(repo.short_id), re.escape(domain)))
    if os.path.isdir(SOCKET_ROOT):
        found.extend(os.path.join(SOCKET_ROOT, n) for n in sorted(os.listdir(SOCKET_ROOT)) if own_dir.match(n))
    return found


def _job_markers(repo, domain):
    return [os.path.join(repo.path, _repository.STAGING) + '/',
            os.path.join(SOCKET_ROOT, '%s-%s-' % (repo.short_id, domain))]


def _relative_backing(parent, disk_name):
    return os.path.join('..', parent.id, parent.disk(disk_name)['image'])


def take_backup(conn, request, check_mode=False):
    """Take one backup; returns the result for the module. Raises VirtError, never exits."""
    dom = conn.get_domain(request.domain)
    state = domain_state(dom)
    running = state in ONLINE_STATES
    if state not in ONLINE_STATES + ('shutoff', 'shutdown', 'crashed'):
        raise VirtError('domain %s is %s: wait until it runs or is shut off' % (request.domain, state))
    with libvirt_call('reading the definition', 'domain %s' % request.domain):
        live_xml = dom.XMLDesc(0)
    quiesce = _job.plan_quiesce(request.quiesce, live_xml, state, 'domain %s' % request.domain)
    all_disks = _job.backup_disks(live_xml)
    disks, skipped = select_disks(request.domain, all_disks, request.disks, request.exclude, running)
    if not running and request.mode == 'push':
        # QEMU does not run to push anything: a shut-off domain is read through qemu-nbd.
        request.mode = 'offline'
    elif not running:
        request.mode = 'offline'

    repo_exists = os.path.exists(os.path.join(request.repository, _repository.REPOSITORY_FILE))
    if check_mode and not repo_exists:
        _repository.check_new_repository(request.repository)
        return _predicted(request, plan_backup(dom, None, request, disks, skipped, running, True), quiesce)
    repo = _repository.Repository(request.repository, create=not check_mode)
    if not check_mode:
        repo.check_writable()
    errors = []
    repo.backups(request.domain, errors)
    if errors:
        raise VirtError('repository %s holds unreadable backups of domain %s: %s. Nothing was changed; '
                        'move the damaged backup directories aside (or restore them) and run again'
                        % (repo.path, request.domain, '; '.join(errors)))

    if check_mode:
        repo.check_owner()
        repo.check_layout()
        plan = plan_backup(dom, repo, request, disks, skipped, running, True)
        _check_base_chain(repo, plan, request.domain, request.key)
        _parent_maps_loaded(plan, request.domain)
        return _predicted(request, plan, quiesce)

    # A first backup that fails before writing anything leaves no empty domain directory behind.
    new_domain_dir = not os.path.isdir(repo.domain_dir(request.domain))
    try:
        lock_fd = repo.lock(request.domain)
    except OSError as exc:
        raise VirtError('cannot lock domain %s in repository %s: %s' % (request.domain, repo.path, exc))
    try:
        qcow2_paths = dict((d.name, d.source) for d in all_disks
                           if d.method == 'bitmap' and d.type in _job.LOCAL_TYPES)
        cleaned = _remove_debris(dom, repo, request.domain, qcow2_paths)
        plan = plan_backup(dom, repo, request, disks, skipped, running)
        _check_base_chain(repo, plan, request.domain, request.key)
        # Never the id of a partial backup just removed: the watchdog of the run that left it may
        # still act, on that id's checkpoint, directory and files.
        removed_ids = set(os.path.basename(path) for path in cleaned['removed_partial'])
        result = _run(conn, dom, repo, request, plan, live_xml, running, quiesce, removed_ids)
        result.update(cleaned)
        return result
    finally:
        repo.unlock(request.domain, lock_fd, remove_empty=new_domain_dir)


def _check_base_chain(repo, plan, domain, request_key=None):
    """An incremental continues a chain that must be intact as the manifests describe it. Every
    layer's header is checked here; the parent's integrity map is loaded on a thread while the run
    sets up, and _parent_maps_loaded waits for it before the job begins, so that a damaged map still
    changes nothing. The maps loaded are the ones the copy starts from (plan.parent_maps)."""
    for disk in plan.disks:
        parent = plan.disk_parent(disk.name)
        if parent is None:
            continue
        lineage = repo.lineage(parent)
        try:
            _repository.check_chain(lineage, disk.name, request_key)
        except (_repository.RepositoryError, _images.ImageError) as exc:
            raise _base_chain_error(plan, domain, parent, exc)
        plan.parent_maps[disk.name] = _blockhash.Background(_repository.load_map, lineage[0],
                                                            lineage[0].disk(disk.name), True)


def _parent_maps_loaded(plan, domain):
    """Wait for the maps _check_base_chain loads; raise the first failure as it would have."""
    failure = None
    for name, loading in sorted(plan.parent_maps.items()):
        try:
            loading.result()
        except (_repository.RepositoryError, _blockhash.BlockHashError) as exc:
            failure = failure or _base_chain_error(plan, domain, plan.disk_parent(name), exc)
    if failure is not None:
        raise failure


def _base_chain_error(plan, domain, parent, exc):
    return VirtError('cannot take an %s backup of domain %s on backup %s: %s. Nothing was changed; take '
                     'level full to start a new chain, or repair the repository' % (plan.level, domain, parent.id, exc))


def _remove_debris(dom, repo, domain, disk_paths):
    """What interrupted runs of this repository left: partial directories, a stale job of ours,
    checkpoints that no complete backup records. Called with the domain's lock held."""
    removed = repo.remove_partials(domain)
    stale_job = False
    job_xml = _job.active_backup_job(dom)
    if job_xml is not None:
        if any(marker in job_xml for marker in _job_markers(repo, domain)):
            _job.BackupJob(dom, 'domain %s' % domain, active=True).end()
            stale_job = True
        else:
            raise VirtError('domain %s is busy with a backup job that repository %s did not start (another '
                            'repository or tool is backing it up); try again when it has finished'
                            % (domain, repo.path))
    for path in _stale_leftovers(repo, domain):
        if os.path.isdir(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            try:
                os.unlink(path)
            except OSError:
                pass
        removed.append(path)
    known = set(b.checkpoint for b in repo.backups(domain) if b.checkpoint)
    orphans = _drift.orphan_checkpoints(dom, checkpoint_prefix(repo), known)
    for name in orphans:
        try:
            _checkpoint.discard_checkpoint(dom, name, disk_paths)
        except VirtError as exc:
            raise VirtError('deleting checkpoint %s left by an interrupted backup of domain %s: %s'
                            % (name, domain, exc.msg), obj=domain)
    return dict(removed_partial=removed, removed_checkpoints=orphans, aborted_stale_job=stale_job)


def _predicted(request, plan, quiesce):
    return dict(changed=True, backup=dict(
        id=None, chain=plan.chain, level=plan.level, reason=plan.reason, mode=request.mode, quiesced=bool(quiesce),
        parent=plan.parent.id if plan.parent else None, encrypted=request.key is not None,
        disks=[dict(name=d.name, level=plan.disk_level(d.name), method=d.method) for d in plan.disks],
        skipped_disks=[dict(name=n, reason=r) for n, r in plan.skipped]))


def _run(conn, dom, repo, request, plan, live_xml, running, quiesce=None, removed_ids=()):
    started = _repository.utcnow()
    t0 = time.time()
    deadline = t0 + request.timeout if request.timeout else None
    backup_id = repo.new_backup_id(request.domain, started, taken=lambda bid: bid in removed_ids or (
        _checkpoint.lookup_checkpoint(dom, checkpoint_name(repo, bid))))
    chain = plan.chain or backup_id
    # A checkpoint only when some disk keeps a dirty bitmap; compared disks need none.
    ck_name = checkpoint_name(repo, backup_id) if plan.tracked else None
    label = 'domain %s' % request.domain
    owner = _job.qemu_owner(live_xml)
    disk_paths = dict((d.name, d.source) for d in plan.tracked)
    scratch = _Scratch()
    map_writers = []     # the disks' hash maps, saved while the run goes on (see _finish_disk)
    job = _job.BackupJob(dom, label)
    committed = False
    backup_path = None
    watchdog = None
    try:
        backup_path = repo.backup_dir(request.domain, chain, backup_id)
        run_dir = scratch.add(_run_dir(repo, request.domain, owner))
        nbd_dir = scratch.add(_nbd_dir(repo, request.domain))
        # The watchdog also removes the files QEMU works with: push targets and scratch files.
        staging = _staging(repo, request.domain)
        qemu_files = [f for d in plan.disks for f in (
            _push_target(staging, request.domain, backup_id, d.name),
            _scratch_file(request.scratch_dir or _scratch_dir_path(request.domain), request.domain, backup_id,
                          d.name))]
        # It aborts only a job whose XML names this run's own files: a watchdog that waits for a
        # restarted libvirtd must not abort the job of a later run, which removed this run's debris.
        watchdog = _reaper.Watchdog(request.uri, dom.UUIDString(), ck_name or '', [run_dir + os.sep] + qemu_files,
                                    [run_dir, nbd_dir] + qemu_files,
                                    [] if running else [d.source for d in plan.tracked], thaw=bool(quiesce),
                                    backup_path=backup_path).start()
        with libvirt_call('reading the definition', label):
            persistent = dom.isPersistent()
            saved_xml = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE if persistent else 0)
        _repository.write_file(os.path.join(backup_path, 'domain.xml'), saved_xml)

        out = [name for name, _reason in plan.skipped]
        description = 'virtops.libvirt backup %s of chain %s in repository %s (%s)' % (
            backup_id, chain, repo.path, repo.id)
        sizes = {}
        for disk in plan.disks:
            with libvirt_call('reading the size of disk %s' % disk.name, label):
                sizes[disk.name] = dom.blockInfo(disk.name, 0)[0]

        # UEFI variables and TPM state: taken when the job starts (inside the freeze), or before the
        # disks of a shut-off domain are read.
        fw_state = _firmware.firmware_state(live_xml, dom.UUIDString())
        firmware = {}

        def capture_firmware():
            firmware['section'] = _firmware.capture(fw_state, backup_path)

        _parent_maps_loaded(plan, request.domain)     # before anything changes in libvirt or the disks
        ctx = dict(dom=dom, repo=repo, request=request, plan=plan, job=job, backup_path=backup_path,
                   sizes=sizes, owner=owner, scratch=scratch, deadline=deadline, backup_id=backup_id,
                   run_dir=run_dir, nbd_dir=nbd_dir, disk_paths=disk_paths, ck_name=ck_name, quiesce=quiesce,
                   at_start=capture_firmware, map_writers=map_writers)
        if not running:
            capture_firmware()
            disk_results = _offline(ctx, description, out)
        else:
            ck_xml = None
            if ck_name:
                ck_xml = _checkpoint.build_checkpoint_xml(
                    ck_name, description,
                    [dict(name=d.name, checkpoint='bitmap') for d in plan.tracked] +
                    [dict(name=name, checkpoint='no') for name in out + plan.compared])
            if request.mode == 'pull':
                disk_results = _pull(ctx, ck_xml, out)
            else:
                disk_results = _push(ctx, ck_xml, out)
            job.end()

        if ck_name:
            ck = _checkpoint.lookup_checkpoint(dom, ck_name)
            if ck is None:
                raise VirtError('checkpoint %s vanished during the backup of %s' % (ck_name, request.domain))
            with libvirt_call('reading checkpoint %s' % ck_name, label):
                _repository.write_file(os.path.join(backup_path, 'checkpoint.xml'), ck.getXMLDesc(0))
        _wait_for_maps(map_writers)

        if request.verify:
            for entry in disk_results:
                _verify_disk(repo, plan, backup_path, entry, request.workers, nbd_dir, request.key)

        finished = _repository.utcnow()
        manifest = dict(
            format=_repository.MANIFEST_FORMAT, format_version=_repository.manifest_version(plan.algorithm),
            complete=True, id=backup_id, chain=chain, domain=request.domain, domain_uuid=dom.UUIDString(),
            level=plan.level, reason=plan.reason, mode=request.mode, online=running,
            parent=plan.parent.id if plan.parent else None,
            since_checkpoint=plan.since, checkpoint=ck_name,
            repository_id=repo.id, started=_repository.isoformat(started),
            finished=_repository.isoformat(finished), duration=round(time.time() - t0, 3),
            domain_xml='domain.xml', checkpoint_xml='checkpoint.xml' if ck_name else None,
            verified=bool(request.verify), quiesced=job.quiesced, disks=disk_results,
            skipped_disks=[dict(name=n, reason=r) for n, r in plan.skipped],
            firmware=firmware.get('section'),
        )
        if request.key is not None:
            manifest['encryption'] = _crypt.manifest_section(request.key)
        repo.commit(backup_path, manifest)
        committed = True
    except BaseException as exc:
        _wait_for_maps(map_writers, errors=False)     # before the backup directory is removed
        if not _cleanup_failed(dom, job, ck_name, backup_path, committed, disk_paths) and watchdog is not None:
            # libvirt could not be reached (e.g. libvirtd restarted mid-job): the job and the
            # checkpoint may still exist. The watchdog ends them with a connection of its own once
            # libvirtd answers again, as if this process had died.
            watchdog.abandon()
        if isinstance(exc, (_nbdio.NbdIoError, _images.ImageError, _blockhash.BlockHashError,
                            _repository.RepositoryError, _firmware.FirmwareError, OSError)):
            raise VirtError('backup of domain %s failed: %s' % (request.domain, exc))
        if isinstance(exc, libvirt.libvirtError):
            raise translate(exc, 'backup', 'domain %s' % request.domain)
        raise
    finally:
        scratch.clean()
        if watchdog is not None:
            watchdog.done()

    return dict(changed=True, backup=dict(
        id=backup_id, chain=chain, level=plan.level, reason=plan.reason, mode=request.mode,
        online=running, parent=manifest['parent'], checkpoint=ck_name, path=backup_path,
        quiesced=manifest['quiesced'], frozen_filesystems=job.frozen,
        started=manifest['started'], duration=manifest['duration'], verified=manifest['verified'],
        encrypted='encryption' in manifest,
        disks=[dict((k, d[k]) for k in ('name', 'level', 'method', 'virtual_size', 'dirty_bytes', 'bytes_read',
                                        'bytes_written', 'throughput', 'image_digest', 'compression') if k in d)
               for d in disk_results],
        skipped_disks=manifest['skipped_disks'], firmware=manifest['firmware']),
        **_warnings(job, request, plan, manifest['firmware']))


def _warnings(job, request, plan, firmware=None):
    warnings = []
    if request.key is not None and firmware and (firmware.get('nvram') or firmware.get('tpm')):
        warnings.append('domain %s: the disk images are encrypted, but the UEFI variable store and the TPM state '
                        'saved beside them are not (keep the repository private)' % request.domain)
    if job.quiesce_error is not None:
        warnings.append('domain %s: the guest agent could not freeze the file systems (%s); the backup is '
                        'crash-consistent, as after a power cut (quiesce: always makes this an error)'
                        % (request.domain, job.quiesce_error))
    if plan.parent is None and plan.algorithm != _blockhash.ALGORITHM:
        warnings.append('the new chain hashes its blocks with %s (repository format 1), as the xxhash Python module '
                        'is not installed on this host (Debian/Ubuntu: python3-xxhash); with it, new chains use '
                        'XXH3-128, which costs a tenth of the CPU time' % plan.algorithm)
    return dict(warnings=warnings) if warnings else {}


def _wait_for_maps(map_writers, errors=True):
    """Wait until every hash map is on disk and fill in its digest; errors: raise the first failure."""
    failure = None
    while map_writers:
        entry, writer = map_writers.pop(0)
        try:
            entry['image_digest'] = writer.result()
        except Exception as exc:  # pylint: disable=broad-except  # the first one is raised below
            failure = failure or exc
    if failure is not None and errors:
        raise failure


def _cleanup_failed(dom, job, ck_name, backup_path, committed, disk_paths):
    """Undo a failed run; False when the job or the checkpoint could not be dealt with."""
    if committed:
        return True
    clean = True
    try:
        job.end()
    except Exception:  # pylint: disable=broad-except
        clean = False
    try:
        # Only this run's checkpoint: its name carries this backup's id.
        if ck_name:
            _checkpoint.discard_checkpoint(dom, ck_name, disk_paths)
    except Exception:  # pylint: disable=broad-except
        clean = False
    if backup_path and os.path.isdir(backup_path):
        shutil.rmtree(backup_path, ignore_errors=True)
    return clean


def _parent_map(plan, disk_name, size):
    parent = plan.disk_parent(disk_name)
    if parent is None:
        return _blockhash.BlockHashMap(size, algorithm=plan.algorithm)
    entry = parent.disk(disk_name)
    if entry['virtual_size'] != size:
        raise VirtError('disk %s changed size since backup %s (%d -> %d bytes); take a full backup' % (
            disk_name, parent.id, entry['virtual_size'], size))
    # Taken, not copied: each map is the start of exactly one disk's copy.
    loading = plan.parent_maps.pop(disk_name, None)
    return loading.result() if loading is not None else _repository.load_map(parent, entry, keep_members=True)


def _finish_disk(ctx, disk, image_name, backing, hashmap, seconds, dirty, read, written, zero):
    map_name = '%s.blockhash.gz' % disk.name
    image_path = os.path.join(ctx['backup_path'], image_name)
    entry = dict(
        name=disk.name, level=ctx['plan'].disk_level(disk.name), method=disk.method,
        virtual_size=ctx['sizes'][disk.name],
        image=image_name, backing=backing, source=disk.source,
        dirty_bytes=dirty, bytes_read=read, bytes_written=written, zero_bytes=zero,
        throughput=int(read / seconds) if seconds > 0 else None,
        integrity=dict(algorithm=hashmap.algorithm, block_size=hashmap.block_size, map=map_name),
        image_digest=None, file_size=None,
    )
    # The map is saved, and its digest taken, while the run goes on: _wait_for_maps fills in
    # image_digest, and is what a failure waits for before it removes the backup directory.
    ctx['map_writers'].append((entry, _blockhash.Background(hashmap.save, os.path.join(ctx['backup_path'], map_name))))
    os.chmod(image_path, 0o600)
    _repository.fsync_file(image_path)
    entry['file_size'] = os.stat(image_path).st_size
    if ctx['request'].compress:
        entry['compression'] = ctx['request'].compress
    return entry


def _time_left(deadline):
    return max(1, deadline - time.time()) if deadline else None


def _copy_disk(ctx, disk, source_export, contexts, select, incremental):
    """Copy one disk from an NBD source into a new image of the backup (pull and offline).

    A disk without a bitmap (method compare) that continues a chain is read in full; only blocks
    whose hash differs from the parent's integrity data are written into the new overlay.
    """
    plan = ctx['plan']
    size = ctx['sizes'][disk.name]
    image_name = '%s.qcow2' % disk.name
    image_path = os.path.join(ctx['backup_path'], image_name)
    parent = plan.disk_parent(disk.name)
    backing = _relative_backing(parent, disk.name) if parent else None
    compare = parent is not None and disk.method == 'compare'
    hashmap = _parent_map(plan, disk.name, size)
    t0 = time.time()

    def transfer_into(destination):
        transfer = _nbdio.Transfer(source_export, size, hashmap, destination, workers=ctx['request'].workers,
                                   write_zeroes=parent is not None, timeout=_time_left(ctx['deadline']),
                                   compare=compare)
        transfer.run(contexts, select)
        return transfer

    transfer = _write_new_image(ctx, image_path, size, backing, hashmap, transfer_into)
    if compare:
        dirty = transfer.bytes_written + transfer.changed_zero_bytes
    else:
        dirty = transfer.selected_bytes if incremental else transfer.bytes_read
    return _finish_disk(ctx, disk, image_name, backing, hashmap, time.time() - t0, dirty,
                        transfer.bytes_read, transfer.bytes_written, transfer.zero_bytes)


def _write_new_image(ctx, image_path, size, backing, hashmap, transfer_into):
    """Create the backup image at image_path (private, 0600, from its first byte; O_EXCL, no link
    followed) and fill it: transfer_into(destination) runs the transfer and returns it, which this
    returns. The module writes the image by descriptor (_qcow2_writer; compressed clusters with
    request.compress), its writeback to disk overlapping the copy; encrypted clusters (and zstd
    without the zstandard module) are written by qemu-nbd, QEMU encrypting and compressing."""
    request = ctx['request']
    fd = os.open(image_path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        _images.create(image_path, size, backing, fd=fd, compress=request.compress, key=request.key)
        writer = None
        if request.key is None:
            try:
                writer = _qcow2_writer.Qcow2Writer(fd, image_path, size, hashmap.block_size,
                                                   compress=request.compress)
            except _images.NotPlain:
                pass
        if writer is None:
            with _nbdio.QemuNbdServer(image_path, readonly=False, clients=request.workers, workdir=ctx['nbd_dir'],
                                      compress=bool(request.compress), key=request.key) as server:
                return transfer_into(server.export())
        flusher = _images.Flusher(fd, loop=not writer.skips_page_cache())
        try:
            transfer = transfer_into(writer)
            writer.finish()
        except BaseException:
            flusher.abandon()
            raise
        finally:
            writer.release()
        flusher.wait()
        return transfer
    finally:
        os.close(fd)


def _pull(ctx, ck_xml, out):
    plan, request = ctx['plan'], ctx['request']
    scratch_dir = request.scratch_dir or _scratch_dir(request.domain, ctx['owner'])
    socket = os.path.join(ctx['run_dir'], 'nbd.sock')
    scratch_files = dict(
        (d.name, ctx['scratch'].add(_scratch_file(scratch_dir, request.domain, ctx['backup_id'], d.name)))
        for d in plan.disks)
    tcp = request.tcp
    server = (tcp['bind_address'], tcp['port']) if tcp else socket
    ctx['job'].begin(_job.pull_backup_xml(plan.since, server, scratch_files, out, plan.job_full_disks), ck_xml,
                     quiesce=ctx['quiesce'], at_start=ctx['at_start'])
    if not tcp and not _job.wait_for_path(socket):
        raise VirtError('the NBD export of %s did not appear at %s' % (request.domain, socket))

    def export(name):
        if tcp:
            return _nbdio.Export(name=name, host=tcp['connect_address'], port=tcp['port'], tls_dir=tcp['tls_dir'])
        return _nbdio.Export(socket, name)

    exports = _job.pull_exports(ctx['job'].xml())
    results = []
    for disk in plan.disks:
        export_name, bitmap = exports.get(disk.name, (disk.name, None))
        incremental = plan.disk_parent(disk.name) is not None
        contexts, select = [], _nbdio.select_all
        if incremental and disk.method == 'bitmap':
            if not bitmap:
                raise VirtError('the backup job of %s exports no dirty bitmap for disk %s' % (request.domain, disk.name))
            contexts = [_nbdio.dirty_bitmap_context(bitmap)]
            select = _nbdio.select_dirty(contexts[0])
        results.append(_copy_disk(ctx, disk, export(export_name), contexts, select, incremental))
    return results


def _offline(ctx, description, out):
    """A shut-off domain: add the new checkpoint's bitmaps to the qcow2 images, read every disk
    through qemu-nbd (qcow2: dirty extents from the base checkpoint's bitmap; other formats: all of
    it, compared with the parent's integrity data), then redefine the checkpoint in libvirt.

    qemu-nbd holds the images' shared lock while it reads, so the domain cannot start and change
    them under the backup; the bitmaps are added first, so no write after the point in time is lost.
    """
    plan, request, dom = ctx['plan'], ctx['request'], ctx['dom']
    bitmaps = {}
    for disk in plan.tracked:
        _checkpoint.add_bitmap(disk.source, ctx['ck_name'])
        bitmaps[disk.name] = ctx['ck_name']
    results = []
    for disk in plan.disks:
        incremental = plan.disk_parent(disk.name) is not None
        tracked = incremental and disk.method == 'bitmap'
        since_bitmap = plan.since_bitmaps.get(disk.name) if tracked else None
        if tracked and not since_bitmap:
            raise VirtError('checkpoint %s records no bitmap for disk %s' % (plan.since, disk.name))
        try:
            reader = _nbdio.QemuNbdServer(disk.source, fmt=disk.format, readonly=True, clients=request.workers,
                                          bitmap=since_bitmap, workdir=ctx['nbd_dir'])
        except _nbdio.NbdIoError as exc:
            raise VirtError('cannot read disk %s of shut-off domain %s (was it started meanwhile?): %s' % (
                disk.name, request.domain, exc))
        with reader:
            if domain_state(dom) in ONLINE_STATES:
                raise VirtError('domain %s was started during its offline backup; run the backup again'
                                % request.domain)
            contexts, select = [], _nbdio.select_all
            if tracked:
                contexts = [_nbdio.dirty_bitmap_context(since_bitmap)]
                select = _nbdio.select_dirty(contexts[0])
            results.append(_copy_disk(ctx, disk, reader.export(), contexts, select, incremental))
    if bitmaps:
        xml = _checkpoint.build_checkpoint_xml(
            ctx['ck_name'], description,
            [dict(name=disk, checkpoint='bitmap', bitmap=bitmap) for disk, bitmap in sorted(bitmaps.items())] +
            [dict(name=disk, checkpoint='no') for disk in out + plan.compared],
            parent=_job.newest_checkpoint(dom), creation_time=time.time())
        with libvirt_call('defining checkpoint %s' % ctx['ck_name'], 'domain %s' % request.domain):
            dom.checkpointCreateXML(xml, libvirt.VIR_DOMAIN_CHECKPOINT_CREATE_REDEFINE)
    return results


def _push(ctx, ck_xml, out):
    plan, request = ctx['plan'], ctx['request']
    staging = ctx['repo'].staging_dir(request.domain, ctx['owner'])
    targets = {}
    backings = {}
    compared = set()
    for disk in plan.disks:
        target = ctx['scratch'].add(_push_target(staging, request.domain, ctx['backup_id'], disk.name))
        parent = plan.disk_parent(disk.name)
        # The backing file is named as it will be seen from the backup directory; QEMU does
        # not open it during the job.
        backings[disk.name] = _relative_backing(parent, disk.name) if parent else None
        if parent is not None and disk.method == 'compare':
            # No bitmap: QEMU pushes the whole disk, which is then compared with the parent.
            compared.add(disk.name)
        whole = parent is None or disk.name in compared
        _create_push_target(target, ctx['sizes'][disk.name], None if whole else backings[disk.name], ctx['owner'],
                            cluster_size=PUSH_WHOLE_DISK_CLUSTER if whole else None)
        targets[disk.name] = target
    t0 = time.time()
    ctx['job'].begin(_job.push_backup_xml(plan.since, targets, out, plan.job_full_disks), ck_xml,
                     reuse_external=True, quiesce=ctx['quiesce'], at_start=ctx['at_start'])
    ctx['job'].wait(ctx['deadline'])
    job_seconds = time.time() - t0
    results = []
    for disk in plan.disks:
        size = ctx['sizes'][disk.name]
        image_name = '%s.qcow2' % disk.name
        if disk.name in compared:
            results.append(_compare_push_target(ctx, disk, targets[disk.name], image_name))
            continue
        hashmap = _parent_map(plan, disk.name, size)
        incremental = plan.disk_parent(disk.name) is not None
        if request.compress or request.key is not None:
            transfer = _rewrite_pushed(ctx, disk, targets[disk.name], image_name, backings[disk.name], hashmap,
                                       incremental)
            dirty = transfer.selected_bytes if incremental else transfer.bytes_read
            results.append(_finish_disk(ctx, disk, image_name, backings[disk.name], hashmap, job_seconds,
                                        dirty, transfer.bytes_read, transfer.bytes_read, transfer.zero_bytes))
            continue
        _take_push_target(targets[disk.name], ctx['backup_path'], image_name, ctx['owner'])
        # QEMU wrote the image; hash what it wrote: the image's own clusters, read through its chain
        # (opened layer by layer, as the manifests describe it).
        with _new_image_chain(ctx['repo'], plan, ctx['backup_path'], image_name, disk.name, size,
                              backings[disk.name]) as chain:
            # QEMU wrote through the page cache: its writeback to disk overlaps the hashing.
            flusher = _images.Flusher(chain.layers[0].fd)
            flusher.finish()
            try:
                transfer = _hash_pushed(ctx, chain, size, hashmap, incremental)
            except BaseException:
                flusher.abandon()
                raise
            flusher.wait()
        written = transfer.bytes_read
        dirty = transfer.selected_bytes if incremental else transfer.bytes_read
        results.append(_finish_disk(ctx, disk, image_name, backings[disk.name], hashmap, job_seconds,
                                    dirty, written, written, transfer.zero_bytes))
    return results


def _hash_pushed(ctx, chain, size, hashmap, incremental):
    """Hash what QEMU pushed into hashmap (a new map, or the parent's for an incremental): the
    image's own clusters read straight from the file where its layout allows (no qemu-nbd and
    socket in between), through qemu-nbd otherwise. Returns the counts (bytes_read, zero_bytes,
    selected_bytes)."""
    fd = chain.layers[0].fd
    try:
        # The target is root's now (_take_push_target); with QEMU's descriptors closed, nothing
        # can truncate it under a map.
        return _images.hash_qcow2_file(fd, size, hashmap.block_size, hashmap.algorithm, chain.label, hashmap=hashmap,
                                       top_only=incremental, mapped=_images.no_other_writer(fd))[1]
    except _images.NotPlain:
        pass
    request = ctx['request']
    with _images.serve(chain, clients=request.workers, workdir=ctx['nbd_dir'], allocation_depth=True) as reader:
        transfer = _nbdio.Transfer(reader.export(), size, hashmap, workers=request.workers,
                                   timeout=_time_left(ctx['deadline']))
        if incremental:
            transfer.run([_nbdio.ALLOCATION_DEPTH], _nbdio.select_top_layer)
        else:
            transfer.run([], _nbdio.select_all)
    return transfer


def _rewrite_pushed(ctx, disk, target, image_name, backing, hashmap, incremental):
    """A target QEMU pushed (plain clusters, not encrypted), copied into a compressed and/or
    encrypted image with the same backing and hashed on the way: an incremental copies only the
    target's own clusters (allocation depth 1), so it stays as small as what changed. The pushed
    file is then removed."""
    size = ctx['sizes'][disk.name]
    request = ctx['request']
    pushed_name = '.%s.pushed.qcow2' % disk.name
    pushed_path = ctx['scratch'].add(os.path.join(ctx['backup_path'], pushed_name))
    _take_push_target(target, ctx['backup_path'], pushed_name, ctx['owner'])
    image_path = os.path.join(ctx['backup_path'], image_name)
    with _new_image_chain(ctx['repo'], ctx['plan'], ctx['backup_path'], pushed_name, disk.name, size,
                          backing, key=request.key, top_encrypted=False) as chain:
        with _images.serve(chain, clients=request.workers, workdir=ctx['nbd_dir'],
                           allocation_depth=incremental) as reader:

            def transfer_into(destination):
                transfer = _nbdio.Transfer(reader.export(), size, hashmap, destination, workers=request.workers,
                                           write_zeroes=incremental, timeout=_time_left(ctx['deadline']))
                if incremental:
                    transfer.run([_nbdio.ALLOCATION_DEPTH], _nbdio.select_top_layer)
                else:
                    transfer.run([], _nbdio.select_all)
                return transfer

            transfer = _write_new_image(ctx, image_path, size, backing, hashmap, transfer_into)
    os.unlink(pushed_path)
    return transfer


def _compare_push_target(ctx, disk, target, image_name):
    """A whole disk QEMU pushed (no bitmap): taken back as a temporary full image in the backup
    directory, then copied into the new overlay through the same compare as pull mode."""
    full_name = '.%s.pushed.qcow2' % disk.name
    full_path = ctx['scratch'].add(os.path.join(ctx['backup_path'], full_name))
    _take_push_target(target, ctx['backup_path'], full_name, ctx['owner'])
    with _images.open_file(full_path, 'qcow2', ctx['sizes'][disk.name]) as chain:
        with _images.serve(chain, clients=ctx['request'].workers, workdir=ctx['nbd_dir']) as reader:
            result = _copy_disk(ctx, disk, reader.export(), [], _nbdio.select_all, True)
    os.unlink(full_path)
    return result


# The cluster size of a push target that receives a whole disk: QEMU's backup job copies in
# chunks of the target's cluster, and 128 KiB pushed a GiB 15 to 25 % faster than qcow2's default
# of 64 KiB here (256 KiB gained little more, 1 MiB and 2 MiB were slower), at the cost of at most
# twice the space for data scattered in pieces under 128 KiB. Incremental targets keep 64 KiB:
# one cluster per bitmap granule, so that they hold no more than what changed.
PUSH_WHOLE_DISK_CLUSTER = 128 * 1024


def _create_push_target(target, size, backing, owner, cluster_size=None):
    """Create a push target in the domain's staging directory (which QEMU's user owns): by root,
    O_EXCL and without following a link planted under its name, then handed to QEMU's user by fd."""
    fd = os.open(target, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        _images.create(target, size, backing, fd=fd, cluster_size=cluster_size)
        if owner:
            os.fchown(fd, owner[0], owner[1])
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)


def _take_push_target(target, backup_path, image_name, owner):
    """Move a finished push target into the backup directory, as root's, private.

    The staging directory belongs to QEMU's user, who may have swapped the file: it is opened
    without following links and must be a regular file of QEMU's user (or root) with one link;
    after the rename, the name in the backup directory must still be that very file.
    """
    try:
        fd = os.open(target, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise VirtError('cannot open the push target %s after the job: %s (a symbolic link or a missing file is '
                        'refused)' % (target, exc.strerror or exc))
    try:
        st = os.fstat(fd)
        owners = set([0] + ([owner[0]] if owner else []))
        if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1 or st.st_uid not in owners:
            raise VirtError('the push target %s is not the file this run created (type %o, %d links, owner %d); '
                            'nothing taken from it' % (target, stat.S_IFMT(st.st_mode), st.st_nlink, st.st_uid))
        os.fchown(fd, 0, 0)
        os.fchmod(fd, 0o600)
        final = os.path.join(backup_path, image_name)
        os.rename(target, final)
        now = os.lstat(final)
        if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino):
            os.unlink(final)
            raise VirtError('the push target %s was replaced while it was being moved; nothing taken from it' % target)
    finally:
        os.close(fd)


def _new_image_chain(repo, plan, backup_path, image_name, disk_name, size, backing, key=None, top_encrypted=None):
    """The chain of a disk's new image: its own file, then its parent's chain from the repository.
    top_encrypted: whether the new image is encrypted (default: when there is a key)."""
    top = _images.open_layer(os.path.join(backup_path, image_name), size, backing)
    top.encrypted = key is not None if top_encrypted is None else top_encrypted
    layers = [top]
    parent = plan.disk_parent(disk_name)
    if parent is not None:
        try:
            layers += _repository.open_chain(repo.lineage(parent), disk_name, key).layers
        except BaseException:
            os.close(top.fd)
            raise
    return _images.ImageChain(layers, key=key)


def _verify_disk(repo, plan, backup_path, entry, workers, workdir, key=None):
    image = os.path.join(backup_path, entry['image'])
    with _new_image_chain(repo, plan, backup_path, entry['image'], entry['name'], entry['virtual_size'],
                          entry['backing'], key=key) as chain:
        ok, message = _images.check(chain)
        if not ok:
            raise VirtError('verification of %s failed: qemu-img check: %s' % (image, message))
        actual = _images.hash_image(chain, entry['virtual_size'], entry['integrity']['block_size'], workers=workers,
                                    workdir=workdir, algorithm=entry['integrity']['algorithm'])
    if actual.digest() != entry['image_digest']:
        raise VirtError('verification of %s failed: the image does not hold what was read from the domain' % image)
