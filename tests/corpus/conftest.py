# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The corpus test prints its counts per kind at the end of every run (passed or not)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

REPORTS = []


@pytest.fixture
def corpus_reports():
    return REPORTS


def pytest_terminal_summary(terminalreporter):
    if not REPORTS:
        return
    terminalreporter.section('libvirt test XML corpus')
    for report in REPORTS:
        terminalreporter.write_line(report.summary_line())
    for report in REPORTS:
        text = report.rejected_text(unforeseen_only=True)
        if text:
            terminalreporter.write_line('%s: rejections check mode did not predict:' % report.kind.name)
            terminalreporter.write_line(text)
