# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""6. Security: the NBD export is a unix socket in a private directory by default; TCP only with TLS and an
explicit bind address, certificates checked both ways; repository files 0600 and directories 0700/0711;
no shell command line built from input; secrets never in the output."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ast
import glob
import os
import shutil
import stat

import pytest
from lxml import etree

from support.host import MiB, qemu_owner, ROOT, sh, SOCKET_ROOT, wait_until
from support.images import differing_bytes
from support.modules import failed, ModuleRun, ok, run_module
from support.repository import checkpoint_prefix, partial_dirs, repo_short_id, tree_state
import fi_lib

PKI = fi_lib.PKI


def _mode(path):
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_default_export_private_unix_socket(big, fault):
    """While a pull backup runs: the export is a unix socket in a 0700 directory owned by QEMU's user, no TCP;
    the module's own qemu-nbd servers listen in a directory only root can enter, never in QEMU's."""
    big.start()
    repo = fi_lib.new_repo_path('private')
    run = ModuleRun('virt_backup', dict(domain=big.name, repository=repo))
    try:
        def copying():
            if not run.alive():
                return 'ended'
            for path in partial_dirs(repo, big.name):
                image = os.path.join(path, 'vda.qcow2')
                if os.path.exists(image) and os.path.getsize(image) >= 16 * MiB:
                    return 'copying'
            return None
        assert wait_until(copying, 120, 'the pull job', interval=0.02) != 'ended', \
            'the backup ended before it could be inspected'
        # Held (SIGSTOP) while it is inspected: a pull of fi-big takes well under a second.
        run.pause()
        xml = big.job_xml()
        assert xml is not None, 'the backup ended its job before it could be inspected'
        fault.inject('inspection of the default NBD export while a pull backup runs')
        server = etree.fromstring(xml.encode('utf-8')).find('server')
        assert server.get('transport') == 'unix', etree.tostring(server)
        assert server.get('tls') in (None, 'no')
        sock = server.get('socket')
        sock_dir = os.path.dirname(sock)
        assert os.path.dirname(sock_dir) == str(SOCKET_ROOT), sock
        assert stat.S_ISSOCK(os.lstat(sock).st_mode)
        assert _mode(str(SOCKET_ROOT)) == 0o711, oct(_mode(str(SOCKET_ROOT)))
        assert _mode(sock_dir) == 0o700, oct(_mode(sock_dir))
        st = os.stat(sock_dir)
        assert st.st_uid == qemu_owner()[0], (st.st_uid, st.st_gid)
        # the qemu-nbd that writes the backup image listens in root's own directory: QEMU's user could
        # otherwise swap its socket for a server of its own
        assert not glob.glob(os.path.join(sock_dir, 'virtops-nbd-*')), os.listdir(sock_dir)
        nbd_dirs = glob.glob(os.path.join(str(SOCKET_ROOT), '.nbd-%s-%s-*' % (repo_short_id(repo), big.name)))
        assert nbd_dirs, 'no private directory for qemu-nbd sockets while the copy runs'
        # A plain image is written by the module itself, by descriptor: no qemu-nbd writer; any
        # qemu-nbd the run starts (readers, the writer of an encrypted image) listens in here.
        writers = [w for d in nbd_dirs for w in glob.glob(os.path.join(d, 'virtops-nbd-*'))]
        for sub in nbd_dirs + writers:
            assert _mode(sub) == 0o700 and os.lstat(sub).st_uid == 0, (sub, oct(_mode(sub)), os.lstat(sub).st_uid)
        # the image being written is root's and private from its first byte, in a private directory
        for path in partial_dirs(repo, big.name):
            image = os.path.join(path, 'vda.qcow2')
            assert os.lstat(image).st_uid == 0 and _mode(image) == 0o600, (image, oct(_mode(image)))
            assert _mode(path) & 0o077 == 0, (path, oct(_mode(path)))
        # QEMU listens on no TCP port
        pid = big.qemu_pid()
        assert not _tcp_listeners(pid), 'QEMU of %s listens on TCP: %s' % (big.name, _tcp_listeners(pid))
        fault.note('export: %s (directory 0700, owner %d:%d)' % (sock, st.st_uid, st.st_gid))
        run.resume()
        res = ok(run.wait(), 'the inspected backup')
    finally:
        if run.alive():
            run.kill9()
        run.close()
    fi_lib.verify_backup(fault, big, repo, res['backup']['id'])
    fault.survived()


