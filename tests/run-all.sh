#!/bin/bash
# Every test of the collection, in order of speed; stops at the first failing stage.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
stage() {
  local name=$1; shift
  local t0=$(date +%s)
  echo "=== $name"
  "$@"
  echo "=== $name: ok in $(( $(date +%s) - t0 )) s"
}
stage sanity bash tests/sanity.sh
stage ansible-lint make -s lint
stage unit make -s unit
stage integration bash tests/integration/run.sh
stage functional make -s functional
echo "=== all stages passed in $(( $(date +%s) - start )) s"
