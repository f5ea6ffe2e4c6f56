# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests of the migration engine on libvirt's test driver (no mocks).

Two hosts: each connection to test:///<node file> is a separate in-memory host (test:///default
is one host shared by every connection of a process). The test driver cannot migrate, so the data
path is covered by tests/integration/targets/virt_migrate against a real peer libvirtd; here:
planning and idempotency decisions, flags and typed parameters, disk path rewriting, storage
checks, check mode, and what a refused migration leaves behind.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import itertools

import pytest

libvirt = pytest.importorskip('libvirt')

from ansible_collections.virtops.libvirt.plugins.module_utils import _migrate as mg  # noqa: E402
from ansible_collections.virtops.libvirt.plugins.module_utils._libvirt import (  # noqa: E402
    Connection,
    VirtError,
)

_counter = itertools.count()

DOMAIN_XML = """
<domain type='test'>
  <name>{name}</name>
  {uuid}
  <memory unit='MiB'>64</memory>
  <os><type>hvm</type></os>
  <devices>
    <disk type='file' device='disk'>
      <source file='{path}'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <disk type='file' device='cdrom'>
      <source file='{path}.iso'/>
      <target dev='sda' bus='sata'/>
      <readonly/>
    </disk>
  </devices>
</domain>
"""


@pytest.fixture
def hosts(tmp_path):
    """Two separate test-driver hosts: (source, destination) Connections."""
    node = tmp_path / 'node.xml'
    node.write_text(u'<node/>')
    uri = 'test://%s' % node
    src, dst = Connection(uri), Connection(uri)
    # The same URI would be refused by validate(); the engine only needs them to differ.
    dst.uri = uri + '?peer'
    yield src, dst
    src.close()
    dst.close()


def _name():
    return 'it-mig-unit-%d' % next(_counter)


def define(conn, name, path, uuid=None, start=False):
    xml = DOMAIN_XML.format(name=name, path=path, uuid='<uuid>%s</uuid>' % uuid if uuid else '')
    dom = conn.conn.defineXML(xml)
    if start:
        dom.create()
    return dom


def opts(name, dest, **kw):
    base = dict((k, v.get('default')) for k, v in mg.MIGRATE_ARGS.items())
    base.update(name=name, dest_uri=dest.uri)
    base.update(kw)
    return base


def disk(tmp_path, name):
    path = tmp_path / (name + '.img')
    path.write_bytes(b'\0' * 512)
    (tmp_path / (name + '.img.iso')).write_bytes(b'\0' * 512)
    return str(path)


# ---------------------------------------------------------------------------------------------
# Planning and idempotency

def test_running_domain_on_source_only_is_migrated_live(hosts, tmp_path):
    src, dst = hosts
    name = _name()
    define(src, name, disk(tmp_path, name), start=True)
    decision = mg.plan(mg.domain_facts(src, name), mg.domain_facts(dst, name), opts(name, dst))
    assert decision == dict(action='migrate', mode='live')
    decision = mg.plan(mg.domain_facts(src, name), None, opts(name, dst, live=False))
    assert decision == dict(action='migrate', mode='paused')


def test_shut_off_domain_is_migrated_offline(hosts, tmp_path):
    src, dst = hosts
    name = _name()
    define(src, name, disk(tmp_path, name))
    decision = mg.plan(mg.domain_facts(src, name), None, opts(name, dst))
    assert decision == dict(action='migrate', mode='offline')


@pytest.mark.parametrize('kw, fragment', [
    (dict(persistent=False), 'needs persistent=true'),
    (dict(copy_storage='all'), 'cannot copy storage'),
])
def test_offline_refuses_what_it_cannot_do(hosts, tmp_path, kw, fragment):
    src, dst = hosts
    name = _name()
    define(src, name, disk(tmp_path, name))
    with pytest.raises(mg.MigrateError) as err:
        mg.plan(mg.domain_facts(src, name), None, opts(name, dst, **kw))
    assert fragment in err.value.msg


def test_already_on_destination_is_ok(hosts, tmp_path):
    src, dst = hosts
    name = _name()
    define(dst, name, disk(tmp_path, name), start=True)
    result = mg.migrate(src, opts(name, dst), dest=dst)
    assert result['changed'] is False
    assert result['plan'] == 'none'
    assert result['location'] == 'destination'
    assert result['domain']['state'] == 'running'
    assert result['diff']['before'] == result['diff']['after']


