#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: virt_backup
short_description: Take a full, incremental or differential backup of a libvirt domain
version_added: 0.1.0
description:
  - Takes one backup of one running or paused domain into a backup repository on the hypervisor host,
    through libvirt's C(virDomainBackupBegin), in pull mode (QEMU exports a frozen point in time over NBD
    and this module reads only the extents that changed) or push mode (QEMU writes the images itself).
  - Every backup creates its next libvirt checkpoint atomically with the job. Checkpoint names carry the
    repository's id, so two repositories can back up one domain independently.
  - The repository holds plain qcow2 chains; each incremental image has the previous backup as its
    backing file (a relative path), so C(qemu-img) alone can restore any point in time. The format is
    specified in the collection's C(docs/repository-format.md).
  - A backup exists only once its manifest is written, last, by atomic rename. A failed run ends the
    job, deletes the checkpoint it created and removes its partial files.
extends_documentation_fragment:
  - virtops.libvirt.connection
  - virtops.libvirt.attributes
  - virtops.libvirt.encryption
attributes:
  check_mode:
    support: full
    details:
      - Predicts the level and the reason without creating the repository, a checkpoint or a job.
  diff_mode:
    support: full
    details:
      - Shows the domain's backups in the repository before and after.
  idempotent:
    support: none
    details:
      - Every run takes a new backup; that is its purpose.
options:
  domain:
    description: Name of the domain to back up.
    type: str
    required: true
  repository:
    description:
      - Absolute path of the backup repository on the host where the module runs (the hypervisor).
      - Created when missing (mode 0711, so that QEMU can reach its staging directory inside).
        An existing directory must be empty or already a repository.
    type: path
    required: true
  mode:
    description:
      - V(pull) reads the point in time over NBD (unix socket in a private directory), only allocated
        extents, and for incrementals only the dirty ones.
      - V(push) lets QEMU write the qcow2 images into the repository's staging directory.
      - Both produce the same repository layout; one chain may mix them.
    type: str
    choices: [pull, push]
    default: pull
  level:
    description:
      - V(auto) takes an incremental when the repository's newest chain and its checkpoint are usable,
        otherwise a full backup, and says why in RV(backup.reason).
      - V(incremental) backs up the changes since the last backup of the chain; V(differential) the
        changes since the chain's full backup. Both fail when no usable chain exists.
    type: str
    choices: [auto, full, incremental, differential]
    default: auto
  disks:
    description:
      - Disk target names (for example V(vda)) to back up. Default is every disk that holds data (files,
        block devices and network disks such as iSCSI, NBD, RBD or Gluster), in qcow2, raw or any other
        format QEMU reads. Only CD-ROMs, floppies, read-only disks and disks without a medium are left out by
        themselves, each listed in RV(backup.skipped_disks) with the reason.
      - A disk that holds data and cannot be backed up (for example a network disk of a shut-off
        domain, or a C(vhostuser) disk) fails the run, with nothing changed, unless it is in O(exclude).
      - qcow2 disks are tracked by checkpoints (dirty bitmaps, RV(backup.disks[].method=bitmap)). Disks in
        other formats cannot hold bitmaps, so they are read in full at every backup and each block is
        compared with the previous backup's integrity data, so only changed blocks are stored
        (RV(backup.disks[].method=compare)).
    type: list
    elements: str
  exclude:
    description:
      - Disk target names to leave out on purpose; they are listed in RV(backup.skipped_disks) as
        V(excluded).
    type: list
    elements: str
  scratch_dir:
    description:
      - Directory for the pull-mode scratch files (QEMU keeps the old data of blocks the guest writes
        during the backup there). Must be reachable and writable by QEMU's user, and visible to QEMU (a
        file system mounted after the domain started is not, on hosts without mount propagation).
        Default is C(/var/lib/virtops-libvirt/scratch/<domain>), a local directory outside the
        repository, so a repository on a share mounted just before the run works.
    type: path
  timeout:
    description: Seconds the whole backup may take before it is aborted and cleaned up. V(0) means no limit.
    type: int
    default: 0
  verify:
    description:
      - After the backup, run C(qemu-img check) on the new images and read the whole point in time back to
        compare it with the integrity data.
    type: bool
    default: false
  quiesce:
    description:
      - Freeze the guest's file systems through the QEMU guest agent for the instant the backup job
        starts, and thaw them right after, so that the backup holds file systems as after a clean
        unmount (application-consistent, as far as the guest's fsfreeze hooks go) rather than as after a
        power cut (crash-consistent). The guest is frozen for as long as libvirt takes to start the job
        and its checkpoint, not for the copy.
      - V(auto) freezes when the domain runs and its guest agent is connected (a
        C(org.qemu.guest_agent.0) channel with C(qemu-ga) running in the guest), and otherwise, or when
        the freeze fails, takes a crash-consistent backup (with a warning if the freeze failed).
      - V(always) fails, before anything is changed, when the agent is not connected or the domain is
        paused, and fails the backup when the freeze fails.
      - V(never) does not freeze.
      - A shut-off domain is never frozen; its disks are consistent as they are.
    type: str
    choices: [auto, always, never]
    default: auto
  workers:
    description: Parallel NBD connections (requests in flight) used to read and write the data.
    type: int
    default: 4
  transport:
    description:
      - Where QEMU exports the disks in pull mode. V(unix) (the default) is a unix socket in a private
        0700 directory under C(/run/virtops-libvirt). V(tcp) listens on O(bind_address):O(port) and is
        only allowed with O(tls=true), for a backup host that pulls from hypervisors over the network.
    type: str
    choices: [unix, tcp]
    default: unix
  tls:
    description:
      - Encrypt and authenticate the NBD export with TLS (required for O(transport=tcp)). QEMU uses the
        certificates in libvirt's C(backup_tls_x509_cert_dir) (qemu.conf; by default
        C(default_tls_x509_cert_dir), C(/etc/pki/qemu)); this module uses O(tls_dir).
    type: bool
    default: false
  tls_dir:
    description:
      - Directory with the client's C(ca-cert.pem), C(client-cert.pem) and C(client-key.pem), as libnbd
        expects them. Required with O(tls=true).
    type: path
  bind_address:
    description: Address QEMU listens on with O(transport=tcp). Must be given explicitly.
    type: str
  connect_address:
    description:
      - Address this module connects to; defaults to O(bind_address). Its name must match the server
        certificate.
    type: str
  port:
    description: TCP port of the export with O(transport=tcp).
    type: int
    default: 10809
  compress:
    description:
      - Write the new images with qcow2 compressed clusters of this compression type (C(qemu-img) and QEMU
        read them like any qcow2; V(zstd) needs QEMU 5.1 or newer to read). V(none) writes plain clusters.
      - One chain may mix settings; each backup's images follow the option of the run that took them, and
        RV(backup.disks[].compression) records it. Integrity data hashes the disk's data, not the stored bytes,
        so restores are still proved bit-exact.
      - In push mode QEMU writes plain clusters; the module then copies the target's own clusters into a
        compressed image with the same backing file (an incremental stays as small as its changes) and removes
        the pushed file, so the staging directory briefly holds both.
    type: str
    choices: [none, zlib, zstd]
    default: none
    version_added: 0.2.0
