# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Private to the virtops.libvirt collection: may change without notice.
"""The key of encrypted backups (qcow2 with LUKS encryption): where it comes from, its fingerprint,
and how QEMU gets it.

The passphrase never appears on a command line or in a named file: it sits in an anonymous
memory file (memfd) that qemu-img and qemu-nbd inherit and open as /dev/fd/N
(--object secret,id=virtops-key,file=/dev/fd/N). A manifest records only the format and the
key's fingerprint: PBKDF2-HMAC-SHA256 of the passphrase with a fixed salt, many iterations, so that
the fingerprint is no faster a test of a guessed passphrase than LUKS itself.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import os
import re
import stat
import tempfile

from ansible_collections.virtops.libvirt.plugins.module_utils._errors import REASON_INVALID_OPTION, VirtError

SECRET_ID = 'virtops-key'
FORMAT = 'luks'
FINGERPRINT_SALT = b'virtops.libvirt backup key fingerprint'
FINGERPRINT_ROUNDS = 1000000
FINGERPRINT = re.compile(r'^[0-9a-f]{32}$')
MAX_KEY = 64 * 1024
MAX_ITER_TIME = 60000
UUID = re.compile(r'^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$')

# The option every module that reads or writes encrypted backups takes (doc fragment
# virtops.libvirt.encryption). Neither value is a secret: a path and a libvirt secret's name.
ENCRYPTION_OPTION = dict(
    type='dict',
    options=dict(
        key_file=dict(type='path', no_log=False),
        secret=dict(type='str', no_log=False),
        iter_time=dict(type='int'),
    ),
    mutually_exclusive=[('key_file', 'secret')],
    required_one_of=[('key_file', 'secret')],
)


def fingerprint(passphrase):
    return hashlib.pbkdf2_hmac('sha256', passphrase, FINGERPRINT_SALT, FINGERPRINT_ROUNDS)[:16].hex()


class Key:
    """A passphrase held in an anonymous file for QEMU's children; close() releases it."""

    def __init__(self, passphrase, origin, iter_time=None):
        if not passphrase:
            raise VirtError('%s is empty: the passphrase needs at least one byte' % origin)
        self.origin = origin
        # LUKS key derivation time of new images, in ms (None: QEMU's default, 2000); every later
        # open of such an image spends about as long deriving the key again.
        self.iter_time = iter_time
        self.fingerprint = fingerprint(passphrase)
        self.fd = _anonymous_file(passphrase)

    def object_args(self):
        """The qemu-img / qemu-nbd arguments that define the secret (the fd must be in pass_fds)."""
        return ['--object', 'secret,id=%s,file=/dev/fd/%d' % (SECRET_ID, self.fd)]

    def close(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def _anonymous_file(data):
    if hasattr(os, 'memfd_create'):
        fd = os.memfd_create('virtops-key', os.MFD_CLOEXEC)
    else:
        # An unlinked private file: it has no name anyone could open.
        with tempfile.TemporaryFile() as tmp:
            fd = os.dup(tmp.fileno())
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_key_file(path):
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise VirtError('cannot read encryption.key_file %s: %s' % (path, exc.strerror or exc))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise VirtError('encryption.key_file %s is not a regular file' % path)
        if st.st_mode & 0o077:
            raise VirtError('encryption.key_file %s can be read by other users (mode %04o): make it private '
                            '(chmod 0600)' % (path, stat.S_IMODE(st.st_mode)))
        if st.st_size > MAX_KEY:
            raise VirtError('encryption.key_file %s holds %d bytes; a passphrase has at most %d' % (
                path, st.st_size, MAX_KEY))
        chunks = []
        while True:
            chunk = os.read(fd, MAX_KEY + 1)
            if not chunk:
                break
            chunks.append(chunk)
        return b''.join(chunks)
    finally:
        os.close(fd)


def secret_value(conn, name):
    """The value of a libvirt secret given by uuid or by usage id (any usage type)."""
    import libvirt  # only here: the key_file path needs no libvirt
    secret = None
    try:
        if UUID.match(name):
            secret = conn.secretLookupByUUIDString(name)
        else:
            for kind in ('VOLUME', 'CEPH', 'ISCSI', 'TLS', 'VTPM'):
                usage = getattr(libvirt, 'VIR_SECRET_USAGE_TYPE_%s' % kind, None)
                if usage is None:
                    continue
                try:
                    secret = conn.secretLookupByUsage(usage, name)
                    break
                except libvirt.libvirtError as exc:
                    if exc.get_error_code() != libvirt.VIR_ERR_NO_SECRET:
                        raise
        if secret is None:
            raise VirtError('encryption.secret: libvirt has no secret with uuid or usage %s' % name)
        return secret.value(0)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_SECRET:
            raise VirtError('encryption.secret: libvirt has no secret %s or it has no value' % name)
        if 'private' in (exc.get_error_message() or ''):
            raise VirtError("encryption.secret %s is a private secret (private='yes'), whose value libvirt gives to "
                            "no client; define the backup key's secret with private='no'" % name)
        raise VirtError('encryption.secret %s: %s' % (name, exc.get_error_message()))


def load_key(option, conn_factory):
    """The Key an encryption option names, or None without the option. conn_factory() gives the
    libvirt connection (only called for a libvirt secret)."""
    if not option:
        return None
    iter_time = option.get('iter_time')
    if iter_time is not None and not 1 <= iter_time <= MAX_ITER_TIME:
        raise VirtError('encryption.iter_time must be 1 to %d milliseconds, got %d' % (MAX_ITER_TIME, iter_time),
                        reason=REASON_INVALID_OPTION)
    if option.get('key_file'):
        return Key(read_key_file(option['key_file']), 'encryption.key_file %s' % option['key_file'], iter_time)
    name = option['secret']
    conn = conn_factory()
    conn = getattr(conn, 'conn', conn)      # a _libvirt.Connection, or a libvirt connection itself
    return Key(secret_value(conn, name), 'the value of libvirt secret %s' % name, iter_time)


def manifest_section(key):
    """What a manifest records of the encryption of its images: None, or the format and fingerprint."""
    if key is None:
        return None
    return dict(format=FORMAT, key_fingerprint=key.fingerprint)


def check_key(backup_id, section, key):
    """Raise VirtError unless key opens the images of a backup whose manifest's encryption is section."""
    if not section:
        return
    if key is None:
        raise VirtError('backup %s is encrypted: give encryption.key_file or encryption.secret' % backup_id)
    if key.fingerprint != section.get('key_fingerprint'):
        raise VirtError('the key does not match backup %s (fingerprint %s; the key given has %s)' % (
            backup_id, section.get('key_fingerprint'), key.fingerprint))


def check_lineage(lineage, key):
    """check_key for every backup of a point in time (newest first), oldest first."""
    for backup in reversed(list(lineage)):
        check_key(backup.id, backup.manifest.get('encryption'), key)
