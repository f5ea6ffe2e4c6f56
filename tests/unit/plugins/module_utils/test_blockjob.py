# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests of the block job engine: chain parsing from live XML saved from qemu:///system,
the planners (what is left to do, the chain afterwards), option checks, and the failures that
come before any job, against libvirt's test:///default driver (no mocks).

The test driver has no block jobs; starting, waiting and pivoting are covered by
tests/integration/targets/virt_blockjob and tests/functional/test_blockjob.py.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import itertools

import pytest

libvirt = pytest.importorskip('libvirt')

from ansible_collections.virtops.libvirt.plugins.module_utils import _blockjob as bj  # noqa: E402
from ansible_collections.virtops.libvirt.plugins.module_utils._libvirt import VirtError  # noqa: E402

URI = 'test:///default'
_counter = itertools.count()
D = '/var/lib/libvirt/images/it-bj-exp/'

# Live XML of a running domain on a three-image chain, and during an active commit (libvirt 9.0).
LIVE_XML = """<domain type='qemu' id='7'>
  <name>it-bj-exp</name>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='/var/lib/libvirt/images/it-bj-exp/top.qcow2' index='1'/>
      <backingStore type='file' index='2'>
        <format type='qcow2'/>
        <source file='/var/lib/libvirt/images/it-bj-exp/mid.qcow2'/>
        <backingStore type='file' index='3'>
          <format type='raw'/>
          <source file='/var/lib/libvirt/images/it-bj-exp/base.img'/>
          <backingStore/>
        </backingStore>
      </backingStore>
      <target dev='vda' bus='virtio'/>
      <alias name='virtio-disk0'/>
    </disk>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='/var/lib/libvirt/images/it-bj-exp/data.qcow2' index='4'/>
      <backingStore/>
      <mirror type='file' job='active-commit' ready='yes'>
        <format type='qcow2'/>
        <source file='/var/lib/libvirt/images/it-bj-exp/data-base.qcow2'/>
      </mirror>
      <target dev='vdb' bus='virtio'/>
    </disk>
    <disk type='file' device='cdrom'>
      <driver name='qemu' type='raw'/>
      <target dev='sda' bus='sata'/>
      <readonly/>
    </disk>
    <disk type='block' device='disk'>
      <driver name='qemu' type='raw'/>
      <source dev='/dev/vg0/lv1' index='5'/>
      <backingStore/>
      <mirror type='file' file='/srv/copy.raw' format='raw' job='copy'>
        <format type='raw'/>
        <source file='/srv/copy.raw'/>
      </mirror>
      <target dev='vdc' bus='virtio'/>
    </disk>
  </devices>
</domain>
"""

CHAIN = [dict(path=D + p, format=f, index=None) for p, f in
         (('top.qcow2', 'qcow2'), ('mid.qcow2', 'qcow2'), ('base.img', 'raw'))]
LABEL = 'disk vda of domain d'


def paths(chain):
    return [layer['path'] for layer in chain]


# -- parsing --------------------------------------------------------------------------------------

def test_parse_disks_reads_chain_active_first_and_mirrors():
    disks = dict((d['name'], d) for d in bj.parse_disks(LIVE_XML))
    assert sorted(disks) == ['sda', 'vda', 'vdb', 'vdc']
    assert disks['vda']['chain'] == [
        dict(path=D + 'top.qcow2', format='qcow2', index=1),
        dict(path=D + 'mid.qcow2', format='qcow2', index=2),
        dict(path=D + 'base.img', format='raw', index=3),
    ]
    assert disks['vda']['mirror'] is None
    assert disks['vdb']['mirror'] == dict(path=D + 'data-base.qcow2', format='qcow2',
                                          job='active-commit', ready=True)
    assert disks['sda']['chain'] == []
    assert disks['vdc']['chain'] == [dict(path='/dev/vg0/lv1', format='raw', index=5)]
    assert disks['vdc']['mirror'] == dict(path='/srv/copy.raw', format='raw', job='copy', ready=False)


def test_find_disk_by_target_or_active_path():
    disks = bj.parse_disks(LIVE_XML)
    assert bj.find_disk(disks, 'vdb', 'd')['name'] == 'vdb'
    assert bj.find_disk(disks, D + 'top.qcow2', 'd')['name'] == 'vda'
    assert bj.find_disk(disks, D + '/./top.qcow2', 'd')['name'] == 'vda'
    with pytest.raises(VirtError) as exc:
        bj.find_disk(disks, D + 'mid.qcow2', 'd')     # a backing image is not the disk's name
    assert exc.value.msg.startswith('domain d has no disk %smid.qcow2 (disks: vda, vdb, sda, vdc' % D)


