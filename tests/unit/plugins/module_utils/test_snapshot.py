# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests of the snapshot engine against libvirt's test:///default driver (no mocks).

The test driver makes internal snapshots only; disk-only and external snapshots are covered by
their planning, XML and check mode here and by tests/integration/targets/virt_snapshot.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import itertools
import os

import pytest

libvirt = pytest.importorskip('libvirt')

from ansible_collections.virtops.libvirt.plugins.module_utils import _snapshot as sn  # noqa: E402
from ansible_collections.virtops.libvirt.plugins.module_utils._libvirt import VirtError  # noqa: E402

URI = 'test:///default'
_counter = itertools.count()

DOMAIN_XML = """
<domain type='test'>
  <name>{name}</name>
  <memory unit='MiB'>64</memory>
  <os><type>hvm</type></os>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='/images/{name}-a.qcow2'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='/images/{name}-b.qcow2'/>
      <target dev='vdb' bus='virtio'/>
    </disk>
  </devices>
</domain>
"""

DISK_ONLY_XML = """<domainsnapshot>
  <name>ext1</name>
  <description>frozen</description>
  <state>disk-snapshot</state>
  <parent>
    <name>s1</name>
  </parent>
  <creationTime>1717200000</creationTime>
  <memory snapshot='no'/>
  <disks>
    <disk name='vda' snapshot='external' type='file'>
      <driver type='qcow2'/>
      <source file='/images/vda.ext1.qcow2'/>
    </disk>
    <disk name='vdb' snapshot='no'/>
  </disks>
  <domain type='qemu'>
    <name>d</name>
    <description>the domain's own</description>
  </domain>
</domainsnapshot>
"""


@pytest.fixture
def dom(conn):
    """A fresh running domain with its own name; removed with its snapshots afterwards."""
    name = 'it-snap-unit-%d-%d' % (os.getpid(), next(_counter))
    d = conn.conn.defineXML(DOMAIN_XML.format(name=name))
    d.create()
    yield d
    # Leaves first (the test driver has no METADATA_ONLY deletion).
    for snap in reversed(d.listAllSnapshots(libvirt.VIR_DOMAIN_SNAPSHOT_LIST_TOPOLOGICAL)):
        snap.delete(0)
    if d.isActive():
        d.destroy()
    d.undefine()


def names(dom):
    return [s.getName() for s in dom.listAllSnapshots(libvirt.VIR_DOMAIN_SNAPSHOT_LIST_TOPOLOGICAL)]


def run(conn, domain, name, check_mode=False, snap_type=None, **kwargs):
    """virt_snapshot's manager on the module's parameters (defaults as the module fills them),
    in diff mode."""
    params = dict(domain=domain, name=name, state='present', description=None, type=snap_type, disks=None,
                  memory_file=None, quiesce=False, current=False, children=False, metadata_only=False)
    params.update(kwargs)
    return sn.SnapshotManager(conn, params, check_mode=check_mode, diff_mode=True).run()


def present(conn, dom, name, check_mode=False, **kwargs):
    return run(conn, dom.name(), name, check_mode=check_mode, **kwargs)


def absent(conn, dom, name, check_mode=False, **kwargs):
    return run(conn, dom.name(), name, check_mode=check_mode, state='absent', **kwargs)


def revert(conn, domain, name, check_mode=False):
    return run(conn, domain, name, check_mode=check_mode, state='reverted')


# ---------------------------------------------------------------------------------------------
# XML helpers


def test_parse_snapshot_xml_reads_a_disk_only_snapshot():
    parsed = sn.parse_snapshot_xml(DISK_ONLY_XML)
    assert parsed == dict(
        name='ext1', description='frozen', state='disk-snapshot', parent='s1', creation_time=1717200000,
        type='disk-only', memory=dict(snapshot='no', file=None),
        disks=[dict(name='vda', snapshot='external', file='/images/vda.ext1.qcow2'),
               dict(name='vdb', snapshot='no', file=None)])


