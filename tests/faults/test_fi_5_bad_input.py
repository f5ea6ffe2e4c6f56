# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""5. Bad input: every option of virt_backup, virt_restore and virt_backup_info with a wrong type or value,
names holding "/" or "..", a repository path that is a file, manifests corrupted, truncated or from a
newer format version. Each must fail with a clear message naming the problem, change nothing in the
repository (files, modes, contents), create or delete no checkpoint, start no job, and lose nothing:
the repository still backs up incrementally and restores bit-exact afterwards."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import shutil

import pytest

from support.host import COLLECTIONS, MiB
from support.modules import failed, ok, run_module
from support.repository import read_manifests, tree_state
import fi_lib


@pytest.fixture(scope='module')
def repo(small):
    """A repository with a full and an incremental backup of fi-small, plus a few paths to misuse."""
    small.start()
    path = fi_lib.new_repo_path('badinput')
    full = fi_lib.backup(small, path)
    full_expected = small.snapshot('badinput-full')
    small.write('vda', 70 * MiB, MiB, 0xa1)
    inc = fi_lib.backup(small, path)
    fi_lib.verify_backup(fi_lib.Fault(fi_lib.Record('setup', 'setup', '')), small, path, inc['id'])
    aside = os.path.join(fi_lib.WORK, 'badinput-aside')
    os.makedirs(aside, 0o700, exist_ok=True)
    a_file = os.path.join(aside, 'a-file')
    with open(a_file, 'w') as out:
        out.write('not a repository\n')
    foreign = os.path.join(aside, 'foreign-dir')
    os.makedirs(foreign, exist_ok=True)
    with open(os.path.join(foreign, 'photo.jpg'), 'w') as out:
        out.write('someone else\'s data\n')
    tls_empty = os.path.join(aside, 'tls-empty')
    os.makedirs(tls_empty, exist_ok=True)
    return dict(path=path, full=full, inc=inc, file=a_file, foreign=foreign, tls_empty=tls_empty, aside=aside,
                full_expected=full_expected)


def _snapshot(small, repo):
    return dict(tree=tree_state(repo['path']), aside=tree_state(repo['aside']),
                checkpoints=small.checkpoints(), job=small.job_active())


def _assert_unchanged(small, repo, before):
    after = _snapshot(small, repo)
    for key in ('checkpoints', 'job', 'aside'):
        assert after[key] == before[key], '%s changed: %r -> %r' % (key, before[key], after[key])
    if after['tree'] != before['tree']:
        changed = sorted(k for k in set(after['tree']) | set(before['tree'])
                         if after['tree'].get(k) != before['tree'].get(k))
        raise AssertionError('the repository changed: %s' % changed)


def _reject(fault, small, repo, module, args, words, what):
    """Run module with args; it must fail with a message containing words, and change nothing."""
    before = _snapshot(small, repo)
    fault.inject('%s: %s' % (module, what))
    res = run_module(module, args, dead_ok=True)
    msg = failed(res, *words, ignore_case=True)
    _assert_unchanged(small, repo, before)
    fault.survived()
    return msg


def _backup_args(small, repo, **extra):
    args = dict(domain=small.name, repository=repo['path'])
    args.update(extra)
    return args


