# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests of the checkpoint engine against libvirt's test:///default driver (no mocks)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import itertools
import os
import shutil
import subprocess

import pytest

libvirt = pytest.importorskip('libvirt')

from ansible_collections.virtops.libvirt.plugins.module_utils import _checkpoint as ck  # noqa: E402
from ansible_collections.virtops.libvirt.plugins.module_utils._libvirt import VirtError  # noqa: E402

URI = 'test:///default'
_counter = itertools.count()

# vda, vdb: qcow2; vdc: raw; hdc: read-only CD-ROM; hdd: empty CD-ROM.
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
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw'/>
      <source file='/images/{name}-c.raw'/>
      <target dev='vdc' bus='virtio'/>
    </disk>
    <disk type='file' device='cdrom'>
      <driver name='qemu' type='raw'/>
      <source file='/images/{name}.iso'/>
      <target dev='hdc' bus='ide'/>
      <readonly/>
    </disk>
    <disk type='file' device='cdrom'>
      <target dev='hdd' bus='ide'/>
      <readonly/>
    </disk>
  </devices>
</domain>
"""

# The disks to list so that the raw disk gets no bitmap.
QCOW2_ONLY = [dict(name='vda', checkpoint='bitmap'), dict(name='vdb', checkpoint='bitmap'),
              dict(name='vdc', checkpoint='no')]

SAMPLE_XML = """<domaincheckpoint>
  <name>ck2</name>
  <description>after the upgrade</description>
  <parent>
    <name>ck1</name>
  </parent>
  <creationTime>1717200000</creationTime>
  <disks>
    <disk name='vda' checkpoint='bitmap' bitmap='ck2' size='1048576'/>
    <disk name='vdb' checkpoint='no'/>
  </disks>
