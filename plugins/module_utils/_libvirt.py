# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Private to the virtops.libvirt collection: may change without notice.
"""Connection to libvirt, error translation and version checks, shared by every module."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import contextlib
import gc
import traceback

LIBVIRT_IMPORT_ERROR = None
try:
    import libvirt
except ImportError:  # pragma: no cover - reported by VirtModule
    libvirt = None
    LIBVIRT_IMPORT_ERROR = traceback.format_exc()
else:
    # libvirt prints every error to stderr by default; errors reach the user as VirtError instead.
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.virtops.libvirt.plugins.module_utils._errors import VirtError


CONNECTION_ARGS = dict(
    uri=dict(type='str', default='qemu:///system'),
    username=dict(type='str'),
    password=dict(type='str', no_log=True),
)


def error_code(exc):
    try:
        return exc.get_error_code()
    except Exception:  # pylint: disable=broad-except
        return None


def translate(exc, action, obj=None):
    """Turn a libvirtError into a VirtError that says what failed, where and why."""
    code = error_code(exc)
    message = exc.get_error_message() if hasattr(exc, 'get_error_message') else str(exc)
    message = message or str(exc)
    where = ' on %s' % obj if obj else ''
    return VirtError('%s%s failed: %s' % (action, where, message), action=action, obj=obj,
                     code=code, libvirt_message=message)


@contextlib.contextmanager
def libvirt_call(action, obj=None):
    """Run libvirt calls; a libvirtError leaves as a VirtError naming the action and object."""
    try:
        yield
    except libvirt.libvirtError as exc:
        raise translate(exc, action, obj)


def lookup_or_none(lookup, missing, action, obj=None):
    """lookup(), or None when libvirt says there is no such object (a libvirtError with one of
    the VIR_ERR_* codes in missing); any other libvirtError leaves as a VirtError naming action
    and obj."""
    # The bindings read the error code after the failed call returns; a garbage collection in
    # between can free another libvirt object, whose virXFree resets the thread's last error, and
    # "not found" would then arrive without its code. No collection runs during the lookup.
    collecting = gc.isenabled()
    gc.disable()
    try:
        return lookup()
    except libvirt.libvirtError as exc:
        if is_error(exc, *missing):
            return None
        raise translate(exc, action, obj)
    finally:
        if collecting:
            gc.enable()


def is_error(exc, *names):
    """True when exc is a libvirtError with one of the VIR_ERR_* codes named."""
    code = error_code(exc)
    return any(code == getattr(libvirt, name, object()) for name in names)


def flag(name):
    """The libvirt constant called name; a VirtError when the bindings are too old to have it."""
    try:
        return getattr(libvirt, name)
    except AttributeError:
        raise VirtError('the libvirt Python bindings on this host are too old for this: they lack %s' % name)


def optional_flag(name):
    """The libvirt constant called name, or 0 when the bindings predate it: for flags that only
    add to what older versions do anyway."""
    return getattr(libvirt, name, 0)


def domain_label(dom):
    return 'domain %s' % dom.name()


def driver_type(dom):
    """The hypervisor driver of the domain's connection: QEMU, TEST, ..."""
    with libvirt_call('reading the driver type', domain_label(dom)):
        return dom.connect().getType()


def read_persistent(obj, label):
    """Whether obj (a domain or a storage pool) is persistent; label names it in a failure."""
    with libvirt_call('reading persistence', label):
        return bool(obj.isPersistent())


def read_autostart(obj, label):
    """Whether obj (a domain or a storage pool) starts with the host; label names it in a failure."""
    with libvirt_call('reading autostart', label):
        return bool(obj.autostart())


def flags_rejected(exc):
    """True when a libvirtError says the driver does not know the flags passed (test:///, or
    an older libvirt): the caller then retries without them."""
    return is_error(exc, 'VIR_ERR_INVALID_ARG', 'VIR_ERR_NO_SUPPORT') and 'flags' in str(exc)


def call_with_flags(action, obj, with_flags, without_flags, suffix=''):
    """with_flags(); when the driver rejects the flags, without_flags() instead. Any other
    libvirtError leaves as a VirtError naming action and obj (suffix appended to its message).
    Bindings too old to have the flagged call (AttributeError) also use without_flags()."""
    try:
        return with_flags()
    except AttributeError:  # pragma: no cover - bindings older than the flagged call
        pass
    except libvirt.libvirtError as exc:
        if not flags_rejected(exc):
            err = translate(exc, action, obj)
            err.msg += suffix
            raise err
    with libvirt_call(action, obj):
        return without_flags()


