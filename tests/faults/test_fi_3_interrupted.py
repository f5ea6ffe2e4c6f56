# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""3. Interrupted runs: the module killed, libvirtd restarted, the repository full, the NBD socket removed.

Afterwards: no backup job on the domain, no scratch file or socket, no helper process; the partial
backup is not listed and the next run removes it; the failed run's checkpoint is gone and never
taken for a good one; the next run succeeds, builds on the last good backup and restores bit-exact.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import signal
import subprocess
import time

import pytest

from support.host import CheckFailed, MiB, wait_until
from support.modules import failed, ModuleRun, ok, run_module
from support.repository import checkpoint_prefix, partial_dirs, run_dirs, staging_dir
import fi_lib


@pytest.fixture(scope='module')
def chain(big):
    """A repository holding a good full backup of fi-big; the cases continue its chain."""
    big.start()
    repo = fi_lib.new_repo_path('interrupted')
    full = fi_lib.backup(big, repo)
    return dict(repo=repo, last=full, verified=False)


_RUNS = []


@pytest.fixture(autouse=True)
def _no_run_left():
    """A case that fails while its run goes on kills the run: left alone, it would finish a backup
    that the next case's chain does not expect."""
    yield
    while _RUNS:
        run = _RUNS.pop()
        if run.alive():
            run.kill9()
        run.close()


def _good(chain, guest, fault):
    """The last good backup, verified once (its restore counts for bytes lost)."""
    if not chain['verified']:
        fi_lib.verify_backup(fault, guest, chain['repo'], chain['last']['id'])
        chain['verified'] = True
    return chain['last']


def _transfer_under_way(repo, domain, disk='vda', at_least=48 * MiB):
    """The partial backup directory once its image of disk holds at_least bytes, else None."""
    for path in partial_dirs(repo, domain):
        image = os.path.join(path, '%s.qcow2' % disk)
        if os.path.exists(image) and os.path.getsize(image) >= at_least:
            return path
    return None


def _push_under_way(repo, domain, disk='vda', at_least=8 * MiB):
    """The partial backup directory once QEMU's push target of disk holds at_least bytes, else None."""
    staging = staging_dir(repo, domain)
    if not os.path.isdir(staging):
        return None
    for name in os.listdir(staging):
        if name.startswith(domain + '-') and name.endswith('-%s.qcow2' % disk) and \
                os.path.getsize(os.path.join(staging, name)) >= at_least:
            backup_id = name[len(domain) + 1:-len('-%s.qcow2' % disk)]
            for path in partial_dirs(repo, domain):
                if os.path.basename(path) == backup_id:
                    return path
    return None


class EndedEarly(Exception):
    """The run ended before the fault could be injected; result is its module result."""

    def __init__(self, result):
        Exception.__init__(self, 'the backup ended before the fault could be injected: %s' % (
            result.get('msg') or 'it succeeded'))
        self.result = result


def _start_long_run(guest, repo, **args):
    """A virt_backup run (level full) caught mid-transfer and held there (SIGSTOP): (run, its partial
    backup directory). Held at once, because a pull of fi-big's 512 MiB takes well under a second:
    the run can then neither finish nor commit before the fault lands. Raises EndedEarly if the run
    ended first."""
    params = dict(domain=guest.name, repository=repo, level='full')
    params.update(args)
    run = ModuleRun('virt_backup', params)
    _RUNS.append(run)
    under_way = _push_under_way if params.get('mode') == 'push' else _transfer_under_way
    try:
        partial = wait_until(lambda: under_way(repo, guest.name) or (not run.alive() and 'ended'),
                             120, 'the transfer to get under way', interval=0.02)
    except CheckFailed:
        run.kill9()
        run.close()
        raise
    if partial == 'ended':
        raise EndedEarly(run.wait())
    run.pause()
    return run, partial


def _failed_checkpoint(repo, partial):
    return checkpoint_prefix(repo) + os.path.basename(partial)


def test_kill9_mid_transfer(big, chain, fault):
    """kill -9 of the module process while a pull backup copies data; the watchdog cleans up."""
    repo = chain['repo']
    good = _good(chain, big, fault)
    big.write('vda', 100 * MiB, 2 * MiB, 0x81)
    run, partial = _start_long_run(big, repo)
    fault.inject('kill -9 of virt_backup mid-transfer (pull, %s copied)' % os.path.getsize(
        os.path.join(partial, 'vda.qcow2')))
    assert big.job_active(), 'no backup job while the transfer runs'
    run.kill9()
    run.close()
    failed_ck = _failed_checkpoint(repo, partial)
    fi_lib.assert_aftermath(big, repo, fi_lib.listed_ids(repo, big.name), failed_checkpoints=[failed_ck])
    nxt = fi_lib.assert_next_run(fault, big, repo, base=good, expect_level='incremental')
    chain['last'] = nxt
    fault.survived()


