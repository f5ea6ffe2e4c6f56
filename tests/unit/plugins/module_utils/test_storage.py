# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests of virt_pool, virt_volume and their _info modules against libvirt's
test:///default driver (no mocks of libvirt). The test driver has no resize, wipe, upload or
download of volumes: those are covered by the integration targets on qemu:///system."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import itertools

import pytest

libvirt = pytest.importorskip('libvirt')
pytest.importorskip('lxml')

from ansible_collections.virtops.libvirt.plugins.module_utils import _pool, _volume  # noqa: E402
from ansible_collections.virtops.libvirt.plugins.module_utils._libvirt import VirtError  # noqa: E402

URI = 'test:///default'
_counter = itertools.count()

POOL_XML = """
<pool type='dir'>
  <name>{name}</name>
  <target>
    <path>{path}</path>
  </target>
</pool>
"""


@pytest.fixture
def name(conn):
    """A fresh pool name; whatever the test left behind is removed."""
    value = 'ut-pool-%d' % next(_counter)
    yield value
    pool = _pool.lookup_pool(conn, value)
    if pool is not None:
        if pool.isActive():
            for vol in pool.listAllVolumes(0):
                vol.delete(0)
            pool.destroy()
        if pool.isPersistent():
            pool.undefine()


def pool_xml(name, path=None):
    return POOL_XML.format(name=name, path=path or '/%s' % name)


def pool_params(**kwargs):
    p = dict(name=None, xml=None, state='present', autostart=None, build=False, refresh=False,
             restart_on_change=False)
    p.update(kwargs)
    return p


class Recorder:
    def __init__(self):
        self.warnings = []

    def __call__(self, msg):
        self.warnings.append(msg)


def run_pool(conn, check_mode=False, diff_mode=True, **kwargs):
    warn = Recorder()
    result = _pool.PoolManager(conn, pool_params(**kwargs), check_mode=check_mode,
                               diff_mode=diff_mode, warn=warn).run()
    result['warnings'] = warn.warnings
    return result


def four_times(func, conn, **kwargs):
    """check mode, real run, check mode again, real run again (community.crypto style)."""
    return [func(conn, check_mode=c, **kwargs) for c in (True, False, True, False)]


# ------------------------------------------------------------------ sizes

@pytest.mark.parametrize('text,size', [
    ('1048576', 1048576), ('1M', 1048576), ('1 MiB', 1048576), ('1G', 1024 ** 3),
    ('1GB', 1000 ** 3), ('2k', 2048), ('10T', 10 * 1024 ** 4),
])
def test_parse_size(text, size):
    assert _volume.parse_size(text) == size


@pytest.mark.parametrize('text', ['', 'big', '1.5G', '1Q', '-1'])
def test_parse_size_rejects(text):
    with pytest.raises(VirtError, match='capacity'):
        _volume.parse_size(text)


# ------------------------------------------------------------------ pools

def test_pool_define_build_start_autostart_four_times(conn, name):
    check, real, check2, real2 = four_times(run_pool, conn, xml=pool_xml(name), state='active',
                                            autostart=True, build=True)
    assert check['changed'] and check['actions'] == ['define', 'build', 'start', 'autostart']
    assert check['pool'] == {}
    assert check['diff']['before'] == '# state: absent\n# autostart: no\n'
    assert check['diff']['after'].startswith('# state: active\n# autostart: yes\n<pool type="dir">')
    assert real['changed'] and real['actions'] == check['actions']
    facts = real['pool']
    assert facts['name'] == name and facts['state'] == 'active' and facts['autostart'] is True
    assert facts['persistent'] is True and facts['type'] == 'dir'
    assert facts['capacity'] > 0 and facts['available'] > 0 and facts['volumes'] == 0
    assert facts['path'] == '/%s' % name
    assert not check2['changed'] and check2['actions'] == []
    assert check2['diff']['before'] == check2['diff']['after']
    assert not real2['changed'] and real2['actions'] == []
    assert real2['pool']['uuid'] == facts['uuid']
    assert real['warnings'] == [] and real['restart_required'] is False


