# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Private to the virtops.libvirt collection: may change without notice.
"""Words every part of the engine shares, each written once: domain run states and whether a
libvirt URI reaches this host. The disk model is in _disks.py, errors and reasons in _errors.py."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

try:
    from urllib.parse import urlsplit
except ImportError:  # pragma: no cover - Python 2
    from urlparse import urlsplit  # type: ignore

from ansible_collections.virtops.libvirt.plugins.module_utils._libvirt import libvirt_call


# virDomainState numbers as the words this collection returns.
STATE_NAMES = {
    0: 'nostate',
    1: 'running',
    2: 'blocked',
    3: 'paused',
    4: 'shutdown',
    5: 'shutoff',
    6: 'crashed',
    7: 'pmsuspended',
}

# States in which QEMU is running (or at least exists) for the domain, so it has a live
# configuration: every state but shut off (and nostate).
ACTIVE_STATES = ('running', 'blocked', 'paused', 'shutdown', 'crashed', 'pmsuspended')


def domain_state(dom):
    """The domain's run state as a word: running, paused, shutoff, ..."""
    with libvirt_call('reading the state', 'domain %s' % dom.name()):
        state, _reason = dom.state()
    return STATE_NAMES.get(state, 'unknown')


# Host names that reach the daemon of this machine through the network stack.
LOOPBACK_HOSTS = ('localhost', '127.0.0.1', '::1')


def is_local_uri(uri):
    """True when the libvirt URI reaches a daemon on this machine (no host name, or a loopback
    one), so that the paths it names (images, schemas, qemu.conf) are this machine's paths."""
    host = urlsplit(uri or '').hostname
    return not host or host in LOOPBACK_HOSTS
