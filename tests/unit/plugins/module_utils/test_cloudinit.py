# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests of the cloud-init seed engine (virt_cloud_init_seed): real images built with
pycdlib in a temporary directory, read back with pycdlib and, where available, blkid."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import shutil
import stat
import subprocess

import pytest

pycdlib = pytest.importorskip('pycdlib')
yaml = pytest.importorskip('yaml')

from ansible_collections.virtops.libvirt.plugins.module_utils import _cloudinit  # noqa: E402
from ansible_collections.virtops.libvirt.plugins.module_utils._libvirt import VirtError  # noqa: E402


def params(path, **kwargs):
    p = dict((k, None) for k in _cloudinit.SEED_ARGS)
    p.update(path=str(path), state='present', diff_user_data=False, force=False)
    p.update(kwargs)
    return p


def run(path, check_mode=False, diff_mode=True, **kwargs):
    return _cloudinit.SeedManager(None, params(path, **kwargs), check_mode=check_mode,
                                  diff_mode=diff_mode).run()


USER_DATA = {'users': [{'name': 'ops', 'passwd': '$6$secret-hash'}], 'packages': ['htop']}


# --- rendering -------------------------------------------------------------------------------

def test_user_data_dict_is_cloud_config_yaml():
    text = _cloudinit.render_user_data(USER_DATA).decode()
    assert text.startswith('#cloud-config\n')
    assert yaml.safe_load(text) == USER_DATA


def test_user_data_string_is_kept_as_is():
    script = '#!/bin/sh\necho hi\n'
    assert _cloudinit.render_user_data(script) == script.encode()
    assert _cloudinit.render_user_data(None) == b'#cloud-config\n'


def test_user_data_of_another_type_fails():
    with pytest.raises(VirtError, match='string or a dictionary'):
        _cloudinit.render_user_data(['a'])


def test_meta_data_defaults_from_hostname_and_instance_id():
    meta = yaml.safe_load(_cloudinit.render_meta_data(None, hostname='web1'))
    assert meta == {'instance-id': 'web1', 'local-hostname': 'web1'}
    meta = yaml.safe_load(_cloudinit.render_meta_data({'local-hostname': 'x'}, hostname='web1',
                                                      instance_id='i-1'))
    assert meta == {'instance-id': 'i-1', 'local-hostname': 'x'}


def test_meta_data_needs_an_instance_id():
    with pytest.raises(VirtError, match='instance-id'):
        _cloudinit.render_meta_data({'local-hostname': 'x'})


def test_meta_data_string_with_hostname_fails():
    with pytest.raises(VirtError, match='string'):
        _cloudinit.render_meta_data('instance-id: a\n', hostname='b')


@pytest.mark.parametrize('config', [
    {'version': 2, 'ethernets': {'eth0': {'dhcp4': True}}},
    {'network': {'version': 1, 'config': [{'type': 'physical', 'name': 'eth0'}]}},
])
def test_network_config_versions(config):
    assert yaml.safe_load(_cloudinit.render_network_config(config)) == config


def test_network_config_without_version_fails():
    with pytest.raises(VirtError, match='version 1 or 2'):
        _cloudinit.render_network_config({'ethernets': {}})


# --- the image -------------------------------------------------------------------------------

def test_build_then_read_back():
    files = {'user-data': b'#cloud-config\n', 'meta-data': b'instance-id: a\n',
             'network-config': b'version: 2\n', 'vendor-data': b'#cloud-config\n{}\n'}
    label, read = _cloudinit.read_iso(_cloudinit.build_iso(files))
    assert label == 'cidata'
    assert read == files


def test_read_iso_rejects_other_data():
    with pytest.raises(ValueError):
        _cloudinit.read_iso(b'\0' * 65536)


def test_create_then_unchanged(tmp_path):
    seed = tmp_path / 'seed.iso'
    first = run(seed, hostname='web1', user_data=USER_DATA)
    assert first['changed'] is True
    assert first['actions'] == ['create']
    assert first['files'] == ['meta-data', 'user-data']
    assert first['instance_id'] == 'web1'
    assert stat.S_IMODE(os.stat(str(seed)).st_mode) == 0o644

    label, files = _cloudinit.read_seed_file(str(seed))
    assert label == 'cidata'
    assert yaml.safe_load(files['user-data']) == USER_DATA
    assert files['user-data'].startswith(b'#cloud-config\n')
    assert yaml.safe_load(files['meta-data']) == {'instance-id': 'web1', 'local-hostname': 'web1'}

    mtime = os.stat(str(seed)).st_mtime_ns
    second = run(seed, hostname='web1', user_data=USER_DATA)
    assert second['changed'] is False
    assert second['actions'] == []
    assert 'diff' not in second
    assert os.stat(str(seed)).st_mtime_ns == mtime