def test_pool_check_mode_changes_nothing(conn, name):
    run_pool(conn, check_mode=True, xml=pool_xml(name), state='active', autostart=True)
    assert _pool.lookup_pool(conn, name) is None


def test_pool_present_defines_without_starting(conn, name):
    result = run_pool(conn, xml=pool_xml(name))
    assert result['actions'] == ['define'] and result['pool']['state'] == 'inactive'
    assert result['pool']['volumes'] is None
    assert not run_pool(conn, xml=pool_xml(name))['changed']


def test_pool_states(conn, name):
    run_pool(conn, xml=pool_xml(name))
    steps = [('active', ['start'], 'active'), ('inactive', ['stop'], 'inactive'),
             ('active', ['start'], 'active'), ('present', [], 'active')]
    for state, actions, after in steps:
        results = four_times(run_pool, conn, name=name, state=state)
        assert [r['changed'] for r in results] == [bool(actions), bool(actions), False, False]
        assert results[0]['actions'] == actions and results[1]['actions'] == actions
        assert results[1]['pool']['state'] == after
        assert _pool.pool_state(_pool.get_pool(conn, name)) == after


def test_pool_intent_compare_ignores_what_libvirt_fills_in(conn, name):
    first = run_pool(conn, xml=pool_xml(name), state='active')
    # libvirt's own dump (uuid, capacity, empty source, ...) is the same intent
    assert not run_pool(conn, xml=first['pool']['xml'], state='active')['changed']
    # the same XML written differently
    text = ("<pool type='dir'><name>%s</name><target><path>/%s</path></target></pool>"
            % (name, name))
    assert not run_pool(conn, xml=text)['changed']


def test_pool_update_of_an_active_pool_is_planned_with_a_restart(conn, name):
    # The test driver does not keep a pending definition for an active pool (qemu:///system
    # does: the integration target checks restart_required and the restart itself).
    run_pool(conn, xml=pool_xml(name), state='active')
    new = pool_xml(name, path='/%s-new' % name)
    check = run_pool(conn, check_mode=True, xml=new, state='active')
    assert check['changed'] and check['actions'] == ['define'] and check['restart_required']
    assert '<path>/%s</path>' % name in check['diff']['before']
    assert '<path>/%s-new</path>' % name in check['diff']['after']
    restart = run_pool(conn, check_mode=True, xml=new, state='active', restart_on_change=True)
    assert restart['actions'] == ['define', 'stop', 'start']
    assert not restart['restart_required']
    stop = run_pool(conn, check_mode=True, xml=new, state='inactive')
    assert stop['actions'] == ['define', 'stop'] and not stop['restart_required']
    assert _pool.get_pool(conn, name).isActive()


def test_pool_update_of_an_inactive_pool(conn, name):
    run_pool(conn, xml=pool_xml(name))
    result = run_pool(conn, xml=pool_xml(name, path='/elsewhere'))
    assert result['changed'] and result['actions'] == ['define']
    assert not result['restart_required'] and result['pool']['path'] == '/elsewhere'


def test_pool_autostart_alone(conn, name):
    run_pool(conn, xml=pool_xml(name))
    results = four_times(run_pool, conn, name=name, autostart=True)
    assert [r['changed'] for r in results] == [True, True, False, False]
    assert results[1]['actions'] == ['autostart'] and results[1]['pool']['autostart'] is True
    off = run_pool(conn, name=name, autostart=False)
    assert off['actions'] == ['no autostart'] and off['pool']['autostart'] is False


def test_pool_refresh_is_not_a_change(conn, name):
    run_pool(conn, xml=pool_xml(name), state='active')
    result = run_pool(conn, name=name, state='active', refresh=True)
    assert not result['changed'] and result['refreshed'] is True
    assert run_pool(conn, check_mode=True, name=name, state='active',
                    refresh=True)['refreshed'] is False


