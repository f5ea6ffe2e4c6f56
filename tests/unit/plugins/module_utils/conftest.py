# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fixtures shared by the unit tests of module_utils."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest

TEST_URI = 'test:///default'


@pytest.fixture(scope='module')
def conn():
    """A Connection to libvirt's test driver. test:///default is one in-memory host per process,
    shared by every connection: tests give their objects unique names and remove them."""
    pytest.importorskip('libvirt')
    from ansible_collections.virtops.libvirt.plugins.module_utils._libvirt import Connection
    connection = Connection(TEST_URI)
    yield connection
    connection.close()