def test_locate_by_path_and_position():
    assert bj.locate(CHAIN, D + 'mid.qcow2', 'base', LABEL) == 1
    assert bj.locate(CHAIN, '2', 'base', LABEL) == 2
    assert bj.locate(CHAIN, D + 'other.qcow2', 'base', LABEL) is None
    with pytest.raises(VirtError, match='position 3 is beyond the end of the backing chain'):
        bj.locate(CHAIN, 3, 'base', LABEL)


# -- planners -------------------------------------------------------------------------------------

def test_plan_pull_everything_then_nothing():
    plan = bj.plan_pull(CHAIN, LABEL)
    assert plan.changed and plan.args['base'] is None
    assert paths(plan.chain_after) == [D + 'top.qcow2']
    again = bj.plan_pull(plan.chain_after, LABEL)
    assert not again.changed and again.msg == '%s has no backing file: nothing to pull' % LABEL


def test_plan_pull_down_to_base():
    plan = bj.plan_pull(CHAIN, LABEL, base=D + 'base.img')
    assert plan.changed and plan.args['base'] == D + 'base.img'
    assert paths(plan.chain_after) == [D + 'top.qcow2', D + 'base.img']
    assert not bj.plan_pull(plan.chain_after, LABEL, base=D + 'base.img').changed
    assert not bj.plan_pull(CHAIN, LABEL, base='1').changed
    with pytest.raises(VirtError, match='base .*top.qcow2 is the active image'):
        bj.plan_pull(CHAIN, LABEL, base=D + 'top.qcow2')
    with pytest.raises(VirtError, match='base /x.qcow2 is not in the backing chain'):
        bj.plan_pull(CHAIN, LABEL, base='/x.qcow2')


def test_plan_commit_active_whole_chain():
    plan = bj.plan_commit(CHAIN, LABEL)
    assert plan.changed and plan.args['active']
    assert plan.args['top'] == D + 'top.qcow2' and plan.args['base'] == D + 'base.img'
    assert plan.args['committed'] == [D + 'top.qcow2', D + 'mid.qcow2']
    assert paths(plan.chain_after) == [D + 'base.img']
    again = bj.plan_commit(plan.chain_after, LABEL)
    assert not again.changed and 'nothing above %sbase.img to commit' % D in again.msg


def test_plan_commit_active_without_pivot_keeps_the_chain():
    plan = bj.plan_commit(CHAIN, LABEL, pivot=False)
    assert plan.changed and paths(plan.chain_after) == paths(CHAIN)


def test_plan_commit_intermediate():
    plan = bj.plan_commit(CHAIN, LABEL, top=D + 'mid.qcow2')
    assert plan.changed and not plan.args['active']
    assert paths(plan.chain_after) == [D + 'top.qcow2', D + 'base.img']
    again = bj.plan_commit(plan.chain_after, LABEL, top=D + 'mid.qcow2')
    assert not again.changed and 'is not in the backing chain (any more)' in again.msg
    by_position = bj.plan_commit(CHAIN, LABEL, top='1', base='2')
    assert by_position.args['top'] == D + 'mid.qcow2' and by_position.args['base'] == D + 'base.img'


def test_plan_commit_bad_images():
    with pytest.raises(VirtError, match='base /nowhere.qcow2 is not in the backing chain'):
        bj.plan_commit(CHAIN, LABEL, base='/nowhere.qcow2')
    with pytest.raises(VirtError, match='is above top'):
        bj.plan_commit(CHAIN, LABEL, top=D + 'base.img', base=D + 'mid.qcow2')


def test_plan_copy():
    plan = bj.plan_copy(CHAIN, LABEL, '/srv/new.qcow2', dest_exists=False)
    assert plan.changed and paths(plan.chain_after) == ['/srv/new.qcow2']
    shallow = bj.plan_copy(CHAIN, LABEL, '/srv/new.qcow2', shallow=True, dest_exists=False)
    assert paths(shallow.chain_after) == ['/srv/new.qcow2', D + 'mid.qcow2', D + 'base.img']
    keep = bj.plan_copy(CHAIN, LABEL, '/srv/new.qcow2', pivot=False, dest_exists=False)
    assert keep.changed and paths(keep.chain_after) == paths(CHAIN)
    # Pivoted already: nothing to do.
    assert not bj.plan_copy(plan.chain_after, LABEL, '/srv/new.qcow2', dest_exists=True).changed
    # Without pivot an existing destination is the copy made before.
    assert not bj.plan_copy(CHAIN, LABEL, '/srv/new.qcow2', pivot=False, dest_exists=True).changed
    assert bj.plan_copy(CHAIN, LABEL, '/srv/new.qcow2', pivot=False, reuse_external=True,
                        dest_exists=True).changed
    with pytest.raises(VirtError, match='the copy destination /srv/new.qcow2 exists'):
        bj.plan_copy(CHAIN, LABEL, '/srv/new.qcow2', dest_exists=True)
    assert bj.plan_copy(CHAIN, LABEL, '/srv/new.qcow2', reuse_external=True, dest_exists=True).changed


