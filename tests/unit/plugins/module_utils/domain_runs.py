# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""virt_domain's manager run as the module runs it (its argument defaults, diff mode, warnings
collected), for the unit tests of the domain engine and its comparison rules."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.virtops.libvirt.plugins.module_utils import _domain


def params(**kwargs):
    p = dict(name=None, xml=None, state='present', autostart=None, timeout=5, force=False,
             remove_metadata=True, remove_storage=False, restart_on_change=False)
    p.update(kwargs)
    return p


def run(conn, check_mode=False, diff_mode=True, **kwargs):
    warnings = []
    result = _domain.DomainManager(conn, params(**kwargs), check_mode=check_mode,
                                   diff_mode=diff_mode, warn=warnings.append, sleep=lambda s: None).run()
    result['warnings'] = warnings
    return result


def four_times(conn, **kwargs):
    """check mode, real run, check mode again, real run again (community.crypto style)."""
    return [run(conn, check_mode=c, **kwargs) for c in (True, False, True, False)]
