# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""How often a running push job is asked about: by its progress, never busy, never slow near the end."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest

pytest.importorskip('lxml')

from ansible_collections.virtops.libvirt.plugins.module_utils.backup import _job  # noqa: E402


@pytest.mark.parametrize('stats, pause', [
    ({}, 0.05),                                                                 # no progress reported yet
    (dict(data_processed=0, data_remaining=100, time_elapsed=500), 0.05),      # nothing done yet
    (dict(data_processed=100, data_remaining=100, time_elapsed=1000), 0.2),    # 1 s left: at most 200 ms
    (dict(data_processed=100, data_remaining=10, time_elapsed=1000), 0.05),    # 100 ms left: half of it
    (dict(data_processed=100, data_remaining=0, time_elapsed=1000), 0.01),     # ending: at least 10 ms
])
def test_the_pause_follows_the_time_left(stats, pause):
    assert _job.poll_pause(stats) == pytest.approx(pause)
