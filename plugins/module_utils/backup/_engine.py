# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Private to the virtops.libvirt collection: may change without notice.
"""Taking one backup of one domain: choose the level, run the job, write the repository.

Order of work, and what cleans up if it fails at any point:
  lock the domain in the repository -> remove debris of interrupted runs -> plan the level ->
  create the backup directory -> begin the job (creates the next checkpoint atomically) ->
  copy (pull) or wait (push) -> hash -> end the job -> write the manifest (the commit point).
Before the commit, a failure ends the job, deletes the checkpoint this run created, and removes
the backup directory, scratch files and the socket directory.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import shutil
import tempfile
import time

try:
    import libvirt
except ImportError:  # pragma: no cover - reported by VirtModule
    libvirt = None

from ansible_collections.virtops.libvirt.plugins.module_utils._libvirt import (
    VirtError,
    domain_state,
    libvirt_call,
)
from ansible_collections.virtops.libvirt.plugins.module_utils.backup import (
    _blockhash,
    _images,
    _job,
    _nbdio,
    _repository,
)

CHECKPOINT_PREFIX = 'virtops-'
SOCKET_ROOT = '/run/virtops-libvirt'


class Request:
    """What the user asked for, validated."""

    def __init__(self, domain, repository, mode='pull', level='auto', disks=None, scratch_dir=None,
                 timeout=None, verify=False, workers=_nbdio.DEFAULT_WORKERS):
        self.domain = _repository.check_name('domain name', domain)
        self.repository = repository
        self.mode = mode
        self.level = level
        self.disks = disks
        self.scratch_dir = scratch_dir
        self.timeout = timeout
        self.verify = verify
        self.workers = workers


class Plan:
    """The backup that will be taken."""

    def __init__(self, level, reason, chain=None, parent=None, since=None, disks=None, skipped=None):
        self.level = level
        self.reason = reason
        self.chain = chain          # existing chain id (incremental, differential) or None (new chain)
        self.parent = parent        # the Backup whose images are the backing files
        self.since = since          # checkpoint the dirty bitmap starts at
        self.disks = disks or []    # _job.Disk to back up
        self.skipped = skipped or []  # (disk name, reason)


def checkpoint_name(repo, backup_id):
    # The repository id in the name lets two repositories track one domain independently.
    return '%s%s-%s' % (CHECKPOINT_PREFIX, repo.short_id, backup_id)


def select_disks(domain_name, all_disks, wanted):
    by_name = dict((d.name, d) for d in all_disks)
    if wanted:
        unknown = [n for n in wanted if n not in by_name]
        if unknown:
            raise VirtError('domain %s has no disk %s (its disks: %s)' % (
                domain_name, ', '.join(unknown), ', '.join(sorted(by_name)) or 'none'))
        bad = [by_name[n] for n in wanted if not by_name[n].can_backup]
        if bad:
            raise VirtError('cannot back up %s: %s' % (domain_name, '; '.join(d.reason for d in bad)))
        chosen = [by_name[n] for n in sorted(set(wanted))]
    else:
        chosen = [d for d in all_disks if d.can_backup]
    if not chosen:
        raise VirtError('domain %s has no disk that can be backed up: %s' % (
            domain_name, '; '.join(d.reason for d in all_disks if d.reason) or 'it has no disks'))
    names = set(d.name for d in chosen)
    skipped = [(d.name, 'not selected' if d.can_backup else d.reason) for d in all_disks if d.name not in names]
    return chosen, skipped


def plan_backup(dom, repo, request, disks, skipped):
    """Decide the level; the reason says why, in words a user understands."""
    wanted = request.level
    chains = repo.chains(request.domain) if repo is not None else {}
    names = sorted(d.name for d in disks)

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
    if base.manifest.get('domain_uuid') and base.manifest['domain_uuid'] != dom.UUIDString():
        return full('the domain was replaced (its uuid differs from the chain\'s)')
    if sorted(d['name'] for d in base.disks) != names:
        return full('the disks to back up (%s) differ from the chain\'s (%s)' % (
            ', '.join(names), ', '.join(sorted(d['name'] for d in base.disks))))
    if not base.checkpoint or _job.lookup_checkpoint(dom, base.checkpoint) is None:
        return full('checkpoint %s of backup %s no longer exists in libvirt' % (base.checkpoint, base.id))
    level = 'differential' if wanted == 'differential' else 'incremental'
    reason = '%s: changes since %s backup %s (checkpoint %s)' % (
        level, base.level, base.id, base.checkpoint)
    if wanted == 'auto':
        reason = '%s: chain %s and checkpoint %s are usable' % (level, newest_chain[0].chain, base.checkpoint)
    return Plan(level, reason, chain=base.chain, parent=base, since=base.checkpoint, disks=disks, skipped=skipped)


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


def _socket_dir(owner):
    """A private directory for the NBD socket: only QEMU's user (and root) can enter it."""
    os.makedirs(SOCKET_ROOT, 0o711, exist_ok=True)
    os.chmod(SOCKET_ROOT, 0o711)
    path = tempfile.mkdtemp(prefix='nbd-', dir=SOCKET_ROOT)
    if owner:
        os.chown(path, owner[0], owner[1])
    os.chmod(path, 0o700)
    return path