def _push_caught(guest, chain, fault, attempts=8):
    """A full push run whose job was seen running: (run, partial). QEMU pushes fi-big's 512 MiB in
    about half a second, which a test process waiting for a core can miss: a run that ended, or
    whose job ended, before the test looked is waited for, must have made a good backup (the new
    base of the chain), and another run is started. The run is returned held (SIGSTOP), so that
    it cannot commit even if QEMU's job ends before the fault lands."""
    repo = chain['repo']
    for attempt in range(attempts):
        guest.write('vda', (150 + attempt) * MiB, MiB, 0x85)
        try:
            run, partial = _start_long_run(guest, repo, mode='push')
            if guest.job_active():
                return run, partial
            run.resume()
            result = run.wait()
        except EndedEarly as early:
            result = early.result
        chain['last'] = ok(result, 'the push that ended before the test looked')['backup']
        fault.note('attempt %d: the push ended before the test looked' % (attempt + 1))
    raise CheckFailed('%d pushes in a row ended before the test looked' % attempts)


def test_kill9_push_mid_job(big, chain, fault):
    """kill -9 of the module process while QEMU pushes the backup into the repository's staging directory."""
    repo = chain['repo']
    _good(chain, big, fault)
    big.start()
    run, partial = _push_caught(big, chain, fault)
    good = chain['last']
    fault.inject('kill -9 of virt_backup while QEMU pushes the backup (push mode)')
    run.kill9()
    run.close()
    failed_ck = _failed_checkpoint(repo, partial)
    fi_lib.assert_aftermath(big, repo, fi_lib.listed_ids(repo, big.name), failed_checkpoints=[failed_ck])
    nxt = fi_lib.assert_next_run(fault, big, repo, base=good, expect_level='incremental', mode='push')
    chain['last'] = nxt
    fault.survived()


def test_kill9_module_and_watchdog(big, chain, fault):
    """kill -9 of the module and of its watchdog at once (as an OOM kill of the whole job would): the job, the
    checkpoint and the partial backup stay behind, and the next run of the repository removes them."""
    repo = chain['repo']
    good = _good(chain, big, fault)
    big.start()
    big.write('vda', 400 * MiB, MiB, 0x86)
    run, partial = _start_long_run(big, repo)
    fault.inject('kill -9 of virt_backup and of its watchdog mid-transfer')
    watchdogs = fi_lib.watchdog_processes(big.dom.UUIDString())
    assert len(watchdogs) == 1, watchdogs
    os.kill(watchdogs[0], 9)
    run.kill9()
    run.close()
    failed_ck = _failed_checkpoint(repo, partial)
    time.sleep(1)
    left = dict(job=big.job_active(), partial=os.path.isdir(partial), checkpoint=failed_ck in big.checkpoints())
    fault.note('left behind: %s' % ', '.join(k for k, v in sorted(left.items()) if v))
    assert os.path.basename(partial) not in fi_lib.listed_ids(repo, big.name), 'the partial backup is listed'
    stale_dirs = run_dirs(repo, big.name)
    nxt = ok(run_module('virt_backup', dict(domain=big.name, repository=repo), dead_ok=True))
    assert partial in nxt['removed_partial'] or not left['partial'], nxt['removed_partial']
    assert failed_ck in nxt['removed_checkpoints'] or not left['checkpoint'], nxt['removed_checkpoints']
    assert nxt['aborted_stale_job'] or not left['job']
    assert set(stale_dirs) <= set(nxt['removed_partial']), (stale_dirs, nxt['removed_partial'])
    backup = nxt['backup']
    assert (backup['level'], backup['parent']) == ('incremental', good['id']), backup
    fi_lib.assert_aftermath(big, repo, fi_lib.listed_ids(repo, big.name))
    fi_lib.verify_backup(fault, big, repo, backup['id'])
    chain['last'] = backup
    fault.survived()


def _another_job(guest, job_xml):
    """True while the domain runs a backup job other than the one whose XML is job_xml."""
    current = guest.job_xml()
    return current is not None and current != job_xml


