#!/bin/bash
# ansible-test needs the collection at a path ending in ansible_collections/virtops/libvirt;
# a copy of the tracked files (git ls-files, or everything but build output) goes there.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
dest="$root/build/sanity/ansible_collections/virtops/libvirt"
rm -rf "$dest"
mkdir -p "$dest"
cd "$root"
if git rev-parse --git-dir >/dev/null 2>&1; then
  git ls-files -co --exclude-standard -z | xargs -0 cp --parents -t "$dest" 2>/dev/null || true
else
  tar --exclude=./.venv --exclude=./build --exclude=./.git -cf - . | tar -xf - -C "$dest"
fi
cd "$dest"
git init -q . && git add -A >/dev/null
"$root/.venv/bin/ansible-test" sanity --requirements --python 3.11 --color no "$@"