def test_plan_resize():
    assert not bj.plan_resize(1 << 30, 1 << 30, LABEL).changed
    grow = bj.plan_resize(1 << 30, 2 << 30, LABEL)
    assert grow.changed and grow.msg == 'grow %s from 1073741824 to 2147483648 bytes' % LABEL
    with pytest.raises(VirtError, match='shrinking from 2147483648 to 1073741824 bytes'):
        bj.plan_resize(2 << 30, 1 << 30, LABEL)
    assert bj.plan_resize(2 << 30, 1 << 30, LABEL, allow_shrink=True).changed


def test_job_facts():
    assert bj.job_facts({}) is None
    facts = bj.job_facts(dict(type=4, cur=512, end=2048, bandwidth=1048576))
    assert facts == dict(type='active-commit', cur=512, end=2048, bandwidth=1048576, progress=25.0)
    assert bj.job_facts(dict(type=1, cur=0, end=0, bandwidth=0))['progress'] == 0.0


# -- options --------------------------------------------------------------------------------------

def params(**kw):
    p = dict(name='d', disk='vda', state='present', operation=None, base=None, top=None, pivot=True,
             delete=False, dest=None, format=None, shallow=False, reuse_external=False, granularity=None,
             buf_size=None, size=None, allow_shrink=False, bandwidth=None, wait=True, timeout=60)
    p.update(kw)
    return p


@pytest.mark.parametrize('kw, message', [
    (dict(), 'state present needs operation'),
    (dict(operation='pull', top='1'), 'top applies only to operation commit'),
    (dict(operation='commit', dest='/x'), 'dest applies only to operation copy'),
    (dict(operation='copy', size='1G'), 'size applies only to operation resize'),
    (dict(operation='resize', bandwidth='1M'), 'bandwidth does not apply to operation resize'),
    (dict(operation='pull', bandwidth='fast'), "bandwidth 'fast' is not a size"),
    (dict(operation='resize', size='10X'), "size '10X' has an unknown unit"),
    (dict(state='absent', base='1'), 'base applies only to operation commit and pull with state present'),
    (dict(operation='pull', timeout=0), 'timeout must be a positive number'),
])
def test_check_options_refuses(kw, message):
    with pytest.raises(VirtError) as exc:
        bj.check_options(params(**kw))
    assert message in exc.value.msg


def test_sizes_and_bandwidth():
    assert bj.parse_bandwidth('50M') == 50 * 1024 * 1024
    assert bj.parse_bandwidth('1000') == 1000
    assert bj.parse_bandwidth(None) is None
    bj.check_options(params(operation='resize', size='10GB'))


# -- against test:///default -----------------------------------------------------------------------


def ensure(conn, p, check_mode=False):
    """virt_blockjob's manager as the module runs it, in diff mode."""
    return bj.BlockJobManager(conn, p, check_mode=check_mode, diff_mode=True).run()


def _define(conn, active):
    name = 'it-bj-unit-%d' % next(_counter)
    dom = conn.conn.defineXML(
        "<domain type='test'><name>%s</name><memory unit='MiB'>64</memory><os><type>hvm</type></os>"
        "<devices><disk type='file' device='disk'><driver name='qemu' type='qcow2'/>"
        "<source file='/images/%s.qcow2'/><target dev='vda' bus='virtio'/></disk></devices></domain>"
        % (name, name))
    if active:
        dom.create()
    return dom


def _cleanup(dom):
    if dom.isActive():
        dom.destroy()
    dom.undefine()


def test_unknown_domain(conn):
    with pytest.raises(VirtError, match='domain it-bj-nowhere not found on test:///default'):
        ensure(conn, params(name='it-bj-nowhere', operation='pull'))


def test_shut_off_domain_is_refused_and_absent_is_fine(conn):
    dom = _define(conn, active=False)
    try:
        with pytest.raises(VirtError) as exc:
            ensure(conn, params(name=dom.name(), operation='resize', size='1G'), check_mode=True)
        assert exc.value.msg.startswith('domain %s is not running; block jobs (resize) need a running '
                                        'domain' % dom.name())
        assert 'virtops.libvirt.virt_volume' in exc.value.msg
        res = ensure(conn, params(name=dom.name(), state='absent'))
        assert not res['changed'] and res['chain_after'] == ['/images/%s.qcow2' % dom.name()]
        with pytest.raises(VirtError, match='has no disk vdq'):
            ensure(conn, params(name=dom.name(), state='absent', disk='vdq'))
    finally:
        _cleanup(dom)


def test_unknown_disk_on_running_domain(conn):
    dom = _define(conn, active=True)
    try:
        with pytest.raises(VirtError) as exc:
            ensure(conn, params(name=dom.name(), operation='pull', disk='vdz'), check_mode=True)
        assert exc.value.msg == ('domain %s has no disk vdz (disks: vda; give a target like vda or the '
                                 'path of the active image)' % dom.name())
    finally:
        _cleanup(dom)
