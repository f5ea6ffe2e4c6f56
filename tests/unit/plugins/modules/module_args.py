# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Run a module's main() in the test process with given arguments, on every ansible-core line
that meta/runtime.yml admits: ansible.module_utils.testing.patch_module_args exists from 2.19
on; before, AnsibleModule reads the same JSON document from basic._ANSIBLE_ARGS."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import contextlib
import json

from ansible.module_utils import basic

__all__ = ['patch_module_args']

try:
    from ansible.module_utils.testing import patch_module_args  # ansible-core >= 2.19
except ImportError:
    @contextlib.contextmanager
    def patch_module_args(args):
        old = basic._ANSIBLE_ARGS
        basic._ANSIBLE_ARGS = json.dumps(dict(ANSIBLE_MODULE_ARGS=args)).encode('utf-8')
        try:
            yield
        finally:
            basic._ANSIBLE_ARGS = old
