# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The push and restore cases of backup_bench.py (--only push, --only restore), issue 13.

push: a running domain with the full case's disk (4 GiB qcow2, 1 GiB random data). QEMU's own
push of that disk into a plain qcow2 target (virDomainBackupBegin, mode push, no checkpoint, the
target synced at the end) beside virt_backup mode=push level=full. Target: <= 1.25 x QEMU's push.

restore: the same kind of disk, backed up by virt_backup (pull) as a full and three incrementals of
64 MiB each, and by virtnbdbackup (full and three incrementals of the same data). Then, for the
full point and for the newest point (full + three incrementals): virt_restore to raw and to qcow2,
its bit-exact verification included, beside `qemu-img convert` of the same chain to the same format
(its output synced, as virt_restore syncs) and virtnbdrestore of virtnbdbackup's backup (which
writes qcow2). Targets: virt_restore <= 1.3 x qemu-img convert, and faster than virtnbdrestore.
Every domain is named bench-bk-*, everything else lives in the bench's work directory.
"""

from __future__ import absolute_import, division, print_function

import os
import shutil
import time

KiB = 1024
MiB = 1024 * KiB

TARGET_PUSH_VS_QEMU = 1.25        # virt_backup push full <= 1.25 x QEMU's own push into a qcow2
TARGET_RESTORE_VS_CONVERT = 1.3   # virt_restore (verification included) <= 1.3 x qemu-img convert
RESTORE = 'ansible_collections.virtops.libvirt.plugins.modules.virt_restore'
INCREMENTALS = 3


def _sync_file(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def qemu_push(b, bench, kind, case, name, data_bytes):
    """QEMU pushes the disk into a new plain qcow2 (no checkpoint, no backing): from backupBegin to the
    end of the job and the target's fsync."""
    n = bench.next_id()
    target = bench.path('qemu', '%d-push.qcow2' % n)
    xml = ("<domainbackup mode='push'><disks><disk name='vda' backup='yes' type='file'><target file='%s'/>"
           "<driver type='qcow2'/></disk></disks></domainbackup>" % target)
    dom = bench.dom(name)
    bench.quiesce()
    t0 = time.monotonic()
    dom.backupBegin(xml, None, 0)
    try:
        while True:
            stats = dom.jobStats(0)
            if stats.get('type', b.libvirt.VIR_DOMAIN_JOB_NONE) == b.libvirt.VIR_DOMAIN_JOB_NONE:
                break
            if time.monotonic() - t0 > bench.args.timeout:
                raise b.BenchError('QEMU push of %s did not finish within %d s' % (name, bench.args.timeout))
            time.sleep(0.01)
        if not os.path.exists(target):
            raise b.BenchError('QEMU push of %s wrote no target %s' % (name, target))
        _sync_file(target)
        seconds = time.monotonic() - t0
    finally:
        if dom.jobStats(0).get('type', b.libvirt.VIR_DOMAIN_JOB_NONE) != b.libvirt.VIR_DOMAIN_JOB_NONE:
            bench.end_job(name)
    size = os.path.getsize(target)
    os.unlink(target)
    res = b.Result(kind, case, 'QEMU push -> qcow2', seconds, data_bytes, 0.0, 0)
    res.note = 'target %s (QEMU\'s own CPU time is not counted)' % b.human_bytes(size)
    return res


def case_push(b, bench):
    a = bench.args
    case = 'push: %s disk, %s random data' % (b.human(a.full_size), b.human(a.full_data))
    b.log('case %s' % case)
    name = bench.start_domain(b.PREFIX + 'push', bench.make_disk('push', a.full_size, a.full_data))
    time.sleep(2)
    for rep in range(a.repeat):
        order = ['virt_backup', 'qemu'] if rep % 2 == 0 else ['qemu', 'virt_backup']
        for tool in order:
            if tool == 'qemu':
                res = bench.attempt('QEMU push', name, lambda: qemu_push(b, bench, 'push', case, name, a.full_data))
            else:
                repo = bench.path('repos', 'push-%d' % rep)

                def undo():
                    shutil.rmtree(repo, ignore_errors=True)
                    bench.delete_checkpoints(name, 'virtops-')
                res = bench.attempt('virt_backup push full', name, lambda: bench.virt_backup(
                    'push', case, name, repo, 'push', 'full', a.full_data), undo)
                undo()
            bench.record(res)
    bench.stop_domain(name)