</domaincheckpoint>
"""


@pytest.fixture
def dom(conn):
    """A fresh running domain with its own name; removed with its checkpoints afterwards."""
    name = 'it-ck-unit-%d-%d' % (os.getpid(), next(_counter))
    d = conn.conn.defineXML(DOMAIN_XML.format(name=name))
    d.create()
    yield d
    # Leaves first, metadata only: works whatever state the test left the domain in.
    for chk in reversed(d.listAllCheckpoints(libvirt.VIR_DOMAIN_CHECKPOINT_LIST_TOPOLOGICAL)):
        chk.delete(libvirt.VIR_DOMAIN_CHECKPOINT_DELETE_METADATA_ONLY)
    if d.isActive():
        d.destroy()
    d.undefine()


def names(dom):
    return [c.getName() for c in dom.listAllCheckpoints(libvirt.VIR_DOMAIN_CHECKPOINT_LIST_TOPOLOGICAL)]


def run(conn, domain, check_mode=False, **kwargs):
    """virt_checkpoint's manager on the module's parameters (defaults as the module fills them),
    in diff mode."""
    params = dict(domain=domain, name=None, state='present', description=None, disks=None, redefine_xml=None,
                  children=False, metadata_only=False)
    params.update(kwargs)
    return ck.CheckpointManager(conn, params, check_mode=check_mode, diff_mode=True).run()


def present(conn, dom, check_mode=False, **kwargs):
    return run(conn, dom.name(), check_mode=check_mode, **kwargs)


def absent(conn, dom, name, check_mode=False, **kwargs):
    return run(conn, dom.name(), check_mode=check_mode, name=name, state='absent', **kwargs)


# ---------------------------------------------------------------------------------------------
# XML helpers


def test_parse_checkpoint_xml_reads_every_field():
    parsed = ck.parse_checkpoint_xml(SAMPLE_XML)
    assert parsed == dict(
        name='ck2', description='after the upgrade', parent='ck1', creation_time=1717200000,
        disks=[dict(name='vda', checkpoint='bitmap', bitmap='ck2', size=1048576),
               dict(name='vdb', checkpoint='no', bitmap=None, size=None)],
        has_domain=False)


@pytest.mark.parametrize('xml, fragment', [
    ('<domaincheckpoint><name>x</name', 'not well-formed'),
    ('<domain><name>x</name></domain>', 'expected <domaincheckpoint>'),
    ('<domaincheckpoint><name>x</name><creationTime>soon</creationTime></domaincheckpoint>', 'not a number'),
])
def test_parse_checkpoint_xml_rejects_what_is_not_a_checkpoint(xml, fragment):
    with pytest.raises(ck.CheckpointError) as err:
        ck.parse_checkpoint_xml(xml)
    assert fragment in err.value.msg


def test_build_checkpoint_xml_round_trips():
    xml = ck.build_checkpoint_xml('c1', 'text & <more>', [dict(name='vda', checkpoint='bitmap'),
                                                          dict(name='vdb', checkpoint='no')])
    parsed = ck.parse_checkpoint_xml(xml)
    assert parsed['name'] == 'c1'
    assert parsed['description'] == 'text & <more>'
    assert [(d['name'], d['checkpoint']) for d in parsed['disks']] == [('vda', 'bitmap'), ('vdb', 'no')]


def test_build_checkpoint_xml_without_disks_leaves_them_to_libvirt():
    xml = ck.build_checkpoint_xml('c1')
    assert '<disks' not in xml
    assert '<description' not in xml


def test_build_checkpoint_xml_for_redefine_as_the_backup_engine_writes_it():
    xml = ck.build_checkpoint_xml('c2', 'd', [dict(name='vda', checkpoint='bitmap', bitmap='b1'),
                                              dict(name='vdc', checkpoint='no')],
                                  parent='c1', creation_time=1700000000.5)
    assert xml == ('<domaincheckpoint><name>c2</name><description>d</description>'
                   '<parent><name>c1</name></parent><creationTime>1700000000</creationTime>'
                   '<disks><disk name="vda" checkpoint="bitmap" bitmap="b1"/>'
                   '<disk name="vdc" checkpoint="no"/></disks></domaincheckpoint>')
    parsed = ck.parse_checkpoint_xml(xml)
    assert (parsed['parent'], parsed['creation_time']) == ('c1', 1700000000)
    assert [d['bitmap'] for d in parsed['disks']] == ['b1', None]


def test_set_description_adds_replaces_and_removes():
    added = ck.set_description('<domaincheckpoint><name>a</name><creationTime>1</creationTime></domaincheckpoint>', 'new')
    assert ck.parse_checkpoint_xml(added)['description'] == 'new'
    assert added.index('<name>') < added.index('<description>') < added.index('<creationTime>')
    replaced = ck.set_description(SAMPLE_XML, 'other')
    assert ck.parse_checkpoint_xml(replaced)['description'] == 'other'
    removed = ck.set_description(SAMPLE_XML, '')
    assert ck.parse_checkpoint_xml(removed)['description'] is None
    assert ck.parse_checkpoint_xml(removed)['disks'] == ck.parse_checkpoint_xml(SAMPLE_XML)['disks']


def test_set_description_keeps_the_domain_copy_byte_for_byte():
    xml = """<domaincheckpoint>
  <name>c1</name>
  <creationTime>1</creationTime>
  <disks>
    <disk name='vda' checkpoint='bitmap' bitmap='c1'/>
  </disks>
  <domain type='qemu' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>
    <name>d</name>
    <description>the domain's own</description>
    <qemu:commandline><qemu:arg value='-x'/></qemu:commandline>
  </domain>
