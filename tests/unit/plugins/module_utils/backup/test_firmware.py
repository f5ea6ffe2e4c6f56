# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""UEFI variable store and TPM state: what a domain has, the copies in a backup, the checks of the
manifest section (untrusted), and restoring them without ever writing garbage or following a link."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import json
import os
import socket
import stat
import uuid

import pytest

from lxml import etree

from ansible_collections.virtops.libvirt.plugins.module_utils._libvirt import VirtError
from ansible_collections.virtops.libvirt.plugins.module_utils.backup import _firmware as fw
from ansible_collections.virtops.libvirt.plugins.module_utils.backup import _repository as r
from ansible_collections.virtops.libvirt.plugins.module_utils.backup._saved_xml import new_domain_xml

UUID = '6695eb01-f6a4-8304-79aa-97f2502e193f'
CODE = '/usr/share/OVMF/OVMF_CODE_4M.ms.fd'


def xml(os_inner='', devices='', os_attrs="firmware='efi'", name='vm1'):
    return ("<domain type='qemu'><name>%s</name><uuid>%s</uuid><memory unit='MiB'>64</memory>"
            "<os %s><type arch='x86_64' machine='pc-q35-7.2'>hvm</type>%s</os><features><acpi/></features>"
            "<devices>%s</devices></domain>" % (name, UUID, os_attrs, os_inner, devices))


TPM2 = "<tpm model='tpm-crb'><backend type='emulator' version='2.0'/></tpm>"
# What libvirt 9.0 shows for a running domain with <os firmware='efi'> and a TPM 2.0.
LIVE = xml("<loader readonly='yes' secure='yes' type='pflash'>%s</loader>"
           "<nvram template='/usr/share/OVMF/OVMF_VARS_4M.ms.fd'>/var/lib/libvirt/qemu/nvram/vm1_VARS.fd</nvram>"
           % CODE, TPM2)


@pytest.fixture
def dirs(tmp_path, monkeypatch):
    """libvirt's NVRAM and swtpm directories, in a temporary place."""
    nvram_dir = tmp_path / 'nvram'
    swtpm_dir = tmp_path / 'swtpm'
    nvram_dir.mkdir()
    swtpm_dir.mkdir(mode=0o711)
    monkeypatch.setattr(fw, 'NVRAM_DIR', str(nvram_dir))
    monkeypatch.setattr(fw, 'SWTPM_DIR', str(swtpm_dir))
    return tmp_path


# -- firmware_state -------------------------------------------------------------------------------

def test_live_uefi_domain_with_tpm2():
    state = fw.firmware_state(LIVE, UUID)
    assert state['firmware'] == 'efi' and state['loader'] == CODE
    assert state['nvram'] == '/var/lib/libvirt/qemu/nvram/vm1_VARS.fd'
    assert state['tpm'] == dict(version='2.0', dir='/var/lib/libvirt/swtpm/%s/tpm2' % UUID)


def test_shut_off_autoselected_firmware_uses_libvirts_default_store(dirs):
    # libvirt 9.0 writes no <nvram> into the inactive definition with firmware='efi'.
    state = fw.firmware_state(xml("<loader secure='yes'/>"), UUID)
    assert state['loader'] is None and state['firmware'] == 'efi'
    assert state['nvram'] == str(dirs / 'nvram' / 'vm1_VARS.fd')
    assert state['tpm'] is None


def test_explicit_loader_and_nvram():
    state = fw.firmware_state(xml("<loader readonly='yes' type='pflash'>/usr/share/OVMF/OVMF_CODE_4M.fd</loader>"
                                  "<nvram>/srv/vars/vm1.fd</nvram>", os_attrs=''), UUID)
    expected = (None, '/usr/share/OVMF/OVMF_CODE_4M.fd', '/srv/vars/vm1.fd')
    assert (state['firmware'], state['loader'], state['nvram']) == expected
    state = fw.firmware_state(xml("<nvram type='file'><source file='/srv/vars/vm1.fd'/></nvram>"), UUID)
    assert state['nvram'] == '/srv/vars/vm1.fd' and state['nvram_type'] is None
    state = fw.firmware_state(xml("<nvram type='network'><source protocol='iscsi' name='x/1'/></nvram>"), UUID)
    assert state['nvram'] is None and state['nvram_type'] == 'network'
    with pytest.raises(fw.FirmwareError, match='type network'):
        fw.capture(state, '/nonexistent')