def version_tuple(number):
    """libvirt's packed version number (major * 1000000 + minor * 1000 + micro) as a tuple."""
    return (number // 1000000, (number // 1000) % 1000, number % 1000)


def version_string(number):
    return '%d.%d.%d' % version_tuple(number)


# Features this collection uses and the libvirt version that brought each.
FEATURES = {
    'checkpoints': ((6, 0, 0), 'checkpoints (virDomainCheckpointCreateXML)'),
    'backup': ((6, 0, 0), 'incremental backup (virDomainBackupBegin)'),
    'checkpoint_size': ((6, 0, 0), 'checkpoint size (VIR_DOMAIN_CHECKPOINT_XML_SIZE)'),
    'undefine_checkpoints_metadata': ((5, 6, 0), 'VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA'),
}


class Connection:
    """An open libvirt connection and what the daemon offers."""

    def __init__(self, uri, username=None, password=None, read_only=False):
        self.uri = uri
        self.conn = self._open(uri, username, password, read_only)
        self._lib_version = None

    @staticmethod
    def _open(uri, username, password, read_only=False):
        if libvirt is None:
            raise VirtError('the libvirt Python bindings are missing (Debian/Ubuntu python3-libvirt, '
                            'RHEL python3-libvirt, or pip libvirt-python)')
        try:
            if username is None and password is None:
                return libvirt.openReadOnly(uri) if read_only else libvirt.open(uri)

            def request_credentials(credentials, user_data):
                for cred in credentials:
                    if cred[0] == libvirt.VIR_CRED_AUTHNAME:
                        cred[4] = username
                    elif cred[0] == libvirt.VIR_CRED_PASSPHRASE:
                        cred[4] = password
                    else:
                        return -1
                return 0

            auth = [[libvirt.VIR_CRED_AUTHNAME, libvirt.VIR_CRED_PASSPHRASE], request_credentials, None]
            return libvirt.openAuth(uri, auth, libvirt.VIR_CONNECT_RO if read_only else 0)
        except libvirt.libvirtError as exc:
            raise translate(exc, 'connecting to libvirt', uri)

    @property
    def lib_version(self):
        if self._lib_version is None:
            with libvirt_call('reading the libvirt version', self.uri):
                self._lib_version = self.conn.getLibVersion()
        return self._lib_version

    def require(self, feature):
        """Fail clearly when the daemon is older than the feature needs."""
        needed, what = FEATURES[feature]
        have = version_tuple(self.lib_version)
        if have < needed:
            raise VirtError('%s needs libvirt %s or newer; %s runs %s' % (
                what, '.'.join(str(p) for p in needed), self.uri, version_string(self.lib_version)))

    def lookup_domain(self, name):
        """The domain called name, or None when there is none."""
        return lookup_or_none(lambda: self.conn.lookupByName(name), ('VIR_ERR_NO_DOMAIN',), 'looking up domain', name)

    def get_domain(self, name):
        """The domain called name; a VirtError when it does not exist."""
        dom = self.lookup_domain(name)
        if dom is None:
            raise VirtError('domain %s not found on %s' % (name, self.uri), obj=name)
        return dom

    def close(self):
        try:
            self.conn.close()
        except Exception:  # pylint: disable=broad-except
            pass


class _SecretsModule(AnsibleModule):
    """AnsibleModule that adds the secrets found inside its parameters (secrets(params), such as
    the passwords in an XML option) to its no_log values as soon as it reads the parameters: its
    constructor already shows them, when it fails on a bad option and when it logs the invocation
    on the host (journal, syslog)."""

    def __init__(self, secrets=None, **kwargs):
        self._find_secrets = secrets
        super(_SecretsModule, self).__init__(**kwargs)

    def _load_params(self):
        super(_SecretsModule, self)._load_params()
        if self._find_secrets is not None:
            self.no_log_values.update(self._find_secrets(self.params))


class VirtModule:
    """AnsibleModule with the connection options merged in and the bindings checked.

    Composition, not inheritance: modules use .module for everything AnsibleModule offers.
    secrets: a function of the module's parameters that returns values to mask in everything
    the module returns or logs (see xml/_secrets.py).
    """

    def __init__(self, argument_spec, connect=True, secrets=None, **kwargs):
        spec = dict(CONNECTION_ARGS)
        spec.update(argument_spec)
        self.module = _SecretsModule(secrets=secrets, argument_spec=spec, **kwargs)
        if libvirt is None:
            self.module.fail_json(msg=missing_required_lib('libvirt-python (python3-libvirt)'),
                                  exception=LIBVIRT_IMPORT_ERROR)
        self._connection = None
        self._connect = connect

    @property
    def params(self):
        return self.module.params

    @property
    def check_mode(self):
        return self.module.check_mode

    @property
    def connection(self):
        if self._connection is None:
            p = self.module.params
            self._connection = Connection(p['uri'], p.get('username'), p.get('password'))
        return self._connection

    def run(self, func):
        """Call func(self) -> result dict; turn a VirtError into one clear failure."""
        try:
            result = func(self)
        except VirtError as exc:
            self.close()
            self.module.fail_json(**exc.result())
        except Exception as exc:  # pylint: disable=broad-except
            self.close()
            if libvirt is not None and isinstance(exc, libvirt.libvirtError):
                self.module.fail_json(**translate(exc, 'libvirt call').result())
            self.module.fail_json(msg='unexpected error: %s' % exc, exception=traceback.format_exc())
        self.close()
        self.module.exit_json(**result)

    def close(self):
        if self._connection is not None:
            self._connection.close()
            self._connection = None
