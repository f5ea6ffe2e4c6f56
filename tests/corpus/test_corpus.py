# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""libvirt's own test XML through the modules' managers against the real libvirtd.

Every file libvirt accepts must be idempotent (define, the same again: changed false, check mode:
changed false) and take a change exactly as check mode predicts it (corpuslib says how). Files
libvirt refuses are counted, not failures. The counts per kind are printed at the end of the
run; every failure is listed with its diff.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

import pytest

import corpuslib


@pytest.fixture(scope='module')
def testdata():
    if os.geteuid() != 0:
        pytest.skip('the corpus test defines objects on qemu:///system: run it as root')
    return corpuslib.testdata_dir()


@pytest.mark.parametrize('kind', corpuslib.KIND_NAMES)
def test_corpus(kind, testdata, corpus_reports):
    report = corpuslib.run_kind(kind, data=testdata)
    corpus_reports.append(report)
    print(report.summary_line())
    c = report.counts()
    assert c['files'] > 0, 'no %s files in %s' % (kind, testdata)
    assert c['accepted'] > 0, 'libvirt accepted no %s file:\n%s' % (kind, report.rejected_text())
    assert not report.failures, '%d %s files failed:\n%s' % (
        len(report.failures), kind, report.failure_text())
