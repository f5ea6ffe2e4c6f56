# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Run one Ansible module the way AnsiballZ does (runpy, args file in argv) and record peak memory.

    python _module_rss.py RSS_JSON MODULE_NAME ARGS_JSON

ARGS_JSON holds {"ANSIBLE_MODULE_ARGS": {...}}. The module prints its result on stdout and exits
as usual. On the way out, RSS_JSON receives the peak resident set size of this process, the module
itself (Python, libvirt, libnbd, worker threads, buffers), in KiB: VmHWM from /proc/self/status,
which counts this program only. getrusage(2)'s ru_maxrss would not do: exec(2) folds the parent's
peak into it, and a child's ru_maxrss includes the memory of the parent it was forked from. The
CPU seconds of the process and of its children (qemu-nbd, qemu-img) come from getrusage(2).

With VIRTOPS_BENCH_PROFILE set to a file name, the module's main thread runs under cProfile and its
statistics are written there (`python -m pstats FILE`); backup_bench.py --profile sets it.
"""

import cProfile
import os

import json
import resource
import runpy
import sys
import time


def main():
    rss_file, module, args_file = sys.argv[1:4]
    sys.argv = [module, args_file]
    started = time.monotonic()
    profile_file = os.environ.get('VIRTOPS_BENCH_PROFILE')
    profiler = cProfile.Profile() if profile_file else None
    try:
        if profiler:
            profiler.enable()
        runpy.run_module(module, run_name='__main__', alter_sys=True)
    finally:
        if profiler:
            profiler.disable()
            profiler.dump_stats(profile_file)
        own = resource.getrusage(resource.RUSAGE_SELF)
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        hwm = None
        with open('/proc/self/status') as status:
            for line in status:
                if line.startswith('VmHWM:'):
                    hwm = int(line.split()[1])
        with open(rss_file, 'w') as out:
            json.dump(dict(self_hwm_kib=hwm, self_maxrss_kib=own.ru_maxrss,
                           self_cpu=own.ru_utime + own.ru_stime,
                           children_cpu=children.ru_utime + children.ru_stime,
                           in_process_seconds=time.monotonic() - started), out)


if __name__ == '__main__':
    main()
