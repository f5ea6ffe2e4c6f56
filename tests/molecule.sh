#!/usr/bin/env bash
# Run the molecule scenario of every role (or of the roles named as arguments) against this
# machine's real libvirtd: `cd roles/<role> && molecule test`. Prints pass/fail and the time of
# each scenario; exits non-zero when any failed. Offline: the scenarios install nothing from
# galaxy; this checkout is the collection virtops.libvirt through build/collections.
#
#   bash tests/molecule.sh                 # every roles/*/molecule/*/ scenario
#   bash tests/molecule.sh backup restore  # only these roles
#   MOLECULE_TIMEOUT=600 ...               # limit per scenario, seconds (default 480)
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
root="$(pwd)"
venv="${VENV:-$root/.venv}"

if [ ! -x "$venv/bin/molecule" ]; then
  echo "molecule not found in $venv: run \`make setup\` first" >&2
  exit 2
fi
# The collection link that `make link` makes.
mkdir -p "$root/build/collections/ansible_collections/virtops"
[ -e "$root/build/collections/ansible_collections/virtops/libvirt" ] ||
  ln -sfn "$root" "$root/build/collections/ansible_collections/virtops/libvirt"

# molecule calls ansible-config and ansible-playbook from PATH.
export PATH="$venv/bin:$PATH"
export ANSIBLE_COLLECTIONS_PATH="$root/build/collections"
export ANSIBLE_ROLES_PATH="$root/roles"
export ANSIBLE_LOCALHOST_WARNING=false
export ANSIBLE_INVENTORY_UNPARSED_WARNING=false
export ANSIBLE_NOCOLOR=1 NO_COLOR=1 PY_COLORS=0 ANSIBLE_FORCE_COLOR=0
export PYTHONPATH="$root/build/collections${PYTHONPATH:+:$PYTHONPATH}"
limit="${MOLECULE_TIMEOUT:-480}"
results="$root/build/test-results/molecule"
mkdir -p "$results"

# The scenarios use fixed domain names (mol-*) and directories: two runs on one machine at the
# same time would destroy each other's fixtures. Wait for the other run instead.
lock=/run/lock/virtops-molecule.lock
[ -d /run/lock ] || lock=/run/virtops-molecule.lock
exec 8>"$lock"
if ! flock -n 8; then
  echo "another tests/molecule.sh is running on this machine; waiting for it (up to 15 min)"
  flock -w 900 8 || { echo "still locked after 15 min: $lock" >&2; exit 1; }
fi

scenarios=()
if [ $# -gt 0 ]; then
  for role in "$@"; do
    for s in roles/"$role"/molecule/*/molecule.yml; do
      if [ ! -f "$s" ]; then
        echo "no molecule scenario in roles/$role" >&2
        exit 2
      fi
      scenarios+=("$s")
    done
  done
else
  for s in roles/*/molecule/*/molecule.yml; do
    [ -f "$s" ] && scenarios+=("$s")
  done
fi
if [ ${#scenarios[@]} -eq 0 ]; then
  echo "no molecule scenarios under roles/" >&2
  exit 1
fi

failed=0
summary=()
start=$(date +%s)
for s in "${scenarios[@]}"; do
  role_dir="${s%/molecule/*}"
  role="${role_dir#roles/}"
  scenario="$(basename "$(dirname "$s")")"
  log="$results/$role-$scenario.log"
  echo "=== molecule $role/$scenario (log: ${log#"$root"/})"
  t0=$(date +%s)
  ( cd "$role_dir" && timeout -k 30 "$limit" molecule test -s "$scenario" ) > "$log" 2>&1
  rc=$?
  secs=$(( $(date +%s) - t0 ))
  if [ "$rc" -eq 0 ]; then
    verdict=passed
  else
    failed=1
    case $rc in 124|137) verdict="FAILED (timeout after ${limit} s)" ;; *) verdict="FAILED (exit $rc)" ;; esac
    # The end of the log says why.
    grep -E 'fatal:|FAILED!|ERROR|CRITICAL|Idempotence test failed|changed:' "$log" | tail -20 | sed 's/^/    /'
  fi
  echo "=== molecule $role/$scenario: $verdict in ${secs} s"
  summary+=("$role/$scenario: $verdict, ${secs}s")
done
total=$(( $(date +%s) - start ))
# For tests/run-all.sh's summary line (its stage NAME.note / NAME.executed convention).
passed=$(printf '%s\n' "${summary[@]}" | grep -c ': passed,' || true)
echo "${#scenarios[@]} scenarios, $(( ${#scenarios[@]} - passed )) failed" > "$root/build/test-results/molecule.note"
echo "$passed" > "$root/build/test-results/molecule.executed"
echo "=== MOLECULE: $([ "$failed" -eq 0 ] && echo PASSED || echo FAILED) in ${total} s | $(printf '%s | ' "${summary[@]}" | sed 's/ | $//')"
exit "$failed"