def test_snapshot_type():
    assert sn.snapshot_type('running', dict(snapshot='internal'), []) == 'internal'
    assert sn.snapshot_type('shutoff', dict(snapshot='no'), [dict(snapshot='internal')]) == 'internal'
    assert sn.snapshot_type('disk-snapshot', dict(snapshot='no'), [dict(snapshot='external')]) == 'disk-only'
    assert sn.snapshot_type('running', dict(snapshot='external'), [dict(snapshot='external')]) == 'external'


@pytest.mark.parametrize('xml, fragment', [
    ('<domainsnapshot><name>x</name', 'not well-formed'),
    ('<domaincheckpoint><name>x</name></domaincheckpoint>', 'expected <domainsnapshot>'),
    ('<domainsnapshot><name>x</name><creationTime>soon</creationTime></domainsnapshot>', 'not a number'),
])
def test_parse_snapshot_xml_rejects_what_is_not_a_snapshot(xml, fragment):
    with pytest.raises(sn.SnapshotError) as err:
        sn.parse_snapshot_xml(xml)
    assert fragment in err.value.msg


def test_build_snapshot_xml_per_type():
    internal = sn.parse_snapshot_xml(sn.build_snapshot_xml('s1', 'a & <b>'))
    assert internal['description'] == 'a & <b>'
    assert internal['disks'] == [] and internal['memory']['snapshot'] is None
    disks = [dict(name='vda', snapshot='external', file='/i/vda.o'), dict(name='vdb', snapshot='no')]
    disk_only = sn.parse_snapshot_xml(sn.build_snapshot_xml('e1', None, 'disk-only', disks))
    assert disk_only['disks'] == [dict(name='vda', snapshot='external', file='/i/vda.o'),
                                  dict(name='vdb', snapshot='no', file=None)]
    assert disk_only['memory']['snapshot'] is None
    external = sn.parse_snapshot_xml(sn.build_snapshot_xml('e2', None, 'external', disks, '/i/mem'))
    assert external['memory'] == dict(snapshot='external', file='/i/mem')
    assert external['type'] == 'external'


def test_set_description_keeps_the_domain_copy_byte_for_byte():
    replaced = sn.set_description(DISK_ONLY_XML, 'other & more')
    assert sn.parse_snapshot_xml(replaced)['description'] == 'other & more'
    assert replaced.endswith(DISK_ONLY_XML[DISK_ONLY_XML.index('<creationTime>'):])
    assert "<description>the domain's own</description>" in replaced
    removed = sn.set_description(DISK_ONLY_XML, '')
    assert sn.parse_snapshot_xml(removed)['description'] is None
    assert sn.set_description(removed, 'frozen') == DISK_ONLY_XML


def test_set_description_needs_creation_time():
    with pytest.raises(sn.SnapshotError):
        sn.set_description('<domainsnapshot><name>a</name></domainsnapshot>', 'x')


# ---------------------------------------------------------------------------------------------
# present


def test_create_check_mode_predicts_and_changes_nothing(conn, dom):
    predicted = present(conn, dom, 's1', description='first', check_mode=True)
    assert predicted['changed']
    assert predicted['msg'] == 'snapshot s1 would be created'
    assert predicted['diff']['before'] == {}
    assert predicted['snapshot']['state'] == 'running'
    assert predicted['snapshot']['type'] == 'internal'
    assert predicted['snapshot']['current'] is True
    assert names(dom) == []

    created = present(conn, dom, 's1', description='first')
    assert created['changed'] and created['msg'] == 'snapshot s1 created'
    for key in ('name', 'description', 'parent', 'state', 'current', 'type', 'memory_file'):
        assert created['snapshot'][key] == predicted['snapshot'][key], key
    assert isinstance(created['snapshot']['creation_time'], int)
    assert names(dom) == ['s1']

    for check_mode in (True, False):
        again = present(conn, dom, 's1', description='first', check_mode=check_mode)
        assert not again['changed']
        assert again['snapshot']['xml'] == created['snapshot']['xml']
    # Options left out are not compared.
    assert not present(conn, dom, 's1')['changed']
    assert not present(conn, dom, 's1', snap_type='internal')['changed']


