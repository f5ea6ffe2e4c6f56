#!/usr/bin/env bash
# A second ("peer") libvirtd on this machine that looks like another host, so that live
# migration can be tested for real without a second machine.
#
#   peer-libvirtd.sh start    start it unless it already answers; prints its URI
#   peer-libvirtd.sh stop     destroy its domains, stop its libvirtd and virtlogd, remove its state
#   peer-libvirtd.sh uri      print the URI that reaches it
#   peer-libvirtd.sh status   exit 0 when it answers
#
# libvirt refuses to migrate to the host it runs on: the migration cookie carries the host UUID
# and the hostname, and the source compares both with its own. The peer therefore runs in its own
# mount and UTS namespaces with
#   - another hostname (UTS namespace) and another host_uuid (libvirtd.conf);
#   - private tmpfs over /run/libvirt (its sockets, pid and state files), /var/lib/libvirt/qemu
#     (per-domain runtime directories, QEMU monitor sockets); no cgroup mounts (both daemons
#     would otherwise create machine/qemu-<id>-<name> groups and could remove each other's);
#   - a copy of /etc/libvirt without any domain, network, pool, secret or nwfilter definition
#     (so it never starts, stops or re-creates the main daemon's networks or firewall rules);
#   - its own virtlogd, QEMU logs and capability cache (directories under the state directory);
#   - its client socket in the state directory, visible from outside, and its own pid files
#     (the main daemon uses /run/libvirtd.pid and /run/virtlogd.pid);
#   - a migration/NBD port range (49400-49463) apart from the main daemon's (49152-49215).
# Everything else is shared with the main daemon, on purpose: /var/lib/libvirt/images is the
# same directory on both "hosts", which is exactly shared storage, and both QEMUs share the
# network namespace, so the data connection is tcp://127.0.0.1:<port>.
#
# Environment: VIRTOPS_PEER_DIR (state directory, default /run/virtops-peer),
# VIRTOPS_PEER_HOSTNAME (default virtops-peer), VIRTOPS_PEER_KEEP_LOGS=1 (stop keeps the logs).
set -euo pipefail

state="${VIRTOPS_PEER_DIR:-/run/virtops-peer}"
peer_hostname="${VIRTOPS_PEER_HOSTNAME:-virtops-peer}"
sock="$state/sock/libvirt-sock"
uri="qemu+unix:///system?socket=$sock"

answers() {
  [ -S "$sock" ] && timeout 10 virsh -q -c "$uri" version >/dev/null 2>&1
}

pid_of() {
  local file="$state/$1.pid" pid
  [ -f "$file" ] || return 1
  pid="$(cat "$file" 2>/dev/null)" || return 1
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
  # Only a process of the right program: a stale pid file may name a reused pid.
  [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$1" ] || return 1
  echo "$pid"
}

stop_pid() {
  local name="$1" pid
  pid="$(pid_of "$name")" || return 0
  kill -TERM "$pid" 2>/dev/null || return 0
  for _ in $(seq 1 60); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.25
  done
  kill -KILL "$pid" 2>/dev/null || true
}

# Runs inside the new namespaces (called by start through unshare).
inner() {
  hostname "$peer_hostname"
  mount -t tmpfs -o mode=0755 virtops-peer-run /run/libvirt
  mount -t tmpfs -o mode=0751 virtops-peer-qemu /var/lib/libvirt/qemu
  chown libvirt-qemu:libvirt-qemu /var/lib/libvirt/qemu
  # Unmounted in this namespace only (private propagation): libvirt reads the cgroup mounts
  # from /proc/mounts, so hiding them under a tmpfs is not enough.
  umount -R -l /sys/fs/cgroup 2>/dev/null || true
  mount --bind "$state/etc" /etc/libvirt
  mount --bind "$state/cache" /var/cache/libvirt
  mount --bind "$state/log" /var/log/libvirt
  virtlogd -d -p "$state/virtlogd.pid"
  libvirtd -d -p "$state/libvirtd.pid"
}

start() {
  if answers; then
    echo "$uri"
    return 0
  fi
  # Something of ours that does not answer (half started, or left from a crash): clear it first.
  stop >/dev/null 2>&1 || true
  mkdir -p "$state/sock" "$state/log/qemu" "$state/cache"
  chmod 0755 "$state" "$state/sock"
  rm -rf "${state:?}/etc"
  mkdir -p "$state/etc/qemu/networks/autostart" "$state/etc/qemu/autostart" "$state/etc/storage" \
    "$state/etc/nwfilter" "$state/etc/secrets" "$state/etc/hooks"
  cp -p /etc/libvirt/*.conf "$state/etc/"
  chmod 0700 "$state/etc/secrets"
  [ -f "$state/host-uuid" ] || cat /proc/sys/kernel/random/uuid > "$state/host-uuid"
  cat >> "$state/etc/libvirtd.conf" <<EOF

# virtops peer daemon (tests/integration/targets/virt_migrate/files/peer-libvirtd.sh)
unix_sock_dir = "$state/sock"
host_uuid = "$(cat "$state/host-uuid")"
log_outputs = "3:file:/var/log/libvirt/libvirtd.log"
EOF
  cat >> "$state/etc/qemu.conf" <<EOF

# virtops peer daemon: ports apart from the main daemon's
migration_port_min = 49400
migration_port_max = 49463
EOF
  # The capability cache is valid for the same binaries on the same machine: copying it saves
  # a probe of every QEMU binary (seconds under TCG).
  if [ -d /var/cache/libvirt/qemu ] && [ ! -d "$state/cache/qemu" ]; then
    cp -a /var/cache/libvirt/qemu "$state/cache/" 2>/dev/null || true
  fi
  unshare --mount --uts --propagation private --fork -- bash "$0" __inner
  for _ in $(seq 1 120); do
    if answers; then
      echo "$uri"
      return 0
    fi
    sleep 0.5
  done
  echo "peer libvirtd did not answer on $sock within 60 s; log: $state/log/libvirtd.log" >&2
  tail -n 20 "$state/log/libvirtd.log" >&2 2>/dev/null || true
  return 1
}

stop() {
  local pid name qpid f
  if answers; then
    for name in $(virsh -q -c "$uri" list --all --name 2>/dev/null); do
      virsh -q -c "$uri" destroy "$name" >/dev/null 2>&1 || true
      virsh -q -c "$uri" undefine --snapshots-metadata --checkpoints-metadata "$name" \
        >/dev/null 2>&1 || true
    done
  fi
  # QEMU processes the daemon could not destroy: their pid files are in its private /run/libvirt,
  # reachable through the daemon's root directory while it lives.
  if pid="$(pid_of libvirtd)"; then
    for f in /proc/"$pid"/root/run/libvirt/qemu/*.pid; do
      [ -f "$f" ] || continue
      qpid="$(cat "$f" 2>/dev/null || true)"
      if [ -n "$qpid" ]; then
        kill -KILL "$qpid" 2>/dev/null || true
      fi
    done
  fi
  stop_pid libvirtd
  stop_pid virtlogd
  rm -rf "${state:?}/sock" "${state:?}/etc" "${state:?}/cache" "${state:?}"/*.pid
  if [ "${VIRTOPS_PEER_KEEP_LOGS:-0}" != 1 ]; then
    rm -rf "$state"
  fi
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  uri) echo "$uri" ;;
  status) answers ;;
  __inner) inner ;;
  *)
    echo "usage: $0 start|stop|uri|status" >&2
    exit 2
    ;;
esac
