#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: virt_volume
short_description: Create, clone, resize, upload, download, wipe and delete libvirt storage volumes
version_added: 0.1.0
description:
  - Makes a volume of an active libvirt storage pool exist (or not) with a given capacity,
    format and backing file.
  - A new volume is created empty (sparse), cloned from another volume (O(clone_from),
    C(virStorageVolCreateXMLFrom)), or filled from a local file (O(upload_src)).
  - An existing volume is grown to O(capacity) (C(virStorageVolResize)); it is shrunk only
    with O(shrink=true). Its format and backing file cannot change; asking for others fails
    and changes nothing.
  - In a C(logical) (LVM) pool every volume is a raw, fully allocated logical volume
    (C(lvcreate -L)). O(format=qcow2) and O(backing_file) are refused there, and so is a resize
    of an existing volume, which libvirt (9.0 at least) cannot do for logical volumes; all three
    fail before anything is changed. O(clone_from) works; a larger O(capacity) makes the copy
    at that size.
  - In a pool of LUNs (C(iscsi), C(iscsi-direct), C(scsi), C(mpath)) the volumes are the LUNs
    the target or adapter offers; libvirt lists them but cannot create, clone, resize or delete
    them. Creating a volume that is not there, deleting or resizing one fails before anything is
    changed (in check mode too) and names the volumes the pool has; make or remove the LUN on the
    target, then refresh the pool (M(virtops.libvirt.virt_pool) O(virtops.libvirt.virt_pool#module:refresh=true)).
    An existing LUN with O(state=present), and O(state=absent) for a volume that is not there,
    are no change. Tested with C(iscsi-direct). libvirt (9.0) reports an C(iscsi-direct) LUN's
    capacity one block short (block size times the address of the last block), for example
    67108352 bytes for a 64 MiB LUN; a O(capacity) must match that figure (or set O(resize=false)).
  - In an C(iscsi-direct) pool libvirt cannot read or write a volume's data either (libiscsi, no
    block device on the host), so O(download_dest), O(upload_src) with O(force_upload=true) and
    O(state=wiped) (which reads the volume to know whether it is zeroed) are refused there.
author:
  - virtops.libvirt developers (@virtops)
extends_documentation_fragment:
  - virtops.libvirt.connection
  - virtops.libvirt.attributes
attributes:
  check_mode:
    support: full
    details:
      - Check mode plans exactly as a real run does and changes nothing. With O(download_dest)
        it reads the volume into a temporary file to compare it, and removes that file.
  diff_mode:
    support: full
    details:
      - Shows state, capacity in bytes, format, backing file, and whether the content is
        replaced (upload, wipe).
  idempotent:
    support: full
    details:
      - O(upload_src) is written only into a volume this run creates, or on every run with
        O(force_upload=true).
      - O(state=wiped) and O(download_dest) read the whole volume on every run to compare it.
options:
  pool:
    description:
      - Name of the storage pool. It must be active.
    type: str
    required: true
  name:
    description:
      - Name of the volume in the pool (for a C(dir) pool, its file name).
    type: str
    required: true
  state:
    description:
      - V(present) makes the volume exist as described.
      - V(wiped) also makes its content all zeroes (C(virStorageVolWipe)) when it is not.
        Only raw volumes; libvirt wipes a qcow2 volume's file, header included. libvirt may
        grow a raw file to a multiple of its write size (4 KiB) while wiping it.
      - V(absent) deletes it.
    type: str
    choices: [present, absent, wiped]
    default: present
  capacity:
    description:
      - Capacity (virtual size), a number of bytes or a number with a unit, for example
        V(1G), V(512MiB), V(10GB). K, M, G, T and KiB, MiB, GiB, TiB are powers of 1024;
        KB, MB, GB, TB powers of 1000.
      - Needed to create a volume, unless O(clone_from) or O(upload_src) gives it (the clone
        source's capacity, the file's size).
    type: str
  format:
    description:
      - Format of a new volume. libvirt's default for file pools is raw.
    type: str
    choices: [raw, qcow2]
  backing_file:
    description:
      - Path of the backing file of a new qcow2 volume (a linked clone, copy on write).
    type: str
  backing_format:
    description:
      - Format of O(backing_file).
      - Defaults to V(qcow2) when O(backing_file) is set.
    type: str
    choices: [raw, qcow2]
  clone_from:
    description:
      - Create a new volume as a full copy of this volume, given as a name in the same pool or
        as the absolute path of a volume of any pool. Not used when the volume exists.
      - O(capacity) may be larger than the source's; the copy is then grown.
    type: str
  resize:
    description:
      - Resize an existing volume whose capacity differs from O(capacity). When false,
        O(capacity) is used only to create the volume.
    type: bool
    default: true
  shrink:
    description:
      - Allow resizing an existing volume to a smaller capacity (data past the new end is lost).
        Without it, a smaller O(capacity) fails and changes nothing.
    type: bool
    default: false
  upload_src:
    description:
      - Local file (on the host the module runs on) to write into a new volume from its start,
        through a libvirt stream (C(virStorageVolUpload)). It is written as is; upload a qcow2
        image into a qcow2 volume, a raw image into a raw volume.
      - Only into a volume this run creates, unless O(force_upload=true).
      - libvirt reads the size of an uploaded qcow2 image from its header. Leave out
        O(capacity) (the volume is created with the file's size), or set it to the image's
        virtual size; a different O(capacity) resizes the volume on the next run.
    type: path
  force_upload:
    description:
      - Write O(upload_src) into the volume also when it exists (on every run).
    type: bool
    default: false
  download_dest:
    description:
      - Local file to write the volume's content into (C(virStorageVolDownload)), when that
        file is missing or differs from the volume's content.
    type: path
notes:
  - The volume is read and written through libvirt streams, so O(upload_src) and
    O(download_dest) also work with a remote O(uri).
seealso:
  - module: virtops.libvirt.virt_volume_info
  - module: virtops.libvirt.virt_pool
  - name: libvirt storage volume XML format
    description: Reference of the storage volume XML.
    link: https://libvirt.org/formatstorage.html#storage-volume-xml
'''

EXAMPLES = r'''
- name: A 10 GiB qcow2 disk
  virtops.libvirt.virt_volume:
    pool: images
    name: web1.qcow2
    capacity: 10G
    format: qcow2

- name: A linked clone of a base image
  virtops.libvirt.virt_volume:
    pool: images
    name: web2.qcow2
    capacity: 10G
    format: qcow2
    backing_file: /srv/images/base.qcow2
    backing_format: qcow2

- name: A full copy, grown to 20 GiB
  virtops.libvirt.virt_volume:
    pool: images
    name: web3.qcow2
    clone_from: base.qcow2
    capacity: 20G

- name: Upload a cloud image into a new volume
  virtops.libvirt.virt_volume:
    pool: images
    name: debian-12.qcow2
    format: qcow2
    capacity: 2G
    upload_src: /tmp/debian-12-genericcloud-amd64.qcow2

- name: Copy a volume to the local disk
  virtops.libvirt.virt_volume:
    pool: images
    name: web1.qcow2
    download_dest: /backup/web1.qcow2

- name: Delete it
  virtops.libvirt.virt_volume:
    pool: images
    name: web3.qcow2
    state: absent
'''

RETURN = r'''
volume:
  description:
    - The volume after the run. Empty after O(state=absent), and in check mode when it does
      not exist yet. In check mode, the live volume as it is (unchanged).
  returned: always
  type: dict
  contains:
    name:
      description: Name.
      type: str
      sample: web1.qcow2
    pool:
      description: Name of the pool.
      type: str
      sample: images
    path:
      description: Path on the host.
      type: str
      sample: /srv/images/web1.qcow2
    key:
      description: libvirt's unique key.
      type: str
    type:
      description: Volume type (file, block, ...).
      type: str
    capacity:
      description: Capacity (virtual size) in bytes.
      type: int
      sample: 1073741824
    allocation:
      description: Bytes allocated on the host.
      type: int
    format:
      description: Format (raw, qcow2, ...).
      type: str
      sample: qcow2
    backing:
      description: Backing file (C(path), C(format)), or null.
      type: dict
    xml:
      description: Live XML.
      type: str
actions:
  description: What the run did (or would do in check mode), in order.
  returned: always
  type: list
  elements: str
  sample: [create, upload]
'''

from ansible_collections.virtops.libvirt.plugins.module_utils._lifecycle import run_module
from ansible_collections.virtops.libvirt.plugins.module_utils._volume import VolumeManager


def main():
    run_module(VolumeManager)


if __name__ == '__main__':
    main()
