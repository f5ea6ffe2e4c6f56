#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: virt_checkpoint
short_description: Create, redefine and delete checkpoints of libvirt domains
version_added: 0.1.0
description:
  - Makes a checkpoint of a libvirt domain exist or not. A checkpoint records a point in time
    through a persistent dirty bitmap in each chosen disk; incremental backups read what changed
    since it.
  - Creating a checkpoint needs the domain running (libvirt makes the bitmaps through QEMU).
    Deleting one removes its bitmaps too, through QEMU while the domain runs; for a shut-off
    domain (which libvirt's QEMU driver refuses) the module removes them from the local disk
    images with C(qemu-img bitmap --remove) and then deletes libvirt's record.
  - A checkpoint cannot be changed after creation. When a checkpoint of that name exists with
    other disks than O(disks) asks for, the module fails and changes nothing. A differing
    O(description) is only libvirt metadata; the module replaces it by redefining the
    checkpoint's metadata (the bitmaps are not touched).
  - Checkpoint metadata that libvirt lost (domain undefined and defined again, O(metadata_only)
    deletion, another host) can be restored from saved XML with O(redefine_xml).
author:
  - virtops.libvirt developers (@virtops)
extends_documentation_fragment:
  - virtops.libvirt.connection
  - virtops.libvirt.attributes
attributes:
  check_mode:
    support: full
    details:
      - The returned RV(checkpoint) of a checkpoint not yet created has O(name), description and
        the disks libvirt will give it; RV(checkpoint.parent), RV(checkpoint.creation_time) and
        RV(checkpoint.xml) are null, as only libvirt knows them.
      - Failures libvirt detects only when it acts (for example a read-only disk given a bitmap)
        cannot be predicted.
  diff_mode:
    support: full
    details:
      - Before and after are the checkpoint's name, description, parent, creation time and disks.
  idempotent:
    support: full
options:
  domain:
    description:
      - Name of the domain the checkpoint belongs to. A domain that does not exist is an error,
        also with O(state=absent).
    type: str
    required: true
  name:
    description:
      - Name of the checkpoint. Also the name of the bitmap in each disk image.
      - Required unless O(redefine_xml) is given, which carries the name.
    type: str
  state:
    description:
      - V(present) creates the checkpoint when there is none of that name (or redefines it from
        O(redefine_xml)).
      - V(absent) deletes it (with its bitmaps unless O(metadata_only=true)); a checkpoint that does
        not exist is not an error.
    type: str
    choices: [present, absent]
    default: present
  description:
    description:
      - Free-form description stored with the checkpoint.
      - Not compared when omitted. The empty string removes a description.
    type: str
  disks:
    description:
      - The disks to give a bitmap, by target name (V(vda)).
      - When omitted, libvirt gives a bitmap to every writable disk with media; every such disk
        must then be in qcow2 format.
      - When given, libvirt gives no bitmap to the disks not listed.
      - On an existing checkpoint, only the disks listed are compared with it (a disk it does not
        have counts as V(no)).
      - A disk to get a bitmap must be in qcow2 format; the module checks this before asking
        libvirt and names the disk that is not.
    type: list
    elements: dict
    suboptions:
      name:
        description: Target name of the disk (C(<target dev=...>)), for example V(vda).
        type: str
        required: true
      checkpoint:
        description:
          - V(bitmap) gives the disk a bitmap, V(no) leaves it out of the checkpoint.
          - An unquoted C(no) in YAML is a boolean false; it is accepted as V(no).
        type: str
        choices: [bitmap, 'no']
        default: bitmap
  redefine_xml:
    description:
      - Checkpoint XML as saved from RV(checkpoint.xml), from M(virtops.libvirt.virt_checkpoint_info)
        or C(virsh checkpoint-dumpxml), with its C(<creationTime>).
      - Restores the checkpoint's metadata with C(VIR_DOMAIN_CHECKPOINT_CREATE_REDEFINE), adding
        C(VIR_DOMAIN_CHECKPOINT_CREATE_REDEFINE_VALIDATE) when the domain runs, so libvirt checks that
        the bitmaps exist in the disk images. No bitmap is created.
      - Not changed when a checkpoint of that name exists with the same description, parent,
        creation time and disks; otherwise its metadata is replaced by the XML.
      - Only with O(state=present); excludes O(description) and O(disks).
    type: str
  children:
    description:
      - With O(state=absent), delete the descendants of the checkpoint too
        (C(VIR_DOMAIN_CHECKPOINT_DELETE_CHILDREN)).
      - Without it, only the checkpoint goes; libvirt merges its bitmap into its parent's so its
        children stay valid.
    type: bool
    default: false
  metadata_only:
    description:
      - With O(state=absent), remove only libvirt's record of the checkpoint
        (C(VIR_DOMAIN_CHECKPOINT_DELETE_METADATA_ONLY)); the bitmaps stay in the disk images and
        O(redefine_xml) can restore the record.
    type: bool
    default: false
notes:
  - A checkpoint of a running domain only; libvirt 9.0 refuses to create one for a shut-off domain.
  - Deleting a checkpoint of a shut-off domain needs qemu-img on the host and disks that are local
    image files (a network disk's bitmap cannot be removed offline; the module then fails and
    changes nothing).
  - The returned RV(checkpoint.xml) includes the domain definition at checkpoint time, which
    libvirt recommends keeping for redefinition.
seealso:
  - module: virtops.libvirt.virt_checkpoint_info
  - name: libvirt checkpoint XML format
    description: The C(<domaincheckpoint>) element.
    link: https://libvirt.org/formatcheckpoint.html
'''

EXAMPLES = r'''
- name: Checkpoint every disk of a running VM
  virtops.libvirt.virt_checkpoint:
    domain: web01
    name: ck-2024-06-01
    description: before the upgrade

- name: Checkpoint only the system disk; the raw scratch disk vdb cannot hold a bitmap
  virtops.libvirt.virt_checkpoint:
    domain: web01
    name: ck-system
    disks:
      - name: vda
      - name: vdb
        checkpoint: 'no'

- name: Save the checkpoint for later redefinition
  virtops.libvirt.virt_checkpoint_info:
    domain: web01
    name: ck-system
  register: saved

- name: Restore checkpoint metadata libvirt has lost (the bitmaps are still in the images)
  virtops.libvirt.virt_checkpoint:
    domain: web01
    redefine_xml: "{{ saved.checkpoints[0].xml }}"

- name: Delete a checkpoint and everything after it
  virtops.libvirt.virt_checkpoint:
    domain: web01
    name: ck-2024-06-01
    state: absent
    children: true

- name: Forget the checkpoint, keep its bitmaps
  virtops.libvirt.virt_checkpoint:
    domain: web01
    name: ck-system
    state: absent
    metadata_only: true
'''

RETURN = r'''
checkpoint:
  description:
    - The checkpoint after the task; with O(state=absent) the checkpoint as it was before deletion.
    - Null with O(state=absent) when there was no such checkpoint.
  returned: always
  type: dict
  contains:
    name:
      description: Checkpoint name.
      type: str
      sample: ck-2024-06-01
    description:
      description: Its description, null when it has none.
      type: str
      sample: before the upgrade
    parent:
      description: Name of the parent checkpoint, null for the first one.
      type: str
      sample: ck-2024-05-31
    creation_time:
      description: Creation time, seconds since the epoch.
      type: int
      sample: 1717200000
    disks:
      description: Every disk of the domain at checkpoint time.
      type: list
      elements: dict
      contains:
        name:
          description: Target name of the disk.
          type: str
          sample: vda
        checkpoint:
          description: V(bitmap) or V(no).
          type: str
          sample: bitmap
        bitmap:
          description: Name of the bitmap in the image, null without one.
          type: str
          sample: ck-2024-06-01
    xml:
      description: The checkpoint XML, including the domain definition; usable as O(redefine_xml).
      type: str
deleted:
  description: Names of the checkpoints deleted (or to be deleted in check mode), parents first.
  returned: when O(state=absent)
  type: list
  elements: str
  sample: [ck-2024-06-01, ck-2024-06-02]
msg:
  description: What was done.
  returned: always
  type: str
  sample: checkpoint ck-2024-06-01 created
'''

from ansible_collections.virtops.libvirt.plugins.module_utils._checkpoint import CheckpointManager
from ansible_collections.virtops.libvirt.plugins.module_utils._lifecycle import run_module


def main():
    run_module(CheckpointManager)


if __name__ == '__main__':
    main()
