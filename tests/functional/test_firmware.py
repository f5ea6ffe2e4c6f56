# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""UEFI variables and TPM state of a real q35 TCG domain (OVMF, swtpm): saved with its backups,
restored, and used by a domain defined from the restore, which starts with them."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import os
import pwd
import stat
import sys
import time

import libvirt
import pytest
from lxml import etree

from support.guests import unique
from support.host import COLLECTIONS, ensure_collection_link, sh
from support.modules import ok
from support.repository import read_manifest
import ftlib

# These tests also drive module_utils directly (the modules themselves run as Ansible runs them).
ensure_collection_link()
if str(COLLECTIONS) not in sys.path:
    sys.path.insert(0, str(COLLECTIONS))

from ansible_collections.virtops.libvirt.plugins.module_utils.backup import _firmware, _repository  # noqa: E402
from ansible_collections.virtops.libvirt.plugins.module_utils.backup._saved_xml import new_domain_xml  # noqa: E402

CODE = '/usr/share/OVMF/OVMF_CODE_4M.ms.fd'
TEMPLATE = '/usr/share/OVMF/OVMF_VARS_4M.ms.fd'
XML = """<domain type='qemu'><name>{name}</name><memory unit='MiB'>256</memory><vcpu>1</vcpu>
<os firmware='efi'><type arch='x86_64' machine='q35'>hvm</type></os>
<features><acpi/></features>
<devices><emulator>/usr/bin/qemu-system-x86_64</emulator>
<disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='{disk}'/>
<target dev='vda' bus='virtio'/></disk>
<tpm model='tpm-crb'><backend type='emulator' version='2.0'/></tpm>
</devices></domain>"""


def sha256(path):
    with open(str(path), 'rb') as src:
        return hashlib.sha256(src.read()).hexdigest()


def live_state(dom):
    return _firmware.firmware_state(dom.XMLDesc(0), dom.UUIDString())


def remove(conn, name):
    """Undefine with the variable store (libvirt refuses otherwise), the TPM state (libvirt removes
    it with the domain) and checkpoint metadata."""
    try:
        dom = conn.get().lookupByName(name)
    except libvirt.libvirtError:
        return
    if dom.isActive():
        dom.destroy()
    dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_NVRAM | libvirt.VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA)


def wait_for_variables(path, timeout=90):
    """OVMF writes its variables (boot options) a while after the start under TCG."""
    template = sha256(TEMPLATE)
    deadline = time.time() + timeout
    while time.time() < deadline:
        if os.path.exists(path) and sha256(path) != template:
            return True
        time.sleep(1)
    return False


@pytest.fixture(scope='module')
def uefi(conn, workroot):
    """A running q35 UEFI domain with a TPM 2.0 and one small qcow2 disk, started once, so that its
    variable store and swtpm state exist."""
    if not (os.path.exists(CODE) and os.path.exists('/usr/bin/swtpm')):
        pytest.fail('OVMF or swtpm is missing: run scripts/setup-host.sh (it installs ovmf, swtpm, swtpm-tools)')
    place = workroot / 'uefi-tpm'
    place.mkdir(mode=0o755)
    disk = place / 'vda.qcow2'
    sh('qemu-img', 'create', '-q', '-f', 'qcow2', disk, '16M')
    sh('qemu-io', '-f', 'qcow2', '-c', 'write -P 0x3c 0 64k', disk)
    name = unique('ft-uefi-tpm')
    dom = conn.get().defineXML(XML.format(name=name, disk=disk))
    try:
        dom.create()
        state = live_state(dom)
        assert state['nvram'] and state['tpm'], state
        wait_for_variables(state['nvram'])
        yield dict(name=name, dom=dom, place=place, disk=disk, nvram=state['nvram'], tpm=state['tpm']['dir'])
    finally:
        remove(conn, name)


def test_real_state_captured_restored_and_installed(uefi, conn):
    """_firmware on its own, against libvirt's real files: the copies of a running domain, restored,
    and installed for a new domain that starts with them."""
    dom = uefi['dom']
    state = live_state(dom)
    # libvirt 9.0 puts the selected firmware in place of firmware='efi' in the live definition.
    assert state['loader'] == CODE
    assert state['nvram'] == '/var/lib/libvirt/qemu/nvram/%s_VARS.fd' % uefi['name']
    assert state['tpm'] == dict(version='2.0', dir='/var/lib/libvirt/swtpm/%s/tpm2' % dom.UUIDString())
    qemu_uid = pwd.getpwnam('libvirt-qemu').pw_uid
    st = os.stat(state['nvram'])
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (qemu_uid, 0o600)
    swtpm_uid, swtpm_gid = _firmware.swtpm_owner()
    st = os.stat(state['tpm']['dir'])
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (swtpm_uid, 0o700)
    assert stat.S_IMODE(os.stat(os.path.dirname(state['tpm']['dir'])).st_mode) == 0o711

    base = uefi['place'] / 'direct'
    base.mkdir(mode=0o711)
    backup_path = base / 'backup'
    backup_path.mkdir(mode=0o700)
    section = _firmware.capture(state, str(backup_path))
    _firmware.validate(section, 'manifest.json')
    assert section['nvram']['size'] == os.path.getsize(state['nvram'])
    assert [f['name'] for f in section['tpm']['files']] == ['tpm2-00.permall']
    permall = os.path.join(state['tpm']['dir'], 'tpm2-00.permall')
    assert section['tpm']['files'][0]['sha256'] == sha256(permall)

    dest = base / 'dest'
    dest.mkdir(mode=0o711)      # QEMU's user must reach the variable store in it
    backup = _repository.Backup(str(backup_path), dict(id='20261126T010000Z', firmware=section))
    fd = os.open(str(dest), os.O_RDONLY | os.O_DIRECTORY)
    try:
        done = _firmware.restore_files(backup, section, str(dest), fd)
    finally:
        os.close(fd)
    assert sha256(done['nvram']) == section['nvram']['sha256']
    assert sha256(dest / 'tpm' / 'tpm2-00.permall') == section['tpm']['files'][0]['sha256']

    copy = unique('ft-uefi-tpm-direct')
    text, _warnings = new_domain_xml(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE), copy, {}, 'qcow2',
                                     nvram_path=done['nvram'])
    new = conn.get().defineXML(text)
    try:
        target = _firmware.install_tpm_state(new.UUIDString(), done['tpm'], '2.0')
        assert target == '/var/lib/libvirt/swtpm/%s/tpm2' % new.UUIDString()
        installed = os.path.join(target, 'tpm2-00.permall')
        st = os.stat(installed)
        assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (swtpm_uid, swtpm_gid, 0o600)
        _started_with_restored_state(new, done['nvram'], installed, section, uefi['name'])
    finally:
        remove(conn, copy)
    assert not os.path.exists('/var/lib/libvirt/swtpm/%s' % new.UUIDString())


