# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Private to the virtops.libvirt collection: may change without notice.
"""cloud-init NoCloud seed images: rendered from data, built and read back with pycdlib.

Used by virt_cloud_init_seed. The seed is an ISO 9660 image labelled ``cidata`` whose root holds
``user-data``, ``meta-data`` and optionally ``network-config`` and ``vendor-data`` (Rock Ridge and
Joliet names; the plain ISO 9660 names are 8.3 stand-ins). An existing seed is compared by the
files inside it, never by the bytes of the image, which differ with every build (timestamps).
Every helper raises VirtError; nothing here exits.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import io
import json
import os
import stat
import tempfile
import traceback

PYCDLIB_IMPORT_ERROR = None
try:
    import pycdlib
    from pycdlib.pycdlibexception import PyCdlibException
except ImportError:  # pragma: no cover - reported by the module
    pycdlib = None
    PyCdlibException = Exception
    PYCDLIB_IMPORT_ERROR = traceback.format_exc()

try:
    import yaml
except ImportError:  # pragma: no cover - JSON is valid YAML, cloud-init reads it as well
    yaml = None

from ansible_collections.virtops.libvirt.plugins.module_utils._libvirt import VirtError
from ansible_collections.virtops.libvirt.plugins.module_utils._lifecycle import ObjectManager, Plan
from ansible_collections.virtops.libvirt.plugins.module_utils._errors import (
    REASON_INVALID_NETWORK_CONFIG,
    REASON_INVALID_OPTION,
    REASON_MISSING_DIRECTORY,
    REASON_MISSING_LIBRARY,
    REASON_NOT_A_FILE,
    REASON_NOT_A_SEED_IMAGE,
    REASON_NO_INSTANCE_ID,
    REASON_READ_ERROR,
    REASON_WRITE_ERROR,
)


LABEL = 'cidata'

# Seed file name -> its ISO 9660 level-3 name (8.3, upper case). Order is the build order.
SEED_FILES = (
    ('user-data', 'USERDATA.;1'),
    ('meta-data', 'METADATA.;1'),
    ('network-config', 'NETWORKC.;1'),
    ('vendor-data', 'VENDORDA.;1'),
)
ISO_NAMES = dict((iso, name) for name, iso in SEED_FILES)

# Files whose text may carry secrets (passwords, keys): hidden in the diff unless allowed.
SECRET_FILES = ('user-data', 'vendor-data')

NEW_FILE_MODE = 0o644

SEED_ARGS = dict(
    path=dict(type='path', required=True),
    state=dict(type='str', default='present', choices=['present', 'absent']),
    user_data=dict(type='raw'),
    meta_data=dict(type='raw'),
    hostname=dict(type='str'),
    instance_id=dict(type='str'),
    network_config=dict(type='raw'),
    vendor_data=dict(type='raw'),
    diff_user_data=dict(type='bool', default=False),
    force=dict(type='bool', default=False),
)


# ---------------------------------------------------------------------------------------------
# Rendering the wanted files

def to_yaml(data):
    """Block-style YAML with sorted keys, so the same data always gives the same text."""
    if yaml is not None:
        return yaml.safe_dump(data, default_flow_style=False, sort_keys=True, allow_unicode=True)
    return json.dumps(data, indent=2, sort_keys=True) + '\n'


def _text(value, what):
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode('utf-8')
    raise VirtError('%s must be a string or a dictionary, got %s' % (what, type(value).__name__),
                    reason=REASON_INVALID_OPTION)


def render_user_data(value, what='user_data'):
    """A dict becomes #cloud-config YAML; a string (cloud-config, a script, MIME multi-part,
    #include ...) is used as it is; nothing becomes an empty cloud-config."""
    if value is None:
        return b'#cloud-config\n'
    if isinstance(value, dict):
        return ('#cloud-config\n' + to_yaml(value)).encode('utf-8')
    return _text(value, what)


