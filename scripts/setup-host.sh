#!/usr/bin/env bash
# Prepare this machine to run the collection: distribution packages, libvirt daemons, the venv,
# ansible-test's offline pip bootstrap.
# Idempotent; a second run changes nothing and takes well under 3 s. Run as root on Debian 12
# (or Ubuntu). Without systemd (containers, CI) the daemons are started here, so every
# `make test` starts them itself when they are not running (e.g. after a machine restart).
# The libvirt_host role performs the same steps on managed hosts; this script is for the
# controller that runs `make demo` / `make test`, where Ansible itself is not yet installed.
set -euo pipefail
# Daemons live in /usr/sbin; a minimal PATH (cron, CI runners) may lack it.
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

here="$(cd "$(dirname "$0")/.." && pwd)"
venv="${VENV:-$here/.venv}"
packages=(
  libvirt-daemon-system libvirt-daemon-driver-qemu libvirt-clients
  qemu-system-x86 qemu-utils libnbd-bin
  # libvirt networks with DHCP or DNS need dnsmasq (a recommendation, which --no-install-recommends skips)
  dnsmasq-base
  python3-libvirt python3-lxml python3-libnbd python3-venv
  # XXH3-128, the block hash of repository format version 2 (issue 13)
  python3-xxhash
  # zstd-compressed backup images written by the module itself, compressing on every core (issue 12)
  python3-zstandard
  # S3 object storage of virt_backup_copy and S3 repositories of virt_restore (issue 12)
  python3-boto3
  virtnbdbackup
  # cloud-init seed ISOs of the libvirt_guest role are built with pycdlib (a library, no shell tool)
  python3-pycdlib
  # logical (LVM) storage pools: libvirt runs pvcreate/vgcreate/lvcreate itself
  lvm2
  # tools of the test pipeline: tests/sanity.sh copies `git ls-files`, and ansible-test's
  # shellcheck sanity test is skipped without shellcheck
  git shellcheck
  # debugfs reads files from restored ext2 images in the guest_agent integration target
  e2fsprogs
  # iscsi-direct storage pools (libiscsi inside libvirtd), a user-space iSCSI target for the
  # virt_pool_iscsi integration target, and QEMU's iSCSI block driver for disks in such pools
  libvirt-daemon-driver-storage-iscsi-direct tgt qemu-block-extra
  # UEFI firmware (OVMF) and the emulated TPM (swtpm, swtpm_setup) of UEFI guests, whose variable
  # store and TPM state every backup saves
  ovmf swtpm swtpm-tools
  # certificates for the NBD-over-TLS tests of virt_backup_export
  openssl
  # dpkg-source unpacks libvirt's Debian source package, whose test XML is the corpus of
  # tests/corpus (tests/corpus/fetch-libvirt-testdata.sh)
  dpkg-dev
)
daemon_log=/var/log/libvirt/virtops-daemon-start.log