def test_a_new_snapshot_is_a_child_of_the_current_one(conn, dom):
    present(conn, dom, 's1')
    predicted = present(conn, dom, 's2', check_mode=True)
    assert predicted['snapshot']['parent'] == 's1'
    created = present(conn, dom, 's2')
    assert created['snapshot']['parent'] == 's1'
    assert sn.current_name(dom) == 's2'


def test_description_and_current_are_redefined(conn, dom):
    first = present(conn, dom, 's1', description='one')['snapshot']
    present(conn, dom, 's2')
    predicted = present(conn, dom, 's1', description='two', current=True, check_mode=True)
    assert predicted['changed']
    assert predicted['msg'] == 'description and current flag of snapshot s1 would be changed'
    assert predicted['diff']['before']['current'] is False
    assert predicted['diff']['after']['current'] is True
    assert sn.current_name(dom) == 's2'
    assert sn.parse_snapshot_xml(dom.snapshotLookupByName('s1').getXMLDesc(0))['description'] == 'one'

    changed = present(conn, dom, 's1', description='two', current=True)
    assert changed['changed']
    assert changed['snapshot']['description'] == 'two'
    assert changed['snapshot']['creation_time'] == first['creation_time']
    assert changed['diff']['after'] == predicted['diff']['after']
    assert sn.current_name(dom) == 's1'
    assert not present(conn, dom, 's1', description='two', current=True)['changed']

    # Only the description: the current snapshot stays current.
    assert present(conn, dom, 's1', description='')['snapshot']['description'] is None
    assert sn.current_name(dom) == 's1'


def test_another_type_is_refused_and_nothing_changes(conn, dom):
    present(conn, dom, 's1')
    with pytest.raises(sn.SnapshotError) as err:
        present(conn, dom, 's1', snap_type='disk-only', description='x')
    assert 'internal' in err.value.msg and 'disk-only' in err.value.msg
    assert sn.parse_snapshot_xml(dom.snapshotLookupByName('s1').getXMLDesc(0))['description'] is None


def test_disk_only_check_mode_plans_the_overlays(conn, dom):
    disks = [dict(name='vda', snapshot='external', file='/images/vda.o'), dict(name='vdb', snapshot='no', file=None)]
    predicted = present(conn, dom, 'e1', snap_type='disk-only', disks=disks, check_mode=True)
    assert predicted['snapshot']['state'] == 'disk-snapshot'
    assert predicted['snapshot']['type'] == 'disk-only'
    assert predicted['snapshot']['disks'] == disks
    assert names(dom) == []


@pytest.mark.parametrize('kwargs, fragment', [
    (dict(snap_type='disk-only', disks=[dict(name='vdz')]), 'has no disk vdz'),
    (dict(snap_type='internal', disks=[dict(name='vda')]), 'disks applies only'),
    (dict(snap_type='external'), 'needs memory_file'),
    (dict(snap_type='disk-only', memory_file='/m'), 'memory_file applies only'),
])
def test_bad_requests_fail_before_libvirt(conn, dom, kwargs, fragment):
    for check_mode in (True, False):
        with pytest.raises(sn.SnapshotError) as err:
            present(conn, dom, 'x', check_mode=check_mode, **kwargs)
        assert fragment in err.value.msg
    assert names(dom) == []


def test_external_needs_a_running_domain(conn, dom):
    dom.destroy()
    with pytest.raises(sn.SnapshotError) as err:
        present(conn, dom, 'x', snap_type='external', memory_file='/m', check_mode=True)
    assert 'shut off' in err.value.msg


def test_shut_off_domain_snapshot_state(conn, dom):
    dom.destroy()
    predicted = present(conn, dom, 'off', check_mode=True)
    created = present(conn, dom, 'off')
    assert predicted['snapshot']['state'] == created['snapshot']['state'] == 'shutoff'


def test_unknown_domain(conn):
    with pytest.raises(VirtError) as err:
        run(conn, 'it-snap-no-such-domain', 's1')
    assert 'not found' in err.value.msg


# ---------------------------------------------------------------------------------------------
# reverted


