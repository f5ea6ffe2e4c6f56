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

from ansible_collections.virtops.libvirt.plugins.module_utils._errors import VirtError
from ansible_collections.virtops.libvirt.plugins.module_utils.backup import _blockhash, _crypt, _images

FORMAT = 'virtops.libvirt/backup-repository'
# Version 2: chains may hash their blocks with XXH3-128 (manifest version 2); the marker of a
# repository of version 1 is raised to 2 when its first such manifest is written.
FORMAT_VERSION = 2
MANIFEST_FORMAT = 'virtops.libvirt/backup'
MANIFEST_VERSION = 2
# The block hash of a chain, by manifest version: a chain keeps the algorithm of its full backup,
# and each of its manifests has the version of that algorithm (so older readers of version 1
# still read the chains of version 1 that this version continues).
MANIFEST_ALGORITHMS = {1: _blockhash.SHA256, 2: _blockhash.XXH3_128}
REPOSITORY_FILE = 'repository.json'
MANIFEST = 'manifest.json'
STAGING = '.staging'
LOCK = '.lock'
LEVELS = ('full', 'incremental', 'differential')

# Names that become path components: no separators, no dot-dot, no hidden files.
SAFE_NAME = re.compile(r'^[A-Za-z0-9_+:@-][A-Za-z0-9_.+:@-]{0,199}$')
BACKUP_ID = re.compile(r'^\d{8}T\d{6}Z(-\d+)?$')
# Disk target names (vda, sdb, hdc, xvda): also command-line arguments, so no leading '-'.
DISK_NAME = re.compile(r'^[A-Za-z0-9_][A-Za-z0-9_.+:@-]{0,63}$')
CHECKPOINT_NAME = re.compile(r'^virtops-[0-9a-f]{8}-\d{8}T\d{6}Z(-\d+)?$')
UUID = re.compile(r'^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$')
HEX_DIGEST = re.compile(r'^[0-9a-f]{64}$')
MODES = ('pull', 'push', 'offline')
DOMAIN_XML = 'domain.xml'
CHECKPOINT_XML = 'checkpoint.xml'
# Metadata files are small; a larger one is not ours and is not read into memory.
MAX_METADATA = 16 * 1024 * 1024
MAX_VIRTUAL_SIZE = 1 << 60


class RepositoryError(VirtError):
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
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
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


# A directory is synced the same way, which makes the entries made or removed in it durable.
fsync_dir = fsync_file


def make_dir(path, mode=0o700):
    try:
        os.mkdir(path, mode)
    except OSError as exc:
        if exc.errno != errno.EEXIST:
            raise
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        raise RepositoryError('%s is a symbolic link: a repository holds none, and none is followed' % path)
    if not stat.S_ISDIR(st.st_mode):
        raise RepositoryError('%s exists and is not a directory' % path)


def _lstat_mode(path, dir_fd=None):
    """The mode of path itself (a link is not followed); 0, no type at all, when it cannot be read."""
    try:
        return os.lstat(path, dir_fd=dir_fd).st_mode
    except OSError:
        return 0


def real_dir(path, dir_fd=None):
    """True for a directory that is not a symbolic link (path relative to dir_fd when given)."""
    return stat.S_ISDIR(_lstat_mode(path, dir_fd))


def is_link(path, dir_fd=None):
    return stat.S_ISLNK(_lstat_mode(path, dir_fd))


def open_under(root, parts, flags=os.O_RDONLY, mode=0o600):
    """Open root/parts[0]/.../parts[-1] without following a symbolic link in any component below root.

    Every component is opened relative to the previous one (O_NOFOLLOW), so a link planted in
    the repository, or swapped in while we work, is refused instead of followed. Returns an fd.
    """
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for part in parts[:-1]:
            nxt = _open_at(fd, root, part, os.O_RDONLY | os.O_DIRECTORY)
            os.close(fd)
            fd = nxt
        return _open_at(fd, root, parts[-1], flags, mode)
    finally:
        os.close(fd)


def _open_at(dir_fd, root, name, flags, mode=0o600):
    if not name or '/' in name or name in ('.', '..'):
        raise RepositoryError('%r is not a file name inside %s' % (name, root))
    try:
        return os.open(name, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR) and is_link(name, dir_fd):
            raise RepositoryError('%s in %s is a symbolic link: a repository holds none, and none is followed'
                                  % (name, root))
        raise


