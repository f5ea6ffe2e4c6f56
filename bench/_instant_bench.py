# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The instant-recovery case of backup_bench.py (--only instant).

For a 4 GiB and a 64 GiB disk (64 MiB of random data each, backed up offline once): the wall time
of virt_restore mode=instant start=true, from the module's start to its return with the new
domain running (defined, overlays made, the backup point served by qemu-storage-daemon, QEMU
started). Targets from issue 13: under 5 s for both, the two within 10 % of each other (the time
must not grow with the disk). Every restored domain is named bench-bk-instant-*, and its export is
stopped after each run, so the benchmark's own clean-up finds whatever is left.
"""

from __future__ import absolute_import, division, print_function

import json
import os

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB

SIZES = (('small', 4 * GiB), ('big', 64 * GiB))
DATA = 64 * MiB
TARGET_INSTANT_SECONDS = 5.0      # virt_restore mode=instant to a running domain, each size
TARGET_INSTANT_SPREAD = 1.10      # the slower size / the faster size
RESTORE = 'ansible_collections.virtops.libvirt.plugins.modules.virt_restore'
EXPORT = 'ansible_collections.virtops.libvirt.plugins.modules.virt_backup_export'
BACKUP = 'ansible_collections.virtops.libvirt.plugins.modules.virt_backup'


def _module(b, bench, module, params, label, sync=False):
    """Run a module as Ansible does; (backup_bench.Measured, result dict). b: the backup_bench module.
    sync: flush the page cache's dirty data first and settle memory (Bench.quiesce), so that the run
    does not pay for earlier writes."""
    n = bench.next_id()
    args_file = bench.path('out', '%d-args.json' % n)
    with open(args_file, 'w') as out:
        json.dump(dict(ANSIBLE_MODULE_ARGS=params), out)
    env = dict(os.environ, PYTHONPATH=bench.args.collections, ANSIBLE_COLLECTIONS_PATH=bench.args.collections)
    if sync:
        bench.quiesce()
    m = b.measure([bench.args.python, '-m', module, args_file], bench.args.timeout,
                  bench.path('out', '%d-%s' % (n, module.rsplit('.', 1)[1])), env=env)
    try:
        result = json.loads(m.out[m.out.index('{'):])
    except ValueError:
        raise b.BenchError('%s printed no result (exit %d): %s %s' % (
            label, m.code, m.out.strip()[-2000:], m.err.strip()[-2000:]))
    if m.code != 0 or result.get('failed'):
        raise b.BenchError('%s failed: %s' % (label, result.get('msg')))
    return m, result


def case_instant(b, bench):
    """b: the backup_bench module; bench: its Bench. The two sizes take turns (small, big, then big,
    small, ...), so that both are measured in the same minutes of a machine whose speed drifts."""
    a = bench.args
    setup = {}
    for label, size in SIZES:
        source = b.PREFIX + 'instant-src-' + label
        image = bench.make_disk('instant-' + label, size, DATA)
        bench.domains.append(source)
        bench.connect().defineXML(bench.domain_xml(source, image))
        repo = bench.path('repos', 'instant-' + label)
        _module(b, bench, BACKUP, dict(domain=source, repository=repo), 'virt_backup of %s' % source)
        setup[label] = (source, repo, 'instant: virt_restore to running, %s disk' % b.human(size))
        b.log('case %s' % setup[label][2])
    for rep in range(a.repeat):
        order = [label for label, _size in SIZES]
        if rep % 2:
            order.reverse()
        for label in order:
            source, repo, case = setup[label]
            new_name = '%sinstant-%s-%d' % (b.PREFIX, label, rep)
            bench.domains.append(new_name)
            bench.quiesce()
            try:
                m, result = _module(b, bench, RESTORE, dict(
                    domain=source, repository=repo, dest=bench.path('images', new_name), mode='instant',
                    new_name=new_name, start=True), 'virt_restore mode=instant of %s' % source)
                if result['domain']['state'] != 'running':
                    raise b.BenchError('virt_restore mode=instant left %s %s' % (new_name, result['domain']['state']))
                res = b.Result('instant-' + label, case, 'virt_restore instant', m.seconds, 0, m.cpu, m.rss_kib,
                               m.child_rss_kib, child_name=m.child_name)
                res.note = 'export pid %s' % result['export']['pid']
                bench.record(res)
            finally:
                bench.stop_domain(new_name)
                _module(b, bench, EXPORT, dict(name='instant-' + new_name, state='absent', force=True),
                        'stopping the export of %s' % new_name)


def verdicts(b, bench, verdict):
    """The instant-recovery targets, in the report of backup_bench.py."""
    found = dict((label, bench.best('instant-' + label, 'virt_restore instant')) for label, _size in SIZES)
    if not all(found.values()):
        return
    sizes = dict(SIZES)
    for label, _size in SIZES:
        res = found[label]
        verdict('instant restore to running, %s disk' % b.human(sizes[label]), '%.2f s' % res.seconds,
                res.seconds < TARGET_INSTANT_SECONDS, '< %.0f s' % TARGET_INSTANT_SECONDS,
                'median %.2f s' % bench.median_seconds('instant-' + label, 'virt_restore instant'))
    slow, fast = max(r.seconds for r in found.values()), min(r.seconds for r in found.values())
    ratio = slow / fast
    verdict('instant restore, slower / faster disk size', '%.2f' % ratio, ratio <= TARGET_INSTANT_SPREAD,
            '<= %.2f' % TARGET_INSTANT_SPREAD, '%.2f s (%s) and %.2f s (%s)' % (
                found['small'].seconds, b.human(sizes['small']), found['big'].seconds, b.human(sizes['big'])))