def test_pool_absent_four_times(conn, name):
    run_pool(conn, xml=pool_xml(name), state='active', autostart=True)
    check, real, check2, real2 = four_times(run_pool, conn, name=name, state='absent')
    assert check['changed'] and check['actions'] == ['stop', 'undefine']
    assert check['diff']['before'].startswith('# state: active\n# autostart: yes\n<pool')
    assert check['diff']['after'] == '# state: absent\n'
    assert real['changed'] and real['pool'] == {}
    assert not check2['changed'] and not real2['changed']
    assert _pool.lookup_pool(conn, name) is None


def test_pool_deleted(conn, name):
    run_pool(conn, xml=pool_xml(name), state='active')
    results = four_times(run_pool, conn, name=name, state='deleted')
    assert [r['changed'] for r in results] == [True, True, False, False]
    assert results[1]['actions'] == ['stop', 'delete storage', 'undefine']
    assert _pool.lookup_pool(conn, name) is None


def test_pool_deleted_refuses_a_pool_with_volumes(conn, name):
    run_pool(conn, xml=pool_xml(name), state='active')
    run_volume(conn, pool=name, name='a.img', capacity='1M')
    with pytest.raises(VirtError, match='still has 1 volume'):
        run_pool(conn, name=name, state='deleted')
    assert _pool.pool_state(_pool.get_pool(conn, name)) == 'active'


def test_pool_transient_becomes_persistent(conn, name):
    conn.conn.storagePoolCreateXML(pool_xml(name), 0)
    result = run_pool(conn, name=name, state='active')
    assert result['changed'] and result['actions'] == ['define']
    assert result['pool']['persistent'] is True
    assert not run_pool(conn, name=name, state='active')['changed']


@pytest.mark.parametrize('kwargs,match', [
    (dict(xml='<pool type="dir"><name>x</name>'), 'not well-formed'),
    (dict(xml='<network><name>x</name></network>'), 'expected <pool>'),
    (dict(xml='<pool><name>x</name></pool>'), 'no type'),
    (dict(name='a', xml='<pool type="dir"><name>b</name></pool>'), 'differs from the XML'),
    (dict(name='ut-pool-missing', state='active'), 'does not exist'),
])
def test_pool_bad_input(conn, kwargs, match):
    with pytest.raises(VirtError, match=match):
        run_pool(conn, **kwargs)


def test_pool_type_and_uuid_cannot_change(conn, name):
    first = run_pool(conn, xml=pool_xml(name))
    with pytest.raises(VirtError, match='cannot change a pool\'s type'):
        run_pool(conn, xml="<pool type='netfs'><name>%s</name><target><path>/x</path></target>"
                           "</pool>" % name)
    uuid = '<uuid>11111111-2222-3333-4444-555555555555</uuid>'
    other = pool_xml(name).replace('<target>', uuid + '<target>')
    with pytest.raises(VirtError, match='uuid'):
        run_pool(conn, xml=other)
    assert _pool.get_pool(conn, name).UUIDString() == first['pool']['uuid']


def test_pools_info(conn, name):
    run_pool(conn, xml=pool_xml(name))
    everything = _pool.pools_info(conn)
    names = [p['name'] for p in everything]
    assert 'default-pool' in names and name in names and names == sorted(names)
    one = _pool.pools_info(conn, name=name)
    assert len(one) == 1 and one[0]['state'] == 'inactive'
    assert _pool.pools_info(conn, name='ut-pool-missing') == []
    assert name not in [p['name'] for p in _pool.pools_info(conn, state='active')]
    assert name in [p['name'] for p in _pool.pools_info(conn, state='inactive')]


# ------------------------------------------------------------------ volumes

def volume_params(**kwargs):
    p = dict(pool=None, name=None, state='present', capacity=None, format=None,
             backing_file=None, backing_format=None, clone_from=None, resize=True,
             shrink=False, upload_src=None, force_upload=False, download_dest=None)
    p.update(kwargs)
    return p