def test_stateless_and_bios_domains_have_no_store():
    state = fw.firmware_state(xml("<loader stateless='yes'>/usr/share/OVMF/OVMF.fd</loader>", os_attrs=''), UUID)
    assert state['nvram'] is None
    bios = fw.firmware_state(xml(os_attrs=''), UUID)
    assert (bios['firmware'], bios['loader'], bios['nvram'], bios['tpm']) == (None, None, None, None)
    assert fw.capture(bios, '/nonexistent') is None


def test_tpm_versions_and_backends(dirs):
    tpm12 = "<tpm model='tpm-tis'><backend type='emulator' version='1.2'/></tpm>"
    assert fw.firmware_state(xml(devices=tpm12), UUID)['tpm']['dir'].endswith('/%s/tpm1.2' % UUID)
    # Without a version, libvirt's own default: 1.2 for tpm-tis on x86, 2.0 otherwise.
    assert fw.firmware_state(xml(devices="<tpm model='tpm-tis'><backend type='emulator'/></tpm>"),
                             UUID)['tpm']['version'] == '1.2'
    assert fw.firmware_state(xml(devices="<tpm model='tpm-crb'><backend type='emulator'/></tpm>"),
                             UUID)['tpm']['version'] == '2.0'
    passthrough = "<tpm model='tpm-tis'><backend type='passthrough'><device path='/dev/tpm0'/></backend></tpm>"
    assert fw.firmware_state(xml(devices=passthrough), UUID)['tpm'] is None


# -- capture and restore ---------------------------------------------------------------------------

def make_sources(dirs, nvram=b'VARS' * 4096, permall=b'\x01permanent state' * 100):
    """A variable store and a swtpm state directory as libvirt and swtpm leave them."""
    store = dirs / 'nvram' / 'vm1_VARS.fd'
    store.write_bytes(nvram)
    tpm = dirs / 'swtpm' / UUID / 'tpm2'
    tpm.mkdir(parents=True, mode=0o700)
    (tpm / 'tpm2-00.permall').write_bytes(permall)
    (tpm / '.lock').write_bytes(b'')
    (tpm / 'tpm2-00.permall.tmp').write_bytes(b'half written')
    (tpm / 'tpm-00.permall').write_bytes(b'a TPM 1.2 file in a TPM 2 directory')
    (tpm / 'subdir').mkdir()
    cwd = os.getcwd()
    os.chdir(str(tpm))      # a temporary path is too long for a socket address
    try:
        sock = socket.socket(socket.AF_UNIX)
        sock.bind('swtpm-sock')
        sock.close()
    finally:
        os.chdir(cwd)
    return fw.firmware_state(LIVE.replace('/var/lib/libvirt/qemu/nvram/vm1_VARS.fd', str(store)), UUID)


def new_backup(dirs, name='backup'):
    path = dirs / name
    path.mkdir(mode=0o700)
    return path


def as_backup(path, section):
    return r.Backup(str(path), dict(id='20261126T010000Z', firmware=section))


def test_capture_copies_only_the_state_files(dirs):
    state = make_sources(dirs)
    path = new_backup(dirs)
    section = fw.capture(state, str(path))
    nvram = (dirs / 'nvram' / 'vm1_VARS.fd').read_bytes()
    permall = (dirs / 'swtpm' / UUID / 'tpm2' / 'tpm2-00.permall').read_bytes()
    assert section == dict(
        loader=CODE, firmware='efi',
        nvram=dict(file='nvram.fd', size=len(nvram), sha256=hashlib.sha256(nvram).hexdigest(),
                   source=str(dirs / 'nvram' / 'vm1_VARS.fd')),
        tpm=dict(version='2.0', dir='tpm', files=[dict(name='tpm2-00.permall', size=len(permall),
                                                       sha256=hashlib.sha256(permall).hexdigest())]))
    assert sorted(os.listdir(str(path))) == ['nvram.fd', 'tpm']
    assert os.listdir(str(path / 'tpm')) == ['tpm2-00.permall']
    assert stat.S_IMODE(os.stat(str(path / 'tpm')).st_mode) == 0o700
    for f in (path / 'nvram.fd', path / 'tpm' / 'tpm2-00.permall'):
        assert stat.S_IMODE(os.stat(str(f)).st_mode) == 0o600
    assert (path / 'nvram.fd').read_bytes() == nvram
    fw.validate(json.loads(json.dumps(section)), 'manifest.json')


