#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: virt_migrate
short_description: Move a libvirt domain to another host (live or offline migration)
version_added: 0.1.0
description:
  - Makes the domain O(name) live on the host behind O(dest_uri). The source is the host behind
    O(uri).
  - A running (or paused) domain is migrated live (O(live=true)) or with the guest paused during the
    copy; a shut-off persistent domain is migrated offline, which moves only its definition.
  - Idempotent by where the domain is, matched by name (O(dest_name) on the destination) and uuid.
    Already on the destination and not active on the source is success without a change; active on
    both hosts is a split brain and fails; on neither host fails; a different domain of the same name
    on the destination fails. Nothing is changed in any of these failures.
  - With O(undefine_source=true), a definition of the same domain left on the source by an earlier run
    (O(undefine_source=false)) is removed once the domain is on the destination.
  - Uses C(virDomainMigrate3) (the client drives both daemons) or, with O(p2p=true),
    C(virDomainMigrateToURI3) (the source daemon connects to the destination itself), with typed
    parameters.
  - When the migration fails or is aborted, libvirt keeps the domain running on the source; the error
    says where the domain is afterwards.
author:
  - virtops.libvirt developers (@virtops)
extends_documentation_fragment:
  - virtops.libvirt.connection
  - virtops.libvirt.attributes
attributes:
  check_mode:
    support: full
    details:
      - Check mode connects to both hosts, decides what would be done and validates what can be known
        without moving anything (the destination answers, the name is free or belongs to the same
        domain, the destination offers the domain's virt type, arch and machine type, disk paths exist
        on the destination or can be created there). Failures of the copy itself show only in a real
        run.
  diff_mode:
    support: full
    details:
      - Before and after are the domain's state, persistence and uuid on the source and on the
        destination.
  idempotent:
    support: full
