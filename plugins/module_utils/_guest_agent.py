# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Private to the virtops.libvirt collection: may change without notice.
"""Commands and files in a guest through the QEMU guest agent (qemu-ga), over libvirt.

Used by the virtops.libvirt.qemu_agent connection plugin. Everything here raises AgentError;
the caller decides what the user sees.

Facts this code relies on (QEMU 7.2 qemu-ga, libvirt 9.0, seen on this project's hosts):
- guest-exec returns a pid at once; guest-exec-status returns {exited: false} until the process
  ends, then once {exited, exitcode | signal, out-data, err-data (base64), out-truncated,
  err-truncated} and forgets the pid. qemu-ga keeps at most 16 MiB of each stream.
- guest-exec's input-data (base64) is written to the child's stdin, which is then closed.
- guest-file-read returns {count, buf-b64, eof}; guest-file-write returns {count, eof} and may
  write less than it was given. Handles are per agent process; closing is the caller's job.
- libvirt's RPC carries strings of at most 4 MiB (REMOTE_STRING_MAX): one agent reply stays below
  that, so reading 1 MiB (1.4 MiB in base64) at a time is safe and 3 MiB is not.
- In the other direction qemu-ga is the limit: a guest-file-write of 128 KiB (175 KB of base64) went
  through every time here, while 176-196 KB of data (235-260 KB of base64) failed now and then with
  "JSON parse error, expecting value" and left the agent unusable for seconds ("Guest agent not
  available for now"). Commands carry at most WRITE_CHUNK bytes of data (written or stdin).
- Under TCG here: 8 MiB written in 96 KiB commands took 12 s, read in 1 MiB replies 2 s.
- Errors: a domain that does not run -> VIR_ERR_OPERATION_INVALID "domain is not running" (also
  when paused); no agent channel in the domain -> VIR_ERR_ARGUMENT_UNSUPPORTED "QEMU guest agent
  is not configured"; a channel but no agent listening, or an agent that does not answer the
  guest-sync -> VIR_ERR_AGENT_UNRESPONSIVE; an agent error reply -> VIR_ERR_INTERNAL_ERROR
  "unable to execute QEMU agent command 'X': <desc>", where a command blocked by the agent's
  configuration (-b/--block-rpcs, --allow-rpcs, RHEL's /etc/sysconfig/qemu-ga) says
  "The command X has been disabled for this instance".
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import json
import time

from ansible_collections.virtops.libvirt.plugins.module_utils._errors import VirtError

try:
    import libvirt
    import libvirt_qemu
except ImportError:  # pragma: no cover - reported by the caller
    libvirt = None
    libvirt_qemu = None
else:
    # libvirt prints every error to stderr by default; they reach the user as AgentError instead.
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)

EXEC_COMMANDS = ('guest-exec', 'guest-exec-status')
FILE_COMMANDS = ('guest-file-open', 'guest-file-read', 'guest-file-write', 'guest-file-close')

# libvirt's RPC string limit is 4 MiB; base64 grows by 4/3 and JSON adds a little.
MAX_CHUNK = 2 * 1024 * 1024
# What one command carries to the guest (see above).
WRITE_CHUNK = 96 * 1024
MAX_INPUT = WRITE_CHUNK

HOW_TO_ALLOW = (
    'RHEL, CentOS Stream, Rocky, Alma and Fedora ship qemu-ga with guest-exec and the guest-file '
    'commands blocked. Allow them in the guest in /etc/sysconfig/qemu-ga, whose variable passes the '
    'filter to qemu-ga: add them to --allow-rpcs (FILTER_RPC_ARGS on RHEL 9, QEMU_GA_ARGS in newer '
    'builds) or remove them from the block list (BLACKLIST_RPC on RHEL 7 and 8, -b/--block-rpcs); '
    'elsewhere use qemu-ga\'s --allow-rpcs/-b options or allow-rpcs/block-rpcs in '
    '/etc/qemu/qemu-ga.conf; then restart the agent (systemctl restart qemu-guest-agent). On Windows '
    'the same options are on the "QEMU Guest Agent" service\'s command line.')


class AgentError(VirtError):
    """A failure explained for the user.

    reason: not_running, no_channel, not_answering, disabled, unsupported, timeout, too_large,
    guest_error (the agent refused or failed one command), libvirt (anything else from libvirt).
    """

    def __init__(self, msg, reason, libvirt_message=None):
        super(AgentError, self).__init__(msg, libvirt_message=libvirt_message)
        self.reason = reason

    # Ansible should call a host whose agent cannot be reached unreachable, and a command that
    # failed in a reachable guest a failed task.
    @property
    def unreachable(self):
        return self.reason in ('not_running', 'no_channel', 'not_answering', 'disabled', 'unsupported')


class ExecResult:
    def __init__(self, rc, stdout, stderr, signal=None, truncated=()):
        self.rc = rc
        self.stdout = stdout
        self.stderr = stderr
        self.signal = signal
        self.truncated = tuple(truncated)


def _error_code(exc):
    try:
        return exc.get_error_code()
    except Exception:  # pylint: disable=broad-except
        return None


def _domain_state(dom):
    names = {
        getattr(libvirt, 'VIR_DOMAIN_RUNNING', 1): 'running',
        getattr(libvirt, 'VIR_DOMAIN_PAUSED', 3): 'paused',
        getattr(libvirt, 'VIR_DOMAIN_SHUTOFF', 5): 'shut off',
        getattr(libvirt, 'VIR_DOMAIN_SHUTDOWN', 4): 'shutting down',
        getattr(libvirt, 'VIR_DOMAIN_CRASHED', 6): 'crashed',
        getattr(libvirt, 'VIR_DOMAIN_PMSUSPENDED', 7): 'suspended by the guest',
    }
    try:
        return names.get(dom.state()[0], 'state %s' % dom.state()[0])
    except Exception:  # pylint: disable=broad-except
        return 'unknown'


class GuestAgent:
    """The guest agent of one running domain.

    dom: a libvirt.virDomain; where: how to name it in messages ("domain web1 on qemu:///system");
    timeout: seconds libvirt waits for each agent reply; note: a function taking a debug line.
    """

    def __init__(self, dom, where, timeout=30, note=None):
        if libvirt_qemu is None:
            raise AgentError('the libvirt Python bindings (libvirt and libvirt_qemu) are missing on the '
                             'controller: install python3-libvirt (Debian, Ubuntu, RHEL) or libvirt-python '
                             'from PyPI', 'libvirt')
        self.dom = dom
        self.where = where
        self.timeout = int(timeout)
        self.note = note or (lambda line: None)
        self._commands = None

    # ------------------------------------------------------------------------ one command
    def command(self, execute, arguments=None, timeout=None):
        """Run one agent command; its 'return' value."""
        request = {'execute': execute}
        if arguments is not None:
            request['arguments'] = arguments
        text = json.dumps(request, separators=(',', ':'))
        try:
            reply = libvirt_qemu.qemuAgentCommand(self.dom, text, self.timeout if timeout is None else timeout, 0)
        except libvirt.libvirtError as exc:
            raise self._translate(exc, execute)
        try:
            return json.loads(reply)['return']
        except (ValueError, KeyError, TypeError):
            raise AgentError('the guest agent of %s gave an unexpected answer to %s: %.200r'
                             % (self.where, execute, reply), 'guest_error')

    def _translate(self, exc, execute):
        code = _error_code(exc)
        message = (exc.get_error_message() if hasattr(exc, 'get_error_message') else None) or str(exc)
        if 'has been disabled' in message:
            return AgentError(
                'the QEMU guest agent of %s refuses %s: its configuration disables it (%s). '
                'This connection needs %s. %s' % (
                    self.where, execute, message, ', '.join(EXEC_COMMANDS + FILE_COMMANDS), HOW_TO_ALLOW),
                'disabled', message)
        if code == getattr(libvirt, 'VIR_ERR_OPERATION_INVALID', None) and 'not running' in message:
            state = _domain_state(self.dom)
            hint = ('resume it (virsh resume %s)' if state == 'paused' else 'start it (virsh start %s)') % self.dom.name()
            return AgentError('%s is not running (%s): its guest agent answers only while it runs; %s'
                              % (self.where, state, hint), 'not_running', message)
        if code == getattr(libvirt, 'VIR_ERR_ARGUMENT_UNSUPPORTED', None) or 'not configured' in message:
            return AgentError(
                '%s has no QEMU guest agent channel (%s): add <channel type="unix"><target type="virtio" '
                'name="org.qemu.guest_agent.0"/></channel> to its devices (virt_domain_device) and run '
                'qemu-ga in the guest (package qemu-guest-agent)' % (self.where, message), 'no_channel', message)
        if code == getattr(libvirt, 'VIR_ERR_AGENT_UNRESPONSIVE', None):
            return AgentError(
                'the QEMU guest agent of %s is not answering (%s). Check that the guest has finished '
                'booting, that qemu-ga runs in it (systemctl status qemu-guest-agent; on Windows the '
                '"QEMU Guest Agent" service) and is not hung, and that it answers '
                'virsh qemu-agent-command %s \'{"execute":"guest-ping"}\'; a guest that is still booting '
                'answers after a while' % (self.where, message, self.dom.name()), 'not_answering', message)
        if "unable to execute QEMU agent command" in message:
            if 'not found' in message or 'CommandNotFound' in message:
                return AgentError('the QEMU guest agent of %s does not know %s (%s): it is too old for this '
                                  'connection (guest-exec needs qemu-ga 2.5 or newer)' % (self.where, execute, message),
                                  'unsupported', message)
            return AgentError('the QEMU guest agent of %s: %s failed: %s' % (self.where, execute, message),
                              'guest_error', message)
        if 'too long' in message or 'too large' in message or 'exceeds' in message:
            return AgentError('%s through libvirt for %s failed: %s (libvirt carries at most 4 MiB per '
                              'message)' % (execute, self.where, message), 'too_large', message)
        return AgentError('%s through libvirt for %s failed: %s' % (execute, self.where, message), 'libvirt', message)

    # ------------------------------------------------------------------------ what is allowed
    def require(self, names):
        """Fail with the agent's own list when a command is missing or disabled (guest-info)."""
        if self._commands is None:
            info = self.command('guest-info')
            self._commands = dict((c.get('name'), bool(c.get('enabled')))
                                  for c in info.get('supported_commands', []))
            self.note('qemu-ga %s of %s' % (info.get('version'), self.where))
        missing = [n for n in names if n not in self._commands]
        if missing:
            raise AgentError('the QEMU guest agent of %s lacks %s: it is too old for this connection '
                             '(guest-exec needs qemu-ga 2.5 or newer)' % (self.where, ', '.join(missing)),
                             'unsupported')
        disabled = [n for n in names if not self._commands[n]]
        if disabled:
            needed = ', '.join(EXEC_COMMANDS + FILE_COMMANDS)
            raise AgentError('the QEMU guest agent of %s has %s disabled by its configuration; this '
                             'connection needs %s. %s' % (self.where, ', '.join(disabled), needed, HOW_TO_ALLOW),
                             'disabled')

    # ------------------------------------------------------------------------ processes
    def run(self, path, args, stdin=None, timeout=0, kill_argv=None):
        """Run path with args in the guest and wait for it (timeout seconds, 0 = no limit).

        stdin: bytes or None. kill_argv: a function pid -> (path, args) that kills a process left
        running at the timeout (qemu-ga has no command for that), or None.
        """
        arguments = {'path': path, 'arg': list(args), 'capture-output': True}
        if stdin:
            if len(stdin) > MAX_INPUT:
                raise AgentError('the input of the command for %s is %d bytes; the guest agent takes at most '
                                 '%d in one command' % (self.where, len(stdin), MAX_INPUT), 'too_large')
            arguments['input-data'] = base64.b64encode(stdin).decode('ascii')
        pid = self.command('guest-exec', arguments)['pid']
        self.note('guest-exec pid %s: %s %s' % (pid, path, ' '.join(args)))
        start = time.time()
        delay = 0.01
        while True:
            status = self.command('guest-exec-status', {'pid': pid})
            if status.get('exited'):
                break
            if timeout and time.time() - start > timeout:
                if kill_argv is not None:
                    try:
                        kpath, kargs = kill_argv(pid)
                        self.command('guest-exec', {'path': kpath, 'arg': list(kargs)})
                    except AgentError:
                        pass
                raise AgentError('the command in %s did not end within %s s (pid %s in the guest, sent a kill): %s %s'
                                 % (self.where, timeout, pid, path, ' '.join(args)[:200]), 'timeout')
            time.sleep(delay)
            delay = min(delay * 2, 0.25)
        stdout = base64.b64decode(status.get('out-data', ''))
        stderr = base64.b64decode(status.get('err-data', ''))
        truncated = [s for s in ('out', 'err') if status.get('%s-truncated' % s)]
        signal = status.get('signal')
        rc = status.get('exitcode')
        if rc is None:
            # Killed by a signal: the shell convention.
            rc = 128 + int(signal or 0)
        return ExecResult(int(rc), stdout, stderr, signal, truncated)

    # ------------------------------------------------------------------------ files
    def _open(self, path, mode):
        return self.command('guest-file-open', {'path': path, 'mode': mode})

    def _close(self, handle, quiet):
        try:
            self.command('guest-file-close', {'handle': handle})
        except AgentError:
            if not quiet:
                raise

    def upload(self, source, path, chunk_size=WRITE_CHUNK):
        """Copy the readable binary file object source into the guest file path; bytes written."""
        chunk_size = min(chunk_size, WRITE_CHUNK)
        handle = self._open(path, 'wb')
        total = 0
        done = False
        try:
            while True:
                data = source.read(chunk_size)
                if not data:
                    break
                view = memoryview(data)
                while len(view):
                    written = self.command('guest-file-write', {
                        'handle': handle, 'buf-b64': base64.b64encode(view).decode('ascii')})['count']
                    if written <= 0:
                        raise AgentError('the guest agent of %s wrote nothing to %s at byte %d (disk full?)'
                                         % (self.where, path, total), 'guest_error')
                    view = view[written:]
                    total += written
            done = True
        finally:
            self._close(handle, quiet=not done)
        return total

    def download(self, path, target, chunk_size):
        """Copy the guest file path into the writable binary file object target; bytes read."""
        handle = self._open(path, 'rb')
        total = 0
        done = False
        try:
            while True:
                reply = self.command('guest-file-read', {'handle': handle, 'count': chunk_size})
                data = base64.b64decode(reply.get('buf-b64', ''))
                target.write(data)
                total += len(data)
                if reply.get('eof') or not data:
                    break
            done = True
        finally:
            self._close(handle, quiet=not done)
        return total