BACKUP_CASES = [
    # (what, extra args (None removes the key), words the message must contain)
    ('domain missing', dict(domain=None), ['missing required arguments', 'domain']),
    ('domain a list', dict(domain=['fi-small', 'x']), [('domain', 'str')]),
    ('domain a dict', dict(domain={'name': 'fi-small'}), [('domain', 'str')]),
    ('domain with "/"', dict(domain='fi-small/x'), ['domain name', '/']),
    ('domain "..', dict(domain='..'), ['domain name', '..']),
    ('domain with "/.."', dict(domain='fi-small/../../etc'), ['domain name']),
    ('domain hidden name', dict(domain='.fi-small'), ['domain name']),
    ('domain unknown', dict(domain='fi-no-such-domain'), ['fi-no-such-domain', 'not found']),
    ('repository missing', dict(repository=None), ['missing required arguments', 'repository']),
    ('repository relative', dict(repository='repos/x'), ['absolute']),
    ('repository an integer', dict(repository=42), ['absolute']),
    ('repository is a file', dict(repository='FILE'), ['not a directory']),
    ('repository is someone else\'s directory', dict(repository='FOREIGN'), ['not empty', 'not a backup repository']),
    ('mode unknown', dict(mode='pushy'), ['mode', 'pull, push']),
    ('mode a list', dict(mode=['pull']), ['mode']),
    ('level unknown', dict(level='weekly'), ['level', 'one of']),
    ('disks a dict', dict(disks={'vda': True}), ['disks']),
    ('disks unknown disk', dict(disks=['vdz']), ['has no disk vdz']),
    ('disks a string that is no disk', dict(disks='vda,vdq'), ['vdq']),
    ('scratch_dir relative', dict(scratch_dir='scratch'), ['scratch_dir']),
    ('scratch_dir missing', dict(scratch_dir='/nonexistent/fi-scratch'), ['scratch_dir']),
    ('scratch_dir is a file', dict(scratch_dir='FILE'), ['scratch_dir']),
    ('timeout a word', dict(timeout='soon'), ['timeout']),
    ('timeout negative', dict(timeout=-5), ['timeout']),
    ('verify not a boolean', dict(verify='maybe'), ['verify']),
    ('workers zero', dict(workers=0), ['workers']),
    ('workers too many', dict(workers=1000), ['workers']),
    ('workers a word', dict(workers='many'), ['workers']),
    ('transport unknown', dict(transport='udp'), ['transport', 'unix, tcp']),
    ('tls not a boolean', dict(tls='perhaps'), ['tls']),
    ('tls with the unix transport', dict(tls=True, tls_dir='TLS_EMPTY'), ['tls', 'tcp']),
    ('tcp without tls', dict(transport='tcp', bind_address='127.0.0.1'), ['tls: true']),
    ('tcp+tls without bind_address', dict(transport='tcp', tls=True, tls_dir='TLS_EMPTY'), ['bind_address']),
    ('tcp+tls without tls_dir', dict(transport='tcp', tls=True, bind_address='127.0.0.1'), ['tls_dir']),
    ('tcp+tls, tls_dir without certificates', dict(transport='tcp', tls=True, bind_address='127.0.0.1',
                                                   tls_dir='TLS_EMPTY'), ['lacks', 'ca-cert.pem']),
    ('port zero', dict(transport='tcp', tls=True, bind_address='127.0.0.1', tls_dir='TLS_EMPTY', port=0), ['port']),
    ('port too large', dict(transport='tcp', tls=True, bind_address='127.0.0.1', tls_dir='TLS_EMPTY', port=70000),
     ['port']),
    ('port a word', dict(port='http'), ['port']),
    ('uri unknown scheme', dict(uri='bogus:///system'), ['connecting to libvirt', 'bogus']),
    ('unknown option', dict(colour='red'), ['unsupported parameters', 'colour']),
    ('tcp in push mode', dict(mode='push', transport='tcp', tls=True, bind_address='127.0.0.1', tls_dir='TLS_EMPTY'),
     ['pull']),
]


def _resolve(value, repo):
    return dict(FILE=repo['file'], FOREIGN=repo['foreign'], TLS_EMPTY=repo['tls_empty']).get(value, value) \
        if isinstance(value, str) else value


@pytest.mark.parametrize('what,extra,words', BACKUP_CASES, ids=[c[0] for c in BACKUP_CASES])
def test_backup_bad_option(small, repo, fault, what, extra, words):
    """virt_backup with a wrong type or value: a clear failure, nothing changed."""
    args = _backup_args(small, repo)
    for key, value in extra.items():
        if value is None:
            args.pop(key, None)
        else:
            args[key] = _resolve(value, repo)
    msg = _reject(fault, small, repo, 'virt_backup', args, words, what)
    fault.note('%s: %s' % (what, msg))


def test_backup_level_without_chain(small, repo, fault):
    """level incremental/differential where the repository has no chain of the domain."""
    empty = fi_lib.new_repo_path('nochain')
    ok(run_module('virt_backup_info', dict(repository=repo['path']), dead_ok=True))
    # an existing repository without a backup of fi-small
    _make_repository(empty)
    for level in ('incremental', 'differential'):
        before = tree_state(empty)
        cks = small.checkpoints()
        fault.inject('virt_backup level %s without a chain' % level)
        res = run_module('virt_backup', dict(domain=small.name, repository=empty, level=level), dead_ok=True)
        msg = failed(res, 'cannot take a %s backup' % level, 'level full or auto', ignore_case=True)
        fault.note(msg)
        after = tree_state(empty)
        # The run took the domain's lock first: its lock file may now exist, nothing else.
        assert dict((k, v) for k, v in after.items() if not k.endswith('.lock') and k != small.name) == \
            dict((k, v) for k, v in before.items() if not k.endswith('.lock') and k != small.name)
        assert fi_lib.listed_ids(empty, small.name) == []
        assert small.checkpoints() == cks and not small.job_active()
        fault.survived()


