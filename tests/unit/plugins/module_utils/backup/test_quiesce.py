# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""When virt_backup freezes the guest (quiesce: auto, always, never), decided from the live XML."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest

pytest.importorskip('lxml')

from ansible_collections.virtops.libvirt.plugins.module_utils._libvirt import VirtError  # noqa: E402
from ansible_collections.virtops.libvirt.plugins.module_utils.backup import _job  # noqa: E402

AGENT = """<domain type='qemu'><name>g</name><devices>
  <channel type='unix'><source mode='bind' path='/run/x.sock'/>
    <target type='virtio' name='org.qemu.guest_agent.0' state='{state}'/></channel>
</devices></domain>"""
NO_AGENT = """<domain type='qemu'><name>g</name><devices>
  <channel type='spicevmc'><target type='virtio' name='com.redhat.spice.0'/></channel>
</devices></domain>"""


@pytest.mark.parametrize('xml, connected', [
    (AGENT.format(state='connected'), True),
    (AGENT.format(state='disconnected'), False),  # channel there, qemu-ga not running
    (AGENT.replace(" state='{state}'", ''), False),  # inactive XML has no state
    (NO_AGENT, False),
])
def test_agent_connected_only_with_a_connected_channel(xml, connected):
    assert _job.guest_agent_connected(xml) is connected


def test_auto_freezes_only_a_running_guest_with_its_agent():
    up = AGENT.format(state='connected')
    assert _job.plan_quiesce('auto', up, 'running', 'domain g') == 'auto'
    assert _job.plan_quiesce('auto', NO_AGENT, 'running', 'domain g') is None
    assert _job.plan_quiesce('auto', up, 'paused', 'domain g') is None
    assert _job.plan_quiesce('auto', up, 'shutoff', 'domain g') is None
    assert _job.plan_quiesce('never', up, 'running', 'domain g') is None


def test_always_fails_clearly_when_it_cannot_freeze():
    up = AGENT.format(state='connected')
    assert _job.plan_quiesce('always', up, 'running', 'domain g') == 'always'
    # a shut-off domain's disks are consistent as they are: no error
    assert _job.plan_quiesce('always', NO_AGENT, 'shutoff', 'domain g') is None
    with pytest.raises(VirtError, match=r'quiesce: always needs the QEMU guest agent in domain g.*Nothing was changed'):
        _job.plan_quiesce('always', NO_AGENT, 'running', 'domain g')
    with pytest.raises(VirtError, match=r'cannot freeze domain g: it is paused'):
        _job.plan_quiesce('always', up, 'paused', 'domain g')