def test_capture_before_the_first_start_saves_what_exists(dirs):
    # Never started: no store yet, no swtpm state yet.
    section = fw.capture(fw.firmware_state(xml(devices=TPM2), UUID), str(new_backup(dirs)))
    assert section == dict(loader=None, firmware='efi', nvram=None, tpm=None)


def test_capture_refuses_links_and_leaves_nothing(dirs):
    state = make_sources(dirs)
    permall = dirs / 'swtpm' / UUID / 'tpm2' / 'tpm2-00.permall'
    permall.unlink()
    permall.symlink_to('/etc/shadow')
    path = new_backup(dirs)
    with pytest.raises(fw.FirmwareError, match='symbolic link'):
        fw.capture(state, str(path))
    assert os.listdir(str(path)) == []
    store = dirs / 'nvram' / 'vm1_VARS.fd'
    store.unlink()
    store.symlink_to('/etc/shadow')
    with pytest.raises(fw.FirmwareError, match='symbolic link'):
        fw.capture(state, str(path))
    assert os.listdir(str(path)) == []


def test_capture_refuses_a_fifo_without_blocking(dirs):
    state = make_sources(dirs)
    store = dirs / 'nvram' / 'vm1_VARS.fd'
    store.unlink()
    os.mkfifo(str(store))
    with pytest.raises(fw.FirmwareError, match='not a regular file'):
        fw.capture(state, str(new_backup(dirs)))


@pytest.fixture
def saved(dirs):
    """(backup, section, dest, dest_fd): a captured backup and an empty private dest."""
    state = make_sources(dirs)
    path = new_backup(dirs)
    section = fw.capture(state, str(path))
    dest = dirs / 'dest'
    dest.mkdir(mode=0o700)
    fd = os.open(str(dest), os.O_RDONLY | os.O_DIRECTORY)
    yield as_backup(path, section), section, dest, fd
    os.close(fd)


def test_restore_round_trip_and_second_run(saved, dirs):
    backup, section, dest, fd = saved
    done = fw.restore_files(backup, section, str(dest), fd)
    assert done['nvram'] == str(dest / 'nvram.fd') and done['tpm'] == str(dest / 'tpm')
    assert sorted(done['written']) == ['nvram.fd', os.path.join('tpm', 'tpm2-00.permall')]
    assert (dest / 'nvram.fd').read_bytes() == (dirs / 'nvram' / 'vm1_VARS.fd').read_bytes()
    assert (dest / 'tpm' / 'tpm2-00.permall').read_bytes() == \
        (dirs / 'swtpm' / UUID / 'tpm2' / 'tpm2-00.permall').read_bytes()
    assert sorted(os.listdir(str(dest))) == ['nvram.fd', 'tpm']
    assert stat.S_IMODE(os.stat(str(dest / 'nvram.fd')).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(str(dest / 'tpm')).st_mode) == 0o700
    stamp = os.stat(str(dest / 'nvram.fd')).st_mtime_ns
    again = fw.restore_files(backup, section, str(dest), fd)
    assert again['written'] == [] and again['nvram'] == done['nvram']
    assert fw.plan_restore(backup, section, str(dest))['todo'] == []
    assert os.stat(str(dest / 'nvram.fd')).st_mtime_ns == stamp


