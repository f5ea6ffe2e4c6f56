# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the functional tests (tests/functional) and the fault-injection suite (tests/faults)
share: the host and its libvirtd (host), modules run as Ansible runs them (modules), TCG guests
whose disk content is known byte for byte (guests), qemu-img and raw-file comparisons (images),
a backup repository read as files (repository), and a guest backed up beside an S3 bucket (s3).

Each suite's conftest.py puts tests/ on sys.path, so that the tests import `support.<module>`.
"""
