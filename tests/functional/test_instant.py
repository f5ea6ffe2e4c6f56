# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""virt_restore mode instant on a real libvirtd with TCG domains: the new domain's disks read,
through QEMU's own block layer, exactly what the backup point holds; guest writes go to the
overlays and never reach the repository; check mode and a second run change nothing; a block
copy with pivot frees the domain from the repository (moved away, the domain runs and restarts)
and the next run stops serving it; a header backing name planted in the repository is refused."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import shutil

import pytest

from support.guests import remove_domain, unique
from support.host import MiB, sh
from support.images import image_info
from support.modules import failed, ok, run_module
import ftlib
import instlib
from instlib import EXPORTS


@pytest.fixture
def restored(conn, source):
    """Names used by one test (domain inst-r-*, its dest), removed afterwards, also on failure."""
    made = dict(name=unique('inst-r'))
    made['dest'] = source.root / made['name']
    yield made
    remove_domain(conn, made['name'])
    instlib.stop_export('instant-%s' % made['name'])
    shutil.rmtree(str(made['dest']), ignore_errors=True)


def instant(source, made, check_mode=False, **args):
    args = dict(dict(mode='instant', new_name=made['name'], start=True), **args)
    return ftlib.restore(source.name, source.repo, made['dest'], check_mode=check_mode, **args)


def test_instant_domain_reads_the_backup_point_and_is_idempotent(conn, source, restored):
    backup_id, raws = source.points[-1]
    predicted = ok(instant(source, restored, check_mode=True))
    assert predicted['changed'] is True
    assert conn.get().listAllDomains(0) and restored['name'] not in [d.name() for d in conn.get().listAllDomains(0)]
    assert not (EXPORTS / ('instant-%s' % restored['name'])).exists()
    assert not restored['dest'].exists()

    result = ok(instant(source, restored))
    assert result['changed'] is True and result['backup']['id'] == backup_id
    dom = conn.get().lookupByName(restored['name'])
    assert dom.isActive() == 1
    assert result['domain']['uuid'] != source.lv.get().lookupByName(source.name).UUIDString()
    assert '52:54:00:6a:11:01' not in dom.XMLDesc(0)      # new MAC addresses
    paths = dict((d['name'], d['path']) for d in result['disks'])
    assert paths == dict((t, str(restored['dest'] / ('%s.qcow2' % t))) for t in ('vda', 'vdb'))
    for target, path in paths.items():
        assert os.path.isfile(path)
        # The overlay holds no data of its own: the backup point is beneath it.
        assert image_info(path)['actual-size'] < 1 * MiB
        got = instlib.read_through_domain(dom, target, source.root, str(source.root / ('got-%s.raw' % target)))
        instlib.assert_same_file(raws[target], got)
    pid = result['export']['pid']
    assert instlib.pid_alive(pid)

    again = ok(instant(source, restored))
    assert again['changed'] is False and again['export']['pid'] == pid
    assert ok(instant(source, restored, check_mode=True))['changed'] is False
    # Its export is not stopped under it by virt_backup_export.
    failed(run_module('virt_backup_export', dict(name='instant-%s' % restored['name'], state='absent')),
           'backs the disks vda, vdb of domain %s' % restored['name'])
    assert instlib.pid_alive(pid)


