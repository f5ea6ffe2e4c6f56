#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: virt_blockjob
short_description: Commit, pull, copy and resize disks of running libvirt domains
version_added: 0.1.0
description:
  - Runs a block job on one disk of a running domain and waits for it to end, or ends a job that
    runs on the disk.
  - V(commit) merges images of the disk's backing chain down into a lower one
    (C(virDomainBlockCommit)). By default the whole chain goes into its bottom image and the domain
    then uses that image (an active commit with pivot).
  - V(pull) copies the data of backing images up into the active image (C(virDomainBlockPull),
    C(virDomainBlockRebase)). By default the whole chain, so that the active image stands alone.
  - V(copy) mirrors the disk to a new image (C(virDomainBlockCopy)) and, with O(pivot=true), makes
    the domain use it. The persistent definition follows the pivot, so the domain keeps the new image
    after a restart.
  - V(resize) changes the size of the disk as the guest sees it (C(virDomainBlockResize)).
  - Each operation is described by the state it leads to, and does nothing when the disk is there
    already; see O(operation).
author:
  - virtops.libvirt developers (@virtops)
extends_documentation_fragment:
  - virtops.libvirt.connection
  - virtops.libvirt.attributes
attributes:
  check_mode:
    support: full
    details:
      - Check mode reads the backing chain, the size and any running job and predicts C(changed) and
        RV(chain_after) (or RV(size)) without starting anything.
      - Failures that only QEMU detects while the job runs (no space left for the copy, an image it
        cannot open) cannot be predicted.
  diff_mode:
    support: full
    details:
      - Before and after are the disk's backing chain (list of images, active first), or its
        capacity in bytes for V(resize).
  idempotent:
    support: partial
    details:
      - V(pull) does nothing when nothing lies above O(base) (no backing file at all, by default).
      - V(commit) does nothing when nothing lies above O(base) any more, or when O(top) is no longer
        in the chain. An active commit with O(pivot=false) keeps the overlays in use and commits again
        on every run.
      - V(copy) with O(pivot=true) does nothing when the disk already uses O(dest). With O(pivot=false)
        a copy is made only when O(dest) does not exist (as with C(creates)), except with
        O(reuse_external=true), which copies on every run.
      - V(resize) does nothing when the disk already has O(size).
      - Positions in O(base) and O(top) are read against the chain of the moment; give paths for runs
        that repeat.