def test_definition_left_on_source_is_removed_only_with_undefine_source(hosts, tmp_path):
    src, dst = hosts
    name = _name()
    path = disk(tmp_path, name)
    dom = define(dst, name, path, start=True)
    define(src, name, path, uuid=dom.UUIDString())
    kept = mg.migrate(src, opts(name, dst, undefine_source=False), dest=dst)
    assert kept['changed'] is False and src.lookup_domain(name) is not None
    check = mg.migrate(src, opts(name, dst), check_mode=True, dest=dst)
    assert check['changed'] is True and check['plan'] == 'undefine_source'
    assert src.lookup_domain(name) is not None, 'check mode changed nothing'
    real = mg.migrate(src, opts(name, dst), dest=dst)
    assert real['changed'] is True and src.lookup_domain(name) is None
    again = mg.migrate(src, opts(name, dst), dest=dst)
    assert again['changed'] is False


def test_split_brain_is_refused(hosts, tmp_path):
    src, dst = hosts
    name = _name()
    path = disk(tmp_path, name)
    dom = define(src, name, path, start=True)
    define(dst, name, path, uuid=dom.UUIDString(), start=True)
    with pytest.raises(mg.MigrateError) as err:
        mg.migrate(src, opts(name, dst), check_mode=True, dest=dst)
    assert 'split brain' in err.value.msg
    assert mg.domain_facts(src, name)['active'] and mg.domain_facts(dst, name)['active']


def test_a_different_domain_of_the_same_name_is_a_clash(hosts, tmp_path):
    src, dst = hosts
    name = _name()
    path = disk(tmp_path, name)
    define(src, name, path, start=True)
    define(dst, name, path)
    with pytest.raises(mg.MigrateError) as err:
        mg.migrate(src, opts(name, dst), dest=dst)
    assert 'different domain' in err.value.msg
    assert mg.domain_facts(src, name)['state'] == 'running'


def test_inactive_copy_of_the_same_domain_on_destination_still_migrates(hosts, tmp_path):
    src, dst = hosts
    name = _name()
    path = disk(tmp_path, name)
    dom = define(src, name, path, start=True)
    define(dst, name, path, uuid=dom.UUIDString())
    decision = mg.plan(mg.domain_facts(src, name), mg.domain_facts(dst, name), opts(name, dst))
    assert decision['action'] == 'migrate'


def test_neither_host_has_it(hosts):
    src, dst = hosts
    with pytest.raises(mg.MigrateError) as err:
        mg.migrate(src, opts('it-mig-unit-nowhere', dst), dest=dst)
    assert 'neither host' in err.value.msg


def test_dest_name_is_looked_up_on_the_destination(hosts, tmp_path):
    src, dst = hosts
    name = _name()
    define(dst, name + '-new', disk(tmp_path, name), start=True)
    result = mg.migrate(src, opts(name, dst, dest_name=name + '-new'), dest=dst)
    assert result['changed'] is False and result['domain']['name'] == name + '-new'


# ---------------------------------------------------------------------------------------------
# Check mode and the refused real run

def test_check_mode_predicts_and_changes_nothing(hosts, tmp_path):
    src, dst = hosts
    name = _name()
    path = disk(tmp_path, name)
    define(src, name, path, start=True)
    result = mg.migrate(src, opts(name, dst, bandwidth=50, auto_converge=True), check_mode=True, dest=dst)
    assert result['changed'] is True
    assert result['plan'] == 'migrate' and result['mode'] == 'live'
    assert result['location'] == 'source'
    assert result['flags'] == ['VIR_MIGRATE_LIVE', 'VIR_MIGRATE_PERSIST_DEST', 'VIR_MIGRATE_UNDEFINE_SOURCE',
                               'VIR_MIGRATE_AUTO_CONVERGE', 'VIR_MIGRATE_ABORT_ON_ERROR']
    assert result['storage'] == [
        dict(target='vda', source_path=path, dest_path=path, copied=False, status='present'),
        dict(target='sda', source_path=path + '.iso', dest_path=path + '.iso', copied=False, status='present'),
    ]
    assert result['diff']['before']['destination'] is None
    assert result['diff']['after']['source'] is None
    assert result['diff']['after']['destination']['state'] == 'running'
    assert mg.domain_facts(dst, name) is None
    assert mg.domain_facts(src, name)['state'] == 'running'


def test_a_refused_migration_leaves_the_domain_on_the_source(hosts, tmp_path):
    src, dst = hosts
    name = _name()
    define(src, name, disk(tmp_path, name), start=True)
    with pytest.raises(mg.MigrateError) as err:
        mg.migrate(src, opts(name, dst), dest=dst)
    assert 'failed' in err.value.msg
    assert 'running on the source, absent from the destination' in err.value.msg
    assert err.value.code == libvirt.VIR_ERR_NO_SUPPORT