def _relative_backing(parent, disk_name):
    return os.path.join('..', parent.id, parent.disk(disk_name)['image'])


def take_backup(conn, request, check_mode=False):
    """Take one backup; returns the result for the module. Raises VirtError, never exits."""
    dom = conn.get_domain(request.domain)
    state = domain_state(dom)
    if state not in ('running', 'paused', 'blocked'):
        raise VirtError('domain %s is %s: virt_backup backs up running or paused domains; start it '
                        '(state: paused is enough) and try again' % (request.domain, state))
    with libvirt_call('reading the definition', 'domain %s' % request.domain):
        live_xml = dom.XMLDesc(0)
    all_disks = _job.domain_disks(live_xml)
    disks, skipped = select_disks(request.domain, all_disks, request.disks)

    try:
        repo_exists = os.path.exists(os.path.join(request.repository, _repository.REPOSITORY_FILE))
        if check_mode and not repo_exists:
            _repository.check_new_repository(request.repository)
            return _predicted(request, plan_backup(dom, None, request, disks, skipped))
        repo = _repository.Repository(request.repository, create=not check_mode)
        if not check_mode:
            repo.check_writable()
    except _repository.RepositoryError as exc:
        raise VirtError(str(exc))

    if check_mode:
        return _predicted(request, plan_backup(dom, repo, request, disks, skipped))

    try:
        lock_fd = repo.lock(request.domain)
    except _repository.LockedError as exc:
        raise VirtError(str(exc))
    except OSError as exc:
        raise VirtError('cannot lock domain %s in repository %s: %s' % (request.domain, repo.path, exc))
    try:
        removed = repo.remove_partials(request.domain)
        plan = plan_backup(dom, repo, request, disks, skipped)
        result = _run(conn, dom, repo, request, plan, live_xml)
        result['removed_partial'] = removed
        return result
    finally:
        os.close(lock_fd)


def _predicted(request, plan):
    return dict(changed=True, backup=dict(
        id=None, chain=plan.chain, level=plan.level, reason=plan.reason, mode=request.mode,
        parent=plan.parent.id if plan.parent else None,
        disks=[dict(name=d.name) for d in plan.disks],
        skipped_disks=[dict(name=n, reason=r) for n, r in plan.skipped]))