def test_guest_writes_stay_in_the_overlay_and_the_pivot_frees_the_domain(conn, source, restored):
    backup_id, raws = source.points[-1]
    before = source.repo_files()
    result = ok(instant(source, restored))
    dom = conn.get().lookupByName(restored['name'])
    export_uri = dict((d['name'], d['uri']) for d in result['export']['disks'])['vda']

    instlib.guest_write(dom, 'vda', 1 * MiB, 128 * 1024, 0x5e)
    instlib.guest_write(dom, 'vda', 0, 4096, 0x5f)
    expected = instlib.patch_raw(raws['vda'], source.root / 'expected-vda.raw', 1 * MiB, 128 * 1024, 0x5e)
    with open(str(expected), 'r+b') as f:
        f.write(b'\x5f' * 4096)
    got = instlib.read_through_domain(dom, 'vda', source.root, str(source.root / 'written-vda.raw'))
    instlib.assert_same_file(expected, got)
    # The repository is unchanged, file by file (content, owner, mode: QEMU was never given it),
    # and the export still serves the backup as it was.
    assert source.repo_files() == before
    served = instlib.read_uri(export_uri, str(source.root / 'served-vda.raw'))
    instlib.assert_same_file(raws['vda'], served)

    # Final storage while the domain runs: a block copy with pivot of each disk.
    final = source.root / ('%s-final' % restored['name'])
    final.mkdir(mode=0o711)
    for target in ('vda', 'vdb'):
        ok(run_module('virt_blockjob', dict(name=restored['name'], disk=target, operation='copy',
                                            dest=str(final / ('%s.qcow2' % target)), pivot=True)))
    predicted = ok(instant(source, restored, check_mode=True))
    assert predicted['changed'] is True and predicted['export_stopped'] == 'instant-%s' % restored['name']
    assert instlib.pid_alive(result['export']['pid'])
    after = ok(instant(source, restored))
    assert after['changed'] is True and after['export'] is None
    assert not instlib.pid_alive(result['export']['pid'])
    assert not (EXPORTS / ('instant-%s' % restored['name'])).exists()
    assert ok(instant(source, restored))['changed'] is False

    away = source.root / 'repo-away'
    os.rename(str(source.repo), str(away))
    try:
        assert dom.isActive() == 1
        got = instlib.read_through_domain(dom, 'vda', source.root, str(source.root / 'pivoted-vda.raw'))
        instlib.assert_same_file(expected, got)
        dom.destroy()
        dom.create()        # restarts without the repository (and without the export)
        got = instlib.read_through_domain(dom, 'vda', source.root, str(source.root / 'restarted-vda.raw'))
        instlib.assert_same_file(expected, got)
        got = instlib.read_through_domain(dom, 'vdb', source.root, str(source.root / 'restarted-vdb.raw'))
        instlib.assert_same_file(raws['vdb'], got)
    finally:
        os.rename(str(away), str(source.repo))
    shutil.rmtree(str(final), ignore_errors=True)


def test_restart_after_export_lost_and_earlier_point(conn, source, restored):
    """The daemon is gone (as after a host reboot): the same task serves the point again; an
    earlier point by id reads as that point."""
    first_id, raws = source.points[0]
    result = ok(instant(source, restored, backup=first_id, start=False))
    dom = conn.get().lookupByName(restored['name'])
    assert dom.isActive() == 0
    os.kill(result['export']['pid'], 15)
    predicted = ok(instant(source, restored, backup=first_id, check_mode=True))
    assert predicted['changed'] is True and predicted['domain']['state'] == 'running'
    assert dom.isActive() == 0 and not instlib.pid_alive(result['export']['pid'])
    again = ok(instant(source, restored, backup=first_id))
    assert again['domain']['state'] == 'running'
    assert {k: v for k, v in predicted['domain'].items() if k != 'xml'} == \
        {k: v for k, v in again['domain'].items() if k != 'xml'}
    assert again['changed'] is True and again['export']['pid'] != result['export']['pid']
    assert dom.isActive() == 1
    for target in ('vda', 'vdb'):
        got = instlib.read_through_domain(dom, target, source.root, str(source.root / ('p1-%s.raw' % target)))
        instlib.assert_same_file(raws[target], got)
    # Another point under the same new_name is another domain's business: refused.
    msg = failed(instant(source, restored), 'exists already and is not an instant restore of backup')
    assert restored['name'] in msg
    # The usual cause is backup: latest after a newer backup of the source; the message
    # names the point the domain runs from and how to manage it.
    assert 'it runs from backup %s: give backup: %s to manage it' % (first_id, first_id) in msg, msg
    assert 'backup: latest names backup %s now' % source.points[-1][0] in msg, msg


