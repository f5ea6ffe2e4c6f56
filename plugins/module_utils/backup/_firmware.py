# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Private to the virtops.libvirt collection: may change without notice.
"""The UEFI variable store (NVRAM) and the emulated TPM's state: saved with every backup, restored
with it (docs/repository-format.md, "Firmware and TPM state").

    <backup>/nvram.fd            copy of the domain's <os><nvram> file
    <backup>/tpm/<state file>    copies of swtpm's state files (tpm2-00.permall, ...)

Facts this relies on (libvirt 9.0 and swtpm 0.7 on Debian 12; docs/LAB-NOTES.md):
- <os><nvram> names the variable store. With firmware autoselection (<os firmware='efi'>) libvirt
  9.0 writes the path only into the live definition of a running domain; a shut-off domain's
  definition has none, and its store is then <nvram dir>/<name>_VARS.fd, made from the template at
  the first start (no file before that). It belongs to QEMU's user (libvirt-qemu), 0600, and QEMU
  writes it in place, so a copy taken while the guest changes a variable can hold part of that
  change, as after a power cut.
- An emulated TPM (<tpm><backend type='emulator' version='2.0'/>) keeps its state in
  /var/lib/libvirt/swtpm/<uuid>/tpm2 (tpm1.2 for version 1.2): <uuid> root's 0711, the state
  directory swtpm's user's (qemu.conf swtpm_user, tss on Debian) 0700, files 0600. Besides
  .lock, the files are <tpm|tpm2>-00.<permall|volatilestate|savestate>; swtpm writes each to a
  temporary file and renames it, so a copy is always one whole version of the file.
- libvirt runs swtpm_setup only when that state directory is missing or empty, and gives its files
  to swtpm's user at every start: state installed there before the first start is used as it is.
- libvirt records the TPM version in every definition it returns (post-parse default: 1.2 for
  tpm-tis on x86, 2.0 otherwise).

Everything named here by the repository is untrusted: file names are fixed or match TPM_FILE,
sizes are bounded, and each copy is checked against its size and SHA-256 before it is used.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import grp
import hashlib
import os
import pwd
import re
import shutil
import stat

from ansible_collections.virtops.libvirt.plugins.module_utils.xml._document import parse
from ansible_collections.virtops.libvirt.plugins.module_utils.backup import _repository
from ansible_collections.virtops.libvirt.plugins.module_utils._errors import VirtError

NVRAM_FILE = 'nvram.fd'
TPM_DIR = 'tpm'
# TPM version -> the directory libvirt keeps its state in, under SWTPM_DIR/<uuid>/
TPM_VERSIONS = {'2.0': 'tpm2', '1.2': 'tpm1.2'}
TPM_FILE = re.compile(r'^(tpm2?)-00\.(?:permall|volatilestate|savestate)$')
TPM_PREFIX = {'2.0': 'tpm2', '1.2': 'tpm'}
FIRMWARE_KINDS = ('efi', 'bios')
# A variable store is 128 KiB to 4 MiB, TPM state a few KiB to a few hundred: a file beyond this
# is not one of them, and is neither copied nor read into the manifest's checks.
MAX_FILE = 64 * 1024 * 1024
MAX_PATH = 4096
CHUNK = 1024 * 1024

# libvirt's directories for the system daemon (qemu:///system); tests point them elsewhere.
NVRAM_DIR = '/var/lib/libvirt/qemu/nvram'
SWTPM_DIR = '/var/lib/libvirt/swtpm'
QEMU_CONF = '/etc/libvirt/qemu.conf'


class FirmwareError(VirtError):
    pass


# ---------------------------------------------------------------------------------------------
# What the domain has

def firmware_state(domain_xml, uuid):
    """What the domain's definition (live XML for a running domain) says about its firmware:
    dict(name, firmware ('efi', 'bios' or None), loader (path or None), nvram (path or None),
    nvram_type (None for a file), tpm (dict(version, dir) or None))."""
    root = parse(domain_xml, 'the definition of the domain')
    name = (root.findtext('name') or '').strip()
    os_elem = root.find('os')
    firmware = os_elem.get('firmware') if os_elem is not None else None
    loader = os_elem.find('loader') if os_elem is not None else None
    loader_path = (loader.text or '').strip() or None if loader is not None else None
    nvram_path, nvram_type = None, None
    nvram = os_elem.find('nvram') if os_elem is not None else None
    if nvram is not None:
        nvram_type = nvram.get('type')
        if nvram_type in (None, 'file'):
            source = nvram.find('source')
            nvram_path = (nvram.text or '').strip() or (source.get('file') if source is not None else None)
            nvram_type = None
    stateless = loader is not None and loader.get('stateless') == 'yes'
    # libvirt gives a variable store to UEFI (autoselected, or a read-only pflash loader).
    pflash = firmware == 'efi' or (loader is not None and loader.get('type') == 'pflash'
                                   and loader.get('readonly') == 'yes')
    if nvram is None and pflash and not stateless and name:
        # What libvirt itself uses at the next start (see the module docstring).
        nvram_path = os.path.join(NVRAM_DIR, '%s_VARS.fd' % name)
    return dict(name=name, firmware=firmware, loader=loader_path, nvram=nvram_path, nvram_type=nvram_type,
                tpm=_tpm_state(root, uuid))


def _tpm_state(root, uuid):
    for tpm in root.findall('./devices/tpm'):
        backend = tpm.find('backend')
        if backend is None or backend.get('type') != 'emulator':
            continue
        version = backend.get('version')
        base = os.path.join(SWTPM_DIR, uuid.lower())
        if version not in TPM_VERSIONS:
            found = [v for v in ('2.0', '1.2') if os.path.isdir(os.path.join(base, TPM_VERSIONS[v]))]
            arch = root.find('./os/type')
            x86 = arch is not None and arch.get('arch') in ('i686', 'x86_64')
            version = found[0] if found else '1.2' if tpm.get('model', 'tpm-tis') == 'tpm-tis' and x86 else '2.0'
        return dict(version=version, dir=os.path.join(base, TPM_VERSIONS[version]))
    return None


# ---------------------------------------------------------------------------------------------
# Backup

def capture(state, backup_path):
    """Copy the variable store and the TPM state into backup_path; -> the manifest's firmware
    section, or None when the domain has no UEFI firmware and no emulated TPM.

    {"loader": path or None, "firmware": "efi" or None,
     "nvram": {"file": "nvram.fd", "size": N, "sha256": hex, "source": path} or None,
     "tpm": {"version": "2.0", "dir": "tpm", "files": [{"name", "size", "sha256"}]} or None}

    nvram is None when the store does not exist yet (the domain never started), tpm when swtpm
    has not made its state yet. Raises FirmwareError (nothing left behind) when a source is a
    link, not a regular file, or too large, or the store is not a file (block, network).
    """
    if not (state.get('firmware') == 'efi' or state.get('loader') or state.get('nvram') or state.get('tpm')):
        return None
    if state.get('nvram_type'):
        raise FirmwareError('the UEFI variable store of domain %s is of type %s; only a file can be backed up'
                            % (state.get('name'), state['nvram_type']))
    section = dict(loader=state.get('loader'), firmware=state.get('firmware'), nvram=None, tpm=None)
    made = []
    try:
        if state.get('nvram'):
            src = _open_source(None, state['nvram'])
            if src is not None:
                with _closing(src):
                    size, digest = _copy_new(src, None, backup_path, NVRAM_FILE, state['nvram'])
                made.append(NVRAM_FILE)
                section['nvram'] = dict(file=NVRAM_FILE, size=size, sha256=digest, source=state['nvram'])
        if state.get('tpm'):
            section['tpm'] = _capture_tpm(state['tpm'], backup_path, made)
        _repository.fsync_dir(backup_path)
    except BaseException:
        _remove(backup_path, made)
        raise
    return section


def _capture_tpm(tpm, backup_path, made):
    try:
        dir_fd = os.open(tpm['dir'], os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            return None         # swtpm_setup has not run yet: nothing to save
        raise FirmwareError('cannot open the TPM state directory %s: %s' % (tpm['dir'], exc.strerror or exc))
    files = []
    with _closing(dir_fd):
        prefix = TPM_PREFIX[tpm['version']]
        names = sorted(n for n in os.listdir(dir_fd) if TPM_FILE.match(n) and TPM_FILE.match(n).group(1) == prefix)
        if not names:
            return None
        os.mkdir(os.path.join(backup_path, TPM_DIR), 0o700)
        made.append(TPM_DIR)
        out_dir = os.path.join(backup_path, TPM_DIR)
        for name in names:
            src = _open_source(dir_fd, name, label=os.path.join(tpm['dir'], name))
            if src is None:
                continue        # swtpm removed it meanwhile (a volatile state it consumed)
            with _closing(src):
                size, digest = _copy_new(src, None, out_dir, name, os.path.join(tpm['dir'], name))
            made.append(os.path.join(TPM_DIR, name))
            files.append(dict(name=name, size=size, sha256=digest))
        _repository.fsync_dir(out_dir)
    if not files:
        return None
    return dict(version=tpm['version'], dir=TPM_DIR, files=files)


def _open_source(dir_fd, name, label=None):
    """A read-only fd of a regular file that QEMU's or swtpm's user owns (and could swap for a link
    or a FIFO): no link followed, no blocking open; None when it does not exist."""
    label = label or name
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            return None
        if exc.errno == errno.ELOOP:
            raise FirmwareError('%s is a symbolic link; it is not followed' % label)
        raise FirmwareError('cannot open %s: %s' % (label, exc.strerror or exc))
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise FirmwareError('%s is not a regular file' % label)
    return fd


def _copy_new(src, dir_fd, path_or_dir, name, label):
    """Copy src into a new file name (0600 from the first byte, never through a link) in a directory
    given by dir_fd or by path; fsync'd. -> (size, sha256 hex). Removes the file on failure."""
    target_dir_fd = dir_fd
    if target_dir_fd is None:
        target_dir_fd = os.open(path_or_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        out = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                      dir_fd=target_dir_fd)
        try:
            with _closing(out):
                size, digest = _stream(src, out, label)
                os.fsync(out)
        except BaseException:
            _unlink(target_dir_fd, name)
            raise
    finally:
        if dir_fd is None:
            os.close(target_dir_fd)
    return size, digest


