# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Run the corpus of one or more kinds and list what fails (see corpuslib for the steps).

  .venv/bin/python tests/corpus/corpus.py --kind network [--file nat-network] [--show-diff]
      [--rejected] [--verbose] [--user-xml]

--user-xml runs tests/corpus/user-xml (virt-install, virsh dumpxml and template XML) instead.

Exit status 0 when no accepted file failed, 1 otherwise. As root (qemu:///system).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import corpuslib  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n', maxsplit=1)[0])
    parser.add_argument('--kind', action='append', choices=corpuslib.KIND_NAMES,
                        help='object kind (repeat for several; default: all)')
    parser.add_argument('--file', action='append',
                        help='only this file (name, stem, dir/name or corpus name; repeatable)')
    parser.add_argument('--show-diff', action='store_true', help='show the diff of every failure')
    parser.add_argument('--rejected', action='store_true',
                        help='list the files libvirt rejected, with its message')
    parser.add_argument('--skipped', action='store_true', help='list the skipped files and why')
    parser.add_argument('--verbose', '-v', action='store_true', help='one line per file')
    parser.add_argument('--user-xml', action='store_true',
                        help='the XML of tests/corpus/user-xml instead of libvirt\'s test data')
    args = parser.parse_args(argv)

    def progress(out):
        if args.verbose:
            mark = 'FAIL' if out.failures else out.status
            print('%-9s %-60s %5.2f s' % (mark, out.item.rel, out.seconds), flush=True)

    failed = False
    reports = []
    for kind in args.kind or corpuslib.KIND_NAMES:
        data = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'user-xml') \
            if args.user_xml else None
        report = corpuslib.run_kind(kind, only=args.file, progress=progress, data=data)
        reports.append(report)
        if report.failures:
            failed = True
            print(report.failure_text(show_diff=args.show_diff))
        if args.rejected:
            print(report.rejected_text())
        if args.skipped:
            print('\n'.join('SKIPPED %s: %s' % (o.item.rel, o.message)
                            for o in report.outcomes if o.status == 'skipped'))
    for report in reports:
        print(report.summary_line())
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
