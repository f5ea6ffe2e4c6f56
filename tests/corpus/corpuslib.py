# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The corpus test: libvirt's own test XML through the modules' managers, against the real libvirtd.

Every file of libvirt's test data for one object kind (the Debian source package of the libvirt
that runs here, fetched by fetch-libvirt-testdata.sh) is prepared (kind_<kind>.py says how:
renamed to corpus-<kind>-<stem>, uuid dropped, ...) and then goes through the manager class the
module uses, with the module's parameters (argument spec defaults plus xml), check_mode and diff
mode, in this order:

  check   check mode before the first define: predicts `changed` (or a refusal), defines nothing
  define  the real define: `changed`; a VirtError here is a rejection by libvirt (its message is
          recorded), not a failure. A rejection check mode did not predict is counted as
          `unforeseen`; a prediction of refusal that libvirt then accepted is a failure.
  again   the same input again: `changed: false`
  recheck check mode again: `changed: false`
  edit    a kind-appropriate change (kind.edit): check mode predicts `changed` and the live
          definition stays the same, the real run reports `changed`, the next run `changed: false`

A warning of the manager ("libvirt did not keep all of the XML as written") is recorded too.
Objects are defined, never started. Every corpus-<kind>-* object of the kinds being run is
removed before the run (left-overs of a killed run), after every file and at the end; one run
per kind at a time (flock), so two people (or helpers) running the same kind do not clash.

The module path: VirtModule builds the same Connection and hands the manager its parameters,
check_mode, diff mode and module.warn; the only difference here is that one Connection and one
Python process serve every file.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import contextlib
import fcntl
import hashlib
import os
import re
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
FETCH = os.path.join(HERE, 'fetch-libvirt-testdata.sh')
PREFIX = 'corpus-'
URI = os.environ.get('VIRTOPS_CORPUS_URI', 'qemu:///system')
LOCK_DIR = '/run/lock' if os.path.isdir('/run/lock') else '/run'

# Names: libvirt's own limits differ per kind (nwfilter: [a-zA-Z0-9_.:-]); one safe alphabet.
NAME_MAX = 60
_UNSAFE = re.compile(r'[^A-Za-z0-9_.-]+')


def _collection_path():
    """Make ansible_collections.virtops.libvirt importable (build/collections, as `make link`)."""
    collections = os.path.join(ROOT, 'build', 'collections')
    link = os.path.join(collections, 'ansible_collections', 'virtops', 'libvirt')
    if not os.path.exists(link):
        os.makedirs(os.path.dirname(link), exist_ok=True)
        os.symlink(ROOT, link)
    if collections not in sys.path:
        sys.path.insert(0, collections)


_collection_path()

from ansible_collections.virtops.libvirt.plugins.module_utils.xml import _document, _view  # noqa: E402
from ansible_collections.virtops.libvirt.plugins.module_utils._libvirt import (  # noqa: E402
    CONNECTION_ARGS,
    Connection,
    VirtError,
)

etree = _document.etree


# ---------------------------------------------------------------------------------------------
# Test data