def _stream(src, out, label, limit=MAX_FILE):
    """Copy (or, with out None, just read) src from its start: (size, sha256 hex)."""
    digest = hashlib.sha256()
    size = 0
    offset = 0
    while True:
        block = os.pread(src, CHUNK, offset)
        if not block:
            break
        offset += len(block)
        size += len(block)
        if size > limit:
            raise FirmwareError('%s is larger than %d bytes: not a variable store or TPM state' % (label, limit))
        digest.update(block)
        if out is not None:
            view = memoryview(block)
            while view:
                view = view[os.write(out, view):]
    return size, digest.hexdigest()


# ---------------------------------------------------------------------------------------------
# The manifest section

def validate(section, file_name):
    """Check the firmware section of a manifest like validate_manifest does the rest: only fixed
    file names, bounded sizes, hex digests and known versions pass (RepositoryError otherwise)."""
    f = _repository._Field(file_name)
    if not isinstance(section, dict):
        f.bad('firmware', section, 'it is an object')
    loader = section.get('loader')
    if loader is not None and (not isinstance(loader, str) or len(loader) > MAX_PATH or '\0' in loader):
        f.bad('firmware.loader', loader, 'it is the path of the firmware (informative), or null')
    if section.get('firmware') is not None and section['firmware'] not in FIRMWARE_KINDS:
        f.bad('firmware.firmware', section['firmware'], 'it is one of %s, or null' % ', '.join(FIRMWARE_KINDS))
    nvram = section.get('nvram')
    if nvram is not None:
        if not isinstance(nvram, dict):
            f.bad('firmware.nvram', nvram, 'it is an object or null')
        if nvram.get('file') != NVRAM_FILE:
            f.bad('firmware.nvram.file', nvram.get('file'), 'the format names the variable store %s' % NVRAM_FILE)
        _file_fields(f, 'firmware.nvram', nvram)
        source = nvram.get('source')
        if source is not None and (not isinstance(source, str) or len(source) > MAX_PATH):
            f.bad('firmware.nvram.source', source, 'it is the path the store was copied from (informative)')
    tpm = section.get('tpm')
    if tpm is not None:
        if not isinstance(tpm, dict):
            f.bad('firmware.tpm', tpm, 'it is an object or null')
        version = tpm.get('version')
        if version not in TPM_VERSIONS:
            f.bad('firmware.tpm.version', version, 'it is one of %s' % ', '.join(sorted(TPM_VERSIONS)))
        if tpm.get('dir') != TPM_DIR:
            f.bad('firmware.tpm.dir', tpm.get('dir'), 'the format names the TPM state directory %s' % TPM_DIR)
        files = tpm.get('files')
        if not isinstance(files, list) or not files or len(files) > 3:
            f.bad('firmware.tpm.files', files, 'it is a list of one to three state files')
        seen = set()
        for where, entry in f.entries('firmware.tpm.files', files):
            name = entry.get('name')
            match = TPM_FILE.match(name) if isinstance(name, str) else None
            if match is None or match.group(1) != TPM_PREFIX[version] or name in seen:
                f.bad(where + '.name', name, 'it is one of the state files of a TPM %s (%s-00.permall, '
                      '.volatilestate or .savestate), each once' % (version, TPM_PREFIX[version]))
            seen.add(name)
            _file_fields(f, where, entry)


