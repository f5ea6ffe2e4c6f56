# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""virt_blockjob on a real running TCG domain, byte for byte: what the guest sees on its disk
(read with qemu-img -U after a flush) survives an intermediate commit with delete, a shallow
copy, a pull that flattens the chain, an active commit without pivot, and writes made while a
copy runs. The integration target covers the rest (check mode, errors, abort, timeout)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import shutil

import libvirt_qemu
import pytest
from lxml import etree

from support.guests import domain_xml, remove_domain, unique
from support.host import MiB, sh
from support.images import assert_same_content, image_info, same_content
from support.modules import ok, run_module


class ChainGuest:
    """A domain whose vda runs on base <- mid <- top: base holds 0x11 at 0, mid 0x22 at 1 MiB,
    top 0x33 at 2 MiB (written by the running guest)."""

    def __init__(self, lv, workroot):
        self.lv = lv
        self.name = unique('it-bj-ft')
        self.dir = workroot / self.name
        self.dir.mkdir(mode=0o755)
        self.base, self.mid, self.top = (str(self.dir / n) for n in ('base.qcow2', 'mid.qcow2', 'top.qcow2'))
        sh('qemu-img', 'create', '-q', '-f', 'qcow2', self.base, 16 * MiB)
        sh('qemu-io', '-f', 'qcow2', '-c', 'write -P 0x11 0 1M', self.base)
        sh('qemu-img', 'create', '-q', '-f', 'qcow2', '-b', self.base, '-F', 'qcow2', self.mid)
        sh('qemu-io', '-f', 'qcow2', '-c', 'write -P 0x22 1M 1M', self.mid)
        sh('qemu-img', 'create', '-q', '-f', 'qcow2', '-b', self.mid, '-F', 'qcow2', self.top)
        lv.get().defineXML(domain_xml(self.name, [('vda', self.top)]))
        self.dom = lv.get().lookupByName(self.name)
        self.dom.create()
        self.write('write -P 0x33 2M 1M')

    def write(self, command):
        for cmd in (command, 'flush'):
            libvirt_qemu.qemuMonitorCommand(
                self.dom, 'qemu-io -d /machine/peripheral/virtio-disk0/virtio-backend "%s"' % cmd,
                libvirt_qemu.VIR_DOMAIN_QEMU_MONITOR_COMMAND_HMP)

    def reference(self, tag):
        """What the guest sees on vda now, as a raw file."""
        self.write('flush')
        path = str(self.dir / ('%s.raw' % tag))
        sh('qemu-img', 'convert', '-U', '-O', 'raw', self.active(), path)
        return path

    def active(self):
        root = etree.fromstring(self.dom.XMLDesc(0).encode())
        return root.find('devices/disk/source').get('file')

    def run(self, check_mode=False, **args):
        return run_module('virt_blockjob', dict(args, name=self.name, disk='vda'), check_mode=check_mode)

    def remove(self):
        remove_domain(self.lv, self.name)
        shutil.rmtree(str(self.dir), ignore_errors=True)


@pytest.fixture
def chain_guest(conn, workroot):
    g = ChainGuest(conn, workroot)
    try:
        yield g
    finally:
        g.remove()


def assert_holds(reference, image):
    assert_same_content(reference, image, 'qcow2')


def test_intermediate_commit_with_delete(chain_guest):
    g = chain_guest
    ref = g.reference('before')
    # The reference is what the three layers say together; a fresh base alone differs from it.
    assert not same_content(ref, g.base, 'qcow2')[0]
    res = ok(g.run(operation='commit', top=g.mid, base=g.base, delete=True))
    assert res['changed'] and res['job']['type'] == 'commit'
    assert res['chain_before'] == [g.top, g.mid, g.base]
    assert res['chain_after'] == [g.top, g.base]
    assert res['deleted'] == [g.mid]
    assert not os.path.exists(g.mid)
    assert_holds(ref, g.top)
    assert image_info(g.top)['backing-filename'] == g.base
    again = ok(g.run(operation='commit', top=g.mid, base=g.base, delete=True))
    assert not again['changed'] and again['job'] is None


def test_shallow_copy_then_flatten(chain_guest):
    g = chain_guest
    ref = g.reference('before')
    copy = str(g.dir / 'copy.qcow2')
    res = ok(g.run(operation='copy', dest=copy, shallow=True))
    assert res['chain_after'] == [copy, g.mid, g.base]
    info = image_info(copy)
    assert info['backing-filename'] == g.mid and info['format'] == 'qcow2'
    assert_holds(ref, copy)
    # Only the active image was copied: the 0x11 and 0x22 data stayed in the backing files.
    assert image_info(copy)['actual-size'] < 2 * MiB

    flat = ok(g.run(operation='pull'))
    assert flat['changed'] and flat['chain_after'] == [copy]
    g.write('flush')
    assert 'backing-filename' not in image_info(copy)
    assert_holds(ref, copy)
    assert not ok(g.run(operation='pull'))['changed']


def test_active_commit_without_pivot_keeps_the_overlays(chain_guest):
    g = chain_guest
    ref = g.reference('before')
    res = ok(g.run(operation='commit', pivot=False))
    assert res['changed'] and res['job']['type'] == 'active-commit'
    assert res['chain_after'] == res['chain_before'] == [g.top, g.mid, g.base]
    assert_holds(ref, g.base)      # every layer's data is in base now
    assert_holds(ref, g.top)       # and the guest still runs on top
    # Documented: not idempotent, the overlays stay and the next run commits again.
    assert ok(g.run(operation='commit', pivot=False))['changed']


def test_writes_during_a_copy_reach_the_copy(chain_guest):
    g = chain_guest
    dest = str(g.dir / 'moved.qcow2')
    started = ok(g.run(operation='copy', dest=dest, bandwidth='256K', wait=False))
    assert started['changed'] and started['job']['type'] == 'copy'
    g.write('write -P 0x44 3M 512K')        # while the mirror runs
    ref = g.reference('during')
    finished = ok(g.run(operation='copy', dest=dest, bandwidth='256K'))
    assert finished['changed'] and 'finished a job found running' in finished['msg']
    assert finished['chain_after'] == [dest]
    g.write('flush')
    assert_holds(ref, dest)
    assert not ok(g.run(operation='copy', dest=dest))['changed']
