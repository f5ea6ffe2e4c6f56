# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Private to the virtops.libvirt collection: may change without notice.
"""Instant recovery: a new domain that runs from a backup point at once (virt_restore mode instant).

Each disk of the new domain is a new, empty qcow2 overlay in dest; all guest writes go there. Below
it, read-only, is the point in time itself, served by a qemu-storage-daemon of this collection
(_export: the chain opened by descriptor as the manifests describe it, headers checked, every
backing explicit) on a unix socket that only root and QEMU's group can reach. The domain XML gives
each disk's backing chain in full: the overlay, then an NBD <backingStore> on that socket, then an
empty <backingStore/>. libvirt 9.0 (with -blockdev) uses such a user-given chain as it stands and
probes nothing: QEMU gets the NBD node as the overlay's explicit backing, never a name from an
image header, and never a repository path. The repository stays root's and unwritable by QEMU;
libvirt relabels only the overlay.

The daemon outlives the module. It ends when a later run finds that no disk of the domain needs
it any more (after a block copy with pivot, see virt_blockjob), or with virt_backup_export
state=absent; it does not survive a reboot of the host (its state lives in /run): running the same
virt_restore task again serves the point again before the domain starts.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import stat

try:
    import libvirt
except ImportError:  # pragma: no cover - reported by VirtModule
    libvirt = None

from ansible_collections.virtops.libvirt.plugins.module_utils._libvirt import VirtError, libvirt_call
from ansible_collections.virtops.libvirt.plugins.module_utils.xml._document import etree, parse
from ansible_collections.virtops.libvirt.plugins.module_utils.backup import (
    _export,
    _firmware,
    _images,
    _job,
    _repository,
    _restore,
    _saved_xml,
)

METADATA_NS = 'https://virtops.dev/libvirt/instant-restore/1'
EXPORT_PREFIX = 'instant-'


def export_name(new_name):
    return EXPORT_PREFIX + new_name


def restore(conn_factory, params, check_mode):
    repo = _restore._repo(params['repository'])
    domain = params['domain']
    backup, lineage = _restore._resolve(repo, domain, params['backup'])
    if params.get('format') not in (None, 'qcow2'):
        raise VirtError('mode instant writes qcow2 overlays; format %s is for mode copy' % params['format'])
    new_name = params.get('new_name')
    if not new_name:
        raise VirtError('mode instant needs new_name, the name of the domain it defines')
    _repository.check_name('new_name', new_name)
    name = _export.check_export_name(export_name(new_name))
    names = _restore.selected_disks(backup, domain, params.get('disks'))
    dest = _restore._check_dest(params['dest'])
    _check_reachable(dest)
    # Every layer's header is checked against the manifests before anything is made (check mode
    # too). The data itself is not read ahead: that is what makes this instant.
    try:
        _export.image_check(lineage, names)
    except _export.ExportError as exc:
        raise VirtError('%s. Nothing was changed' % exc)

    conn = conn_factory()
    owner = _job.qemu_owner('<domain/>')
    spec = _export.desired(name, repo, backup, names, qemu_group=owner[1] if owner else None)
    spec['used_by'] = new_name
    overlays = dict((n, os.path.join(dest, '%s.qcow2' % n)) for n in names)
    before = _export.current(name)
    existing = conn.lookup_domain(new_name)
    result = dict(changed=False, backup=backup.summary(), mode='instant', domain=None, nvram=None, tpm=None,
                  disks=[dict(name=n, path=overlays[n], verified=False, backing=_uri(spec, n)) for n in names])
    if existing is not None:
        return _adopt(existing, spec, before, lineage, overlays, params, check_mode, result)

    for path in overlays.values():
        if os.path.lexists(path) and not params.get('force'):
            raise VirtError('%s exists, and no domain %s uses it; remove it or set force: true to overwrite it'
                            % (path, new_name))
    firmware = backup.manifest.get('firmware')
    try:
        fw_plan = _firmware.plan_restore(backup, firmware, dest, force=bool(params.get('force')))
    except _firmware.FirmwareError as exc:
        raise VirtError('cannot restore the firmware state of backup %s of domain %s: %s' % (backup.id, domain, exc))
    try:
        saved = backup.read_text(_repository.DOMAIN_XML)
    except (_repository.RepositoryError, OSError, ValueError) as exc:
        raise VirtError('cannot read the domain definition saved with backup %s: %s' % (backup.id, exc))
    new_xml, warnings = _saved_xml.new_domain_xml(saved, new_name, overlays, 'qcow2',
                                                  trust=bool(params.get('trust_saved_xml')), nvram_path=fw_plan['nvram'])
    new_xml = _with_backing(new_xml, spec, backup)
    result.update(changed=True, nvram=fw_plan['nvram'], tpm=fw_plan['tpm'],
                  export=_export.public(spec, before if before and before.get('alive') else None))
    before_files, after_files = _restore.planned_files(
        dict((path, (True, _overlay_label(spec, n))) for n, path in overlays.items()),
        backup, firmware, fw_plan, dest)
    result['diff'] = dict(
        before=dict(files=before_files, export=_export_label(before), domain=None),
        after=dict(files=after_files, export=_export_label(spec),
                   domain=dict(name=new_name, state='running' if params.get('start') else 'shutoff')))
    if warnings:
        result['warnings'] = warnings
    if check_mode:
        return result

    dest_fd, created_dest = _restore._open_dest(dest, 0o711)
    made, fw_done, new_dom, tpm_installed, state = [], None, None, None, None
    try:
        state = _serve(spec, before, lineage)
        for disk_name, path in overlays.items():
            _create_overlay(dest_fd, os.path.basename(path), path, spec, backup.disk(disk_name), made)
        if fw_plan['todo'] or fw_plan['stale']:
            fw_done = _firmware.restore_files(backup, firmware, dest, dest_fd, force=bool(params.get('force')))
        with libvirt_call('defining the instantly restored domain', new_name):
            new_dom = conn.conn.defineXML(new_xml)
        if fw_plan['tpm']:
            tpm_installed = _restore._install_tpm(new_dom, firmware['tpm'], fw_plan['tpm'], result)
        if params.get('start'):
            with libvirt_call('starting the instantly restored domain', new_name):
                new_dom.create()
        result['export'] = _export.public(spec, state)
        result['domain'] = _describe(new_dom)
    except BaseException as exc:
        if new_dom is not None:
            try:
                if new_dom.isActive():
                    new_dom.destroy()
            except libvirt.libvirtError:
                pass
            _restore._undefine(new_dom, tpm_installed)
        if fw_done is not None:
            _firmware.undo(dest_fd, fw_done)
        for entry in made:
            try:
                os.unlink(entry, dir_fd=dest_fd)
            except OSError:
                pass
        if state is not None:
            _export.stop(name)
        _restore._close_failed_dest(dest_fd, dest, created_dest)
        dest_fd = None
        if isinstance(exc, (_export.ExportError, _images.ImageError, _firmware.FirmwareError, OSError)):
            raise VirtError('instant restore of backup %s of domain %s as %s failed, and was undone: %s'
                            % (backup.id, domain, new_name, exc))
        raise
    finally:
        if dest_fd is not None:
            os.close(dest_fd)
    return result


def _check_reachable(dest):
    """QEMU's user opens the overlays by path: every existing directory down to dest must let
    others traverse it (libvirt labels the overlay files, not their directories)."""
    path = dest
    while True:
        if os.path.isdir(path):
            if not os.stat(path).st_mode & stat.S_IXOTH:
                raise VirtError('QEMU cannot reach the overlays in %s: %s does not let others traverse it (give it '
                                'mode 0711, or choose another dest); nothing was changed' % (dest, path))
        parent = os.path.dirname(path)
        if parent == path:
            return
        path = parent


def _overlay_label(spec, disk_name):
    return 'qcow2 overlay on %s' % _uri(spec, disk_name)


def _export_label(state):
    """What an export serves, for diff mode; None when there is none."""
    if state is None:
        return None
    return '%s: backup %s of domain %s from %s%s' % (
        state.get('name'), state.get('backup'), state.get('domain'), state.get('repository'),
        '' if state.get('alive', True) else ' (its daemon is gone)')


def _uri(spec, disk_name):
    return 'nbd+unix:///%s?socket=%s' % (disk_name, spec['socket'])


def _nbd_backing(spec, disk_name):
    """The NBD export of a disk as a blockdev description (the overlay's header backing)."""
    return {'driver': 'raw', 'file': {'driver': 'nbd', 'export': disk_name,
                                      'server': {'type': 'unix', 'path': spec['socket']}}}


def _create_overlay(dest_fd, name, path, spec, disk, made):
    try:
        os.unlink(name, dir_fd=dest_fd)     # only reached with force (or debris of this run)
    except FileNotFoundError:
        pass
    fd = os.open(name, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dest_fd)
    made.append(name)
    try:
        # The header names the export too, so that qemu-img info shows what the overlay is; the
        # domain gets its backing from the XML, never from this header.
        backing = 'json:' + json.dumps(_nbd_backing(spec, disk['name']), sort_keys=True)
        _images.run_qemu_img(['create', '-q', '-f', 'qcow2', '-u', '-b', backing, '-F', 'raw', '--',
                              _images.fd_path(fd), str(disk['virtual_size'])],
                             'creating overlay %s' % path, pass_fds=[fd])
        os.fsync(fd)
    finally:
        os.close(fd)


def _with_backing(xml, spec, backup):
    """Each restored disk's full chain in the XML (overlay, NBD export, end), and a note saying which
    backup the domain runs from."""
    root = parse(xml, 'the new definition')
    for elem in root.findall('./devices/disk'):
        target = elem.find('target')
        disk_name = target.get('dev') if target is not None else None
        if disk_name not in [d['name'] for d in spec['disks']]:
            continue
        store = etree.Element('backingStore', type='network')
        etree.SubElement(store, 'format', type='raw')
        source = etree.SubElement(store, 'source', protocol='nbd', name=disk_name)
        etree.SubElement(source, 'host', transport='unix', socket=spec['socket'])
        etree.SubElement(store, 'backingStore')
        elem.find('source').addnext(store)
    metadata = root.find('metadata')
    if metadata is None:
        metadata = etree.Element('metadata')
        root.find('name').addnext(metadata)
    for old in metadata.findall('{%s}restore' % METADATA_NS):
        metadata.remove(old)
    etree.SubElement(metadata, '{%s}restore' % METADATA_NS, nsmap={'virtops': METADATA_NS},
                     repository=spec['repository'], repository_id=spec['repository_id'], domain=spec['domain'],
                     backup=backup.id, export=spec['name'])
    return etree.tostring(root, encoding='unicode', pretty_print=True)


def _marker(dom):
    root = parse(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE), 'the definition of domain %s' % dom.name())
    found = root.find('./metadata/{%s}restore' % METADATA_NS)
    return dict(found.attrib) if found is not None else None