def _make_repository(path):
    import sys
    sys.path.insert(0, str(COLLECTIONS))
    from ansible_collections.virtops.libvirt.plugins.module_utils.backup import _repository
    _repository.Repository(path, create=True)


def _restore_args(small, repo, **extra):
    args = dict(repository=repo['path'], domain=small.name, dest=os.path.join(repo['aside'], 'restore-here'))
    args.update(extra)
    return args


RESTORE_CASES = [
    ('backup id with "/"', dict(backup='20260101T000000Z/x'), ['backup']),
    ('backup id "..', dict(backup='..'), ['backup']),
    ('backup id with "/.."', dict(backup='../../etc/passwd'), ['backup']),
    ('backup neither id nor time', dict(backup='yesterday'), ['neither a backup id']),
    ('backup before the first one', dict(backup='1999-01-01T00:00:00Z'), ['no backup of domain']),
    ('backup id that does not exist', dict(backup='20990101T000000Z'), ['not found']),
    ('backup a list', dict(backup=['latest']), ['backup']),
    ('domain with "/"', dict(domain='fi-small/x'), ['domain name']),
    ('domain "..', dict(domain='..'), ['domain name']),
    ('domain with "/.."', dict(domain='../fi-small'), ['domain name']),
    ('domain unknown to the repository', dict(domain='fi-nobody'), ['no backup of domain fi-nobody']),
    ('dest relative', dict(dest='restore/here'), ['absolute']),
    ('dest is a file', dict(dest='FILE'), ['not a directory']),
    ('dest missing', dict(dest=None), ['missing required arguments', 'dest']),
    ('format unknown', dict(format='vmdk'), ['format', 'qcow2, raw']),
    ('disks unknown disk', dict(disks=['vdz']), ['holds no disk vdz']),
    ('disks a dict', dict(disks={'vda': 1}), ['disks']),
    ('force not a boolean', dict(force='sometimes'), ['force']),
    ('define without new_name', dict(define=True), ['new_name']),
    ('new_name with "/"', dict(define=True, new_name='a/b'), ['new_name']),
    ('new_name of an existing domain', dict(define=True, new_name='fi-small'), ['exists already']),
    ('define not a boolean', dict(define='please'), ['define']),
    ('repository is a file', dict(repository='FILE'), ['not a directory']),
    ('repository relative', dict(repository='repos/x'), ['absolute']),
    ('repository is someone else\'s directory', dict(repository='FOREIGN'), ['not a backup repository']),
    ('repository does not exist', dict(repository='/nonexistent/fi-repo'), ['repository /nonexistent/fi-repo does not exist']),
    ('unknown option', dict(overwrite=True), ['unsupported parameters', 'overwrite']),
]


@pytest.mark.parametrize('what,extra,words', RESTORE_CASES, ids=[c[0] for c in RESTORE_CASES])
def test_restore_bad_option(small, repo, fault, what, extra, words):
    """virt_restore with a wrong type or value: a clear failure, nothing written, nothing changed."""
    args = _restore_args(small, repo)
    for key, value in extra.items():
        if value is None:
            args.pop(key, None)
        else:
            args[key] = _resolve(value, repo)
    msg = _reject(fault, small, repo, 'virt_restore', args, words, what)
    assert not os.path.exists(os.path.join(repo['aside'], 'restore-here')), 'virt_restore wrote into dest'
    fault.note('%s: %s' % (what, msg))


def test_restore_will_not_overwrite(small, repo, fault):
    """A file in dest that does not hold the backup's data is not overwritten without force."""
    dest = os.path.join(repo['aside'], 'occupied')
    os.makedirs(dest, exist_ok=True)
    precious = os.path.join(dest, 'vda.qcow2')
    with open(precious, 'w') as out:
        out.write('precious data\n')
    _reject(fault, small, repo, 'virt_restore', _restore_args(small, repo, dest=dest),
            ['exists and does not hold', 'force'], 'dest holds another file of the same name')
    with open(precious) as src:
        assert src.read() == 'precious data\n'
    shutil.rmtree(dest)


INFO_CASES = [
    ('repository relative', dict(repository='repos/x'), ['absolute']),
    ('repository is a file', dict(repository='FILE'), ['not a directory']),
    ('repository is someone else\'s directory', dict(repository='FOREIGN'), ['not a backup repository']),
    ('domain with "/.."', dict(domain='../etc'), ['domain name']),
    ('domain "..', dict(domain='..'), ['domain name']),
    ('verify not a boolean', dict(verify='maybe'), ['verify']),
    ('unknown option', dict(recursive=True), ['unsupported parameters']),
]


