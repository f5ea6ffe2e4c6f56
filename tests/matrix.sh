#!/usr/bin/env bash
# Sanity and unit tests on every ansible-core line that meta/runtime.yml admits
# (tests/ansible-core-lines.txt): the newest in the main venv (.venv), every other in its own
# venv .venv-<line>. Run through `make matrix`, which makes those venvs first
# (VIRTOPS_ANSIBLE_LINES=all scripts/setup-host.sh). Every line runs even when an earlier one
# failed; the last line of output is a summary, the exit status non-zero when any line failed.
set -uo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root" || exit 1
releases="$(grep -Ev '^\s*(#|$)' tests/ansible-core-lines.txt | awk '{print $1}' | sort -V)"
newest="$(echo "$releases" | tail -n 1)"
summary=()
failed=0
for release in $releases; do
  line="${release%.*}"
  venv="$root/.venv-$line"
  [ "$release" = "$newest" ] && venv="$root/.venv"
  if [ ! -x "$venv/bin/python" ]; then
    echo "matrix: $venv missing: run VIRTOPS_ANSIBLE_LINES=all scripts/setup-host.sh" >&2
    summary+=("$line: no venv"); failed=1; continue
  fi
  have="$("$venv/bin/python" -c 'from ansible.release import __version__; print(__version__)')"
  for step in sanity unit; do
    echo "=== ansible-core $have: $step"
    if [ "$step" = sanity ]; then
      VENV="$venv" bash tests/sanity.sh
    else
      PYTHONPATH="$root/build/collections" "$venv/bin/python" -m pytest -p no:cacheprovider -q tests/unit
    fi
    rc=$?
    if [ "$rc" -eq 0 ]; then
      note=ok
    else
      note="FAILED (exit $rc)"
      failed=1
    fi
    summary+=("$have $step: $note")
  done
done
verdict=PASSED
[ "$failed" -eq 0 ] || verdict=FAILED
echo "=== MATRIX: $verdict | $(printf '%s | ' "${summary[@]}" | sed 's/ | $//')"
exit "$failed"
