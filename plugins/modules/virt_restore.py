#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: virt_restore
short_description: Restore the disks of a domain from a backup repository, bit-exact and verified
version_added: 0.1.0
description:
  - Writes the disks of one point in time of a domain, taken by M(virtops.libvirt.virt_backup), as flat
    images C(<dest>/<disk target>.<format>) (for example C(vda.qcow2)).
  - Every restored disk is read back and compared, block by block, with the integrity data the backup
    recorded before the module returns; a disk that does not match is removed and the module fails.
  - The UEFI variable store and the emulated TPM's state saved with the backup (if any) are restored too,
    as C(<dest>/nvram.fd) and the directory C(<dest>/tpm/), each checked against the size and SHA-256 the
    backup recorded, before and while it is copied.
  - Optionally defines a new domain from the definition saved with the backup, with a new name, a new
    uuid and new MAC addresses, its disks pointing at the restored images. It uses the restored variable
    store (not a fresh copy of the template), and the restored TPM state is installed where libvirt keeps
    the state of the new uuid (C(/var/lib/libvirt/swtpm/<uuid>/)), so the guest keeps its boot entries
    and Secure Boot keys, and secrets sealed in its TPM still unseal. QEMU's user must be able to reach
    O(dest) for the domain to start (create it with mode 0711 or 0755 first).
  - The saved definition is untrusted input, like everything else in a repository. Unless
    O(trust_saved_xml) is set, the module refuses to define a domain whose saved definition would reach
    the host, and names every such element, CD-ROM and floppy media of the original domain (host files)
    included. Graphics consoles and character devices that listened on anything but loopback
    listen on C(127.0.0.1) in the new domain, always, each with a warning.
  - A disk (or firmware file) already restored to the same path and still bit-exact is left alone, so a
    second identical run reports no change.
extends_documentation_fragment:
  - virtops.libvirt.connection
  - virtops.libvirt.attributes
  - virtops.libvirt.s3
  - virtops.libvirt.encryption
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
    details:
      - Before and after of what the run makes - the restored files in O(dest) (disks by name, format and size,
        C(nvram.fd), the TPM state files; with O(mode=instant), the overlays), the domain defined by O(define)
        or O(mode=instant) (its name; with O(mode=instant), its state), and with O(mode=instant) the export
        serving the backup point. Check mode shows the same diff as the real run.
  idempotent:
    support: full
    details:
      - Existing restored disks are verified against the backup and kept when they match.