def open_regular(root, parts):
    """A read-only fd of a regular file under root (no link followed); RepositoryError otherwise.

    The file must belong to the user this code runs as (root) and be writable by nobody else:
    what is checked in it (a manifest, an image header) is then what QEMU or a later read gets
    from the same descriptor, and no other user can rewrite it in between."""
    path = os.path.join(root, *parts)
    try:
        # O_NONBLOCK: a FIFO planted under the name must not hang the run (no effect on files).
        fd = open_under(root, parts, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise RepositoryError('cannot open %s: %s' % (path, exc.strerror or exc))
    st = os.fstat(fd)
    problem = None
    if not stat.S_ISREG(st.st_mode):
        problem = '%s is not a regular file' % path
    elif st.st_uid != os.geteuid():
        problem = ('%s is owned by uid %d, not by uid %d (this module\'s user, who wrote every file of a '
                   'repository): another user could change it after it was checked' % (path, st.st_uid, os.geteuid()))
    elif st.st_mode & 0o022:
        problem = ('%s is writable by group or others (mode %04o): another user could change it after it was '
                   'checked' % (path, stat.S_IMODE(st.st_mode)))
    if problem:
        os.close(fd)
        raise RepositoryError(problem)
    return fd


def read_small(root, parts, limit=MAX_METADATA):
    """The bytes of a metadata file under root, at most limit of them."""
    fd = open_regular(root, parts)
    with os.fdopen(fd, 'rb') as src:
        data = src.read(limit + 1)
    if len(data) > limit:
        raise RepositoryError('%s is larger than %d bytes: not a file this collection wrote'
                              % (os.path.join(root, *parts), limit))
    return data


class Backup:
    """One complete backup, read from its manifest (validated: see validate_manifest)."""

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

    def open_file(self, name):
        """A read-only fd of a file of this backup (no link followed)."""
        return open_regular(self.path, [name])

    def read_text(self, name):
        if name not in (DOMAIN_XML, CHECKPOINT_XML):
            raise RepositoryError('backup %s: %r is not a metadata file of the format' % (self.id, name))
        return read_small(self.path, [name]).decode('utf-8')

    def summary(self):
        m = self.manifest
        return dict(
            id=m['id'], chain=m['chain'], level=m['level'], reason=m.get('reason'), mode=m['mode'],
            parent=m.get('parent'), checkpoint=m.get('checkpoint'), time=m['started'],
            finished=m.get('finished'), duration=m.get('duration'), path=self.path,
            disks=[dict(name=d['name'], virtual_size=d['virtual_size'], dirty_bytes=d.get('dirty_bytes'),
                        bytes_written=d.get('bytes_written'), image=os.path.join(self.path, d['image']))
                   for d in m['disks']],
            size=sum(d.get('file_size') or 0 for d in m['disks']),
            firmware=_firmware_summary(m.get('firmware'), self.path),
        )


def _firmware_summary(section, path):
    """The firmware files of a backup as paths (virt_backup_info); None for a backup without them."""
    if not section:
        return None
    nvram, tpm = section.get('nvram'), section.get('tpm')
    return dict(loader=section.get('loader'), nvram=os.path.join(path, nvram['file']) if nvram else None,
                tpm=os.path.join(path, tpm['dir']) if tpm else None,
                tpm_version=tpm['version'] if tpm else None)


def load_manifest(path):
    """The manifest in backup directory path; RepositoryError when it is unreadable, not ours, or
    any field is not what the format allows (validate_manifest)."""
    file_name = os.path.join(path, MANIFEST)
    try:
        manifest = json.loads(read_small(path, [MANIFEST]).decode('utf-8'))
    except ValueError as exc:
        raise RepositoryError('manifest %s is corrupted: %s' % (file_name, exc))
    except RepositoryError as exc:
        raise RepositoryError('cannot read manifest: %s' % exc)
    except OSError as exc:
        raise RepositoryError('cannot read manifest %s: %s' % (file_name, exc))
    if not isinstance(manifest, dict) or manifest.get('format') != MANIFEST_FORMAT:
        raise RepositoryError('%s is not a virtops.libvirt backup manifest' % file_name)
    version = manifest.get('format_version')
    if not isinstance(version, int) or isinstance(version, bool) or version < 1 or version > MANIFEST_VERSION:
        raise RepositoryError('manifest %s has format version %r; this collection reads up to %d: upgrade '
                              'virtops.libvirt to use it' % (file_name, version, MANIFEST_VERSION))
    for key in ('id', 'chain', 'level', 'mode', 'started', 'disks', 'complete'):
        if key not in manifest:
            raise RepositoryError('manifest %s lacks %r' % (file_name, key))
    if manifest['complete'] is not True or manifest['level'] not in LEVELS:
        raise RepositoryError('manifest %s does not describe a complete backup' % file_name)
    validate_manifest(manifest, file_name)
    return manifest


class _Field:
    """Raises the one error every bad manifest field gives: the file, the field, the value, the rule."""

    def __init__(self, file_name):
        self.file_name = file_name

    def bad(self, field, value, rule):
        shown = repr(value)
        if len(shown) > 80:
            shown = shown[:77] + '...'
        raise RepositoryError('manifest %s: field %s is %s, but %s. The repository may have been damaged or '
                              'tampered with; nothing was changed' % (self.file_name, field, shown, rule))

    def match(self, field, value, pattern, rule):
        if not isinstance(value, str) or not pattern.match(value) or '..' in value:
            self.bad(field, value, rule)
        return value

    def size(self, field, value, minimum=1, maximum=MAX_VIRTUAL_SIZE):
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum or value > maximum:
            self.bad(field, value, 'it is an integer from %d to %d' % (minimum, maximum))
        return value

    def optional_count(self, field, value):
        if value is not None:
            self.size(field, value, minimum=0)

    def entries(self, field, value):
        """(field[i], entry) for each entry of the list value, each of which must be an object."""
        for i, entry in enumerate(value):
            where = '%s[%d]' % (field, i)
            if not isinstance(entry, dict):
                self.bad(where, entry, 'it is an object')
            yield where, entry


def validate_manifest(m, file_name):
    """Check every field a reader uses against what the format defines (docs/repository-format.md).

    The repository is untrusted input: a field that names a file, a size or an id is used only when
    it is exactly what this collection would have written there.
    """
    f = _Field(file_name)
    backup_id = f.match('id', m['id'], BACKUP_ID, 'a backup id is YYYYMMDDTHHMMSSZ with an optional -N')
    f.match('chain', m['chain'], BACKUP_ID, 'a chain id is the id of its full backup')
    if m['mode'] not in MODES:
        f.bad('mode', m['mode'], 'it is one of %s' % ', '.join(MODES))
    if m['level'] == 'full':
        if m.get('parent') is not None:
            f.bad('parent', m.get('parent'), 'a full backup has none')
        if m['chain'] != backup_id:
            f.bad('chain', m['chain'], 'a full backup starts its own chain (%s)' % backup_id)
    else:
        f.match('parent', m.get('parent'), BACKUP_ID, 'an %s backup names its parent by backup id' % m['level'])
    if not isinstance(m['started'], str):
        f.bad('started', m['started'], 'it is an ISO 8601 time')
    try:
        parse_time(m['started'])
    except RepositoryError:
        f.bad('started', m['started'], 'it is an ISO 8601 time')
    if 'domain' in m:
        f.match('domain', m['domain'], SAFE_NAME, 'a domain name is a safe path component')
    if m.get('repository_id') is not None:
        f.match('repository_id', m['repository_id'], UUID, 'a repository id is a UUID')
    if m.get('checkpoint') is not None:
        f.match('checkpoint', m['checkpoint'], CHECKPOINT_NAME, 'checkpoints are named virtops-<repository>-<backup id>')
    if m.get('since_checkpoint') is not None:
        f.match('since_checkpoint', m['since_checkpoint'], CHECKPOINT_NAME,
                'checkpoints are named virtops-<repository>-<backup id>')
    for key, fixed in (('domain_xml', DOMAIN_XML), ('checkpoint_xml', CHECKPOINT_XML)):
        if m.get(key) is not None and m[key] != fixed:
            f.bad(key, m[key], 'the format names it %s' % fixed)
    disks = m['disks']
    if not isinstance(disks, list) or not disks:
        f.bad('disks', disks, 'it is a list of at least one disk')
    seen = set()
    for where, disk in f.entries('disks', disks):
        name = f.match(where + '.name', disk.get('name'), DISK_NAME,
                       'a disk name holds letters, digits and _ . + : @ -, starts with a letter, digit or _, '
                       'and holds no "/" or ".."')
        if name in seen:
            f.bad(where + '.name', name, 'each disk appears once')
        seen.add(name)
        if disk.get('image') != '%s.qcow2' % name:
            f.bad(where + '.image', disk.get('image'), 'the format names the image of disk %s %s.qcow2'
                  % (name, name))
        size = f.size(where + '.virtual_size', disk.get('virtual_size'))
        disk_full = m['level'] == 'full' or disk.get('level') == 'full'
        if disk.get('method') not in (None, 'bitmap', 'compare'):
            f.bad(where + '.method', disk['method'], 'it is bitmap or compare')
        if disk.get('level') is not None and disk['level'] not in LEVELS:
            f.bad(where + '.level', disk['level'], 'it is one of %s' % ', '.join(LEVELS))
        expected_backing = None if disk_full else '../%s/%s.qcow2' % (m.get('parent'), name)
        if disk.get('backing') != expected_backing:
            f.bad(where + '.backing', disk.get('backing'), 'the format gives %s here' % (
                'no backing file' if expected_backing is None else expected_backing))
        integrity = disk.get('integrity')
        if not isinstance(integrity, dict):
            f.bad(where + '.integrity', integrity, 'it is an object')
        algorithm = MANIFEST_ALGORITHMS[m['format_version']]
        if integrity.get('algorithm') != algorithm:
            f.bad(where + '.integrity.algorithm', integrity.get('algorithm'), 'a manifest of format version %d '
                  'hashes with %s' % (m['format_version'], algorithm))
        block_size = _blockhash.choose_block_size(size)
        if integrity.get('block_size') != block_size:
            f.bad(where + '.integrity.block_size', integrity.get('block_size'),
                  'the format hashes a %d-byte disk in %d-byte blocks' % (size, block_size))
        if integrity.get('map') != '%s.blockhash.gz' % name:
            f.bad(where + '.integrity.map', integrity.get('map'), 'the format names the map of disk %s '
                  '%s.blockhash.gz' % (name, name))
        f.match(where + '.image_digest', disk.get('image_digest'), HEX_DIGEST, 'it is a SHA-256 digest in hex')
        for key in ('file_size', 'dirty_bytes', 'bytes_read', 'bytes_written', 'zero_bytes'):
            f.optional_count('%s.%s' % (where, key), disk.get(key))
        if disk.get('compression') is not None and disk['compression'] not in _images.COMPRESSION_TYPES:
            f.bad(where + '.compression', disk['compression'], 'it is %s' % ' or '.join(_images.COMPRESSION_TYPES))
    encryption = m.get('encryption')
    if encryption is not None:
        if not isinstance(encryption, dict) or encryption.get('format') != _crypt.FORMAT:
            f.bad('encryption', encryption, 'it is null or {"format": "luks", "key_fingerprint": ...}')
        f.match('encryption.key_fingerprint', encryption.get('key_fingerprint'), _crypt.FINGERPRINT,
                'it is 32 hex digits')
    skipped = m.get('skipped_disks') or []
    if not isinstance(skipped, list) or not all(
            isinstance(s, dict) and isinstance(s.get('name'), str) for s in skipped):
        f.bad('skipped_disks', skipped, 'it is a list of {name, reason}')
    if m.get('firmware') is not None:
        # Imported here: _firmware imports this module.
        from ansible_collections.virtops.libvirt.plugins.module_utils.backup import _firmware
        _firmware.validate(m['firmware'], file_name)


def load_map(backup, disk, keep_members=False):
    """The integrity map a backup recorded for disk (bounded read, digest checked); keep_members:
    see BlockHashMap.load."""
    integrity = disk['integrity']
    label = os.path.join(backup.path, integrity['map'])
    try:
        fd = backup.open_file(integrity['map'])
    except RepositoryError as exc:
        raise _blockhash.BlockHashError('cannot read hash map: %s' % exc)
    return _blockhash.BlockHashMap.load(fd, disk['virtual_size'], integrity['block_size'], disk['image_digest'],
                                        label=label, algorithm=integrity['algorithm'], keep_members=keep_members)


def manifest_version(algorithm):
    """The manifest version whose block hash is algorithm."""
    for version, name in MANIFEST_ALGORITHMS.items():
        if name == algorithm:
            return version
    raise RepositoryError('block hash algorithm %r has no manifest version' % (algorithm,))


def chain_algorithm(backup):
    """The block hash of the chain backup belongs to (every manifest of a chain has the same)."""
    return MANIFEST_ALGORITHMS[backup.manifest['format_version']]


def open_chain(lineage, name, key=None):
    """The image chain of disk name at the point in time lineage[0] holds (lineage: newest first),
    opened layer by layer as the manifests describe it (_images.ImageChain). key: the _crypt.Key of
    encrypted backups; a backup whose manifest says it is encrypted needs it, and it must match."""
    layers = []
    try:
        for backup in lineage:
            encryption = backup.manifest.get('encryption')
            try:
                _crypt.check_key(backup.id, encryption, key)
            except VirtError as exc:
                raise _images.ImageError(exc.msg)
            disk = backup.disk(name)
            if disk is None:
                raise _images.ImageError('backup %s holds no disk %s, but a later backup of its chain backs onto it'
                                         % (backup.id, name))
            label = backup.image(disk)
            try:
                fd = backup.open_file(disk['image'])
            except RepositoryError as exc:
                raise _images.ImageError(str(exc))
            layers.append(_images.Layer(fd, label, disk['virtual_size'], disk.get('backing'), bool(encryption)))
            if disk.get('backing') is None:
                break
        else:
            raise _images.ImageError('the chain of disk %s in backup %s ends without a full image'
                                     % (name, lineage[0].id))
        return _images.ImageChain(layers, key=key)
    except BaseException:
        for layer in layers:
            if layer.fd is not None:
                os.close(layer.fd)
                layer.fd = None
        raise


def check_point(lineage, name, key=None):
    """Check the point in time lineage[0] holds of disk name before it is used: every layer of its
    chain (headers, sizes) and its integrity map. Returns the map (_blockhash.BlockHashMap); raises
    _images.ImageError, _blockhash.BlockHashError or RepositoryError."""
    check_chain(lineage, name, key)
    return load_map(lineage[0], lineage[0].disk(name))


def check_chain(lineage, name, key=None):
    """The first half of check_point: every layer of the chain opens as its manifest describes it."""
    with open_chain(lineage, name, key):
        pass


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


def check_ancestors(path):
    """Every directory above the repository, as given and as resolved, belongs to root (or the user
    this module runs as) and nobody else can rename its entries (not writable by group or others,
    unless sticky like /tmp): otherwise another user could swap the repository, or a directory of
    it, for one of their own between two steps, and root would read or write what they chose."""
    parents = set()
    for start in (path, os.path.realpath(path)):
        parent = os.path.dirname(start)
        while True:
            parents.add(parent)
            if parent == os.path.dirname(parent):
                break
            parent = os.path.dirname(parent)
    for parent in sorted(parents):
        try:
            st = os.stat(parent)
        except OSError:
            continue            # created later, by this run, as root
        if st.st_uid not in (0, os.geteuid()):
            problem = 'owned by uid %d' % st.st_uid
        elif st.st_mode & 0o022 and not st.st_mode & stat.S_ISVTX:
            problem = 'writable by group or others (mode %04o)' % stat.S_IMODE(st.st_mode)
        else:
            continue
        raise RepositoryError('repository %s: %s is %s; another user could replace what the repository holds. '
                              'A repository must sit in directories only root can change. Nothing was changed'
                              % (path, parent, problem))


class Repository:
    """A repository directory; opening for writing creates it."""

    def __init__(self, path, create=False):
        if not path or not os.path.isabs(path):
            raise RepositoryError('repository %r must be an absolute path' % (path,))
        self.path = os.path.normpath(path)
        check_ancestors(self.path)
        if os.path.exists(self.path) and not os.path.isdir(self.path):
            raise RepositoryError('repository %s exists and is not a directory' % self.path)
        marker = os.path.join(self.path, REPOSITORY_FILE)
        if not os.path.lexists(marker):
            if not create:
                if not os.path.lexists(self.path):
                    raise RepositoryError('repository %s does not exist' % self.path)
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
            info = json.loads(read_small(self.path, [REPOSITORY_FILE]).decode('utf-8'))
        except (OSError, ValueError, RepositoryError) as exc:
            raise RepositoryError('cannot read %s: %s' % (marker, exc))
        if not isinstance(info, dict) or info.get('format') != FORMAT or not info.get('id'):
            raise RepositoryError('%s is not a virtops.libvirt repository marker' % marker)
        if not isinstance(info['id'], str) or not UUID.match(info['id']):
            raise RepositoryError('%s: field id is %r, but a repository id is a UUID. The repository may have '
                                  'been damaged or tampered with; nothing was changed' % (marker, info['id']))
        if not isinstance(info.get('format_version'), int) or isinstance(info['format_version'], bool) \
                or info['format_version'] < 1 or info['format_version'] > FORMAT_VERSION:
            raise RepositoryError('repository %s has format version %r; this collection reads up to %d'
                                  % (self.path, info.get('format_version'), FORMAT_VERSION))
        return info

    def _raise_version(self, version):
        # Parallel runs may raise it at once: each writes the same content, by atomic rename.
        info = dict(self._read_info(os.path.join(self.path, REPOSITORY_FILE)))
        if info['format_version'] < version:
            info['format_version'] = version
            write_file(os.path.join(self.path, REPOSITORY_FILE), json.dumps(info, indent=2, sort_keys=True) + '\n')
        self.info = info

    @property
    def short_id(self):
        return self.id.replace('-', '')[:8]

    def check_writable(self):
        if not os.access(self.path, os.W_OK | os.X_OK):
            raise RepositoryError('repository %s is not writable' % self.path)
        self.check_owner()
        self.check_layout()

    def check_layout(self):
        """.staging, where the format has it, is a real directory (never a link to follow)."""
        staging = os.path.join(self.path, STAGING)
        if os.path.lexists(staging) and not real_dir(staging):
            raise RepositoryError('%s is %s, not the directory the format defines; it is not followed or used. '
                                  'Nothing was changed; remove it' % (
                                      staging, 'a symbolic link' if is_link(staging) else 'not a directory'))

    def check_owner(self):
        """The repository root belongs to the user this module runs as (root) and nobody else can
        write it: every path below it is then ours, not one another user could swap or plant."""
        st = os.stat(self.path)
        if st.st_uid != os.geteuid():
            raise RepositoryError('repository %s is owned by uid %d; it must be owned by root (uid %d), the user '
                                  'this module runs as, so that no other user can change what it holds. Nothing '
                                  'was changed' % (self.path, st.st_uid, os.geteuid()))
        if st.st_mode & 0o022:
            raise RepositoryError('repository %s is writable by group or others (mode %04o); it must not be '
                                  '(0711 is right: others may traverse it, not list or change it). Nothing was '
                                  'changed' % (self.path, stat.S_IMODE(st.st_mode)))

    # -- layout -------------------------------------------------------------------------------

    def domain_dir(self, domain):
        return os.path.join(self.path, check_name('domain name', domain))

    def staging_dir(self, domain, owner):
        """The directory QEMU writes this domain's push targets into: <repository>/.staging/<domain>
        (see qemu_domain_dir)."""
        return qemu_domain_dir(os.path.join(self.path, STAGING), check_name('domain name', domain), owner)

    def domains(self):
        names = []
        for name in sorted(os.listdir(self.path)):
            full = os.path.join(self.path, name)
            if not name.startswith('.') and SAFE_NAME.match(name) and (real_dir(full) or is_link(full)):
                names.append(name)
        return names

    def backups(self, domain, errors=None):
        """Complete backups of domain, oldest first. Unreadable manifests go to errors, if given."""
        ddir = self.domain_dir(domain)
        found = []
        if is_link(ddir):
            raise RepositoryError('%s is a symbolic link: a repository holds none, and none is followed' % ddir)
        if not os.path.isdir(ddir):
            return found

        def linked(path):
            if is_link(path):
                if errors is not None:
                    errors.append('%s is a symbolic link: a repository holds none, and none is followed' % path)
                return True
            return False

        for chain in sorted(os.listdir(ddir)):
            cdir = os.path.join(ddir, chain)
            if chain.startswith('.') or linked(cdir) or not os.path.isdir(cdir):
                continue
            for bid in sorted(os.listdir(cdir)):
                bdir = os.path.join(cdir, bid)
                if not BACKUP_ID.match(bid) or linked(bdir) or not os.path.isdir(bdir) \
                        or not os.path.lexists(os.path.join(bdir, MANIFEST)):
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
            if parent.manifest['format_version'] != result[-1].manifest['format_version']:
                # One block hash per chain: an incremental's map continues its parent's.
                raise RepositoryError('backup %s (manifest version %d, block hash %s) continues %s (version %d, %s): '
                                      'a chain keeps one block hash. The repository may have been damaged or '
                                      'tampered with' % (result[-1].id, result[-1].manifest['format_version'],
                                                         chain_algorithm(result[-1]), parent.id,
                                                         parent.manifest['format_version'], chain_algorithm(parent)))
            seen.add(parent.id)
            result.append(parent)
        return result

    # -- writing ------------------------------------------------------------------------------

    def lock(self, domain):
        """An exclusive, non-blocking lock on the domain's directory; released by close()."""
        ddir = self.domain_dir(domain)
        make_dir(ddir, 0o700)
        path = os.path.join(ddir, LOCK)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
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
        """Write the manifest last, by atomic rename: from now on the backup exists. A manifest of a
        version the repository marker does not announce yet raises the marker first, so that an
        older collection refuses the repository as a whole instead of a backup here and there."""
        if manifest['format_version'] > self.info['format_version']:
            self._raise_version(manifest['format_version'])
        write_file(os.path.join(path, MANIFEST), json.dumps(manifest, indent=2, sort_keys=True) + '\n')

    def remove_partials(self, domain):
        """Remove directories of interrupted backups (no valid manifest); returns their paths."""
        removed = []
        ddir = self.domain_dir(domain)
        if not os.path.isdir(ddir):
            return removed
        for chain in os.listdir(ddir):
            cdir = os.path.join(ddir, chain)
            if chain.startswith('.') or not real_dir(cdir):
                continue
            for bid in os.listdir(cdir):
                bdir = os.path.join(cdir, bid)
                if not real_dir(bdir) or not BACKUP_ID.match(bid):
                    continue
                if not os.path.lexists(os.path.join(bdir, MANIFEST)):
                    shutil.rmtree(bdir, ignore_errors=True)
                    removed.append(bdir)
            if not os.listdir(cdir):
                os.rmdir(cdir)
        return removed


def own_dir(path, parent, name, owner, mode):
    """Give the directory name in parent its owner and mode, through a descriptor opened without
    following links (parent is ours, so the entry cannot be swapped between the check and the change)."""
    try:
        fd = open_under(parent, [name], os.O_RDONLY | os.O_DIRECTORY)
    except OSError as exc:
        raise RepositoryError('cannot open %s: %s' % (path, exc.strerror or exc))
    try:
        st = os.fstat(fd)
        if owner is not None and (st.st_uid, st.st_gid) != tuple(owner):
            os.fchown(fd, owner[0], owner[1])
        if stat.S_IMODE(st.st_mode) != mode:
            os.fchmod(fd, mode)
    finally:
        os.close(fd)


def qemu_domain_dir(root, domain, owner):
    """root/domain, a directory that QEMU of that domain writes into: root belongs to root (0711),
    root/domain to the domain's QEMU user (its DAC owner can differ per domain), 0700 (LAB-NOTES).
    Owner and mode are set through descriptors opened without following links, so a link planted
    by QEMU's user (or in a tampered repository) is refused, never chowned."""
    make_dir(root, 0o711)
    own_dir(root, os.path.dirname(root), os.path.basename(root), (os.geteuid(), os.getegid()), 0o711)
    path = os.path.join(root, domain)
    make_dir(path, 0o700)
    own_dir(path, root, domain, owner, 0o700)
    return path


def file_mode_ok(path):
    """True when path is not readable by group or others."""
    return not stat.S_IMODE(os.stat(path).st_mode) & 0o077