def test_revert(conn, dom):
    present(conn, dom, 's1')
    present(conn, dom, 's2')
    predicted = revert(conn, dom.name(), 's1', check_mode=True)
    assert predicted['changed'] and predicted['snapshot']['current']
    assert sn.current_name(dom) == 's2'
    reverted = revert(conn, dom.name(), 's1')
    assert reverted['changed']
    assert reverted['msg'] == 'domain %s reverted to snapshot s1' % dom.name()
    assert sn.current_name(dom) == 's1'
    assert dom.isActive()


def test_revert_to_a_running_snapshot_acts_every_time(conn, dom):
    present(conn, dom, 's1')
    results = [revert(conn, dom.name(), 's1', check_mode=c) for c in (True, False, True, False)]
    # The guest ran since the last revert: its memory and disks have moved on.
    assert [r['changed'] for r in results] == [True, True, True, True]
    assert 'running domain' in results[3]['revert_reason']


@pytest.fixture
def off_dom(conn, tmp_path):
    """A shut-off domain whose two disks are real (empty) files."""
    name = 'it-snap-unit-off-%d-%d' % (os.getpid(), next(_counter))
    xml = DOMAIN_XML.format(name=name).replace('/images/', str(tmp_path) + '/')
    for disk in ('a', 'b'):
        (tmp_path / ('%s-%s.qcow2' % (name, disk))).write_bytes(b'x' * 512)
    d = conn.conn.defineXML(xml)
    yield d
    for snap in reversed(d.listAllSnapshots(libvirt.VIR_DOMAIN_SNAPSHOT_LIST_TOPOLOGICAL)):
        snap.delete(0)
    if d.isActive():
        d.destroy()
    d.undefine()


def revert4(conn, dom, name):
    """check mode, real, check mode again, real again."""
    return [revert(conn, dom.name(), name, check_mode=c) for c in (True, False, True, False)]


def test_revert_to_a_shutoff_snapshot_is_idempotent(conn, off_dom, tmp_path):
    present(conn, off_dom, 'off1')
    first = revert4(conn, off_dom, 'off1')
    # No record of an earlier revert by the module: it reverts once, then it knows.
    assert [r['changed'] for r in first] == [True, True, False, False]
    assert first[1]['revert_reason'] == 'no record of an earlier revert to it by this module'
    assert first[3]['msg'] == ('domain %s is still as reverted to snapshot off1 (shut off, definition and '
                               'disk images unchanged since)' % off_dom.name())
    assert first[3]['diff']['before'] == first[3]['diff']['after']
    assert not off_dom.isActive() and sn.current_name(off_dom) == 'off1'

    # A write into a disk image (seen as a new modification time) makes the revert act again.
    image = tmp_path / ('%s-a.qcow2' % off_dom.name())
    st = os.stat(str(image))
    os.utime(str(image), ns=(st.st_atime_ns, st.st_mtime_ns + 10 ** 9))
    again = revert4(conn, off_dom, 'off1')
    assert [r['changed'] for r in again] == [True, True, False, False]
    assert again[0]['revert_reason'] == 'a disk image changed since the last revert'


def test_revert_acts_after_the_definition_changed_or_the_domain_ran(conn, off_dom):
    present(conn, off_dom, 'off1')
    revert(conn, off_dom.name(), 'off1')
    assert not revert(conn, off_dom.name(), 'off1')['changed']
    xml = off_dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
    xml = xml.replace("<vcpu placement='static'>1</vcpu>", "<vcpu placement='static'>2</vcpu>")
    conn.conn.defineXML(xml)
    changed = revert(conn, off_dom.name(), 'off1', check_mode=True)
    assert changed['changed'] and changed['revert_reason'] == 'the domain definition changed since the last revert'
    revert(conn, off_dom.name(), 'off1')
    assert 'vcpu placement=\'static\'>1<' in off_dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
    off_dom.create()
    running = revert(conn, off_dom.name(), 'off1')
    assert running['changed'] and running['revert_reason'] == 'the domain runs'
    assert not off_dom.isActive()
    assert not revert(conn, off_dom.name(), 'off1')['changed']