log() { printf '[setup] %s\n' "$*"; }
die() { printf '[setup] ERROR: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "run as root (packages, daemons)"

# Two concurrent runs (two people typing `make test`) must not start two copies of a daemon
# or run pip in the same venv at the same time.
lock_setup() {
  local lock=/run/lock/virtops-setup.lock
  [ -d /run/lock ] || lock=/run/virtops-setup.lock
  exec 9>"$lock"
  flock -w 900 9 || die "another setup-host.sh still holds $lock after 15 min"
}

install_packages() {
  local missing=() p status
  # one dpkg-query for all packages: prints "name status" for the known ones
  declare -A installed=()
  while read -r p status; do
    [ "$status" = installed ] && installed[$p]=1
  done < <(dpkg-query -W -f='${Package} ${db:Status-Status}\n' "${packages[@]}" 2>/dev/null || true)
  for p in "${packages[@]}"; do
    [ -n "${installed[$p]:-}" ] || missing+=("$p")
  done
  if [ ${#missing[@]} -eq 0 ]; then
    log "distribution packages present"
    return
  fi
  log "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # A fresh machine (or container) has no or stale package lists: always update first.
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends -o DPkg::Lock::Timeout=300 "${missing[@]}" >/dev/null
  # libvirtd loads its storage backends and probes QEMU's block drivers when it starts: a
  # daemon already running does not see what was just installed.
  for p in "${missing[@]}"; do
    # libvirtd also picks swtpm's user (tss, made by swtpm-tools) when it starts, and
    # runs swtpm as root when that user did not exist then.
    case $p in libvirt-daemon-driver-*|qemu-block-extra|swtpm|swtpm-tools) restart_libvirtd=1 ;; esac
  done
}
restart_libvirtd=0

# --- libvirt daemons -------------------------------------------------------------------------
# Without systemd the daemons are started by hand. Two copies on the same socket paths remove
# each other's sockets, so a daemon is only started when none is alive. A daemon that died
# (kill -9, OOM, machine restart with a persistent /run) leaves its pid file and socket files
# behind; they are removed before starting a new one.

# A stopped or hung daemon accepts connections but never replies: bound every check.
virtlogd_answers() { timeout 5 virt-admin -c virtlogd:///system srv-list >/dev/null 2>&1; }
# `virsh uri` needs a working connection to the QEMU driver but, unlike `virsh version`
# (which probes the emulator and took 7-11 s here), answers in milliseconds.
libvirtd_answers() { timeout 5 virsh -c qemu:///system uri >/dev/null 2>&1; }

# Pids of live processes running exactly this daemon binary.
daemon_pids() { pgrep -x "$1" || true; }

wait_for() {  # wait_for SECONDS CHECK
  local deadline=$(( SECONDS + $1 ))
  while [ "$SECONDS" -lt "$deadline" ]; do
    "$2" && return 0
    sleep 0.2
  done
  return 1
}

# Start a self-daemonising command with no inherited file descriptors: a daemon that kept the
# caller's stdout/stderr (or any other pipe, e.g. a CI runner's) open would make that caller
# wait forever for end-of-file.
spawn_daemon() {
  mkdir -p "$(dirname "$daemon_log")"
  printf '%s starting: %s\n' "$(date -Is)" "$*" >> "$daemon_log"
  /usr/bin/python3 -c '
import subprocess, sys
with open(sys.argv[1], "ab") as log:
    sys.exit(subprocess.call(sys.argv[2:], stdin=subprocess.DEVNULL, stdout=log,
                             stderr=log, close_fds=True, start_new_session=True))
' "$daemon_log" "$@"
}

# ensure_daemon NAME CHECK PIDFILE SOCKET...
ensure_daemon() {
  local name=$1 check=$2 pidfile=$3
  shift 3
  if "$check"; then
    log "$name answers"
    return
  fi
  if [ -n "$(daemon_pids "$name")" ]; then
    # Alive but not answering: just started by someone else, or still initialising.
    wait_for 20 "$check" && { log "$name answers"; return; }
    die "$name is running (pid $(daemon_pids "$name" | xargs)) but does not answer; see /var/log/libvirt/$name.log. Not starting a second copy."
  fi
  # Nothing alive: whatever is left in /run belongs to a dead daemon.
  local stale=()
  for f in "$pidfile" "$@"; do
    if [ -e "$f" ] || [ -S "$f" ]; then stale+=("$f"); fi
  done
  if [ ${#stale[@]} -gt 0 ]; then
    log "removing leftovers of a dead $name: ${stale[*]}"
    rm -f "${stale[@]}"
  fi
  log "starting $name"
  mkdir -p /run/libvirt
  spawn_daemon "$name" -d || die "$name -d failed; see $daemon_log and /var/log/libvirt/$name.log"
  wait_for 30 "$check" || die "$name did not answer within 30 s; see $daemon_log and /var/log/libvirt/$name.log"
  log "$name answers"
}

# Stop the libvirtd this script may have started (by its pid file), so that it starts anew.
stop_libvirtd() {
  local pid
  pid=$(cat /run/libvirtd.pid 2>/dev/null || true)
  [ -n "$pid" ] && kill "$pid" 2>/dev/null || return 0
  local deadline=$(( SECONDS + 30 ))
  while kill -0 "$pid" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.2; done
  kill -0 "$pid" 2>/dev/null && die "libvirtd (pid $pid) did not stop within 30 s"
  return 0
}

start_daemons() {
  # QEMU domains cannot start without virtlogd: start it first.
  ensure_daemon virtlogd virtlogd_answers /run/virtlogd.pid \
    /run/libvirt/virtlogd-sock /run/libvirt/virtlogd-admin-sock
  if [ "$restart_libvirtd" = 1 ] && libvirtd_answers; then
    log "restarting libvirtd: new libvirt drivers or QEMU block drivers were installed"
    stop_libvirtd
  fi
  ensure_daemon libvirtd libvirtd_answers /run/libvirtd.pid \
    /run/libvirt/libvirt-sock /run/libvirt/libvirt-sock-ro /run/libvirt/libvirt-admin-sock
}

# --- controller venv -------------------------------------------------------------------------
make_venv() {
  local req="$here/requirements-dev.txt" con="$here/constraints-dev.txt"
  local stamp="$venv/.requirements.sha256"
  local want
  # The stamp covers the requirement files and the interpreter: a new python3 minor version
  # (or a venv copied from elsewhere) means a rebuild.
  want="$(cat "$req" "$con" 2>/dev/null | sha256sum | cut -d' ' -f1) $(readlink -f /usr/bin/python3)"
  if [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] \
     && "$venv/bin/python" -c '' 2>/dev/null; then
    log "venv up to date"
    return
  fi
  log "preparing venv $venv (pip install from PyPI; takes a few minutes on a fresh machine)"
  # The distribution's python with its site packages: libvirt, lxml and libnbd bindings
  # come from Debian (there is no NBD client library on PyPI).
  if ! "$venv/bin/python" -c '' 2>/dev/null; then
    rm -rf "$venv"
    /usr/bin/python3 -m venv --system-site-packages "$venv"
  fi
  "$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$req"
  echo "$want" > "$stamp"
}

# --- ansible-test's pip bootstrap ------------------------------------------------------------
# ansible-test sanity bootstraps pip in each of its venvs with a script it downloads from
# ci-files.testing.ansible.com (unreachable here). It first looks for a cached copy at
# ~/.ansible/test/cache/get_pip_<pip version with _>.py; for ansible-core 2.19 the version is
# 24.2 (ansible_test/_internal/python_requirements.py, get_venv_packages). The stand-in does
# the same job with ensurepip and PyPI. It is called as
#   python get_pip_24_2.py --disable-pip-version-check pip==24.2 --no-setuptools --no-wheel
standin_script() {
  cat <<'PY'
# virtops-standin v2: offline replacement for ansible-test's get-pip.py (written by
# scripts/setup-host.sh of virtops.libvirt). Bootstraps pip from the interpreter's bundled
# wheels, then installs the requested packages (e.g. pip==24.2) from the package index.
import ensurepip
import subprocess
import sys

args = sys.argv[1:]
no_setuptools = '--no-setuptools' in args
no_wheel = '--no-wheel' in args
args = [a for a in args if a not in ('--no-setuptools', '--no-wheel')]

ensurepip.bootstrap(upgrade=True)
if any(not a.startswith('-') for a in args):
    subprocess.check_call([sys.executable, '-m', 'pip', 'install'] + args)
# Python 3.11's ensurepip also installs setuptools; the real get-pip does not when asked.
if no_setuptools:
    subprocess.call([sys.executable, '-m', 'pip', 'uninstall', '-q', '-y', 'setuptools'])
if no_wheel:
    subprocess.call([sys.executable, '-m', 'pip', 'uninstall', '-q', '-y', 'wheel'],
                    stderr=subprocess.DEVNULL)
PY
}

# ansible_test_pip_standin [VENV]: for the ansible-test of VENV (default: the main venv).
ansible_test_pip_standin() {
  local python="${1:-$venv}/bin/python"
  local cache="$HOME/.ansible/test/cache" versions v f tmp
  # Read the pip version(s) this ansible-test wants from its own source.
  versions="$("$python" - <<'PY' 2>/dev/null || true
import pathlib, re
import ansible_test
src = pathlib.Path(ansible_test.__file__).parent / '_internal' / 'python_requirements.py'
print(' '.join(sorted(set(re.findall(r"pip='([0-9.]+)'", src.read_text())))))
PY
)"
  [ -n "$versions" ] || versions=24.2
  mkdir -p "$cache"
  for v in $versions; do
    f="$cache/get_pip_${v//./_}.py"
    if [ -f "$f" ] && cmp -s "$f" <(standin_script); then
      continue
    fi
    # A real downloaded get-pip (not ours) works too: keep it.
    if [ -f "$f" ] && ! grep -q virtops-standin "$f"; then
      continue
    fi
    tmp="$(mktemp "$f.XXXXXX")"
    standin_script > "$tmp"
    chmod 0644 "$tmp"
    mv -f "$tmp" "$f"
    log "ansible-test pip bootstrap stand-in written: $f"
  done
}

# --- venvs of the other ansible-core lines ----------------------------------------------------
# tests/ansible-core-lines.txt lists the ansible-core releases tested, one per line that
# requires_ansible admits; the newest is the main venv's. Each older one gets .venv-<line>
# (e.g. .venv-2.16): the distribution's python with its site packages (libvirt, lxml, nbd
# bindings), that ansible-core and pytest. VIRTOPS_ANSIBLE_LINES says which lines:
# "oldest" (the default: what `make test` needs), "all" (`make matrix`) or "none".
line_releases() {
  local which="${VIRTOPS_ANSIBLE_LINES:-oldest}" releases
  releases="$(grep -Ev '^\s*(#|$)' "$here/tests/ansible-core-lines.txt" | awk '{print $1}' | sort -V)"
  case "$which" in
    none) ;;
    all) echo "$releases" | head -n -1 ;;
    oldest) echo "$releases" | head -n 1 ;;
    *) die "VIRTOPS_ANSIBLE_LINES is '$which': give oldest, all or none" ;;
  esac
}

make_line_venv() {
  local release=$1 line dir pytest_pin want
  line="${release%.*}"
  dir="$here/.venv-$line"
  pytest_pin="$(grep -E '^pytest==' "$here/constraints-dev.txt" || echo pytest)"
  want="ansible-core==$release $pytest_pin $(readlink -f /usr/bin/python3)"
  if [ -x "$dir/bin/python" ] && [ "$(cat "$dir/.requirements" 2>/dev/null)" = "$want" ] \
     && "$dir/bin/python" -c '' 2>/dev/null; then
    return
  fi
  log "preparing venv $dir for ansible-core $release (pip install from PyPI)"
  if ! "$dir/bin/python" -c '' 2>/dev/null; then
    rm -rf "$dir"
    /usr/bin/python3 -m venv --system-site-packages "$dir"
  fi
  "$dir/bin/python" -m pip install -q --disable-pip-version-check "ansible-core==$release" "$pytest_pin"
  echo "$want" > "$dir/.requirements"
}

make_line_venvs() {
  local release
  for release in $(line_releases); do
    make_line_venv "$release"
    ansible_test_pip_standin "$here/.venv-${release%.*}"
  done
}

check_python_bindings() {
  "$venv/bin/python" -c 'import libvirt, lxml, nbd' || die "the venv does not see the libvirt/lxml/nbd bindings"
}

# Debian's qemu-system-x86 ships a udev rule giving /dev/kvm to group kvm, mode 0660; without
# udev (no systemd here) the node stays root-only 0600. libvirtd then sees KVM differently from
# one capability probe to the next and re-probes QEMU on every define and start (minutes on TCG).
# Apply the rule's result by hand where udev did not.
kvm_device_mode() {
  [ -c /dev/kvm ] || return 0
  getent group kvm >/dev/null || return 0
  if [ "$(stat -c '%G %a' /dev/kvm)" != "kvm 660" ]; then
    chgrp kvm /dev/kvm && chmod 0660 /dev/kvm
    log "/dev/kvm set to group kvm, mode 0660 (what the udev rule does)"
  fi
}

# swtpm_setup keeps its local CA in /var/lib/swtpm-localca, which Debian's swtpm-tools makes
# tss:root 0750 (and its files are then tss's).
# Where swtpm_setup once ran as root (libvirtd started before tss existed), files there are root's
# and every later swtpm_setup, run as tss, fails ("Need read/write rights on
# /var/lib/swtpm-localca/.lock.swtpm-localca"): a UEFI+TPM domain can then not start.
swtpm_localca_owner() {
  local dir=/var/lib/swtpm-localca
  [ -d "$dir" ] && [ ! -L "$dir" ] || return 0
  getent passwd tss >/dev/null || return 0
  if [ -n "$(find "$dir" ! -user tss -print -quit)" ]; then
    chown -R --no-dereference tss "$dir"
    log "$dir given to tss (the owner Debian's swtpm-tools intends)"
  fi
}

lock_setup
install_packages
kvm_device_mode
swtpm_localca_owner
start_daemons
make_venv
ansible_test_pip_standin
make_line_venvs
check_python_bindings
log "ready"
