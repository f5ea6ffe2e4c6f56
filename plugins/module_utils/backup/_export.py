# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Private to the virtops.libvirt collection: may change without notice.
"""Serving one backup point read-only over NBD, in a process that outlives the module.

One qemu-storage-daemon per served point: every disk of the point is one export of its NBD server,
named after the disk. The chains are opened here, as the manifests describe them
(_repository.open_chain: no link followed, every header checked against the manifest), and given
to the daemon as /dev/fd/N in a blockdev description with every backing explicit and every node
read-only; the daemon never opens a repository path and never follows a backing name from an image
header. It keeps those descriptors, so moving the repository later does not disturb it.

Each served point has a state directory EXPORT_ROOT/<name>/ (root's, 0700; 0710 with QEMU's group
for an instant restore, whose QEMU connects to the socket): state.json (what is served, the
daemon's pid and start time), qsd.pid, and the unix socket. A later run finds the daemon again by
that state and checks, through /proc, that the pid still is that daemon before it signals it.

Facts this code relies on (qemu-storage-daemon 7.2): --daemonize returns once the exports listen
(or with the error); --blockdev, --nbd-server, --export and --object take JSON; an export with
writable false refuses every write; the daemon ends on SIGTERM.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import re
import shutil
import signal
import stat
import subprocess
import time

from ansible_collections.virtops.libvirt.plugins.module_utils._errors import VirtError
from ansible_collections.virtops.libvirt.plugins.module_utils.backup import _images, _repository

EXPORT_ROOT = '/run/virtops-libvirt/exports'
STATE = 'state.json'
PID_FILE = 'qsd.pid'
SOCKET = 'nbd.sock'
NAME = re.compile(r'^[A-Za-z0-9_][A-Za-z0-9_.+@-]{0,99}$')
STATE_VERSION = 1
# The files qemu-storage-daemon needs in tls_dir for a server (tls-creds-x509, endpoint server).
TLS_FILES = ('ca-cert.pem', 'server-cert.pem', 'server-key.pem')


class ExportError(VirtError):
    pass


def check_export_name(name):
    if not isinstance(name, str) or not NAME.match(name):
        raise ExportError('export name %r: use letters, digits and _.+@- (not first), at most 100 characters'
                          % (name,))
    return name


def state_dir(name):
    return os.path.join(EXPORT_ROOT, check_export_name(name))


def socket_path(name):
    return os.path.join(state_dir(name), SOCKET)


def desired(name, repo, backup, disks, transport='unix', bind_address=None, port=None, tls_dir=None,
            qemu_group=None):
    """What serving disks (names) of backup means: a dict compared with the state of a running
    daemon (only these keys), and returned to the user."""
    check_export_name(name)
    spec = dict(name=name, repository=repo.path, repository_id=repo.id, domain=backup.manifest['domain'],
                backup=backup.id, chain=backup.chain, transport=transport,
                disks=[dict(name=n, export=n, virtual_size=backup.disk(n)['virtual_size'],
                            digest=backup.disk(n)['image_digest']) for n in disks])
    if transport == 'unix':
        spec['socket'] = socket_path(name)
        spec['qemu_group'] = qemu_group
    else:
        if not tls_dir:
            raise ExportError('transport tcp needs tls_dir: an NBD export over the network is served with TLS only')
        spec.update(bind_address=bind_address, port=port, tls_dir=os.path.realpath(tls_dir))
    return spec


PUBLIC = ('name', 'repository', 'domain', 'backup', 'chain', 'transport', 'socket', 'bind_address', 'port',
          'tls_dir', 'used_by')
COMPARED = ('repository', 'repository_id', 'domain', 'backup', 'chain', 'transport', 'disks', 'socket',
            'qemu_group', 'bind_address', 'port', 'tls_dir')


def same(spec, state):
    return state is not None and all(spec.get(k) == state.get(k) for k in COMPARED)


def connect_info(spec):
    """How a client connects: a URI per disk."""
    out = []
    for disk in spec['disks']:
        if spec['transport'] == 'unix':
            uri = 'nbd+unix:///%s?socket=%s' % (disk['export'], spec['socket'])
        else:
            host = spec['bind_address']
            if ':' in host:
                host = '[%s]' % host
            uri = 'nbds://%s:%d/%s' % (host, spec['port'], disk['export'])
        out.append(dict(disk, uri=uri))
    return out


def public(spec, state=None):
    """The served point as the modules return it."""
    result = dict((k, v) for k, v in spec.items() if k in PUBLIC and v is not None)
    result['disks'] = connect_info(spec)
    if state is not None:
        result['pid'] = state.get('pid')
        result['started'] = state.get('started')
    return result


# -- finding a daemon again -------------------------------------------------------------------------

def _proc_start(pid):
    """The start time of process pid (clock ticks after boot) and whether it is a zombie; None if gone."""
    try:
        with open('/proc/%d/stat' % pid, 'rb') as src:
            text = src.read().decode('utf-8', 'replace')
    except OSError:
        return None
    fields = text[text.rfind(')') + 2:].split()
    if fields[0] == 'Z':
        return None
    return int(fields[19])


def _is_our_daemon(pid, start, directory):
    if not isinstance(pid, int) or pid <= 1 or _proc_start(pid) != start:
        return False
    try:
        with open('/proc/%d/cmdline' % pid, 'rb') as src:
            argv = src.read().split(b'\0')
    except OSError:
        return False
    return os.path.basename(argv[0]) == b'qemu-storage-daemon' and \
        os.path.join(directory, PID_FILE).encode() in argv


def current(name):
    """The state of served point name: a dict with 'alive' (its daemon runs), or None."""
    directory = state_dir(name)
    st = _lstat(directory)
    if st is None:
        return None
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != 0 and st.st_uid != os.geteuid():
        raise ExportError('%s is not a directory of root: not touched' % directory)
    try:
        fd = _repository.open_under(directory, [STATE])
    except OSError:
        return dict(name=name, alive=False, broken=True)
    try:
        with os.fdopen(fd, 'rb') as src:
            state = json.loads(src.read(1 << 20).decode('utf-8'))
    except ValueError:
        return dict(name=name, alive=False, broken=True)
    if not isinstance(state, dict) or state.get('version') != STATE_VERSION:
        return dict(name=name, alive=False, broken=True)
    state['alive'] = _is_our_daemon(state.get('pid'), state.get('pid_start'), directory)
    return state


def _lstat(path):
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None


def listing():
    """Names of every served point with a state directory."""
    if not os.path.isdir(EXPORT_ROOT):
        return []
    return sorted(n for n in os.listdir(EXPORT_ROOT) if NAME.match(n))


# -- starting and stopping ----------------------------------------------------------------------------

def _read_only(node):
    """Every node of a blockdev description read-only (the backing nodes are, the files too)."""
    node['read-only'] = True
    if isinstance(node.get('file'), dict):
        node['file']['read-only'] = True
    if isinstance(node.get('backing'), dict):
        _read_only(node['backing'])
    return node


def _make_root():
    for path, mode in ((os.path.dirname(EXPORT_ROOT), 0o711), (EXPORT_ROOT, 0o711)):
        try:
            os.mkdir(path, mode)
        except FileExistsError:
            pass
        st = os.lstat(path)
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
            raise ExportError('%s is not a directory of root: no export is served from it' % path)
        if stat.S_IMODE(st.st_mode) != mode:
            os.chmod(path, mode)


def start(spec, lineage):
    """Serve spec (see desired) of the point lineage[0]; returns its state. Anything left of an
    earlier daemon of that name must be stopped first (stop)."""
    _make_root()
    directory = state_dir(spec['name'])
    os.mkdir(directory, 0o700)
    chains = []
    try:
        qemu_group = spec.get('qemu_group')
        if qemu_group is not None:
            # QEMU's user may enter (to connect to the socket), not list or change anything.
            os.chown(directory, os.geteuid(), qemu_group)
            os.chmod(directory, 0o710)
        args = ['qemu-storage-daemon', '--daemonize', '--pidfile', os.path.join(directory, PID_FILE)]
        for disk in spec['disks']:
            chain = _repository.open_chain(lineage, disk['name'])
            chains.append(chain)
            node = _read_only(chain.options())
            node['node-name'] = 'disk-%s' % disk['name']
            args += ['--blockdev', json.dumps(node, sort_keys=True)]
        if spec['transport'] == 'unix':
            server = dict(addr=dict(type='unix', path=spec['socket']), **{'max-connections': 0})
        else:
            missing = [f for f in TLS_FILES if not os.path.isfile(os.path.join(spec['tls_dir'], f))]
            if missing:
                raise ExportError('tls_dir %s lacks %s' % (spec['tls_dir'], ', '.join(missing)))
            args += ['--object', json.dumps({'qom-type': 'tls-creds-x509', 'id': 'tls0', 'dir': spec['tls_dir'],
                                             'endpoint': 'server', 'verify-peer': True})]
            server = {'addr': dict(type='inet', host=spec['bind_address'], port=str(spec['port'])),
                      'tls-creds': 'tls0', 'max-connections': 0}
        args += ['--nbd-server', json.dumps(server, sort_keys=True)]
        for disk in spec['disks']:
            args += ['--export', json.dumps({'type': 'nbd', 'id': 'export-%s' % disk['name'],
                                             'node-name': 'disk-%s' % disk['name'], 'name': disk['export'],
                                             'writable': False}, sort_keys=True)]
        fds = [fd for chain in chains for fd in chain.fds]
        # Its own session, its output nowhere: Ansible waits for the module's output pipes to
        # close, and the daemon must not hold them (it closes its stdio once it is ready).
        proc = subprocess.run(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              pass_fds=fds, start_new_session=True, check=False, timeout=60, cwd='/')
        if proc.returncode != 0:
            raise ExportError('qemu-storage-daemon could not serve backup %s: %s' % (
                spec['backup'], proc.stderr.decode('utf-8', 'replace').strip()))
        with open(os.path.join(directory, PID_FILE), 'rb') as src:
            pid = int(src.read().strip() or 0)
        pid_start = _proc_start(pid)
        if pid_start is None:
            raise ExportError('qemu-storage-daemon serving backup %s ended at once' % spec['backup'])
        if qemu_group is not None:
            os.chown(spec['socket'], os.geteuid(), qemu_group)
            os.chmod(spec['socket'], 0o660)
        state = dict(spec, version=STATE_VERSION, pid=pid, pid_start=pid_start,
                     started=_repository.isoformat(_repository.utcnow()))
        _repository.write_file(os.path.join(directory, STATE), json.dumps(state, sort_keys=True).encode('utf-8'))
        state['alive'] = True
        return state
    except BaseException:
        _stop_dir(directory)
        raise
    finally:
        for chain in chains:
            chain.close()


def stop(name):
    """Stop served point name and remove its state; True when there was anything to stop or remove."""
    directory = state_dir(name)
    if _lstat(directory) is None:
        return False
    current(name)       # refuses a directory that is not ours
    _stop_dir(directory)
    return True


def _stop_dir(directory):
    state = None
    try:
        with open(os.path.join(directory, STATE), 'rb') as src:
            state = json.loads(src.read(1 << 20).decode('utf-8'))
    except (OSError, ValueError):
        pass
    pid, start_time = None, None
    if isinstance(state, dict):
        pid, start_time = state.get('pid'), state.get('pid_start')
    else:
        # A start that failed before its state was written: the pid file, if the daemon got that far.
        try:
            with open(os.path.join(directory, PID_FILE), 'rb') as src:
                pid = int(src.read().strip() or 0)
            start_time = _proc_start(pid)
        except (OSError, ValueError):
            pid = None
    if pid and _is_our_daemon(pid, start_time, directory):
        _terminate(pid, start_time)
    shutil.rmtree(directory, ignore_errors=True)


def _terminate(pid, start_time):
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.time() + wait
        while time.time() < deadline:
            if _proc_start(pid) != start_time:
                return
            time.sleep(0.02)
    raise ExportError('qemu-storage-daemon (pid %d) did not end' % pid)


def image_check(lineage, names):
    """Check every layer of every disk served (headers against the manifests) before anything runs."""
    for backup in lineage:
        if backup.manifest.get('encryption'):
            raise ExportError('backup %s of domain %s is encrypted: it is not served (its clients would read it '
                              'without the key); restore it with virt_restore and its encryption option'
                              % (backup.id, lineage[0].manifest['domain']))
    for name in names:
        try:
            with _repository.open_chain(lineage, name):
                pass
        except _images.ImageError as exc:
            raise ExportError('cannot serve disk %s of backup %s of domain %s: %s' % (
                name, lineage[0].id, lineage[0].manifest['domain'], exc))


# -- virt_backup_export ----------------------------------------------------------------------------

def ensure(conn_factory, params, check_mode):
    """virt_backup_export: the point served (present) or not (absent); the result for the module."""
    # Imported here: _restore's helpers resolve the point the same way virt_restore does.
    from ansible_collections.virtops.libvirt.plugins.module_utils._libvirt import VirtError
    from ansible_collections.virtops.libvirt.plugins.module_utils.backup import _restore
    name = check_export_name(params['name'])
    before = current(name)
    before_view = _view(before)
    if params['state'] == 'absent':
        if before is not None and before.get('used_by') and before.get('alive') and not params.get('force'):
            users = _users(conn_factory, before)
            if users:
                raise VirtError('export %s backs the disks %s of domain %s (an instant restore): stopping it would '
                                'fail their reads. Move the disks off it first (virt_blockjob copy with pivot), or '
                                'set force: true' % (name, ', '.join(users), before['used_by']))
        changed = before is not None
        if changed and not check_mode:
            try:
                stop(name)
            except ExportError as exc:
                raise VirtError('cannot stop export %s: %s' % (name, exc))
        return dict(changed=changed, export=None, diff=dict(before=before_view, after={}))

    if params['transport'] == 'tcp' and not params.get('tls_dir'):
        raise VirtError('transport tcp needs tls_dir: backups are served over the network with TLS only')
    if params['transport'] == 'tcp' and not params.get('port'):
        raise VirtError('transport tcp needs port')
    repo = _restore._repo(params['repository'])
    backup, lineage = _restore._resolve(repo, params['domain'], params['backup'])
    names = [d['name'] for d in backup.disks]
    wanted = params.get('disks')
    if wanted:
        unknown = [n for n in wanted if n not in names]
        if unknown:
            raise VirtError('backup %s of domain %s holds no disk %s (it holds: %s)' % (
                backup.id, params['domain'], ', '.join(unknown), ', '.join(names)))
        names = [n for n in names if n in wanted]
    try:
        image_check(lineage, names)
        spec = desired(name, repo, backup, names, transport=params['transport'],
                       bind_address=params.get('bind_address'), port=params.get('port'),
                       tls_dir=params.get('tls_dir'))
        if spec['transport'] == 'tcp':
            missing = [f for f in TLS_FILES if not os.path.isfile(os.path.join(spec['tls_dir'], f))]
            if missing:
                raise ExportError('tls_dir %s lacks %s' % (spec['tls_dir'], ', '.join(missing)))
    except ExportError as exc:
        raise VirtError('%s. Nothing was changed' % exc)
    if before is not None and before.get('used_by') and not same(spec, before):
        raise VirtError('export %s serves the instant restore %s; it is changed only by virt_restore' % (
            name, before['used_by']))
    if before is not None and before.get('alive') and same(spec, before):
        return dict(changed=False, export=public(spec, before), diff=dict(before=before_view, after=before_view))
    after_view = _view(spec)
    result = dict(changed=True, export=public(spec), diff=dict(before=before_view, after=after_view))
    if check_mode:
        return result
    try:
        if before is not None:
            stop(name)
        state = start(spec, lineage)
    except (ExportError, _images.ImageError, OSError) as exc:
        raise VirtError('cannot serve backup %s of domain %s as export %s: %s' % (
            backup.id, params['domain'], name, exc))
    result['export'] = public(spec, state)
    return result


def _view(state):
    """What diff mode shows of a served point."""
    if state is None:
        return {}
    keys = ('repository', 'domain', 'backup', 'transport', 'socket', 'bind_address', 'port', 'tls_dir')
    view = dict((k, state[k]) for k in keys if state.get(k) is not None)
    view['disks'] = [d.get('name') for d in state.get('disks') or []]
    # A desired state (no 'alive' yet) is one that runs.
    view['running'] = bool(state.get('alive', True))
    return view


def _users(conn_factory, state):
    """Disks of the instant-restored domain that still read from this export."""
    from ansible_collections.virtops.libvirt.plugins.module_utils.backup import _instant
    dom = conn_factory().lookup_domain(state['used_by'])
    if dom is None:
        return []
    return _instant._dependent_disks(dom, state['socket'])
