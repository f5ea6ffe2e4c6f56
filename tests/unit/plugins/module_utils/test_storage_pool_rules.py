# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The storage pool comparison rules (what libvirt changes in a definition it stores) and what
virt_pool foresees a define would be refused for (issue 15). Pure XML where that suffices, the
rest through PoolManager against libvirt's test:///default driver, which parses and writes pool
XML with the same code as libvirtd and refuses a second pool on the same storage the same way
(it has no storage backends, so the backend check is covered by the virt_pool integration
target on qemu:///system)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import itertools
import re

import pytest

libvirt = pytest.importorskip('libvirt')
pytest.importorskip('lxml')

from ansible_collections.virtops.libvirt.plugins.module_utils import _pool  # noqa: E402
from ansible_collections.virtops.libvirt.plugins.module_utils._pool_profile import STORAGE_POOL, sanitize_path  # noqa: E402
from ansible_collections.virtops.libvirt.plugins.module_utils.xml._compare import compare  # noqa: E402
from ansible_collections.virtops.libvirt.plugins.module_utils._libvirt import VirtError  # noqa: E402

_counter = itertools.count()


def _unique(prefix):
    return '%s-%d' % (prefix, next(_counter))


def _remove(conn, name):
    pool = _pool.lookup_pool(conn, name)
    if pool is not None:
        if pool.isActive():
            pool.destroy()
        if pool.isPersistent():
            pool.undefine()


@pytest.fixture
def names(conn):
    """Fresh pool names; whatever a test defined under them is removed."""
    made = []

    def make():
        made.append(_unique('ut-rule'))
        return made[-1]
    yield make
    for name in made:
        _remove(conn, name)


def run_pool(conn, xml, check_mode=False, name=None):
    params = dict(name=name, xml=xml, state='present', autostart=None, build=False,
                  refresh=False, restart_on_change=False)
    warnings = []
    result = _pool.PoolManager(conn, params, check_mode=check_mode, diff_mode=True,
                               warn=warnings.append).run()
    result['warnings'] = warnings
    return result


def changed(desired, live):
    return compare(desired, live, STORAGE_POOL).changed


# ------------------------------------------------------------------ rules, pure XML

# virFileSanitizePath's own test vectors (libvirt tests/virfiletest.c).
@pytest.mark.parametrize('path,clean', [
    ('', ''), ('/', '/'), ('/path', '/path'), ('/path/to/blah', '/path/to/blah'),
    ('/path/', '/path'), ('///////', '/'), ('//', '//'), ('.', '.'), ('../', '..'),
    ('../../', '../..'), ('//foo//bar', '//foo/bar'), ('/bar//foo', '/bar/foo'),
    ('gluster://bar.baz//fooo/hoo', 'gluster://bar.baz//fooo/hoo'),
    ('gluster://bar.baz/fooo///////hoo', 'gluster://bar.baz/fooo///////hoo'),
])
def test_sanitize_path_is_libvirts(path, clean):
    assert sanitize_path(path) == clean


def test_paths_are_compared_as_libvirt_stores_them():
    live = """<pool type='netfs'><name>p</name><source><host name='nfs'/>
      <dir path='/export/images'/></source><target><path>/var/lib/x</path></target></pool>"""
    desired = live.replace('/var/lib/x', '///var//lib/x//').replace(
        '/export/images', '/export//images/')
    assert not changed(desired, live)
    assert changed(live.replace('/var/lib/x', '/var/lib/y'), live)
    assert changed(live.replace('/export/images', '/export/other'), live)


@pytest.mark.parametrize('pool_type,source,path', [
    ('logical', '<source><name>vg0</name></source>', '/dev/vg0'),
    ('logical', '', '/dev/p'),  # the source name defaults to the pool's name
    ('zfs', '<source><name>tank</name></source>', '/dev/zvol/tank'),
])
def test_derived_target_path_is_what_libvirt_sets(pool_type, source, path):
    desired = ("<pool type='%s'><name>p</name>%s<target><path>/anything/else</path></target>"
               "</pool>" % (pool_type, source))
    source_name = path.rsplit('/', 1)[1]
    live = ("<pool type='%s'><name>p</name><source><name>%s</name></source>"
            "<target><path>%s</path></target></pool>" % (pool_type, source_name, path))
    assert not changed(desired, live)
    # Another source name is a real change, and so is the path it derives.
    other = desired.replace('<name>p</name>', '<name>p</name><source><name>new</name></source>') \
        if not source else desired.replace(source, source.replace('<name>', '<name>new'))
    paths = [d.path for d in compare(other, live, STORAGE_POOL).differences]
    assert paths == ['source/name', 'target/path']


def test_a_dir_pool_target_path_is_the_users():
    live = "<pool type='dir'><name>p</name><target><path>/dev/p</path></target></pool>"
    assert changed(live.replace('/dev/p', '/srv/p'), live)


def test_unset_permission_fields_are_not_compared():
    live = """<pool type='dir'><name>p</name><target><path>/p</path>
      <permissions><mode>0700</mode><label>l_t</label></permissions></target></pool>"""
    desired = live.replace('<label>', '<owner>-1</owner><group>-1</group><label>')
    assert not changed(desired, live)
    # 700 is 0700 (libvirt writes the octal mode with a leading 0)
    assert not changed(desired.replace('0700', '700'), live)
    assert changed(desired.replace('0700', '0711'), live)
    assert changed(desired.replace('<owner>-1', '<owner>0'), live)
    # <permissions> made only of unset fields: libvirt writes none
    bare = "<pool type='dir'><name>p</name><target><path>/p</path></target></pool>"
    only_unset = bare.replace('</path>', '</path><permissions><owner>-1</owner>'
                                         '<group>-1</group><mode></mode></permissions>')
    assert not changed(only_unset, bare)
    assert changed(bare.replace('</path>', '</path><permissions><mode>0755</mode>'
                                           '</permissions>'), bare)


def test_free_extents_are_not_compared():
    live = """<pool type='disk'><name>p</name><source><device path='/dev/sda'/></source>
      <target><path>/dev</path></target></pool>"""
    desired = live.replace("<device path='/dev/sda'/>", """<device path='/dev/sda'>
      <freeExtent start='370137600' end='567544320'/></device>""")
    assert not changed(desired, live)
    assert changed(desired.replace('/dev/sda', '/dev/sdb'), live)


def test_hosts_sharing_a_name_pair_in_order():
    live = """<pool type='rbd'><name>p</name><source><name>rbd</name>
      <host name='mon' port='6789'/><host name='mon' port='6790'/></source></pool>"""
    assert not changed(live, live)
    assert changed(live.replace("'6790'", "'6791'"), live)
    # port 0 is no port: libvirt writes none
    bare = "<pool type='rbd'><name>p</name><source><host name='mon'/></source></pool>"
    assert not changed(bare.replace("name='mon'", "name='mon' port='0'"), bare)
    assert changed(bare.replace("name='mon'", "name='mon' port='6789'"), bare)


def test_pool_types_without_backend_from_capabilities():
    caps = """<storagepoolCapabilities>
      <pool type='dir' supported='yes'><volOptions><defaultFormat type='raw'/></volOptions></pool>
      <pool type='rbd' supported='no'/><pool type='zfs' supported='no'/>
    </storagepoolCapabilities>"""
    assert _pool.pool_types_without_backend(caps) == {'rbd', 'zfs'}


def test_test_driver_has_no_capabilities_and_nothing_is_foreseen_from_them(conn):
    assert _pool.unsupported_pool_types(conn) is None


# ------------------------------------------------------------------ rules, through libvirt

# Inputs of the kinds libvirt rewrites (libvirt's storagepoolxml2xmlin files show each).
REWRITTEN = {
    'slashes and unset permissions': """<pool type='dir'><name>{name}</name><source></source>
      <target><path>///var/////lib/{name}//</path><permissions><mode>0700</mode>
      <owner>-1</owner><group>-1</group><label>some_label_t</label></permissions></target>
      </pool>""",
    'free extents': """<pool type='disk'><name>{name}</name><source>
      <device path='/dev/ut-{name}'><freeExtent start='370137600' end='567544320'/></device>
      <format type='dos'/></source><target><path>/dev</path></target></pool>""",
    'logical target path': """<pool type='logical'><name>{name}</name><source>
      <device path='/dev/ut-{name}'/></source><target><path>/invalid/path</path></target>
      </pool>""",
    'source dir slash': """<pool type='netfs'><name>{name}</name><source>
      <host name='nfs.example.com' port='0'/><dir path='/export/{name}/'/>
      <format type='nfs'/></source><target><path>/mnt/{name}</path></target></pool>""",
    'hosts sharing a name': """<pool type='rbd'><name>{name}</name><source><name>rbd</name>
      <host name='localhost' port='6789'/><host name='localhost' port='6790'/></source>
      </pool>""",
}


@pytest.mark.parametrize('kind', sorted(REWRITTEN))
def test_what_libvirt_rewrites_is_idempotent(conn, names, kind):
    name = names()
    xml = REWRITTEN[kind].format(name=name)
    results = [run_pool(conn, xml, check_mode=c) for c in (True, False, True, False)]
    assert [r['changed'] for r in results] == [True, True, False, False]
    assert all(r['warnings'] == [] for r in results)
    assert results[2]['diff']['before'] == results[2]['diff']['after']


# ------------------------------------------------------------------ foreseen refusals

# Pools of every kind libvirt compares for a storage conflict, with pairs that do and do not
# share storage. The PCI address of the parentaddr adapters is one no host has (libvirt looks
# a parentaddr up in sysfs when the addresses differ).
CANDIDATES = [
    "<pool type='dir'><target><path>/var/lib/ut-a</path></target></pool>",
    "<pool type='dir'><target><path>//var//lib/ut-a/</path></target></pool>",
    "<pool type='dir'><target><path>/var/lib/ut-b</path></target></pool>",
    "<pool type='fs'><source><device path='/dev/ut-sdb1'/></source>"
    "<target><path>/var/lib/ut-a</path></target></pool>",
    "<pool type='logical'><source><name>ut-vg</name><device path='/dev/ut-sdb1'/>"
    "<device path='/dev/ut-sdb2'/></source><target><path>/dev/ut-vg</path></target></pool>",
    "<pool type='disk'><source><device path='/dev/ut-sdb2'/></source>"
    "<target><path>/dev</path></target></pool>",
    "<pool type='iscsi'><source><host name='san'/><device path='iqn.ut:t1'/></source>"
    "<target><path>/dev/disk/by-path</path></target></pool>",
    "<pool type='iscsi'><source><host name='other-san'/><device path='iqn.ut:t1'/></source>"
    "<target><path>/dev/disk/by-path</path></target></pool>",
    "<pool type='iscsi'><source><host name='san'/><device path='iqn.ut:t1'/>"
    "<initiator><iqn name='iqn.ut:host1'/></initiator></source>"
    "<target><path>/dev/disk/by-path</path></target></pool>",
    "<pool type='iscsi'><source><host name='san'/><device path='/dev/ut-sdb1'/></source>"
    "<target><path>/dev/disk/by-path</path></target></pool>",
    "<pool type='netfs'><source><host name='nfs'/><dir path='/export/ut'/></source>"
    "<target><path>/mnt/ut-a</path></target></pool>",
    "<pool type='netfs'><source><host name='nfs' port='2049'/><dir path='/export/ut/'/>"
    "</source><target><path>/mnt/ut-b</path></target></pool>",
    "<pool type='netfs'><source><host name='nfs' port='2050'/><dir path='/export/ut'/>"
    "</source><target><path>/mnt/ut-c</path></target></pool>",
    "<pool type='netfs'><source><host name='other'/><host name='nfs'/>"
    "<dir path='/export/ut'/></source><target><path>/mnt/ut-d</path></target></pool>",
    "<pool type='scsi'><source><adapter name='host7'/></source>"
    "<target><path>/dev/disk/by-path</path></target></pool>",
    "<pool type='scsi'><source><adapter type='scsi_host' name='scsi_host7'/></source>"
    "<target><path>/dev/disk/by-path</path></target></pool>",
    "<pool type='scsi'><source><adapter type='fc_host' parent='host7' "
    "wwnn='20000000c9831b4b' wwpn='10000000c9831b4b'/></source>"
    "<target><path>/dev/disk/by-path</path></target></pool>",
    "<pool type='scsi'><source><adapter type='fc_host' wwnn='20000000c9831b4b' "
    "wwpn='10000000c9831b4b'/></source><target><path>/dev/disk/by-path</path></target></pool>",
    "<pool type='scsi'><source><adapter type='scsi_host'><parentaddr unique_id='9'>"
    "<address domain='0x0ffe' bus='0xfe' slot='0x1f' function='0x7'/></parentaddr></adapter>"
    "</source><target><path>/dev/disk/by-path</path></target></pool>",
    "<pool type='scsi'><source><adapter type='scsi_host'><parentaddr unique_id='8'>"
    "<address domain='0x0ffe' bus='0xfe' slot='0x1f' function='0x7'/></parentaddr></adapter>"
    "</source><target><path>/dev/disk/by-path</path></target></pool>",
    "<pool type='mpath'><target><path>/dev/mapper</path></target></pool>",
    "<pool type='gluster'><source><name>vol</name><host name='gl'/></source></pool>",
    "<pool type='gluster'><source><name>vol</name><dir path='/'/><host name='gl' port='24007'/>"
    "</source></pool>",
    "<pool type='sheepdog'><source><name>s</name><host name='sd' port='7000'/></source></pool>",
    "<pool type='sheepdog'><source><name>t</name><host name='sd'/></source></pool>",
    "<pool type='vstorage'><source><name>cluster1</name></source>"
    "<target><path>/mnt/ut-vz</path></target></pool>",
    "<pool type='vstorage'><source><name>cluster1</name></source>"
    "<target><path>/mnt/ut-vz2</path></target></pool>",
    "<pool type='zfs'><source><name>tank</name><device path='/dev/ut-sdb2'/></source></pool>",
    "<pool type='rbd'><source><name>rbd</name><host name='mon'/></source></pool>",
]


def _named(xml, name):
    """The candidate with a <name> right after its start tag."""
    return xml.replace('>', '><name>%s</name>' % name, 1)


def test_foreseen_storage_conflicts_are_libvirts(conn, names):
    """For every ordered pair: the pool defined first, then what define_refusal says of the
    second equals what libvirt does with it (refuses, naming the first pool, or accepts)."""
    first, second = names(), names()
    refused = 0
    for one, two in itertools.product(CANDIDATES, repeat=2):
        conn.conn.storagePoolDefineXML(_named(one, first), 0)
        try:
            desired = _pool.DesiredPool(_named(two, second))
            predicted = _pool.define_refusal(conn, desired)
            try:
                conn.conn.storagePoolDefineXML(_named(two, second), 0)
                actual = None
            except libvirt.libvirtError as exc:
                actual = str(exc)
            assert bool(predicted) == bool(actual), (one, two, predicted, actual)
            if actual:
                refused += 1
                assert "conflict with pool: '%s'" % first in actual
                assert "Storage source conflict with pool: '%s'" % first in predicted
        finally:
            _remove(conn, first)
            _remove(conn, second)
    assert refused >= 20  # the list holds conflicts of every kind, not only free pairs


def test_storage_conflict_fails_check_mode_and_the_real_run_alike(conn, names):
    first, second = names(), names()
    run_pool(conn, "<pool type='dir'><name>%s</name><target><path>/var/lib/%s</path>"
                   "</target></pool>" % (first, first))
    twin = "<pool type='dir'><name>%s</name><target><path>/var//lib/%s/</path></target></pool>" \
        % (second, first)
    with pytest.raises(VirtError) as check:
        run_pool(conn, twin, check_mode=True)
    with pytest.raises(VirtError) as real:
        run_pool(conn, twin)
    assert str(check.value) == str(real.value)
    assert re.match(r"defining on storage pool %s failed: Storage source conflict with pool: "
                    r"'%s': both are dir pools with target path /var/lib/%s, .*\(nothing was "
                    r"changed\)$" % (second, first, first), str(real.value))
    assert real.value.details['reason'] == 'define refused'
    assert _pool.lookup_pool(conn, second) is None


def test_a_pool_redefined_over_itself_is_no_conflict_but_onto_another_is(conn, names):
    first, second = names(), names()
    xml = "<pool type='dir'><name>{0}</name><target><path>/var/lib/{1}</path></target></pool>"
    run_pool(conn, xml.format(first, first))
    run_pool(conn, xml.format(second, second))
    moved = run_pool(conn, xml.format(first, first + '-moved'))
    assert moved['changed'] and moved['actions'] == ['define']
    with pytest.raises(VirtError, match="conflict with pool: '%s'" % second):
        run_pool(conn, xml.format(first, second), check_mode=True)
    with pytest.raises(libvirt.libvirtError, match='conflict'):
        conn.conn.storagePoolDefineXML(xml.format(first, second), 0)
    assert '/var/lib/%s-moved<' % first in _pool.pool_inactive_xml(
        _pool.get_pool(conn, first))


def test_uuid_of_another_pool_is_foreseen(conn, names):
    first, second = names(), names()
    result = run_pool(conn, "<pool type='dir'><name>%s</name><target><path>/var/lib/%s</path>"
                            "</target></pool>" % (first, first))
    uuid = result['pool']['uuid']
    other = "<pool type='dir'><name>%s</name><uuid>%s</uuid><target><path>/var/lib/%s</path>" \
            "</target></pool>" % (second, uuid, second)
    with pytest.raises(VirtError, match="failed: pool '%s' is already defined with uuid %s"
                       % (first, uuid)):
        run_pool(conn, other, check_mode=True)
    with pytest.raises(libvirt.libvirtError, match='already defined with uuid'):
        conn.conn.storagePoolDefineXML(other, 0)


def test_a_name_libvirt_refuses_is_foreseen(conn):
    xml = "<pool type='dir'><name>ut-rule/x</name><target><path>/var/lib/ut-x</path></target></pool>"
    with pytest.raises(VirtError, match="storage pool ut-rule/x failed: a pool name cannot contain"):
        run_pool(conn, xml, check_mode=True)
    with pytest.raises(libvirt.libvirtError, match="cannot contain '/'"):
        conn.conn.storagePoolDefineXML(xml, 0)
