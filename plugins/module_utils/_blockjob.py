# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Private to the virtops.libvirt collection: may change without notice.
"""Block jobs on one disk of a running domain: commit, pull, copy, and live resize.

Used by the virt_blockjob module. Every function raises VirtError (or BlockJobError) with a
message meant for the user; none of them exits a module.

The work is split in two: pure planners (plan_pull, plan_commit, plan_copy, plan_resize) that
decide from the disk's backing chain whether anything is left to do and what the chain will be
afterwards (check mode returns exactly that), and BlockJobManager, whose one step starts, waits
for and finishes the job.

Facts this code relies on (libvirt 9.0, QEMU 7.2, seen on qemu:///system):
- block jobs need a running (or paused) domain; libvirt reads the backing chain of each disk
  only for a running domain (the live XML's nested <backingStore>, active layer first);
- virDomainBlockCopy refuses a persistent domain ("domain is not transient") unless
  VIR_DOMAIN_BLOCK_COPY_TRANSIENT_JOB is set; after the pivot libvirt updates the persistent
  definition too, so the domain keeps using the copy after a restart (the same for the pivot
  of an active commit);
- copy and active commit run until they are "ready" (the live XML's <mirror ready='yes'>) and
  then wait to be ended: virDomainBlockJobAbort with PIVOT switches to the new image, without
  it the disk keeps its image (a copy then holds the data of that moment);
- pull and commit of a layer below the active one end by themselves: the job disappears. A job
  that fails disappears too, so the chain is read back to tell the two apart;
- commit with nothing above the base fails ("could not find base image in chain"), a pull of a
  disk without backing file starts and ends at once: both are decided here, before libvirt;
- virDomainBlockResize with VIR_DOMAIN_BLOCK_RESIZE_BYTES also shrinks qcow2 images.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import time

from ansible_collections.virtops.libvirt.plugins.module_utils._libvirt import (
    VirtError,
    domain_label as _dom_label,
    flag as _flag,
    libvirt_call,
)
from ansible_collections.virtops.libvirt.plugins.module_utils._errors import (
    REASON_DESTINATION_EXISTS,
    REASON_DOMAIN_NOT_RUNNING,
    REASON_INVALID_DESTINATION,
    REASON_INVALID_DISK,
    REASON_INVALID_IMAGE,
    REASON_INVALID_OPTION,
    REASON_INVALID_XML,
    REASON_JOB_FAILED,
    REASON_JOB_RUNNING,
    REASON_SHRINK_REFUSED,
    REASON_TIMEOUT,
    REASON_UNKNOWN_DISK,
)
from ansible_collections.virtops.libvirt.plugins.module_utils._lifecycle import ObjectManager, Plan
from ansible_collections.virtops.libvirt.plugins.module_utils._vocabulary import is_local_uri
from ansible_collections.virtops.libvirt.plugins.module_utils.xml import _document
from ansible_collections.virtops.libvirt.plugins.module_utils.xml._units import parse_size


OPERATIONS = ('commit', 'pull', 'copy', 'resize')

# virDomainBlockJobType -> (name returned to the user, the operation that starts such a job)
JOB_TYPES = {
    1: ('pull', 'pull'),
    2: ('copy', 'copy'),
    3: ('commit', 'commit'),
    4: ('active-commit', 'commit'),
    5: ('backup', None),
}

POLL_INTERVAL = 0.2


class BlockJobError(VirtError):
    """A block job that cannot or must not be done, explained for the user."""


# --------------------------------------------------------------------------------------------
# The disks and their backing chains, from the live XML


def _layer_path(disk_type, source):
    """What names one image of a chain: a file or device path, a volume, a network source."""
    if source is None:
        return None
    for attr in ('file', 'dev', 'dir'):
        if source.get(attr):
            return source.get(attr)
    if source.get('volume'):
        return '%s/%s' % (source.get('pool'), source.get('volume'))
    if source.get('protocol') or disk_type == 'network':
        return '%s:%s' % (source.get('protocol'), source.get('name'))
    return None


def parse_chain(disk):
    """A <disk> element's backing chain, active layer first: [dict(path, format, index)].

    Empty when the disk has no source (an empty CD-ROM drive).
    """
    chain = []
    driver = disk.find('driver')
    path = _layer_path(disk.get('type'), disk.find('source'))
    if path is None:
        return chain
    source = disk.find('source')
    chain.append(dict(path=path, format=driver.get('type') if driver is not None else None,
                      index=_int(source.get('index'))))
    store = disk.find('backingStore')
    while store is not None and len(store):
        fmt = store.find('format')
        path = _layer_path(store.get('type'), store.find('source'))
        if path is None:
            break
        chain.append(dict(path=path, format=fmt.get('type') if fmt is not None else None,
                          index=_int(store.get('index'))))
        store = store.find('backingStore')
    return chain


def _int(text):
    try:
        return int(text)
    except (TypeError, ValueError):
        return None


def parse_disks(xml):
    """Every disk of a domain XML: dict(name (target dev), device, chain, mirror).

    mirror is the running copy or active commit as the live XML shows it: dict(path, format, job,
    ready), else None.
    """
    root = _document.parse(xml, 'the domain XML')
    disks = []
    for disk in root.findall('devices/disk'):
        target = disk.find('target')
        if target is None or not target.get('dev'):
            continue
        mirror = disk.find('mirror')
        if mirror is not None:
            mirror = dict(path=mirror.get('file') or _layer_path(mirror.get('type'), mirror.find('source')),
                          format=mirror.get('format') or _attr(mirror.find('format'), 'type'),
                          job=mirror.get('job'), ready=mirror.get('ready') == 'yes')
        disks.append(dict(name=target.get('dev'), device=disk.get('device') or 'disk',
                          chain=parse_chain(disk), mirror=mirror))
    return disks


def _attr(elem, name):
    return elem.get(name) if elem is not None else None


def paths(chain):
    return [layer['path'] for layer in chain]


def find_disk(disks, wanted, domain):
    """The disk named by target dev (vda) or by the path of its active image."""
    for disk in disks:
        if disk['name'] == wanted:
            return disk
    for disk in disks:
        if disk['chain'] and _same_path(disk['chain'][0]['path'], wanted):
            return disk
    raise BlockJobError('domain %s has no disk %s (disks: %s; give a target like vda or the path '
                        'of the active image)' % (
                            domain, wanted, ', '.join(d['name'] for d in disks) or 'none'),
                        obj=domain, reason=REASON_UNKNOWN_DISK)


def _same_path(a, b):
    if a == b:
        return True
    if a and b and a.startswith('/') and b.startswith('/'):
        return os.path.normpath(a) == os.path.normpath(b)
    return False


def locate(chain, value, what, label):
    """Position in the chain (0 = active) of an image given by path or by position.

    A number is a position in the chain as returned in chain_before. Returns None when a path
    is not in the chain; a position beyond its end is an error.
    """
    text = str(value).strip()
    if text.isdigit():
        position = int(text)
        if position >= len(chain):
            raise BlockJobError('%s %s: position %d is beyond the end of the backing chain (%s)' % (
                label, what, position, ' <- '.join(paths(chain))), reason=REASON_INVALID_IMAGE)
        return position
    for position, layer in enumerate(chain):
        if _same_path(layer['path'], text):
            return position
    return None


# --------------------------------------------------------------------------------------------
# Planning (pure: the chain in, what to do and the chain afterwards out)


class JobPlan:
    """What a run does: changed, the message, the chain (or size) afterwards, libvirt args."""

    def __init__(self, changed, msg, chain_after=None, **args):
        self.changed = changed
        self.msg = msg
        self.chain_after = chain_after
        self.args = args


def plan_pull(chain, label, base=None):
    """Pull the data of the images above base into the active one (all of them: flatten)."""
    if base is None:
        if len(chain) <= 1:
            return JobPlan(False, '%s has no backing file: nothing to pull' % label, chain)
        return JobPlan(True, 'pull the %d backing image(s) of %s into its active image' % (
            len(chain) - 1, label), chain[:1], base=None)
    position = locate(chain, base, 'base', label)
    if position is None:
        raise BlockJobError('%s: base %s is not in the backing chain (%s)' % (
            label, base, ' <- '.join(paths(chain))), reason=REASON_INVALID_IMAGE)
    if position == 0:
        raise BlockJobError('%s: base %s is the active image; base must be one of its backing '
                            'images' % (label, base), reason=REASON_INVALID_IMAGE)
    if position == 1:
        return JobPlan(False, '%s: %s is already the backing file of the active image: nothing to '
                       'pull' % (label, chain[1]['path']), chain)
    return JobPlan(True, 'pull %d image(s) above %s into the active image of %s' % (
        position - 1, chain[position]['path'], label), chain[:1] + chain[position:],
        base=chain[position]['path'])


def plan_commit(chain, label, top=None, base=None, pivot=True):
    """Commit the images from top down to just above base into base."""
    if not chain:
        raise BlockJobError('%s has no image' % label, reason=REASON_INVALID_DISK)
    top_pos = 0
    if top is not None:
        top_pos = locate(chain, top, 'top', label)
        if top_pos is None:
            return JobPlan(False, '%s: %s is not in the backing chain (any more): nothing to commit' % (
                label, top), chain)
    base_pos = len(chain) - 1
    if base is not None:
        base_pos = locate(chain, base, 'base', label)
        if base_pos is None:
            raise BlockJobError('%s: base %s is not in the backing chain (%s)' % (
                label, base, ' <- '.join(paths(chain))), reason=REASON_INVALID_IMAGE)
    if base_pos == top_pos:
        return JobPlan(False, '%s: nothing above %s to commit' % (label, chain[base_pos]['path']), chain)
    if base_pos < top_pos:
        raise BlockJobError('%s: base %s is above top %s in the backing chain (%s)' % (
            label, chain[base_pos]['path'], chain[top_pos]['path'], ' <- '.join(paths(chain))),
            reason=REASON_INVALID_IMAGE)
    active = top_pos == 0
    if active and pivot:
        after = chain[base_pos:]
    elif active:
        after = list(chain)  # the data goes down, the overlays stay in use
    else:
        after = chain[:top_pos] + chain[base_pos:]
    return JobPlan(True, 'commit %s into %s' % (
        ', '.join(paths(chain[top_pos:base_pos])), chain[base_pos]['path']) + ' of %s' % label,
        after, top=chain[top_pos]['path'], base=chain[base_pos]['path'], active=active,
        committed=paths(chain[top_pos:base_pos]))


def plan_copy(chain, label, dest, pivot=True, shallow=False, reuse_external=False,
              dest_exists=None):
    """Copy the disk to dest; with pivot the domain uses dest from then on.

    dest_exists: whether dest exists (None when it cannot be known, a remote host).
    """
    if chain and _same_path(chain[0]['path'], dest):
        return JobPlan(False, '%s already uses %s' % (label, dest), chain)
    if dest_exists and not reuse_external:
        if not pivot:
            # Without pivot a copy is a file that appears once, like `creates:`.
            return JobPlan(False, '%s exists: the copy of %s is not made again (reuse_external: '
                           'true copies into it again)' % (dest, label), chain)
        raise BlockJobError('%s: the copy destination %s exists; remove it, or set reuse_external '
                            'to copy into it (it must then be an image of the right size)' % (
                                label, dest), reason=REASON_DESTINATION_EXISTS)
    if not pivot:
        after = list(chain)
    else:
        after = [dict(path=dest, format=None, index=None)] + (list(chain[1:]) if shallow else [])
    return JobPlan(True, 'copy %s to %s%s' % (label, dest, ' and pivot to it' if pivot else ''),
                   after)


def plan_resize(capacity, size, label, allow_shrink=False):
    if capacity == size:
        return JobPlan(False, '%s already has %d bytes' % (label, size))
    if size < capacity and not allow_shrink:
        raise BlockJobError('%s: shrinking from %d to %d bytes loses the data at the end of the '
                            'disk; set allow_shrink to do it' % (label, capacity, size),
                            reason=REASON_SHRINK_REFUSED)
    return JobPlan(True, '%s %s from %d to %d bytes' % (
        'shrink' if size < capacity else 'grow', label, capacity, size))


def parse_bandwidth(value):
    """Bytes per second from '10M' (per second), or None."""
    if value is None:
        return None
    return parse_size(value, 'bandwidth')


def job_facts(info):
    """blockJobInfo's dict as returned to the user: type, cur, end, bandwidth (bytes/s),
    progress (percent)."""
    if not info:
        return None
    name = JOB_TYPES.get(info.get('type'), ('unknown', None))[0]
    cur, end = info.get('cur', 0), info.get('end', 0)
    return dict(type=name, cur=cur, end=end, bandwidth=info.get('bandwidth', 0),
                progress=round(100.0 * cur / end, 1) if end else 0.0)


# --------------------------------------------------------------------------------------------
# Doing it


BLOCKJOB_ARGS = dict(
    name=dict(type='str', required=True, aliases=['domain']),
    disk=dict(type='str', required=True),
    state=dict(type='str', choices=['present', 'absent'], default='present'),
    operation=dict(type='str', choices=list(OPERATIONS)),
    base=dict(type='str'),
    top=dict(type='str'),
    pivot=dict(type='bool', default=True),
    delete=dict(type='bool', default=False),
    dest=dict(type='str'),
    format=dict(type='str', choices=['qcow2', 'raw']),
    shallow=dict(type='bool', default=False),
    reuse_external=dict(type='bool', default=False),
    granularity=dict(type='str'),
    buf_size=dict(type='str'),
    size=dict(type='str'),
    allow_shrink=dict(type='bool', default=False),
    bandwidth=dict(type='str'),
    wait=dict(type='bool', default=True),
    timeout=dict(type='int', default=3600),
)


class BlockJobManager(ObjectManager):
    """virt_blockjob: one block job on one disk (option disk) of a running domain (option name).

    The live object is the disk (parse_disks' dict) and self.info its running job. Planning
    decides from the backing chain whether anything is left to do and reports what the run
    will return (check mode returns exactly that); the one step starts the job (or takes over
    one found running), waits for it, finishes it and reports what came out instead.
    params: BLOCKJOB_ARGS.
    """

    kind = 'disk'
    argument_spec = BLOCKJOB_ARGS
    module_options = dict(required_if=[('state', 'present', ('operation',))])
    connect_first = True

    def __init__(self, connection, params, check_mode=False, diff_mode=False, warn=None):
        ObjectManager.__init__(self, connection, params, check_mode, diff_mode, warn)
        self.dom = None
        self.disk_label = None
        self.started = None
        self.active = None
        self.info = None
        self.fields = None  # the result but changed and diff
        self.diff = None

    # -- reading -------------------------------------------------------------------------------

    def disk(self):
        with libvirt_call('reading the definition', _dom_label(self.dom)):
            xml = self.dom.XMLDesc(0)
        return find_disk(parse_disks(xml), self.params['disk'], self.dom.name())

    def job_info(self, target):
        with libvirt_call('reading the block job of disk %s' % target, _dom_label(self.dom)):
            return self.dom.blockJobInfo(target, _flag('VIR_DOMAIN_BLOCK_JOB_INFO_BANDWIDTH_BYTES'))

    def capacity(self, target):
        with libvirt_call('reading the size of disk %s' % target, _dom_label(self.dom)):
            return self.dom.blockInfo(target, 0)[0]

    def is_active(self):
        with libvirt_call('reading the state', _dom_label(self.dom)):
            return bool(self.dom.isActive())

    # -- the lifecycle -------------------------------------------------------------------------

    def check_options(self):
        check_options(self.params)

    def identify(self):
        self.dom = self.connection.get_domain(self.params['name'])
        self.started = time.time()
        return self.params['disk']

    def lookup(self):
        p = self.params
        self.active = self.is_active()
        if not self.active:
            if p['state'] == 'absent':
                # Only a running domain has block jobs; still say so when the disk is unknown.
                with libvirt_call('reading the definition', _dom_label(self.dom)):
                    xml = self.dom.XMLDesc(_flag('VIR_DOMAIN_XML_INACTIVE'))
                return find_disk(parse_disks(xml), p['disk'], self.dom.name())
            raise BlockJobError(
                'domain %s is not running; block jobs (%s) need a running domain. For a shut-off '
                'domain, resize the image with virtops.libvirt.virt_volume or qemu-img resize, '
                'and commit or rebase images with qemu-img. Nothing was changed.' % (
                    self.dom.name(), p['operation']), obj=self.dom.name(), reason=REASON_DOMAIN_NOT_RUNNING)
        disk = self.disk()
        self.disk_label = 'disk %s of domain %s' % (disk['name'], self.dom.name())
        self.info = self.job_info(disk['name'])
        return disk

    def plan_present(self, live):
        if self.info:
            return self.existing_job(live, self.info)
        operations = dict(commit=self.commit, pull=self.pull, copy=self.copy, resize=self.resize)
        return operations[self.params['operation']](live)

    def after_apply(self, live, plan):
        plan.diff = self.diff
        return live

    def result_fields(self, live, plan):
        return dict(self.fields)

    def report(self, msg, disk, job, before, after, **extra):
        """What the result says (the prediction while planning; a step replaces it with what
        happened): msg, the job's figures, the chain (or size) before and after, extra fields."""
        self.fields = dict(msg=msg, disk=disk['name'] if disk else None,
                           operation=self.params.get('operation'), job=job_facts(job) if job is not None else None,
                           duration=round(time.time() - self.started, 3) if self.started else 0.0,
                           chain_before=paths(before), chain_after=paths(after))
        self.fields.update(extra)
        if 'size' in extra:
            self.diff = dict(before=dict(disk=disk['name'], capacity=extra['size']['before']),
                             after=dict(disk=disk['name'], capacity=extra['size']['after']))
        else:
            self.diff = dict(before=dict(disk=disk['name'], chain=paths(before)),
                             after=dict(disk=disk['name'], chain=paths(after)))

    def planned(self, steps, msg, disk, job, before, after, **extra):
        """The Plan of steps (name, callable), reporting what the run will return."""
        self.report(msg, disk, job, before, after, **extra)
        plan = Plan()
        for name, run in steps:
            plan.add(name, run)
        plan.diff = self.diff
        return plan

    # -- state: absent -------------------------------------------------------------------------

    def plan_absent(self, live):
        chain = live['chain']
        if not self.active:
            return self.planned([], 'domain %s is not running: no block job on disk %s' % (
                self.dom.name(), live['name']), live, None, chain, chain)
        info = self.info
        if not info:
            return self.planned([], 'no block job on %s' % self.disk_label, live, None, chain, chain)
        name, kind = JOB_TYPES.get(info.get('type'), ('unknown', None))
        if kind is None:
            raise BlockJobError('%s has a running %s job, which this module does not end (a backup '
                                'job ends with virt_backup or virDomainAbortJob); nothing was '
                                'changed' % (self.disk_label, name), obj=self.dom.name(),
                                job=job_facts(info))
        if self.params.get('operation') and self.params['operation'] != kind:
            raise BlockJobError('%s has a running %s job, not a %s job; nothing was changed' % (
                self.disk_label, name, self.params['operation']), obj=self.dom.name(), job=job_facts(info))

        def abort(live):
            self._abort_job(live['name'])
            after = self.disk()['chain']
            self.report('the %s job on %s aborted; the disk keeps its image' % (
                name, self.disk_label), live, info, chain, after)
            return live
        return self.planned([('abort', abort)], 'the %s job on %s would be aborted' % (name, self.disk_label),
                            live, info, chain, chain)

    def _abort_job(self, target):
        with libvirt_call('aborting the block job of disk %s' % target, _dom_label(self.dom)):
            self.dom.blockJobAbort(target, 0)

    # -- a job that runs already ---------------------------------------------------------------

    def existing_job(self, disk, info):
        """A job of the same kind (one started by an earlier run with wait: false) is awaited and
        finished; any other job is an error."""
        name, kind = JOB_TYPES.get(info.get('type'), ('unknown', None))
        op = self.params['operation']
        if kind != op:
            raise BlockJobError(
                '%s has a running %s job (%s of %s bytes); a disk runs one block job at a time. '
                'Wait for it, or abort it with state: absent. Nothing was changed.' % (
                    self.disk_label, name, info.get('cur'), info.get('end')),
                obj=self.dom.name(), reason=REASON_JOB_RUNNING, job=job_facts(info))
        if op == 'copy':
            dest = self.copy_dest()[0]
            mirror = disk['mirror'] or {}
            if mirror.get('path') and not _same_path(mirror['path'], dest):
                raise BlockJobError('%s is being copied to %s, not to %s; abort that job first '
                                    '(state: absent). Nothing was changed.' % (
                                        self.disk_label, mirror['path'], dest),
                                    obj=self.dom.name(), reason=REASON_JOB_RUNNING, job=job_facts(info))
        chain = disk['chain']
        after = self._predict_for_running(disk, name)
        if not self.params['wait']:
            return self.planned([], 'a %s job runs on %s (%s%%)' % (
                name, self.disk_label, job_facts(info)['progress']), disk, info, chain, chain)

        def finish(disk):
            final = self.wait(disk, info, name, started_here=False)
            self.complete(disk, name, final, chain, after, adopted=True)
            return disk
        return self.planned([('finish', finish)], 'the running %s job on %s would be awaited and finished' % (
            name, self.disk_label), disk, info, chain, after)

    def _predict_for_running(self, disk, name):
        chain = disk['chain']
        if name == 'copy':
            return [dict(path=self.copy_dest()[0], format=None, index=None)] if self.params['pivot'] else chain
        if name == 'active-commit':
            mirror = disk['mirror'] or {}
            if self.params['pivot'] and mirror.get('path'):
                for i, layer in enumerate(chain):
                    if _same_path(layer['path'], mirror['path']):
                        return chain[i:]
            return chain
        return None  # pull, commit: read back when the job is gone

    # -- waiting and finishing -----------------------------------------------------------------

    def wait(self, disk, info, name, started_here):
        """Poll until the job is ready (copy, active commit) or gone (pull, commit).

        Returns the last figures seen. On timeout a job this run started is aborted (never left
        behind); one it found running is left as it is.
        """
        target = disk['name']
        needs_ready = name in ('copy', 'active-commit')
        deadline = self.started + self.params['timeout']
        last = info
        while True:
            current = self.job_info(target)
            if not current:
                if needs_ready:
                    raise BlockJobError(
                        'the %s job on %s ended before it was ready (QEMU reported an error; see '
                        '/var/log/libvirt/qemu/%s.log). The disk keeps its image.' % (
                            name, self.disk_label, self.dom.name()),
                        obj=self.dom.name(), reason=REASON_JOB_FAILED, job=job_facts(last))
                done = dict(last)
                done['cur'] = done.get('end', 0)
                return done
            last = current
            if needs_ready:
                mirror = self.disk()['mirror']
                if mirror and mirror['ready']:
                    # The figures read before the ready flag may be from just before it: read
                    # them again now that the mirror is in sync.
                    return self.job_info(target) or current
            if time.time() >= deadline:
                facts = job_facts(current)
                if started_here:
                    self._abort_job(target)
                    what = 'aborted (the disk keeps its image)'
                else:
                    what = 'left running (this run did not start it)'
                raise BlockJobError(
                    'the %s job on %s did not finish within %s s (%s of %s bytes, %s%%); %s' % (
                        name, self.disk_label, self.params['timeout'], facts['cur'], facts['end'],
                        facts['progress'], what), obj=self.dom.name(), reason=REASON_TIMEOUT, job=facts)
            time.sleep(POLL_INTERVAL)

    def complete(self, disk, name, final, chain, predicted, adopted=False):
        """The last phase: pivot or complete a ready job; check the chain came out as planned."""
        target = disk['name']
        pivot = self.params.get('pivot')
        if name in ('copy', 'active-commit'):
            flags = _flag('VIR_DOMAIN_BLOCK_JOB_ABORT_PIVOT') if pivot else 0
            action = '%s the %s job of disk %s' % ('pivoting' if pivot else 'completing', name, target)
            with libvirt_call(action, _dom_label(self.dom)):
                self.dom.blockJobAbort(target, flags)
        after = self.disk()['chain']
        if predicted is not None and paths(after) != paths(predicted):
            raise BlockJobError(
                'the %s job on %s ended, but the backing chain is %s instead of %s (QEMU reported an '
                'error? see /var/log/libvirt/qemu/%s.log)' % (
                    name, self.disk_label, ' <- '.join(paths(after)), ' <- '.join(paths(predicted)),
                    self.dom.name()), obj=self.dom.name(), reason=REASON_JOB_FAILED,
                job=job_facts(final), chain_before=paths(chain), chain_after=paths(after))
        if name == 'copy':
            ending = ' and pivoted' if pivot else ' (the disk keeps its image)'
            verb = 'copied to %s%s' % (self.copy_dest()[0], ending)
        elif name == 'active-commit' and pivot:
            verb = 'committed into %s' % after[0]['path']
        elif name == 'active-commit':
            verb = 'committed into its base (the overlays stay in use)'
        elif name == 'pull':
            verb = 'pulled into its active image'
        else:
            verb = 'committed into a lower image of its chain'
        msg = '%s %s%s' % (self.disk_label, verb, ' (finished a job found running)' if adopted else '')
        self.report(msg, disk, final, chain, after)

    # -- operations ----------------------------------------------------------------------------

    def _started(self, disk, plan, name, chain):
        """After the job started: report at once (wait: false) or wait and finish."""
        info = self.job_info(disk['name'])
        if not self.params['wait']:
            self.report('%s started on %s' % (name, self.disk_label), disk, info or None, chain, chain)
            return
        if not info:
            # Already over (a small pull or commit): the figures are gone with it.
            info = dict(type=[k for k, v in JOB_TYPES.items() if v[0] == name][0], cur=0, end=0,
                        bandwidth=0)
        try:
            final = self.wait(disk, info, name, started_here=True)
            self.complete(disk, name, final, chain, plan.chain_after)
        except BlockJobError:
            raise
        except Exception:
            # Never leave a job this run started behind (the pivot itself is not retried).
            try:
                if self.job_info(disk['name']):
                    self._abort_job(disk['name'])
            except VirtError:
                pass
            raise

    def _job_plan(self, disk, plan, chain, start, **extra):
        """The Plan of an operation: the step start(disk) when plan says there is something to
        do, and the result without it (nothing to do, or check mode's prediction).

        With wait: false a real run returns before the job changed the chain, so check mode
        predicts the chain as it is.
        """
        after = plan.chain_after if self.params['wait'] and plan.chain_after is not None else chain
        steps = [(self.params['operation'], start)] if plan.changed else []
        return self.planned(steps, _would(plan, self.check_mode, self.params['wait']), disk, None,
                            chain, after, **extra)

    def pull(self, disk):
        chain = disk['chain']
        plan = plan_pull(chain, self.disk_label, self.params.get('base'))

        def start(disk):
            bandwidth = parse_bandwidth(self.params.get('bandwidth')) or 0
            with libvirt_call('starting a pull on disk %s' % disk['name'], _dom_label(self.dom)):
                if plan.args['base'] is None:
                    self.dom.blockPull(disk['name'], bandwidth, _flag('VIR_DOMAIN_BLOCK_PULL_BANDWIDTH_BYTES'))
                else:
                    self.dom.blockRebase(disk['name'], plan.args['base'], bandwidth,
                                         _flag('VIR_DOMAIN_BLOCK_REBASE_BANDWIDTH_BYTES'))
            self._started(disk, plan, 'pull', chain)
            return disk
        return self._job_plan(disk, plan, chain, start)

    def commit(self, disk):
        chain = disk['chain']
        plan = plan_commit(chain, self.disk_label, self.params.get('top'), self.params.get('base'), self.params['pivot'])
        extra = {}
        if plan.changed:
            extra['deleted'] = plan.args['committed'] if self.params.get('delete') else []

        def start(disk):
            flags = _flag('VIR_DOMAIN_BLOCK_COMMIT_BANDWIDTH_BYTES')
            if plan.args['active']:
                flags |= _flag('VIR_DOMAIN_BLOCK_COMMIT_ACTIVE')
            if self.params.get('delete'):
                flags |= _flag('VIR_DOMAIN_BLOCK_COMMIT_DELETE')
            bandwidth = parse_bandwidth(self.params.get('bandwidth')) or 0
            with libvirt_call('starting a commit on disk %s' % disk['name'], _dom_label(self.dom)):
                self.dom.blockCommit(disk['name'], plan.args['base'], plan.args['top'], bandwidth, flags)
            self._started(disk, plan, 'active-commit' if plan.args['active'] else 'commit', chain)
            self.fields.update(extra)
            return disk
        return self._job_plan(disk, plan, chain, start, **extra)

    def copy_dest(self):
        """(path, disk XML for virDomainBlockCopy or None when built from the options)."""
        dest = (self.params.get('dest') or '').strip()
        if not dest:
            raise BlockJobError('operation copy needs dest (a path, or a <disk> XML)',
                                reason=REASON_INVALID_OPTION)
        if not dest.startswith('<'):
            return dest, None
        root = _document.parse(dest, 'the dest XML')
        if root.tag != 'disk':
            raise BlockJobError('the dest XML has root element <%s>, expected <disk>' % root.tag,
                                reason=REASON_INVALID_XML)
        path = _layer_path(root.get('type'), root.find('source'))
        if path is None:
            raise BlockJobError('the dest XML names no source (<source file=...> or dev=...)',
                                reason=REASON_INVALID_XML)
        if self.params.get('format'):
            raise BlockJobError('format applies only when dest is a path; put it in the dest XML '
                                '(<driver type=...>)', reason=REASON_INVALID_OPTION)
        return path, dest

    def _dest_xml(self, path, fmt):
        kind = 'block' if path.startswith('/dev/') else 'file'
        root = _document.etree.Element('disk', type=kind)
        _document.etree.SubElement(root, 'source', **{'file' if kind == 'file' else 'dev': path})
        if fmt:
            _document.etree.SubElement(root, 'driver', type=fmt)
        return _document.render(root)

    def copy(self, disk):
        chain = disk['chain']
        path, xml = self.copy_dest()
        exists = None
        if is_local_uri(self.connection.uri) and path.startswith('/'):
            exists = os.path.exists(path)
            parent = os.path.dirname(path)
            if not exists and not os.path.isdir(parent):
                raise BlockJobError('%s: the directory of the copy destination %s does not exist' % (
                    self.disk_label, path), reason=REASON_INVALID_DESTINATION)
        plan = plan_copy(chain, self.disk_label, path, self.params['pivot'], self.params['shallow'],
                         self.params['reuse_external'], exists)

        def start(disk):
            dest_xml = xml
            if dest_xml is None:
                fmt = self.params.get('format') or (chain[0]['format'] if chain else None)
                dest_xml = self._dest_xml(path, fmt)
            params = {}
            bandwidth = parse_bandwidth(self.params.get('bandwidth'))
            if bandwidth:
                params[_flag('VIR_DOMAIN_BLOCK_COPY_BANDWIDTH')] = bandwidth
            for opt, key in (('granularity', 'VIR_DOMAIN_BLOCK_COPY_GRANULARITY'),
                             ('buf_size', 'VIR_DOMAIN_BLOCK_COPY_BUF_SIZE')):
                if self.params.get(opt):
                    params[_flag(key)] = parse_size(self.params[opt], opt)
            # A persistent domain needs TRANSIENT_JOB (the job does not survive a restart of the
            # domain); the pivot still updates the persistent definition.
            flags = _flag('VIR_DOMAIN_BLOCK_COPY_TRANSIENT_JOB')
            if self.params['shallow']:
                flags |= _flag('VIR_DOMAIN_BLOCK_COPY_SHALLOW')
            if self.params['reuse_external']:
                flags |= _flag('VIR_DOMAIN_BLOCK_COPY_REUSE_EXT')
            with libvirt_call('starting a copy of disk %s to %s' % (disk['name'], path), _dom_label(self.dom)):
                self.dom.blockCopy(disk['name'], dest_xml, params, flags)
            self._started(disk, plan, 'copy', chain)
            # Not 'dest': AnsibleModule would add that file's attributes (and a 'size') to the result.
            self.fields['destination'] = path
            return disk
        return self._job_plan(disk, plan, chain, start, destination=path)

    def resize(self, disk):
        if self.params.get('size') is None:
            raise BlockJobError('operation resize needs size (for example 10G)', reason=REASON_INVALID_OPTION)
        size = parse_size(self.params['size'], 'size')
        chain = disk['chain']
        before = self.capacity(disk['name'])
        plan = plan_resize(before, size, self.disk_label, self.params['allow_shrink'])

        def start(disk):
            with libvirt_call('resizing disk %s to %d bytes' % (disk['name'], size), _dom_label(self.dom)):
                self.dom.blockResize(disk['name'], size, _flag('VIR_DOMAIN_BLOCK_RESIZE_BYTES'))
            after = self.capacity(disk['name'])
            self.report('%s resized from %d to %d bytes' % (self.disk_label, before, after),
                        disk, None, chain, chain, size=dict(before=before, after=after))
            return disk
        return self._job_plan(disk, plan, chain, start, size=dict(before=before, after=size))


def _would(plan, check_mode, wait=True):
    """The plan's message as the result says it: what would be done, or why nothing is."""
    if plan.changed and check_mode:
        return 'would %s%s' % ('' if wait else 'start: ', plan.msg)
    return plan.msg


# Options that only some operations take; given to another they are an error, not ignored.
ONLY = dict(
    base=('commit', 'pull'),
    top=('commit',),
    delete=('commit',),
    dest=('copy',),
    format=('copy',),
    shallow=('copy',),
    reuse_external=('copy',),
    granularity=('copy',),
    buf_size=('copy',),
    size=('resize',),
    allow_shrink=('resize',),
)


def check_options(params):
    """Reject options that do not fit the operation before anything is read or changed."""
    op = params.get('operation')
    if params['state'] == 'present' and not op:
        raise BlockJobError('state present needs operation (commit, pull, copy or resize)',
                            reason=REASON_INVALID_OPTION)
    for opt, ops in ONLY.items():
        if params.get(opt) in (None, False):
            continue
        if params['state'] == 'absent' or op not in ops:
            raise BlockJobError('%s applies only to operation %s%s' % (
                opt, ' and '.join(ops), '' if params['state'] == 'present' else ' with state present'),
                reason=REASON_INVALID_OPTION)
    if params.get('bandwidth') is not None and op == 'resize':
        raise BlockJobError('bandwidth does not apply to operation resize', reason=REASON_INVALID_OPTION)
    if params.get('bandwidth') is not None:
        parse_bandwidth(params['bandwidth'])
    if params.get('size') is not None:
        parse_size(params['size'], 'size')
    if params.get('timeout') is not None and params['timeout'] <= 0:
        raise BlockJobError('timeout must be a positive number of seconds', reason=REASON_INVALID_OPTION)