def test_a_different_file_needs_force(saved):
    backup, section, dest, fd = saved
    fw.restore_files(backup, section, str(dest), fd)
    (dest / 'nvram.fd').write_bytes(b'the guest changed a variable')
    with pytest.raises(fw.FirmwareError, match='force'):
        fw.restore_files(backup, section, str(dest), fd)
    assert (dest / 'nvram.fd').read_bytes() == b'the guest changed a variable'
    assert fw.restore_files(backup, section, str(dest), fd, force=True)['written'] == ['nvram.fd']
    assert (dest / 'nvram.fd').read_bytes() == (r.read_small(backup.path, ['nvram.fd']))
    # A state file the backup does not have would be loaded by swtpm with the others.
    (dest / 'tpm' / 'tpm2-00.volatilestate').write_bytes(b'other')
    with pytest.raises(fw.FirmwareError, match='does not have'):
        fw.restore_files(backup, section, str(dest), fd)
    fw.restore_files(backup, section, str(dest), fd, force=True)
    assert os.listdir(str(dest / 'tpm')) == ['tpm2-00.permall']


def test_a_tampered_repository_copy_is_refused_with_nothing_written(saved):
    backup, section, dest, fd = saved
    victim = os.path.join(backup.path, 'tpm', 'tpm2-00.permall')
    data = bytearray(open(victim, 'rb').read())
    data[5] ^= 0xff
    with open(victim, 'wb') as out:
        out.write(data)
    with pytest.raises(fw.FirmwareError, match='does not match its manifest'):
        fw.restore_files(backup, section, str(dest), fd)
    assert os.listdir(str(dest)) == []
    checks = fw.verify(backup, section)
    assert [c['ok'] for c in checks] == [True, False]
    assert 'does not match' in checks[1]['message']


def test_a_copy_that_changes_while_it_is_read_is_removed(saved, monkeypatch):
    # The repository file changes after the check and before the copy: the copy's own check
    # refuses it, and nothing (no partial file, no tpm directory) is left.
    backup, section, dest, fd = saved
    check = fw._check_copy
    calls = []

    def check_then_change(src, entry, label):
        check(src, entry, label)
        calls.append(label)
        if label.endswith('tpm2-00.permall'):
            with open(label, 'r+b') as out:
                out.write(b'X')
    monkeypatch.setattr(fw, '_check_copy', check_then_change)
    with pytest.raises(fw.FirmwareError, match='does not match backup'):
        fw.restore_files(backup, section, str(dest), fd)
    assert os.listdir(str(dest)) == []


def test_links_in_dest_are_refused(saved, dirs):
    backup, section, dest, fd = saved
    outside = dirs / 'outside'
    outside.write_bytes(b'keep')
    (dest / 'nvram.fd').symlink_to(outside)
    with pytest.raises(fw.FirmwareError, match='symbolic link'):
        fw.restore_files(backup, section, str(dest), fd, force=True)
    assert outside.read_bytes() == b'keep'
    (dest / 'nvram.fd').unlink()
    (dest / 'tpm').symlink_to(dirs)
    with pytest.raises(fw.FirmwareError, match='symbolic link'):
        fw.restore_files(backup, section, str(dest), fd, force=True)
    assert sorted(os.listdir(str(dest))) == ['tpm']


def test_links_in_the_repository_are_refused(saved, dirs):
    backup, section, dest, fd = saved
    os.unlink(os.path.join(backup.path, 'nvram.fd'))
    os.symlink(str(dirs / 'nvram' / 'vm1_VARS.fd'), os.path.join(backup.path, 'nvram.fd'))
    with pytest.raises(fw.FirmwareError, match='symbolic link'):
        fw.restore_files(backup, section, str(dest), fd)
    assert os.listdir(str(dest)) == []


def test_undo_removes_what_was_written(saved):
    backup, section, dest, fd = saved
    done = fw.restore_files(backup, section, str(dest), fd)
    fw.undo(fd, done)
    assert os.listdir(str(dest)) == []


# -- the manifest section -----------------------------------------------------------------------

GOOD = dict(loader=CODE, firmware='efi',
            nvram=dict(file='nvram.fd', size=540672, sha256='ab' * 32, source='/var/lib/libvirt/qemu/nvram/x.fd'),
            tpm=dict(version='2.0', dir='tpm', files=[dict(name='tpm2-00.permall', size=9000, sha256='cd' * 32)]))


