# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The off-host copy case of backup_bench.py (--only copy).

A full backup of a 4 GiB disk holding 1 GiB of random data, copied by virt_backup_copy into a
real S3 server on 127.0.0.1 (SeaweedFS, tests/functional/s3server.py), a new prefix each run: the
module's wall time and MiB/s, integrity checks included (every point in time read back against its
integrity data before the upload, MD5 of every part). Beside it, the same files uploaded by boto3's
own upload_file (TransferConfig defaults, no checks) in this process: what the server and the
machine allow. Target from issue 12: at least 200 MiB/s.
"""

from __future__ import absolute_import, division, print_function

import os
import sys
import time

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB

SIZE = 4 * GiB
DATA = 1 * GiB
TARGET_MIB_S = 200.0
BUCKET = 'virtops-test-bench'
COPY = 'ansible_collections.virtops.libvirt.plugins.modules.virt_backup_copy'
BACKUP = 'ansible_collections.virtops.libvirt.plugins.modules.virt_backup'
KIND = 's3copy'


def _server():
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path.insert(0, os.path.join(here, '..', 'tests', 'functional'))
    import s3server     # pylint: disable=import-error
    return s3server.S3Server()


def case_copy(b, bench):
    """b: the backup_bench module; bench: its Bench."""
    # _instant_bench's runner: run a module as Ansible does, measured.
    import _instant_bench
    a = bench.args
    source = b.PREFIX + 's3copy-src'
    image = bench.make_disk('s3copy', SIZE, DATA)
    bench.domains.append(source)
    bench.connect().defineXML(bench.domain_xml(source, image))
    repo = bench.path('repos', 's3copy')
    _instant_bench._module(b, bench, BACKUP, dict(domain=source, repository=repo), 'virt_backup of %s' % source)
    server = _server().start()
    try:
        client = server.client()
        client.create_bucket(Bucket=BUCKET)
        case = 'copy: virt_backup_copy of a full backup (%s data) to S3 on localhost' % b.human(DATA)
        b.log('case %s' % case)
        for rep in range(a.repeat):
            bench.quiesce()
            params = dict(server.options(), source=repo, target='s3://%s/run-%d' % (BUCKET, rep))
            m, result = _instant_bench._module(b, bench, COPY, params, 'virt_backup_copy')
            res = b.Result(KIND, case, 'virt_backup_copy', m.seconds, result['bytes'], m.cpu, m.rss_kib,
                           m.child_rss_kib, child_name=m.child_name)
            res.note = 'module: %.1f MiB/s over %.2f s (checks included)' % (result['mib_per_s'], result['seconds'])
            bench.record(res)
        files = [os.path.join(root, name) for root, _dirs, names in os.walk(repo) for name in names
                 if name.endswith('.qcow2') and '.staging' not in root]
        for rep in range(a.repeat):
            t0, c0 = time.monotonic(), os.times()
            total = 0
            for path in files:
                client.upload_file(path, BUCKET, 'peer-%d/%s' % (rep, os.path.relpath(path, repo)))
                total += os.path.getsize(path)
            c1 = os.times()
            bench.record(b.Result(KIND, case, 'boto3 upload_file (no checks)', time.monotonic() - t0, total,
                                  (c1.user - c0.user) + (c1.system - c0.system), 0))
    finally:
        server.stop()


def verdicts(b, bench, verdict):
    """The copy target, in the report of backup_bench.py."""
    mine = bench.best(KIND, 'virt_backup_copy')
    if mine is None:
        return
    peer = bench.best(KIND, 'boto3')
    detail = 'median %.2f s' % bench.median_seconds(KIND, 'virt_backup_copy')
    if peer is not None:
        detail += '; boto3 upload_file alone %.0f MiB/s (%.2f×)' % (peer.mib_s, mine.seconds / peer.seconds)
    verdict('copy to S3 (localhost), %s data' % b.human(DATA), '%.0f MiB/s' % mine.mib_s,
            mine.mib_s >= TARGET_MIB_S, '>= %.0f MiB/s' % TARGET_MIB_S, detail)
