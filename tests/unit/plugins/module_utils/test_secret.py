# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests of the secret engine. libvirt's test:///default driver has no secrets, so these
cover the XML and value handling and the driver's refusal; tests/integration/targets/virt_secret
covers the rest on a real daemon."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest

libvirt = pytest.importorskip('libvirt')

from ansible_collections.virtops.libvirt.plugins.module_utils import _secret  # noqa: E402
from ansible_collections.virtops.libvirt.plugins.module_utils._secret_profile import SECRET  # noqa: E402
from ansible_collections.virtops.libvirt.plugins.module_utils.xml._compare import compare  # noqa: E402
from ansible_collections.virtops.libvirt.plugins.module_utils._libvirt import (  # noqa: E402
    Connection,
    VirtError,
)

SAMPLE = """<secret ephemeral='no' private='yes'>
  <uuid>e047516f-695e-4d7e-b261-571d685bec02</uuid>
  <description>LUKS passphrase</description>
  <usage type='volume'>
    <volume>/var/lib/libvirt/images/a.qcow2</volume>
  </usage>
</secret>
"""


def test_parse_secret_xml():
    assert _secret.parse_secret_xml(SAMPLE) == dict(
        uuid='e047516f-695e-4d7e-b261-571d685bec02', description='LUKS passphrase', ephemeral=False,
        private=True, usage_type='volume', usage_id='/var/lib/libvirt/images/a.qcow2')


@pytest.mark.parametrize('usage_type, element', [
    ('volume', 'volume'), ('ceph', 'name'), ('iscsi', 'target'), ('tls', 'name'), ('vtpm', 'name'),
])
def test_build_round_trips_every_usage(usage_type, element):
    xml = _secret.build_secret_xml('u-1', 'd & <e>', True, False, usage_type, 'id-1')
    assert '<%s>id-1</%s>' % (element, element) in xml
    assert _secret.parse_secret_xml(xml) == dict(uuid='u-1', description='d & <e>', ephemeral=True, private=False,
                                                 usage_type=usage_type, usage_id='id-1')


def test_build_without_usage_or_uuid():
    parsed = _secret.parse_secret_xml(_secret.build_secret_xml())
    assert parsed == dict(uuid=None, description=None, ephemeral=False, private=False, usage_type=None,
                          usage_id=None)


@pytest.mark.parametrize('xml, fragment', [
    ('<secret', 'not well-formed'),
    ('<domain/>', 'expected <secret>'),
])
def test_parse_rejects_what_is_not_a_secret(xml, fragment):
    with pytest.raises(_secret.SecretError) as err:
        _secret.parse_secret_xml(xml)
    assert fragment in err.value.msg


@pytest.mark.parametrize('desired, live, changed', [
    # Everything as the live secret has it (what the options leave out is taken from it).
    (dict(description='LUKS passphrase', private=True), None, False),
    (dict(description='other', private=True), None, True),
    # No description wanted: the live one is removed.
    (dict(private=True), None, True),
    (dict(description='LUKS passphrase', private=False), None, True),
    (dict(description='LUKS passphrase', private=True, ephemeral=True), None, True),
    # A description of blanks reads as none.
    (dict(private=True), SAMPLE.replace('LUKS passphrase', '  '), False),
    (dict(description='x', private=True), SAMPLE.replace('LUKS passphrase', '  '), True),
])
def test_the_definition_is_compared_by_the_secret_profile(desired, live, changed):
    xml = _secret.build_secret_xml('e047516f-695e-4d7e-b261-571d685bec02', desired.get('description'),
                                   desired.get('ephemeral'), desired.get('private'), 'volume',
                                   '/var/lib/libvirt/images/a.qcow2')
    assert compare(xml, live or SAMPLE, SECRET).changed is changed


def test_decode_value():
    assert _secret.decode_value('pässword', 'text') == u'pässword'.encode('utf-8')
    assert _secret.decode_value('AAEC', 'base64') == b'\x00\x01\x02'
    assert _secret.decode_value(None, 'base64') is None
    with pytest.raises(_secret.SecretError) as err:
        _secret.decode_value('not base64!', 'base64')
    assert 'base64' in err.value.msg


def run_secret(conn, check_mode=False, **params):
    return _secret.SecretManager(conn, params, check_mode=check_mode).run()


@pytest.fixture
def conn():
    connection = Connection('test:///default')
    yield connection
    connection.close()


def test_identity_is_required(conn):
    with pytest.raises(_secret.SecretError):
        run_secret(conn, description='x')
    with pytest.raises(_secret.SecretError):
        run_secret(conn, usage_type='tls')
    with pytest.raises(_secret.SecretError):
        run_secret(conn, state='absent')


def test_a_driver_without_secrets_is_explained():
    conn = Connection('test:///default')
    try:
        with pytest.raises(VirtError) as err:
            run_secret(conn, usage_type='tls', usage_id='it-snap-unit', check_mode=True)
        assert 'not supported' in err.value.msg
        with pytest.raises(VirtError):
            _secret.secrets_info(conn.conn)
    finally:
        conn.close()