def _run(conn, dom, repo, request, plan, live_xml):
    started = _repository.utcnow()
    t0 = time.time()
    deadline = t0 + request.timeout if request.timeout else None
    backup_id = repo.new_backup_id(request.domain, started)
    chain = plan.chain or backup_id
    ck_name = checkpoint_name(repo, backup_id)
    label = 'domain %s' % request.domain
    owner = _job.qemu_owner(live_xml)
    scratch = _Scratch()
    job = _job.BackupJob(dom, label)
    checkpoint_created = False
    committed = False
    backup_path = None
    try:
        backup_path = repo.backup_dir(request.domain, chain, backup_id)
        with libvirt_call('reading the definition', label):
            persistent = dom.isPersistent()
            saved_xml = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE if persistent else 0)
        _repository.write_file(os.path.join(backup_path, 'domain.xml'), saved_xml)

        disk_names = [d.name for d in plan.disks]
        out = [name for name, _reason in plan.skipped]
        ck_xml = _job.checkpoint_xml(
            ck_name, 'virtops.libvirt backup %s of chain %s in repository %s (%s)' % (
                backup_id, chain, repo.path, repo.id), disk_names, out)
        sizes = {}
        for disk in plan.disks:
            with libvirt_call('reading the size of disk %s' % disk.name, label):
                sizes[disk.name] = dom.blockInfo(disk.name, 0)[0]

        if request.mode == 'pull':
            disk_results = _pull(dom, repo, request, plan, job, ck_xml, backup_path, sizes, owner, scratch,
                                 deadline, backup_id)
        else:
            disk_results = _push(dom, repo, request, plan, job, ck_xml, backup_path, sizes, owner, scratch,
                                 deadline, backup_id)
        checkpoint_created = True
        job.end()

        ck = _job.lookup_checkpoint(dom, ck_name)
        if ck is None:
            raise VirtError('checkpoint %s vanished during the backup of %s' % (ck_name, request.domain))
        with libvirt_call('reading checkpoint %s' % ck_name, label):
            _repository.write_file(os.path.join(backup_path, 'checkpoint.xml'), ck.getXMLDesc(0))

        if request.verify:
            for entry in disk_results:
                _verify_disk(backup_path, entry, request.workers)

        finished = _repository.utcnow()
        manifest = dict(
            format=_repository.MANIFEST_FORMAT, format_version=_repository.MANIFEST_VERSION,
            complete=True, id=backup_id, chain=chain, domain=request.domain, domain_uuid=dom.UUIDString(),
            level=plan.level, reason=plan.reason, mode=request.mode,
            parent=plan.parent.id if plan.parent else None,
            since_checkpoint=plan.since, checkpoint=ck_name,
            repository_id=repo.id, started=_repository.isoformat(started),
            finished=_repository.isoformat(finished), duration=round(time.time() - t0, 3),
            domain_xml='domain.xml', checkpoint_xml='checkpoint.xml',
            verified=bool(request.verify), disks=disk_results,
            skipped_disks=[dict(name=n, reason=r) for n, r in plan.skipped],
        )
        repo.commit(backup_path, manifest)
        committed = True
    except BaseException as exc:
        _cleanup_failed(dom, job, ck_name, checkpoint_created or job.active, backup_path, committed)
        if isinstance(exc, (_nbdio.NbdIoError, _images.ImageError, _blockhash.BlockHashError,
                            _repository.RepositoryError, OSError)):
            raise VirtError('backup of domain %s failed: %s' % (request.domain, exc))
        raise
    finally:
        scratch.clean()

    return dict(changed=True, backup=dict(
        id=backup_id, chain=chain, level=plan.level, reason=plan.reason, mode=request.mode,
        parent=manifest['parent'], checkpoint=ck_name, path=backup_path, started=manifest['started'],
        duration=manifest['duration'], verified=manifest['verified'],
        disks=[dict((k, d[k]) for k in ('name', 'virtual_size', 'dirty_bytes', 'bytes_read', 'bytes_written',
                                        'throughput', 'image_digest')) for d in disk_results],
        skipped_disks=manifest['skipped_disks']))


def _cleanup_failed(dom, job, ck_name, maybe_checkpoint, backup_path, committed):
    if committed:
        return
    try:
        job.end()
    except Exception:  # pylint: disable=broad-except
        pass
    if maybe_checkpoint:
        try:
            # Only this run's checkpoint: its name carries this backup's id.
            _job.delete_checkpoint(dom, ck_name)
        except Exception:  # pylint: disable=broad-except
            pass
    if backup_path and os.path.isdir(backup_path):
        shutil.rmtree(backup_path, ignore_errors=True)


def _disk_entry(disk_name, size, image_name, backing, hashmap, map_name, transfer_seconds,
                dirty, read, written, zero):
    return dict(
        name=disk_name, virtual_size=size, image=image_name, backing=backing,
        dirty_bytes=dirty, bytes_read=read, bytes_written=written, zero_bytes=zero,
        throughput=int(read / transfer_seconds) if transfer_seconds > 0 else None,
        integrity=dict(algorithm=_blockhash.ALGORITHM, block_size=hashmap.block_size, map=map_name),
        image_digest=hashmap.digest(),
    )


def _parent_map(plan, disk_name, size, backup_path=None):
    if plan.parent is None:
        return _blockhash.BlockHashMap(size)
    entry = plan.parent.disk(disk_name)
    integrity = entry['integrity']
    parent_map = _blockhash.BlockHashMap.load(
        os.path.join(plan.parent.path, integrity['map']), entry['virtual_size'], integrity['block_size'],
        entry['image_digest'])
    if parent_map.size != size:
        raise VirtError('disk %s changed size since backup %s (%d -> %d bytes); take a full backup' % (
            disk_name, plan.parent.id, parent_map.size, size))
    return parent_map


def _finish_disk(backup_path, disk, size, image_name, backing, hashmap, seconds, dirty, read, written, zero):
    map_name = '%s.blockhash.gz' % disk.name
    hashmap.save(os.path.join(backup_path, map_name))
    image_path = os.path.join(backup_path, image_name)
    os.chmod(image_path, 0o600)
    entry = _disk_entry(disk.name, size, image_name, backing, hashmap, map_name, seconds, dirty, read, written, zero)
    entry['file_size'] = os.stat(image_path).st_size
    return entry