def _dependent_disks(dom, socket):
    """Target names of the disks of dom (live and persistent definitions) backed by the export."""
    found = set()
    flags = [libvirt.VIR_DOMAIN_XML_INACTIVE] + ([0] if dom.isActive() else [])
    for flag in flags:
        root = parse(dom.XMLDesc(flag), 'the definition of domain %s' % dom.name())
        for elem in root.findall('./devices/disk'):
            for host in elem.iter('host'):
                if host.get('socket') == socket:
                    found.add(elem.find('target').get('dev'))
    return sorted(found)


def _serve(spec, before, lineage):
    if before is not None and before.get('alive') and _export.same(spec, before):
        return before
    if before is not None:
        _export.stop(spec['name'])
    return _export.start(spec, lineage)


def _adopt(dom, spec, before, lineage, overlays, params, check_mode, result):
    """A later run: the domain exists. If it is this instant restore, serve the point again while a
    disk still needs it (after a host reboot), stop serving it once none does (after a pivot),
    and start the domain if asked."""
    marker = _marker(dom)
    new_name = dom.name()
    if not marker or marker.get('export') != spec['name'] or marker.get('backup') != spec['backup'] \
            or marker.get('repository') != spec['repository']:
        hint = ''
        if marker and marker.get('export') == spec['name'] and marker.get('repository') == spec['repository'] \
                and marker.get('domain') == spec['domain'] and marker.get('backup'):
            # The same restore, asked for another point: typically backup=latest after a newer backup.
            hint = (' (it runs from backup %s: give backup: %s to manage it; backup: %s names backup %s now)'
                    % (marker['backup'], marker['backup'], params.get('backup'), spec['backup']))
        raise VirtError('a domain named %s exists already and is not an instant restore of backup %s of domain %s '
                        'from %s%s: choose another new_name' % (new_name, spec['backup'], spec['domain'],
                                                                spec['repository'], hint))
    needing = _dependent_disks(dom, spec['socket'])
    alive = before is not None and before.get('alive') and _export.same(spec, before)
    # Diff mode: this run makes no files; it serves the point, stops serving it, or starts the domain.
    overlay_files = dict((p, _overlay_label(spec, n)) for n, p in overlays.items() if os.path.isfile(p))
    state_before = 'running' if dom.isActive() else 'shutoff'
    result['diff'] = dict(
        before=dict(files=overlay_files, export=_export_label(before), domain=dict(name=new_name, state=state_before)),
        after=dict(files=dict(overlay_files), export=_export_label(spec) if needing else None,
                   domain=dict(name=new_name, state='running' if params.get('start') else state_before)))
    result['domain'] = _describe(dom)
    result['disks'] = [d for d in result['disks'] if d['name'] in needing] if needing else []
    if needing:
        missing = [p for n, p in overlays.items() if n in needing and not os.path.isfile(p)]
        if missing:
            raise VirtError('domain %s runs from overlays that are gone (%s): it cannot be repaired by this module'
                            % (new_name, ', '.join(missing)))
        if not alive:
            result['changed'] = True
            if dom.isActive():
                # QEMU does not reconnect to a backing NBD server (libvirt 9.0 drops <reconnect> in a
                # backingStore): the new daemon serves the point, but this QEMU's reads keep failing.
                result.setdefault('warnings', []).append(
                    'domain %s was running while the daemon serving its backup point was gone: its reads of '
                    'disks %s failed and keep failing until it is shut down and started again (this task '
                    'with start: true starts it)' % (new_name, ', '.join(sorted(needing))))
            if not check_mode:
                before = _serve(spec, before, lineage)
        result['export'] = _export.public(spec, before if not check_mode or alive else None)
    elif before is not None:
        # Every disk moved off the backup (block copy with pivot): the export is no longer needed.
        result['changed'] = True
        result['export'] = None
        result['export_stopped'] = spec['name']
        if not check_mode:
            _export.stop(spec['name'])
    else:
        result['export'] = None
    if params.get('start') and not dom.isActive():
        result['changed'] = True
        if check_mode:
            result['domain']['state'] = 'running'     # what the run would return
        else:
            with libvirt_call('starting the instantly restored domain', new_name):
                dom.create()
            result['domain'] = _describe(dom)
    return result


def _describe(dom):
    return dict(name=dom.name(), uuid=dom.UUIDString(), xml=dom.XMLDesc(0),
                state='running' if dom.isActive() else 'shutoff')