def test_unreachable_destination(hosts):
    src, _dst = hosts
    with pytest.raises(mg.MigrateError) as err:
        mg.migrate(src, dict(opts('x', _dst), dest_uri='test:///nonexistent/node.xml'))
    assert 'cannot be reached' in err.value.msg


# ---------------------------------------------------------------------------------------------
# Storage

def test_shared_storage_missing_on_destination_fails(hosts, tmp_path):
    src, dst = hosts
    name = _name()
    path = disk(tmp_path, name)
    define(src, name, path, start=True)
    with pytest.raises(mg.MigrateError) as err:
        mg.migrate(src, opts(name, dst, disk_paths=dict(vda=str(tmp_path / 'elsewhere.img'))),
                   check_mode=True, dest=dst)
    assert 'does not exist on the destination' in err.value.msg and 'shared storage' in err.value.msg


def test_copy_onto_itself_is_refused(hosts, tmp_path):
    src, dst = hosts
    name = _name()
    define(src, name, disk(tmp_path, name), start=True)
    with pytest.raises(mg.MigrateError) as err:
        mg.migrate(src, opts(name, dst, copy_storage='all'), check_mode=True, dest=dst)
    assert 'onto itself' in err.value.msg


def test_copy_into_a_destination_pool(hosts, tmp_path):
    src, dst = hosts
    name = _name()
    define(src, name, disk(tmp_path, name), start=True)
    pool_dir = tmp_path / 'pool'
    pool_dir.mkdir()
    dst.conn.storagePoolCreateXML(
        "<pool type='dir'><name>%s</name><target><path>%s</path></target></pool>" % (name, pool_dir), 0)
    new = str(pool_dir / 'vda.img')
    result = mg.migrate(src, opts(name, dst, copy_storage='all', migrate_disks=['vda'], disk_paths=dict(vda=new)),
                        check_mode=True, dest=dst)
    assert result['storage'][0] == dict(target='vda', source_path=disk(tmp_path, name), dest_path=new,
                                        copied=True, status='pool')
    assert result['storage'][1]['copied'] is False  # not in migrate_disks (and read-only)
    assert 'VIR_MIGRATE_NON_SHARED_DISK' in result['flags']


def test_copy_without_image_or_pool_fails(hosts, tmp_path):
    src, dst = hosts
    name = _name()
    define(src, name, disk(tmp_path, name), start=True)
    with pytest.raises(mg.MigrateError) as err:
        mg.migrate(src, opts(name, dst, copy_storage='all', disk_paths=dict(vda=str(tmp_path / 'no' / 'x.img'))),
                   check_mode=True, dest=dst)
    assert 'no storage pool' in err.value.msg


def test_offline_reports_missing_images_without_failing(hosts, tmp_path):
    src, dst = hosts
    name = _name()
    define(src, name, disk(tmp_path, name))
    new = str(tmp_path / 'later.img')
    result = mg.migrate(src, opts(name, dst, disk_paths=dict(vda=new)), check_mode=True, dest=dst)
    assert result['mode'] == 'offline'
    assert result['storage'][0]['status'] == 'missing'
    assert result['flags'] == ['VIR_MIGRATE_OFFLINE', 'VIR_MIGRATE_PERSIST_DEST', 'VIR_MIGRATE_UNDEFINE_SOURCE']
    assert result['diff']['after']['destination']['state'] == 'shutoff'


def test_unknown_migrate_disks(hosts, tmp_path):
    src, dst = hosts
    name = _name()
    define(src, name, disk(tmp_path, name), start=True)
    with pytest.raises(mg.MigrateError) as err:
        mg.migrate(src, opts(name, dst, copy_storage='all', migrate_disks=['vdz'],
                             disk_paths=dict(vda=str(tmp_path / 'n.img'))), check_mode=True, dest=dst)
    assert 'vdz' in err.value.msg


def test_with_disk_paths_rewrites_and_refuses_unknown_targets():
    xml = DOMAIN_XML.format(name='d', path='/a/b.img', uuid='')
    out = mg.with_disk_paths(xml, dict(vda='/c/d.img'), 'd')
    assert "file='/c/d.img'" in out.replace('"', "'") and '/a/b.img.iso' in out
    with pytest.raises(mg.MigrateError) as err:
        mg.with_disk_paths(xml, dict(vdq='/x'), 'd')
    assert 'vdq' in err.value.msg


