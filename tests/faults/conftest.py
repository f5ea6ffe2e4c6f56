# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fault-injection suite of the backup engine: fixtures, the fault collector and its table.

Run as root on a host with libvirtd and virtlogd running (make test starts them):

    PYTHONPATH=build/collections .venv/bin/python -m pytest tests/faults

Every case injects faults into real backups of real TCG domains and counts, per case, the faults
injected, the faults survived and the bytes lost (bytes of restored images, of backups the suite
expects to be good, that differ from what the guest held). The table is printed at the end of the
run and written to tests/output/fault-table.md; failing assertions still fail their test.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time

import libvirt
import pytest

# tests/support is shared with tests/functional: tests/ goes on the path before it is imported.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from support.guests import remove_domain  # noqa: E402
from support.host import ensure_collection_link, GiB, MiB, SOCKET_ROOT, URI  # noqa: E402
import fi_lib  # noqa: E402

COLLECTOR_KEY = pytest.StashKey()


def _collector(config):
    return config.stash.setdefault(COLLECTOR_KEY, {})


# --- set-up and clean-up of the whole run ------------------------------------------------------

def _mounts_under(path):
    found = []
    with open('/proc/mounts') as src:
        for line in src:
            point = line.split()[1].replace('\\040', ' ')
            if point == path or point.startswith(path + '/'):
                found.append(point)
    return sorted(found, reverse=True)


def _clean_leftovers(host):
    """Domains, mounts, files and socket directories of this suite (earlier runs included)."""
    for dom in host.conn.listAllDomains(0):
        if dom.name().startswith(fi_lib.PREFIX):
            remove_domain(host, dom.name())
    for point in _mounts_under(fi_lib.WORK):
        subprocess.call(['umount', '-l', point])
    shutil.rmtree(fi_lib.WORK, ignore_errors=True)
    if os.path.exists(os.path.join(fi_lib.PKI, fi_lib.PKI_MARKER)):
        shutil.rmtree(fi_lib.PKI, ignore_errors=True)   # certificates an interrupted run installed
    if os.path.isdir(str(SOCKET_ROOT)):
        for name in os.listdir(str(SOCKET_ROOT)):
            if re.match(r'^[0-9a-f]{8}-%s' % re.escape(fi_lib.PREFIX), name):
                shutil.rmtree(os.path.join(str(SOCKET_ROOT), name), ignore_errors=True)


@pytest.fixture(scope='session')
def host():
    if os.geteuid() != 0:
        pytest.skip('the fault-injection suite runs as root (it defines domains, mounts tmpfs, restarts libvirtd)')
    ensure_collection_link()
    try:
        h = fi_lib.Host()
    except libvirt.libvirtError as exc:
        pytest.fail('cannot connect to %s (%s): start the daemons (bash scripts/setup-host.sh)' % (URI, exc))
    _clean_leftovers(h)
    os.makedirs(fi_lib.WORK, 0o711)
    os.chmod(fi_lib.WORK, 0o711)
    for sub in ('repos', 'restore'):
        os.makedirs(os.path.join(fi_lib.WORK, sub), 0o711 if sub == 'repos' else 0o700)
        os.chmod(os.path.join(fi_lib.WORK, sub), 0o711 if sub == 'repos' else 0o700)
    yield h
    try:
        h.reconnect()
    except Exception:  # pylint: disable=broad-except
        pass
    _clean_leftovers(h)
    h.close()


@pytest.fixture(scope='session')
def small(host):
    """fi-small: one 128 MiB disk with 16 MiB of data; running. Shared by cases that do not change it."""
    guest = fi_lib.make_guest(host, 'fi-small', [('vda', 128 * MiB, fi_lib.spread(128 * MiB, 16 * MiB, MiB, 1))])
    yield guest
    guest.remove()


@pytest.fixture(scope='session')
def big(host):
    """fi-big: vda 1 GiB holding 512 MiB of data (a full copy takes seconds: room to inject a fault
    mid-transfer) and vdb 64 MiB holding 8 MiB; running."""
    guest = fi_lib.make_guest(host, 'fi-big', [
        ('vda', GiB, fi_lib.spread(GiB, 512 * MiB, 4 * MiB, 17)),
        ('vdb', 64 * MiB, fi_lib.spread(64 * MiB, 8 * MiB, MiB, 99)),
    ])
    yield guest
    guest.remove()


def _record_key(item):
    """One table row per test function: the instances of a parametrized test add up."""
    return '%s::%s' % (item.module.__name__, getattr(item, 'originalname', item.name))


@pytest.fixture
def fault(request):
    """The fault counter of this case (see fi_lib.Fault)."""
    key = _record_key(request.node)
    collector = _collector(request.config)
    record = collector.get(key)
    if record is None:
        doc = ' '.join((request.function.__doc__ or '').strip().split())
        name = key.split('::')[1]
        record = fi_lib.Record(key, name[len('test_'):] if name.startswith('test_') else name, doc)
        collector[key] = record
    record.tests += 1
    t0 = time.time()
    yield fi_lib.Fault(record)
    record.seconds += time.time() - t0