requirements:
  - libvirt 6.0 or newer with QEMU 4.2 or newer
  - libnbd Python bindings (Debian C(python3-libnbd)), lxml, and C(qemu-img) and C(qemu-nbd) (C(qemu-utils))
  - the xxhash Python module (Debian C(python3-xxhash)) for the XXH3-128 block hash of new chains; without
    it a new chain hashes with SHA-256 (repository format 1, about ten times the CPU time) and the result
    warns
  - for O(compress=zstd), the zstandard Python module (Debian C(python3-zstandard)), with which the module
    compresses on every core; without it QEMU's C(qemu-nbd) writes the image (one core)
notes:
  - The module runs as root on the hypervisor host itself, where QEMU and the module share the
    repository directory and the NBD socket. From another host (a backup host with a remote O(uri)), only
    running domains can be backed up, in pull mode with O(transport=tcp), O(tls=true) and a O(scratch_dir)
    on the hypervisor.
  - Every backup also saves the domain's UEFI variable store (NVRAM) and the state of its emulated TPM, with
    their SHA-256 in the manifest; M(virtops.libvirt.virt_restore) writes them back.
  - Shut-off domains are backed up too. The module adds the new checkpoint's bitmaps to the qcow2 images
    with C(qemu-img bitmap), reads them through C(qemu-nbd) (which keeps the domain from starting
    meanwhile), and redefines the checkpoint in libvirt, so offline and online backups mix in one chain.
    Such backups report RV(backup.mode) V(offline).
  - With O(encryption), every new image is a LUKS-encrypted qcow2 and an incremental continues only a chain
    encrypted with the same key. The first encrypted backup after plain ones starts a new chain (level
    V(auto)); a run without the key (or with another key) on an encrypted chain fails before anything is
    written, unless O(level=full) starts a new chain on purpose. In push mode QEMU writes a plain target into
    the private staging directory, which the module then encrypts into the repository and removes; pull mode
    never writes plain data.
seealso:
  - module: virtops.libvirt.virt_restore
  - module: virtops.libvirt.virt_backup_info
  - module: virtops.libvirt.virt_checkpoint_info
author:
  - virtops.libvirt developers (@virtops)
'''

EXAMPLES = r'''
- name: Back up a VM, full the first time, incremental afterwards
  virtops.libvirt.virt_backup:
    domain: web01
    repository: /srv/backup/vms

- name: Weekly full backup in push mode, verified
  virtops.libvirt.virt_backup:
    domain: web01
    repository: /srv/backup/vms
    mode: push
    level: full
    verify: true

- name: A database VM, only with its file systems frozen by the guest agent (fails if it is missing)
  virtops.libvirt.virt_backup:
    domain: db01
    repository: /srv/backup/vms
    quiesce: always

- name: Only the data disk, changes since the chain's full backup
  virtops.libvirt.virt_backup:
    domain: db01
    repository: /srv/backup/vms
    level: differential
    disks: [vdb]
  register: result