options:
  name:
    description:
      - Name of the domain. It must be running (or paused), except with O(state=absent).
    type: str
    required: true
    aliases: [domain]
  disk:
    description:
      - The disk, by its target name (C(<target dev=...>)), for example V(vda), or by the path of its active
        image.
    type: str
    required: true
  state:
    description:
      - V(present) brings the disk to the state O(operation) leads to.
      - V(absent) aborts the block job running on the disk (C(virDomainBlockJobAbort) without pivot;
        a copy or an active commit leaves the disk on its image). No job is not an error. With
        O(operation), only a job of that kind is aborted, any other is an error.
    type: str
    choices: [present, absent]
    default: present
  operation:
    description:
      - The block job. Required with O(state=present).
      - When the disk already runs a job of the same kind (started by an earlier run with
        O(wait=false)), the module waits for it and finishes it as this run asks (O(pivot)), instead
        of starting another; for V(copy) the job must copy to O(dest). A job of another kind is an
        error; a disk runs one block job at a time.
    type: str
    choices: [commit, pull, copy, resize]
  base:
    description:
      - V(commit), the image the data goes into; V(pull), the image that stays the backing file of the
        active image (the data of the images above it is pulled).
      - A path of an image of the backing chain, or its position in the chain as listed in
        RV(chain_before) (0 is the active image).
      - V(commit) defaults to the bottom of the chain, V(pull) to no base (everything is pulled).
    type: str
  top:
    description:
      - V(commit), the highest image whose data is committed (path or position as for O(base)).
      - Default the active image (an active commit, which ends with O(pivot)). Any other image is
        committed while the domain keeps running on the active image, and drops out of the chain.
    type: str
  pivot:
    description:
      - V(copy) and active V(commit), how the job ends once QEMU has the data in place.
      - V(true) switches the domain to the new image (C(VIR_DOMAIN_BLOCK_JOB_ABORT_PIVOT)).
      - V(false) ends the job and keeps the domain on its image. For V(copy) O(dest) then holds the
        disk as it was when the job ended; for an active commit the base holds the data and the
        overlays stay in use.
    type: bool
    default: true
  delete:
    description:
      - V(commit), delete the committed images after a successful commit
        (C(VIR_DOMAIN_BLOCK_COMMIT_DELETE)).
    type: bool
    default: false
  dest:
    description:
      - V(copy), the destination, a path (a file, or a block device under C(/dev)), or a C(<disk>) XML
        as C(virDomainBlockCopy) takes it (C(<disk type='file'><source file='...'/><driver
        type='qcow2'/></disk>)).
      - A destination that exists is an error unless O(reuse_external=true) (with O(pivot=false) it
        means the copy was made); its directory must exist.
    type: str
  format:
    description:
      - V(copy), the image format of O(dest) when it is a path. Default the format of the active image.
    type: str
    choices: [qcow2, raw]
  shallow:
    description:
      - V(copy), copy only the active image; O(dest) gets the same backing file
        (C(VIR_DOMAIN_BLOCK_COPY_SHALLOW)).
    type: bool
    default: false
  reuse_external:
    description:
      - V(copy), copy into an existing O(dest) (C(VIR_DOMAIN_BLOCK_COPY_REUSE_EXT)). It must be an
        image of the disk's size; with O(shallow=true) it must have the right backing file.
    type: bool
    default: false
  granularity:
    description:
      - V(copy), granularity of the dirty bitmap of the mirror, a power of two between 512 bytes and
        64 MiB (for example V(64K)).
    type: str
  buf_size:
    description:
      - V(copy), how much data the mirror may have in flight (for example V(8M)).
    type: str
  size:
    description:
      - V(resize), the new size of the disk, bytes or a number with a unit (V(K), V(M), V(G), V(T)
        and V(KiB) ... are powers of 1024, V(KB), V(MB) ... powers of 1000).
    type: str
  allow_shrink:
    description:
      - V(resize), allow a O(size) smaller than the disk. Without it shrinking is refused, as it
        loses the data at the end of the disk.
    type: bool
    default: false
  bandwidth:
    description:
      - Speed limit of the job in bytes per second, or a size with a unit per second (V(50M)).
        Default no limit.
    type: str
  wait:
    description:
      - V(true) waits until the job has ended (pull, commit below the active image) or is ready and
        then finishes it (copy, active commit), and returns the figures.
      - V(false) returns as soon as the job runs, with its first figures; run the module again with
        O(wait=true) (or let the job end by itself) to finish it. A copy or an active commit runs until
        someone finishes it.
    type: bool
    default: true
  timeout:
    description:
      - How long to wait for the job, in seconds. When it runs out, the module aborts the job it
        started (the disk keeps its image) and fails; a job it found running is left running.
    type: int
    default: 3600
notes:
  - Block jobs need a running domain; for a domain that is shut off the module fails and changes
    nothing. Resize its image with M(virtops.libvirt.virt_volume) or C(qemu-img resize), commit or
    rebase with C(qemu-img commit) / C(qemu-img rebase).
  - A copy of a persistent domain runs as a transient job (C(VIR_DOMAIN_BLOCK_COPY_TRANSIENT_JOB));
    it does not survive a restart of the domain.
  - The chains the module returns come from the live XML, as libvirt read them when the domain
    started or the last job ended.
seealso:
  - module: virtops.libvirt.virt_snapshot
  - name: virsh blockcommit, blockpull, blockcopy, blockjob, blockresize
    description: The same operations in virsh.
    link: https://www.libvirt.org/manpages/virsh.html#blockcommit