def test_revert_acts_when_the_snapshot_is_not_current(conn, off_dom):
    present(conn, off_dom, 'off1')
    revert(conn, off_dom.name(), 'off1')
    present(conn, off_dom, 'off2')
    result = revert(conn, off_dom.name(), 'off1', check_mode=True)
    assert result['changed'] and result['revert_reason'] == 'not the current snapshot'


def test_revert_acts_every_time_when_disk_changes_cannot_be_seen(conn, dom):
    # The disks of `dom` are not files on this host: a write would leave no trace to compare.
    dom.destroy()
    present(conn, dom, 'off1')
    results = revert4(conn, dom, 'off1')
    assert [r['changed'] for r in results] == [True, True, True, True]
    assert results[3]['revert_reason'] == 'no record of an earlier revert to it by this module'


def test_revert_fingerprint_ignores_its_own_record_and_remote_uris(conn, off_dom):
    before = sn.revert_fingerprint(off_dom, 'test:///default')
    sn.record_revert(off_dom, 'test:///default', 'x')
    assert sn.revert_fingerprint(off_dom, 'test:///default') == before
    assert sn.recorded_revert(off_dom) == ('x', before)
    assert sn.revert_fingerprint(off_dom, 'qemu+ssh://elsewhere/system') is None


def test_revert_to_a_missing_snapshot_fails(conn, dom):
    with pytest.raises(sn.SnapshotError) as err:
        revert(conn, dom.name(), 'nope', check_mode=True)
    assert 'does not exist' in err.value.msg


# ---------------------------------------------------------------------------------------------
# absent


def test_delete_with_children(conn, dom):
    present(conn, dom, 's1')
    present(conn, dom, 's2')
    present(conn, dom, 's3')
    predicted = absent(conn, dom, 's1', children=True, check_mode=True)
    assert predicted['deleted'] == ['s1', 's2', 's3']
    assert predicted['diff']['before']['descendants'] == ['s2', 's3']
    assert names(dom) == ['s1', 's2', 's3']
    deleted = absent(conn, dom, 's1', children=True)
    assert deleted['changed'] and deleted['deleted'] == ['s1', 's2', 's3']
    assert deleted['msg'] == 'snapshots s1, s2, s3 deleted'
    assert names(dom) == []
    again = absent(conn, dom, 's1', children=True)
    assert not again['changed'] and again['snapshot'] is None


def test_delete_one_keeps_its_children(conn, dom):
    present(conn, dom, 's1')
    present(conn, dom, 's2')
    assert absent(conn, dom, 's1')['deleted'] == ['s1']
    assert names(dom) == ['s2']
    assert absent(conn, dom, 's2')['msg'] == 'snapshot s2 deleted'
    assert names(dom) == []


def test_external_revert_unsupported_only_for_old_qemu(dom):
    assert not sn.external_revert_unsupported(dom)


def test_metadata_only_check_mode_says_so(conn, dom):
    present(conn, dom, 's1')
    predicted = absent(conn, dom, 's1', metadata_only=True, check_mode=True)
    assert predicted['msg'] == 'metadata of snapshot s1 would be deleted'
    assert names(dom) == ['s1']


# ---------------------------------------------------------------------------------------------
# info


def test_snapshots_info_is_a_tree(conn, dom):
    present(conn, dom, 's1', description='root')
    present(conn, dom, 's2')
    revert(conn, dom.name(), 's1')
    present(conn, dom, 's3')
    info = sn.snapshots_info(dom)
    by_name = dict((i['name'], i) for i in info)
    assert [i['name'] for i in info][0] == 's1'
    assert sorted(by_name['s1']['children']) == ['s2', 's3']
    assert by_name['s2']['parent'] == by_name['s3']['parent'] == 's1'
    assert [i['name'] for i in info if i['current']] == ['s3']
    assert by_name['s1']['description'] == 'root'
    assert by_name['s1']['type'] == 'internal'
    assert by_name['s1']['xml'].startswith('<domainsnapshot>')
    one = sn.snapshots_info(dom, 's1')
    assert one == [by_name['s1']]
    assert sn.snapshots_info(dom, 'nope') == []