def _restore(b, bench, kind, case, repo, name, backup_id, fmt, data_bytes):
    import _instant_bench    # pylint: disable=import-outside-toplevel  # bench/ is the script's directory
    dest = bench.path('out', '%d-restore' % bench.next_id())
    params = dict(domain=name, repository=repo, dest=dest, backup=backup_id, format=fmt)
    m, result = _instant_bench._module(b, bench, RESTORE, params, 'virt_restore of %s to %s' % (backup_id, fmt),
                                       sync=True)
    if not all(d['verified'] for d in result['disks']):
        raise b.BenchError('virt_restore of %s did not verify its disks' % backup_id)
    shutil.rmtree(dest, ignore_errors=True)
    res = b.Result(kind, case, 'virt_restore -> %s' % fmt, m.seconds, data_bytes, m.cpu, m.rss_kib,
                   m.child_rss_kib, child_name=m.child_name)
    res.note = 'verified bit-exact'
    return res


def _convert(b, bench, kind, case, image, fmt, data_bytes):
    n = bench.next_id()
    out = bench.path('out', '%d-convert.%s' % (n, fmt))
    bench.quiesce()
    t0 = time.monotonic()
    m = b.measure(['qemu-img', 'convert', '-O', fmt, image, out], bench.args.timeout,
                  bench.path('out', '%d-convert' % n))
    if m.code != 0:
        raise b.BenchError('qemu-img convert failed: %s' % m.err.strip())
    _sync_file(out)
    seconds = time.monotonic() - t0
    os.unlink(out)
    res = b.Result(kind, case, 'qemu-img convert -> %s' % fmt, seconds, data_bytes, m.cpu, m.rss_kib)
    res.note = 'output synced; no verification'
    return res


def _virtnbdrestore(b, bench, kind, case, source, until, data_bytes):
    n = bench.next_id()
    out = bench.path('out', '%d-virtnbdrestore' % n)
    cmd = ['virtnbdrestore', '-i', source, '-o', out, '-n', '-f', bench.path('qemu', '%d-vnr.sock' % n),
           '-L', bench.path('out', '%d-virtnbdrestore.log' % n)]
    if until:
        cmd += ['-u', until]
    bench.quiesce()
    t0 = time.monotonic()
    m = b.measure(cmd, bench.args.timeout, bench.path('out', '%d-virtnbdrestore' % n))
    if m.code != 0:
        raise b.BenchError('virtnbdrestore failed (exit %d): %s' % (m.code, (m.err or m.out).strip()[-3000:]))
    os.sync()
    seconds = time.monotonic() - t0
    shutil.rmtree(out, ignore_errors=True)
    res = b.Result(kind, case, 'virtnbdrestore -> qcow2', seconds, data_bytes, m.cpu, m.rss_kib, m.child_rss_kib,
                   child_name=m.child_name)
    res.note = 'virtnbdbackup\'s stream format to qcow2; synced'
    return res


