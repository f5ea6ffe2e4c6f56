# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Private to the virtops.libvirt collection: may change without notice.
"""A watchdog that cleans up after a backup whose process died (kill -9, OOM, lost controller).

A pull-mode job lives until someone aborts it, and a dead module cannot. Before the job begins, a
small separate process is started in its own session with one end of a pipe. The module tells it
"done" once it has committed or cleaned up itself; if the pipe closes without that word, the module
died, and the watchdog aborts the job, deletes the checkpoint the run created, and removes the
partial backup, scratch files and socket directory.

The watchdog's code is self-contained (standard library and libvirt only): Ansible removes the
module's own files when the module process ends, so the watchdog cannot import them.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import subprocess
import sys

WATCHDOG_SOURCE = r'''
import os, sys
word = b''
try:
    while True:
        chunk = os.read(0, 64)
        if not chunk:
            break
        word += chunk
except OSError:
    pass
if word.strip() == b'done':
    sys.exit(0)
# Started with -S (see Watchdog.start): the site directories, where libvirt lives, only now.
import site
site.main()
import json, shutil, subprocess, time
args = json.loads(sys.argv[1])
import libvirt
libvirt.registerErrorHandler(lambda ctx, err: None, None)
conn = None
for attempt in range(60):
    try:
        conn = libvirt.open(args['uri'])
        break
    except libvirt.libvirtError:
        time.sleep(1)
dom = None
if conn is not None:
    try:
        dom = conn.lookupByUUIDString(args['domain_uuid'])
    except libvirt.libvirtError:
        dom = None
if dom is not None and args.get('thaw'):
    # The run may have died between freezing the guest's file systems and thawing them: a
    # frozen guest hangs on its next write. Thawing a guest that is not frozen does nothing.
    try:
        dom.fsThaw(None, 0)
    except libvirt.libvirtError:
        pass
# The run may have died after its commit point: then the backup exists, and neither it nor the
# checkpoint it records is touched; only scratch files and socket directories go.
committed = bool(args.get('backup_path')) and os.path.lexists(os.path.join(args['backup_path'], 'manifest.json'))
if dom is not None:
    try:
        stats = dom.jobStats(0)
        if stats.get('type', 0) != 0 and stats.get('operation') == libvirt.VIR_DOMAIN_JOB_OPERATION_BACKUP:
            xml = dom.backupGetXMLDesc(0)
            if any(marker in xml for marker in args['markers']):
                dom.abortJob()
                for _ in range(100):
                    if dom.jobStats(0).get('type', 0) == 0:
                        break
                    time.sleep(0.1)
    except libvirt.libvirtError:
        pass
def remove_bitmaps():
    for path in args['images']:
        subprocess.call(['qemu-img', 'bitmap', '--remove', '--', path, args['checkpoint']],
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
if dom is not None and not committed and args['checkpoint']:
    try:
        ck = dom.checkpointLookupByName(args['checkpoint'], 0)
        if dom.isActive():
            ck.delete(0)
        else:
            remove_bitmaps()
            ck.delete(libvirt.VIR_DOMAIN_CHECKPOINT_DELETE_METADATA_ONLY)
    except libvirt.libvirtError:
        if not dom.isActive():
            remove_bitmaps()
for pid in args.get('pids', []):
    try:
        os.kill(pid, 15)
    except OSError:
        pass
paths = list(args['paths'])
if args.get('backup_path') and not committed:
    paths.append(args['backup_path'])
for path in paths:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.lexists(path):
        try:
            os.unlink(path)
        except OSError:
            pass
'''


class Watchdog:
    """Start before the job; call done() once the run committed or cleaned up after itself."""

    def __init__(self, uri, domain_uuid, checkpoint, markers, paths, images, thaw=False, backup_path=None):
        """paths: removed when the run died; backup_path: the backup directory, removed only while
        it holds no manifest (a run killed after its commit point leaves a complete backup)."""
        self.args = dict(uri=uri, domain_uuid=domain_uuid, checkpoint=checkpoint, markers=list(markers),
                         paths=list(paths), images=list(images), thaw=bool(thaw), backup_path=backup_path)
        self.proc = None

    def start(self):
        read_end, write_end = os.pipe()
        try:
            # -S: no site start-up, and only os and sys before the word: a run that ends well
            # costs the watchdog's interpreter little more than its start (30 ms of CPU less).
            self.proc = subprocess.Popen(
                [sys.executable, '-S', '-c', WATCHDOG_SOURCE, json.dumps(self.args)],
                stdin=read_end, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                start_new_session=True, close_fds=True, cwd='/')
        finally:
            os.close(read_end)
        self.pipe = write_end
        return self

    def abandon(self):
        """The run failed and could not clean up itself: close the pipe without "done", so the
        watchdog cleans up now, in the background (it outlives this process)."""
        if self.proc is None:
            return
        os.close(self.pipe)
        self.proc = None

    def done(self):
        if self.proc is None:
            return
        try:
            os.write(self.pipe, b'done\n')
        except OSError:
            pass
        os.close(self.pipe)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.proc = None