def _started_with_restored_state(dom, nvram, installed, section, original_name):
    root = etree.fromstring(dom.XMLDesc(0).encode())
    assert root.findtext('./os/nvram') == nvram
    assert sha256(installed) == section['tpm']['files'][0]['sha256']
    dom.create()
    try:
        assert dom.isActive() == 1      # swtpm took the state: QEMU starts only once the TPM answers
        time.sleep(3)
        # The TPM is the original's: its endorsement key certificate, which swtpm_setup made for
        # the original domain (named after it), is in the state swtpm now keeps.
        with open(installed, 'rb') as src:
            assert original_name.encode() in src.read()
    finally:
        dom.destroy()


def test_backups_keep_the_firmware_state_of_their_point_in_time(uefi, conn, cleanup):
    """virt_backup saves the variable store and TPM state with every backup; virt_restore brings
    each point back, and a domain defined from it uses them. Needs the engine to call _firmware."""
    name, dom = uefi['name'], uefi['dom']
    repo = uefi['place'] / 'repo'
    first = ok(ftlib.backup(name, repo))
    assert first['backup']['online'] is True
    m1 = read_manifest(first['backup']['path'])
    assert m1.get('firmware'), 'the backup engine saved no firmware state (see _firmware.capture)'
    fw1 = m1['firmware']
    assert fw1['nvram']['source'] == uefi['nvram'] and fw1['tpm']['version'] == '2.0'

    # Shut off, the variable store changes (as a guest's boot entry would): the next backup holds
    # the new store, the first one the old.
    dom.destroyFlags(libvirt.VIR_DOMAIN_DESTROY_GRACEFUL)
    with open(uefi['nvram'], 'r+b') as store:
        store.seek(os.path.getsize(uefi['nvram']) - 8192)
        store.write(b'\x5a' * 4096)
    second = ok(ftlib.backup(name, repo))
    assert second['backup']['online'] is False
    fw2 = read_manifest(second['backup']['path'])['firmware']
    assert fw2['nvram']['sha256'] == sha256(uefi['nvram']) != fw1['nvram']['sha256']
    permall = os.path.join(uefi['tpm'], 'tpm2-00.permall')
    assert fw2['tpm']['files'][0]['sha256'] == sha256(permall)

    for point, fw in ((first, fw1), (second, fw2)):
        dest = uefi['place'] / ('restored-%s' % point['backup']['id'])
        result = ok(ftlib.restore(name, repo, dest, backup=point['backup']['id']))
        assert result['nvram'] == str(dest / 'nvram.fd') and result['tpm'] == str(dest / 'tpm')
        assert sha256(dest / 'nvram.fd') == fw['nvram']['sha256']
        assert sorted(os.listdir(str(dest / 'tpm'))) == [f['name'] for f in fw['tpm']['files']]
        for f in fw['tpm']['files']:
            assert sha256(dest / 'tpm' / f['name']) == f['sha256']
    assert sha256(uefi['place'] / ('restored-%s' % second['backup']['id']) / 'nvram.fd') == sha256(uefi['nvram'])

    info = ok(ftlib.backup_info(repo, domain=name, verify=True))
    assert info['verified_ok'] is True
    backups = info['domains'][0]['chains'][0]['backups']
    assert [[f['ok'] for f in b['verify']['firmware']] for b in backups] == [[True, True], [True, True]]

    # A new domain from the second point: its variable store is the restored file, its TPM state
    # is installed for its own uuid, and it starts with both.
    copy = unique('ft-uefi-tpm-copy')
    cleanup.domain(copy)
    dest = uefi['place'] / 'restored-define'
    dest.mkdir(mode=0o711)
    args = dict(backup=second['backup']['id'], define=True, new_name=copy)
    predicted = ok(ftlib.restore(name, repo, dest, check_mode=True, **args))
    assert predicted['changed'] is True and predicted['nvram'] == str(dest / 'nvram.fd')
    assert os.listdir(str(dest)) == []
    result = ok(ftlib.restore(name, repo, dest, **args))
    new = conn.get().lookupByName(copy)
    try:
        assert result['domain']['uuid'] == new.UUIDString()
        installed = '/var/lib/libvirt/swtpm/%s/tpm2/tpm2-00.permall' % new.UUIDString()
        assert sha256(installed) == fw2['tpm']['files'][0]['sha256']
        again = ok(ftlib.restore(name, repo, dest, **args))
        assert again['changed'] is False and again['nvram'] == result['nvram']
        _started_with_restored_state(new, result['nvram'], installed, fw2, name)
    finally:
        remove(conn, copy)