def render_meta_data(value, hostname=None, instance_id=None):
    """meta-data as YAML. A dict (or nothing) gets instance-id and local-hostname from
    instance_id and hostname when it lacks them; a string is used as it is."""
    if value is not None and not isinstance(value, dict):
        if hostname is not None or instance_id is not None:
            raise VirtError('hostname and instance_id fill in a meta_data dictionary; with '
                            'meta_data given as a string, put them into that string',
                            reason=REASON_INVALID_OPTION)
        return _text(value, 'meta_data')
    data = dict(value or {})
    if 'instance-id' not in data and (instance_id or hostname):
        data['instance-id'] = instance_id or hostname
    if 'local-hostname' not in data and hostname:
        data['local-hostname'] = hostname
    if not data.get('instance-id'):
        raise VirtError('meta-data needs an instance-id (cloud-init runs its per-instance steps '
                        'again whenever it changes): set instance_id, hostname, or '
                        "meta_data['instance-id']", reason=REASON_NO_INSTANCE_ID)
    return to_yaml(data).encode('utf-8')


def render_network_config(value):
    """Network configuration version 1 or 2, bare or under a top-level 'network' key."""
    if value is None:
        return None
    if isinstance(value, dict):
        inner = value.get('network', value)
        version = inner.get('version') if isinstance(inner, dict) else None
        if version not in (1, 2, '1', '2'):
            raise VirtError('network_config must be cloud-init network configuration version 1 '
                            'or 2 (a dictionary with version: 1 or version: 2, optionally under '
                            'a network key); got version %r' % (version,),
                            reason=REASON_INVALID_NETWORK_CONFIG)
        return to_yaml(value).encode('utf-8')
    return _text(value, 'network_config')


def wanted_files(params):
    """Seed file name -> bytes, for the files this seed holds."""
    files = {
        'user-data': render_user_data(params.get('user_data')),
        'meta-data': render_meta_data(params.get('meta_data'), params.get('hostname'),
                                      params.get('instance_id')),
    }
    network = render_network_config(params.get('network_config'))
    if network is not None:
        files['network-config'] = network
    if params.get('vendor_data') is not None:
        files['vendor-data'] = render_user_data(params['vendor_data'], 'vendor_data')
    return files


# ---------------------------------------------------------------------------------------------
# The image

def _require_pycdlib():
    if pycdlib is None:
        raise VirtError('pycdlib is needed to build and read seed images (Debian and Ubuntu: '
                        'python3-pycdlib; PyPI: pycdlib)', reason=REASON_MISSING_LIBRARY)


def build_iso(files):
    """The bytes of a seed image holding files (name -> bytes)."""
    _require_pycdlib()
    iso = pycdlib.PyCdlib()
    # Rock Ridge and Joliet give Linux and other readers the real (lower-case, hyphenated) names.
    iso.new(interchange_level=3, joliet=3, rock_ridge='1.09', vol_ident=LABEL)
    try:
        for name, iso_name in SEED_FILES:
            if name in files:
                data = files[name]
                iso.add_fp(io.BytesIO(data), len(data), '/' + iso_name, rr_name=name,
                           joliet_path='/' + name)
        out = io.BytesIO()
        iso.write_fp(out)
        return out.getvalue()
    finally:
        iso.close()


def _child_name(record, facade):
    if facade == 'rr':
        return record.rock_ridge.name().decode('utf-8', 'replace') if record.rock_ridge else None
    ident = record.file_identifier()
    if facade == 'joliet':
        return ident.decode('utf-16-be', 'replace')
    ident = ident.decode('ascii', 'replace')
    return ISO_NAMES.get(ident, ident.split(';')[0].lower())


def read_iso(data):
    """(label, {file name: bytes}) of the root files of the ISO 9660 image in data.

    Raises ValueError when data is not an ISO 9660 image."""
    _require_pycdlib()
    iso = pycdlib.PyCdlib()
    try:
        iso.open_fp(io.BytesIO(data))
    except PyCdlibException as exc:
        raise ValueError(str(exc))
    try:
        label = iso.pvd.volume_identifier.decode('ascii', 'replace').rstrip(' \x00')
        if iso.has_rock_ridge():
            facade, key = 'rr', 'rr_path'
        elif iso.has_joliet():
            facade, key = 'joliet', 'joliet_path'
        else:
            facade, key = 'iso', 'iso_path'
        files = {}
        for record in iso.list_children(**{key: '/'}):
            if record.is_dot() or record.is_dotdot() or record.is_dir():
                continue
            name = _child_name(record, facade)
            if not name:
                continue
            out = io.BytesIO()
            if facade == 'iso':
                iso.get_file_from_iso_fp(out, iso_path='/' + record.file_identifier().decode('ascii'))
            else:
                iso.get_file_from_iso_fp(out, **{key: '/' + name})
            files[name] = out.getvalue()
        return label, files
    except PyCdlibException as exc:
        raise ValueError(str(exc))
    finally:
        iso.close()