def run_volume(conn, check_mode=False, diff_mode=True, **kwargs):
    warn = Recorder()
    result = _volume.VolumeManager(conn, volume_params(**kwargs), check_mode=check_mode,
                                   diff_mode=diff_mode, warn=warn).run()
    result['warnings'] = warn.warnings
    return result


@pytest.fixture
def pool(conn, name):
    run_pool(conn, xml=pool_xml(name), state='active')
    return name


def test_volume_create_qcow2_four_times(conn, pool):
    check, real, check2, real2 = four_times(run_volume, conn, pool=pool, name='a.qcow2',
                                            capacity='1M', format='qcow2')
    assert check['changed'] and check['actions'] == ['create'] and check['volume'] == {}
    assert check['diff']['before'] == '# state: absent\n'
    assert check['diff']['after'] == '# state: present\n# capacity: 1048576\n# format: qcow2\n'
    assert real['changed'] and real['actions'] == ['create']
    vol = real['volume']
    assert vol['name'] == 'a.qcow2' and vol['pool'] == pool and vol['capacity'] == 1048576
    assert vol['format'] == 'qcow2' and vol['path'] == '/%s/a.qcow2' % pool
    assert vol['key'] and vol['backing'] is None
    assert not check2['changed'] and check2['diff']['before'] == check2['diff']['after']
    assert not real2['changed'] and real2['actions'] == []


def test_volume_check_mode_changes_nothing(conn, pool):
    run_volume(conn, check_mode=True, pool=pool, name='a.img', capacity='1M')
    assert _volume.lookup_volume(_pool.get_pool(conn, pool), 'a.img') is None


def test_volume_linked_clone(conn, pool):
    base = run_volume(conn, pool=pool, name='base.qcow2', capacity='1M', format='qcow2')
    args = dict(pool=pool, name='child.qcow2', capacity='1M', format='qcow2',
                backing_file=base['volume']['path'], backing_format='qcow2')
    results = four_times(run_volume, conn, **args)
    assert [r['changed'] for r in results] == [True, True, False, False]
    assert results[1]['volume']['backing'] == dict(path=base['volume']['path'], format='qcow2')
    assert '# backing: %s' % base['volume']['path'] in results[0]['diff']['after']
    with pytest.raises(VirtError, match='does not rebase'):
        other = dict(args)
        other['backing_file'] = '/elsewhere.qcow2'
        run_volume(conn, **other)


def test_volume_clone_from(conn, pool):
    run_volume(conn, pool=pool, name='src.img', capacity='2M')
    results = four_times(run_volume, conn, pool=pool, name='copy.img', clone_from='src.img')
    assert [r['changed'] for r in results] == [True, True, False, False]
    assert results[1]['actions'] == ['clone from src.img']
    assert results[1]['volume']['capacity'] == 2 * 1024 * 1024
    with pytest.raises(VirtError, match='not found in storage pool'):
        run_volume(conn, pool=pool, name='copy2.img', clone_from='nope.img')
    with pytest.raises(VirtError, match='cannot be smaller'):
        run_volume(conn, pool=pool, name='copy3.img', clone_from='src.img', capacity='1M')


def test_volume_existing_cannot_change_format_or_shrink_silently(conn, pool):
    run_volume(conn, pool=pool, name='a.img', capacity='2M', format='raw')
    with pytest.raises(VirtError, match='cannot convert'):
        run_volume(conn, pool=pool, name='a.img', format='qcow2')
    with pytest.raises(VirtError, match='set shrink: true'):
        run_volume(conn, pool=pool, name='a.img', capacity='1M')
    # check mode plans the resize without calling it (the test driver cannot resize)
    grow = run_volume(conn, check_mode=True, pool=pool, name='a.img', capacity='4M')
    assert grow['changed'] and grow['actions'] == ['resize']
    assert '# capacity: 4194304' in grow['diff']['after']
    shrink = run_volume(conn, check_mode=True, pool=pool, name='a.img', capacity='1M',
                        shrink=True)
    assert shrink['actions'] == ['shrink']
    # resize: false uses capacity only to create
    assert not run_volume(conn, pool=pool, name='a.img', capacity='4M', resize=False)['changed']