def case_restore(b, bench):
    a = bench.args
    b.log('case restore: setting up %s disk, %s random data, a full and %d incrementals of %s'
          % (b.human(a.full_size), b.human(a.full_data), INCREMENTALS, b.human(a.inc_dirty)))
    image = bench.make_disk('restore', a.full_size, a.full_data)
    # virtnbdbackup refuses a domain with checkpoints it did not make: it backs up a twin domain
    # whose disk is a copy of the same image and gets the same writes.
    twin_image = bench.path('images', 'restore-twin.qcow2')
    b.run(['cp', '--sparse=always', image, twin_image], 'copying %s' % image)
    name = bench.start_domain(b.PREFIX + 'restore', image)
    twin = bench.start_domain(b.PREFIX + 'restore-twin', twin_image)
    time.sleep(2)
    repo = bench.path('repos', 'restore')
    vnb = bench.path('out', 'restore-virtnbdbackup')
    points = []
    for step in range(INCREMENTALS + 1):
        level = 'full' if step == 0 else 'incremental'
        if step:
            bench.dirty(name, a.full_size, a.inc_dirty, seed=step)
            bench.dirty(twin, a.full_size, a.inc_dirty, seed=step)
        res = bench.virt_backup('setup', 'setup: restore chain, %s' % level, name, repo, 'pull', level,
                                a.full_data if step == 0 else a.inc_dirty)
        bench.record(res)
        points.append(res.module)
        sock = bench.path('qemu', 'restore-vnb-%d.sock' % step)
        m = b.measure(['virtnbdbackup', '-U', b.URI, '-d', twin, '-l', 'full' if step == 0 else 'inc', '-o', vnb,
                       '-S', bench.path('qemu'), '-f', sock, '-n'], a.timeout,
                      bench.path('out', 'restore-virtnbdbackup-%d' % step))
        if m.code != 0:
            raise b.BenchError('virtnbdbackup %s failed (exit %d): %s' % (level, m.code, (m.err or m.out)[-3000:]))
    bench.stop_domain(name)
    bench.stop_domain(twin)
    chains = [('full', points[0], 'virtnbdbackup.0'), ('full + %d incrementals' % INCREMENTALS, points[-1], None)]
    for label, point, until in chains:
        case = 'restore: %s, %s data' % (label, b.human(a.full_data))
        b.log('case %s' % case)
        kind = 'restore-%s' % ('full' if until else 'chain')
        image = os.path.join(point['path'], 'vda.qcow2')
        for rep in range(a.repeat):
            steps = [('raw', 'restore'), ('raw', 'convert'), ('qcow2', 'restore'), ('qcow2', 'convert'),
                     (None, 'virtnbdrestore')]
            if rep % 2:
                steps.reverse()
            for fmt, tool in steps:
                if tool == 'restore':
                    res = _restore(b, bench, kind, case, repo, name, point['id'], fmt, a.full_data)
                elif tool == 'convert':
                    res = _convert(b, bench, kind, case, image, fmt, a.full_data)
                else:
                    res = _virtnbdrestore(b, bench, kind, case, vnb, until, a.full_data)
                bench.record(res)
    shutil.rmtree(vnb, ignore_errors=True)


def verdicts(b, bench, verdict):
    """The push and restore targets (called from Bench.report)."""
    ours = bench.best('push', 'virt_backup push')
    qemu = bench.best('push', 'QEMU push')
    if ours and qemu:
        ratio = ours.seconds / qemu.seconds
        verdict('virt_backup push full / QEMU push', '%.2f' % ratio, ratio <= TARGET_PUSH_VS_QEMU,
                '<= %.2f' % TARGET_PUSH_VS_QEMU, 'medians %.2f; engine alone %.2f s / %.2f s' % (
                    bench.median_seconds('push', 'virt_backup') / bench.median_seconds('push', 'QEMU'),
                    ours.module['duration'], qemu.seconds))
    for kind, label in (('restore-full', 'full'), ('restore-chain', 'full + %d inc' % INCREMENTALS)):
        for fmt in ('raw', 'qcow2'):
            restore = bench.best(kind, 'virt_restore -> %s' % fmt)
            convert = bench.best(kind, 'qemu-img convert -> %s' % fmt)
            if restore and convert:
                ratio = restore.seconds / convert.seconds
                verdict('virt_restore %s -> %s / qemu-img convert' % (label, fmt), '%.2f' % ratio,
                        ratio <= TARGET_RESTORE_VS_CONVERT, '<= %.1f' % TARGET_RESTORE_VS_CONVERT,
                        'medians %.2f; CPU %.2f s / %.2f s' % (
                            bench.median_seconds(kind, 'virt_restore -> %s' % fmt)
                            / bench.median_seconds(kind, 'qemu-img convert -> %s' % fmt), restore.cpu, convert.cpu))
        restore = bench.best(kind, 'virt_restore -> qcow2')
        vnr = bench.best(kind, 'virtnbdrestore')
        if restore and vnr:
            ratio = vnr.seconds / restore.seconds
            verdict('virtnbdrestore / virt_restore %s -> qcow2' % label, '%.2f' % ratio, ratio > 1.0, '> 1.0',
                    'medians %.2f' % (bench.median_seconds(kind, 'virtnbdrestore')
                                      / bench.median_seconds(kind, 'virt_restore -> qcow2')))
