#!/usr/bin/env bash
# collection-copy.sh DIR: copy this checkout into a new private directory under DIR as
# DIR/<tmp>/ansible_collections/virtops/libvirt (the path ansible-test needs) and print that
# path. The tracked and untracked, non-ignored files are copied (git ls-files -co
# --exclude-standard; files deleted from the working tree skipped), modes and symlinks kept.
# The copy gets its own git repository, so ansible-test lists its files and not the enclosing
# checkout's. The caller removes DIR/<tmp> (the path's fourth parent) when done.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
parent="$1"
mkdir -p "$parent"
work="$(mktemp -d "$parent/run.XXXXXX")"
dest="$work/ansible_collections/virtops/libvirt"
mkdir -p "$dest"
cd "$root"
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  git ls-files -z -co --exclude-standard \
    | /usr/bin/python3 -c '
import os, sys
names = sys.stdin.buffer.read().split(b"\0")
sys.stdout.buffer.write(b"".join(n + b"\0" for n in sorted(set(names)) if n and os.path.lexists(n)))
' \
    | tar --null --no-recursion -T - -cf - | tar -xpf - -C "$dest"
else
  tar --exclude=./.venv --exclude=./build --exclude=./.git --exclude=./tests/output \
    -cf - . | tar -xpf - -C "$dest"
fi
git -C "$dest" init -q .
echo "$dest"