# --- outcome and table --------------------------------------------------------------------------

@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    record = _collector(item.config).get(_record_key(item))
    if record is None or 'fault' not in getattr(item, 'fixturenames', ()):
        return
    outcomes = record.outcomes
    if report.when == 'call' or (report.when == 'setup' and report.outcome != 'passed'):
        outcomes[item.nodeid] = report.outcome
    elif report.when == 'teardown' and report.outcome == 'failed':
        outcomes[item.nodeid] = 'failed'
    passed = sum(1 for o in outcomes.values() if o == 'passed')
    if passed == len(outcomes) == 1:
        record.outcome = 'passed'
    elif passed == len(outcomes):
        record.outcome = '%d passed' % passed
    else:
        record.outcome = '%d of %d failed' % (len(outcomes) - passed, len(outcomes))


def table_lines(records):
    rows = [('case', 'faults injected', 'survived', 'bytes lost', 'test')]
    tot_i = tot_s = tot_l = 0
    for rec in records:
        case = rec.case if rec.tests < 2 else '%s (%d inputs)' % (rec.case, rec.tests)
        rows.append((case, str(rec.injected), str(rec.survived), str(rec.lost), rec.outcome or 'not run'))
        tot_i += rec.injected
        tot_s += rec.survived
        tot_l += rec.lost
    tests = sum(len(r.outcomes) for r in records)
    passed = sum(1 for r in records for o in r.outcomes.values() if o == 'passed')
    rows.append(('TOTAL (%d cases)' % len(records), str(tot_i), str(tot_s), str(tot_l),
                 '%d of %d tests passed' % (passed, tests)))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = []
    for n, row in enumerate(rows):
        cells = [row[0].ljust(widths[0])] + [row[i].rjust(widths[i]) for i in (1, 2, 3)] + [row[4].ljust(widths[4])]
        lines.append('| ' + ' | '.join(cells) + ' |')
        if n == 0:
            lines.append('|' + '|'.join(['-' * (widths[0] + 2)] + ['-' * (widths[i] + 1) + ':' for i in (1, 2, 3)]
                                        + ['-' * (widths[4] + 2)]) + '|')
        if n == len(rows) - 2:
            lines.append('|' + '|'.join('-' * (w + 2) for w in widths) + '|')
    return lines, (tot_i, tot_s, tot_l)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    records = list(_collector(config).values())
    if not records:
        return
    lines, totals = table_lines(records)
    started = config.stash.get(START_KEY, time.time())
    seconds = time.time() - started
    header = 'fault-injection table: %s, %s, libvirt %s, QEMU %s, %d s' % (
        datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC'), platform.node(),
        _version('libvirtd'), _version('qemu-system-x86_64'), seconds)
    terminalreporter.section('fault injection')
    terminalreporter.write_line(header)
    for line in lines:
        terminalreporter.write_line(line)
    try:
        os.makedirs(fi_lib.OUTPUT, exist_ok=True)
        with open(os.path.join(fi_lib.OUTPUT, 'fault-table.md'), 'w') as out:
            out.write('%s\n\n' % header)
            out.write('\n'.join(lines) + '\n\n')
            out.write('## Cases\n\n')
            for rec in records:
                out.write('- **%s** (%s, %.0f s): %s\n' % (rec.case, rec.outcome or 'not run', rec.seconds,
                                                           rec.description))
                out.write('  - faults: %s\n' % ('; '.join(rec.faults) or 'none'))
                for note in rec.notes:
                    out.write('  - %s\n' % note)
        with open(os.path.join(fi_lib.OUTPUT, 'fault-table.json'), 'w') as out:
            json.dump(dict(header=header, seconds=round(seconds, 1), totals=dict(
                injected=totals[0], survived=totals[1], bytes_lost=totals[2]), cases=[dict(
                    case=r.case, nodeid=r.nodeid, description=r.description, injected=r.injected,
                    survived=r.survived, bytes_lost=r.lost, outcome=r.outcome, seconds=round(r.seconds, 1),
                    faults=r.faults, notes=r.notes) for r in records]), out, indent=2)
        terminalreporter.write_line('written to %s' % os.path.join(fi_lib.OUTPUT, 'fault-table.md'))
    except OSError as exc:
        terminalreporter.write_line('cannot write the table: %s' % exc)


START_KEY = pytest.StashKey()


def pytest_configure(config):
    config.stash[START_KEY] = time.time()


def _version(binary):
    try:
        out = subprocess.run([binary, '--version'], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                             timeout=20, check=False).stdout.decode('utf-8', 'replace')
    except (OSError, subprocess.TimeoutExpired):
        return '?'
    match = re.search(r'(\d+\.\d+\.\d+)', out)
    return match.group(1) if match else '?'