def read_seed_file(path):
    """(label, files) of the seed image at path; ValueError when it is not an ISO 9660 image."""
    with open(path, 'rb') as f:
        return read_iso(f.read())


def changed_files(wanted, existing):
    """Names of the files that differ between wanted and existing (added, changed, removed)."""
    names = sorted(set(wanted) | set(existing))
    return [n for n in names if wanted.get(n) != existing.get(n)]


# ---------------------------------------------------------------------------------------------
# Writing

def write_atomic(path, data):
    """Replace path with data in one rename. A replaced file's owner, group and mode carry
    over to the new one (libvirt may have handed it to QEMU's user); a new file is 0644."""
    directory = os.path.dirname(path) or '.'
    fd, tmp = tempfile.mkstemp(prefix='.%s.' % os.path.basename(path), dir=directory)
    try:
        with os.fdopen(fd, 'wb') as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        try:
            st = os.stat(path)
        except OSError:
            os.chmod(tmp, NEW_FILE_MODE)
        else:
            os.chmod(tmp, stat.S_IMODE(st.st_mode))
            if os.geteuid() == 0:
                os.chown(tmp, st.st_uid, st.st_gid)
        os.rename(tmp, path)
        tmp = None
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)


# ---------------------------------------------------------------------------------------------
# The manager

def _sha256(data):
    return hashlib.sha256(data).hexdigest()


def _instance_id(meta):
    """The instance-id in meta-data text, or None."""
    if meta is None:
        return None
    try:
        loaded = yaml.safe_load(meta) if yaml is not None else json.loads(meta)
    except Exception:  # pylint: disable=broad-except
        return None
    if isinstance(loaded, dict) and loaded.get('instance-id') is not None:
        return str(loaded['instance-id'])
    return None


