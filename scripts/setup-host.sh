#!/bin/bash
# Prepare this machine to run the collection: distribution packages, libvirt daemons, the venv.
# Idempotent and quick on a second run. Run as root on Debian 12 (or Ubuntu).
# The libvirt_host role performs the same steps on managed hosts; this script is for the
# controller that runs `make demo` / `make test`, where Ansible itself is not yet installed.
set -euo pipefail

here="$(cd "$(dirname "$0")/.." && pwd)"
venv="${VENV:-$here/.venv}"
packages=(
  libvirt-daemon-system libvirt-daemon-driver-qemu libvirt-clients
  qemu-system-x86 qemu-utils libnbd-bin
  python3-libvirt python3-lxml python3-libnbd python3-venv
  virtnbdbackup
)

log() { printf '[setup] %s\n' "$*"; }

install_packages() {
  local missing=()
  for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  if [ ${#missing[@]} -eq 0 ]; then
    log "distribution packages present"
    return
  fi
  log "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# Without systemd the daemons are started by hand. Two copies on the same socket paths
# remove each other's sockets, so only start one when nothing answers.
start_daemons() {
  if ! pgrep -x virtlogd >/dev/null; then
    log "starting virtlogd"
    virtlogd -d
  fi
  if virsh -c qemu:///system version >/dev/null 2>&1; then
    log "libvirtd answers"
    return
  fi
  if pgrep -x libvirtd >/dev/null; then
    # Running but not answering yet: give it a moment before starting another.
    for _ in $(seq 1 20); do
      virsh -c qemu:///system version >/dev/null 2>&1 && return
      sleep 0.5
    done
  fi
  log "starting libvirtd"
  libvirtd -d
  for _ in $(seq 1 40); do
    virsh -c qemu:///system version >/dev/null 2>&1 && { log "libvirtd answers"; return; }
    sleep 0.5
  done
  echo "libvirtd did not answer on qemu:///system within 20 s" >&2
  exit 1
}

make_venv() {
  local req="$here/requirements-dev.txt"
  local stamp="$venv/.requirements.sha256"
  local want
  want="$(sha256sum "$req" | cut -d' ' -f1)"
  if [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    log "venv up to date"
    return
  fi
  log "preparing venv $venv"
  # The distribution's python with its site packages: libvirt, lxml and libnbd bindings
  # come from Debian (there is no NBD client library on PyPI).
  [ -x "$venv/bin/python" ] || /usr/bin/python3 -m venv --system-site-packages "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check -r "$req"
  echo "$want" > "$stamp"
}

# ansible-test sanity bootstraps pip in each of its venvs with a script it downloads; these
# machines reach only the package registries. A local stand-in in ansible-test's cache does
# the same job with ensurepip and PyPI.
ansible_test_pip_standin() {
  local cache="$HOME/.ansible/test/cache"
  mkdir -p "$cache"
  local f
  for v in 24_2 25_0 25_1; do
    f="$cache/get_pip_${v}.py"
    [ -f "$f" ] && grep -q virtops-standin "$f" && continue
    cat > "$f" <<'PY'
# virtops-standin: offline replacement for get-pip.py
import ensurepip
import subprocess
import sys

ensurepip.bootstrap(upgrade=True)
args = [a for a in sys.argv[1:] if a not in ('--no-setuptools', '--no-wheel')]
if args:
    subprocess.check_call([sys.executable, '-m', 'pip', 'install'] + args)
PY
  done
}

check_python_bindings() {
  "$venv/bin/python" -c 'import libvirt, lxml, nbd' || {
    echo "the venv does not see the libvirt/lxml/nbd bindings" >&2; exit 1; }
}

install_packages
start_daemons
make_venv
ansible_test_pip_standin
check_python_bindings
log "ready"
