# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Private to the virtops.libvirt collection: may change without notice.
"""The backup repository: plain qcow2 chains plus JSON and XML metadata (docs/repository-format.md).

    <repository>/repository.json                 format marker, version, repository id
    <repository>/.staging/                       QEMU's own working directory (push targets, scratch)
    <repository>/<domain>/.lock                  one backup of a domain at a time
    <repository>/<domain>/<chain>/<backup>/      one backup: per disk <target>.qcow2 and
                                                 <target>.blockhash.gz, domain.xml, checkpoint.xml,
                                                 manifest.json (written last, by atomic rename)

Only a backup directory with a valid manifest exists; anything else is debris of an interrupted
run, which the next run of the same domain removes.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import errno
import fcntl
import json
import os
import re
import shutil
import stat
import uuid

FORMAT = 'virtops.libvirt/backup-repository'
FORMAT_VERSION = 1
MANIFEST_FORMAT = 'virtops.libvirt/backup'
MANIFEST_VERSION = 1
REPOSITORY_FILE = 'repository.json'
MANIFEST = 'manifest.json'
STAGING = '.staging'
LOCK = '.lock'
LEVELS = ('full', 'incremental', 'differential')

# Names that become path components: no separators, no dot-dot, no hidden files.
SAFE_NAME = re.compile(r'^[A-Za-z0-9_+:@-][A-Za-z0-9_.+:@-]{0,199}$')
BACKUP_ID = re.compile(r'^\d{8}T\d{6}Z(-\d+)?$')


class RepositoryError(Exception):
    pass


class LockedError(RepositoryError):
    pass


def utcnow():
    return datetime.datetime.now(datetime.timezone.utc)


def isoformat(moment):
    return moment.astimezone(datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%S.%fZ')


def parse_time(text):
    """An ISO 8601 time; one without a zone is taken as UTC."""
    value = text.strip()
    if value.endswith('Z') or value.endswith('z'):
        value = value[:-1] + '+00:00'
    try:
        moment = datetime.datetime.fromisoformat(value)
    except ValueError:
        raise RepositoryError('%r is neither a backup id, "latest", nor an ISO 8601 time' % text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    return moment


def check_name(kind, name):
    if not isinstance(name, str) or not SAFE_NAME.match(name) or '..' in name:
        raise RepositoryError('%s %r cannot be used in the repository: it may hold letters, digits and '
                              '_ . + : @ -, must not start with a dot and must not contain "/" or ".."'
                              % (kind, name))
    return name


def write_file(path, data, mode=0o600):
    """Write data to path atomically (temporary file, fsync, rename); files are 0600."""
    tmp = '%s.tmp-%d' % (path, os.getpid())
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, 'wb') as out:
            out.write(data if isinstance(data, bytes) else data.encode('utf-8'))
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, mode)
        os.rename(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    fsync_dir(os.path.dirname(path))


def fsync_file(path):
    """Make a finished image durable before its manifest is written."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_dir(path, mode=0o700):
    try:
        os.mkdir(path, mode)
    except OSError as exc:
        if exc.errno != errno.EEXIST:
            raise
    if not os.path.isdir(path):
        raise RepositoryError('%s exists and is not a directory' % path)


class Backup:
    """One complete backup, read from its manifest."""

    def __init__(self, path, manifest):
        self.path = path
        self.manifest = manifest

    id = property(lambda self: self.manifest['id'])
    chain = property(lambda self: self.manifest['chain'])
    level = property(lambda self: self.manifest['level'])
    parent = property(lambda self: self.manifest.get('parent'))
    checkpoint = property(lambda self: self.manifest.get('checkpoint'))
    disks = property(lambda self: self.manifest['disks'])

    @property
    def started(self):
        return parse_time(self.manifest['started'])

    def disk(self, name):
        for disk in self.disks:
            if disk['name'] == name:
                return disk
        return None

    def image(self, disk):
        return os.path.join(self.path, disk['image'])

    def read_text(self, name):
        with open(os.path.join(self.path, name), 'r') as src:
            return src.read()

    def summary(self):
        m = self.manifest
        return dict(
            id=m['id'], chain=m['chain'], level=m['level'], reason=m.get('reason'), mode=m['mode'],
            parent=m.get('parent'), checkpoint=m.get('checkpoint'), time=m['started'],
            finished=m.get('finished'), duration=m.get('duration'), path=self.path,
            disks=[dict(name=d['name'], virtual_size=d['virtual_size'], dirty_bytes=d.get('dirty_bytes'),
                        bytes_written=d.get('bytes_written'), image=os.path.join(self.path, d['image']))
                   for d in m['disks']],
            size=sum(d.get('file_size', 0) for d in m['disks']),
        )