def test_tampered_header_backing_name_is_not_followed(conn, source, restored):
    """A full image whose header names a host file as its backing file (the manifest gives it
    none): nothing is served, defined or created."""
    tampered = source.root / 'repo-tampered'
    shutil.copytree(str(source.repo), str(tampered), symlinks=True)
    try:
        full_id = source.points[0][0]
        image = next(tampered.glob('%s/*/%s/vda.qcow2' % (source.name, full_id)))
        sh('qemu-img', 'rebase', '-u', '-f', 'qcow2', '-b', '/etc/hostname', '-F', 'raw', image)
        result = ftlib.restore(source.name, tampered, restored['dest'], mode='instant', new_name=restored['name'],
                               start=True)
        failed(result, 'names a backing file', '/etc/hostname', 'Nothing was changed')
        assert restored['name'] not in [d.name() for d in conn.get().listAllDomains(0)]
        assert not (EXPORTS / ('instant-%s' % restored['name'])).exists()
        assert not restored['dest'].exists()
        exported = run_module('virt_backup_export', dict(name='inst-tampered', repository=str(tampered),
                                                         domain=source.name))
        failed(exported, 'names a backing file', 'Nothing was changed')
        assert not (EXPORTS / 'inst-tampered').exists()
    finally:
        shutil.rmtree(str(tampered), ignore_errors=True)


def test_bad_input_changes_nothing(conn, source, restored):
    failed(instant(source, restored, format='raw'), 'format raw is for mode copy')
    failed(ftlib.restore(source.name, source.repo, restored['dest'], start=True, define=True,
                         new_name=restored['name']), 'start: true is for mode instant')
    hidden = source.root / 'private'
    hidden.mkdir(mode=0o700)
    try:
        failed(ftlib.restore(source.name, source.repo, hidden / 'r', mode='instant', new_name=restored['name']),
               'QEMU cannot reach the overlays', 'nothing was changed')
        assert not (hidden / 'r').exists()
    finally:
        hidden.rmdir()
    assert restored['name'] not in [d.name() for d in conn.get().listAllDomains(0)]
    assert not (EXPORTS / ('instant-%s' % restored['name'])).exists()


def test_a_repository_in_a_directory_of_another_user_is_refused(conn, source, restored):
    """Found by QA (issue 13): root never works by path below a directory another user owns (they
    could swap the repository between two steps). Instant restore and export refuse, nothing made."""
    theirs = source.root / 'theirs'
    theirs.mkdir(mode=0o755)
    try:
        shutil.copytree(str(source.repo), str(theirs / 'repo'), symlinks=True)
        os.chown(str(theirs), 65534, 65534)
        result = ftlib.restore(source.name, theirs / 'repo', restored['dest'], mode='instant',
                               new_name=restored['name'], start=True)
        failed(result, 'theirs is owned by uid 65534', 'Nothing was changed')
        assert restored['name'] not in [d.name() for d in conn.get().listAllDomains(0)]
        assert not (EXPORTS / ('instant-%s' % restored['name'])).exists()
        assert not restored['dest'].exists()
        exported = run_module('virt_backup_export', dict(name='inst-theirs', repository=str(theirs / 'repo'),
                                                         domain=source.name))
        failed(exported, 'owned by uid 65534')
        assert not (EXPORTS / 'inst-theirs').exists()
    finally:
        shutil.rmtree(str(theirs), ignore_errors=True)


def test_prune_keeps_the_point_an_instant_restore_runs_from(conn, source, restored):
    """Found by QA (issue 13): prune removed (and merge moved) the point a running instant restore
    needs. It stays, kept by its export, and its chain is not merged (check mode predicts exactly
    what a run does; the shared repository stays as it is for the other tests)."""
    first_id = source.points[0][0]
    ok(instant(source, restored, backup=first_id, start=False))
    pruned = ok(run_module('virt_backup_prune', dict(repository=str(source.repo), domains=[source.name],
                                                     keep_last=1, merge=True), check_mode=True))
    assert '%s/%s' % (source.name, first_id) not in pruned['removed']
    assert pruned['domains'][0]['merges'] == []
    kept = dict((k['id'], k['kept_by']) for k in pruned['domains'][0]['kept'])
    assert 'served by export instant-%s' % restored['name'] in kept[first_id]