options:
  repository:
    description:
      - Absolute path of the backup repository, or an S3 location C(s3://bucket/prefix) (see the C(s3_*)
        options) holding copies made by M(virtops.libvirt.virt_backup_copy).
      - From S3, only the objects the chosen point in time needs are read (its chain's manifests, images and
        maps, its firmware files), into a private (0700) scratch directory beside O(dest) or in the system's
        temporary directory, removed afterwards, and restored with every check a directory repository gets.
    type: path
    required: true
  domain:
    description: Name of the domain whose backup to restore (its directory in the repository).
    type: str
    required: true
  backup:
    description:
      - Which point in time. A backup id (V(20261126T014520Z)), V(latest), or an ISO 8601 time, meaning the
        newest backup that started at or before it (V(2026-11-26T01:45:00Z); a time without zone is UTC).
    type: str
    default: latest
  dest:
    description:
      - Directory to write the restored disks into; created when missing, mode 0700, or 0711 with O(define)
        (QEMU's user must reach the files of the new domain).
      - It must belong to root and not be writable by group or others (a missing one may be created in a
        sticky directory such as C(/tmp)), so that nobody else can add, swap or read restored files.
    type: path
    required: true
  format:
    description: V(qcow2) writes one flattened qcow2 image per disk; V(raw) a sparse raw image.
    type: str
    choices: [qcow2, raw]
    default: qcow2
  disks:
    description: Disk target names to restore; default every disk in the backup.
    type: list
    elements: str
  force:
    description:
      - Overwrite files in O(dest) that exist and do not hold the backup's data (disks, C(nvram.fd), the state
        files in C(tpm/); TPM state files there that the backup does not have are removed).
    type: bool
    default: false
  define:
    description: Define a new domain from the saved definition, using the restored disks. Needs O(new_name).
    type: bool
    default: false
  new_name:
    description: Name of the domain O(define) creates.
    type: str
  trust_saved_xml:
    description:
      - With O(define), define the saved definition even where it would give the new domain access to the
        host. Without it, the module refuses (and lists) QEMU, LXC, Xen and bhyve command line
        passthrough (C(qemu:commandline), C(qemu:capabilities), C(qemu:override), ...), host devices
        (C(<hostdev>), SR-IOV and vDPA interfaces, host input, sound, TPM, smartcard and GPU), host
        directories and files shared with the guest (C(<filesystem>) other than C(type=ram), C(nvdimm),
        kernel, initrd, DTB or ACPI tables, firmware and variable store templates outside C(/usr/share/)),
        host programs (an emulator other than C(qemu-system-*), C(qemu-kvm) or C(kvm) in the usual
        directories, interface scripts, bootloaders), security labels that turn off or fix QEMU's
        confinement, serial ports, consoles and channels on host files, devices, pipes and sockets (or
        connecting to the host's own loopback), random number sources other than C(/dev/urandom),
        C(/dev/random) and C(/dev/hwrng), C(<shmem>), C(<lease>), domain types other than C(kvm), C(qemu)
        and C(hvf), and any other host path the definition names. It also lets the original domain's
        CD-ROM and floppy media through.
      - Off by default because a repository may come back from shared or remote storage, and whoever can
        write it could otherwise make the new domain read or write any file or device of the host, run a
        program as root, or escape confinement. Set it only for a repository that nobody else can write.
        What it lets through is listed in a warning.
      - Network access is not host access. Interfaces on networks and bridges, user networking and
        C(direct) (macvtap) interfaces other than mode C(passthrough) are kept either way.
      - Listeners move to loopback also with O(trust_saved_xml), because the saved definition holds no
        console passwords.
    type: bool
    default: false
  mode:
    description:
      - V(copy) writes every disk in full into O(dest), and verifies it, as described above.
      - V(instant) defines (and with O(start) starts) the domain O(new_name) at once, whatever the size of
        its disks. Each disk is a new, empty qcow2 overlay C(<dest>/<disk>.qcow2) that takes every guest
        write; beneath it, read-only, the backup point is served over NBD on a unix socket by a
        C(qemu-storage-daemon) of this collection that only root and QEMU's group can reach (C(/run/virtops-libvirt/exports/instant-<new_name>/)).
        The daemon opens the repository's images itself, as the manifests describe the chain (never by a
        backing file name found in an image header), and the domain definition gives each disk's backing
        chain explicitly, so QEMU never opens a repository file and nothing the guest writes reaches the
        repository. The new domain has a new uuid and new MAC addresses, and the saved definition is
        reviewed as with O(define). The UEFI variable store and the TPM state are copied as in V(copy).
      - The data is not read ahead (image headers are checked, the integrity data is not compared). Verify
        the backup with M(virtops.libvirt.virt_backup_info) when in doubt.
      - An encrypted backup (see O(encryption)) is refused by V(instant), before anything is done; restore it
        with V(copy).
      - The domain depends on the daemon until its disks are moved to their final storage while it runs,
        with M(virtops.libvirt.virt_blockjob) O(virtops.libvirt.virt_blockjob#module:operation=copy) and
        pivot. The next run of this task then stops serving the backup (RV(export_stopped)); so does
        M(virtops.libvirt.virt_backup_export) with O(virtops.libvirt.virt_backup_export#module:state=absent)
        and the export name. The daemon does not survive a reboot of the host; running this task again serves
        the backup again (before O(start) starts the domain).
      - Needs O(new_name); O(define) is implied and O(format) must be V(qcow2). O(dest) and the directories
        above it must let QEMU's user traverse them (mode 0711 or 0755); a missing O(dest) is made 0711.
    type: str
    choices: [copy, instant]
    default: copy
  start:
    description:
      - With O(mode=instant), start the domain (also on a later run, when it is shut off).
    type: bool
    default: false
requirements:
  - C(qemu-img) and C(qemu-nbd) (C(qemu-utils)), libnbd and lxml Python bindings
  - C(qemu-storage-daemon) (C(qemu-system-common)) for O(mode=instant)
seealso:
  - module: virtops.libvirt.virt_backup
  - module: virtops.libvirt.virt_backup_info
author:
  - virtops.libvirt developers (@virtops)
'''

EXAMPLES = r'''
- name: Restore the latest backup of web01 as qcow2 images
  virtops.libvirt.virt_restore:
    repository: /srv/backup/vms
    domain: web01
    dest: /var/lib/libvirt/images/web01-restored

- name: Restore an encrypted backup (its images are decrypted into the restored files)
  virtops.libvirt.virt_restore:
    repository: /srv/backup/vms
    domain: web01
    dest: /var/lib/libvirt/images/web01-restored
    encryption:
      key_file: /etc/virtops/backup.key

- name: Restore web01 as it was yesterday at noon, as a new domain
  virtops.libvirt.virt_restore:
    repository: /srv/backup/vms
    domain: web01
    backup: "2026-11-25T12:00:00Z"
    dest: /var/lib/libvirt/images/web01-yesterday
    define: true
    new_name: web01-yesterday

- name: Restore web01 as a new domain from a private repository whose definition passes QEMU arguments
  virtops.libvirt.virt_restore:
    repository: /srv/backup/vms
    domain: web01
    dest: /var/lib/libvirt/images/web01-restored
    define: true
    new_name: web01-restored
    trust_saved_xml: true   # only for a repository nobody else can write

- name: Run web01 from its latest backup now, as web01-rescue
  virtops.libvirt.virt_restore:
    repository: /srv/backup/vms
    domain: web01
    dest: /var/lib/libvirt/images/web01-rescue
    mode: instant
    new_name: web01-rescue
    start: true
  register: rescue

- name: Move its disk to final storage while it runs (the domain no longer needs the repository)
  virtops.libvirt.virt_blockjob:
    name: web01-rescue
    disk: vda
    operation: copy
    dest: /var/lib/libvirt/images/web01-rescue.qcow2
    pivot: true

- name: Stop serving the backup now that no disk needs it
  virtops.libvirt.virt_restore:
    repository: /srv/backup/vms
    domain: web01
    backup: "{{ rescue.backup.id }}"   # the point it runs from (latest may name a newer backup by now)
    dest: /var/lib/libvirt/images/web01-rescue
    mode: instant
    new_name: web01-rescue

- name: One disk, raw
  virtops.libvirt.virt_restore:
    repository: /srv/backup/vms
    domain: db01
    backup: 20261126T014520Z
    disks: [vdb]
    format: raw
    dest: /srv/restore/db01
'''

RETURN = r'''
backup:
  description: The backup restored.
  returned: always
  type: dict
  contains:
    id:
      description: Backup id.
      type: str
    chain:
      description: Chain id.
      type: str
    level:
      description: Level of that backup.
      type: str
    time:
      description: When that backup started (ISO 8601, UTC).
      type: str
disks:
  description: The restored disks.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: Disk target name.
      type: str
    path:
      description: Path of the restored image; with O(mode=instant), of the disk's new overlay.
      type: str
    backing:
      description: With O(mode=instant), the NBD URI of the backup point beneath the overlay.
      type: str
      returned: with O(mode=instant)
    verified:
      description: True once the image was proven equal to the backup, block by block (false in check mode).
      type: bool
    digest:
      description: Digest of the disk's integrity data that the image matched.
      type: str
nvram:
  description:
    - Path of the restored UEFI variable store, C(<dest>/nvram.fd); null when the backup has none (a domain
      without UEFI firmware, or one that had never started). With O(define) the new domain uses it.
  returned: always
  type: str
  sample: /var/lib/libvirt/images/web01-restored/nvram.fd
tpm:
  description:
    - Path of the directory holding the restored TPM state files, C(<dest>/tpm); null when the backup has
      none. With O(define) they are also installed as the new domain's TPM state.
  returned: always
  type: str
  sample: /var/lib/libvirt/images/web01-restored/tpm
export:
  description:
    - With O(mode=instant), the NBD export the domain's disks are backed by (see
      M(virtops.libvirt.virt_backup_export) for its fields); null when no disk needs it any more.
  returned: with O(mode=instant)
  type: dict
  contains:
    name:
      description: Name of the export (C(instant-<new_name>)).
      type: str
    socket:
      description: Its unix socket.
      type: str
    pid:
      description: Process id of the C(qemu-storage-daemon) serving it (absent in check mode before it runs).
      type: int
export_stopped:
  description: With O(mode=instant), the name of the export this run stopped because no disk needed it any more.
  returned: when it happened
  type: str
domain:
  description: The domain defined with O(define) or O(mode=instant); null otherwise.
  returned: always
  type: dict
  contains:
    name:
      description: Its name.
      type: str
    uuid:
      description: Its new uuid.
      type: str
    xml:
      description: Its definition.
      type: str
    state:
      description: With O(mode=instant), V(running) or V(shutoff).
      type: str
mode:
  description: With O(mode=instant), V(instant).
  returned: with O(mode=instant)
  type: str
'''

from ansible_collections.virtops.libvirt.plugins.module_utils._lifecycle import run_module
from ansible_collections.virtops.libvirt.plugins.module_utils.backup._managers import RestoreManager


def main():
    run_module(RestoreManager)


if __name__ == '__main__':
    main()
