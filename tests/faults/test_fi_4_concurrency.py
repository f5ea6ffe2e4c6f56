# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""4. Concurrency: two runs on one domain at once fail fast and clearly; different domains in parallel work."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import multiprocessing
import os
import shutil
import sys
import time

import pytest

from support.host import COLLECTIONS, MiB, qemu_owner, wait_until
from support.modules import failed, ModuleRun, ok, run_module
from support.repository import checkpoint_prefix, partial_dirs, repo_short_id, tree_state
import fi_lib


@pytest.fixture(scope='module')
def par(host):
    g = fi_lib.make_guest(host, 'fi-par', [('vda', 96 * MiB, fi_lib.spread(96 * MiB, 12 * MiB, MiB, 40))])
    yield g
    g.remove()


def _under_way(repo, domain):
    for path in partial_dirs(repo, domain):
        image = os.path.join(path, 'vda.qcow2')
        if os.path.exists(image) and os.path.getsize(image) >= 32 * MiB:
            return path
    return None


def test_two_runs_on_one_domain(big, small, fault):
    """A second virt_backup of a domain while one runs: the repository lock (same repository) or libvirt's
    job (another repository) stops it at once, with a clear message; the first run is not disturbed."""
    big.start()
    repo = fi_lib.new_repo_path('conc')
    other = fi_lib.new_repo_path('conc-other')
    fi_lib.backup(small, other)           # an existing repository that has never seen fi-big
    checkpoints = big.checkpoints()
    first = ModuleRun('virt_backup', dict(domain=big.name, repository=repo))
    try:
        wait_until(lambda: _under_way(repo, big.name) or not first.alive(), 120, 'the first run to copy data',
                   interval=0.02)
        # Held (SIGSTOP) mid-transfer, with its lock, job and connections, while the others try; held
        # first, then looked at: a pull of fi-big takes well under a second.
        first.pause()
        assert first.alive() and big.job_active(), 'the first run ended before the others could start'
        state = tree_state(repo)
        before_other = fi_lib.listed_ids(other, big.name)
        fault.inject('a second virt_backup of the same domain into the same repository')
        fault.inject('a second virt_backup of the same domain into another repository (libvirt job lock)')
        t0 = time.time()
        same = ModuleRun('virt_backup', dict(domain=big.name, repository=repo))
        another = ModuleRun('virt_backup', dict(domain=big.name, repository=other))
        res_same, res_other = same.wait(60), another.wait(60)
        seconds = time.time() - t0
        assert first.alive(), 'the first run ended before the others failed: not a concurrency test'

        msg = failed(res_same, 'another backup of domain fi-big', repo, ignore_case=True)
        fault.note('same repository, failed after %.1f s: %s' % (same.seconds, msg))
        assert same.seconds < 15, 'the second run took %.1f s to fail' % same.seconds
        assert _only_growth(state, tree_state(repo))
        fault.survived(1)

        msg = failed(res_other, 'busy with a backup job', ignore_case=True)
        fault.note('other repository, failed after %.1f s: %s' % (another.seconds, msg))
        assert another.seconds < 15, 'the run into another repository took %.1f s to fail' % another.seconds
        assert fi_lib.listed_ids(other, big.name) == before_other
        assert partial_dirs(other, big.name) == []
        prefix = checkpoint_prefix(other)
        assert [c for c in big.checkpoints() if c.startswith(prefix)] == []
        fault.survived(1)
        fi_lib.log('both failed within %.1f s' % seconds)

        first.resume()
        res = ok(first.wait(), 'the first run')
    finally:
        if first.alive():
            first.resume()
            first.kill9()
        first.close()
    assert res['backup']['level'] == 'full'
    assert [c for c in big.checkpoints() if c not in checkpoints] == [res['backup']['checkpoint']]
    fi_lib.verify_backup(fault, big, repo, res['backup']['id'])


