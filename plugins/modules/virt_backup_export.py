#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: virt_backup_export
short_description: Serve one backup point read-only over NBD, for single-file restores
version_added: 0.1.0
description:
  - Serves the disks of one point in time of a domain, taken by M(virtops.libvirt.virt_backup), read-only
    over NBD until O(state=absent), so that any NBD client (C(nbdfuse), C(qemu-nbd --connect) and C(mount),
    C(guestfish), C(nbdcopy)) can read files or whole disks from it without a restore.
  - Each disk of the point is one export, named after the disk (V(vda), V(vdb), ...), of one
    C(qemu-storage-daemon) that keeps running after the module returns. Its state lives in
    C(/run/virtops-libvirt/exports/<name>/) (root's alone), where later runs find it again; it does not
    survive a reboot of the host (run the task again).
  - The daemon opens the images of the chain itself, as the repository's manifests describe it (no link
    followed, every header checked against the manifest, backing files given explicitly), never by a backing
    file name found in an image header, and serves them read-only; nothing a client sends can change the
    repository.
  - By default the exports listen on a unix socket that only root can reach. V(tcp) listens on the network,
    with TLS only (client certificates verified).
  - Instant restores of M(virtops.libvirt.virt_restore) use exports of this kind, named C(instant-<domain>);
    this module stops one (O(state=absent)) only once no disk of that domain needs it, unless O(force).
extends_documentation_fragment:
  - virtops.libvirt.connection
  - virtops.libvirt.attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
    details:
      - Before and after are the served point (repository, domain, backup id, disks, where it listens).
  idempotent:
    support: full
    details:
      - A running export that serves the same point the same way is left alone. O(backup=latest) is resolved
        on each run, so a newer backup moves the export to it (with a change).
options:
  name:
    description:
      - Name of the export. It names its state directory, and later runs find it by it.
    type: str
    required: true
  state:
    description:
      - V(present) serves the point (and starts serving it again when its daemon is gone, or serves the new
        point when the options changed). V(absent) stops serving it and removes its state.
    type: str
    choices: [present, absent]
    default: present
  repository:
    description: Absolute path of the backup repository. Required with O(state=present).
    type: path
  domain:
    description: Name of the domain whose backup to serve. Required with O(state=present).
    type: str
  backup:
    description:
      - Which point in time, as in M(virtops.libvirt.virt_restore) (a backup id, V(latest), or an ISO 8601 time).
    type: str
    default: latest
  disks:
    description: Disk target names to serve; default every disk of the backup.
    type: list
    elements: str
  transport:
    description:
      - V(unix) listens on C(/run/virtops-libvirt/exports/<name>/nbd.sock), reachable by root only.
      - V(tcp) listens on O(bind_address):O(port) with TLS, and needs O(tls_dir).
    type: str
    choices: [unix, tcp]
    default: unix
  bind_address:
    description: Address to listen on with O(transport=tcp).
    type: str
    default: 127.0.0.1
  port:
    description: TCP port with O(transport=tcp).
    type: int
  tls_dir:
    description:
      - With O(transport=tcp), a directory holding C(ca-cert.pem), C(server-cert.pem) and C(server-key.pem)
        (QEMU's C(tls-creds-x509) layout). Clients must present a certificate signed by that CA.
    type: path
  force:
    description: With O(state=absent), stop an instant restore's export even while a domain's disks need it.
    type: bool
    default: false
requirements:
  - C(qemu-storage-daemon) (Debian package C(qemu-system-common)), C(qemu-img)
seealso:
  - module: virtops.libvirt.virt_backup
  - module: virtops.libvirt.virt_restore
  - module: virtops.libvirt.virt_backup_info
author:
  - virtops.libvirt developers (@virtops)
'''

EXAMPLES = r'''
- name: Serve yesterday's backup of web01 to fetch a file from it
  virtops.libvirt.virt_backup_export:
    name: web01-yesterday
    repository: /srv/backup/vms
    domain: web01
    backup: "2026-11-25T12:00:00Z"
  register: served

- name: Mount its first partition read-only (nbd kernel module), copy a file, unmount
  ansible.builtin.shell: |
    set -e
    qemu-nbd --read-only --connect=/dev/nbd0 '{{ served.export.disks[0].uri }}'
    trap 'umount /mnt/restore; qemu-nbd --disconnect /dev/nbd0' EXIT
    mount -o ro,norecovery /dev/nbd0p1 /mnt/restore || mount -o ro /dev/nbd0p1 /mnt/restore
    cp -a /mnt/restore/etc/nginx/nginx.conf /root/nginx.conf.restored
  changed_when: true

- name: Stop serving it
  virtops.libvirt.virt_backup_export:
    name: web01-yesterday
    state: absent

- name: Serve the latest backup to a backup host over TLS
  virtops.libvirt.virt_backup_export:
    name: db01-latest
    repository: /srv/backup/vms
    domain: db01
    transport: tcp
    bind_address: 192.0.2.10
    port: 10809
    tls_dir: /etc/pki/virtops-export
'''

RETURN = r'''
export:
  description: The served point and how to reach it; null with O(state=absent).
  returned: always
  type: dict
  contains:
    name:
      description: Name of the export.
      type: str
    repository:
      description: Repository path.
      type: str
    domain:
      description: Domain of the backup.
      type: str
    backup:
      description: Backup id served.
      type: str
    chain:
      description: Its chain id.
      type: str
    transport:
      description: V(unix) or V(tcp).
      type: str
    socket:
      description: Unix socket path (V(unix)).
      type: str
      sample: /run/virtops-libvirt/exports/web01-yesterday/nbd.sock
    bind_address:
      description: Listening address (V(tcp)).
      type: str
    port:
      description: Listening port (V(tcp)).
      type: int
    disks:
      description: One entry per disk served.
      type: list
      elements: dict
      contains:
        name:
          description: Disk target name.
          type: str
        export:
          description: NBD export name.
          type: str
        virtual_size:
          description: Size of the disk in bytes.
          type: int
        digest:
          description: Digest of the disk's integrity data in the backup.
          type: str
        uri:
          description: NBD URI of the export (C(nbd+unix://) or C(nbds://)).
          type: str
          sample: nbd+unix:///vda?socket=/run/virtops-libvirt/exports/web01-yesterday/nbd.sock
    pid:
      description: Process id of the serving C(qemu-storage-daemon); absent in check mode before it runs.
      type: int
    started:
      description: When it started serving (ISO 8601, UTC).
      type: str
'''

from ansible_collections.virtops.libvirt.plugins.module_utils._lifecycle import run_module
from ansible_collections.virtops.libvirt.plugins.module_utils.backup._managers import ExportManager


def main():
    run_module(ExportManager)


if __name__ == '__main__':
    main()