def test_volume_wiped_refuses_qcow2(conn, pool):
    run_volume(conn, pool=pool, name='a.qcow2', capacity='1M', format='qcow2')
    with pytest.raises(VirtError, match='qcow2 header'):
        run_volume(conn, pool=pool, name='a.qcow2', state='wiped')


def test_volume_upload_planned_only_for_a_new_volume(conn, pool, tmp_path):
    src = tmp_path / 'data.bin'
    src.write_bytes(b'hello world')
    check = run_volume(conn, check_mode=True, pool=pool, name='up.img', upload_src=str(src))
    assert check['actions'] == ['create', 'upload']
    assert '# capacity: 11\n' in check['diff']['after']
    assert '# content: uploaded from %s' % src in check['diff']['after']
    run_volume(conn, pool=pool, name='up.img', capacity='1M')  # exists now (created empty)
    assert not run_volume(conn, check_mode=True, pool=pool, name='up.img',
                          upload_src=str(src))['changed']
    forced = run_volume(conn, check_mode=True, pool=pool, name='up.img', upload_src=str(src),
                        force_upload=True)
    assert forced['actions'] == ['upload']


def test_volume_absent_four_times(conn, pool):
    run_volume(conn, pool=pool, name='a.img', capacity='1M')
    check, real, check2, real2 = four_times(run_volume, conn, pool=pool, name='a.img',
                                            state='absent')
    assert check['changed'] and check['actions'] == ['delete']
    assert check['diff']['after'] == '# state: absent\n'
    assert real['changed'] and real['volume'] == {}
    assert not check2['changed'] and not real2['changed']


@pytest.mark.parametrize('kwargs,match', [
    (dict(capacity='lots'), 'not a size'),
    (dict(capacity='0'), 'more than 0'),
    (dict(), 'give capacity'),
    (dict(capacity='1M', backing_format='qcow2'), 'backing_format needs backing_file'),
    (dict(upload_src='/nonexistent/file'), 'not a readable file'),
    (dict(capacity='1M', download_dest='/nonexistent/dir/file'), 'does not exist'),
])
def test_volume_bad_input(conn, pool, kwargs, match):
    with pytest.raises(VirtError, match=match):
        run_volume(conn, pool=pool, name='bad.img', **kwargs)


def test_volume_needs_an_active_existing_pool(conn, name):
    with pytest.raises(VirtError, match='not found'):
        run_volume(conn, pool=name, name='a.img', capacity='1M')
    run_pool(conn, xml=pool_xml(name))
    with pytest.raises(VirtError, match='not active'):
        run_volume(conn, pool=name, name='a.img', capacity='1M')


def test_volumes_info(conn, pool):
    run_volume(conn, pool=pool, name='b.img', capacity='1M')
    run_volume(conn, pool=pool, name='a.qcow2', capacity='2M', format='qcow2')
    vols = _volume.volumes_info(conn, pool=pool)
    assert [v['name'] for v in vols] == ['a.qcow2', 'b.img']
    assert vols[0]['capacity'] == 2 * 1024 * 1024 and vols[0]['format'] == 'qcow2'
    one = _volume.volumes_info(conn, pool=pool, name='b.img')
    assert len(one) == 1 and one[0]['pool'] == pool
    assert _volume.volumes_info(conn, pool=pool, name='nope') == []
    everywhere = _volume.volumes_info(conn, name='b.img')
    assert [(v['pool'], v['name']) for v in everywhere] == [(pool, 'b.img')]
    with pytest.raises(VirtError, match='not found'):
        _volume.volumes_info(conn, pool='ut-pool-missing')