class SeedManager(ObjectManager):
    """virt_cloud_init_seed: compare the wanted seed with the file at path (by the files inside
    it), then write or remove it (unless check mode). No libvirt object: the connection is
    never opened. params: the module's parameters (SEED_ARGS)."""

    kind = 'seed image'
    argument_spec = SEED_ARGS
    module_options = dict(add_file_common_args=True)

    def __init__(self, connection, params, check_mode=False, diff_mode=False, warn=None):
        ObjectManager.__init__(self, connection, params, check_mode, diff_mode, warn)
        self.path = params['path']
        self.wanted = None
        self.files = {}
        self.differ = []
        self.attr_diff = None

    def check_options(self):
        p = self.params
        if not os.path.isabs(self.path):
            raise VirtError('path must be absolute, got %s' % self.path, reason=REASON_INVALID_OPTION)
        if os.path.isdir(self.path):
            raise VirtError('%s is a directory; path names the seed image file' % self.path,
                            reason=REASON_INVALID_OPTION)
        if p['state'] == 'present':
            self.wanted = wanted_files(p)
            if not os.path.isdir(os.path.dirname(self.path)):
                raise VirtError('the directory of path %s does not exist (nothing was changed)'
                                % self.path, reason=REASON_MISSING_DIRECTORY)

    def identify(self):
        return self.path

    def lookup(self):
        """(label, files) of the file at path; None when there is no file; a VirtError when it
        is not a seed image, unless force."""
        if not os.path.lexists(self.path):
            return None
        if not os.path.isfile(self.path):
            raise VirtError('%s exists and is not a regular file (nothing was changed)'
                            % self.path, reason=REASON_NOT_A_FILE)
        try:
            label, files = read_seed_file(self.path)
        except (IOError, OSError) as exc:
            raise VirtError('reading %s failed: %s' % (self.path, exc), reason=REASON_READ_ERROR)
        except ValueError as exc:
            if self.params['force']:
                return ('', {})
            raise VirtError('%s exists and is not an ISO 9660 image (%s); set force: true to '
                            'replace it (nothing was changed)' % (self.path, exc),
                            reason=REASON_NOT_A_SEED_IMAGE)
        if label != LABEL and not self.params['force']:
            raise VirtError('%s is an ISO 9660 image labelled %r, not a cloud-init seed (%r); '
                            'set force: true to replace it (nothing was changed)'
                            % (self.path, label, LABEL), reason=REASON_NOT_A_SEED_IMAGE)
        return label, files

    def plan_absent(self, live):
        plan = Plan()
        if live is None:
            return plan
        label, files = live
        self.differ = sorted(files)
        plan.add('remove', self._remove)
        plan.diff = self.diff(label, files, None, {}, sorted(files))
        return plan

    def plan_present(self, live):
        label, files = live if live is not None else (None, {})
        self.files = self.wanted
        self.differ = changed_files(self.wanted, files)
        plan = Plan()
        if live is None or label != LABEL or self.differ:
            plan.add('create' if live is None else 'rebuild', self._write)
            plan.diff = self.diff(label, files, LABEL, self.wanted, self.differ)
        return plan

    # -- steps ------------------------------------------------------------------------------

    def _write(self, existing):
        data = build_iso(self.wanted)
        try:
            write_atomic(self.path, data)
        except (IOError, OSError) as exc:
            raise VirtError('writing %s failed: %s' % (self.path, exc),
                            reason=REASON_WRITE_ERROR)
        return existing

    def _remove(self, existing):
        try:
            os.unlink(self.path)
        except OSError as exc:
            raise VirtError('removing %s failed: %s' % (self.path, exc), reason=REASON_WRITE_ERROR)
        return None

    # -- file attributes, diff and result -----------------------------------------------------

    def finish(self, live, plan):
        """Owner, group and mode as asked (add_file_common_args), through the AnsibleModule
        when run_module runs the manager; in check mode a file not written yet has none to
        compare."""
        if self.module is None or self.params['state'] != 'present' or not os.path.isfile(self.path):
            return live
        attr_diff = dict(before={}, after={})
        file_args = self.module.load_file_common_arguments(self.params, path=self.path)
        if self.module.set_fs_attributes_if_different(file_args, False, diff=attr_diff):
            self.actions.append('attributes')
            plan.changed = True
        if attr_diff['before'] or attr_diff['after']:
            self.attr_diff = attr_diff
        return live

    def _file_text(self, name, data):
        if name in SECRET_FILES and not self.params['diff_user_data']:
            return ('# %s: %d bytes, sha256 %s (hidden: it may hold secrets; '
                    'diff_user_data: true shows it)\n' % (name, len(data), _sha256(data)))
        text = data.decode('utf-8', 'replace')
        if text and not text.endswith('\n'):
            text += '\n'
        return '# %s\n%s' % (name, text)

    def _side(self, label, files, names):
        if label is None:
            return ''
        parts = ['# label: %s\n' % label]
        for name in names:
            if name in files:
                parts.append(self._file_text(name, files[name]))
        return ''.join(parts)

    def diff(self, before_label, before_files, after_label, after_files, names):
        if not self.diff_mode:
            return None
        return dict(before_header='%s (current)' % self.path,
                    after_header='%s (wanted)' % self.path,
                    before=self._side(before_label, before_files, names),
                    after=self._side(after_label, after_files, names))

    def diff_of(self, plan):
        """The files inside the seed when it changes (none otherwise), and the file attributes'
        own diff beside it when they differ."""
        if not self.diff_mode:
            return None
        if self.attr_diff is not None:
            return [d for d in (plan.diff, self.attr_diff) if d]
        return plan.diff

    def result_fields(self, live, plan):
        return dict(path=self.path, actions=self.actions, files=sorted(self.files),
                    changed_files=self.differ, instance_id=_instance_id(self.files.get('meta-data')),
                    sha256=dict((n, _sha256(d)) for n, d in self.files.items()))
