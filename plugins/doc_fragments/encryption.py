# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):

    # The key of encrypted backups; see backup/_crypt.ENCRYPTION_OPTION.
    DOCUMENTATION = r'''
options:
  encryption:
    description:
      - The key of encrypted backups (qcow2 images with LUKS encryption, C(encrypt.format=luks)). Give exactly
        one of O(encryption.key_file) and O(encryption.secret).
      - The passphrase reaches C(qemu-img) and C(qemu-nbd) through an anonymous file they inherit, never a
        command line or a named file. A manifest records that its backup is encrypted and the key's fingerprint
        (PBKDF2-HMAC-SHA256 of the passphrase), never the key; a key that does not match the fingerprint is
        refused before anything is read or written.
      - Losing the key loses the backups; nothing, not this collection either, can read them without it.
    type: dict
    version_added: 0.2.0
    suboptions:
      key_file:
        description:
          - Path of a file on the managed host whose whole content, byte for byte (a final newline included), is
            the passphrase. It must be a regular file that only its owner can read (mode 0600 or 0400).
        type: path
      secret:
        description:
          - A libvirt secret on the host of the connection (O(uri)), by uuid or by usage id, whose value is the
            passphrase (C(virsh secret-set-value)). Its usage type does not matter; it must not be private
            (C(private='no')), as libvirt gives the value of a private secret to no client.
        type: str
      iter_time:
        description:
          - How long, in milliseconds, LUKS spends deriving the key of each new encrypted image
            (C(encrypt.iter-time)); QEMU's default is 2000. Every later open of that image (verification, restore,
            each layer of a chain) spends about as long again, so the default adds seconds to every run.
          - The derivation only slows down guessing a weak passphrase. A key with as much randomness as a key
            (for example C(openssl rand -hex 32) written to O(encryption.key_file)) cannot be guessed either way,
            and V(100) or less costs nothing in safety there.
          - Only images created by this run use it; existing images keep theirs. Ignored where nothing is created.
        type: int
'''
