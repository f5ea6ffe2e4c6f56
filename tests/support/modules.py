# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Modules run as Ansible runs them once they are on the managed host:
`python -m ansible_collections.virtops.libvirt.plugins.modules.<name> args.json`, without the
playbook overhead. A result is the module's JSON with `_rc`, `_stdout` and `_stderr` added."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from support.host import COLLECTIONS, ROOT, CheckFailed

_VENV_PYTHON = ROOT / '.venv' / 'bin' / 'python'
# FT_PYTHON: run the modules under another interpreter than the tests' own.
PYTHON = os.environ.get('FT_PYTHON') or (str(_VENV_PYTHON) if _VENV_PYTHON.exists() else sys.executable)
MODULE_PACKAGE = 'ansible_collections.virtops.libvirt.plugins.modules.'


class ModuleFailed(CheckFailed):
    """A module run that ok() expected to succeed failed, or printed no JSON at all."""


def module_env():
    env = dict(os.environ)
    env['PYTHONPATH'] = str(COLLECTIONS)
    env['ANSIBLE_COLLECTIONS_PATH'] = str(COLLECTIONS)
    env.pop('ANSIBLE_CONFIG', None)
    env.pop('ANSIBLE_MODULE_ARGS', None)
    return env


def module_command(name, args_path):
    """The argument list that runs module `name` on the arguments file args_path."""
    return [PYTHON, '-m', MODULE_PACKAGE + name, str(args_path)]


def write_args(name, args, check_mode=False, diff=False, directory=None):
    """A new arguments file for a run of module `name` (the caller removes it)."""
    params = dict(args)
    params['_ansible_check_mode'] = bool(check_mode)
    params['_ansible_diff'] = bool(diff)
    fd, path = tempfile.mkstemp(prefix='%s-' % name, suffix='.json', dir=directory)
    with os.fdopen(fd, 'w') as out:
        json.dump(dict(ANSIBLE_MODULE_ARGS=params), out)
    return path


def parse_result(rc, out, err):
    """The module's JSON result; one with failed, msg and _no_json when it printed none."""
    text = out.strip()
    start = text.find('{')
    try:
        # Anything printed before the JSON document (should not happen) is passed over.
        result = json.loads(text[start:]) if start >= 0 else None
    except ValueError:
        result = None
    if not isinstance(result, dict):
        result = dict(failed=True, msg='module printed no JSON result (exit %s): %s %s' % (
            rc, text[-2000:], err.strip()[-2000:]), _no_json=True)
    result['_rc'] = rc
    result['_stdout'] = out
    result['_stderr'] = err
    return result


def run_module(name, args, check_mode=False, diff=False, timeout=600, dead_ok=False):
    """Run module `name` with `args`; its parsed result. A run that printed no JSON result raises
    ModuleFailed, unless dead_ok (then the result says _no_json)."""
    workdir = tempfile.mkdtemp(prefix='module-')
    try:
        path = write_args(name, args, check_mode, diff, directory=workdir)
        proc = subprocess.run(module_command(name, path), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, env=module_env(), cwd=workdir, timeout=timeout, check=False)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    result = parse_result(proc.returncode, proc.stdout.decode('utf-8', 'replace'),
                          proc.stderr.decode('utf-8', 'replace'))
    if result.get('_no_json') and not dead_ok:
        raise ModuleFailed('module %s printed no JSON (rc %d)\nstdout: %s\nstderr: %s' % (
            name, proc.returncode, result['_stdout'][-3000:], result['_stderr'][-3000:]))
    return result


class ModuleRun:
    """A module started in the background (to be killed, raced or watched)."""

    def __init__(self, name, args, check_mode=False):
        self.workdir = tempfile.mkdtemp(prefix='module-')
        self.args_path = write_args(name, args, check_mode, directory=self.workdir)
        self.out_path = self.args_path + '.out'
        self.err_path = self.args_path + '.err'
        self.started = time.time()
        self.seconds = None
        with open(self.out_path, 'wb') as out, open(self.err_path, 'wb') as err:
            self.proc = subprocess.Popen(module_command(name, self.args_path), stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=err, env=module_env(), cwd=self.workdir)

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc.poll() is None

    def pause(self):
        """SIGSTOP: the run holds its lock, job and connections but makes no progress."""
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self):
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)

    def kill9(self):
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def wait(self, timeout=600):
        """The run's result (with _no_json when it died without one)."""
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise CheckFailed('module run did not end within %s s' % timeout)
        self.seconds = time.time() - self.started
        with open(self.out_path, 'rb') as out, open(self.err_path, 'rb') as err:
            result = parse_result(self.proc.returncode, out.read().decode('utf-8', 'replace'),
                                  err.read().decode('utf-8', 'replace'))
        self.close()
        return result

    def close(self):
        shutil.rmtree(self.workdir, ignore_errors=True)


def ok(result, what='module run'):
    """Assert a module run succeeded; returns the result."""
    if result.get('failed') or result.get('_rc') != 0:
        raise ModuleFailed('%s failed (rc %s): %s\n%s\n%s' % (
            what, result.get('_rc'), result.get('msg'), result.get('exception', ''),
            result.get('_stderr', '')[-3000:]))
    return result


def failed(result, *fragments, **kwargs):
    """Assert a module run failed cleanly: a JSON result, a message without a traceback that
    contains every fragment (a tuple: one of its words). ignore_case=True compares in lower case.
    Returns the message."""
    ignore_case = kwargs.pop('ignore_case', False)
    assert not kwargs, kwargs
    if result.get('failed') is not True:
        raise CheckFailed('expected a failure, got %s' % json.dumps(
            dict((k, v) for k, v in result.items() if not k.startswith('_') and k != 'invocation'), default=str)[:2000])
    if result.get('_no_json'):
        raise CheckFailed('the module died instead of failing cleanly: %s' % result['msg'])
    assert result.get('_rc') != 0, 'failed, but exit status 0'
    msg = result.get('msg') or ''
    if 'Traceback' in msg or 'unexpected error' in msg:
        raise CheckFailed('the failure is not a clear message: %s' % msg)
    text = msg.lower() if ignore_case else msg
    for fragment in fragments:
        alternatives = fragment if isinstance(fragment, tuple) else (fragment,)
        if not any((w.lower() if ignore_case else w) in text for w in alternatives):
            raise CheckFailed('message %r names none of %r' % (msg, alternatives))
    return msg