def bad(path, value):
    section = json.loads(json.dumps(GOOD))
    *parents, last = path
    target = section
    for key in parents:
        target = target[key]
    target[last] = value
    return section


@pytest.mark.parametrize('path, value, field', [
    (('nvram', 'file'), '/etc/shadow', 'firmware.nvram.file'),
    (('nvram', 'file'), '../nvram.fd', 'firmware.nvram.file'),
    (('nvram', 'size'), 1 << 40, 'firmware.nvram.size'),
    (('nvram', 'size'), -1, 'firmware.nvram.size'),
    (('nvram', 'size'), True, 'firmware.nvram.size'),
    (('nvram', 'sha256'), 'zz' * 32, 'firmware.nvram.sha256'),
    (('nvram',), 'nvram.fd', 'firmware.nvram'),
    (('tpm', 'dir'), '../../etc', 'firmware.tpm.dir'),
    (('tpm', 'dir'), '/var/lib/libvirt/swtpm', 'firmware.tpm.dir'),
    (('tpm', 'version'), '3.0', 'firmware.tpm.version'),
    (('tpm', 'files'), [], 'firmware.tpm.files'),
    (('tpm', 'files', 0, 'name'), '../../../etc/shadow', 'firmware.tpm.files[0].name'),
    (('tpm', 'files', 0, 'name'), 'tpm2-00.permall/../x', 'firmware.tpm.files[0].name'),
    (('tpm', 'files', 0, 'name'), 'tpm-00.permall', 'firmware.tpm.files[0].name'),     # a TPM 1.2 file
    (('tpm', 'files', 0, 'name'), '.lock', 'firmware.tpm.files[0].name'),
    (('tpm', 'files', 0, 'size'), 65 * 1024 * 1024, 'firmware.tpm.files[0].size'),
    (('tpm', 'files', 0, 'sha256'), 'CD' * 32, 'firmware.tpm.files[0].sha256'),
    (('loader',), 7, 'firmware.loader'),
    (('firmware',), 'coreboot', 'firmware.firmware'),
])
def test_validate_refuses(path, value, field):
    with pytest.raises(r.RepositoryError) as err:
        fw.validate(bad(path, value), '/repo/vm1/c/b/manifest.json')
    assert str(err.value).startswith('manifest /repo/vm1/c/b/manifest.json: field %s is ' % field)


def test_validate_refuses_duplicates_and_accepts_the_good_section():
    fw.validate(GOOD, 'm')
    section = json.loads(json.dumps(GOOD))
    section['tpm']['files'].append(dict(section['tpm']['files'][0]))
    with pytest.raises(r.RepositoryError, match=r'firmware.tpm.files\[1\].name'):
        fw.validate(section, 'm')
    fw.validate(dict(GOOD, nvram=None, tpm=None), 'm')


def test_manifest_with_a_bad_firmware_section_is_not_a_backup(tmp_path):
    repo = r.Repository(str(tmp_path / 'repo'), create=True)
    path = repo.backup_dir('vm1', '20261126T010000Z', '20261126T010000Z')
    manifest = dict(format=r.MANIFEST_FORMAT, format_version=1, complete=True,
                    id='20261126T010000Z', chain='20261126T010000Z', domain='vm1', level='full', mode='pull',
                    parent=None, started='2026-11-26T01:00:00.000000Z',
                    disks=[dict(name='vda', virtual_size=1 << 26, image='vda.qcow2', backing=None,
                                integrity=dict(algorithm='sha256', block_size=65536, map='vda.blockhash.gz'),
                                image_digest='ab' * 32)],
                    firmware=bad(('nvram', 'file'), '../../../../etc/shadow'))
    repo.commit(path, manifest)
    errors = []
    assert repo.backups('vm1', errors) == []
    assert 'field firmware.nvram.file' in errors[0]
    manifest['firmware'] = GOOD
    repo.commit(path, manifest)
    [backup] = repo.backups('vm1')
    assert backup.summary()['firmware'] == dict(loader=CODE, nvram=os.path.join(path, 'nvram.fd'),
                                                tpm=os.path.join(path, 'tpm'), tpm_version='2.0')


# -- a new domain -------------------------------------------------------------------------------

