#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: virt_snapshot
short_description: Create, revert to and delete snapshots of libvirt domains
version_added: 0.1.0
description:
  - Makes a snapshot of a libvirt domain exist or not, or reverts the domain to one.
  - Three types. V(internal) keeps the disk state (and the memory of a running domain) inside the
    qcow2 images. V(disk-only) gives each chosen disk a new qcow2 overlay that the domain writes to
    from then on; the old image becomes its read-only backing file. V(external) does the same and
    saves the memory of the running domain to O(memory_file).
  - A snapshot of that name that exists is left alone. Its type cannot change; a differing type is
    an error and nothing is changed. A differing O(description), and O(current=true) on a snapshot
    that is not the current one, are libvirt metadata; the module replaces them by redefining the
    snapshot's metadata (disks and memory state are not touched).
author:
  - virtops.libvirt developers (@virtops)
extends_documentation_fragment:
  - virtops.libvirt.connection
  - virtops.libvirt.attributes
attributes:
  check_mode:
    support: full
    details:
      - The returned RV(snapshot) of a snapshot not yet created has O(name), description, type, parent
        (the current snapshot) and the disks asked for; RV(snapshot.creation_time) and RV(snapshot.xml)
        are null, as only libvirt knows them.
      - Failures libvirt detects only when it acts (for example a disk that is not qcow2 for an
        internal snapshot, or an overlay file that exists) cannot be predicted.
  diff_mode:
    support: full
    details:
      - Before and after are the snapshot's name, description, parent, state, creation time, current
        flag, type, memory file and disks.
  idempotent:
    support: partial
    details:
      - V(present) and V(absent) are idempotent.
      - V(reverted) is idempotent only where the module can see that a revert would change nothing. libvirt
        keeps no record of reverts and cannot tell whether a domain changed since one, so after each revert
        to a snapshot of a shut-off domain the module records in the domain's metadata (element C(revert),
        namespace C(https://virtops.example/libvirt/revert/1)) a hash of the domain definition and the
        size and modification time of each disk image. The next run does nothing and reports no change
        when the snapshot is still the current one, the domain is shut off, and the definition and the
        images are as recorded. A write into an image, a start of the domain, a new definition, another
        current snapshot, each make the next run revert again.
      - Every other revert acts and reports a change on every run; RV(revert_reason) says why. That is
        the case for a snapshot of a running or paused domain (the guest has run since, so its memory and
        disks have moved on), for disks that are not local files (block devices, network disks, a remote
        O(uri)), whose changes leave no trace the module can compare, and for the first revert done by
        this module (nothing recorded yet).
options:
  domain:
    description:
      - Name of the domain the snapshot belongs to. A domain that does not exist is an error, also
        with O(state=absent).
    type: str
    required: true
  name:
    description:
      - Name of the snapshot.
    type: str
    required: true
  state:
    description:
      - V(present) creates the snapshot when there is none of that name.
      - V(absent) deletes it; a snapshot that does not exist is not an error. Deleting an external
        snapshot commits its overlays into their backing images, which the domain then uses again.
      - V(reverted) reverts the domain to it (C(virDomainRevertToSnapshot)); the snapshot must exist.
        A revert that would change nothing is skipped (see the idempotent attribute).
        libvirt before 9.9 reverts only to V(internal) snapshots; the module fails before trying and
        changes nothing.
    type: str
    choices: [present, absent, reverted]
    default: present
  description:
    description:
      - Free-form description stored with the snapshot.
      - Not compared when omitted. The empty string removes a description.
    type: str
  type:
    description:
      - The kind of snapshot to create; see the module description.
      - Not compared with an existing snapshot when omitted; when given and the existing snapshot
        is of another type, the module fails.
      - When omitted and the snapshot is created, V(internal).
    type: str
    choices: [internal, disk-only, external]
  disks:
    description:
      - For O(type=disk-only) and O(type=external), the disks and their overlays, by target name.
      - When omitted, libvirt snapshots every disk and names each overlay after the image and the
        snapshot.
      - When given, libvirt applies its default to the disks not listed.
    type: list
    elements: dict
    suboptions:
      name:
        description: Target name of the disk (C(<target dev=...>)), for example V(vda).
        type: str
        required: true
      snapshot:
        description:
          - V(external) gives the disk an overlay; V(no) leaves it out of the snapshot.
          - An unquoted C(no) in YAML is a boolean false; it is accepted as V(no).
        type: str
        choices: [external, 'no']
        default: external
      file:
        description:
          - Path of the new qcow2 overlay. It must not exist. When omitted, libvirt chooses one.
        type: path
  memory_file:
    description:
      - With O(type=external), where the memory state of the running domain is saved. Required for
        that type.
    type: path
  quiesce:
    description:
      - Freeze the guest's file systems during the snapshot (C(VIR_DOMAIN_SNAPSHOT_CREATE_QUIESCE));
        needs the QEMU guest agent in the guest.
    type: bool
    default: false
  current:
    description:
      - With O(state=present), make the snapshot the domain's current one
        (C(VIR_DOMAIN_SNAPSHOT_CREATE_REDEFINE) with C(VIR_DOMAIN_SNAPSHOT_CREATE_CURRENT)).
        New snapshots are always current. V(false) leaves the current snapshot as it is.
    type: bool
    default: false
  children:
    description:
      - With O(state=absent), delete the descendants of the snapshot too
        (C(VIR_DOMAIN_SNAPSHOT_DELETE_CHILDREN)).
    type: bool
    default: false
  metadata_only:
    description:
      - With O(state=absent), remove only libvirt's record of the snapshot
        (C(VIR_DOMAIN_SNAPSHOT_DELETE_METADATA_ONLY)); internal snapshots stay in the images,
        overlays of external snapshots stay in use.
    type: bool
    default: false
notes:
  - Internal snapshots of a running domain save its memory into the first qcow2 image, which takes
    as long as writing the guest's RAM.
  - Incremental backups (M(virtops.libvirt.virt_backup)) keep working after a V(disk-only) snapshot;
    libvirt carries the checkpoints' bitmaps over to the overlay.
seealso:
  - module: virtops.libvirt.virt_snapshot_info
  - name: libvirt snapshot XML format
    description: The C(<domainsnapshot>) element.
    link: https://libvirt.org/formatsnapshot.html
'''

EXAMPLES = r'''
- name: Snapshot a VM before an upgrade (disks and memory, inside its qcow2 images)
  virtops.libvirt.virt_snapshot:
    domain: web01
    name: before-upgrade
    description: before the upgrade

- name: Go back to it
  virtops.libvirt.virt_snapshot:
    domain: web01
    name: before-upgrade
    state: reverted

- name: Freeze the system disk in place; the VM writes to an overlay from now on
  virtops.libvirt.virt_snapshot:
    domain: web01
    name: frozen
    type: disk-only
    disks:
      - name: vda
        file: /var/lib/libvirt/images/web01-vda.frozen.qcow2
      - name: vdb
        snapshot: 'no'

- name: Delete a snapshot and everything after it
  virtops.libvirt.virt_snapshot:
    domain: web01
    name: before-upgrade
    state: absent
    children: true
'''

RETURN = r'''
snapshot:
  description:
    - The snapshot after the task; with O(state=absent) the snapshot as it was before deletion.
    - Null with O(state=absent) when there was no such snapshot.
  returned: always
  type: dict
  contains:
    name:
      description: Snapshot name.
      type: str
      sample: before-upgrade
    description:
      description: Its description, null when it has none.
      type: str
    parent:
      description: Name of the parent snapshot, null for a root.
      type: str
    state:
      description: State of the domain the snapshot holds; V(disk-snapshot) for disk-only ones.
      type: str
      sample: running
    creation_time:
      description: Creation time, seconds since the epoch.
      type: int
    current:
      description: Whether it is the domain's current snapshot.
      type: bool
    type:
      description: V(internal), V(disk-only) or V(external).
      type: str
    memory_file:
      description: Memory state file of an external snapshot, else null.
      type: str
    disks:
      description:
        - The disks of the snapshot (name, snapshot (internal, external or no), file (overlay of an
          external snapshot)). In check mode, the disks asked for, or null when libvirt chooses.
      type: list
      elements: dict
    xml:
      description: The snapshot XML, including the domain definition.
      type: str
deleted:
  description: Names of the snapshots deleted (or to be deleted in check mode), parents first.
  returned: when O(state=absent)
  type: list
  elements: str
revert_reason:
  description:
    - With O(state=reverted), why the domain was (or in check mode would be) reverted, for example
      V(a disk image changed since the last revert) or V(the domain runs); null when nothing was to do.
  returned: when O(state=reverted)
  type: str
  sample: a disk image changed since the last revert
msg:
  description: What was done.
  returned: always
  type: str
  sample: snapshot before-upgrade created
'''

from ansible_collections.virtops.libvirt.plugins.module_utils._lifecycle import run_module
from ansible_collections.virtops.libvirt.plugins.module_utils._snapshot import SnapshotManager


def main():
    run_module(SnapshotManager)


if __name__ == '__main__':
    main()