@pytest.mark.skipif(not shutil.which('blkid'), reason='blkid not installed')
def test_blkid_sees_the_label(tmp_path):
    seed = tmp_path / 'seed.iso'
    run(seed, hostname='web1')
    out = subprocess.check_output(['blkid', '-o', 'export', str(seed)]).decode()
    assert 'LABEL=cidata' in out.split()
    assert 'TYPE=iso9660' in out.split()


def test_changed_user_data_rebuilds_and_hides_secrets(tmp_path):
    seed = tmp_path / 'seed.iso'
    run(seed, hostname='web1', user_data=USER_DATA)
    os.chmod(str(seed), 0o600)
    new = dict(USER_DATA, packages=['vim'])
    res = run(seed, hostname='web1', user_data=new)
    assert res['changed'] is True
    assert res['actions'] == ['rebuild']
    assert res['changed_files'] == ['user-data']
    assert 'secret-hash' not in res['diff']['before'] + res['diff']['after']
    assert 'hidden' in res['diff']['after']
    assert res['diff']['before'] != res['diff']['after']
    assert yaml.safe_load(_cloudinit.read_seed_file(str(seed))[1]['user-data']) == new
    # a replaced file keeps its mode
    assert stat.S_IMODE(os.stat(str(seed)).st_mode) == 0o600


def test_diff_user_data_shows_the_text(tmp_path):
    seed = tmp_path / 'seed.iso'
    res = run(seed, hostname='web1', user_data=USER_DATA, diff_user_data=True)
    assert res['diff']['before'] == ''
    assert 'secret-hash' in res['diff']['after']
    assert '# label: cidata' in res['diff']['after']


def test_meta_data_change_is_shown(tmp_path):
    seed = tmp_path / 'seed.iso'
    run(seed, hostname='web1')
    res = run(seed, hostname='web1', instance_id='web1-v2')
    assert res['changed_files'] == ['meta-data']
    assert 'instance-id: web1-v2' in res['diff']['after']
    assert 'instance-id: web1\n' in res['diff']['before']


def test_removed_network_config_is_a_change(tmp_path):
    seed = tmp_path / 'seed.iso'
    run(seed, hostname='web1', network_config={'version': 2, 'ethernets': {}})
    res = run(seed, hostname='web1')
    assert res['changed'] is True
    assert res['changed_files'] == ['network-config']
    assert 'network-config' not in _cloudinit.read_seed_file(str(seed))[1]


def test_check_mode_predicts_and_writes_nothing(tmp_path):
    seed = tmp_path / 'seed.iso'
    res = run(seed, check_mode=True, hostname='web1')
    assert res['changed'] is True and res['actions'] == ['create']
    assert not seed.exists()
    run(seed, hostname='web1')
    before = seed.read_bytes()
    res = run(seed, check_mode=True, hostname='web2')
    assert res['changed'] is True and res['changed_files'] == ['meta-data']
    assert seed.read_bytes() == before
    assert run(seed, check_mode=True, hostname='web1')['changed'] is False


def test_other_file_is_not_replaced_without_force(tmp_path):
    other = tmp_path / 'notes.txt'
    other.write_bytes(b'keep me')
    with pytest.raises(VirtError, match='not an ISO 9660 image'):
        run(other, hostname='web1')
    with pytest.raises(VirtError, match='not an ISO 9660 image'):
        run(other, state='absent')
    assert other.read_bytes() == b'keep me'
    assert run(other, hostname='web1', force=True)['changed'] is True
    assert _cloudinit.read_seed_file(str(other))[0] == 'cidata'


def test_iso_with_another_label_is_not_replaced(tmp_path):
    iso = pycdlib.PyCdlib()
    iso.new(vol_ident='OTHER')
    path = tmp_path / 'other.iso'
    iso.write(str(path))
    iso.close()
    with pytest.raises(VirtError, match="labelled 'OTHER'"):
        run(path, hostname='web1')


def test_bad_input_changes_nothing(tmp_path):
    seed = tmp_path / 'seed.iso'
    with pytest.raises(VirtError, match='instance-id'):
        run(seed, user_data=USER_DATA)
    assert not seed.exists()
    with pytest.raises(VirtError, match='directory of path'):
        run(tmp_path / 'missing' / 'seed.iso', hostname='a')
    with pytest.raises(VirtError, match='absolute'):
        run('seed.iso', hostname='a')


def test_absent(tmp_path):
    seed = tmp_path / 'seed.iso'
    run(seed, hostname='web1')
    res = run(seed, check_mode=True, state='absent')
    assert res['changed'] is True and seed.exists()
    res = run(seed, state='absent')
    assert res['changed'] is True and res['actions'] == ['remove']
    assert not seed.exists()
    assert run(seed, state='absent')['changed'] is False
    assert not list(tmp_path.iterdir())