'''

EXAMPLES = r'''
- name: Merge the overlays of an external snapshot back into the base image
  virtops.libvirt.virt_blockjob:
    name: web01
    disk: vda
    operation: commit

- name: Make the active image stand alone (copy up the data of every backing file)
  virtops.libvirt.virt_blockjob:
    name: web01
    disk: vda
    operation: pull
    bandwidth: 100M

- name: Move the disk to another storage while the VM runs
  virtops.libvirt.virt_blockjob:
    name: web01
    disk: vda
    operation: copy
    dest: /srv/fast/web01-vda.qcow2
    format: qcow2

- name: Take a consistent copy and stay on the original image
  virtops.libvirt.virt_blockjob:
    name: web01
    disk: vda
    operation: copy
    dest: /srv/export/web01-vda.qcow2
    pivot: false

- name: Grow the data disk
  virtops.libvirt.virt_blockjob:
    name: web01
    disk: vdb
    operation: resize
    size: 20G

- name: Start a long copy, do other work, then finish it
  virtops.libvirt.virt_blockjob:
    name: web01
    disk: vda
    operation: copy
    dest: /srv/fast/web01-vda.qcow2
    wait: false

- name: Abort whatever block job runs on vda (the disk keeps its image)
  virtops.libvirt.virt_blockjob:
    name: web01
    disk: vda
    state: absent
'''

RETURN = r'''
disk:
  description: Target name of the disk.
  returned: always
  type: str
  sample: vda
operation:
  description: The operation asked for (null with O(state=absent) without O(operation)).
  returned: always
  type: str
  sample: commit
job:
  description:
    - Figures of the job as last seen; null when no job ran (nothing to do, check mode, resize).
    - A job that ended by itself reports RV(job.cur) equal to RV(job.end); one that ended before the
      module first looked (a small pull or commit) reports 0 for both.
  returned: always
  type: dict
  contains:
    type:
      description: V(pull), V(copy), V(commit), V(active-commit) (or V(backup)).
      type: str
    cur:
      description: Bytes done.
      type: int
    end:
      description: Bytes to do (QEMU may raise it while the guest writes).
      type: int
    bandwidth:
      description: Speed limit in bytes per second, 0 for none.
      type: int
    progress:
      description: RV(job.cur) as a percentage of RV(job.end).
      type: float
  sample: {type: active-commit, cur: 1048576, end: 1048576, bandwidth: 0, progress: 100.0}
duration:
  description: Seconds the module ran, waiting included.
  returned: always
  type: float
  sample: 2.41
chain_before:
  description: The disk's backing chain before the run, active image first.
  returned: always
  type: list
  elements: str
  sample: [/var/lib/libvirt/images/web01-vda.snap1, /var/lib/libvirt/images/web01-vda.qcow2]
chain_after:
  description:
    - The chain after the run, active image first; in check mode the chain predicted.
    - With O(wait=false) the chain as it is while the job runs.
  returned: always
  type: list
  elements: str
  sample: [/var/lib/libvirt/images/web01-vda.qcow2]
size:
  description: V(resize), the capacity in bytes before and after (in check mode, as asked).
  returned: when O(operation=resize) and O(state=present)
  type: dict
  sample: {before: 10737418240, after: 21474836480}
destination:
  description: V(copy), the path of the destination.
  returned: when O(operation=copy) and O(state=present), unless a job was found running
  type: str
deleted:
  description: V(commit), the images deleted (or to be deleted) with O(delete=true); empty otherwise.
  returned: when O(operation=commit) had something to commit
  type: list
  elements: str
msg:
  description: What was done, or why nothing was.
  returned: always
  type: str
  sample: disk vda of domain web01 committed into /var/lib/libvirt/images/web01-vda.qcow2
'''

from ansible_collections.virtops.libvirt.plugins.module_utils._blockjob import BlockJobManager
from ansible_collections.virtops.libvirt.plugins.module_utils._lifecycle import run_module


def main():
    run_module(BlockJobManager)


if __name__ == '__main__':
    main()
