# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Private to the virtops.libvirt collection: may change without notice.
"""Restoring a point in time, verifying backups, and describing a repository."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

try:
    from lxml import etree
except ImportError:  # pragma: no cover - the modules report missing lxml
    etree = None

from ansible_collections.virtops.libvirt.plugins.module_utils._libvirt import VirtError, libvirt_call
from ansible_collections.virtops.libvirt.plugins.module_utils.backup import (
    _blockhash,
    _images,
    _repository,
)


def _repo(path):
    try:
        return _repository.Repository(path, create=False)
    except _repository.RepositoryError as exc:
        raise VirtError(str(exc))


def expected_map(backup, disk):
    integrity = disk['integrity']
    return _blockhash.BlockHashMap.load(os.path.join(backup.path, integrity['map']), disk['virtual_size'],
                                        integrity['block_size'], disk['image_digest'])


def verify_point(repo, backup, disk, image=None, fmt='qcow2', force_share=False):
    """Prove that image (default: the backup's own chain) holds exactly what the backup recorded.

    Returns a dict: ok, message, and the offset of the first differing block when not ok.
    """
    image = image or backup.image(disk)
    try:
        expected = expected_map(backup, disk)
        actual = _images.hash_image(image, disk['virtual_size'], disk['integrity']['block_size'], fmt=fmt,
                                    force_share=force_share)
    except (_blockhash.BlockHashError, _images.ImageError) as exc:
        return dict(ok=False, message=str(exc))
    except Exception as exc:  # pylint: disable=broad-except
        return dict(ok=False, message='cannot read %s: %s' % (image, exc))
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
        repo.lineage(backup)
    except _repository.RepositoryError as exc:
        raise VirtError('%s%s' % (exc, ' (unreadable: %s)' % '; '.join(errors) if errors else ''))
    return backup


def restore(conn_factory, params, check_mode):
    repo = _repo(params['repository'])
    domain = params['domain']
    backup = _resolve(repo, domain, params['backup'])
    fmt = params['format']
    wanted = params.get('disks')
    names = [d['name'] for d in backup.disks]
    if wanted:
        unknown = [n for n in wanted if n not in names]
        if unknown:
            raise VirtError('backup %s of domain %s holds no disk %s (it holds: %s)' % (
                backup.id, domain, ', '.join(unknown), ', '.join(names)))
        names = [n for n in names if n in wanted]
    dest = params['dest']
    if not os.path.isabs(dest):
        raise VirtError('dest %r must be an absolute path' % dest)
    if os.path.exists(dest) and not os.path.isdir(dest):
        raise VirtError('dest %s exists and is not a directory' % dest)
    new_name = params.get('new_name')
    if params.get('define'):
        if not new_name:
            raise VirtError('define: true needs new_name, the name of the domain to define')
        try:
            _repository.check_name('new_name', new_name)
        except _repository.RepositoryError as exc:
            raise VirtError(str(exc))

    out_fmt = 'qcow2' if fmt == 'qcow2' else 'raw'
    planned = [dict(name=n, path=os.path.join(dest, '%s.%s' % (n, out_fmt))) for n in names]
    # A disk restored before and still bit-exact is left alone: a second run changes nothing.
    todo = []
    for entry in planned:
        entry['verified'] = False
        if os.path.isdir(entry['path']):
            raise VirtError('%s is a directory; cannot restore disk %s there' % (entry['path'], entry['name']))
        if os.path.exists(entry['path']):
            busy = _images.in_use(entry['path'])
            check = verify_point(repo, backup, backup.disk(entry['name']), image=entry['path'],
                                 fmt=out_fmt, force_share=busy)
            if busy and not check['ok']:
                raise VirtError('%s is in use (a running domain has it open) and does not hold disk %s of '
                                'backup %s; stop that domain or choose another dest' % (
                                    entry['path'], entry['name'], backup.id))
            if check['ok']:
                entry['verified'] = True
                entry['digest'] = backup.disk(entry['name'])['image_digest']
                continue
            if not params.get('force'):
                raise VirtError('%s exists and does not hold disk %s of backup %s (%s); remove it or set '
                                'force: true to overwrite it' % (entry['path'], entry['name'], backup.id,
                                                                 check['message']))
        todo.append(entry)
    conn = None
    define = bool(params.get('define'))
    if define:
        conn = conn_factory()
        existing = conn.lookup_domain(new_name)
        if existing is not None:
            if _points_at(existing, dict((p['name'], p['path']) for p in planned)):
                define = False
            else:
                raise VirtError('a domain named %s exists already on %s and does not use the restored disks: '
                                'choose another new_name' % (new_name, conn.uri))

    result = dict(changed=bool(todo) or define, backup=backup.summary(), disks=planned, domain=None)
    if check_mode:
        return result

    created_dest = not os.path.isdir(dest)
    if created_dest:
        os.makedirs(dest, 0o700)
    written = []
    try:
        for entry in todo:
            disk = backup.disk(entry['name'])
            tmp = entry['path'] + '.partial'
            _images.convert(backup.image(disk), tmp, out_fmt)
            check = verify_point(repo, backup, disk, image=tmp, fmt=out_fmt)
            if not check['ok']:
                raise VirtError('restored disk %s of backup %s is not bit-exact: %s' % (
                    entry['name'], backup.id, check['message']))
            os.chmod(tmp, 0o600)
            os.rename(tmp, entry['path'])
            written.append(entry['path'])
            entry['verified'] = True
            entry['digest'] = disk['image_digest']
        if define:
            result['domain'] = _define(conn, backup, new_name, planned, out_fmt)
        elif params.get('define'):
            dom = conn.lookup_domain(new_name)
            result['domain'] = dict(name=new_name, uuid=dom.UUIDString(), xml=dom.XMLDesc(0))
    except BaseException:
        for path in written:
            try:
                os.unlink(path)
            except OSError:
                pass
        for entry in todo:
            try:
                os.unlink(entry['path'] + '.partial')
            except OSError:
                pass
        if created_dest:
            try:
                os.rmdir(dest)      # only when empty: what this run made
            except OSError:
                pass
        raise
    return result


def _points_at(dom, disk_paths):
    root = etree.fromstring(dom.XMLDesc(0).encode('utf-8'))
    found = {}
    for elem in root.findall('./devices/disk'):
        target, source = elem.find('target'), elem.find('source')
        if target is not None and source is not None:
            found[target.get('dev')] = source.get('file')
    return all(found.get(name) == path for name, path in disk_paths.items())


def new_domain_xml(saved_xml, new_name, disk_paths, fmt):
    """The saved definition as a new domain: new name, no uuid, no MACs, its own UEFI variable store,
    disks on the restored images."""
    root = etree.fromstring(saved_xml.encode('utf-8'))
    root.find('name').text = new_name
    for tag in ('uuid',):
        elem = root.find(tag)
        if elem is not None:
            root.remove(elem)
    for mac in root.findall('./devices/interface/mac'):
        mac.getparent().remove(mac)
    # The UEFI variable store is per domain: the original's path would be shared (and deleted by
    # `undefine --nvram` of either). Without a path, libvirt makes <new name>_VARS.fd from the template.
    for nvram in root.findall('./os/nvram'):
        nvram.text = None
        for child in list(nvram):
            nvram.remove(child)
        nvram.attrib.pop('type', None)
    for elem in root.findall('./devices/disk'):
        target = elem.find('target')
        name = target.get('dev') if target is not None else None
        if name in disk_paths:
            elem.set('type', 'file')
            for child in elem.findall('source') + elem.findall('backingStore'):
                elem.remove(child)
            source = etree.Element('source', file=disk_paths[name])
            driver = elem.find('driver')
            if driver is None:
                driver = etree.SubElement(elem, 'driver', name='qemu')
            driver.set('type', fmt)
            driver.addnext(source)
        elif elem.get('device', 'disk') in ('disk', 'lun'):
            # A disk that was not backed up would point at the original domain's storage.
            elem.getparent().remove(elem)
    return etree.tostring(root, encoding='unicode')


def _define(conn, backup, new_name, planned, fmt):
    xml = new_domain_xml(backup.read_text('domain.xml'), new_name, dict((p['name'], p['path']) for p in planned),
                         fmt)
    with libvirt_call('defining the restored domain', new_name):
        dom = conn.conn.defineXML(xml)
    return dict(name=new_name, uuid=dom.UUIDString(), xml=dom.XMLDesc(0))


def describe(params):
    """virt_backup_info: every domain, chain and backup; with verify, each point checked."""
    repo = _repo(params['repository'])
    wanted = params.get('domain')
    domains = []
    try:
        names = [_repository.check_name('domain name', wanted)] if wanted else repo.domains()
    except _repository.RepositoryError as exc:
        raise VirtError(str(exc))
    for name in names:
        errors = []
        try:
            backups = repo.backups(name, errors)
        except _repository.RepositoryError as exc:
            raise VirtError(str(exc))
        chains = {}
        for backup in backups:
            entry = backup.summary()
            if params.get('verify'):
                entry['verify'] = _verify_backup(repo, backup)
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


def _verify_backup(repo, backup):
    disks = []
    for disk in backup.disks:
        image = backup.image(disk)
        ok, message = _images.check(image)
        entry = dict(name=disk['name'], image=image, qemu_img_check=message, ok=ok)
        if ok:
            point = verify_point(repo, backup, disk)
            entry.update(ok=point['ok'], integrity=point['message'])
        disks.append(entry)
    return dict(ok=all(d['ok'] for d in disks), disks=disks)