# ---------------------------------------------------------------------------------------------
# Input, flags and parameters

@pytest.mark.parametrize('kw, fragment', [
    (dict(dest_uri='test:///same'), 'cannot migrate to the host'),
    (dict(tunnelled=True), 'needs p2p=true'),
    (dict(tunnelled=True, p2p=True, migrate_uri='tcp://h'), 'does not apply to tunnelled'),
    (dict(timeout=5, timeout_action='postcopy'), 'needs postcopy=true'),
    (dict(migrate_disks=['vda']), 'needs copy_storage'),
    (dict(dest_xml='<domain/>', disk_paths=dict(vda='/x')), 'not both'),
    (dict(bandwidth=0), 'bandwidth must be 1 or more'),
    (dict(parallel_connections=2, p2p=True, tunnelled=True), 'parallel_connections'),
])
def test_validate_refuses_bad_combinations(kw, fragment):
    options = dict(name='d', dest_uri='test:///other')
    options.update(kw)
    with pytest.raises(mg.MigrateError) as err:
        mg.validate(options, 'test:///same')
    assert fragment in err.value.msg


def test_flags_per_mode():
    options = dict(name='d', persistent=True, undefine_source=False, compressed=True, p2p=True,
                   tunnelled=True, copy_storage='incremental', postcopy=True, unsafe=True,
                   parallel_connections=None)
    live = mg.flag_names(options, 'live')
    assert live == ['VIR_MIGRATE_LIVE', 'VIR_MIGRATE_PERSIST_DEST', 'VIR_MIGRATE_COMPRESSED',
                    'VIR_MIGRATE_POSTCOPY', 'VIR_MIGRATE_PEER2PEER', 'VIR_MIGRATE_TUNNELLED', 'VIR_MIGRATE_UNSAFE',
                    'VIR_MIGRATE_NON_SHARED_INC', 'VIR_MIGRATE_ABORT_ON_ERROR']
    assert mg.flags_value(live) == (libvirt.VIR_MIGRATE_LIVE | libvirt.VIR_MIGRATE_PERSIST_DEST |
                                    libvirt.VIR_MIGRATE_COMPRESSED | libvirt.VIR_MIGRATE_POSTCOPY |
                                    libvirt.VIR_MIGRATE_PEER2PEER | libvirt.VIR_MIGRATE_TUNNELLED |
                                    libvirt.VIR_MIGRATE_UNSAFE | libvirt.VIR_MIGRATE_NON_SHARED_INC |
                                    libvirt.VIR_MIGRATE_ABORT_ON_ERROR)
    paused = mg.flag_names(dict(options, compressed=False, postcopy=False), 'paused')
    assert 'VIR_MIGRATE_LIVE' not in paused
    offline = mg.flag_names(options, 'offline')
    assert offline == ['VIR_MIGRATE_OFFLINE', 'VIR_MIGRATE_PERSIST_DEST', 'VIR_MIGRATE_PEER2PEER',
                       'VIR_MIGRATE_TUNNELLED', 'VIR_MIGRATE_UNSAFE']


def test_typed_parameters():
    options = dict(name='d', dest_name='e', migrate_uri='tcp://10.0.0.2:49152', bandwidth=100,
                   migrate_disks=['vda', 'vdb'], parallel_connections=4, persistent=True)
    params = mg.build_params(options, 'live', dest_xml='<domain/>', persist_xml='<domain/>')
    assert params == {
        libvirt.VIR_MIGRATE_PARAM_DEST_NAME: 'e',
        libvirt.VIR_MIGRATE_PARAM_DEST_XML: '<domain/>',
        libvirt.VIR_MIGRATE_PARAM_PERSIST_XML: '<domain/>',
        libvirt.VIR_MIGRATE_PARAM_URI: 'tcp://10.0.0.2:49152',
        libvirt.VIR_MIGRATE_PARAM_BANDWIDTH: 100,
        libvirt.VIR_MIGRATE_PARAM_MIGRATE_DISKS: ['vda', 'vdb'],
        libvirt.VIR_MIGRATE_PARAM_PARALLEL_CONNECTIONS: 4,
    }
    # Offline: only the definition moves; data parameters are left out.
    assert mg.build_params(options, 'offline') == {libvirt.VIR_MIGRATE_PARAM_DEST_NAME: 'e'}
    # The same name is not sent as a rename.
    assert mg.build_params(dict(name='d', dest_name='d'), 'live') == {}


def test_errors_are_virt_errors():
    assert issubclass(mg.MigrateError, VirtError)
