# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A backup repository read as files (docs/repository-format.md), not through the modules: what
a run left behind is judged by what is on disk."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import json
import os
from pathlib import Path

from support.host import SOCKET_ROOT, MiB


def repo_id(repository):
    with open(os.path.join(str(repository), 'repository.json')) as src:
        return json.load(src)['id']


def repo_short_id(repository):
    """The first 8 hex digits of the repository id: in checkpoint names and run directories."""
    return repo_id(repository).replace('-', '')[:8]


def checkpoint_prefix(repository):
    return 'virtops-%s-' % repo_short_id(repository)


def _entries(repository, domain, hidden):
    """(name, path) of everything in the domain's chain directories (those whose name starts with
    a dot too, when hidden)."""
    ddir = os.path.join(str(repository), domain)
    if not os.path.isdir(ddir):
        return []
    found = []
    for chain in sorted(os.listdir(ddir)):
        cdir = os.path.join(ddir, chain)
        if (chain.startswith('.') and not hidden) or not os.path.isdir(cdir):
            continue
        found.extend((name, os.path.join(cdir, name)) for name in sorted(os.listdir(cdir)))
    return found


def backup_dirs(repository, domain):
    """Every directory at backup level of the domain, complete or not (Paths, sorted)."""
    return sorted(Path(path) for _name, path in _entries(repository, domain, True) if os.path.isdir(path))


def read_manifest(backup_path):
    with open(os.path.join(str(backup_path), 'manifest.json')) as src:
        return json.load(src)


def read_manifests(repository, domain):
    """{backup id: manifest (None when unreadable)} of the complete backups of the domain."""
    found = {}
    for bid, path in _entries(repository, domain, False):
        if os.path.isfile(os.path.join(path, 'manifest.json')):
            try:
                found[bid] = read_manifest(path)
            except ValueError:
                found[bid] = None
    return found


def partial_dirs(repository, domain):
    """Backup directories without a manifest."""
    return [path for _name, path in _entries(repository, domain, False)
            if not os.path.exists(os.path.join(path, 'manifest.json'))]


def staging_dir(repository, domain):
    """Where QEMU writes the domain's push targets and scratch files: <repository>/.staging/<domain>."""
    return os.path.join(str(repository), '.staging', domain)


def staging_files(repository):
    """Files (not the per-domain directories) under <repository>/.staging."""
    staging = os.path.join(str(repository), '.staging')
    found = []
    for base, _dirs, files in os.walk(staging):
        found.extend(os.path.relpath(os.path.join(base, f), staging) for f in files)
    return sorted(found)


def run_dirs(repository, domain):
    """This repository's socket directories for the domain under /run/virtops-libvirt: QEMU's
    (<repository id>-<domain>-*) and the module's own qemu-nbd ones (.nbd-<repository id>-<domain>-*)."""
    repository = str(repository)
    if not SOCKET_ROOT.is_dir() or not os.path.exists(os.path.join(repository, 'repository.json')):
        return []
    prefix = '%s-%s-' % (repo_short_id(repository), domain)
    return [str(SOCKET_ROOT / n) for n in os.listdir(str(SOCKET_ROOT))
            if n.startswith(prefix) or n.startswith('.nbd-' + prefix)]


def tree_state(path):
    """Every file and directory under path with type, mode, size and content digest: 'nothing changed'."""
    path = str(path)
    state = {}
    if not os.path.lexists(path):
        return state
    if not os.path.isdir(path):
        st = os.lstat(path)
        return {'.': ('f', st.st_mode, st.st_size, _digest(path))}
    for base, dirs, files in os.walk(path):
        for name in dirs:
            full = os.path.join(base, name)
            st = os.lstat(full)
            state[os.path.relpath(full, path)] = ('d', st.st_mode)
        for name in files:
            full = os.path.join(base, name)
            st = os.lstat(full)
            if name == '.lock':
                # flock(2) file; each run writes its pid into it: its content is not repository data.
                state[os.path.relpath(full, path)] = ('f', st.st_mode)
            elif name.endswith('.qcow2') and st.st_size > 64 * MiB:
                state[os.path.relpath(full, path)] = ('f', st.st_mode, st.st_size, st.st_mtime)
            else:
                state[os.path.relpath(full, path)] = ('f', st.st_mode, st.st_size, _digest(full))
    st = os.lstat(path)
    state['.'] = ('d', st.st_mode)
    return state


def _digest(path):
    h = hashlib.sha256()
    try:
        with open(path, 'rb') as src:
            for block in iter(lambda: src.read(MiB), b''):
                h.update(block)
    except OSError as exc:
        return 'unreadable: %s' % exc
    return h.hexdigest()
