# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Private to the virtops.libvirt collection: may change without notice.
"""The options of the backup modules, in one place: each module's argument spec and AnsibleModule
rules, and the checks of option values that those rules cannot express.

The checks look at the options alone (and, for paths on this host, at the file system); they run
before anything opens a repository or a libvirt connection, and raise VirtError.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

from ansible_collections.virtops.libvirt.plugins.module_utils._libvirt import VirtError
from ansible_collections.virtops.libvirt.plugins.module_utils._vocabulary import is_local_uri
from ansible_collections.virtops.libvirt.plugins.module_utils.backup import _crypt, _engine, _repository, _s3

# The options every module with an S3 repository takes (doc fragment virtops.libvirt.s3).
S3_ARGS = dict(
    s3_endpoint_url=dict(type='str'),
    s3_access_key=dict(type='str', no_log=False),   # an id, not a secret (as in amazon.aws)
    s3_secret_key=dict(type='str', no_log=True),
    s3_session_token=dict(type='str', no_log=True),
    s3_region=dict(type='str'),
    s3_profile=dict(type='str'),
)

# -- virt_backup ------------------------------------------------------------------------------------

BACKUP_ARGS = dict(
    domain=dict(type='str', required=True),
    repository=dict(type='path', required=True),
    mode=dict(type='str', default='pull', choices=['pull', 'push']),
    level=dict(type='str', default='auto', choices=['auto', 'full', 'incremental', 'differential']),
    disks=dict(type='list', elements='str'),
    exclude=dict(type='list', elements='str'),
    scratch_dir=dict(type='path'),
    timeout=dict(type='int', default=0),
    verify=dict(type='bool', default=False),
    quiesce=dict(type='str', default='auto', choices=['auto', 'always', 'never']),
    workers=dict(type='int', default=4),
    transport=dict(type='str', default='unix', choices=['unix', 'tcp']),
    tls=dict(type='bool', default=False),
    tls_dir=dict(type='path'),
    bind_address=dict(type='str'),
    connect_address=dict(type='str'),
    port=dict(type='int', default=10809),
    compress=dict(type='str', default='none', choices=['none', 'zlib', 'zstd']),
    encryption=dict(_crypt.ENCRYPTION_OPTION),
)


def backup_request(params):
    """virt_backup's options checked; the engine's Request."""
    if params['workers'] < 1 or params['workers'] > 32:
        raise VirtError('workers must be between 1 and 32, not %d' % params['workers'])
    if params['timeout'] < 0:
        raise VirtError('timeout must be 0 (no limit) or a number of seconds, not %d' % params['timeout'])
    tcp = None
    if params['transport'] == 'tcp':
        if params['mode'] != 'pull':
            raise VirtError('transport tcp applies to pull mode only')
        if not params['tls']:
            raise VirtError('transport tcp needs tls: true: the disks of %s would otherwise cross the network '
                            'in clear text, readable by anyone who can connect' % params['domain'])
        if not params['bind_address']:
            raise VirtError('transport tcp needs an explicit bind_address (the address QEMU listens on)')
        if not 0 < params['port'] < 65536:
            raise VirtError('port must be between 1 and 65535, not %d' % params['port'])
        tcp = dict(bind_address=params['bind_address'], port=params['port'], tls_dir=params['tls_dir'],
                   connect_address=params['connect_address'] or params['bind_address'])
    elif params['tls']:
        raise VirtError('tls applies to transport tcp; the default unix socket is private to this host')
    if params['tls']:
        if not params['tls_dir']:
            raise VirtError('tls: true needs tls_dir, the directory with ca-cert.pem, client-cert.pem and '
                            'client-key.pem')
        missing = [f for f in ('ca-cert.pem', 'client-cert.pem', 'client-key.pem')
                   if not os.path.isfile(os.path.join(params['tls_dir'], f))]
        if missing:
            raise VirtError('tls_dir %s lacks %s' % (params['tls_dir'], ', '.join(missing)))
    scratch_dir = params['scratch_dir']
    if scratch_dir is not None:
        if not os.path.isabs(scratch_dir):
            raise VirtError('scratch_dir %r must be an absolute path' % scratch_dir)
        # Checked here only when libvirtd runs on this host; a remote hypervisor has its own files.
        if is_local_uri(params['uri']) and not os.path.isdir(scratch_dir):
            raise VirtError('scratch_dir %s is not an existing directory' % scratch_dir)
    return _engine.Request(
        domain=params['domain'], repository=params['repository'], mode=params['mode'], level=params['level'],
        disks=params['disks'], scratch_dir=params['scratch_dir'], timeout=params['timeout'] or None,
        verify=params['verify'], workers=params['workers'], uri=params['uri'], tcp=tcp,
        quiesce=params['quiesce'], exclude=params['exclude'],
        compress=None if params.get('compress', 'none') == 'none' else params['compress'])


# -- virt_restore -----------------------------------------------------------------------------------

RESTORE_ARGS = dict(
    repository=dict(type='path', required=True),
    domain=dict(type='str', required=True),
    backup=dict(type='str', default='latest'),
    dest=dict(type='path', required=True),
    format=dict(type='str', default='qcow2', choices=['qcow2', 'raw']),
    disks=dict(type='list', elements='str'),
    force=dict(type='bool', default=False),
    define=dict(type='bool', default=False),
    new_name=dict(type='str'),
    trust_saved_xml=dict(type='bool', default=False),
    mode=dict(type='str', default='copy', choices=['copy', 'instant']),
    start=dict(type='bool', default=False),
    encryption=dict(_crypt.ENCRYPTION_OPTION),
    **S3_ARGS
)
RESTORE_RULES = dict(required_if=[('define', True, ['new_name']), ('mode', 'instant', ['new_name'])])

# -- virt_backup_copy -------------------------------------------------------------------------------

COPY_ARGS = dict(
    source=dict(type='str', required=True),
    target=dict(type='str', required=True),
    domains=dict(type='list', elements='str'),
    s3_object_lock=dict(type='str', default='none', choices=list(_s3.LOCK_MODES)),
    s3_retention_days=dict(type='int'),
    encryption=dict(_crypt.ENCRYPTION_OPTION),
)
COPY_ARGS.update(S3_ARGS)


def copy_lock(params):
    """virt_backup_copy's options checked; the object lock of what it writes: None or
    (mode, retain-until time)."""
    lock = None
    mode = params.get('s3_object_lock') or 'none'
    if mode != 'none':
        days = params.get('s3_retention_days')
        if not days or days < 1:
            raise VirtError('s3_object_lock %s needs s3_retention_days, the number of days (1 or more) each '
                            'object written stays locked' % mode)
        lock = (mode, _s3.retain_until(days))
    elif params.get('s3_retention_days'):
        raise VirtError('s3_retention_days needs s3_object_lock governance or compliance')
    if _s3.is_location(params['source']) and _s3.is_location(params['target']):
        raise VirtError('source and target are both in object storage: copy through a directory repository '
                        '(one copy into it, one out of it)')
    if not _s3.is_location(params['target']) and lock:
        raise VirtError('s3_object_lock applies to an S3 target; target %s is a directory' % params['target'])
    return lock


# -- virt_backup_prune ------------------------------------------------------------------------------

PRUNE_ARGS = dict(
    repository=dict(type='path', required=True),
    domains=dict(type='list', elements='str'),
    keep_last=dict(type='int'),
    keep_hourly=dict(type='int'),
    keep_daily=dict(type='int'),
    keep_weekly=dict(type='int'),
    keep_monthly=dict(type='int'),
    keep_yearly=dict(type='int'),
    keep_chains=dict(type='int'),
    merge=dict(type='bool', default=False),
    protect=dict(type='list', elements='str', default=[]),
    unprotect=dict(type='list', elements='str', default=[]),
    incomplete_grace=dict(type='str', default='24h'),
    **S3_ARGS
)


def prune_grace(p):
    """virt_backup_prune's options checked; incomplete_grace in seconds."""
    # Imported here: only virt_backup_prune needs the retention code (see _managers.py).
    from ansible_collections.virtops.libvirt.plugins.module_utils.backup import _retention
    if _s3.is_location(p['repository']):
        if p['merge']:
            raise VirtError('repository %s: merge (synthetic fulls) works on the images of a directory repository '
                            'and is not done in object storage; merge in the local repository (virt_backup_prune '
                            'merge: true), then copy it with virt_backup_copy and prune the S3 copy without merge; '
                            'nothing was changed' % p['repository'])
        if p['protect'] or p['unprotect']:
            raise VirtError('repository %s: protect and unprotect rewrite manifests, and an S3 copy keeps each '
                            'manifest byte for byte as its source has it (virt_backup_copy compares them); protect '
                            'the backup in the source repository before it is copied, or keep copies with s3_object_lock; '
                            'nothing was changed' % p['repository'])
    for rule in _retention.RULES + ('keep_chains',):
        value = p[rule]
        if value is not None and (value < -1 or (rule == 'keep_chains' and value < 0)):
            raise VirtError('%s is %d: give a number of %s >= 0%s' % (
                rule, value, 'chains' if rule == 'keep_chains' else 'periods',
                '' if rule == 'keep_chains' else ', or -1 for all'))
    if (p['protect'] or p['unprotect']) and len(p['domains'] or []) != 1:
        raise VirtError('protect and unprotect name backups of one domain: give exactly one domain in domains')
    both = set(p['protect']) & set(p['unprotect'])
    if both:
        raise VirtError('backup %s is both in protect and unprotect' % ', '.join(sorted(both)))
    for backup_id in p['protect'] + p['unprotect']:
        if not _repository.BACKUP_ID.match(backup_id):
            raise VirtError('%r is not a backup id (YYYYMMDDTHHMMSSZ with an optional -N)' % backup_id)
    try:
        return _retention.parse_duration(p['incomplete_grace'])
    except _retention.RetentionError as exc:
        raise VirtError('incomplete_grace: %s' % exc)


# -- virt_backup_export -----------------------------------------------------------------------------

EXPORT_ARGS = dict(
    name=dict(type='str', required=True),
    state=dict(type='str', default='present', choices=['present', 'absent']),
    repository=dict(type='path'),
    domain=dict(type='str'),
    backup=dict(type='str', default='latest'),
    disks=dict(type='list', elements='str'),
    transport=dict(type='str', default='unix', choices=['unix', 'tcp']),
    bind_address=dict(type='str', default='127.0.0.1'),
    port=dict(type='int'),
    tls_dir=dict(type='path'),
    force=dict(type='bool', default=False),
)
EXPORT_RULES = dict(required_if=[('state', 'present', ['repository', 'domain']),
                                 ('transport', 'tcp', ['port', 'tls_dir'])])

# -- virt_backup_info -------------------------------------------------------------------------------

BACKUP_INFO_ARGS = dict(
    repository=dict(type='path', required=True),
    domain=dict(type='str'),
    verify=dict(type='bool', default=False),
    encryption=dict(_crypt.ENCRYPTION_OPTION),
    **S3_ARGS
)
