# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Private to the virtops.libvirt collection: may change without notice.
"""Restoring a point in time, verifying backups, and describing a repository."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import stat

try:
    import libvirt
except ImportError:  # pragma: no cover - reported by VirtModule
    libvirt = None

from ansible_collections.virtops.libvirt.plugins.module_utils._libvirt import VirtError, libvirt_call
from ansible_collections.virtops.libvirt.plugins.module_utils.xml._document import parse
from ansible_collections.virtops.libvirt.plugins.module_utils.backup import (
    _blockhash,
    _crypt,
    _firmware,
    _images,
    _nbdio,
    _repository,
    _saved_xml,
)


def _repo(path):
    return _repository.Repository(path, create=False)


def verify_point(backup, disk, chain, expected=None, own_file=False):
    """Prove that an ImageChain holds exactly what the backup recorded for disk (expected: its
    integrity map, when the caller loaded it already; own_file: the chain is the one image this
    run has just written, see _images.hash_image).

    Returns a dict: ok, message, and the offset of the first differing block when not ok.
    """
    try:
        if expected is None:
            expected = _repository.load_map(backup, disk)
        actual = _images.hash_image(chain, disk['virtual_size'], disk['integrity']['block_size'],
                                    algorithm=disk['integrity']['algorithm'], own_file=own_file)
    except (_blockhash.BlockHashError, _images.ImageError, _nbdio.NbdIoError) as exc:
        return dict(ok=False, message=str(exc))
    except Exception as exc:  # pylint: disable=broad-except
        return dict(ok=False, message='cannot read %s: %s' % (chain.label, exc))
    bad = expected.first_difference(actual)
    if bad is None:
        return dict(ok=True, message='every block matches the integrity data (%s)' % disk['image_digest'][:16])
    return dict(ok=False, first_bad_offset=bad,
                message='block at offset %d differs from what the backup recorded' % bad)


def _resolve(repo, domain, spec):
    errors = []
    try:
        _repository.check_name('domain name', domain)
        intact = repo.backups(domain, errors)
        # With an unreadable manifest, "latest", a time or an id not found may mean the damaged
        # backup: restoring another point in time instead would be silently wrong. Only an intact
        # backup named by its id is restored then.
        if errors and not (spec and _repository.BACKUP_ID.match(spec) and any(b.id == spec for b in intact)):
            raise VirtError('repository %s holds unreadable backups of domain %s: %s. Backup %r cannot be resolved '
                            'safely; name an intact backup by its id, or repair the damaged manifests (or move '
                            'their backup directories aside). Nothing was changed'
                            % (repo.path, domain, '; '.join(errors), spec or 'latest'))
        backup = repo.find(domain, spec)
        lineage = repo.lineage(backup)
    except _repository.RepositoryError as exc:
        raise VirtError('%s%s' % (exc, ' (unreadable: %s)' % '; '.join(errors) if errors else ''))
    return backup, lineage


def selected_disks(backup, domain, wanted):
    """The names of the disks of backup to restore: all, or those wanted (a list of names,
    each of which the backup must hold)."""
    names = [d['name'] for d in backup.disks]
    if wanted:
        unknown = [n for n in wanted if n not in names]
        if unknown:
            raise VirtError('backup %s of domain %s holds no disk %s (it holds: %s)' % (
                backup.id, domain, ', '.join(unknown), ', '.join(names)))
        names = [n for n in names if n in wanted]
    return names


def _check_dest(dest):
    """dest as a real path; refused when another user could change what is in it."""
    if not os.path.isabs(dest):
        raise VirtError('dest %r must be an absolute path' % dest)
    real = os.path.realpath(dest)
    if os.path.lexists(real) and not os.path.isdir(real):
        raise VirtError('dest %s exists and is not a directory' % dest)
    probe = real
    while not os.path.exists(probe):
        probe = os.path.dirname(probe)
    # The nearest existing directory: restored disks (guest data) go only where nobody else can
    # add, swap or read files.
    st = os.stat(probe)
    if st.st_uid != os.geteuid():
        problem = 'owned by uid %d' % st.st_uid
    elif st.st_mode & 0o022 and not (probe != real and st.st_mode & stat.S_ISVTX):
        problem = 'writable by group or others (mode %04o)' % stat.S_IMODE(st.st_mode)
    else:
        # A sticky directory such as /tmp is fine for a dest this run creates: nobody else can
        # remove or rename what root makes there (_make_dest checks what it finds instead).
        return real
    raise VirtError('dest %s: %s is %s; restored disks are written only into a directory that no other user can '
                    'change. Choose another dest, or create it (owned by root, not writable by group or others) '
                    'first' % (dest, probe, problem))


def _make_dest(dest, mode=0o700):
    """Create dest and its missing parents (mode), one mkdir at a time; a name that appeared meanwhile
    (planted by someone else in a sticky directory) must be a real directory of ours nobody else can
    write, or the restore stops."""
    missing = []
    path = dest
    while not os.path.lexists(path):
        missing.append(path)
        path = os.path.dirname(path)
    for path in reversed(missing):
        try:
            os.mkdir(path, mode)
            os.chmod(path, mode)        # whatever the umask
        except FileExistsError:
            st = os.lstat(path)
            if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o022:
                raise VirtError('%s appeared while the restore created it, and is not a directory of root that '
                                'nobody else can write: nothing was restored' % path)


def _open_dest(dest, mode):
    """(descriptor of dest, whether this run made it): dest is made (mode, see _make_dest) when
    it is missing."""
    made = not os.path.isdir(dest)
    if made:
        _make_dest(dest, mode)
    return os.open(dest, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC), made


def _close_failed_dest(dest_fd, dest, made):
    """After a failed run has removed what it wrote: dest's descriptor closed, and dest removed
    again when this run made it."""
    os.close(dest_fd)
    if made:
        try:
            os.rmdir(dest)      # only when empty: what this run made
        except OSError:
            pass


def _existing(dest_dir, name, fmt, backup, disk, expected):
    """Whether dest already holds disk of backup, bit-exact: True, or the reason it does not."""
    path = os.path.join(dest_dir, name)
    if _repository.real_dir(path):
        raise VirtError('%s is a directory; cannot restore disk %s there' % (path, disk['name']))
    try:
        chain = _images.open_file(path, fmt, disk['virtual_size'])
    except _images.ImageError as exc:
        return str(exc)
    with chain:
        busy = _images.in_use(chain)
        if busy:
            chain.close()
            chain = _images.open_file(path, fmt, disk['virtual_size'], locking=False)
        check = verify_point(backup, disk, chain, expected)
    if busy and not check['ok']:
        raise VirtError('%s is in use (a running domain has it open) and does not hold disk %s of backup %s; stop '
                        'that domain or choose another dest' % (path, disk['name'], backup.id))
    return True if check['ok'] else check['message']


def restore(conn_factory, params, check_mode):
    if str(params.get('repository') or '').startswith('s3://'):
        # An S3 repository: the chosen point is mirrored into a scratch directory first (_copy).
        from ansible_collections.virtops.libvirt.plugins.module_utils.backup import _copy
        return _copy.restore_from_s3(restore, conn_factory, params, check_mode)
    if params.get('mode') == 'instant':
        _refuse_encrypted(params, 'an instant restore serves the images to a domain whose QEMU would need the key; '
                          'restore it with mode: copy')
        # Imported here: _instant builds on this module's helpers.
        from ansible_collections.virtops.libvirt.plugins.module_utils.backup import _instant
        return _instant.restore(conn_factory, params, check_mode)
    if params.get('start'):
        raise VirtError('start: true is for mode instant; start a domain restored by copy with '
                        'virtops.libvirt.virt_domain')
    repo = _repo(params['repository'])
    domain = params['domain']
    backup, lineage = _resolve(repo, domain, params['backup'])
    fmt = params['format']
    names = selected_disks(backup, domain, params.get('disks'))
    dest = _check_dest(params['dest'])
    new_name = params.get('new_name')
    if params.get('define'):
        if not new_name:
            raise VirtError('define: true needs new_name, the name of the domain to define')
        _repository.check_name('new_name', new_name)

    # An encrypted point needs its key, checked against every manifest before anything is written.
    key = _crypt.load_key(params.get('encryption'), conn_factory)
    _crypt.check_lineage(lineage, key)
    # Every layer of every chain is checked (headers, sizes, integrity map) before anything is
    # written, in check mode too: a tampered repository fails here, with nothing changed.
    maps = {}
    for name in names:
        try:
            maps[name] = _repository.check_point(lineage, name, key)
        except (_images.ImageError, _blockhash.BlockHashError) as exc:
            raise VirtError('cannot restore disk %s of backup %s of domain %s: %s' % (name, backup.id, domain, exc))

    out_fmt = 'qcow2' if fmt == 'qcow2' else 'raw'
    planned = [dict(name=n, path=os.path.join(dest, '%s.%s' % (n, out_fmt))) for n in names]
    # A disk restored before and still bit-exact is left alone: a second run changes nothing.
    todo = []
    for entry in planned:
        entry['verified'] = False
        disk = backup.disk(entry['name'])
        if os.path.lexists(entry['path']):
            found = _existing(dest, os.path.basename(entry['path']), out_fmt, backup, disk, maps[entry['name']])
            if found is True:
                entry['verified'] = True
                entry['digest'] = disk['image_digest']
                continue
            if not params.get('force'):
                raise VirtError('%s exists and does not hold disk %s of backup %s (%s); remove it or set '
                                'force: true to overwrite it' % (entry['path'], entry['name'], backup.id, found))
        todo.append(entry)
    # The UEFI variable store and the TPM state of the backup, always: checked in the repository
    # (size, SHA-256) before anything is written, and left alone when dest holds them already.
    firmware = backup.manifest.get('firmware')
    try:
        fw_plan = _firmware.plan_restore(backup, firmware, dest, force=bool(params.get('force')))
    except _firmware.FirmwareError as exc:
        raise VirtError('cannot restore the firmware state of backup %s of domain %s: %s' % (backup.id, domain, exc))
    fw_changes = bool(fw_plan['todo'] or fw_plan['stale'])
    conn = None
    define = bool(params.get('define'))
    new_xml, warnings = None, []
    if define:
        conn = conn_factory()
        existing = conn.lookup_domain(new_name)
        if existing is not None:
            if _points_at(existing, dict((p['name'], p['path']) for p in planned)):
                define = False
            else:
                raise VirtError('a domain named %s exists already on %s and does not use the restored disks: '
                                'choose another new_name' % (new_name, conn.uri))
        if define:
            # Refusals come before anything is written, and check mode predicts them.
            try:
                saved = backup.read_text(_repository.DOMAIN_XML)
            except (_repository.RepositoryError, OSError, ValueError) as exc:
                raise VirtError('cannot read the domain definition saved with backup %s: %s' % (backup.id, exc))
            new_xml, warnings = _saved_xml.new_domain_xml(
                saved, new_name, dict((p['name'], p['path']) for p in planned), out_fmt,
                trust=bool(params.get('trust_saved_xml')), nvram_path=fw_plan['nvram'])

    result = dict(changed=bool(todo) or define or fw_changes, backup=backup.summary(), disks=planned,
                  nvram=fw_plan['nvram'], tpm=fw_plan['tpm'], domain=None)
    # Diff mode: the files and the domain this run makes, from the plan alone, so that check mode
    # shows exactly what a real run does.
    disk_files = dict((p['path'], (p in todo, '%s, %d bytes: disk %s of backup %s' % (
        out_fmt, backup.disk(p['name'])['virtual_size'], p['name'], backup.id))) for p in planned)
    before_files, after_files = planned_files(disk_files, backup, firmware, fw_plan, dest)
    result['diff'] = dict(
        before=dict(files=before_files, domain=new_name if params.get('define') and not define else None),
        after=dict(files=after_files, domain=new_name if params.get('define') else None))
    if warnings:
        result['warnings'] = warnings
    if check_mode:
        return result

    # A domain defined on the restored files needs QEMU's user to reach them: 0711 lets it
    # traverse, not list (the files themselves are 0600 until libvirt hands them to QEMU).
    dest_fd, created_dest = _open_dest(dest, 0o711 if params.get('define') else 0o700)
    written = []
    partials = []
    fw_done = None
    new_dom = None
    tpm_installed = None
    try:
        for entry in todo:
            disk = backup.disk(entry['name'])
            name = os.path.basename(entry['path'])
            partial = name + '.partial'
            try:
                os.unlink(partial, dir_fd=dest_fd)    # debris of an interrupted restore (never followed)
            except FileNotFoundError:
                pass
            # Private from the first byte, and never through a link planted under the name.
            fd = os.open(partial, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                         dir_fd=dest_fd)
            partials.append(partial)
            flusher = None
            try:
                # The disk is written to while convert fills the page cache and while the result
                # is read back, not after: the final fsync then has little left to wait for.
                flusher = _images.Flusher(fd)
                with _repository.open_chain(lineage, entry['name'], key) as chain:
                    _images.convert(chain, fd, os.path.join(dest, partial), out_fmt, disk['virtual_size'])
                flusher.finish()
                restored = _images.ImageChain([_images.Layer(os.dup(fd), os.path.join(dest, partial),
                                                             disk['virtual_size'])], fmt=out_fmt)
                with restored:
                    check = verify_point(backup, disk, restored, maps[entry['name']], own_file=True)
                if not check['ok']:
                    raise VirtError('restored disk %s of backup %s is not bit-exact: %s' % (
                        entry['name'], backup.id, check['message']))
                os.fchmod(fd, 0o600)
                flusher.wait()          # synced (and proven bit-exact) before the rename
                os.fsync(fd)            # the mode change too (nothing else is left to write)
            finally:
                if flusher is not None:
                    flusher.abandon()   # done already when all went well; never close fd under it
                os.close(fd)
            os.rename(partial, name, src_dir_fd=dest_fd, dst_dir_fd=dest_fd)
            partials.remove(partial)
            written.append(name)
            entry['verified'] = True
            entry['digest'] = disk['image_digest']
        if fw_changes:
            try:
                fw_done = _firmware.restore_files(backup, firmware, dest, dest_fd, force=bool(params.get('force')))
            except (_firmware.FirmwareError, OSError) as exc:
                raise VirtError('cannot restore the firmware state of backup %s of domain %s: %s'
                                % (backup.id, domain, exc))
        if define:
            with libvirt_call('defining the restored domain', new_name):
                dom = conn.conn.defineXML(new_xml)
            new_dom = dom
            if fw_plan['tpm']:
                tpm_installed = _install_tpm(dom, firmware['tpm'], fw_plan['tpm'], result)
            result['domain'] = dict(name=new_name, uuid=dom.UUIDString(), xml=dom.XMLDesc(0))
        elif params.get('define'):
            dom = conn.lookup_domain(new_name)
            result['domain'] = dict(name=new_name, uuid=dom.UUIDString(), xml=dom.XMLDesc(0))
    except BaseException:
        if new_dom is not None:
            _undefine(new_dom, tpm_installed)
        if fw_done is not None:
            _firmware.undo(dest_fd, fw_done)
        for name in written + partials:
            try:
                os.unlink(name, dir_fd=dest_fd)
            except OSError:
                pass
        _close_failed_dest(dest_fd, dest, created_dest)
        dest_fd = None
        raise
    finally:
        if dest_fd is not None:
            os.close(dest_fd)
    return result


def planned_files(disk_files, backup, firmware, fw_plan, dest):
    """(before, after) of the files a restore writes into dest, {path: what it holds}, for diff mode.

    disk_files: {path: (written by this run, what it holds then)}. A file this run overwrites
    (force) shows its size before; firmware files come from the plan of _firmware."""
    wanted = dict(disk_files)
    for parts, entry in _firmware._entries(firmware or {}):  # pylint: disable=protected-access
        rel = os.path.join(*parts)
        what = 'UEFI variable store' if parts[0] == _firmware.NVRAM_FILE else 'TPM state file'
        wanted[os.path.join(dest, rel)] = (rel in fw_plan['todo'], '%s, %d bytes of backup %s' % (
            what, entry['size'], backup.id))
    before, after = {}, {}
    for path, (written, what) in wanted.items():
        after[path] = what
        if not written:
            before[path] = what
        elif os.path.lexists(path):
            before[path] = '%d bytes, not this backup\'s data' % os.lstat(path).st_size
    for name in fw_plan.get('stale') or ():
        path = os.path.join(dest, _firmware.TPM_DIR, name)
        before[path] = '%d bytes, not in backup %s' % (os.lstat(path).st_size, backup.id)
    return before, after


def _install_tpm(dom, saved, restored_dir, result):
    """The restored TPM state where libvirt looks for it for the new domain's uuid; the state
    directory, or None (with a warning) when the new definition has no matching emulated TPM."""
    uuid = dom.UUIDString()
    wanted = _firmware.firmware_state(dom.XMLDesc(0), uuid)['tpm']
    if wanted is None or wanted['version'] != saved['version']:
        result.setdefault('warnings', []).append(
            'the backup holds the state of a TPM %s, but the new domain has %s: its TPM state was not installed '
            '(it is in %s)' % (saved['version'], 'a TPM %s' % wanted['version'] if wanted else 'no emulated TPM',
                               restored_dir))
        return None
    try:
        return _firmware.install_tpm_state(uuid, restored_dir, saved['version'])
    except (_firmware.FirmwareError, OSError) as exc:
        _firmware.remove_tpm_state(uuid)
        raise VirtError('cannot install the TPM state of the restored domain %s: %s' % (dom.name(), exc))


def _undefine(dom, tpm_installed):
    """Undo a define of this run: the domain, and the TPM state installed for it. The restored
    variable store is removed with the other restored files, not by libvirt."""
    uuid = dom.UUIDString()
    try:
        # KEEP_NVRAM: libvirt refuses to undefine a domain whose store exists without a choice.
        dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_KEEP_NVRAM)
    except libvirt.libvirtError:
        pass        # the error being raised says what went wrong first
    if tpm_installed:
        _firmware.remove_tpm_state(uuid)


def _points_at(dom, disk_paths):
    root = parse(dom.XMLDesc(0), 'the definition of domain %s' % dom.name())
    found = {}
    for elem in root.findall('./devices/disk'):
        target, source = elem.find('target'), elem.find('source')
        if target is not None and source is not None:
            found[target.get('dev')] = source.get('file')
    return all(found.get(name) == path for name, path in disk_paths.items())


def describe(params, conn_factory=None):
    """virt_backup_info: every domain, chain and backup; with verify, each point checked.
    conn_factory: the libvirt connection, for a key in a libvirt secret (encryption.secret)."""
    if str(params.get('repository') or '').startswith('s3://'):
        from ansible_collections.virtops.libvirt.plugins.module_utils.backup import _copy
        return _copy.describe_s3(describe, params)
    key = None
    if params.get('verify'):
        key = _crypt.load_key(params.get('encryption'), conn_factory or _no_connection)
    repo = _repo(params['repository'])
    wanted = params.get('domain')
    domains = []
    names = [_repository.check_name('domain name', wanted)] if wanted else repo.domains()
    for name in names:
        errors = []
        try:
            backups = repo.backups(name, errors)
        except _repository.RepositoryError as exc:
            backups = []
            errors.append(str(exc))
        if params.get('verify'):
            # Every encrypted backup's key is checked before any is verified: without the right
            # key, verify fails as a whole, clearly, instead of backup by backup.
            for backup in backups:
                _crypt.check_key(backup.id, backup.manifest.get('encryption'), key)
        chains = {}
        for backup in backups:
            entry = backup.summary()
            if params.get('verify'):
                entry['verify'] = _verify_backup(repo, backup, key)
            chains.setdefault(backup.chain, []).append(entry)
        domains.append(dict(
            name=name,
            chains=[dict(id=cid, backups=items, size=sum(b['size'] for b in items))
                    for cid, items in sorted(chains.items(), key=lambda kv: kv[1][0]['time'])],
            errors=errors,
        ))
    result = dict(changed=False, repository=dict(path=repo.path, id=repo.id,
                                                 format_version=repo.info['format_version']),
                  domains=domains)
    if params.get('verify'):
        # A backup whose manifest cannot be read is not verified either.
        result['verified_ok'] = all(b['verify']['ok'] for d in domains for c in d['chains'] for b in c['backups']) \
            and not any(d['errors'] for d in domains)
    return result


def _refuse_encrypted(params, why):
    """Fail before anything is done when the chosen point is encrypted and this path cannot take a key."""
    repo = _repo(params['repository'])
    lineage = _resolve(repo, params['domain'], params.get('backup') or 'latest')[1]
    for item in lineage:
        if item.manifest.get('encryption'):
            raise VirtError('backup %s is encrypted: %s' % (item.id, why))


def _no_connection():
    raise VirtError('encryption.secret needs a libvirt connection, which this repository is read without; '
                    'give encryption.key_file')


def _verify_backup(repo, backup, key=None):
    """Every disk of one backup: its chain as the manifests describe it, qemu-img check of its own
    image, and the integrity data. Any problem is a failed check with its reason, never an error."""
    disks = []
    try:
        lineage = repo.lineage(backup)
    except _repository.RepositoryError as exc:
        return dict(ok=False, message=str(exc), disks=[])
    for disk in backup.disks:
        image = backup.image(disk)
        entry = dict(name=disk['name'], image=image, ok=False)
        try:
            with _repository.open_chain(lineage, disk['name'], key) as chain:
                ok, message = _images.check(chain)
                entry.update(qemu_img_check=message, ok=ok)
                if ok:
                    point = verify_point(backup, disk, chain)
                    entry.update(ok=point['ok'], integrity=point['message'])
                    message = point['message']
        except (_images.ImageError, _blockhash.BlockHashError, _nbdio.NbdIoError, OSError) as exc:
            message = str(exc)
        if not entry['ok']:
            entry['message'] = message
        disks.append(entry)
    firmware = _firmware.verify(backup, backup.manifest.get('firmware'))
    result = dict(ok=all(d['ok'] for d in disks) and all(f['ok'] for f in firmware), disks=disks)
    if firmware:
        result['firmware'] = firmware
    return result
