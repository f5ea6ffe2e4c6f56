# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):

    DOCUMENTATION = r'''
options:
  uri:
    description:
      - libvirt connection URI, for example V(qemu:///system), V(qemu+ssh://root@host/system)
        or V(test:///default).
      - 'Set it once for every module of this collection with
        C(module_defaults: {group/virtops.libvirt.libvirt: {uri: ...}}).'
    type: str
    default: qemu:///system
  username:
    description:
      - User name for libvirt authentication (SASL), given through C(virConnectOpenAuth).
    type: str
  password:
    description:
      - Password for libvirt authentication, given through C(virConnectOpenAuth).
    type: str
requirements:
  - libvirt-python (Debian and Ubuntu C(python3-libvirt), RHEL C(python3-libvirt)) on the managed host
notes:
  - Modules run on the host that reaches the libvirt URI, usually the hypervisor itself.
'''
