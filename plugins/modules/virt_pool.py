#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: virt_pool
short_description: Define, build, start, stop and remove libvirt storage pools declaratively
version_added: 0.1.0
description:
  - Makes a libvirt storage pool match a desired definition, run state and autostart.
  - The desired XML is compared with the pool's persistent definition by intent, not as text.
    Only what the XML sets is compared; what libvirt fills in (uuid, capacity, allocation,
    available, default permissions, an empty C(<source/>)) never causes a change. Sizes are
    compared in bytes. A definition that differs is redefined, keeping the pool's uuid.
  - What libvirt rewrites when it stores a definition is compared the way libvirt stores it;
    a C(logical) pool's target path is C(/dev/<source name>) whatever the XML says, repeated and
    trailing slashes of paths are dropped, a permission owner or group of C(-1) means unset, and
    the free extents of a C(disk) pool's device are run-time data, not compared. The collection's
    docs/idempotency.md lists every rule.
  - A new definition for an active pool changes the persistent definition only; the module
    returns RV(restart_required=true) until the pool has been stopped and started. With
    O(restart_on_change=true) it stops and starts the pool to apply it.
  - Tested with C(dir), C(logical) (LVM volume group) and C(iscsi-direct) pools. For a
    C(logical) pool, O(build) creates the volume group on the C(<source><device path=.../></source>)
    devices (C(pvcreate), C(vgcreate)), which destroys what is on them; O(state=deleted) removes
    the volume group and the physical volume labels (C(vgremove), C(pvremove)).
  - An C(iscsi-direct) pool is an iSCSI target whose LUNs are the pool's volumes (named
    C(unit:0:0:<lun>)); libvirtd logs in itself with libiscsi, so the host needs no kernel
    initiator. It needs libvirt's iscsi-direct storage backend (Debian package
    C(libvirt-daemon-driver-storage-iscsi-direct); libvirtd loads storage backends when it starts,
    so restart it once after installing). Tested against tgtd (a user-space iSCSI target) with an
    initiator-name ACL. Starting the pool logs in and reads the LUNs; O(refresh) logs in again and
    finds LUNs added on the target since.
  - The kernel C(iscsi) type (open-iscsi's C(iscsiadm) and the C(iscsi_tcp) kernel module on the
    libvirt host; the LUNs appear as block devices) goes through the same code as C(iscsi-direct)
    but is not tested (the test machines have no kernel modules).
  - Pools of LUNs (C(iscsi), C(iscsi-direct), C(scsi), C(mpath)) have nothing libvirt can build
    or delete. O(build) does nothing for them (no C(build) action is planned), and
    O(state=deleted) is refused (use O(state=absent); the LUNs are made and removed on the
    target). Other types (C(netfs), C(rbd), ...) go through the same code but are not tested.
author:
  - virtops.libvirt developers (@virtops)
extends_documentation_fragment:
  - virtops.libvirt.connection
  - virtops.libvirt.attributes
attributes:
  check_mode:
    support: full
    details:
      - Check mode compares and plans exactly as a real run does and changes nothing
        (O(refresh) is not done in check mode).
      - Before a define (in check mode too), the module checks what libvirt would refuse it for
        and fails naming the pool and the reason, without changing anything - a name with a C(/),
        a pool type the host
        has no storage backend for (its storage pool capabilities), storage another pool already
        uses (the same source device, the same NFS export from the same host, the same C(dir)
        target path, the same iSCSI target and initiator, the same SCSI adapter, a second
        C(mpath) pool; the rules of libvirt's own check), or a uuid another pool has.
      - Not foreseen, so check mode predicts a define that libvirt then refuses - XML libvirt's
        parser rejects (a missing source host, device or target path, a malformed mode, ...) and
        SCSI adapters libvirt matches through the host's sysfs (a C(parentaddr) against a host
        name, an C(fc_host) against its vHBA).
  diff_mode:
    support: full
    details:
      - Shows the state and autostart, and the normalised XML of the live definition reduced to
        what the desired XML sets, against the normalised desired XML.
  idempotent:
    support: full
    details:
      - O(refresh=true) rescans an active pool on every run without reporting a change (see
        RV(refreshed)).