# ------------------------------------------------------------------ logical (LVM) pools
# The test driver keeps logical pools and their volumes as metadata (no LVM); what libvirt's
# real logical backend does with them is covered by the virt_pool_logical integration target.

LOGICAL_XML = """
<pool type='logical'>
  <name>{name}</name>
  <source>
    <device path='/dev/ut-{name}'/>
    <name>{name}</name>
    <format type='lvm2'/>
  </source>
  <target><path>/dev/{name}</path></target>
</pool>
"""


@pytest.fixture
def lvm_pool(conn, name):
    run_pool(conn, xml=LOGICAL_XML.format(name=name), state='active', build=True)
    return name


def test_logical_pool_define_build_start_four_times(conn, name):
    results = four_times(run_pool, conn, xml=LOGICAL_XML.format(name=name), state='active',
                         build=True, autostart=True)
    assert [r['changed'] for r in results] == [True, True, False, False]
    assert results[1]['actions'] == ['define', 'build', 'start', 'autostart']
    assert results[1]['pool']['type'] == 'logical'
    assert results[1]['pool']['path'] == '/dev/%s' % name
    assert results[2]['diff']['before'] == results[2]['diff']['after']


def test_logical_volume_is_fully_allocated_and_raw(conn, lvm_pool):
    results = four_times(run_volume, conn, pool=lvm_pool, name='lv1', capacity='8M')
    assert [r['changed'] for r in results] == [True, True, False, False]
    vol = results[1]['volume']
    # allocation 0 would make libvirt create a 1 KiB snapshot LV that overflows when written
    assert vol['capacity'] == vol['allocation'] == 8 * 1024 * 1024
    # a clone of a qcow2 volume asks for no format (libvirt would ignore it anyway)
    manager = _volume.VolumeManager(conn, volume_params(pool=lvm_pool, name='x'))
    manager.pool_type = _pool.LOGICAL
    xml = manager.volume_xml_for_create(4096, 'qcow2')
    assert '<format' not in xml and "<allocation unit=\"bytes\">4096<" in xml.replace("'", '"')
    # format raw is accepted (an LV is raw)
    assert not run_volume(conn, pool=lvm_pool, name='lv1', capacity='8M', format='raw')['changed']


@pytest.mark.parametrize('kwargs,match', [
    (dict(capacity='8M', format='qcow2'), 'format qcow2 is not possible there'),
    (dict(capacity='8M', backing_file='/dev/x/base'), r'linked clone \(backing_file\) is not possible'),
])
def test_logical_volume_refuses_what_lvm_cannot_do(conn, lvm_pool, kwargs, match):
    for check_mode in (True, False):
        with pytest.raises(VirtError, match=match) as err:
            run_volume(conn, check_mode=check_mode, pool=lvm_pool, name='lv2', **kwargs)
        assert 'nothing was changed' in str(err.value)
    assert _volume.lookup_volume(_pool.get_pool(conn, lvm_pool), 'lv2') is None


def test_logical_volume_resize_is_refused_before_libvirt(conn, lvm_pool):
    run_volume(conn, pool=lvm_pool, name='lv1', capacity='8M')
    for check_mode in (True, False):
        with pytest.raises(VirtError, match='cannot resize the volumes of a logical') as err:
            run_volume(conn, check_mode=check_mode, pool=lvm_pool, name='lv1', capacity='16M')
        assert 'nothing was changed' in str(err.value)
    vol = _volume.lookup_volume(_pool.get_pool(conn, lvm_pool), 'lv1')
    assert vol.info()[1] == 8 * 1024 * 1024
    # resize: false uses capacity only to create: no change, no failure
    assert not run_volume(conn, pool=lvm_pool, name='lv1', capacity='16M', resize=False)['changed']


