#!/usr/bin/env bash
# Integration test runner.
#
#   bash tests/integration/run.sh [TARGET...]
#
# Runs every target directory under tests/integration/targets that has an `aliases` file (or only
# the targets named), each as `ansible-playbook` of a generated playbook
#   - hosts: localhost
#     gather_facts: false
#     roles: [<target>]
# with ANSIBLE_ROLES_PATH pointing at tests/integration/targets. Targets whose aliases contain
# `disabled` are skipped (unless named explicitly). Prints one line per target and exits non-zero
# when any target failed. Each target's full output is kept in build/integration/<target>.log;
# INTEGRATION_VERBOSE=1 also streams it.
#
# Environment: the same as the Makefile exports (set here when run directly); extra
# ansible-playbook arguments can be given in INTEGRATION_ANSIBLE_ARGS (for example -vvv).
set -uo pipefail

root="$(cd "$(dirname "$0")/../.." && pwd)"
targets_dir="$root/tests/integration/targets"
venv="${VENV:-$root/.venv}"
logs="$root/build/integration"

# What the Makefile exports, for runs outside make.
export ANSIBLE_COLLECTIONS_PATH="${ANSIBLE_COLLECTIONS_PATH:-$root/build/collections}"
export PYTHONPATH="${PYTHONPATH:-$root/build/collections}"
export ANSIBLE_PYTHON_INTERPRETER="${ANSIBLE_PYTHON_INTERPRETER:-$venv/bin/python}"
export ANSIBLE_LOCALHOST_WARNING=false
export ANSIBLE_INVENTORY_UNPARSED_WARNING=false
export ANSIBLE_NOCOLOR=1
export ANSIBLE_RETRY_FILES_ENABLED=false
export PATH="$venv/bin:$PATH"
# Targets are roles (the collection's own roles stay reachable after them).
export ANSIBLE_ROLES_PATH="$targets_dir:$root/roles"

# The collection must be importable as virtops.libvirt (what `make link` does).
link="$root/build/collections/ansible_collections/virtops/libvirt"
if [ ! -e "$link" ]; then
  mkdir -p "$(dirname "$link")"
  ln -sfn "$root" "$link"
fi

is_disabled() { grep -qE '^[[:space:]]*disabled([[:space:]]|$)' "$targets_dir/$1/aliases"; }

targets=()
if [ $# -gt 0 ]; then
  for t in "$@"; do
    t="${t%/}"
    t="${t##*/}"
    if [ ! -f "$targets_dir/$t/aliases" ]; then
      echo "no integration target '$t' (a directory with an aliases file under $targets_dir)" >&2
      exit 2
    fi
    targets+=("$t")
  done
else
  for dir in "$targets_dir"/*/; do
    t="$(basename "$dir")"
    [ -f "$dir/aliases" ] || continue
    if is_disabled "$t"; then
      echo "SKIP  $t (disabled)"
      continue
    fi
    targets+=("$t")
  done
fi

if [ ${#targets[@]} -eq 0 ]; then
  echo "no integration targets to run"
  exit 0
fi

mkdir -p "$logs"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

failed=()
total_start=$SECONDS
for t in "${targets[@]}"; do
  playbook="$work/$t.yml"
  cat > "$playbook" <<EOF
- hosts: localhost
  gather_facts: false
  roles:
    - $t
EOF
  log="$logs/$t.log"
  start=$SECONDS
  # shellcheck disable=SC2086
  if [ "${INTEGRATION_VERBOSE:-0}" = 1 ]; then
    ansible-playbook ${INTEGRATION_ANSIBLE_ARGS:-} "$playbook" 2>&1 | tee "$log"
    rc=${PIPESTATUS[0]}
  else
    ansible-playbook ${INTEGRATION_ANSIBLE_ARGS:-} "$playbook" > "$log" 2>&1
    rc=$?
  fi
  took=$(( SECONDS - start ))
  if [ "$rc" -eq 0 ]; then
    echo "PASS  $t (${took} s)"
  else
    echo "FAIL  $t (${took} s, rc $rc, log $log)"
    if [ "${INTEGRATION_VERBOSE:-0}" != 1 ]; then
      # The failing task and the recap are at the end.
      tail -n 40 "$log" | sed 's/^/      /'
    fi
    failed+=("$t")
  fi
done

echo "integration: $(( ${#targets[@]} - ${#failed[@]} ))/${#targets[@]} targets passed in $(( SECONDS - total_start )) s"
if [ ${#failed[@]} -gt 0 ]; then
  echo "failed: ${failed[*]}"
  exit 1
fi
