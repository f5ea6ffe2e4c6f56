# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which error a module reports when its host cannot be reached AND an option is wrong.

The modules that manage a libvirt object have always opened the connection first, so the
connection error is what the user sees; the backup modules and virt_cloud_init_seed check their
options first (they also work where no libvirtd runs). The lifecycle base keeps both orders."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import importlib
import json

import pytest

pytest.importorskip('libvirt')
pytest.importorskip('lxml')

from ansible_collections.virtops.libvirt.tests.unit.plugins.modules.module_args import patch_module_args  # noqa: E402

# The test driver fails at once on a file that does not exist: no network, no timeout.
UNREACHABLE = 'test:///nonexistent-virtops-unit.xml'
CONNECT_FAILED = 'connecting to libvirt on %s failed' % UNREACHABLE

DOMAIN_XML = "<domain type='test'><name>d1</name><memory>1024</memory><os><type>hvm</type></os></domain>"
DISK = "<disk type='file' device='disk'><source file='/x.img'/><target dev='vdb'/></disk>"

CONNECTION_FIRST = [
    ('virt_domain', dict(name='d1', state='shutdown', timeout=-1)),
    ('virt_domain', dict(name='other', xml=DOMAIN_XML)),
    ('virt_domain', dict(xml='<domain')),
    ('virt_domain_device', dict(name='d1', xml='<disk')),
    ('virt_network', dict(name='other', xml="<network><name>n1</name></network>")),
    ('virt_pool', dict(name='other', xml="<pool type='dir'><name>p1</name><target><path>/p</path></target></pool>")),
    ('virt_nwfilter', dict(name='other', xml="<filter name='f1'/>")),
    ('virt_secret', dict(usage_type='ceph', usage_id='c1', value='***', value_encoding='base64')),
    ('virt_blockjob', dict(name='d1', disk='vda', operation='resize', size='lots')),
    ('virt_blockjob', dict(name='d1', disk='vda', operation='pull', bandwidth='lots')),
]

OPTIONS_FIRST = [
    ('virt_backup', dict(domain='d1', repository='/nonexistent-virtops-repo', workers=0), 'workers must be'),
    ('virt_cloud_init_seed', dict(path='relative.iso'), 'path must be absolute'),
]


def run(module_name, args, capsys):
    module = importlib.import_module('ansible_collections.virtops.libvirt.plugins.modules.' + module_name)
    with patch_module_args(dict(args, uri=UNREACHABLE)):
        with pytest.raises(SystemExit):
            module.main()
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize('module_name, args', CONNECTION_FIRST)
def test_unreachable_host_before_option_errors(module_name, args, capsys):
    result = run(module_name, args, capsys)
    assert result['failed']
    assert result['msg'].startswith(CONNECT_FAILED), result['msg']


@pytest.mark.parametrize('module_name, args, message', OPTIONS_FIRST)
def test_option_errors_before_the_connection(module_name, args, message, capsys):
    result = run(module_name, args, capsys)
    assert result['failed']
    assert result['msg'].startswith(message), result['msg']