def load_manifest(path):
    """The manifest in backup directory path; RepositoryError when it is unreadable or not ours."""
    file_name = os.path.join(path, MANIFEST)
    try:
        with open(file_name, 'r') as src:
            manifest = json.load(src)
    except ValueError as exc:
        raise RepositoryError('manifest %s is corrupted: %s' % (file_name, exc))
    except OSError as exc:
        raise RepositoryError('cannot read manifest %s: %s' % (file_name, exc))
    if not isinstance(manifest, dict) or manifest.get('format') != MANIFEST_FORMAT:
        raise RepositoryError('%s is not a virtops.libvirt backup manifest' % file_name)
    version = manifest.get('format_version')
    if not isinstance(version, int) or version > MANIFEST_VERSION:
        raise RepositoryError('manifest %s has format version %r; this collection reads up to %d: upgrade '
                              'virtops.libvirt to use it' % (file_name, version, MANIFEST_VERSION))
    for key in ('id', 'chain', 'level', 'mode', 'started', 'disks', 'complete'):
        if key not in manifest:
            raise RepositoryError('manifest %s lacks %r' % (file_name, key))
    if manifest['complete'] is not True or manifest['level'] not in LEVELS:
        raise RepositoryError('manifest %s does not describe a complete backup' % file_name)
    return manifest


def check_new_repository(path):
    """Raise if a repository could not be created at path (check mode's prediction)."""
    if not path or not os.path.isabs(path):
        raise RepositoryError('repository %r must be an absolute path' % (path,))
    if os.path.exists(path) and not os.path.isdir(path):
        raise RepositoryError('repository %s exists and is not a directory' % path)
    if os.path.isdir(path) and [n for n in os.listdir(path) if not n.startswith('.')]:
        raise RepositoryError('%s is not empty and not a backup repository: refusing to use it' % path)
    parent = path
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.access(parent, os.W_OK | os.X_OK):
        raise RepositoryError('cannot create repository %s: %s is not writable' % (path, parent))