def _file_fields(f, where, entry):
    f.size(where + '.size', entry.get('size'), minimum=0, maximum=MAX_FILE)
    f.match(where + '.sha256', entry.get('sha256'), _repository.HEX_DIGEST, 'it is a SHA-256 digest in hex')


# ---------------------------------------------------------------------------------------------
# Restore

def plan_restore(backup, section, dest, force=False):
    """What restore_files would do, in check mode too; raises before anything is written.

    Each repository copy is read and checked (size, SHA-256) first, so that a tampered repository
    fails here. -> dict(nvram=path or None, tpm=path or None, todo=[relative names to write],
    stale=[TPM state files in dest/tpm that the backup does not have]). Without force, a file in
    dest that differs from the backup is refused, as for disks."""
    plan = dict(nvram=None, tpm=None, todo=[], stale=[])
    if not section:
        return plan
    for parts, entry in _entries(section):
        with _closing(_open_repo(backup, parts)) as fd:
            _check_copy(fd, entry, os.path.join(backup.path, *parts))
    for parts, entry in _entries(section):
        found = _existing(dest, parts, entry)
        if found is True:
            continue
        if found is not None and not force:
            raise FirmwareError('%s exists and does not hold the %s of backup %s (%s); remove it or set force: '
                                'true to overwrite it' % (os.path.join(dest, *parts), _what(parts), backup.id, found))
        plan['todo'].append(os.path.join(*parts))
    if section.get('nvram'):
        plan['nvram'] = os.path.join(dest, NVRAM_FILE)
    if section.get('tpm'):
        plan['tpm'] = os.path.join(dest, TPM_DIR)
        if os.path.lexists(plan['tpm']) and not _repository.real_dir(plan['tpm']):
            raise FirmwareError('%s exists and is not a directory (or is a symbolic link)' % plan['tpm'])
        wanted = set(e['name'] for e in section['tpm']['files'])
        plan['stale'] = [n for n in _state_files(os.path.join(dest, TPM_DIR)) if n not in wanted]
        if plan['stale'] and not force:
            raise FirmwareError('%s holds TPM state files that backup %s does not have (%s); remove them or set '
                                'force: true' % (plan['tpm'], backup.id, ', '.join(plan['stale'])))
    return plan


