#!/usr/bin/env bash
# ansible-test sanity for this collection, offline except for PyPI.
#
# * ansible-test needs the collection at a path ending in ansible_collections/virtops/libvirt:
#   each run copies the tracked and untracked, non-ignored files (tests/utils/collection-copy.sh)
#   into its own mktemp directory under build/sanity/, removed afterwards (KEEP_SANITY_COPY=1
#   keeps it), so concurrent runs by different people do not disturb each other.
# * Every sanity test runs in its own venv with the exact requirements ansible-test pins
#   (--requirements). The venvs live in ~/.ansible/test/venv and are reused by later runs (and
#   later clones): only the first run on a machine installs them from PyPI. Their pip
#   bootstrap is the stand-in scripts/setup-host.sh writes to ~/.ansible/test/cache.
#   Creating them is serialised with a lock (--prime-venvs, a few seconds when they exist);
#   the tests themselves run without the lock.
# * Controller and target Python: 3.11 only (--python 3.11).
# * The run fails when a test that should run was skipped (e.g. missing shellcheck).
#
# Extra arguments go to ansible-test, e.g. tests/sanity.sh --test pylint
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="$(realpath -m "${VENV:-$root/.venv}")"
python_version=3.11
ansible_test="$venv/bin/ansible-test"
[ -x "$ansible_test" ] || { echo "sanity: $ansible_test missing; run scripts/setup-host.sh" >&2; exit 1; }
export PATH="$venv/bin:$PATH"

# The Makefile points Ansible and Python at build/collections (a link to this checkout):
# ansible-test must see the copy only.
unset PYTHONPATH ANSIBLE_COLLECTIONS_PATH ANSIBLE_COLLECTIONS_PATHS ANSIBLE_ROLES_PATH \
  ANSIBLE_LIBRARY ANSIBLE_MODULE_UTILS ANSIBLE_PYTHON_INTERPRETER ANSIBLE_CONFIG
# Quieter pip in the sanity venvs (a pip.conf, e.g. a proxy index, is still honoured).
export PIP_DISABLE_PIP_VERSION_CHECK=1

# Tests that cannot apply to this collection. Anything else skipped is an error.
#   pslint: PowerShell only; the collection has no PowerShell and pwsh is not installed.
allowed_skips=(pslint)
# ansible-test skips the shellcheck test silently (as "No tests applicable.") without it.
command -v shellcheck >/dev/null || { echo "sanity: shellcheck missing; run scripts/setup-host.sh" >&2; exit 1; }

dest="$(bash "$root/tests/utils/collection-copy.sh" "$root/build/sanity")"
work="$(cd "$dest/../../.." && pwd)"
# shellcheck disable=SC2317  # called by the trap
cleanup() {
  if [ -n "${KEEP_SANITY_COPY:-}" ]; then
    echo "sanity: copy kept in $work"
  else
    rm -rf "$work"
  fi
}
trap cleanup EXIT
# killed by run-all's deadline (timeout sends TERM): still remove the copy
trap 'exit 143' TERM
trap 'exit 130' INT
cd "$dest"

args=(sanity --requirements --python "$python_version" --color no --junit)

# 1. Create missing sanity venvs, one run at a time per machine (two runs creating the same
#    venv would delete each other's half-built directories).
lockdir="$HOME/.ansible/test"
mkdir -p "$lockdir"
t0=$(date +%s)
if ! ( flock -w 1800 9 || { echo "sanity: waited 30 min for $lockdir/virtops-sanity.lock" >&2; exit 1; }
       "$ansible_test" "${args[@]}" --prime-venvs >"$work/prime.log" 2>&1 ) 9>"$lockdir/virtops-sanity.lock"; then
  cat "$work/prime.log"
  echo "sanity: preparing the sanity venvs failed (output above)" >&2
  exit 1
fi
if grep -q 'Installing requirements' "$work/prime.log"; then
  echo "sanity: created sanity venvs in $(( $(date +%s) - t0 )) s"
fi

# 2. The tests.
set +e
"$ansible_test" "${args[@]}" "$@" 2>&1 | tee "$work/sanity.log"
rc=${PIPESTATUS[0]}
set -e

# 3. Which tests ran and which were skipped, from ansible-test's junit results: ansible-test
#    prints "Running sanity test" also for a test it then skips. A skip with a reason (missing
#    libyaml, Python not found, no venv support) is an error unless allowed; "No tests
#    applicable." means no file of that kind exists, except that the module tests must run once
#    there are modules. The two tests that skip silently when a tool is missing are pslint
#    (allowed) and shellcheck (checked above).
/usr/bin/python3 - "$dest" "${allowed_skips[@]}" <<'PY' || { [ "$rc" -ne 0 ] || rc=1; }
import glob, os, re, sys
import xml.etree.ElementTree as ET
dest, allowed = sys.argv[1], set(sys.argv[2:])
NOTHING = 'No tests applicable.'
results = {}  # test -> passed / failed / skip reason
for path in sorted(glob.glob(os.path.join(dest, 'tests', 'output', 'junit', '*.xml'))):
    for case in ET.parse(path).iter('testcase'):
        name = re.sub(r'-python-[0-9.]+$', '', case.get('name') or '')
        skip = case.find('skipped')
        if case.find('failure') is not None or case.find('error') is not None:
            state = 'failed'
        elif skip is not None:
            state = (skip.get('message') or skip.text or NOTHING).strip()
        else:
            state = 'passed'
        # a test reported more than once: failed beats passed beats skipped
        old = results.get(name)
        if old is None or state == 'failed' or (state == 'passed' and old != 'failed'):
            results[name] = state
modules = [f for f in glob.glob(os.path.join(dest, 'plugins', 'modules', '*.py'))
           if not os.path.basename(f).startswith('__')]
must_run = {'validate-modules', 'ansible-doc', 'import', 'compile', 'pylint'} if modules else set()
passed = sorted(n for n, s in results.items() if s == 'passed')
failed = sorted(n for n, s in results.items() if s == 'failed')
print('sanity: %d passed: %s' % (len(passed), ' '.join(passed)))
if failed:
    print('sanity: %d failed: %s' % (len(failed), ' '.join(failed)))
bad = []
for name, state in sorted(results.items()):
    if state in ('passed', 'failed'):
        continue
    ok = name in allowed or (state == NOTHING and name not in must_run)
    print('sanity: skipped %s: %s%s' % (name, state, '' if ok else '  <-- must run'))
    if not ok:
        bad.append(name)
if not results:
    print('sanity: ERROR: no junit results', file=sys.stderr)
    sys.exit(1)
if bad:
    print('sanity: ERROR: skipped although they must run: %s' % ' '.join(bad), file=sys.stderr)
    sys.exit(1)
PY
exit "$rc"