def test_late_watchdog_spares_the_next_run(big, chain, fault):
    """A killed run's watchdog that acts late (held here with SIGSTOP, as one waiting for a restarted
    libvirtd would be) finds the next run's job, not its own: it must leave that job, that run's
    checkpoint and its files alone (even when both runs started within one second)."""
    repo = chain['repo']
    _good(chain, big, fault)
    big.start()
    fault.inject('kill -9 of virt_backup with its watchdog held; the watchdog resumes during the next run')
    for attempt in range(4):
        big.write('vda', (250 + attempt) * MiB, MiB, 0x87)
        try:
            killed, killed_partial = _start_long_run(big, repo)
        except EndedEarly as early:
            chain['last'] = ok(early.result, 'the run that ended before the test looked')['backup']
            fault.note('attempt %d: the first run ended before the test looked' % (attempt + 1))
            continue
        killed_job = big.job_xml()
        [late_watchdog] = fi_lib.watchdog_processes(big.dom.UUIDString())
        os.kill(late_watchdog, signal.SIGSTOP)
        killed.kill9()
        killed.close()
        # Partial backups as runs killed in the seconds to come would leave them: the next run removes
        # them too, and must take none of their ids (a late watchdog acts on its run's id).
        planted = [time.strftime('%Y%m%dT%H%M%SZ', time.gmtime(time.time() + s)) for s in range(1, 30)]
        for backup_id in planted:
            os.mkdir(os.path.join(os.path.dirname(killed_partial), backup_id), 0o700)
        try:
            # The next run removes the killed run's job and partial backup, then starts its own job,
            # and is held (SIGSTOP) while the late watchdog looks at the domain.
            nxt = ModuleRun('virt_backup', dict(domain=big.name, repository=repo, level='full'))
            _RUNS.append(nxt)
            wait_until(lambda: _another_job(big, killed_job) or not nxt.alive(), 120,
                       'the next run to start its job', interval=0.01)
            nxt.pause()
            held = _another_job(big, killed_job)
        finally:
            os.kill(late_watchdog, signal.SIGCONT)
        # Gone from the watchdog processes once it exits (a zombie has no command line: nobody may
        # reap a watchdog whose run was killed).
        wait_until(lambda: late_watchdog not in fi_lib.watchdog_processes(big.dom.UUIDString()), 90,
                   'the late watchdog to finish')
        if held:
            break
        nxt.resume()
        chain['last'] = ok(nxt.wait(), 'the next run that ended before the test looked')['backup']
        fault.note('attempt %d: the next run ended its job before the test looked' % (attempt + 1))
    else:
        raise CheckFailed('four attempts in a row ended before the test looked')
    try:
        assert big.job_active(), 'the late watchdog aborted the backup job of the next run'
    finally:
        nxt.resume()
    res = ok(nxt.wait(), 'the next run, after the late watchdog')
    assert res['aborted_stale_job'] and killed_partial in res['removed_partial'], res
    removed_ids = [os.path.basename(path) for path in res['removed_partial']]
    assert set(planted) <= set(removed_ids), (planted, removed_ids)
    assert res['backup']['id'] not in removed_ids, 'the next run took the id of a partial backup it removed'
    fi_lib.assert_aftermath(big, repo, fi_lib.listed_ids(repo, big.name))
    fi_lib.verify_backup(fault, big, repo, res['backup']['id'])
    chain['last'] = res['backup']
    fault.survived()


def test_kill9_offline_backup(big, chain, fault):
    """kill -9 of the module process while it reads a shut-off domain through qemu-nbd."""
    repo = chain['repo']
    good = _good(chain, big, fault)
    big.destroy()
    big.write('vda', 200 * MiB, MiB, 0x82)
    run, partial = _start_long_run(big, repo)
    fault.inject('kill -9 of virt_backup mid-transfer (offline, qemu-nbd reading the qcow2)')
    run.kill9()
    run.close()
    failed_ck = _failed_checkpoint(repo, partial)
    fi_lib.assert_aftermath(big, repo, fi_lib.listed_ids(repo, big.name), failed_checkpoints=[failed_ck])
    assert failed_ck not in big.image_bitmaps('vda'), 'the killed run left its bitmap in the image'
    nxt = fi_lib.assert_next_run(fault, big, repo, base=good, expect_level='incremental')
    assert nxt['mode'] == 'offline'
    chain['last'] = nxt
    big.start()
    fault.survived()