def restore_files(backup, section, dest, dest_fd, force=False):
    """Write <dest>/nvram.fd and <dest>/tpm/<files> from the backup, each verified (size, SHA-256)
    while it is copied. Files already identical are left alone. All new files are written under
    temporary names first and renamed into place only when every one of them proved right, so a
    mismatch leaves nothing behind. -> dict(nvram=path or None, tpm=path or None,
    written=[relative names], made_dir=bool) (written and made_dir are for undo())."""
    plan = plan_restore(backup, section, dest, force)
    done = dict(nvram=plan['nvram'], tpm=plan['tpm'], written=[], made_dir=False)
    if not plan['todo'] and not plan['stale']:
        return done
    tpm_fd = None
    partials = []       # (dir fd, name)
    try:
        if plan['tpm']:
            tpm_fd, done['made_dir'] = _open_tpm_dir(dest_fd, dest)
        for rel in plan['todo']:
            parts = rel.split(os.sep)
            entry = dict(_entries(section))[tuple(parts)]
            dir_fd = tpm_fd if len(parts) == 2 else dest_fd
            partial = parts[-1] + '.partial'
            _unlink(dir_fd, partial)     # debris of an interrupted restore
            label = os.path.join(dest, *parts)
            with _closing(_open_repo(backup, parts)) as src:
                partials.append((dir_fd, partial))
                size, digest = _copy_new(src, dir_fd, None, partial, os.path.join(backup.path, *parts))
            if size != entry['size'] or digest != entry['sha256']:
                raise FirmwareError('the copy of %s does not match backup %s (%d bytes, SHA-256 %s; the manifest '
                                    'says %d bytes, %s): the repository changed or is damaged'
                                    % (label, backup.id, size, digest[:16], entry['size'], entry['sha256'][:16]))
        for dir_fd, partial in partials:
            os.rename(partial, partial[:-len('.partial')], src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        done['written'] = list(plan['todo'])
        partials = []
        for name in plan['stale']:
            _unlink(tpm_fd, name)
        os.fsync(dest_fd)
        if tpm_fd is not None:
            os.fsync(tpm_fd)
    except BaseException:
        for dir_fd, partial in partials:
            _unlink(dir_fd, partial)
        if done['made_dir']:
            _rmdir(dest_fd, TPM_DIR)
        raise
    finally:
        if tpm_fd is not None:
            os.close(tpm_fd)
    return done


def undo(dest_fd, done):
    """Remove what restore_files wrote (a later step of the restore failed)."""
    tpm_fd = None
    try:
        tpm_fd = os.open(TPM_DIR, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dest_fd)
    except OSError:
        pass
    try:
        for rel in done.get('written') or []:
            parts = rel.split(os.sep)
            if len(parts) == 2 and tpm_fd is not None:
                _unlink(tpm_fd, parts[1])
            elif len(parts) == 1:
                _unlink(dest_fd, parts[0])
    finally:
        if tpm_fd is not None:
            os.close(tpm_fd)
    if done.get('made_dir'):
        _rmdir(dest_fd, TPM_DIR)


def verify(backup, section):
    """Each firmware file of a backup checked against its manifest entry (virt_backup_info):
    [dict(name, path, ok, message)]; a problem is a failed check, never an error."""
    checks = []
    for parts, entry in _entries(section or {}):
        path = os.path.join(backup.path, *parts)
        check = dict(name=os.path.join(*parts), path=path, ok=False)
        try:
            with _closing(_open_repo(backup, parts)) as fd:
                _check_copy(fd, entry, path)
            check.update(ok=True, message='size and SHA-256 match (%s)' % entry['sha256'][:16])
        except (FirmwareError, OSError) as exc:
            check['message'] = str(exc)
        checks.append(check)
    return checks


def _entries(section):
    """((path parts inside the backup or dest), manifest entry) of every file of the section."""
    found = []
    if section.get('nvram'):
        found.append(((NVRAM_FILE,), section['nvram']))
    if section.get('tpm'):
        for entry in section['tpm']['files']:
            found.append(((TPM_DIR, entry['name']), entry))
    return found


def _what(parts):
    return 'UEFI variable store' if parts[0] == NVRAM_FILE else 'TPM state file %s' % parts[-1]


def _open_repo(backup, parts):
    try:
        if len(parts) == 1:
            return backup.open_file(parts[0])
        return _repository.open_regular(backup.path, list(parts))
    except _repository.RepositoryError as exc:
        raise FirmwareError('backup %s: %s' % (backup.id, exc))


def _check_copy(fd, entry, label):
    size, digest = _stream(fd, None, label)
    if size != entry['size'] or digest != entry['sha256']:
        raise FirmwareError('%s does not match its manifest (%d bytes, SHA-256 %s; the manifest says %d bytes, %s): '
                            'the repository is damaged or was tampered with; nothing was changed'
                            % (label, size, digest[:16], entry['size'], entry['sha256'][:16]))


def _existing(dest, parts, entry):
    """None when dest has no such file, True when it holds exactly entry, else why not."""
    path = os.path.join(dest, *parts)
    if len(parts) == 2 and _repository.is_link(os.path.join(dest, parts[0])):
        raise FirmwareError('%s is a symbolic link; it is not followed' % os.path.join(dest, parts[0]))
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR) and not os.path.lexists(path):
            return None
        if exc.errno == errno.ELOOP:
            raise FirmwareError('%s is a symbolic link; it is not followed' % path)
        raise FirmwareError('cannot read %s: %s' % (path, exc.strerror or exc))
    with _closing(fd):
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise FirmwareError('%s exists and is not a regular file' % path)
        try:
            size, digest = _stream(fd, None, path)
        except FirmwareError as exc:
            return str(exc)
    if (size, digest) == (entry['size'], entry['sha256']):
        return True
    return 'it holds %d bytes with SHA-256 %s, the backup %d bytes with %s' % (
        size, digest[:16], entry['size'], entry['sha256'][:16])


