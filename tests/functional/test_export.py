# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""virt_backup_export on real images: each disk of the served point reads, through its NBD URI,
exactly what the backup holds; the export refuses writes; the serving process outlives the module
and is found again (present twice: no change; check mode predicts and changes nothing; diff);
absent stops it and removes its state; TCP is refused without TLS."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

import nbd
import pytest

from support.guests import domain_xml, remove_domain, unique
from support.host import sh
from support.modules import failed, ok, run_module
import ftlib
import instlib
from instlib import EXPORTS


@pytest.fixture
def name():
    export = unique('inst-export')
    yield export
    instlib.stop_export(export)


def export(source, name, check_mode=False, diff=False, **args):
    args = dict(dict(name=name, repository=str(source.repo), domain=source.name), **args)
    return run_module('virt_backup_export', args, check_mode=check_mode, diff=diff)


def absent(name, check_mode=False, diff=False):
    return run_module('virt_backup_export', dict(name=name, state='absent'), check_mode=check_mode, diff=diff)


def test_present_serves_the_point_bit_exact_and_is_idempotent(source, name):
    backup_id, raws = source.points[-1]
    predicted = ok(export(source, name, check_mode=True, diff=True))
    assert predicted['changed'] is True and 'pid' not in predicted['export']
    assert predicted['diff']['before'] == {} and predicted['diff']['after']['backup'] == backup_id
    assert not (EXPORTS / name).exists()

    result = ok(export(source, name, diff=True))
    assert result['changed'] is True and result['export']['backup'] == backup_id
    assert result['diff'] == predicted['diff']
    state_dir = EXPORTS / name
    assert (os.stat(str(state_dir)).st_mode & 0o777) == 0o700
    pid = result['export']['pid']
    assert instlib.pid_alive(pid)        # the module has exited; its daemon serves on
    uris = dict((d['name'], d['uri']) for d in result['export']['disks'])
    assert sorted(uris) == ['vda', 'vdb']
    assert uris['vda'] == 'nbd+unix:///vda?socket=%s' % (state_dir / 'nbd.sock')
    for target, uri in uris.items():
        got = instlib.read_uri(uri, str(source.root / ('%s-%s.raw' % (name, target))))
        instlib.assert_same_file(raws[target], got)
        os.unlink(got)

    again = ok(export(source, name, diff=True))
    assert again['changed'] is False and again['export']['pid'] == pid
    assert again['diff']['before'] == again['diff']['after']
    assert ok(export(source, name, check_mode=True))['changed'] is False

    # Absent: check mode predicts and leaves it running; then it stops and its state goes.
    assert ok(absent(name, check_mode=True))['changed'] is True
    assert instlib.pid_alive(pid) and state_dir.exists()
    gone = ok(absent(name, diff=True))
    assert gone['changed'] is True and gone['diff']['after'] == {} and gone['diff']['before']['backup'] == backup_id
    assert not instlib.pid_alive(pid) and not state_dir.exists()
    assert ok(absent(name))['changed'] is False
    assert ok(absent(name, check_mode=True))['changed'] is False


def test_writes_are_refused_and_the_repository_is_unchanged(source, name):
    before = source.repo_files()
    result = ok(export(source, name, disks=['vdb']))
    assert [d['name'] for d in result['export']['disks']] == ['vdb']
    handle = nbd.NBD()
    handle.connect_uri(result['export']['disks'][0]['uri'])
    try:
        assert handle.is_read_only()
        with pytest.raises(nbd.Error):
            handle.pwrite(b'\xee' * 4096, 0)
        assert handle.pread(4096, 0) == b'\xb1' * 4096
    finally:
        handle.shutdown()
    assert source.repo_files() == before


def test_another_point_moves_the_export(source, name):
    (first_id, first_raws), (last_id, last_raws) = source.points[0], source.points[-1]
    first = ok(export(source, name, backup=first_id))
    got = instlib.read_uri(first['export']['disks'][0]['uri'], str(source.root / ('%s-p1.raw' % name)))
    instlib.assert_same_file(first_raws['vda'], got)
    moved = ok(export(source, name, diff=True))
    assert moved['changed'] is True and moved['diff']['before']['backup'] == first_id
    assert moved['export']['backup'] == last_id and moved['export']['pid'] != first['export']['pid']
    assert not instlib.pid_alive(first['export']['pid'])
    got = instlib.read_uri(moved['export']['disks'][0]['uri'], str(source.root / ('%s-p2.raw' % name)))
    instlib.assert_same_file(last_raws['vda'], got)


def test_lost_daemon_is_served_again(source, name):
    first = ok(export(source, name))
    os.kill(first['export']['pid'], 9)
    again = ok(export(source, name, diff=True))
    assert again['changed'] is True and again['diff']['before']['running'] is False
    assert instlib.pid_alive(again['export']['pid'])


def test_bad_input_changes_nothing(source, name):
    failed(export(source, name, transport='tcp', port=10999), 'tls_dir')
    failed(export(source, name, disks=['vdz']), 'holds no disk vdz')
    failed(export(source, name, backup='20000101T000000Z'), 'not found')
    failed(export(source, '../etc', ), 'export name')
    assert not (EXPORTS / name).exists()