def testdata_dir():
    """The directory holding tests/<dir> of libvirt's test data (fetched once, then cached)."""
    given = os.environ.get('VIRTOPS_LIBVIRT_TESTDATA')
    if given and os.path.isfile(os.path.join(given, '.complete')):
        return given
    proc = subprocess.run(['bash', FETCH], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError('fetching libvirt\'s test data failed (%s):\n%s'
                           % (FETCH, proc.stderr[-3000:]))
    return proc.stdout.strip().splitlines()[-1]


def corpus_name(kind, stem, taken):
    """corpus-<kind>-<stem>, made safe, at most NAME_MAX characters and unique among taken."""
    name = _UNSAFE.sub('-', '%s%s-%s' % (PREFIX, kind, stem)).strip('-.')
    if len(name) > NAME_MAX or name in taken:
        digest = hashlib.sha1(('%s/%s' % (kind, stem)).encode()).hexdigest()[:8]
        name = '%s-%s' % (name[:NAME_MAX - 9].rstrip('-.'), digest)
    taken.add(name)
    return name


class Item:
    """One corpus file of one kind: where it is from, its corpus name, the prepared XML (None
    with skip set when the kind does not apply it, e.g. a domain for another architecture)."""

    def __init__(self, kind, path, rel, name):
        self.kind = kind
        self.path = path
        self.rel = rel
        self.name = name
        self.xml = None
        self.skip = None


def items(kind, data, only=None):
    """The Items of one kind, sorted by path; only: file names, stems or relative paths."""
    found = []
    taken = set()
    seen = set()
    for sub in kind.dirs:
        folder = os.path.join(data, 'tests', sub)
        for fname in sorted(os.listdir(folder)):
            path = os.path.join(folder, fname)
            if not fname.endswith('.xml') or not os.path.isfile(path):
                continue
            with open(path, 'rb') as handle:
                digest = hashlib.sha1(handle.read()).hexdigest()
            # qemuxml2xmloutdata repeats many files of qemuxml2argvdata (links in libvirt's
            # tree, copies here): one object per content.
            if digest in seen:
                continue
            seen.add(digest)
            stem = fname[:-len('.xml')]
            rel = '%s/%s' % (sub, fname)
            found.append(Item(kind, path, rel, corpus_name(kind.name, stem, taken)))
    if only:
        wanted = set(only)
        found = [i for i in found if i.rel in wanted or os.path.basename(i.rel) in wanted or
                 os.path.basename(i.rel)[:-4] in wanted or i.name in wanted]
    kind.prepare_all(found)
    return found


def parse_file(path):
    with open(path, 'rb') as handle:
        return _document.parse(handle.read(), path)


def rename_root(root, name, attr=None):
    """The object's name (the <name> element, or the root attribute attr) set to name; the
    <uuid> dropped, so that libvirt makes a fresh one."""
    if attr:
        root.set(attr, name)
    else:
        elem = root.find('name')
        if elem is None:
            elem = root.makeelement('name')
            root.insert(0, elem)
        elem.text = name
    for uuid in root.findall('uuid'):
        root.remove(uuid)
    return root


# ---------------------------------------------------------------------------------------------
# Kinds

class Kind:
    """What the harness needs to know about one object kind; kind_<name>.py makes one.

    dirs: directories under tests/ of the test data. manager / args: the manager class and the
    argument spec (without the connection options) of the module. prepare(item, root): the
    prepared root element, or a string (why the file is skipped). prepare_all(items): optional
    pass over every item first (for cross-file references). edit(root): a copy with one
    kind-appropriate change, or None when there is none for this file. lookup(conn, name),
    remove(conn, obj), list_names(conn): libvirt calls. live_xml(obj): the definition the
    module compares with.
    """

    def __init__(self, name, dirs, manager, args, prepare, edit, lookup, remove, list_names,
                 live_xml, prepare_all=None):
        self.name = name
        self.dirs = dirs
        self.manager = manager
        self.args = args
        self.prepare = prepare
        self.edit = edit
        self.lookup = lookup
        self.remove = remove
        self.list_names = list_names
        self.live_xml = live_xml
        self._prepare_all = prepare_all

    def prepare_all(self, found):
        if self._prepare_all is not None:
            self._prepare_all(found)
        for item in found:
            try:
                result = self.prepare(item, parse_file(item.path))
            except VirtError as exc:
                result = 'not XML the harness can read: %s' % exc
            if isinstance(result, str):
                item.skip = result
            else:
                item.xml = _document.render(result)

    def params(self, xml, **extra):
        """The module's parameters as AnsibleModule hands them over: every option's default."""
        spec = dict(CONNECTION_ARGS)
        spec.update(self.args)
        params = dict((k, v.get('default')) for k, v in spec.items())
        params['uri'] = URI
        params['xml'] = xml
        params.update(extra)
        return params


KIND_NAMES = ('network', 'nwfilter', 'pool', 'domain')


def load_kind(name):
    if name not in KIND_NAMES:
        raise ValueError('unknown kind %s (one of %s)' % (name, ', '.join(KIND_NAMES)))
    if HERE not in sys.path:
        sys.path.insert(0, HERE)
    module = __import__('kind_%s' % name)
    return module.KIND


# ---------------------------------------------------------------------------------------------
# Running one file

class Failure:
    def __init__(self, step, message, diff=''):
        self.step = step
        self.message = message
        self.diff = diff

    def __str__(self):
        return '%s: %s' % (self.step, self.message)


class Outcome:
    """What happened to one Item. status: skipped, accepted or rejected."""

    def __init__(self, item):
        self.item = item
        self.status = None
        self.message = None          # libvirt's message of a rejection, or why skipped
        self.predicted = None        # rejected: did check mode predict the refusal?
        self.predicted_message = None  # check mode's message of the refusal it predicted
        self.failures = []
        self.edited = False
        self.seconds = 0.0

    @property
    def idempotent(self):
        return self.status == 'accepted' and not self.failures


def _diff_text(result):
    diff = result.get('diff') if isinstance(result, dict) else None
    if not diff:
        return ''
    return _view.unified_diff(diff.get('before') or '', diff.get('after') or '',
                              diff.get('before_header', 'before'),
                              diff.get('after_header', 'after'))


class Runner:
    """Runs Items of one kind over one connection."""

    def __init__(self, kind, connection):
        self.kind = kind
        self.connection = connection
        self.conn = connection.conn

    def call(self, xml, check_mode):
        """One module run: (result, warnings); a VirtError leaves as it would fail the module."""
        warnings = []
        manager = self.kind.manager(self.connection, self.kind.params(xml), check_mode=check_mode,
                                    diff_mode=True, warn=warnings.append)
        return manager.run(), warnings

    def live(self, name):
        obj = self.kind.lookup(self.conn, name)
        return None if obj is None else self.kind.live_xml(obj)

    def run(self, item):
        out = Outcome(item)
        if item.skip:
            out.status, out.message = 'skipped', item.skip
            return out
        started = time.monotonic()
        try:
            self._steps(item, out)
        except Exception as exc:  # pylint: disable=broad-except
            # Anything but a VirtError at a step that allows one is a crash: always a failure.
            out.failures.append(Failure('crash', '%s: %s' % (type(exc).__name__, exc)))
            if out.status is None:
                out.status = 'accepted'
        finally:
            self.remove(item.name)
            out.seconds = time.monotonic() - started
        return out

    def _steps(self, item, out):
        self.remove(item.name)
        # check: check mode before the first define
        predicted_error = None
        try:
            result = self.call(item.xml, True)[0]
            if not result.get('changed'):
                out.failures.append(Failure('check', 'check mode before the first define '
                                            'reported changed: false', _diff_text(result)))
        except VirtError as exc:
            predicted_error = exc
        if self.kind.lookup(self.conn, item.name) is not None:
            out.failures.append(Failure('check', 'check mode defined the object'))
            self.remove(item.name)
        # define
        try:
            result, warnings = self.call(item.xml, False)
        except VirtError as exc:
            out.status = 'rejected'
            out.message = exc.libvirt_message or exc.msg
            out.predicted = predicted_error is not None
            if out.predicted:
                out.predicted_message = predicted_error.libvirt_message or predicted_error.msg
            return
        out.status = 'accepted'
        if predicted_error is not None:
            out.failures.append(Failure('check', 'check mode predicted a refusal that libvirt '
                                        'did not make: %s' % predicted_error.msg))
        if not result.get('changed'):
            out.failures.append(Failure('define', 'the first define reported changed: false'))
        for warning in warnings:
            out.failures.append(Failure('define', 'warning: %s' % warning))
        self._idempotent(item.xml, out, 'again')
        # edit
        edited = self.kind.edit(_document.parse(item.xml))
        if edited is None:
            return
        out.edited = True
        xml = _document.render(edited)
        before = self.live(item.name)
        try:
            result = self.call(xml, True)[0]
        except VirtError as exc:
            out.failures.append(Failure('edit', 'check mode refused the edit: %s' % exc.msg))
            return
        if not result.get('changed'):
            out.failures.append(Failure('edit', 'check mode did not predict the edit',
                                        _diff_text(result)))
        if self.live(item.name) != before:
            out.failures.append(Failure('edit', 'check mode changed the definition'))
        try:
            result, warnings = self.call(xml, False)
        except VirtError as exc:
            out.failures.append(Failure('edit', 'the edit was refused: %s' % exc.msg))
            return
        if not result.get('changed'):
            out.failures.append(Failure('edit', 'the edit reported changed: false'))
        for warning in warnings:
            out.failures.append(Failure('edit', 'warning: %s' % warning))
        if self.live(item.name) == before:
            out.failures.append(Failure('edit', 'the edit did not change the definition'))
        self._idempotent(xml, out, 'edit-again')

    def _idempotent(self, xml, out, step):
        for check_mode in (False, True):
            label = '%s%s' % (step, ' (check mode)' if check_mode else '')
            result = self.call(xml, check_mode)[0]
            if result.get('changed'):
                out.failures.append(Failure(label, 'changed: true on an identical run (%s)'
                                            % ', '.join(result.get('actions') or []),
                                            _diff_text(result)))

    def remove(self, name):
        obj = self.kind.lookup(self.conn, name)
        if obj is not None:
            self.kind.remove(self.conn, obj)


# ---------------------------------------------------------------------------------------------
# A run over a kind

@contextlib.contextmanager
def kind_lock(kind_name):
    """One corpus run per kind at a time on this host."""
    path = os.path.join(LOCK_DIR, 'virtops-corpus-%s.lock' % kind_name)
    with open(path, 'w') as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def remove_leftovers(kind, connection):
    """Every corpus-<kind>-* object (a killed run's left-overs); the names removed."""
    removed = []
    prefix = '%s%s-' % (PREFIX, kind.name)
    # Several passes: an object may be in use by another (nwfilter references).
    for _attempt in range(3):
        names = [n for n in kind.list_names(connection.conn) if n.startswith(prefix)]
        if not names:
            break
        for name in names:
            obj = kind.lookup(connection.conn, name)
            if obj is None:
                continue
            try:
                kind.remove(connection.conn, obj)
                removed.append(name)
            except Exception:  # pylint: disable=broad-except
                pass
    return removed


class Report:
    def __init__(self, kind):
        self.kind = kind
        self.outcomes = []
        self.seconds = 0.0

    def count(self, status):
        return sum(1 for o in self.outcomes if o.status == status)

    @property
    def failures(self):
        return [o for o in self.outcomes if o.failures]

    def counts(self):
        return dict(
            files=len(self.outcomes),
            skipped=self.count('skipped'),
            accepted=self.count('accepted'),
            rejected=self.count('rejected'),
            rejected_predicted=sum(1 for o in self.outcomes if o.status == 'rejected' and o.predicted),
            rejected_unforeseen=sum(1 for o in self.outcomes if o.status == 'rejected' and not o.predicted),
            idempotent=sum(1 for o in self.outcomes if o.idempotent),
            edited=sum(1 for o in self.outcomes if o.edited),
            failures=len(self.failures),
        )

    def summary_line(self):
        c = self.counts()
        return ('%-8s files %4d  skipped %4d  accepted %4d  rejected %4d (check mode predicted %d, '
                'unforeseen %d)  idempotent %4d  edited %4d  failures %3d  %.0f s'
                % (self.kind.name, c['files'], c['skipped'], c['accepted'], c['rejected'],
                   c['rejected_predicted'], c['rejected_unforeseen'], c['idempotent'], c['edited'],
                   c['failures'], self.seconds))

    def failure_text(self, show_diff=True):
        lines = []
        for out in self.failures:
            lines.append('FAIL %s (%s, %s)' % (out.item.rel, out.item.name, out.status))
            shown = set()
            for failure in out.failures:
                lines.append('  %s' % failure)
                # the same diff again (check mode, the next step) only once per file
                if show_diff and failure.diff and failure.diff not in shown:
                    shown.add(failure.diff)
                    lines.extend('    ' + line for line in failure.diff.rstrip('\n').split('\n'))
        return '\n'.join(lines)

    def rejected_text(self, unforeseen_only=False):
        lines = []
        for o in self.outcomes:
            if o.status != 'rejected' or (unforeseen_only and o.predicted):
                continue
            message = ' '.join((o.message or '').split())
            lines.append('REJECTED%s %s: %s' % ('' if o.predicted else ' (unforeseen)', o.item.rel,
                                                message))
            predicted = ' '.join((o.predicted_message or '').split())
            if o.predicted and predicted != message:
                lines.append('  check mode said: %s' % predicted)
        return '\n'.join(lines)


@contextlib.contextmanager
def terminated_cleanly():
    """SIGTERM (make test's stage deadline, a kill) raises KeyboardInterrupt, so that the
    finally blocks still remove the corpus objects."""
    def interrupt(_signum, _frame):
        raise KeyboardInterrupt('terminated')
    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_kind(kind_name, only=None, progress=None, data=None):
    """Run every file (or only those named) of one kind; a Report."""
    kind = load_kind(kind_name)
    data = data or testdata_dir()
    report = Report(kind)
    started = time.monotonic()
    with terminated_cleanly(), kind_lock(kind.name):
        connection = Connection(URI)
        try:
            remove_leftovers(kind, connection)
            runner = Runner(kind, connection)
            try:
                for item in items(kind, data, only):
                    out = runner.run(item)
                    report.outcomes.append(out)
                    if progress is not None:
                        progress(out)
            finally:
                remove_leftovers(kind, connection)
        finally:
            connection.close()
    report.seconds = time.monotonic() - started
    return report
