# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
name: qemu_agent
short_description: Run tasks in a libvirt guest through the QEMU guest agent, without network or SSH
version_added: 0.2.0
description:
  - Runs commands and transfers files inside a libvirt/QEMU domain through its QEMU guest agent
    (C(qemu-ga)) and the agent's virtio-serial channel, so that Ansible reaches a guest that has no
    network, no SSH server or no credentials yet (first configuration, an isolated network, rescue).
  - 'The controller (the host running Ansible) opens a libvirt connection to O(uri) and sends the
    agent commands C(guest-exec) and C(guest-exec-status) (commands: exit code, stdout and stderr),
    C(guest-file-open), C(guest-file-read), C(guest-file-write) and C(guest-file-close) (files, in
    chunks, see O(chunk_size), binary-safe, memory bounded by a few chunks whatever the file size).
    Modules (AnsiballZ), M(ansible.builtin.raw), M(ansible.builtin.script), M(ansible.builtin.copy),
    M(ansible.builtin.fetch) and M(ansible.builtin.template) all work.'
  - Commands run as the user qemu-ga runs as, C(root) on Linux and C(SYSTEM) on Windows; C(become)
    works as with any other connection.
  - B(Linux guests) need C(qemu-guest-agent) running and a Python for modules (M(ansible.builtin.raw)
    needs none). B(Windows guests) need the QEMU guest agent from the virtio-win drivers and
    C(ansible_shell_type=powershell); commands then run as C(PowerShell -EncodedCommand).
  - 'The domain needs the agent channel C(<channel type="unix"><target type="virtio"
    name="org.qemu.guest_agent.0"/></channel>) and must be running (not paused).'
  - 'B(RHEL) and its rebuilds (CentOS Stream, Rocky, Alma) and Fedora ship C(qemu-ga) with
    C(guest-exec) and the C(guest-file-*) commands blocked. Allow them in the guest in
    C(/etc/sysconfig/qemu-ga): add them to C(--allow-rpcs) in C(FILTER_RPC_ARGS) (RHEL 9) or
    C(QEMU_GA_ARGS) (newer builds), or remove them from C(BLACKLIST_RPC) (RHEL 7 and 8), then
    C(systemctl restart qemu-guest-agent). This plugin checks the agent''s list of enabled commands
    (C(guest-info)) before its first command and says which are blocked.'
author:
  - virtops.libvirt developers (@virtops)
requirements:
  - libvirt-python with C(libvirt_qemu) (Debian, Ubuntu and RHEL C(python3-libvirt)) on the controller
  - C(qemu-guest-agent) 2.5 or newer in the guest