def _certificates(directory):
    """A CA, a server certificate for 127.0.0.1 and a client certificate, with openssl, in the file
    names QEMU (server) and libnbd (client) look for."""
    directory.mkdir(mode=0o700)
    server, client = directory / 'server', directory / 'client'
    server.mkdir(mode=0o700)
    client.mkdir(mode=0o700)

    def openssl(*args):
        sh('openssl', *args)
    ca_key, ca_cert = directory / 'ca-key.pem', directory / 'ca-cert.pem'
    openssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', ca_key, '-out', ca_cert, '-days', '2',
            '-subj', '/CN=inst test CA', '-addext', 'basicConstraints=critical,CA:TRUE',
            '-addext', 'keyUsage=critical,keyCertSign,cRLSign')
    ext = directory / 'ext.cnf'
    ext.write_text('[server]\nsubjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n'
                   'keyUsage=critical,digitalSignature,keyEncipherment\n'
                   '[client]\nextendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature,keyEncipherment\n')
    for side, where in (('server', server), ('client', client)):
        key, csr, cert = where / ('%s-key.pem' % side), where / 'req.csr', where / ('%s-cert.pem' % side)
        openssl('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', csr, '-subj', '/CN=127.0.0.1')
        openssl('x509', '-req', '-in', csr, '-CA', ca_cert, '-CAkey', ca_key, '-CAcreateserial', '-out', cert,
                '-days', '2', '-extfile', ext, '-extensions', side)
        csr.unlink()
        (where / 'ca-cert.pem').write_bytes(ca_cert.read_bytes())
    return server, client


def _free_port():
    import socket
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def test_tcp_with_tls_only(source, name):
    backup_id, raws = source.points[-1]
    server, client = _certificates(source.root / ('tls-%s' % name))
    port = _free_port()
    result = ok(export(source, name, transport='tcp', bind_address='127.0.0.1', port=port, tls_dir=str(server)))
    uri = dict((d['name'], d['uri']) for d in result['export']['disks'])['vda']
    assert uri == 'nbds://127.0.0.1:%d/vda' % port
    got = instlib.read_uri('%s?tls-certificates=%s' % (uri, client), str(source.root / ('%s-tls.raw' % name)))
    instlib.assert_same_file(raws['vda'], got)
    assert ok(export(source, name, transport='tcp', bind_address='127.0.0.1', port=port,
                     tls_dir=str(server)))['changed'] is False
    # Without TLS, or without a client certificate of that CA, nothing is served.
    for plain in ('nbd://127.0.0.1:%d/vda' % port, uri):
        handle = nbd.NBD()
        with pytest.raises(nbd.Error):
            handle.connect_uri(plain)


def test_single_file_restore_with_nbdfuse(conn, source, name):
    """The single-file restore of docs/backup.md: a file system in a backed-up disk, served, shown as a
    file by nbdfuse, attached read-only to a loop device and mounted read-only; the file reads back."""
    import subprocess
    import time
    work = source.root / ('files-%s' % name)
    (work / 'content' / 'etc').mkdir(parents=True)
    secret = os.urandom(300000)
    (work / 'content' / 'etc' / 'app.conf').write_bytes(secret)
    raw = work / 'fs.raw'
    sh('mkfs.ext4', '-q', '-F', '-d', work / 'content', raw, '64M')
    image = work / 'vda.qcow2'
    sh('qemu-img', 'convert', '-f', 'raw', '-O', 'qcow2', raw, image)
    domain = unique('inst-files')
    conn.get().defineXML(domain_xml(domain, [('vda', image)]))
    repo = work / 'repo'
    fuse_dir, mnt = work / 'fuse', work / 'mnt'
    fuse_dir.mkdir()
    mnt.mkdir()
    fuse = loop = None
    try:
        ok(ftlib.backup(domain, repo))
        # The source changes after the backup: the export must show the file as it was.
        sh('qemu-io', '-f', 'qcow2', '-c', 'write -P 0 0 64M', image)
        served = ok(run_module('virt_backup_export', dict(name=name, repository=str(repo), domain=domain)))
        uri = served['export']['disks'][0]['uri']
        fuse = subprocess.Popen(['nbdfuse', '--readonly', str(fuse_dir / 'vda'), uri], stdin=subprocess.DEVNULL)
        deadline = time.time() + 20
        while not (fuse_dir / 'vda').exists() and time.time() < deadline:
            time.sleep(0.1)
        loop = sh('losetup', '--read-only', '--find', '--show', fuse_dir / 'vda').strip()
        sh('mount', '-o', 'ro,noload', loop, mnt)
        try:
            assert (mnt / 'etc' / 'app.conf').read_bytes() == secret
        finally:
            sh('umount', mnt)
    finally:
        if loop:
            subprocess.run(['losetup', '-d', loop], check=False)
        if fuse is not None:
            subprocess.run(['umount', str(fuse_dir)], check=False)
            try:
                fuse.wait(10)
            except subprocess.TimeoutExpired:
                fuse.kill()
                fuse.wait()
        remove_domain(conn, domain)