def test_logical_clone_is_made_at_its_final_size(conn, lvm_pool):
    run_volume(conn, pool=lvm_pool, name='src', capacity='8M')
    results = four_times(run_volume, conn, pool=lvm_pool, name='copy', clone_from='src',
                         capacity='16M')
    assert [r['changed'] for r in results] == [True, True, False, False]
    assert results[1]['actions'] == ['clone from src']  # no separate resize step
    assert results[1]['volume']['capacity'] == results[1]['volume']['allocation'] == 16 * 1024 ** 2


def test_logical_pool_deleted_only_when_active(conn, lvm_pool):
    run_pool(conn, name=lvm_pool, state='inactive')
    for check_mode in (True, False):
        with pytest.raises(VirtError, match='inactive logical .* start it') as err:
            run_pool(conn, check_mode=check_mode, name=lvm_pool, state='deleted')
        assert 'nothing was changed' in str(err.value)
    assert _pool.lookup_pool(conn, lvm_pool) is not None
    run_pool(conn, name=lvm_pool, state='active')
    run_volume(conn, pool=lvm_pool, name='lv1', capacity='8M')
    with pytest.raises(VirtError, match='still has 1 volume'):
        run_pool(conn, name=lvm_pool, state='deleted')
    run_volume(conn, pool=lvm_pool, name='lv1', state='absent')
    results = four_times(run_pool, conn, name=lvm_pool, state='deleted')
    assert [r['changed'] for r in results] == [True, True, False, False]
    assert results[1]['actions'] == ['stop', 'delete storage', 'undefine']
    assert _pool.lookup_pool(conn, lvm_pool) is None


# ------------------------------------------------------------------ pools of LUNs (iscsi-direct)
# The test driver keeps an iscsi-direct pool as metadata and would create and delete volumes in
# it; libvirt's real iscsi-direct backend (like iscsi, scsi and mpath) has no build, no pool
# delete and no volume create, delete or resize. The modules refuse those before libvirt is
# asked, so these tests see the refusal and an unchanged pool. The real backend against a real
# iSCSI target: the virt_pool_iscsi integration target.

ISCSI_DIRECT_XML = """
<pool type='iscsi-direct'>
  <name>{name}</name>
  <source>
    <host name='127.0.0.1' port='3260'/>
    <device path='iqn.2026-11.example.virtops:{name}'/>
    <initiator><iqn name='iqn.2026-11.example.virtops:{name}-client'/></initiator>
  </source>
</pool>
"""


@pytest.fixture
def lun_pool(conn, name):
    """An active iscsi-direct pool with one 'LUN' (created through the test driver, as the
    target would have made it)."""
    run_pool(conn, xml=ISCSI_DIRECT_XML.format(name=name), state='active')
    _pool.get_pool(conn, name).createXML(
        '<volume><name>unit:0:0:1</name><capacity>67108864</capacity></volume>', 0)
    return name


def test_lun_pool_is_never_built(conn, name):
    results = four_times(run_pool, conn, xml=ISCSI_DIRECT_XML.format(name=name), state='active',
                         build=True, autostart=True)
    assert [r['changed'] for r in results] == [True, True, False, False]
    assert results[0]['actions'] == results[1]['actions'] == ['define', 'start', 'autostart']
    assert results[1]['pool']['type'] == 'iscsi-direct' and results[1]['pool']['path'] is None
    # an existing inactive one is not built either
    run_pool(conn, name=name, state='inactive')
    again = run_pool(conn, check_mode=True, name=name, state='active', build=True)
    assert again['actions'] == ['start']


@pytest.mark.parametrize('pool_type', ['iscsi', 'iscsi-direct', 'scsi', 'mpath'])
def test_needs_build_is_false_for_every_lun_pool_type(conn, pool_type):
    manager = _pool.PoolManager(conn, pool_params())
    desired = _pool.DesiredPool("<pool type='%s'><name>x</name></pool>" % pool_type)
    assert manager._needs_build(None, desired, exists=False) is False
    desired = _pool.DesiredPool("<pool type='dir'><name>x</name></pool>")
    assert manager._needs_build(None, desired, exists=False) is True