options:
  domain:
    description:
      - Name (or UUID) of the libvirt domain to run tasks in.
      - Defaults to the inventory host name; set C(ansible_libvirt_domain) when they differ (the
        inventory plugin P(virtops.libvirt.libvirt#inventory) does with O(virtops.libvirt.libvirt#inventory:qemu_agent_connection)).
    type: str
    vars:
      - name: inventory_hostname
      - name: ansible_libvirt_domain
  uri:
    description:
      - libvirt connection URI of the host running the domain, opened from the controller, for
        example V(qemu:///system) or V(qemu+ssh://root@hv1.example.com/system).
    type: str
    default: qemu:///system
    vars:
      - name: ansible_libvirt_uri
    env:
      - name: VIRTOPS_LIBVIRT_URI
    ini:
      - section: virtops_qemu_agent
        key: uri
  agent_timeout:
    description:
      - Seconds libvirt waits for the agent's answer to each single agent command (not for a whole
        task command; see O(command_timeout)). An agent that does not answer in time makes the host
        unreachable.
    type: int
    default: 30
    vars:
      - name: ansible_qemu_agent_timeout
    env:
      - name: VIRTOPS_QEMU_AGENT_TIMEOUT
    ini:
      - section: virtops_qemu_agent
        key: agent_timeout
  command_timeout:
    description:
      - Seconds a command in the guest may run before the task fails; the process is then killed
        (C(kill -KILL) on Linux, C(taskkill /F) on Windows). V(0) waits without limit.
    type: int
    default: 3600
    vars:
      - name: ansible_qemu_agent_command_timeout
    env:
      - name: VIRTOPS_QEMU_AGENT_COMMAND_TIMEOUT
    ini:
      - section: virtops_qemu_agent
        key: command_timeout
  chunk_size:
    description:
      - Bytes per C(guest-file-read) when files are fetched from the guest, at most 2097152 (libvirt
        carries at most 4 MiB per message, and base64 adds a third). Memory use stays within a few
        chunks whatever the file size.
      - Files are written into the guest 96 KiB per C(guest-file-write) (or O(chunk_size) when smaller),
        since qemu-ga fails now and then on commands of much more than that.
    type: int
    default: 1048576
    vars:
      - name: ansible_qemu_agent_chunk_size
    env:
      - name: VIRTOPS_QEMU_AGENT_CHUNK_SIZE
    ini:
      - section: virtops_qemu_agent
        key: chunk_size
  pipelining:
    description:
      - Send modules to the interpreter's standard input (C(guest-exec) input data) instead of
        transferring them as files first (one agent process per module instead of four).
      - On by default for this connection (Ansible's global default is off). Input of more than
        96 KiB (most modules) is written to a private temporary file in the guest first and
        given to the command as its standard input, which is still one process fewer than without
        pipelining. C(become) methods that need a terminal need it off.
    type: bool
    default: true
    vars:
      - name: ansible_pipelining
      - name: ansible_qemu_agent_pipelining
    env:
      - name: ANSIBLE_PIPELINING
    ini:
      - section: virtops_qemu_agent
        key: pipelining
notes:
  - Standard output and standard error of one command are kept by the agent up to 16 MiB each
    (more is cut, with a warning) and must fit in one libvirt message (4 MiB with base64) with
    C(qemu:///system); write large outputs to a file and use M(ansible.builtin.fetch).
  - libvirt marks a domain that received agent commands through this interface as tainted
    (C(custom-ga-command) in its log); this changes nothing in how it runs.
  - Windows guests are supported as far as the agent allows (C(guest-exec) of
    C(powershell.exe), files through C(guest-file-*)), but are not covered by this collection's tests.
  - Setting O(pipelining=false) makes modules go through files in the guest's temporary directory,
    as with SSH.
  - The collection's C(docs/guest-agent-connection.md) covers setting up guests, the inventory
    plugin and troubleshooting.
seealso:
  - name: QEMU guest agent protocol
    description: The commands this plugin uses.
    link: https://www.qemu.org/docs/master/interop/qemu-ga-ref.html
  - plugin: virtops.libvirt.libvirt
    plugin_type: inventory
'''

EXAMPLES = r'''
# In an inventory (inventory.yml): two guests reached through the agent, a third one whose
# domain name differs from its host name:
#
#   all:
#     vars:
#       ansible_connection: virtops.libvirt.qemu_agent
#       ansible_libvirt_uri: qemu:///system
#       ansible_python_interpreter: /usr/bin/python3
#     hosts:
#       web1:
#       web2:
#       db:
#         ansible_libvirt_domain: db-2024-rescue
#
# Or let the inventory plugin list the domains and set the connection (db.libvirt.yml):
#
#   plugin: virtops.libvirt.libvirt
#   qemu_agent_connection: true

# First configuration of a guest before it has a network
- name: Configure web1 through its guest agent
  hosts: web1
  gather_facts: false
  tasks:
    - name: The agent runs commands
      ansible.builtin.raw: ip -brief address
    - name: Modules work as over SSH
      ansible.builtin.copy:
        src: files/eth0.network
        dest: /etc/systemd/network/eth0.network
        mode: "0644"

# A Windows guest (QEMU Guest Agent from virtio-win)
- name: Windows through the agent
  hosts: win1
  gather_facts: false
  vars:
    ansible_connection: virtops.libvirt.qemu_agent
    ansible_shell_type: powershell
  tasks:
    - name: Who runs the commands
      ansible.windows.win_command: whoami
'''

import io
import os

from ansible.errors import AnsibleConnectionFailure, AnsibleError, AnsibleFileNotFound
from ansible.module_utils.common.text.converters import to_bytes, to_native, to_text
from ansible.plugins.connection import ConnectionBase
from ansible.utils.display import Display

try:
    import libvirt
except ImportError:
    libvirt = None

from ansible_collections.virtops.libvirt.plugins.module_utils._guest_agent import (
    EXEC_COMMANDS, FILE_COMMANDS, MAX_CHUNK, MAX_INPUT, AgentError, GuestAgent)

display = Display()

POSIX_SHELL = '/bin/sh'


class Connection(ConnectionBase):
    """Tasks in a libvirt domain through its QEMU guest agent."""

    transport = 'virtops.libvirt.qemu_agent'
    has_pipelining = True
    has_tty = False

    def __init__(self, *args, **kwargs):
        super(Connection, self).__init__(*args, **kwargs)
        self._libvirt = None
        self._agent = None
        self._windows = getattr(self._shell, '_IS_WINDOWS', False)
        if self._windows:
            # What Ansible expects of a Windows connection (as ssh does): PowerShell modules,
            # always piped, become (runas) done inside the module wrapper.
            self.has_native_async = True
            self.always_pipeline_modules = True
            self.module_implementation_preferences = ('.ps1', '.exe', '')
            self.allow_executable = False

    # ------------------------------------------------------------------------ connecting
    def _fail(self, err):
        """An AgentError as Ansible's exception: unreachable when the agent cannot be used at all."""
        if err.unreachable:
            return AnsibleConnectionFailure(err.msg)
        return AnsibleError(err.msg)

    def _where(self):
        return 'domain %s on %s' % (self.get_option('domain') or self._play_context.remote_addr, self.get_option('uri'))

    def _connect(self):
        if self._connected:
            return self
        if libvirt is None:
            raise AnsibleError('the virtops.libvirt.qemu_agent connection needs the libvirt Python bindings on the '
                               'controller: python3-libvirt (Debian, Ubuntu, RHEL) or libvirt-python (PyPI)')
        uri = self.get_option('uri')
        name = self.get_option('domain') or self._play_context.remote_addr
        chunk = self.get_option('chunk_size')
        if not 4096 <= chunk <= MAX_CHUNK:
            raise AnsibleError('chunk_size of the qemu_agent connection is %d; it must lie between 4096 and %d'
                               % (chunk, MAX_CHUNK))
        display.vvv('QEMU AGENT: connecting to %s for domain %s' % (uri, name), host=name)
        try:
            conn = libvirt.open(uri)
        except libvirt.libvirtError as exc:
            raise AnsibleConnectionFailure('cannot connect to libvirt at %s for domain %s: %s' % (
                uri, name, to_native(exc)))
        try:
            dom = self._lookup(conn, name)
        except Exception:
            conn.close()
            raise
        self._libvirt = conn
        self._agent = GuestAgent(dom, 'domain %s on %s' % (dom.name(), uri),
                                 timeout=self.get_option('agent_timeout'),
                                 note=lambda line: display.vvvv('QEMU AGENT: %s' % line, host=name))
        try:
            self._agent.require(EXEC_COMMANDS + FILE_COMMANDS)
        except AgentError as err:
            self.close()
            raise self._fail(err)
        self._connected = True
        return self

    @staticmethod
    def _lookup(conn, name):
        try:
            return conn.lookupByName(name)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:
                raise AnsibleConnectionFailure('cannot look up domain %s on %s: %s' % (
                    name, conn.getURI(), to_native(exc)))
        try:
            return conn.lookupByUUIDString(name)
        except libvirt.libvirtError:
            pass
        raise AnsibleConnectionFailure(
            'there is no domain %s on %s (virsh -c %s list --all); set ansible_libvirt_domain when the '
            'domain name differs from the inventory host name, ansible_libvirt_uri for another host'
            % (name, conn.getURI(), conn.getURI()))

    # ------------------------------------------------------------------------ commands
    def _argv(self, cmd):
        if not self._windows:
            return POSIX_SHELL, ['-c', cmd]
        # Ansible's PowerShell commands are one line of words without quoting
        # (PowerShell -NoProfile ... -EncodedCommand BASE64); anything else is encoded the same way.
        words = cmd.split()
        if words and words[0].lower() in ('powershell', 'powershell.exe') and '-EncodedCommand' in words:
            return 'powershell.exe', words[1:]
        encoded = self._shell._encode_script(cmd, as_list=True, strict_mode=False, preserve_rc=False)
        return 'powershell.exe', encoded[1:]

    def _kill_argv(self, pid):
        if self._windows:
            return 'taskkill.exe', ['/F', '/T', '/PID', str(pid)]
        return POSIX_SHELL, ['-c', 'kill -KILL %d' % int(pid)]

    def _run(self, path, args, stdin=None):
        return self._agent.run(path, args, stdin=stdin, timeout=self.get_option('command_timeout'),
                               kill_argv=self._kill_argv)

    def _run_with_stdin_file(self, cmd, stdin):
        """Input too large for one agent command: into a private guest file first, then the
        command's standard input."""
        if self._windows:
            made = self._run('powershell.exe', ['-NoProfile', '-NonInteractive', '-Command',
                                                '[IO.Path]::GetTempFileName()'])
        else:
            made = self._run(POSIX_SHELL, ['-c', 'umask 077 && mktemp "${TMPDIR:-/tmp}/ansible-qemu-agent.XXXXXXXXXX"'])
        path = to_text(made.stdout).strip()
        if made.rc != 0 or not path:
            raise AgentError('cannot make a temporary file in %s for the command\'s input: %s'
                             % (self._where(), to_text(made.stderr).strip()), 'guest_error')
        self._agent.upload(io.BytesIO(stdin), path)
        if self._windows:
            try:
                return self._run('cmd.exe', ['/c', '%s < "%s"' % (cmd, path)])
            finally:
                self._run('cmd.exe', ['/c', 'del', '/q', path])
        # The shell opens the file as its input, removes it, then runs the command.
        return self._run(POSIX_SHELL, ['-c', 'exec 0<"$1" && rm -f -- "$1" && exec %s -c "$2"' % POSIX_SHELL,
                                       'sh', path, cmd])

    def exec_command(self, cmd, in_data=None, sudoable=True):
        super(Connection, self).exec_command(cmd, in_data=in_data, sudoable=sudoable)
        text = to_text(cmd, errors='surrogate_or_strict')
        stdin = to_bytes(in_data) if in_data else None
        display.vvv('QEMU AGENT EXEC %s' % cmd, host=self._host_label())
        try:
            if stdin is not None and len(stdin) > MAX_INPUT:
                result = self._run_with_stdin_file(text, stdin)
            else:
                path, args = self._argv(text)
                result = self._run(path, args, stdin)
        except AgentError as err:
            raise self._fail(err)
        for stream in result.truncated:
            display.warning('the guest agent of %s kept only the first 16 MiB of the command\'s std%s'
                            % (self._where(), stream))
        stderr = result.stderr
        if self._windows:
            try:
                from ansible.plugins.shell.powershell import _replace_stderr_clixml
                stderr = _replace_stderr_clixml(stderr)
            except ImportError:  # pragma: no cover - older ansible-core
                pass
        return result.rc, result.stdout, stderr

    def _host_label(self):
        return self.get_option('domain') or self._play_context.remote_addr

    # ------------------------------------------------------------------------ files
    def put_file(self, in_path, out_path):
        super(Connection, self).put_file(in_path, out_path)
        display.vvv('QEMU AGENT PUT %s TO %s' % (in_path, out_path), host=self._host_label())
        b_in = to_bytes(in_path, errors='surrogate_or_strict')
        if not os.path.exists(b_in):
            raise AnsibleFileNotFound('file or module does not exist: %s' % to_native(in_path))
        try:
            with open(b_in, 'rb') as source:
                self._agent.upload(source, to_text(out_path), self.get_option('chunk_size'))
        except AgentError as err:
            raise self._fail(AgentError('copying %s to %s in %s: %s' % (in_path, out_path, self._where(), err.msg),
                                        err.reason, err.libvirt_message))
        except (IOError, OSError) as exc:
            raise AnsibleError('cannot read %s to copy it into %s: %s' % (in_path, self._where(), to_native(exc)))

    def fetch_file(self, in_path, out_path):
        super(Connection, self).fetch_file(in_path, out_path)
        display.vvv('QEMU AGENT FETCH %s TO %s' % (in_path, out_path), host=self._host_label())
        b_out = to_bytes(out_path, errors='surrogate_or_strict')
        try:
            # Guest data: private from the first byte.
            fd = os.open(b_out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        except OSError as exc:
            raise AnsibleError('cannot write %s: %s' % (out_path, to_native(exc)))
        try:
            with os.fdopen(fd, 'wb') as target:
                self._agent.download(to_text(in_path), target, self.get_option('chunk_size'))
        except AgentError as err:
            # No partial copy left behind that could pass for the file.
            os.unlink(b_out)
            raise self._fail(AgentError('fetching %s from %s: %s' % (in_path, self._where(), err.msg),
                                        err.reason, err.libvirt_message))

    def close(self):
        if self._libvirt is not None:
            try:
                self._libvirt.close()
            except Exception:  # pylint: disable=broad-except
                pass
        self._libvirt = None
        self._agent = None
        self._connected = False

    def reset(self):
        self.close()