class Repository:
    """A repository directory; opening for writing creates it."""

    def __init__(self, path, create=False):
        if not path or not os.path.isabs(path):
            raise RepositoryError('repository %r must be an absolute path' % (path,))
        self.path = os.path.normpath(path)
        if os.path.exists(self.path) and not os.path.isdir(self.path):
            raise RepositoryError('repository %s exists and is not a directory' % self.path)
        marker = os.path.join(self.path, REPOSITORY_FILE)
        if not os.path.exists(marker):
            if not create:
                raise RepositoryError('%s is not a backup repository (no %s)' % (self.path, REPOSITORY_FILE))
            self._create(marker)
        self.info = self._read_info(marker)
        self.id = self.info['id']

    def _create(self, marker):
        """Create the repository; several runs may do so at once (parallel backups of different
        domains into a new repository): exactly one marker wins, and every run uses its id."""
        new = None
        try:
            os.makedirs(self.path, 0o711, exist_ok=True)
            entries = [n for n in os.listdir(self.path) if not n.startswith('.')]
            if entries and REPOSITORY_FILE not in entries:
                raise RepositoryError('%s is not empty and not a backup repository: refusing to use it'
                                      % self.path)
            # Others may traverse, not list: QEMU must reach its staging directory inside.
            os.chmod(self.path, 0o711)
            info = dict(format=FORMAT, format_version=FORMAT_VERSION, id=str(uuid.uuid4()),
                        created=isoformat(utcnow()))
            # Written complete under a hidden name, then published with link(2), which fails
            # when another run published its marker first.
            new = os.path.join(self.path, '.%s.new-%d' % (REPOSITORY_FILE, os.getpid()))
            write_file(new, json.dumps(info, indent=2, sort_keys=True) + '\n')
            try:
                os.link(new, marker)
            except OSError as exc:
                if exc.errno != errno.EEXIST:
                    raise
            fsync_dir(self.path)
        except OSError as exc:
            raise RepositoryError('cannot create repository %s: %s' % (self.path, exc))
        finally:
            if new is not None:
                try:
                    os.unlink(new)
                except OSError:
                    pass

    def _read_info(self, marker):
        try:
            with open(marker, 'r') as src:
                info = json.load(src)
        except (OSError, ValueError) as exc:
            raise RepositoryError('cannot read %s: %s' % (marker, exc))
        if not isinstance(info, dict) or info.get('format') != FORMAT or not info.get('id'):
            raise RepositoryError('%s is not a virtops.libvirt repository marker' % marker)
        if not isinstance(info.get('format_version'), int) or info['format_version'] > FORMAT_VERSION:
            raise RepositoryError('repository %s has format version %r; this collection reads up to %d'
                                  % (self.path, info.get('format_version'), FORMAT_VERSION))
        return info

    @property
    def short_id(self):
        return self.id.replace('-', '')[:8]

    def check_writable(self):
        if not os.access(self.path, os.W_OK | os.X_OK):
            raise RepositoryError('repository %s is not writable' % self.path)

    # -- layout -------------------------------------------------------------------------------

    def domain_dir(self, domain):
        return os.path.join(self.path, check_name('domain name', domain))

    def staging_dir(self, owner):
        """The staging directory QEMU writes into: owned by QEMU's user, 0700 (see LAB-NOTES)."""
        path = os.path.join(self.path, STAGING)
        make_dir(path, 0o700)
        if owner is not None:
            uid, gid = owner
            st = os.stat(path)
            if (st.st_uid, st.st_gid) != (uid, gid):
                os.chown(path, uid, gid)
        os.chmod(path, 0o700)
        return path

    def domains(self):
        names = []
        for name in sorted(os.listdir(self.path)):
            full = os.path.join(self.path, name)
            if not name.startswith('.') and SAFE_NAME.match(name) and os.path.isdir(full):
                names.append(name)
        return names

    def backups(self, domain, errors=None):
        """Complete backups of domain, oldest first. Unreadable manifests go to errors, if given."""
        ddir = self.domain_dir(domain)
        found = []
        if not os.path.isdir(ddir):
            return found
        for chain in sorted(os.listdir(ddir)):
            cdir = os.path.join(ddir, chain)
            if chain.startswith('.') or not os.path.isdir(cdir):
                continue
            for bid in sorted(os.listdir(cdir)):
                bdir = os.path.join(cdir, bid)
                if not BACKUP_ID.match(bid) or not os.path.isfile(os.path.join(bdir, MANIFEST)):
                    continue
                try:
                    manifest = load_manifest(bdir)
                except RepositoryError as exc:
                    if errors is not None:
                        errors.append(str(exc))
                    continue
                if manifest['id'] != bid or manifest['chain'] != chain:
                    if errors is not None:
                        errors.append('manifest in %s names backup %s of chain %s' % (
                            bdir, manifest['id'], manifest['chain']))
                    continue
                found.append(Backup(bdir, manifest))
        found.sort(key=lambda b: (b.manifest['started'], b.id))
        return found

    def chains(self, domain):
        """{chain id: [backups oldest first]} in order of their full backup."""
        result = {}
        for backup in self.backups(domain):
            result.setdefault(backup.chain, []).append(backup)
        return result

    def find(self, domain, spec):
        """The backup spec names: an id, 'latest', or an ISO 8601 time (newest at or before it)."""
        backups = self.backups(domain)
        if not backups:
            raise RepositoryError('repository %s holds no backup of domain %s' % (self.path, domain))
        if spec in (None, '', 'latest'):
            return backups[-1]
        if BACKUP_ID.match(spec):
            for backup in backups:
                if backup.id == spec:
                    return backup
            raise RepositoryError('backup %s of domain %s not found in repository %s' % (spec, domain, self.path))
        if '/' in spec or '..' in spec:
            raise RepositoryError('backup %r: a backup id holds no "/" or ".."' % spec)
        moment = parse_time(spec)
        candidates = [b for b in backups if b.started <= moment]
        if not candidates:
            raise RepositoryError('no backup of domain %s at or before %s (the oldest is %s)' % (
                domain, spec, backups[0].manifest['started']))
        return candidates[-1]

    def lineage(self, backup):
        """backup and its ancestors, newest first: the image chain of that point in time."""
        by_id = dict((b.id, b) for b in self.backups(backup.manifest['domain']) if b.chain == backup.chain)
        result = [backup]
        seen = set([backup.id])
        while result[-1].parent:
            parent = by_id.get(result[-1].parent)
            if parent is None or parent.id in seen:
                raise RepositoryError('backup %s depends on %s, which is missing from chain %s' % (
                    result[-1].id, result[-1].parent, backup.chain))
            seen.add(parent.id)
            result.append(parent)
        return result

    # -- writing ------------------------------------------------------------------------------

    def lock(self, domain):
        """An exclusive, non-blocking lock on the domain's directory; released by close()."""
        ddir = self.domain_dir(domain)
        make_dir(ddir, 0o700)
        path = os.path.join(ddir, LOCK)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = ''
            try:
                holder = os.pread(fd, 64, 0).decode('ascii', 'replace').strip()
            except OSError:
                pass
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise LockedError('another backup of domain %s into repository %s is running%s' % (
                    domain, self.path, ' (process %s)' % holder if holder else ''))
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, ('%d\n' % os.getpid()).encode('ascii'), 0)
        return fd

    def unlock(self, domain, fd, remove_empty=False):
        """Release the lock from lock(). remove_empty: also remove the domain's directory when it
        holds nothing but the lock file (a first run that failed before writing anything). Done
        while the lock is still held, so no other run can have taken it meanwhile."""
        try:
            if remove_empty:
                ddir = self.domain_dir(domain)
                try:
                    if os.listdir(ddir) == [LOCK]:
                        os.unlink(os.path.join(ddir, LOCK))
                        os.rmdir(ddir)
                except OSError:
                    pass  # somebody else's file appeared: the directory stays
        finally:
            os.close(fd)

    def new_backup_id(self, domain, moment, taken=None):
        """A new id from the start time; taken(id) may veto ids whose checkpoint still exists."""
        base = moment.strftime('%Y%m%dT%H%M%SZ')
        existing = set(b.id for b in self.backups(domain))
        ddir = self.domain_dir(domain)
        for chain in (os.listdir(ddir) if os.path.isdir(ddir) else []):
            cdir = os.path.join(ddir, chain)
            if os.path.isdir(cdir):
                existing.update(os.listdir(cdir))
        candidate, n = base, 1
        while candidate in existing or (taken is not None and taken(candidate)):
            candidate = '%s-%d' % (base, n)
            n += 1
        return candidate

    def backup_dir(self, domain, chain, backup_id):
        make_dir(self.domain_dir(domain), 0o700)
        cdir = os.path.join(self.domain_dir(domain), check_name('chain', chain))
        make_dir(cdir, 0o700)
        path = os.path.join(cdir, check_name('backup id', backup_id))
        os.mkdir(path, 0o700)
        return path

    def commit(self, path, manifest):
        """Write the manifest last, by atomic rename: from now on the backup exists."""
        write_file(os.path.join(path, MANIFEST), json.dumps(manifest, indent=2, sort_keys=True) + '\n')

    def remove_partials(self, domain):
        """Remove directories of interrupted backups (no valid manifest); returns their paths."""
        removed = []
        ddir = self.domain_dir(domain)
        if not os.path.isdir(ddir):
            return removed
        for chain in os.listdir(ddir):
            cdir = os.path.join(ddir, chain)
            if chain.startswith('.') or not os.path.isdir(cdir):
                continue
            for bid in os.listdir(cdir):
                bdir = os.path.join(cdir, bid)
                if not os.path.isdir(bdir) or not BACKUP_ID.match(bid):
                    continue
                if not os.path.exists(os.path.join(bdir, MANIFEST)):
                    shutil.rmtree(bdir, ignore_errors=True)
                    removed.append(bdir)
            if not os.listdir(cdir):
                os.rmdir(cdir)
        return removed

    def remove_chain(self, domain, chain):
        cdir = os.path.join(self.domain_dir(domain), check_name('chain', chain))
        shutil.rmtree(cdir)


def file_mode_ok(path):
    """True when path is not readable by group or others."""
    return not stat.S_IMODE(os.stat(path).st_mode) & 0o077
