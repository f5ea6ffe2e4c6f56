# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Private to the virtops.libvirt collection: may change without notice.
"""Copies of backups between repositories (a directory or s3://bucket/prefix), and S3 repositories
read by restore and virt_backup_info through a private local scratch mirror.

A copy takes only the backups the target lacks, oldest first, and for each one writes its data
files first and its manifest last, byte for byte what the source holds: a target without the
manifest holds no backup, whatever else is there (docs/repository-format.md). The source is
untrusted: its manifests are validated, and every point in time is proved against its integrity
data (and its firmware files against their digests) before the manifest is written: on the source
before an upload, on the target itself when the target is a directory.

An S3 repository is read by mirroring only what is needed into a scratch directory (0700, root's)
laid out as a directory repository: repository.json, the manifests, and the data files of the
chosen point in time, so that every reader keeps its one code path with all its checks.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import re
import shutil
import stat
import tempfile
import time

from ansible_collections.virtops.libvirt.plugins.module_utils._libvirt import VirtError
from ansible_collections.virtops.libvirt.plugins.module_utils.backup import (
    _blockhash,
    _crypt,
    _firmware,
    _images,
    _nbdio,
    _repository,
    _s3,
)

MANIFEST = _repository.MANIFEST
MARKER = _repository.REPOSITORY_FILE
MiB = 1024 * 1024
MAX_MAP = 64 * MiB
SCRATCH_PREFIX = '.virtops-s3-'
SCRATCH_NAME = re.compile(r'^\.virtops-s3-(\d+)-[A-Za-z0-9_]+$')


def backup_files(manifest):
    """(path parts inside the backup directory, size limit or None) of every file the manifest names,
    the manifest itself excluded: exactly the names the format defines, nothing found by listing."""
    files = []
    for key in ('domain_xml', 'checkpoint_xml'):
        if manifest.get(key):
            files.append(((manifest[key],), _repository.MAX_METADATA))
    for disk in manifest['disks']:
        limit = disk.get('file_size') or 2 * disk['virtual_size'] + 64 * MiB
        files.append(((disk['image'],), limit))
        files.append(((disk['integrity']['map'],), MAX_MAP))
    for parts, entry in _firmware._entries(manifest.get('firmware') or {}):  # pylint: disable=protected-access
        files.append((tuple(parts), entry['size']))
    return files


def prove(lineage, key=None):
    """Check the point in time lineage[0] holds (newest first, local directories): every disk's chain
    headers, its integrity map, and every block read back against that map; its firmware files
    against their sizes and digests. Raises VirtError naming the backup, the disk and the reason.
    key: the _crypt.Key of encrypted backups (their blocks are read back through it)."""
    # Imported here: _restore imports the libvirt bindings, which a copy does not otherwise need.
    from ansible_collections.virtops.libvirt.plugins.module_utils.backup import _restore
    backup = lineage[0]
    _crypt.check_lineage(lineage, key)
    for disk in backup.disks:
        try:
            expected = _repository.check_point(lineage, disk['name'], key)
            with _repository.open_chain(lineage, disk['name'], key) as chain:
                check = _restore.verify_point(backup, disk, chain, expected)
        except (_images.ImageError, _blockhash.BlockHashError, _nbdio.NbdIoError, _repository.RepositoryError,
                OSError) as exc:
            check = dict(ok=False, message=str(exc))
        if not check['ok']:
            raise VirtError('backup %s of domain %s, disk %s: %s. It was not copied; the repository may have been '
                            'damaged or tampered with' % (backup.id, backup.manifest.get('domain'), disk['name'],
                                                          check['message']))
    for check in _firmware.verify(backup, backup.manifest.get('firmware')):
        if not check['ok']:
            raise VirtError('backup %s of domain %s: %s. It was not copied' % (
                backup.id, backup.manifest.get('domain'), check['message']))


# -- repositories -----------------------------------------------------------------------------------

def check_apart(source, target):
    """Two directory repositories, neither one inside the other (a copy into itself would list the
    copy as a domain of the source)."""
    real_source, real_target = os.path.realpath(source), os.path.realpath(target)
    for outer, inner in ((real_source, real_target), (real_target, real_source)):
        if inner == outer or inner.startswith(outer.rstrip('/') + '/'):
            raise VirtError('source %s and target %s are the same directory or one holds the other: copy into a '
                            'directory outside the source; nothing was copied' % (source, target))


class LocalRepo:
    """A directory repository (it may not exist yet when it is a target)."""

    kind = 'directory'

    def __init__(self, path):
        if not path or not os.path.isabs(path):
            raise VirtError('repository %r must be an absolute path or s3://bucket/prefix' % (path,))
        self.path = os.path.normpath(path)
        self.label = self.path
        self.repo = None
        if os.path.lexists(os.path.join(self.path, MARKER)):
            self.repo = _repository.Repository(self.path)

    def require(self):
        if self.repo is None:
            raise VirtError('%s is not a backup repository (no %s)' % (self.path, MARKER))
        return self.repo

    def marker(self):
        return None if self.repo is None else _repository.read_small(self.path, [MARKER])

    def complete(self, domain, chain, backup_id):
        """The manifest bytes of that backup in this repository, or None."""
        if self.repo is None:
            return None
        bdir = os.path.join(self.repo.domain_dir(domain), chain, backup_id)
        if not os.path.lexists(os.path.join(bdir, MANIFEST)):
            return None
        try:
            return _repository.read_small(bdir, [MANIFEST])
        except (_repository.RepositoryError, OSError) as exc:
            raise VirtError('cannot read %s: %s' % (os.path.join(bdir, MANIFEST), exc))


class S3Repo:
    """An S3 repository, with a local scratch mirror of what was read of it."""

    kind = 's3'

    def __init__(self, location, params, scratch_parent=None):
        self.store = _s3.Store(location, params)
        self.label = self.store.location
        self.scratch_parent = scratch_parent
        self.scratch = None
        self.repo = None
        self._objects = None

    def open(self, must_exist=True):
        """Check the bucket, read repository.json into the scratch mirror; False when it is missing."""
        self.store.check_bucket()
        data = self.store.read_small((MARKER,), _repository.MAX_METADATA)
        if data is None:
            if must_exist:
                raise VirtError('%s is not a backup repository (no %s)' % (self.label, MARKER))
            return False
        self.scratch = make_scratch(self.scratch_parent)
        _repository.write_file(os.path.join(self.scratch, MARKER), data)
        try:
            self.repo = _repository.Repository(self.scratch)
        except _repository.RepositoryError as exc:
            raise VirtError(str(exc).replace(self.scratch, self.label))
        return True

    def close(self):
        if self.scratch:
            shutil.rmtree(self.scratch, ignore_errors=True)
            self.scratch = None

    def marker(self):
        return _repository.read_small(self.scratch, [MARKER]) if self.scratch else None

    def objects(self):
        """{(domain, chain, backup id): {file parts: size}} of every backup-shaped key below the prefix."""
        if self._objects is None:
            found = {}
            for parts, size in list(self.store.list()):
                if len(parts) < 4:
                    continue
                domain, chain, bid = parts[:3]
                if domain.startswith('.') or not _repository.SAFE_NAME.match(domain) or '..' in domain \
                        or not _repository.BACKUP_ID.match(chain) or not _repository.BACKUP_ID.match(bid):
                    continue
                found.setdefault((domain, chain, bid), {})[tuple(parts[3:])] = size
            self._objects = found
        return self._objects

    def domains(self):
        return sorted(set(key[0] for key, files in self.objects().items() if (MANIFEST,) in files))

    def complete(self, domain, chain, backup_id):
        if (MANIFEST,) not in self.objects().get((domain, chain, backup_id), {}):
            return None
        return self.store.read_small((domain, chain, backup_id, MANIFEST), _repository.MAX_METADATA)

    def mirror_manifests(self, domains):
        """Every manifest of these domains into the scratch mirror, as a directory repository holds
        them; the mirror's Repository then validates them as it validates any."""
        for (domain, chain, bid), files in sorted(self.objects().items()):
            if domain not in domains or (MANIFEST,) not in files:
                continue
            bdir = os.path.join(self.scratch, domain, chain, bid)
            os.makedirs(bdir, 0o700, exist_ok=True)
            data = self.store.read_small((domain, chain, bid, MANIFEST), _repository.MAX_METADATA)
            if data is not None:
                _repository.write_file(os.path.join(bdir, MANIFEST), data)

    def mirror_files(self, backup, names=None, xml=True, firmware=True):
        """The data files of one (mirrored, validated) backup into its scratch directory: the images and
        maps of the disks named (all by default), its XML and firmware files if asked."""
        for parts, limit in backup_files(backup.manifest):
            name = parts[0]
            if name in (_repository.DOMAIN_XML, _repository.CHECKPOINT_XML):
                if not xml:
                    continue
            elif name in (_firmware.NVRAM_FILE, _firmware.TPM_DIR):
                if not firmware:
                    continue
            elif names is not None and not any(name in (d['image'], d['integrity']['map'])
                                               for d in backup.disks if d['name'] in names):
                continue
            if os.path.lexists(os.path.join(backup.path, *parts)):
                continue
            # The key from where the manifest was found, not from what it says.
            where = tuple(os.path.relpath(backup.path, self.scratch).split(os.sep))
            fetch(self.store, where, parts, limit, backup.path)

    def local_path(self, text):
        return text.replace(self.scratch, self.label) if self.scratch and isinstance(text, str) else text