def test_a_running_domain_whose_export_died_gets_a_warning(conn, source, restored):
    """Found by QA (issue 13): the daemon dies while the domain runs; the next run serves the point
    again, but QEMU does not reconnect, so its reads keep failing: the run says so."""
    result = ok(instant(source, restored))
    os.kill(result['export']['pid'], 9)
    again = ok(instant(source, restored))
    assert again['changed'] is True and again['export']['pid'] != result['export']['pid']
    # ansible-core 2.19+ wraps warnings in a dict; older versions return the text.
    assert 'was running while the daemon serving its backup point was gone' in str(again.get('warnings')), again
    dom = conn.get().lookupByName(restored['name'])
    dom.destroy()
    quiet = ok(instant(source, restored))
    assert quiet['changed'] is True and not quiet.get('warnings') and dom.isActive() == 1


def test_diff_mode_and_prune_after_the_export_state_is_gone(conn, source):
    """Diff mode shows the overlays, the export and the domain a run makes, and check mode shows the
    same diff as the real run. With the export state gone (as after a host reboot), prune still
    keeps the point: the domain's definition records it."""
    name = unique('fu-inst')
    dest = source.root / name
    first_id = source.points[0][0]
    args = dict(domain=source.name, repository=str(source.repo), dest=str(dest), mode='instant', new_name=name,
                backup=first_id, start=False)
    try:
        predicted = ok(run_module('virt_restore', args, check_mode=True, diff=True))
        assert not dest.exists()
        result = ok(run_module('virt_restore', args, diff=True))
        assert predicted['diff'] == result['diff']
        diff = result['diff']
        assert diff['before'] == dict(files={}, export=None, domain=None)
        assert diff['after']['domain'] == dict(name=name, state='shutoff')
        assert diff['after']['files'] == dict(
            (d['path'], 'qcow2 overlay on %s' % d['backing']) for d in result['disks'])
        assert set(diff['after']['files']) == set(str(dest / ('%s.qcow2' % t)) for t in ('vda', 'vdb'))
        assert diff['after']['export'].startswith('instant-%s: backup %s of domain %s from %s' % (
            name, first_id, source.name, source.repo))
        assert 'diff' not in ok(run_module('virt_restore', args))

        # The export is gone and so is its state (a reboot empties /run): prune keeps the point by
        # the domain's definition (check mode predicts what a run does; the repository stays shared).
        instlib.stop_export('instant-%s' % name)
        assert not (EXPORTS / ('instant-%s' % name)).exists()
        pruned = ok(run_module('virt_backup_prune', dict(repository=str(source.repo), domains=[source.name],
                                                         keep_last=1, merge=True), check_mode=True))
        assert '%s/%s' % (source.name, first_id) not in pruned['removed']
        assert pruned['domains'][0]['merges'] == []
        kept = dict((k['id'], k['kept_by']) for k in pruned['domains'][0]['kept'])
        assert 'used by instant-restored domain %s' % name in kept[first_id]
        assert not [r for r in kept[first_id] if r.startswith('served by export')]

        # The same task serves the point again and starts the domain: predicted exactly.
        args['start'] = True
        predicted = ok(run_module('virt_restore', args, check_mode=True, diff=True))
        again = ok(run_module('virt_restore', args, diff=True))
        assert again['changed'] is True and predicted['diff'] == again['diff']
        assert again['diff']['before']['export'] is None
        assert again['diff']['after']['export'] == diff['after']['export']
        assert again['diff']['before']['files'] == again['diff']['after']['files'] == diff['after']['files']
        assert (again['diff']['before']['domain'], again['diff']['after']['domain']) == (
            dict(name=name, state='shutoff'), dict(name=name, state='running'))
        quiet = ok(run_module('virt_restore', args, diff=True))
        assert quiet['changed'] is False and quiet['diff']['before'] == quiet['diff']['after']
    finally:
        remove_domain(conn, name)
        instlib.stop_export('instant-%s' % name)
        shutil.rmtree(str(dest), ignore_errors=True)