def _state_files(directory):
    try:
        return sorted(n for n in os.listdir(directory) if TPM_FILE.match(n))
    except OSError:
        return []


def _open_tpm_dir(dest_fd, dest):
    made = False
    try:
        os.mkdir(TPM_DIR, 0o700, dir_fd=dest_fd)
        made = True
    except FileExistsError:
        pass
    try:
        fd = os.open(TPM_DIR, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dest_fd)
    except OSError as exc:
        if made:
            _rmdir(dest_fd, TPM_DIR)
        raise FirmwareError('%s is not a directory (or is a symbolic link): %s'
                            % (os.path.join(dest, TPM_DIR), exc.strerror or exc))
    return fd, made


# ---------------------------------------------------------------------------------------------
# Installing TPM state for a new domain

def swtpm_owner(conf=None):
    """(uid, gid) libvirt runs swtpm as: qemu.conf's swtpm_user/swtpm_group, else tss when that
    user exists, else root (what libvirtd decides when it starts)."""
    settings = {}
    try:
        with open(conf or QEMU_CONF) as src:
            for line in src:
                match = re.match(r'^\s*(swtpm_user|swtpm_group)\s*=\s*"([^"]*)"', line)
                if match:
                    settings[match.group(1)] = match.group(2)
    except OSError:
        pass
    return (_lookup(settings.get('swtpm_user', 'tss'), pwd.getpwnam, lambda e: e.pw_uid),
            _lookup(settings.get('swtpm_group', 'tss'), grp.getgrnam, lambda e: e.gr_gid))