options:
  name:
    description:
      - Name of the pool.
      - Optional when O(xml) has a C(<name>); when both are given they must be the same.
      - Required without O(xml) (state or autostart changes of an existing pool, removal).
    type: str
  xml:
    description:
      - The desired pool definition (libvirt storage pool XML), for example
        C(<pool type='dir'><name>images</name><target><path>/srv/images</path></target></pool>).
      - Only what it sets is compared with the live definition. A C(<uuid>) is optional; the
        existing pool's uuid is kept. The pool type cannot change.
      - Without it, the module manages only the state and autostart of an existing pool.
    type: str
  state:
    description:
      - V(present) defines the pool (or updates its definition) and leaves it active or
        inactive as it is.
      - V(active) also starts it. V(inactive) stops it (C(virStoragePoolDestroy), the data
        stays).
      - V(absent) stops it and removes its definition; the data stays.
      - V(deleted) also deletes the pool's storage (C(virStoragePoolDelete)) before removing
        the definition, for example the target directory of a C(dir) pool or the volume group
        of a C(logical) pool. It refuses an active pool that still has volumes, an inactive
        C(logical) pool (its volumes cannot be listed; start it first), and a pool of LUNs
        (C(iscsi), C(iscsi-direct), C(scsi), C(mpath)), which has no storage libvirt can
        delete. A pool that does not exist is not changed.
    type: str
    choices: [present, active, inactive, absent, deleted]
    default: present
  autostart:
    description:
      - Whether libvirt starts the pool when the daemon starts. Not changed when not set.
    type: bool
  build:
    description:
      - Build the pool (C(virStoragePoolBuild)) before it is first started when it needs it,
        always for a pool this run defines, and for an existing inactive C(dir), C(fs) or
        C(netfs) pool whose target directory is missing (only seen for a local URI).
      - An active pool is never built, and neither is a pool of LUNs (C(iscsi),
        C(iscsi-direct), C(scsi), C(mpath)), which libvirt has nothing to build for.
    type: bool
    default: false
  refresh:
    description:
      - Rescan an active pool's volumes (C(virStoragePoolRefresh)), for example after files
        were copied into a C(dir) pool's directory outside libvirt. Not reported as a change.
    type: bool
    default: false
  restart_on_change:
    description:
      - When the definition of an active pool changes (or changed earlier and the pool has not
        been restarted since), stop and start it to apply the change.
    type: bool
    default: false
notes:
  - Removing a C(<permissions>) or C(<source>) element from the XML does not remove it from the
    definition when libvirt keeps its own value; set what you want explicitly.
seealso:
  - module: virtops.libvirt.virt_pool_info
  - module: virtops.libvirt.virt_volume
  - name: libvirt storage pool XML format
    description: Reference of the storage pool XML.
    link: https://libvirt.org/formatstorage.html
'''

EXAMPLES = r'''
- name: A directory pool, built (directory created), started and started at boot
  virtops.libvirt.virt_pool:
    state: active
    autostart: true
    build: true
    xml: |
      <pool type='dir'>
        <name>images</name>
        <target>
          <path>/srv/images</path>
          <permissions><mode>0711</mode></permissions>
        </target>
      </pool>

- name: An LVM volume group as a pool (build creates the volume group on /dev/sdb)
  virtops.libvirt.virt_pool:
    state: active
    build: true
    xml: |
      <pool type='logical'>
        <name>vg_guests</name>
        <source>
          <device path='/dev/sdb'/>
          <name>vg_guests</name>
          <format type='lvm2'/>
        </source>
        <target><path>/dev/vg_guests</path></target>
      </pool>

- name: An iSCSI target as a pool, through libiscsi in libvirtd (no kernel initiator needed)
  virtops.libvirt.virt_pool:
    state: active
    autostart: true
    xml: |
      <pool type='iscsi-direct'>
        <name>san1</name>
        <source>
          <host name='192.0.2.10' port='3260'/>
          <device path='iqn.2026-11.example.san:storage.lun-group1'/>
          <initiator>
            <iqn name='iqn.2026-11.example.hv:host1'/>
          </initiator>
        </source>
      </pool>

- name: Rescan after copying images into the directory
  virtops.libvirt.virt_pool:
    name: images
    state: active
    refresh: true

- name: Remove the pool and its (empty) directory
  virtops.libvirt.virt_pool:
    name: images
    state: deleted
'''

RETURN = r'''
pool:
  description:
    - The pool after the run. Empty after O(state=absent) or O(state=deleted), and in check
      mode when the pool does not exist yet. In check mode, the live pool as it is (unchanged).
  returned: always
  type: dict
  contains:
    name:
      description: Name of the pool.
      type: str
      sample: images
    uuid:
      description: UUID of the pool.
      type: str
    type:
      description: Pool type (dir, logical, ...).
      type: str
      sample: dir
    state:
      description: inactive, building, active, degraded or inaccessible.
      type: str
      sample: active
    autostart:
      description: Whether the pool starts when libvirt starts.
      type: bool
    persistent:
      description: Whether the pool has a persistent definition.
      type: bool
    capacity:
      description: Capacity in bytes (0 when inactive).
      type: int
    allocation:
      description: Bytes allocated (0 when inactive).
      type: int
    available:
      description: Bytes free (0 when inactive).
      type: int
    path:
      description: Target path (null for a pool without one, such as C(iscsi-direct)).
      type: str
      sample: /srv/images
    volumes:
      description: Number of volumes of an active pool; null when inactive.
      type: int
    xml:
      description: The live XML of the pool.
      type: str
restart_required:
  description:
    - True when the active pool runs with a configuration older than its persistent definition
      (the desired XML).
  returned: always
  type: bool
  sample: false
refreshed:
  description: Whether the pool was refreshed (O(refresh)).
  returned: always
  type: bool
actions:
  description: What the run did (or would do in check mode), in order.
  returned: always
  type: list
  elements: str
  sample: [define, build, start, autostart]
'''

from ansible_collections.virtops.libvirt.plugins.module_utils._lifecycle import run_module
from ansible_collections.virtops.libvirt.plugins.module_utils._pool import PoolManager


def main():
    run_module(PoolManager)


if __name__ == '__main__':
    main()