def test_job_of_another_tool(small, fault):
    """A backup job that another tool holds on the domain (virsh backup-begin): virt_backup refuses, changes nothing."""
    small.start()
    repo = fi_lib.new_repo_path('foreign')
    good = fi_lib.backup(small, repo)
    tool_dir = os.path.join(small.dir, 'other-tool')
    os.mkdir(tool_dir, 0o700)
    os.chown(tool_dir, *qemu_owner())
    xml = ("<domainbackup mode='pull'><server transport='unix' socket='%s/nbd.sock'/><disks>"
           "<disk name='vda' backup='yes' type='file'><scratch file='%s/vda.scratch'/></disk></disks>"
           "</domainbackup>" % (tool_dir, tool_dir))
    small.dom.backupBegin(xml, None, 0)
    try:
        fault.inject('virt_backup while another tool holds a pull backup job on the domain')
        state = tree_state(repo)
        checkpoints = small.checkpoints()
        res = run_module('virt_backup', dict(domain=small.name, repository=repo), dead_ok=True)
        msg = failed(res, 'busy with a backup job', ignore_case=True)
        fault.note(msg)
        assert small.job_active() and tool_dir in small.job_xml(), 'the other tool\'s job was touched'
        assert tree_state(repo) == state
        assert small.checkpoints() == checkpoints
    finally:
        small.dom.abortJob()
        wait_until(lambda: not small.job_active(), 30, 'the other tool\'s job to end')
    small.write('vda', 60 * MiB, MiB, 0x94)
    fi_lib.assert_next_run(fault, small, repo, base=good, expect_level='incremental')
    fault.survived()


def _only_growth(before, after):
    """The first run's own files grew meanwhile; nothing of the second run appeared."""
    return set(after) >= set(before)


def test_parallel_domains_one_repository(big, small, par, fault):
    """Three domains backed up in parallel into one repository that does not exist yet, twice."""
    repo = fi_lib.new_repo_path('parallel')
    for g in (big, small, par):
        g.start()
    jobs = [(small, {}), (par, {}), (big, dict(disks=['vdb']))]
    for round_ in range(2):
        if round_:
            small.write('vda', 40 * MiB, MiB, 0x91)
            par.write('vda', 50 * MiB, 2 * MiB, 0x92)
            big.write('vdb', 30 * MiB, MiB, 0x93)
        fault.inject('%d domains backed up in parallel into one %s repository' % (
            len(jobs), 'new' if round_ == 0 else 'shared'))
        runs = [(g, ModuleRun('virt_backup', dict(domain=g.name, repository=repo, **extra)))
                for g, extra in jobs]
        results = [(g, r.wait()) for g, r in runs]
        for g, res in results:
            ok(res, 'parallel backup of %s' % g.name)
            level = res['backup']['level']
            assert level == ('full' if round_ == 0 else 'incremental'), (g.name, res['backup']['reason'])
        for g, res in results:
            expected = g.expected() if g is not big else {'vdb': big.disks['vdb'].shadow}
            fi_lib.verify_backup(fault, g, repo, res['backup']['id'], expected=expected)
        fault.survived()
    ids = ok(run_module('virt_backup_info', dict(repository=repo), dead_ok=True))
    assert sorted(d['name'] for d in ids['domains']) == sorted(g.name for g, _extra in jobs)


def _create_repository(path, barrier, results):
    sys.path.insert(0, str(COLLECTIONS))
    from ansible_collections.virtops.libvirt.plugins.module_utils.backup import _repository
    barrier.wait()
    try:
        results.put(('ok', _repository.Repository(path, create=True).id))
    except Exception as exc:  # pylint: disable=broad-except
        results.put(('error', str(exc)))


def test_new_repository_created_at_once(fault):
    """Six runs create one new repository at the same instant (a barrier): one repository id, no false error."""
    ctx = multiprocessing.get_context('fork')
    trials, width = 20, 6
    fault.inject('%d runs create one new repository at the same instant, %d times' % (width, trials))
    problems = []
    for trial in range(trials):
        path = fi_lib.new_repo_path('race')
        barrier, results = ctx.Barrier(width), ctx.Queue()
        procs = [ctx.Process(target=_create_repository, args=(path, barrier, results)) for _n in range(width)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(60)
        got = [results.get(timeout=10) for _proc in procs]
        ids = set(v for k, v in got if k == 'ok')
        errors = [v for k, v in got if k != 'ok']
        on_disk = repo_short_id(path)
        if errors or len(ids) != 1 or ids.pop().replace('-', '')[:8] != on_disk:
            count = len(set(v for k, v in got if k == 'ok'))
            problems.append('trial %d: %d ids, errors %s' % (trial, count, errors[:1]))
        assert sorted(os.listdir(path)) == ['repository.json'], os.listdir(path)
        shutil.rmtree(path)
    assert not problems, problems
    fault.survived()