def _lookup(name, getter, field):
    if name.startswith('+') and name[1:].isdigit():
        return int(name[1:])
    try:
        return field(getter(name))
    except KeyError:
        return 0


def install_tpm_state(uuid, tpm_dir_of_restore, version, owner=None):
    """Install the restored TPM state files (regular files named like swtpm's state in
    tpm_dir_of_restore) where libvirt looks for the state of domain uuid:
    SWTPM_DIR/<uuid>/<tpm2|tpm1.2>/, directories 0711 (root) and 0700, files 0600, owned by
    swtpm's user. Refuses when that directory already holds state. -> the state directory."""
    if not _repository.UUID.match(uuid or ''):
        raise FirmwareError('%r is not a domain uuid' % (uuid,))
    if version not in TPM_VERSIONS:
        raise FirmwareError('TPM version %r is not one of %s' % (version, ', '.join(sorted(TPM_VERSIONS))))
    uid, gid = owner if owner is not None else swtpm_owner()
    base = os.path.join(SWTPM_DIR, uuid)
    target = os.path.join(base, TPM_VERSIONS[version])
    prefix = TPM_PREFIX[version]
    src_fd = os.open(tpm_dir_of_restore, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    made = []
    try:
        names = sorted(n for n in os.listdir(src_fd) if TPM_FILE.match(n) and TPM_FILE.match(n).group(1) == prefix)
        if not names:
            raise FirmwareError('%s holds no state file of a TPM %s' % (tpm_dir_of_restore, version))
        for path, mode in ((SWTPM_DIR, 0o711), (base, 0o711)):
            try:
                os.mkdir(path, mode)
                made.append(path)
            except FileExistsError:
                pass
            if _repository.is_link(path):
                raise FirmwareError('%s is a symbolic link; it is not followed' % path)
        try:
            os.mkdir(target, 0o700)
            made.append(target)
        except FileExistsError:
            if _state_files(target):
                raise FirmwareError('%s already holds TPM state; the new domain would not get the restored one'
                                    % target)
        out_fd = os.open(target, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        with _closing(out_fd):
            os.fchown(out_fd, uid, gid)
            os.fchmod(out_fd, 0o700)
            for name in names:
                src = _open_source(src_fd, name, label=os.path.join(tpm_dir_of_restore, name))
                if src is None:
                    continue
                with _closing(src):
                    _copy_new(src, out_fd, None, name, os.path.join(tpm_dir_of_restore, name))
                made.insert(0, os.path.join(target, name))
                fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=out_fd)
                with _closing(fd):
                    os.fchown(fd, uid, gid)
            os.fsync(out_fd)
        _repository.fsync_dir(base)
    except BaseException:
        for path in sorted(made, key=len, reverse=True):
            try:
                (os.rmdir if path in (SWTPM_DIR, base, target) else os.unlink)(path)
            except OSError:
                pass
        raise
    finally:
        os.close(src_fd)
    return target


def remove_tpm_state(uuid):
    """Remove SWTPM_DIR/<uuid> (what install_tpm_state made, when a later step failed)."""
    if not _repository.UUID.match(uuid or ''):
        return
    base = os.path.join(SWTPM_DIR, uuid)
    if _repository.real_dir(base):
        shutil.rmtree(base, ignore_errors=True)


# ---------------------------------------------------------------------------------------------

class _closing:
    """with _closing(fd): closes a file descriptor."""

    def __init__(self, fd):
        self.fd = fd

    def __enter__(self):
        return self.fd

    def __exit__(self, *exc):
        os.close(self.fd)


def _unlink(dir_fd, name):
    try:
        os.unlink(name, dir_fd=dir_fd)
    except FileNotFoundError:
        pass


def _rmdir(dir_fd, name):
    try:
        os.rmdir(name, dir_fd=dir_fd)
    except OSError:
        pass        # not empty: someone else's files are in it


def _remove(backup_path, made):
    for rel in reversed(made):
        path = os.path.join(backup_path, rel)
        try:
            (os.rmdir if rel == TPM_DIR else os.unlink)(path)
        except OSError:
            pass