@pytest.mark.parametrize('what,extra,words', INFO_CASES, ids=[c[0] for c in INFO_CASES])
def test_info_bad_option(small, repo, fault, what, extra, words):
    """virt_backup_info with a wrong type or value: a clear failure."""
    args = dict(repository=repo['path'])
    for key, value in extra.items():
        args[key] = _resolve(value, repo)
    fault.note('%s: %s' % (what, _reject(fault, small, repo, 'virt_backup_info', args, words, what)))


def _corrupt(path, kind):
    with open(path, 'rb') as src:
        data = src.read()
    if kind == 'corrupted':
        new = data[:40] + b'\x00\xff garbage \x00' + data[60:]
    elif kind == 'truncated':
        new = data[:len(data) // 2]
    elif kind == 'empty':
        new = b''
    elif kind == 'newer format version':
        doc = json.loads(data)
        doc['format_version'] = doc['format_version'] + 1
        new = json.dumps(doc).encode('utf-8')
    elif kind == 'not a manifest':
        new = b'["a list, not a manifest"]'
    else:
        raise ValueError(kind)
    with open(path, 'wb') as out:
        out.write(new)
    return data


MANIFEST_KINDS = ['corrupted', 'truncated', 'empty', 'newer format version', 'not a manifest']


@pytest.mark.parametrize('kind', MANIFEST_KINDS)
def test_damaged_manifest(small, repo, fault, kind):
    """The newest backup's manifest damaged: virt_backup refuses and changes nothing, virt_backup_info names it,
    virt_restore does not silently restore another point in time; repaired, nothing is lost."""
    inc = repo['inc']
    manifest = os.path.join(inc['path'], 'manifest.json')
    original = _corrupt(manifest, kind)
    try:
        why = ('version', 'upgrade') if kind == 'newer format version' else \
            ('corrupted', 'not a virtops.libvirt backup manifest', 'unreadable')
        _reject(fault, small, repo, 'virt_backup', _backup_args(small, repo), ['unreadable backups', why],
                'backup with the newest manifest %s' % kind)

        fault.inject('virt_backup_info with a manifest %s' % kind)
        info = ok(run_module('virt_backup_info', dict(repository=repo['path'], verify=True), dead_ok=True))
        dom = [d for d in info['domains'] if d['name'] == small.name][0]
        assert dom['errors'] and 'manifest.json' in dom['errors'][0], dom['errors']
        assert [b['id'] for c in dom['chains'] for b in c['backups']] == [repo['full']['id']]
        assert info['verified_ok'] is False, 'verify reports every backup good while a manifest is unreadable'
        fault.note('virt_backup_info: %s' % dom['errors'][0])
        fault.survived()

        for spec in ('latest', inc['id']):
            msg = _reject(fault, small, repo, 'virt_restore', _restore_args(small, repo, backup=spec),
                          ['manifest'], 'restore %s with the newest manifest %s' % (spec, kind))
            fault.note('virt_restore %s: %s' % (spec, msg))
        # An older point whose manifests are intact still restores: nothing lost.
        fault.inject('restore of an intact older backup while a newer manifest is %s' % kind)
        fi_lib.verify_backup(fault, small, repo['path'], repo['full']['id'], expected=repo['full_expected'])
        fault.survived()
    finally:
        with open(manifest, 'wb') as out:
            out.write(original)
    fi_lib.verify_backup(fault, small, repo['path'], inc['id'])


@pytest.mark.parametrize('kind', ['corrupted', 'newer format version'])
def test_damaged_repository_marker(small, repo, fault, kind):
    """repository.json damaged or from a newer format: every module refuses, nothing changes."""
    marker = os.path.join(repo['path'], 'repository.json')
    original = _corrupt(marker, kind)
    try:
        words = ['format version'] if kind == 'newer format version' else ['repository.json']
        _reject(fault, small, repo, 'virt_backup', _backup_args(small, repo), words, 'repository.json %s' % kind)
        _reject(fault, small, repo, 'virt_restore', _restore_args(small, repo), words, 'repository.json %s' % kind)
        _reject(fault, small, repo, 'virt_backup_info', dict(repository=repo['path']), words,
                'repository.json %s' % kind)
    finally:
        with open(marker, 'wb') as out:
            out.write(original)


def test_nothing_lost(small, repo, fault):
    """After every bad input above the repository backs up incrementally and restores bit-exact."""
    fault.inject('the repository after all the bad input')
    small.start()
    small.write('vda', 80 * MiB, MiB, 0xa2)
    last = sorted(read_manifests(repo['path'], small.name).values(), key=lambda m: m['started'])[-1]
    fi_lib.assert_next_run(fault, small, repo['path'], base=dict(id=last['id'], checkpoint=last['checkpoint']),
                           expect_level='incremental')
    fault.survived()