def test_lun_pool_deleted_is_refused(conn, lun_pool):
    for check_mode in (True, False):
        with pytest.raises(VirtError, match='libvirt has no storage of it to delete') as err:
            run_pool(conn, check_mode=check_mode, name=lun_pool, state='deleted')
        assert 'Use state absent' in str(err.value) and 'nothing was changed' in str(err.value)
    pool = _pool.lookup_pool(conn, lun_pool)
    assert pool is not None and pool.isActive() and pool.listVolumes() == ['unit:0:0:1']
    results = four_times(run_pool, conn, name=lun_pool, state='absent')
    assert [r['changed'] for r in results] == [True, True, False, False]
    assert results[1]['actions'] == ['stop', 'undefine']


@pytest.mark.parametrize('kwargs,match', [
    (dict(name='unit:0:0:9', capacity='8M'),
     r'whose volumes are LUNs of an iSCSI target.*There is no volume unit:0:0:9.*'
     r'Volumes of the pool: unit:0:0:1'),
    (dict(name='unit:0:0:9', clone_from='unit:0:0:1'), 'There is no volume unit:0:0:9'),
    (dict(name='unit:0:0:1', state='absent'), 'remove the LUN where it is made'),
    (dict(name='unit:0:0:1', capacity='128M'),
     'needs a resize, which libvirt cannot do in an iscsi-direct pool'),
    (dict(name='unit:0:0:1', state='wiped'), r'state wiped .* cannot read or write volume data'),
    (dict(name='unit:0:0:1', download_dest='/tmp/x.img'), 'download_dest'),
])
def test_lun_pool_volume_changes_are_refused_before_libvirt(conn, lun_pool, kwargs, match,
                                                            tmp_path):
    if 'download_dest' in kwargs:
        kwargs['download_dest'] = str(tmp_path / 'x.img')
    for check_mode in (True, False):
        with pytest.raises(VirtError, match=match) as err:
            run_volume(conn, check_mode=check_mode, pool=lun_pool, **kwargs)
        assert 'nothing was changed' in str(err.value)
    pool = _pool.get_pool(conn, lun_pool)
    assert pool.listVolumes() == ['unit:0:0:1']
    assert pool.storageVolLookupByName('unit:0:0:1').info()[1] == 64 * 1024 * 1024
    assert not (tmp_path / 'x.img').exists()


def test_lun_pool_upload_refused_only_where_it_would_happen(conn, lun_pool, tmp_path):
    src = tmp_path / 'data.bin'
    src.write_bytes(b'x' * 512)
    # upload_src into an existing volume without force_upload is no upload: no change
    assert not run_volume(conn, pool=lun_pool, name='unit:0:0:1', upload_src=str(src))['changed']
    with pytest.raises(VirtError, match=r'upload_src \(virStorageVolUpload\) is not possible'):
        run_volume(conn, check_mode=True, pool=lun_pool, name='unit:0:0:1', upload_src=str(src),
                   force_upload=True)


def test_lun_pool_what_needs_no_change_works(conn, lun_pool):
    results = four_times(run_volume, conn, pool=lun_pool, name='unit:0:0:1')
    assert [r['changed'] for r in results] == [False] * 4
    assert results[1]['volume']['capacity'] == 64 * 1024 * 1024
    # the capacity it has, or any capacity with resize: false, is no change either
    assert not run_volume(conn, pool=lun_pool, name='unit:0:0:1', capacity='64M')['changed']
    assert not run_volume(conn, pool=lun_pool, name='unit:0:0:1', capacity='1G',
                          resize=False)['changed']
    # absent for a volume that does not exist is no change
    assert not run_volume(conn, pool=lun_pool, name='unit:0:0:9', state='absent')['changed']
    assert [v['name'] for v in _volume.volumes_info(conn, pool=lun_pool)] == ['unit:0:0:1']