def _tcp_listeners(pid):
    """Listening TCP sockets (inode numbers) held by process pid."""
    inodes = set()
    for fd in glob.glob('/proc/%d/fd/*' % pid):
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith('socket:['):
            inodes.add(target[8:-1])
    found = []
    for table in ('/proc/net/tcp', '/proc/net/tcp6'):
        try:
            with open(table) as src:
                next(src)
                for line in src:
                    cols = line.split()
                    if cols[3] == '0A' and cols[9] in inodes:   # 0A: LISTEN
                        found.append(cols[1])
        except OSError:
            pass
    return found


# --- TCP and TLS ---------------------------------------------------------------------------------

def _openssl(*args):
    sh('openssl', *args, what='openssl %s' % args[0])


def _make_ca(d, name):
    _openssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', '/CN=%s' % name,
             '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
             '-keyout', os.path.join(d, 'ca-key.pem'), '-out', os.path.join(d, 'ca-cert.pem'))


def _make_cert(ca_dir, out_key, out_cert, cn, usage, san=None):
    csr = out_cert + '.csr'
    ext = out_cert + '.ext'
    _openssl('req', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=%s' % cn, '-keyout', out_key, '-out', csr)
    with open(ext, 'w') as out:
        out.write('basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n'
                  'extendedKeyUsage=%s\n' % usage)
        if san:
            out.write('subjectAltName=%s\n' % san)
    _openssl('x509', '-req', '-in', csr, '-CA', os.path.join(ca_dir, 'ca-cert.pem'), '-CAkey',
             os.path.join(ca_dir, 'ca-key.pem'), '-CAcreateserial', '-days', '2', '-extfile', ext, '-out', out_cert)
    os.unlink(csr)
    os.unlink(ext)


@pytest.fixture(scope='module')
def pki(host):
    """A throwaway CA with server (for QEMU, in /etc/pki/qemu) and client certificates, and a second CA."""
    if os.path.exists(PKI):
        pytest.skip('%s exists already (someone else\'s certificates): not replacing it' % PKI)
    # (a directory of an interrupted earlier run of this suite, marked with PKI_MARKER, is removed by
    # the session set-up in conftest.py)
    base = os.path.join(fi_lib.WORK, 'pki')
    ca, other, client, stranger, mixed = [os.path.join(base, n) for n in ('ca', 'other-ca', 'client', 'stranger',
                                                                          'mixed')]
    for d in (ca, other, client, stranger, mixed):
        os.makedirs(d, 0o700)
    _make_ca(ca, 'fi-ca')
    _make_ca(other, 'fi-other-ca')
    server_key, server_cert = os.path.join(ca, 'server-key.pem'), os.path.join(ca, 'server-cert.pem')
    _make_cert(ca, server_key, server_cert, 'localhost', 'serverAuth', 'DNS:localhost,IP:127.0.0.1')
    _make_cert(ca, os.path.join(client, 'client-key.pem'), os.path.join(client, 'client-cert.pem'), 'fi-client',
               'clientAuth')
    shutil.copy(os.path.join(ca, 'ca-cert.pem'), client)
    # a client of another CA altogether, and one that trusts our CA but holds another CA's certificate
    _make_cert(other, os.path.join(stranger, 'client-key.pem'), os.path.join(stranger, 'client-cert.pem'),
               'fi-stranger', 'clientAuth')
    shutil.copy(os.path.join(other, 'ca-cert.pem'), stranger)
    for name in ('client-key.pem', 'client-cert.pem'):
        shutil.copy(os.path.join(stranger, name), mixed)
    shutil.copy(os.path.join(ca, 'ca-cert.pem'), mixed)

    created_parent = not os.path.isdir(os.path.dirname(PKI))
    os.makedirs(PKI, 0o750)
    try:
        gid = qemu_owner()[1]
        import grp
        try:
            gid = grp.getgrnam('libvirt-qemu').gr_gid
        except KeyError:
            pass
        os.chown(PKI, 0, gid)
        os.chmod(PKI, 0o750)
        with open(os.path.join(PKI, fi_lib.PKI_MARKER), 'w') as out:
            out.write('installed by the virtops.libvirt fault-injection suite; removed when it ends\n')
        for name, src in (('ca-cert.pem', os.path.join(ca, 'ca-cert.pem')), ('server-cert.pem', server_cert),
                          ('server-key.pem', server_key)):
            dst = os.path.join(PKI, name)
            shutil.copy(src, dst)
            os.chown(dst, 0, gid)
            os.chmod(dst, 0o640)
        yield dict(client=client, stranger=stranger, mixed=mixed)
    finally:
        shutil.rmtree(PKI, ignore_errors=True)
        if created_parent:
            try:
                os.rmdir(os.path.dirname(PKI))
            except OSError:
                pass
        shutil.rmtree(base, ignore_errors=True)


def _tcp_options(tls_dir, **extra):
    """A pull over TCP+TLS on localhost, on a free port (what fi_lib.assert_next_run takes)."""
    args = dict(transport='tcp', tls=True, tls_dir=tls_dir, bind_address='localhost', port=fi_lib.free_port())
    args.update(extra)
    return args


def _tcp_args(small, repo, tls_dir, **extra):
    return dict(domain=small.name, repository=repo, **_tcp_options(tls_dir, **extra))


def test_tcp_needs_tls_and_bind_address(small, fault):
    """TCP without TLS, or without an explicit bind address, is refused before anything happens."""
    small.start()
    repo = fi_lib.new_repo_path('tcp-refused')
    good = fi_lib.backup(small, repo)
    before = tree_state(repo)
    for what, args, words in (
            ('transport tcp without tls', dict(transport='tcp', bind_address='127.0.0.1', port=fi_lib.free_port()),
             ['tls: true', 'clear text']),
            ('transport tcp, tls, no bind_address', dict(transport='tcp', tls=True, tls_dir=fi_lib.WORK,
                                                         port=fi_lib.free_port()), ['bind_address'])):
        fault.inject(what)
        res = run_module('virt_backup', dict(domain=small.name, repository=repo, **args), dead_ok=True)
        fault.note(failed(res, *words, ignore_case=True))
        assert not small.job_active()
        assert tree_state(repo) == before
        assert fi_lib.listed_ids(repo, small.name) == [good['id']]
        fault.survived()


def test_tcp_tls_backup(small, pki, fault):
    """Pull over TCP with TLS (server certificate checked by the client, client certificate by QEMU): bit-exact."""
    small.start()
    repo = fi_lib.new_repo_path('tls')
    fault.inject('backup pulled over TCP+TLS on localhost')
    full = fi_lib.backup(small, repo, **_tcp_args(small, repo, pki['client']))
    assert full['mode'] == 'pull'
    fi_lib.verify_backup(fault, small, repo, full['id'])
    small.write('vda', 90 * MiB, 2 * MiB, 0xb1)
    inc = fi_lib.backup(small, repo, **_tcp_args(small, repo, pki['client']))
    assert (inc['level'], inc['parent']) == ('incremental', full['id']), inc
    fi_lib.verify_backup(fault, small, repo, inc['id'])
    fault.survived()

    for what, tls_dir in (('client trusts another CA (server certificate rejected)', pki['stranger']),
                          ('client certificate from another CA (rejected by QEMU)', pki['mixed'])):
        fault.inject('TCP+TLS: %s' % what)
        good_ids = fi_lib.listed_ids(repo, small.name)
        res = run_module('virt_backup', _tcp_args(small, repo, tls_dir), dead_ok=True)
        msg = failed(res, ('tls', 'certificate', 'handshake', 'connect'), ignore_case=True)
        fault.note('%s: %s' % (what, msg))
        fi_lib.assert_aftermath(small, repo, good_ids)
        fault.survived()
    small.write('vda', 92 * MiB, MiB, 0xb2)
    fi_lib.assert_next_run(fault, small, repo, base=inc, expect_level='incremental',
                           **_tcp_options(pki['client']))


def test_tcp_pull_killed(small, pki, fault):
    """kill -9 of the module while its pull over TCP+TLS runs: the job's XML names no socket of ours,
    only the run's scratch files; the watchdog must still end the job, and the next run builds on
    the last good backup."""
    small.start()
    repo = fi_lib.new_repo_path('tls-killed')
    good = fi_lib.backup(small, repo, **_tcp_args(small, repo, pki['client']))
    for attempt in range(4):
        small.write('vda', (100 + attempt) * MiB, MiB, 0xb3)
        run = ModuleRun('virt_backup', _tcp_args(small, repo, pki['client'], level='full'))
        try:
            wait_until(lambda: small.job_active() or not run.alive(), 60, 'the TCP job to start', interval=0.01)
            run.pause()         # a pull job lives until its client ends it: held, the run cannot
            if small.job_active():
                break
            run.resume()
            good = ok(run.wait(), 'the TCP pull that ended before the test looked')['backup']
        except BaseException:
            if run.alive():
                run.kill9()
            run.close()
            raise
        fault.note('attempt %d: the TCP pull ended before the test looked' % (attempt + 1))
    else:
        raise AssertionError('four TCP pulls in a row ended before the test looked')
    [partial] = partial_dirs(repo, small.name)
    fault.inject('kill -9 of virt_backup while it pulls over TCP+TLS')
    run.kill9()
    run.close()
    fi_lib.assert_aftermath(small, repo, fi_lib.listed_ids(repo, small.name),
                            failed_checkpoints=[checkpoint_prefix(repo) + os.path.basename(partial)])
    fi_lib.assert_next_run(fault, small, repo, base=good, expect_level='incremental',
                           **_tcp_options(pki['client']))
    fault.survived()


def test_repository_modes(small, fault):
    """Every file of a repository is 0600 and root's; directories 0700 (root and .staging 0711, .staging/<domain>
    QEMU's); restored images 0600 in a 0700 directory."""
    small.start()
    repo = fi_lib.new_repo_path('modes')
    fault.inject('file modes of a repository after a pull and a push backup and a restore')
    fi_lib.backup(small, repo)
    small.write('vda', 100 * MiB, MiB, 0xb3)
    last = fi_lib.backup(small, repo, mode='push')
    bad = []
    qemu_uid = qemu_owner()[0]
    for base, dirs, files in os.walk(repo):
        for name in dirs:
            path = os.path.join(base, name)
            want = 0o711 if name == '.staging' and base == repo else 0o700
            if _mode(path) != want:
                bad.append('%s %o (want %o)' % (path, _mode(path), want))
            owner = os.lstat(path).st_uid
            if owner != (qemu_uid if base == os.path.join(repo, '.staging') else 0):
                bad.append('%s owned by uid %d' % (path, owner))
        for name in files:
            path = os.path.join(base, name)
            if _mode(path) != 0o600 or os.lstat(path).st_uid != 0:
                bad.append('%s %o uid %d (want 600, root)' % (path, _mode(path), os.lstat(path).st_uid))
    if _mode(repo) != 0o711:
        bad.append('%s %o (want 711)' % (repo, _mode(repo)))
    dest = fi_lib.restore_dir()
    ok(run_module('virt_restore', dict(repository=repo, domain=small.name, backup=last['id'],
                                       dest=dest), dead_ok=True))
    if _mode(dest) != 0o700:
        bad.append('restore dest %s %o (want 700)' % (dest, _mode(dest)))
    for name in os.listdir(dest):
        if _mode(os.path.join(dest, name)) != 0o600:
            bad.append('restored %s %o (want 600)' % (name, _mode(os.path.join(dest, name))))
    shutil.rmtree(dest)
    assert not bad, bad
    fault.survived()


def test_no_shell_command_lines(small, fault):
    """No shell: no shell=True, os.system or os.popen in the collection; shell syntax in paths stays text."""
    fault.inject('static scan of plugins/ for shell command lines')
    offenders = []
    for path in glob.glob(os.path.join(str(ROOT), 'plugins', '**', '*.py'), recursive=True):
        with open(path) as src:
            tree = ast.parse(src.read(), path)
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, 'id', '')
            owner = getattr(getattr(func, 'value', None), 'id', '')
            for kw in node.keywords:
                if kw.arg in ('shell', 'use_unsafe_shell') and not (isinstance(kw.value, ast.Constant)
                                                                    and kw.value.value is False):
                    offenders.append('%s:%d %s=...' % (path, node.lineno, kw.arg))
            if (owner, name) in (('os', 'system'), ('os', 'popen'), ('subprocess', 'getoutput'),
                                 ('subprocess', 'getstatusoutput')) or name in ('popen2', 'popen3'):
                offenders.append('%s:%d %s.%s' % (path, node.lineno, owner, name))
            strings = (ast.Constant, ast.JoinedStr, ast.BinOp)
            if name == 'run_command' and node.args and isinstance(node.args[0], strings):
                offenders.append('%s:%d run_command with a string' % (path, node.lineno))
            if owner == 'subprocess' and node.args and isinstance(node.args[0], (ast.Constant, ast.JoinedStr)):
                offenders.append('%s:%d subprocess.%s with a string' % (path, node.lineno, name))
    assert not offenders, offenders
    fault.survived()

    fault.inject('repository and restore paths full of shell syntax: $(...), backticks, ;, |, quotes, spaces')
    small.start()
    marker = os.path.join(fi_lib.WORK, 'PWNED')
    evil = '$(touch %s) `touch %s`; touch %s | "x" \'y\' & z' % (marker, marker, marker)
    repo = os.path.join(fi_lib.WORK, 'repos', 'evil ' + evil.replace('/', '_'))
    full = fi_lib.backup(small, repo)
    small.write('vda', 110 * MiB, MiB, 0xb4)
    inc = fi_lib.backup(small, repo, mode='push')
    assert inc['parent'] == full['id']
    dest = os.path.join(fi_lib.WORK, 'restore', 'dest ' + evil.replace('/', '_'))
    res = ok(run_module('virt_restore', dict(repository=repo, domain=small.name, dest=dest,
                                             format='raw'), dead_ok=True))
    lost = differing_bytes(res['disks'][0]['path'], small.disks['vda'].shadow)
    fault.lose(lost)
    assert lost == 0
    assert not os.path.exists(marker), 'a shell ran a command found in a path'
    assert not glob.glob('/touch*') and not os.path.exists(os.path.join('/', 'touch'))
    shutil.rmtree(dest)
    shutil.rmtree(repo)
    fault.survived()