- name: From a backup host, pull a hypervisor's export over the network, encrypted
  virtops.libvirt.virt_backup:
    uri: qemu+ssh://root@hv01.example.com/system
    domain: web01
    repository: /srv/backup/vms
    scratch_dir: /var/lib/libvirt/qemu/backup-scratch   # on the hypervisor
    transport: tcp
    tls: true
    tls_dir: /etc/pki/virtops-backup
    bind_address: hv01.example.com
    port: 10809

- name: A compressed backup (zstd clusters in standard qcow2)
  virtops.libvirt.virt_backup:
    domain: web01
    repository: /srv/backup/vms
    compress: zstd

- name: An encrypted, compressed backup; the passphrase is the content of a private file on the host
  virtops.libvirt.virt_backup:
    domain: web01
    repository: /srv/backup/vms
    compress: zstd
    encryption:
      key_file: /etc/virtops/backup.key

- name: The passphrase in a libvirt secret (virsh secret-define, secret-set-value)
  virtops.libvirt.virt_backup:
    domain: web01
    repository: /srv/backup/vms
    encryption:
      secret: virtops-backup-key     # usage id, or the secret's uuid

- name: Report
  ansible.builtin.debug:
    msg: "{{ result.backup.level }} ({{ result.backup.reason }}) in {{ result.backup.duration }} s"
'''

RETURN = r'''
backup:
  description: The backup taken (in check mode, the one that would be taken; its id is then null).
  returned: always
  type: dict
  contains:
    id:
      description: Backup id, the UTC time it started (V(20261126T014520Z)).
      type: str
    chain:
      description: Id of the chain (the id of its full backup).
      type: str
    level:
      description: The level actually taken.
      type: str
      sample: incremental
    reason:
      description: Why this level.
      type: str
      sample: "full: no backup of this domain in the repository yet"
    mode:
      description: V(pull) or V(push).
      type: str
    parent:
      description: Id of the backup whose images are the backing files of this one; null for a full backup.
      type: str
    checkpoint:
      description: Name of the libvirt checkpoint created with this backup.
      type: str
    path:
      description: Directory of this backup in the repository.
      type: str
    started:
      description: ISO 8601 time the backup started (UTC).
      type: str
    duration:
      description: Seconds the backup took.
      type: float
    verified:
      description: Whether the backup was read back and checked (O(verify)).
      type: bool
    encrypted:
      description:
        - Whether its disk images are LUKS-encrypted (O(encryption)); the manifest records the key's fingerprint.
          In check mode, whether they would be.
      type: bool
      version_added: 0.2.0
    quiesced:
      description:
        - Whether the guest agent froze the guest's file systems for the start of the job (O(quiesce)).
          In check mode, whether it would try to.
      type: bool
    frozen_filesystems:
      description: How many file systems the guest agent froze (0 when not quiesced).
      type: int
    disks:
      description: Figures per disk.
      type: list
      elements: dict
      contains:
        name:
          description: Disk target name.
          type: str
        virtual_size:
          description: Size of the disk in bytes.
          type: int
        method:
          description:
            - How the disk's changes were found. V(bitmap) (qcow2) - a dirty bitmap of the checkpoint;
              V(compare) (other formats) - the whole disk read and compared block by block with the
              parent's integrity data (RV(backup.disks[].bytes_read) shows the cost).
          type: str
          choices: [bitmap, compare]
        dirty_bytes:
          description: Bytes changed since the checkpoint (incremental, differential) or allocated (full).
          type: int
        bytes_read:
          description: Bytes of data read from the domain's disk.
          type: int
        bytes_written:
          description: Bytes of data written into the repository (runs of zeroes are recorded, not written).
          type: int
        throughput:
          description: Bytes read per second.
          type: int
        image_digest:
          description: SHA-256 of the disk's block hash map at this point in time (integrity data).
          type: str
        compression:
          description: The compression type of the image's clusters (O(compress)); absent when they are plain.
          type: str
          returned: when O(compress) is not V(none)
          choices: [zlib, zstd]
    skipped_disks:
      description: Disks not backed up, each with the reason.
      type: list
      elements: dict
    firmware:
      description:
        - The UEFI variable store and emulated TPM state saved with the backup, null when the domain has
          neither. C(loader) is the firmware code the domain uses (recorded, not copied); C(nvram) (C(file),
          C(size), C(sha256), C(source)) and C(tpm) (C(version), C(dir), C(files)) are null when there is
          nothing to save yet (a domain never started).
        - A running domain's state is copied when the job starts (inside the guest agent freeze when there is
          one), a shut-off domain's before its disks are read; docs/backup.md says what consistency this gives.
      type: dict
removed_partial:
  description: Directories of earlier interrupted backups of this domain that this run removed.
  returned: success
  type: list
  elements: str
'''

from ansible_collections.virtops.libvirt.plugins.module_utils._lifecycle import run_module
from ansible_collections.virtops.libvirt.plugins.module_utils.backup._managers import BackupManager


def main():
    run_module(BackupManager)


if __name__ == '__main__':
    main()