def test_install_tpm_state_for_a_new_uuid(saved, dirs):
    backup, section, dest, fd = saved
    fw.restore_files(backup, section, str(dest), fd)
    new_uuid = str(uuid.uuid4())
    owner = (os.getuid(), os.getgid())
    target = fw.install_tpm_state(new_uuid, str(dest / 'tpm'), '2.0', owner=owner)
    assert target == os.path.join(fw.SWTPM_DIR, new_uuid, 'tpm2')
    assert os.listdir(target) == ['tpm2-00.permall']
    assert open(os.path.join(target, 'tpm2-00.permall'), 'rb').read() == \
        (dest / 'tpm' / 'tpm2-00.permall').read_bytes()
    assert stat.S_IMODE(os.stat(os.path.dirname(target)).st_mode) == 0o711
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(os.path.join(target, 'tpm2-00.permall')).st_mode) == 0o600
    # State that is there already is never replaced.
    with pytest.raises(fw.FirmwareError, match='already holds TPM state'):
        fw.install_tpm_state(new_uuid, str(dest / 'tpm'), '2.0', owner=owner)
    assert os.listdir(target) == ['tpm2-00.permall']
    with pytest.raises(fw.FirmwareError, match='not a domain uuid'):
        fw.install_tpm_state('../../etc', str(dest / 'tpm'), '2.0', owner=owner)
    with pytest.raises(fw.FirmwareError, match='no state file of a TPM 1.2'):
        fw.install_tpm_state(str(uuid.uuid4()), str(dest / 'tpm'), '1.2', owner=owner)
    fw.remove_tpm_state(new_uuid)
    assert not os.path.exists(os.path.dirname(target))


def test_swtpm_owner_follows_qemu_conf(tmp_path):
    conf = tmp_path / 'qemu.conf'
    conf.write_text('#swtpm_user = "tss"\nswtpm_user = "root"\nswtpm_group = "+0"\n')
    assert fw.swtpm_owner(str(conf)) == (0, 0)


def test_new_domain_uses_the_restored_variable_store(conn):
    saved_xml = LIVE
    text, _warnings = new_domain_xml(saved_xml, 'it-fw-%s' % uuid.uuid4().hex[:8], {}, 'qcow2',
                                     nvram_path='/srv/restore/vm1/nvram.fd')
    nvram = etree.fromstring(text.encode()).find('./os/nvram')
    assert nvram.text == '/srv/restore/vm1/nvram.fd' and nvram.get('template') is None
    # A shut-off domain's definition has no <nvram>: one is added.
    text, _warnings = new_domain_xml(xml("<loader secure='yes'/>"), 'x', {}, 'qcow2',
                                     nvram_path='/srv/restore/vm1/nvram.fd')
    root = etree.fromstring(text.encode())
    assert root.findtext('./os/nvram') == '/srv/restore/vm1/nvram.fd'
    assert root.find('./os/loader').getnext().tag == 'nvram'
    # Without it, as before: libvirt makes a store of its own from the template.
    text, _warnings = new_domain_xml(saved_xml, 'x', {}, 'qcow2')
    nvram = etree.fromstring(text.encode()).find('./os/nvram')
    assert not nvram.text and nvram.get('template') == '/usr/share/OVMF/OVMF_VARS_4M.ms.fd'
    with pytest.raises(VirtError, match='absolute'):
        new_domain_xml(saved_xml, 'x', {}, 'qcow2', nvram_path='restore/nvram.fd')
    # What libvirt accepts: the inactive definition of an autoselected UEFI domain, with the path.
    inactive = xml("<loader secure='yes'/>", TPM2).replace("type='qemu'", "type='test'", 1)
    text, _warnings = new_domain_xml(inactive, 'it-fw-%s' % uuid.uuid4().hex[:8], {}, 'qcow2',
                                     nvram_path='/srv/restore/vm1/nvram.fd')
    dom = conn.conn.defineXML(text)
    try:
        assert etree.fromstring(dom.XMLDesc(0).encode()).findtext('./os/nvram') == '/srv/restore/vm1/nvram.fd'
    finally:
        dom.undefineFlags(0)