options:
  name:
    description:
      - Name of the domain on the source.
    type: str
    required: true
  dest_uri:
    description:
      - libvirt URI of the destination, as the machine running the module (or, with O(p2p=true), the
        source daemon) reaches it, for example V(qemu+ssh://root@host2/system).
    type: str
    required: true
  dest_username:
    description:
      - User name for libvirt authentication on the destination.
    type: str
  dest_password:
    description:
      - Password for libvirt authentication on the destination.
    type: str
  dest_name:
    description:
      - Name of the domain on the destination. Defaults to O(name).
    type: str
  migrate_uri:
    description:
      - Where the destination QEMU listens for the data, for example V(tcp://10.0.0.2:49152). By
        default the destination's hostname and a port libvirt picks; give it when that hostname does
        not resolve to the right network.
      - Not used with O(tunnelled=true).
    type: str
  live:
    description:
      - For an active domain, keep the guest running while memory is copied. V(false) pauses it during
        the copy (shorter total time, longer outage); it runs again on the destination.
      - Does not apply to a shut-off domain, which is always migrated offline.
    type: bool
    default: true
  persistent:
    description:
      - Define the domain on the destination (it stays defined when it stops there). V(false) leaves a
        transient domain on the destination. A shut-off domain needs V(true).
    type: bool
    default: true
  undefine_source:
    description:
      - Remove the definition from the source after a successful migration.
    type: bool
    default: true
  copy_storage:
    description:
      - For storage the destination does not share. V(all) copies whole disks, V(incremental) only
        what the destination images lack (for images that share a backing file). The data goes over
        NBD, to images that exist on the destination or that libvirt creates in a storage pool there.
      - V(none) expects shared storage (the same paths on both hosts).
    type: str
    choices: [none, all, incremental]
    default: none
  migrate_disks:
    description:
      - Target names (V(vda), ...) of the disks O(copy_storage) copies; default all writable disks.
    type: list
    elements: str
  disk_paths:
    description:
      - 'New paths on the destination, by disk target name, for example C({vda: /srv/images/db.qcow2}).
        Rewrites the running and the persistent definition that the destination gets. Usually with
        O(copy_storage).'
    type: dict
  dest_xml:
    description:
      - The whole domain XML for the destination (it must describe the same guest hardware; libvirt
        checks). Used as the running and the persistent definition. Exclusive with O(disk_paths).
    type: str
  bandwidth:
    description:
      - Maximum bandwidth of the migration in MiB/s.
    type: int
  compressed:
    description:
      - Compress memory pages (libvirt's default method, xbzrle).
    type: bool
    default: false
  auto_converge:
    description:
      - Let QEMU slow the guest's CPUs down when memory is dirtied faster than it is copied.
    type: bool
    default: false
  postcopy:
    description:
      - Allow switching to post-copy (the guest runs on the destination while the rest of its memory is
        fetched). Needed for O(timeout_action=postcopy).
    type: bool
    default: false
  parallel_connections:
    description:
      - Number of parallel data connections (VIR_MIGRATE_PARALLEL).
    type: int
  p2p:
    description:
      - Peer-to-peer, the source daemon connects to O(dest_uri) itself, so O(dest_uri) must work from the
        source host.
    type: bool
    default: false
  tunnelled:
    description:
      - Carry the data over the libvirt connection between the daemons. Needs O(p2p=true).
    type: bool
    default: false
  unsafe:
    description:
      - Migrate although libvirt considers it unsafe, for example disks on a local filesystem that the
        destination sees through other means, or disk caches other than none on shared storage.
    type: bool
    default: false
  max_downtime:
    description:
      - Longest pause (milliseconds) acceptable when the guest switches hosts; set on the domain before
        the migration starts.
    type: int
  timeout:
    description:
      - Seconds after which O(timeout_action) is taken when the migration has not finished.
    type: int
  timeout_action:
    description:
      - V(abort) cancels the migration; the domain keeps running on the source and the task fails.
        V(suspend) pauses the guest so the copy can finish; it is resumed on the destination.
        V(postcopy) switches to post-copy (needs O(postcopy=true)).
    type: str
    choices: [abort, suspend, postcopy]
    default: abort
notes:
  - Both hosts must have different host UUIDs and hostnames; libvirt refuses to migrate to the host a
    domain runs on.
  - The destination needs the disks (shared storage, or O(copy_storage)), the networks and the other
    resources the domain uses, under the same names.
  - docs/migration.md in the collection describes what was tested for real and what was not.
seealso:
  - name: libvirt migration guide
    description: Transports, modes and flags.
    link: https://libvirt.org/migration.html
'''

EXAMPLES = r'''
- name: Live migration to host2 over SSH, data on the storage network
  virtops.libvirt.virt_migrate:
    name: web01
    dest_uri: qemu+ssh://root@host2/system
    migrate_uri: tcp://10.0.0.2
    bandwidth: 500
    timeout: 300
    timeout_action: suspend

- name: Move a VM with local disks, copying them to a new directory
  virtops.libvirt.virt_migrate:
    name: db01
    dest_uri: qemu+ssh://root@host2/system
    copy_storage: all
    disk_paths:
      vda: /srv/images/db01.qcow2
    auto_converge: true

- name: Shut-off VM, move its definition only (the images are on shared storage)
  virtops.libvirt.virt_migrate:
    name: build01
    dest_uri: qemu+ssh://root@host2/system

- name: Peer-to-peer, the source daemon reaches host2 itself
  virtops.libvirt.virt_migrate:
    uri: qemu+ssh://root@host1/system
    name: web02
    dest_uri: qemu+tls://host2/system
    p2p: true
'''

RETURN = r'''
location:
  description: Where the domain is after the task (in check mode, before it).
  returned: always
  type: str
  sample: destination
  choices: [source, destination]
plan:
  description:
    - What was (or in check mode would be) done. V(migrate), V(none) (already on the destination) or
      V(undefine_source) (already on the destination, the definition left on the source removed).
  returned: always
  type: str
  sample: migrate
mode:
  description:
    - V(live), V(paused) (guest paused during the copy) or V(offline) (definition only); null when
      nothing migrates.
  returned: always
  type: str
  sample: live
domain:
  description: The domain where it is (see RV(location)).
  returned: always
  type: dict
  contains:
    name:
      description: Its name there.
      type: str
    uuid:
      description: Its uuid.
      type: str
    state:
      description: Its run state there (running, paused, shutoff, ...).
      type: str
    active:
      description: Whether it is active there.
      type: bool
    persistent:
      description: Whether it is defined there.
      type: bool
    host:
      description: The URI of that host.
      type: str
flags:
  description: The VIR_MIGRATE_* flags used (or that would be used), by name.
  returned: always
  type: list
  elements: str
  sample: [VIR_MIGRATE_LIVE, VIR_MIGRATE_PERSIST_DEST, VIR_MIGRATE_UNDEFINE_SOURCE, VIR_MIGRATE_ABORT_ON_ERROR]
storage:
  description: Per disk with a local path, where it is on both hosts and whether its data is copied.
  returned: always
  type: list
  elements: dict
  contains:
    target:
      description: Disk target name.
      type: str
    source_path:
      description: Path on the source.
      type: str
    dest_path:
      description: Path on the destination.
      type: str
    copied:
      description: Whether O(copy_storage) copies its data.
      type: bool
    status:
      description:
        - V(present) (found on the destination), V(pool) (libvirt creates it in a destination pool),
          V(unknown) (remote destination, nothing to look at), V(missing) (offline migration, not there
          yet).
      type: str
job:
  description:
    - Statistics of the completed migration job, with libvirt's key names (times in milliseconds, sizes
      in bytes); empty when nothing migrated. Offline migrations move no data.
    - Includes, where QEMU reports them, time_elapsed, setup_time, downtime, data_total,
      data_processed, data_remaining, memory_total, memory_processed, memory_remaining,
      memory_iteration, memory_bps, memory_dirty_rate, disk_total, disk_processed, disk_remaining.
  returned: always
  type: dict
  sample: {time_elapsed: 260, downtime: 25, data_total: 71761920, data_processed: 747440, data_remaining: 0, memory_iteration: 2}
timeout_action_taken:
  description: The O(timeout_action) taken because O(timeout) passed, else null.
  returned: always
  type: str
msg:
  description: What was done.
  returned: always
  type: str
  sample: live migration of domain web01 from qemu:///system to qemu+ssh://root@host2/system done
'''

from ansible_collections.virtops.libvirt.plugins.module_utils._lifecycle import run_module
from ansible_collections.virtops.libvirt.plugins.module_utils._migrate import MigrateManager


def main():
    run_module(MigrateManager)


if __name__ == '__main__':
    main()