def test_libvirtd_restarted_mid_job(host, big, chain, fault):
    """libvirtd restarted while a pull backup copies data."""
    repo = chain['repo']
    good = _good(chain, big, fault)
    big.start()
    big.write('vda', 300 * MiB, MiB, 0x83)
    run, partial = _start_long_run(big, repo)
    fault.inject('libvirtd restarted mid-job')
    # The run is held (SIGSTOP) mid-transfer while libvirtd restarts, so the restart falls inside the job.
    try:
        outage = host.restart_libvirtd()
    finally:
        run.resume()
    fault.note('libvirtd was away for %.1f s' % outage)
    res = run.wait()
    fault.note('the interrupted run: %s' % (res.get('msg') or 'succeeded'))
    good_ids = fi_lib.listed_ids(repo, big.name)
    if res.get('failed'):
        failed(res, ignore_case=True)    # a clear message, not a traceback
        fi_lib.assert_aftermath(big, repo, good_ids, failed_checkpoints=[_failed_checkpoint(repo, partial)])
        base = good
    else:
        # It got through: then it must be a good backup.
        fi_lib.verify_backup(fault, big, repo, res['backup']['id'])
        fi_lib.assert_aftermath(big, repo, good_ids)
        base = res['backup']
    nxt = fi_lib.assert_next_run(fault, big, repo, base=base, expect_level='incremental')
    chain['last'] = nxt
    fault.survived()


def test_nbd_socket_removed(big, chain, fault):
    """The NBD socket of the export removed while the backup runs: the next disk cannot connect."""
    repo = chain['repo']
    good = _good(chain, big, fault)
    big.start()
    big.write('vdb', 10 * MiB, MiB, 0x84)
    run, partial = _start_long_run(big, repo)
    sockets = [os.path.join(d, 'nbd.sock') for d in run_dirs(repo, big.name)]
    sockets = [s for s in sockets if os.path.exists(s)]
    assert len(sockets) == 1, sockets
    fault.inject('NBD export socket %s removed mid-backup' % sockets[0])
    os.unlink(sockets[0])
    run.resume()
    res = run.wait()
    good_ids = fi_lib.listed_ids(repo, big.name)
    if res.get('failed'):
        msg = failed(res, ('nbd', 'socket', 'connect'), ignore_case=True)
        fault.note('the run without its socket failed: %s' % msg)
        fi_lib.assert_aftermath(big, repo, good_ids, failed_checkpoints=[_failed_checkpoint(repo, partial)])
        base = good
    else:
        fault.note('the run without its socket succeeded (every connection was open already)')
        fi_lib.verify_backup(fault, big, repo, res['backup']['id'])
        fi_lib.assert_aftermath(big, repo, good_ids)
        base = res['backup']
    nxt = fi_lib.assert_next_run(fault, big, repo, base=base, expect_level='incremental')
    chain['last'] = nxt
    fault.survived()


@pytest.fixture
def tmpfs_repo():
    path = fi_lib.new_repo_path('enospc')
    os.makedirs(path, 0o711)
    subprocess.check_call(['mount', '-t', 'tmpfs', '-o', 'size=64m,mode=0711', 'tmpfs', path])
    try:
        yield path
    finally:
        for _attempt in range(20):
            if subprocess.call(['umount', path]) == 0:
                break
            time.sleep(0.5)
        else:
            subprocess.call(['umount', '-l', path])
        os.rmdir(path)


def test_repository_full(small, tmpfs_repo, fault):
    """ENOSPC: the repository (a 64 MiB tmpfs) fills up during an incremental (pull, then push)."""
    repo = tmpfs_repo
    # QEMU opens scratch files and push targets inside the repository. It runs in its own mount
    # namespace, which sees no mount made after it started (no propagation on this host):
    # start it again after mounting the tmpfs.
    small.destroy()
    small.start()
    good = fi_lib.backup(small, repo)
    fi_lib.verify_backup(fault, small, repo, good['id'])
    for piece in fi_lib.spread(128 * MiB, 80 * MiB, 4 * MiB, 0x30, start=2 * MiB):
        small.write('vda', *piece)

    for mode in ('pull', 'push'):
        fault.inject('repository filesystem full (ENOSPC) during a %s incremental' % mode)
        before = fi_lib.listed_ids(repo, small.name)
        res = run_module('virt_backup', dict(domain=small.name, repository=repo, mode=mode), dead_ok=True)
        msg = failed(res, ('no space', 'enospc', 'space'), ignore_case=True)
        fault.note('%s run on a full repository: %s' % (mode, msg))
        fi_lib.assert_aftermath(small, repo, before)
        fault.survived()

    subprocess.check_call(['mount', '-o', 'remount,size=512m', repo])
    nxt = fi_lib.assert_next_run(fault, small, repo, base=good, expect_level='incremental')
    assert nxt['disks'][0]['dirty_bytes'] >= 80 * MiB