</domaincheckpoint>
"""
    with_text = ck.set_description(xml, 'a & <b>')
    assert '  <name>c1</name>\n  <description>a &amp; &lt;b&gt;</description>\n  <creationTime>' in with_text
    assert with_text.endswith(xml[xml.index('<creationTime>'):])
    assert ck.parse_checkpoint_xml(with_text)['description'] == 'a & <b>'
    assert ck.set_description(ck.set_description(with_text, 'other'), '') == xml


def test_set_description_needs_creation_time():
    with pytest.raises(ck.CheckpointError):
        ck.set_description('<domaincheckpoint><name>a</name></domaincheckpoint>', 'x')


def test_domain_disks(dom):
    disks = dict((d.name, d) for d in ck.domain_disks(dom))
    assert sorted(disks) == ['hdc', 'hdd', 'vda', 'vdb', 'vdc']
    assert disks['vda'].format == 'qcow2'
    assert disks['vdc'].format == 'raw'
    assert disks['vda'].source.endswith('-a.qcow2')
    assert disks['hdc'].readonly and disks['hdc'].device == 'cdrom'
    assert disks['hdd'].source is None
    assert not disks['vda'].readonly


# ---------------------------------------------------------------------------------------------
# The prediction agrees with what libvirt does


@pytest.mark.parametrize('requested', [
    QCOW2_ONLY,
    [dict(name='vdb', checkpoint='bitmap')],
    [dict(name='vda', checkpoint='no'), dict(name='vdc', checkpoint='no')],
])
def test_predict_disks_matches_libvirt(dom, requested):
    predicted = ck.predict_disks(ck.domain_disks(dom), requested)
    chk = dom.checkpointCreateXML(ck.build_checkpoint_xml('p', disks=requested))
    actual = ck.parse_checkpoint_xml(chk.getXMLDesc(0))['disks']
    assert sorted((d['name'], d['checkpoint']) for d in actual) == \
        sorted((d['name'], d['checkpoint']) for d in predicted)


def test_predict_disks_without_request_skips_readonly_and_empty(conn):
    # Without <disks> libvirt would give the raw disk a bitmap too; the test driver does not
    # check formats, so compare on a domain with qcow2 disks only.
    name = 'it-ck-unit-%d-%d' % (os.getpid(), next(_counter))
    xml = DOMAIN_XML.format(name=name).replace("type='raw'/>\n      <source file='/images/%s-c.raw'" % name,
                                               "type='qcow2'/>\n      <source file='/images/%s-c.qcow2'" % name)
    d = conn.conn.defineXML(xml)
    d.create()
    try:
        predicted = ck.predict_disks(ck.domain_disks(d))
        assert dict((p['name'], p['checkpoint']) for p in predicted) == dict(
            vda='bitmap', vdb='bitmap', vdc='bitmap', hdc='no', hdd='no')
        result = present(conn, d, name='all')
        assert result['changed']
        assert sorted((x['name'], x['checkpoint']) for x in result['checkpoint']['disks']) == \
            sorted((p['name'], p['checkpoint']) for p in predicted)
    finally:
        d.checkpointLookupByName('all').delete(libvirt.VIR_DOMAIN_CHECKPOINT_DELETE_METADATA_ONLY)
        d.destroy()
        d.undefine()


# ---------------------------------------------------------------------------------------------
# state=present


def test_create_check_mode_then_real_then_idempotent(conn, dom):
    args = dict(name='c1', description='first', disks=QCOW2_ONLY)

    predicted = present(conn, dom, check_mode=True, **args)
    assert predicted['changed']
    assert names(dom) == []
    assert predicted['diff']['before'] == {}

    created = present(conn, dom, **args)
    assert created['changed']
    assert names(dom) == ['c1']
    chk = created['checkpoint']
    assert chk['name'] == 'c1'
    assert chk['description'] == 'first'
    assert chk['parent'] is None
    assert isinstance(chk['creation_time'], int)
    assert chk['xml'] == dom.checkpointLookupByName('c1').getXMLDesc(0)
    # Check mode predicted the disks libvirt gave it, and the same diff apart from what only
    # libvirt knows.
    assert predicted['checkpoint']['disks'] == chk['disks']
    assert dict((d['name'], (d['checkpoint'], d['bitmap'])) for d in chk['disks']) == dict(
        vda=('bitmap', 'c1'), vdb=('bitmap', 'c1'), vdc=('no', None), hdc=('no', None), hdd=('no', None))
    for key in ('name', 'description', 'disks'):
        assert predicted['diff']['after'][key] == created['diff']['after'][key]

    again_check = present(conn, dom, check_mode=True, **args)
    again = present(conn, dom, **args)
    assert not again_check['changed'] and not again['changed']
    assert again['checkpoint'] == chk
    assert again['diff']['before'] == again['diff']['after']


def test_second_checkpoint_has_the_first_as_parent(conn, dom):
    present(conn, dom, name='c1', disks=QCOW2_ONLY)
    second = present(conn, dom, name='c2', disks=QCOW2_ONLY)
    assert second['checkpoint']['parent'] == 'c1'


def test_unmanaged_properties_are_not_compared(conn, dom):
    present(conn, dom, name='c1', description='kept', disks=QCOW2_ONLY)
    # No description, no disks: nothing to compare, nothing to change.
    assert not present(conn, dom, name='c1')['changed']
    # Only the listed disks are compared.
    assert not present(conn, dom, name='c1', disks=[dict(name='vdb', checkpoint='bitmap')])['changed']
    assert not present(conn, dom, name='c1', disks=[dict(name='hdc', checkpoint='no')])['changed']


def test_description_change_redefines_metadata_only(conn, dom):
    created = present(conn, dom, name='c1', description='old', disks=QCOW2_ONLY)['checkpoint']

    predicted = present(conn, dom, check_mode=True, name='c1', description='new')
    assert predicted['changed']
    assert dom.checkpointLookupByName('c1').getXMLDesc(0) == created['xml']
    assert predicted['diff']['before']['description'] == 'old'
    assert predicted['diff']['after']['description'] == 'new'

    changed = present(conn, dom, name='c1', description='new')
    assert changed['changed']
    after = changed['checkpoint']
    assert after['description'] == 'new'
    assert after['creation_time'] == created['creation_time']
    assert after['disks'] == created['disks']
    assert predicted['diff']['after'] == changed['diff']['after']
    assert not present(conn, dom, name='c1', description='new')['changed']

    removed = present(conn, dom, name='c1', description='')
    assert removed['changed'] and removed['checkpoint']['description'] is None
    assert not present(conn, dom, name='c1', description='')['changed']


def test_different_disks_on_existing_checkpoint_fail_without_change(conn, dom):
    created = present(conn, dom, name='c1', disks=QCOW2_ONLY)['checkpoint']
    for check_mode in (True, False):
        with pytest.raises(ck.CheckpointError) as err:
            present(conn, dom, check_mode=check_mode, name='c1', description='other',
                    disks=[dict(name='vda', checkpoint='no')])
        assert 'cannot be changed' in err.value.msg
        assert 'disk vda: checkpoint=bitmap, requested no' in err.value.msg
        assert 'Nothing was changed' in err.value.msg
    assert dom.checkpointLookupByName('c1').getXMLDesc(0) == created['xml']


def test_raw_disk_is_refused_before_libvirt_is_asked(conn, dom):
    for check_mode in (True, False):
        with pytest.raises(ck.CheckpointError) as err:
            present(conn, dom, check_mode=check_mode, name='c1')
        msg = err.value.msg
        assert 'disk vdc' in msg and 'format raw' in msg and '-c.raw' in msg and 'qcow2' in msg
        assert err.value.details['disks'] == ['vdc']
        with pytest.raises(ck.CheckpointError):
            present(conn, dom, check_mode=check_mode, name='c1', disks=[dict(name='vdc', checkpoint='bitmap')])
    # The test driver would have accepted it: the refusal is ours.
    assert names(dom) == []


@pytest.mark.parametrize('disks, fragment', [
    ([dict(name='vdz', checkpoint='bitmap')], 'has no disk vdz; its disks are: vda, vdb, vdc, hdc, hdd'),
    ([dict(name='vda', checkpoint='bitmap'), dict(name='vda', checkpoint='no')], 'disk vda is listed twice'),
])
def test_bad_disk_lists(conn, dom, disks, fragment):
    with pytest.raises(ck.CheckpointError) as err:
        present(conn, dom, check_mode=True, name='c1', disks=disks)
    assert fragment in err.value.msg


def test_shut_off_domain_cannot_get_a_checkpoint(conn, dom):
    dom.destroy()
    for check_mode in (True, False):
        with pytest.raises(ck.CheckpointError) as err:
            present(conn, dom, check_mode=check_mode, name='c1', disks=QCOW2_ONLY)
        assert 'running' in err.value.msg and dom.name() in err.value.msg


def test_missing_domain_is_an_error_naming_it(conn):
    with pytest.raises(VirtError) as err:
        run(conn, 'it-ck-unit-no-such-domain', name='c1')
    assert 'it-ck-unit-no-such-domain' in err.value.msg
    with pytest.raises(VirtError) as err:
        run(conn, 'it-ck-unit-no-such-domain', name='c1', state='absent')
    assert 'it-ck-unit-no-such-domain' in err.value.msg


# ---------------------------------------------------------------------------------------------
# state=absent


def test_absent_on_missing_checkpoint_is_ok(conn, dom):
    result = absent(conn, dom, 'nope')
    assert not result['changed']
    assert result['checkpoint'] is None and result['deleted'] == []


def test_delete_check_mode_then_real_then_idempotent(conn, dom):
    created = present(conn, dom, name='c1', disks=QCOW2_ONLY)['checkpoint']
    predicted = absent(conn, dom, 'c1', check_mode=True)
    assert predicted['changed'] and names(dom) == ['c1']
    assert predicted['deleted'] == ['c1']
    assert predicted['diff'] == dict(before=ck._comparable(created), after={})
    result = absent(conn, dom, 'c1')
    assert result['changed'] and names(dom) == []
    assert result['checkpoint'] == created
    assert not absent(conn, dom, 'c1', check_mode=True)['changed']
    assert not absent(conn, dom, 'c1')['changed']


def test_delete_without_children_reparents_them(conn, dom):
    for n in ('c1', 'c2', 'c3'):
        present(conn, dom, name=n, disks=QCOW2_ONLY)
    assert absent(conn, dom, 'c2')['deleted'] == ['c2']
    assert names(dom) == ['c1', 'c3']
    assert ck.checkpoints_info(dom, 'c3')[0]['parent'] == 'c1'


def test_delete_with_children(conn, dom):
    for n in ('c1', 'c2', 'c3'):
        present(conn, dom, name=n, disks=QCOW2_ONLY)
    predicted = absent(conn, dom, 'c2', check_mode=True, children=True)
    assert predicted['deleted'] == ['c2', 'c3']
    assert predicted['diff']['before']['descendants'] == ['c3']
    assert names(dom) == ['c1', 'c2', 'c3']
    result = absent(conn, dom, 'c2', children=True)
    assert result['changed'] and result['deleted'] == ['c2', 'c3']
    assert 'checkpoints c2, c3 deleted' in result['msg']
    assert names(dom) == ['c1']


def test_metadata_only_delete_then_redefine(conn, dom):
    present(conn, dom, name='c1', disks=QCOW2_ONLY)
    saved = present(conn, dom, name='c2', description='keep me', disks=QCOW2_ONLY)['checkpoint']
    result = absent(conn, dom, 'c2', metadata_only=True)
    assert result['changed'] and 'metadata of checkpoint c2' in result['msg']
    assert names(dom) == ['c1']

    predicted = present(conn, dom, check_mode=True, redefine_xml=saved['xml'])
    assert predicted['changed'] and names(dom) == ['c1']
    redefined = present(conn, dom, redefine_xml=saved['xml'])
    assert redefined['changed']
    assert names(dom) == ['c1', 'c2']
    for key in ('name', 'description', 'parent', 'creation_time', 'disks'):
        assert redefined['checkpoint'][key] == saved[key]
        assert predicted['checkpoint'][key] == saved[key]
    assert predicted['diff']['after'] == redefined['diff']['after']

    assert not present(conn, dom, check_mode=True, redefine_xml=saved['xml'])['changed']
    assert not present(conn, dom, redefine_xml=saved['xml'], name='c2')['changed']


def test_redefine_replaces_differing_metadata(conn, dom):
    saved = present(conn, dom, name='c1', description='one', disks=QCOW2_ONLY)['checkpoint']
    xml = ck.set_description(saved['xml'], 'two')
    result = present(conn, dom, redefine_xml=xml)
    assert result['changed']
    assert result['checkpoint']['description'] == 'two'
    assert result['checkpoint']['creation_time'] == saved['creation_time']


@pytest.mark.parametrize('xml, fragment', [
    ('<domaincheckpoint><name>c9</name', 'not well-formed'),
    ('<domaincheckpoint><name>c9</name></domaincheckpoint>', 'no <creationTime>'),
    ('<domaincheckpoint><creationTime>1</creationTime></domaincheckpoint>', 'no <name>'),
    ('<domainsnapshot><name>c9</name></domainsnapshot>', 'expected <domaincheckpoint>'),
])
def test_malformed_redefine_xml(conn, dom, xml, fragment):
    with pytest.raises(ck.CheckpointError) as err:
        present(conn, dom, redefine_xml=xml)
    assert fragment in err.value.msg
    assert names(dom) == []


def test_redefine_name_mismatch(conn, dom):
    saved = present(conn, dom, name='c1', disks=QCOW2_ONLY)['checkpoint']
    with pytest.raises(ck.CheckpointError) as err:
        present(conn, dom, name='other', redefine_xml=saved['xml'])
    assert 'name is other but redefine_xml describes checkpoint c1' in err.value.msg


def test_redefine_error_from_libvirt_is_translated(conn, dom):
    # A parent libvirt does not know.
    xml = SAMPLE_XML.replace('ck1', 'no-such-parent').replace('ck2', 'c5')
    with pytest.raises(VirtError) as err:
        present(conn, dom, redefine_xml=xml)
    assert err.value.msg.startswith('redefining checkpoint c5 on domain %s failed' % dom.name())
    assert err.value.code is not None


def test_shut_off_domain_delete_and_redefine(conn, dom):
    saved = present(conn, dom, name='c1', disks=QCOW2_ONLY)['checkpoint']
    dom.destroy()
    # The test driver deletes offline; the QEMU driver refuses (checked in integration tests).
    assert ck.offline_delete_supported(dom)
    assert not ck.redefine_validate_supported(dom)
    # No REDEFINE_VALIDATE on a shut-off domain; the test driver then refuses the redefinition
    # itself (the QEMU driver accepts it), and the error names what and where.
    assert absent(conn, dom, 'c1', metadata_only=True)['changed']
    with pytest.raises(VirtError) as err:
        present(conn, dom, redefine_xml=saved['xml'])
    assert 'redefining checkpoint c1 on domain %s failed' % dom.name() in err.value.msg
    dom.create()
    assert present(conn, dom, redefine_xml=saved['xml'])['changed']
    dom.destroy()
    assert absent(conn, dom, 'c1')['changed']
    assert names(dom) == []


# ---------------------------------------------------------------------------------------------
# Reading


def test_checkpoints_info_tree(conn, dom):
    assert ck.checkpoints_info(dom) == []
    for n in ('c1', 'c2'):
        present(conn, dom, name=n, disks=QCOW2_ONLY)
    c2xml = dom.checkpointLookupByName('c2').getXMLDesc(0)
    info = ck.checkpoints_info(dom)
    assert [(c['name'], c['parent']) for c in info] == [('c1', None), ('c2', 'c1')]
    assert info[1]['xml'] == c2xml
    # Running on the test driver: sizes asked for, none reported.
    assert info[0]['size'] == {}
    one = ck.checkpoints_info(dom, 'c2')
    assert one == [info[1]]
    assert ck.checkpoints_info(dom, 'nope') == []
    dom.destroy()
    assert [c['size'] for c in ck.checkpoints_info(dom)] == [None, None]


def test_descendants_in_topological_order(conn, dom):
    for n in ('c1', 'c2', 'c3', 'c4'):
        present(conn, dom, name=n, disks=QCOW2_ONLY)
    assert ck.descendants(dom, dom.checkpointLookupByName('c1')) == ['c2', 'c3', 'c4']
    assert ck.descendants(dom, dom.checkpointLookupByName('c4')) == []


def test_lookup_checkpoint(conn, dom):
    assert ck.lookup_checkpoint(dom, 'c1') is None
    present(conn, dom, name='c1', disks=QCOW2_ONLY)
    assert ck.lookup_checkpoint(dom, 'c1').getName() == 'c1'


# ---------------------------------------------------------------------------------------------
# Offline bitmap handling with the real qemu-img (what deleting a checkpoint of a shut-off QEMU
# domain does)

def _qemu_img(*args):
    import subprocess
    subprocess.run(['qemu-img'] + list(args), check=True, stdout=subprocess.DEVNULL)


@pytest.mark.skipif(not __import__('shutil').which('qemu-img'), reason='qemu-img is not installed')
def test_bitmaps_found_and_removed_along_the_backing_chain(tmp_path):
    base = str(tmp_path / 'base.qcow2')
    top = str(tmp_path / 'top.qcow2')
    _qemu_img('create', '-q', '-f', 'qcow2', base, '1M')
    ck.add_bitmap(base, 'c1')
    _qemu_img('create', '-q', '-f', 'qcow2', '-b', base, '-F', 'qcow2', top)
    ck.add_bitmap(top, 'c1')
    ck.add_bitmap(top, 'c2')
    assert ck.images_with_bitmap(top, 'c1') == [top, base]
    assert ck.images_with_bitmap(top, 'c2') == [top]
    assert ck.images_with_bitmap(top, 'c3') == []
    assert ck.remove_bitmap(base, 'c1', strict=True)
    assert ck.images_with_bitmap(top, 'c1') == [top]
    # clean-up of a bitmap that is gone already is quiet, a strict removal says what failed
    assert not ck.remove_bitmap(base, 'c1')
    with pytest.raises(ck.CheckpointError, match='cannot remove bitmap c1 from .*base.qcow2'):
        ck.remove_bitmap(base, 'c1', strict=True)
    with pytest.raises(ck.CheckpointError, match='cannot add bitmap c2 to .*top.qcow2'):
        ck.add_bitmap(top, 'c2')
    with pytest.raises(ck.CheckpointError, match='cannot read the bitmaps of .*missing.qcow2'):
        ck.images_with_bitmap(str(tmp_path / 'missing.qcow2'), 'c1')


def test_test_driver_needs_no_offline_plan(conn, dom):
    chk = ck.create_checkpoint(dom, 'c1', disks=[dict(name='vda'), dict(name='vdc', checkpoint='no')])
    dom.destroy()
    # the test driver deletes checkpoints of a shut-off domain itself: no qemu-img step
    assert ck.plan_offline_delete(dom, chk) is None


@pytest.mark.skipif(not shutil.which('qemu-img'), reason='qemu-img is not installed')
def test_a_bitmap_name_that_looks_like_an_option_is_a_name(tmp_path):
    """qemu-img gets '--' before names: a checkpoint called -fraw is a bitmap called -fraw."""
    image = str(tmp_path / 'd.qcow2')
    subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2', image, '1M'], check=True)
    ck.add_bitmap(image, '-fraw')
    assert ck.images_with_bitmap(image, '-fraw') == [image]
    assert ck.remove_bitmap(image, '-fraw', strict=True)
    assert ck.images_with_bitmap(image, '-fraw') == []