def test_secrets_no_log(small, fault):
    """A password given to the modules never appears in their output, successful or failed."""
    secret = 'Fi-s3cret-%s' % os.urandom(4).hex()
    repo = fi_lib.new_repo_path('nolog')
    small.start()
    fi_lib.backup(small, repo)
    runs = [
        ('virt_backup_info', dict(repository=repo, username='root', password=secret)),
        ('virt_backup', dict(domain=small.name, repository=repo, username='root', password=secret)),
        ('virt_backup', dict(domain=small.name, repository=repo, username='root', password=secret,
                             uri='qemu+tcp://127.0.0.1:1/system')),
        ('virt_restore', dict(repository=repo, domain=small.name, dest='relative', password=secret)),
    ]
    for module, args in runs:
        fault.inject('%s given a password (%s)' % (module, args.get('uri', 'local')))
        res = run_module(module, args, dead_ok=True)
        assert secret not in res['_stdout'] and secret not in res['_stderr'], \
            '%s printed the password' % module
        shown = (res.get('invocation') or {}).get('module_args', {}).get('password')
        assert shown in (None, 'VALUE_SPECIFIED_IN_NO_LOG_PARAMETER'), shown
        fault.note('%s: %s' % (module, res.get('msg') or 'ok'))
        fault.survived()

    fault.inject('every option that could hold a secret is no_log (static scan of the argument specs)')
    # Options whose name sounds secret but whose value is not, each with why.
    not_secret = {
        ('_crypt.py', 'secret'): 'encryption.secret is the uuid or usage id of a libvirt secret, not its value',
    }
    leaks = []
    for path in glob.glob(os.path.join(str(ROOT), 'plugins', '**', '*.py'), recursive=True):
        with open(path) as src:
            tree = ast.parse(src.read(), path)
        for node in ast.walk(tree):
            if isinstance(node, ast.keyword) and node.arg and isinstance(node.value, ast.Call) \
                    and getattr(node.value.func, 'id', '') == 'dict':
                opts = dict((k.arg, k.value) for k in node.value.keywords)
                if 'type' not in opts:
                    continue
                if any(w in node.arg.lower() for w in ('pass', 'secret', 'token', 'private_key', 'credential')):
                    nolog = opts.get('no_log')
                    if (os.path.basename(path), node.arg) in not_secret and isinstance(nolog, ast.Constant) \
                            and nolog.value is False:
                        continue
                    if not (isinstance(nolog, ast.Constant) and nolog.value is True):
                        leaks.append('%s:%d option %s lacks no_log=True' % (path, node.lineno, node.arg))
    assert not leaks, leaks
    fault.survived()