def fetch(store, where, parts, limit, bdir):
    """Download the object where + parts (where: domain, chain, backup id) into bdir/parts, created 0600
    with O_EXCL (never through a link)."""
    key = tuple(where) + tuple(parts)
    dir_fd = os.open(bdir, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        if len(parts) == 2:
            try:
                os.mkdir(parts[0], 0o700, dir_fd=dir_fd)
            except FileExistsError:
                pass
            sub = os.open(parts[0], os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
            os.close(dir_fd)
            dir_fd = sub
        fd = os.open(parts[-1], os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                     dir_fd=dir_fd)
        try:
            store.download(key, fd, limit)
            os.fsync(fd)
        finally:
            os.close(fd)
    finally:
        os.close(dir_fd)


def make_scratch(near=None):
    """A private (0700) scratch directory of root: beside near (so that large downloads land on the
    same file system as the restore) when that directory is root's and nobody else can write it,
    else in the system's temporary directory."""
    parent = None
    probe = os.path.dirname(os.path.normpath(near)) if near and os.path.isabs(near) else None
    while probe and not os.path.isdir(probe):
        probe = os.path.dirname(probe)
    if probe:
        st = os.stat(probe)
        if st.st_uid == os.geteuid() and not st.st_mode & 0o022:
            parent = probe
            try:
                # The scratch mirror is opened as a repository: every directory above it must be
                # root's too (Repository refuses it otherwise), not only the nearest one.
                _repository.check_ancestors(os.path.join(probe, SCRATCH_PREFIX))
            except _repository.RepositoryError:
                parent = None
    parent = parent or tempfile.gettempdir()
    _remove_stale_scratch(parent)
    return tempfile.mkdtemp(prefix='%s%d-' % (SCRATCH_PREFIX, os.getpid()), dir=parent)


def _remove_stale_scratch(parent):
    """Scratch directories of runs that were killed (their process is gone): ours by name, owner and kind."""
    try:
        names = os.listdir(parent)
    except OSError:
        return
    for name in names:
        found = SCRATCH_NAME.match(name)
        if not found or os.path.exists('/proc/%s' % found.group(1)):
            continue
        path = os.path.join(parent, name)
        try:
            st = os.lstat(path)
        except OSError:
            continue
        if stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid():
            shutil.rmtree(path, ignore_errors=True)


def open_repository(location, params, scratch_parent=None, must_exist=True):
    if _s3.is_location(location):
        repo = S3Repo(location, params, scratch_parent)
        try:
            repo.open(must_exist)
        except BaseException:
            repo.close()
            raise
        return repo
    return LocalRepo(location)


# -- reading an S3 repository (virt_restore, virt_backup_info) -----------------------------------------

def _relabel(value, repo):
    if isinstance(value, dict):
        return dict((k, _relabel(v, repo)) for k, v in value.items())
    if isinstance(value, list):
        return [_relabel(v, repo) for v in value]
    return repo.local_path(value)


def restore_from_s3(restore, conn_factory, params, check_mode):
    """virt_restore from an S3 repository: the chain of the chosen point (its manifests, and the
    images and maps of the disks asked for), its firmware files and domain.xml into a scratch mirror,
    then the restore of a directory repository; the scratch is removed afterwards, also on failure."""
    # Imported here: _restore imports this module for its hook.
    from ansible_collections.virtops.libvirt.plugins.module_utils.backup import _restore
    if params.get('mode') == 'instant':
        raise VirtError('mode instant runs the domain on the repository\'s images; %s is in object storage: '
                        'restore with mode copy, or copy the backups to a directory first '
                        '(virtops.libvirt.virt_backup_copy)' % params['repository'])
    _repository.check_name('domain name', params['domain'])
    repo = open_repository(params['repository'], params, scratch_parent=params.get('dest'))
    try:
        repo.mirror_manifests([params['domain']])
        _backup, lineage = _restore._resolve(repo.repo, params['domain'], params['backup'])  # pylint: disable=protected-access
        wanted = params.get('disks')
        for i, layer in enumerate(lineage):
            repo.mirror_files(layer, names=wanted, xml=(i == 0), firmware=(i == 0))
        result = restore(conn_factory, dict(params, repository=repo.scratch), check_mode)
        return _relabel(result, repo)
    except VirtError as exc:
        raise VirtError(repo.local_path(exc.msg))
    finally:
        repo.close()


def describe_s3(describe, params):
    """virt_backup_info of an S3 repository: the manifests (and, with verify, every backup's files,
    one domain at a time) into a scratch mirror, then the description of a directory repository."""
    repo = open_repository(params['repository'], params)
    try:
        wanted = params.get('domain')
        names = [wanted] if wanted else repo.domains()
        domains = []
        info = None
        for name in names:
            repo.mirror_manifests([name])
            if params.get('verify'):
                for backup in repo.repo.backups(name):
                    repo.mirror_files(backup)
            info = describe(dict(params, repository=repo.scratch, domain=name))
            domains.extend(info['domains'])
            if params.get('verify'):
                # One domain's files at a time in the scratch mirror.
                shutil.rmtree(os.path.join(repo.scratch, name), ignore_errors=True)
        if info is None:
            info = describe(dict(params, repository=repo.scratch, domain=None))
        info['domains'] = domains
        info['repository']['path'] = repo.label
        if params.get('verify'):
            info['verified_ok'] = all(b['verify']['ok'] for d in domains for c in d['chains'] for b in c['backups']) \
                and not any(d['errors'] for d in domains)
        return _relabel(info, repo)
    except VirtError as exc:
        raise VirtError(repo.local_path(exc.msg))
    finally:
        repo.close()


# -- copying --------------------------------------------------------------------------------------

class Copier:
    """virt_backup_copy: plan (what the target lacks), then copy each backup, data before manifest."""

    def __init__(self, params, check_mode, lock=None, key=None):
        """params: virt_backup_copy's options, checked (_options.copy_lock, which gives lock:
        None or the object lock (mode, retain-until time) of every object written). key: the
        _crypt.Key that proves encrypted backups on the way."""
        self.params = params
        self.check_mode = check_mode
        self.lock = lock
        self.key = key

    def run(self):
        params = self.params
        source = target = None
        try:
            source = open_repository(params['source'], params)
            if isinstance(source, LocalRepo):
                source.require()
            target = open_repository(params['target'], params, must_exist=False)
            if isinstance(source, LocalRepo) and isinstance(target, LocalRepo):
                check_apart(source.path, target.path)
            if self.lock and not target.store.object_lock_enabled():
                raise VirtError('s3_object_lock %s: bucket %s of %s has no object lock (create it with object lock '
                                'enabled, e.g. aws s3api create-bucket --object-lock-enabled-for-bucket); nothing was '
                                'copied' % (self.lock[0], target.store.bucket, target.label))
            return self._copy(source, target)
        except VirtError as exc:
            if isinstance(source, S3Repo):
                raise VirtError(source.local_path(exc.msg))
            raise
        finally:
            for repo in (source, target):
                if isinstance(repo, S3Repo):
                    repo.close()

    def _source_backups(self, source):
        """[(Backup, manifest bytes)] of the source, oldest first per domain; errors of unreadable ones."""
        wanted = self.params.get('domains')
        names = source.domains() if isinstance(source, S3Repo) else source.repo.domains()
        if wanted is not None:
            for name in wanted:
                _repository.check_name('domain name', name)
            names = [n for n in names if n in wanted]
        if isinstance(source, S3Repo):
            source.mirror_manifests(names)
        found, errors = [], []
        for name in names:
            try:
                backups = source.repo.backups(name, errors)
            except _repository.RepositoryError as exc:
                errors.append(str(exc))
                continue
            for backup in backups:
                if backup.manifest.get('domain') != name:
                    errors.append('manifest of backup %s under domain %s names domain %r'
                                  % (backup.id, name, backup.manifest.get('domain')))
                    continue
                found.append((backup, _repository.read_small(backup.path, [MANIFEST])))
        return found, errors

    def _copy(self, source, target):
        started = time.monotonic()
        if target.repo is not None and target.repo.id != source.repo.id:
            # Backups of two repositories in one place would mix their domains of the same name (two
            # hosts' web01): a restore of 'latest' could bring back the other host's VM.
            raise VirtError('target %s is a copy of another repository (id %s) than source %s (id %s): copy each '
                            'repository into a location of its own; nothing was copied'
                            % (target.label, target.repo.id, source.label, source.repo.id))
        backups, errors = self._source_backups(source)
        plan, present = [], []
        for backup, data in backups:
            m = backup.manifest
            there = target.complete(m['domain'], m['chain'], m['id'])
            if there is None:
                plan.append((backup, data))
            elif there == data:
                present.append(backup)
            else:
                raise VirtError('target %s holds backup %s of domain %s already, with another manifest than the '
                                'source\'s: it is not overwritten; nothing was copied' % (target.label, m['id'],
                                                                                          m['domain']))
        entries = [self._entry(backup) for backup, _data in plan]
        result = dict(changed=bool(plan), source=source.label, target=target.label, copied=entries,
                      present=len(present), bytes=0, seconds=0.0, mib_per_s=None,
                      diff=dict(before=self._listing(present), after=self._listing(present + [b for b, _d in plan])))
        if errors:
            result['warnings'] = ['source backup not copied: %s' % source.local_path(e) if isinstance(source, S3Repo)
                                  else 'source backup not copied: %s' % e for e in errors]
        if isinstance(target, LocalRepo) and target.repo is None and plan:
            _repository.check_new_repository(target.path)
        if self.check_mode or not plan:
            return result
        marker = source.marker()
        done_bytes = 0
        done = []
        for (backup, data), entry in zip(plan, entries):
            t0 = time.monotonic()
            try:
                if isinstance(target, S3Repo):
                    entry['bytes'] = self._upload(source, target, backup, data, marker)
                else:
                    entry['bytes'] = self._to_directory(source, target, backup, data, marker)
            except (VirtError, OSError) as exc:
                raise VirtError('copy of backup %s of domain %s from %s to %s failed: %s%s' % (
                    backup.id, backup.manifest['domain'], source.label, target.label,
                    exc.msg if isinstance(exc, VirtError) else exc,
                    '. Copied before: %s' % ', '.join(done) if done else '. Nothing was copied'))
            entry['seconds'] = round(time.monotonic() - t0, 3)
            done_bytes += entry['bytes']
            done.append(backup.id)
        elapsed = time.monotonic() - started
        result.update(bytes=done_bytes, seconds=round(elapsed, 3),
                      mib_per_s=round(done_bytes / MiB / elapsed, 1) if elapsed > 0 else None)
        return result

    @staticmethod
    def _entry(backup):
        m = backup.manifest
        return dict(domain=m['domain'], chain=m['chain'], id=m['id'], level=m['level'], time=m['started'],
                    bytes=None, seconds=None)

    @staticmethod
    def _listing(backups):
        # Text, one backup a line: Ansible's diff display takes strings (or dicts), not lists.
        names = sorted('%s/%s/%s' % (b.manifest['domain'], b.chain, b.id) for b in backups)
        return ''.join('%s\n' % name for name in names)

    # -- into S3 ----------------------------------------------------------------------------------

    def _upload(self, source, target, backup, data, marker):
        """A backup of a directory source into S3: proved on the source, then every file, manifest last."""
        m = backup.manifest
        prove(source.repo.lineage(backup), self.key)
        store = target.store
        prefix = (m['domain'], m['chain'], m['id'])
        store.abort_uploads(prefix)       # parts of a killed run
        if store.size(prefix + (_s3.DELETING_MARKER,)) is not None:
            # Left by a prune killed while deleting this backup: the backup is written again whole,
            # and a later prune must not take it for the rest of that deletion.
            store.delete(prefix + (_s3.DELETING_MARKER,))
        total = 0
        for parts, _limit in backup_files(m):
            fd = _repository.open_regular(backup.path, list(parts))
            try:
                size = os.fstat(fd).st_size
                store.upload(prefix + tuple(parts), fd, size, self.lock)
            finally:
                os.close(fd)
            total += size
        self._s3_marker(target, marker, m['format_version'])
        store.put_bytes(prefix + (MANIFEST,), data, self.lock)
        return total + len(data)

    def _s3_marker(self, target, marker, version):
        """repository.json of the target: the source's when there is none yet; raised to the version
        of the manifest about to be written when it is older (as a directory repository does)."""
        current = target.store.read_small((MARKER,), _repository.MAX_METADATA)
        if current is None:
            info = json.loads(marker.decode('utf-8'))
        else:
            info = json.loads(current.decode('utf-8'))
            if not isinstance(info, dict) or info.get('format_version', 0) >= version:
                return
        if info.get('format_version', 0) < version:
            info['format_version'] = version
            marker = (json.dumps(info, indent=2, sort_keys=True) + '\n').encode('utf-8')
        target.store.put_bytes((MARKER,), marker)

    # -- into a directory -------------------------------------------------------------------------

    def _to_directory(self, source, target, backup, data, marker):
        """A backup into a directory target: files written there, proved there (the copy itself),
        then the manifest, by atomic rename, under the target domain's lock."""
        m = backup.manifest
        repo = self._local_target(target, marker)
        lock = repo.lock(m['domain'])
        bdir = None
        try:
            repo.remove_partials(m['domain'])
            try:
                bdir = repo.backup_dir(m['domain'], m['chain'], m['id'])
            except OSError as exc:
                raise VirtError('cannot create the backup directory of %s in %s: %s' % (m['id'], target.label, exc))
            local = _repository.Backup(bdir, m)
            total = 0
            for parts, limit in backup_files(m):
                if isinstance(source, S3Repo):
                    fetch(source.store, (m['domain'], m['chain'], m['id']), parts, limit, bdir)
                else:
                    _copy_file(backup.path, bdir, parts)
                total += os.lstat(os.path.join(bdir, *parts)).st_size
            lineage = [local]
            if backup.parent:
                parents = dict((b.id, b) for b in repo.backups(m['domain']) if b.chain == m['chain'])
                if backup.parent not in parents:
                    raise VirtError('backup %s of domain %s continues %s, which the target %s lacks'
                                    % (m['id'], m['domain'], backup.parent, target.label))
                lineage += repo.lineage(parents[backup.parent])
            prove(lineage, self.key)
            if m['format_version'] > repo.info['format_version']:
                repo._raise_version(m['format_version'])  # pylint: disable=protected-access
            _repository.write_file(os.path.join(bdir, MANIFEST), data)
            bdir = None
            return total + len(data)
        except OSError as exc:
            raise VirtError('cannot copy backup %s of domain %s into %s: %s' % (m['id'], m['domain'], target.label, exc))
        finally:
            if bdir is not None:
                # No manifest was written: what this run put there goes (the next run would remove it).
                shutil.rmtree(bdir, ignore_errors=True)
            repo.unlock(m['domain'], lock)

    def _local_target(self, target, marker):
        if target.repo is None:
            try:
                _repository.check_new_repository(target.path)
                os.makedirs(target.path, 0o711, exist_ok=True)
                os.chmod(target.path, 0o711)
                _repository.write_file(os.path.join(target.path, MARKER), marker)
                target.repo = _repository.Repository(target.path)
            except (_repository.RepositoryError, OSError) as exc:
                raise VirtError('cannot create repository %s: %s' % (target.path, exc))
        target.repo.check_writable()
        return target.repo


def _copy_file(src_dir, dst_dir, parts):
    """src_dir/parts into dst_dir/parts: neither side through a link, the new file 0600 from its first
    byte, sparse where the source is (holes stay holes), and durable before the manifest."""
    src = _repository.open_regular(src_dir, list(parts))
    try:
        if len(parts) == 2:
            _repository.make_dir(os.path.join(dst_dir, parts[0]), 0o700)
        dst = _repository.open_under(dst_dir, list(parts),
                                     os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            size = os.fstat(src).st_size
            pos = 0
            while pos < size:
                try:
                    data_at = os.lseek(src, pos, os.SEEK_DATA)
                except OSError:
                    break       # only holes are left
                hole_at = os.lseek(src, data_at, os.SEEK_HOLE)
                while data_at < hole_at:
                    sent = os.copy_file_range(src, dst, hole_at - data_at, data_at, data_at)
                    if sent <= 0:
                        raise OSError('copy of %s stopped early' % os.path.join(src_dir, *parts))
                    data_at += sent
                pos = hole_at
            os.ftruncate(dst, size)
            os.fsync(dst)
            if stat.S_IMODE(os.fstat(dst).st_mode) != 0o600:
                os.fchmod(dst, 0o600)
        finally:
            os.close(dst)
    finally:
        os.close(src)