def _pull(dom, repo, request, plan, job, ck_xml, backup_path, sizes, owner, scratch, deadline, backup_id):
    scratch_dir = request.scratch_dir or repo.staging_dir(owner)
    sock_dir = scratch.add(_socket_dir(owner))
    socket = os.path.join(sock_dir, 'nbd.sock')
    scratch_files = dict((d.name, scratch.add(os.path.join(scratch_dir, '%s-%s.scratch.qcow2' % (backup_id, d.name))))
                         for d in plan.disks)
    out = [name for name, _reason in plan.skipped]
    job.begin(_job.pull_backup_xml(plan.since, socket, scratch_files, out), ck_xml)
    if not _job.wait_for_path(socket):
        raise VirtError('the NBD export of %s did not appear at %s' % (request.domain, socket))
    exports = _job.pull_exports(job.xml())
    results = []
    for disk in plan.disks:
        size = sizes[disk.name]
        export_name, bitmap = exports.get(disk.name, (disk.name, None))
        image_name = '%s.qcow2' % disk.name
        image_path = os.path.join(backup_path, image_name)
        backing = _relative_backing(plan.parent, disk.name) if plan.parent else None
        _images.create(image_path, size, backing)
        hashmap = _parent_map(plan, disk.name, size)
        contexts, select = [], _nbdio.select_all
        if plan.since:
            if not bitmap:
                raise VirtError('the backup job of %s exports no dirty bitmap for disk %s' % (request.domain, disk.name))
            contexts = [_nbdio.dirty_bitmap_context(bitmap)]
            select = _nbdio.select_dirty(contexts[0])
        t0 = time.time()
        with _nbdio.QemuNbdServer(image_path, readonly=False, clients=request.workers) as writer:
            transfer = _nbdio.Transfer(
                _nbdio.Export(socket, export_name), size, hashmap, writer.export(), workers=request.workers,
                write_zeroes=plan.parent is not None,
                timeout=(deadline - time.time()) if deadline else None)
            transfer.run(contexts, select)
        seconds = time.time() - t0
        dirty = transfer.selected_bytes if plan.since else transfer.bytes_read
        results.append(_finish_disk(backup_path, disk, size, image_name, backing, hashmap, seconds,
                                    dirty, transfer.bytes_read, transfer.bytes_written, transfer.zero_bytes))
    return results


def _push(dom, repo, request, plan, job, ck_xml, backup_path, sizes, owner, scratch, deadline, backup_id):
    staging = repo.staging_dir(owner)
    targets = {}
    backings = {}
    for disk in plan.disks:
        target = scratch.add(os.path.join(staging, '%s-%s.qcow2' % (backup_id, disk.name)))
        # The backing file is named as it will be seen from the backup directory; QEMU does
        # not open it during the job.
        backings[disk.name] = _relative_backing(plan.parent, disk.name) if plan.parent else None
        _images.create(target, sizes[disk.name], backings[disk.name])
        os.chmod(target, 0o600)
        targets[disk.name] = target
    out = [name for name, _reason in plan.skipped]
    t0 = time.time()
    job.begin(_job.push_backup_xml(plan.since, targets, out), ck_xml, reuse_external=True)
    stats = job.wait(deadline)
    job_seconds = time.time() - t0
    results = []
    for disk in plan.disks:
        size = sizes[disk.name]
        image_name = '%s.qcow2' % disk.name
        image_path = os.path.join(backup_path, image_name)
        os.rename(targets[disk.name], image_path)
        os.chown(image_path, 0, 0)
        os.chmod(image_path, 0o600)
        hashmap = _parent_map(plan, disk.name, size)
        # QEMU wrote the image; hash what it wrote: the image's own clusters, read through its chain.
        with _nbdio.QemuNbdServer(image_path, readonly=True, clients=request.workers, allocation_depth=True) as reader:
            transfer = _nbdio.Transfer(reader.export(), size, hashmap, workers=request.workers)
            if plan.parent is not None:
                transfer.run([_nbdio.ALLOCATION_DEPTH], _nbdio.select_top_layer)
            else:
                transfer.run([], _nbdio.select_all)
        written = transfer.bytes_read
        dirty = transfer.selected_bytes if plan.parent is not None else transfer.bytes_read
        entry = _finish_disk(backup_path, disk, size, image_name, backings[disk.name], hashmap, job_seconds,
                             dirty, written, written, transfer.zero_bytes)
        entry['job_data_total'] = stats.get('disk_total') or stats.get('data_total')
        results.append(entry)
    return results


def _verify_disk(backup_path, entry, workers):
    image = os.path.join(backup_path, entry['image'])
    ok, message = _images.check(image)
    if not ok:
        raise VirtError('verification of %s failed: qemu-img check: %s' % (image, message))
    actual = _images.hash_image(image, entry['virtual_size'], entry['integrity']['block_size'], workers=workers)
    if actual.digest() != entry['image_digest']:
        raise VirtError('verification of %s failed: the image does not hold what was read from the domain' % image)
