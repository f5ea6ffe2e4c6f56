#!/usr/bin/env bash
# A tiny Linux guest for tests: a kernel and an initramfs for direct kernel boot, no disk image.
#
#   bash scripts/guest-image.sh        # prints kernel=..., initrd=..., cmdline=... (one per line)
#
# Boot it with
#   <os><type arch='x86_64' machine='pc'>hvm</type>
#     <kernel>KERNEL</kernel><initrd>INITRD</initrd><cmdline>CMDLINE</cmdline></os>
#   <features><acpi/></features>, a <serial type='pty'/> for the console, 128 MiB of memory.
#
# The guest (busybox only) loads the virtio drivers, asks for a DHCP lease on every NIC present at
# boot (so libvirt's dnsmasq records it), powers off cleanly within a second of an ACPI power
# button press (virDomainShutdown), acknowledges ACPI PCI hot-unplug (the kernel does that), and
# otherwise idles with a shell on ttyS0. Under TCG on a loaded 2-core machine it has a lease
# roughly 10-20 s after start.
#
# QEMU guest agent: when the domain has the channel
#   <channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/></channel>
# the guest starts qemu-ga on /dev/virtio-ports/org.qemu.guest_agent.0 (guest-ping, network
# interfaces, fsfreeze/fsthaw, fsinfo, osinfo, file read/write, ...); it logs the commands that
# change something ("guest-fsfreeze called"; not the thaw) to syslog, which the guest
# keeps in /run/messages. Without the channel no agent runs.
# The agent allows every command (guest-exec and the guest-file-* commands included) unless the
# kernel command line says `tiny.qga_block=CMD,CMD,...` (qemu-ga -b: those commands answer "has
# been disabled for this instance", as RHEL's qemu-ga does for guest-exec by default) or
# `tiny.qga=off` (the channel is there but no qemu-ga opens it: libvirt says the agent is not
# connected). Children of guest-exec run as root with HOME=/root and PATH=/bin:/usr/bin:/usr/sbin.
# Python: Debian's python3-minimal (/usr/bin/python3, 3.11) with the pure-Python part of
# libpython3.11-stdlib (json, shutil, shlex, zipfile, ...: python3-minimal alone cannot run an
# Ansible module) and the compiled stdlib extensions that need no library beyond those of
# qemu-ga and python itself, unpacked like qemu-ga; enough for Ansible modules (AnsiballZ).
# Data file system: with `tiny.datadisk=vdX` on the kernel command line the guest mounts the ext2
# file system of /dev/vdX on /data, after making one (busybox mke2fs) when the disk is blank (its
# first 64 KiB are zeroes); a disk that holds anything else is left alone. The agent's
# guest-fsfreeze-freeze then freezes exactly that one file system (the initramfs root cannot be
# frozen and is skipped).
#
# What it uses: the Debian 12 cloud kernel (linux-image-*-cloud-amd64), busybox-static,
# qemu-guest-agent and Python (python3-minimal, python3.11-minimal, libpython3.11-minimal,
# libpython3.11-stdlib), fetched with `apt-get download` and unpacked with `dpkg-deb -x`: nothing is
# installed on the host. qemu-ga and python are dynamically linked: their shared libraries (glib, ...) and the
# dynamic loader are copied from the host (resolved with ldd; the host must be Debian 12 amd64,
# the same release as the package, with those libraries present). Packages and builds live in a cache outside the checkout (VIRTOPS_GUEST_CACHE, default
# /var/cache/virtops-guest), so clones on one machine share them. The first run downloads (about
# 33 MB) and builds (a few seconds); later runs use the cached packages, offline, and print the
# existing build at once (a build is named by a hash of everything that goes into it).
# VIRTOPS_GUEST_REFRESH=1 looks for a newer kernel package first. Concurrent runs are serialised
# with a lock in the cache. Needs: bash, apt-get/apt-cache, dpkg-deb, gzip, sha256sum, flock, ldd
# (all on any Debian); root unless the cache directory is writable. QEMU (user libvirt-qemu)
# opens the kernel and initramfs itself: the cache must be readable and traversable by it.
set -euo pipefail

cache="${VIRTOPS_GUEST_CACHE:-/var/cache/virtops-guest}"
debs="$cache/debs"
kernel_meta=linux-image-cloud-amd64
# The cloud kernel has these as modules; their dependencies are added from the modules' own
# `depends=` (modinfo) in load order. button + evdev give /dev/input/eventN for the power button.
# virtio_console gives the virtio-serial port of the guest agent.
wanted_modules=(virtio_pci virtio_net virtio_blk virtio_scsi virtio_console button evdev)
cmdline="console=ttyS0 quiet loglevel=3 panic=-1"
# Bump when the way the initramfs is built changes in a way the hash below does not see.
recipe_version=3
# Python of Debian 12 (python3-minimal depends on python3.11-minimal): the interpreter, its
# essential modules, and the rest of the standard library (pure Python part).
python_version=3.11
python_packages=(python3-minimal "python${python_version}-minimal" "libpython${python_version}-minimal"
                 "libpython${python_version}-stdlib")
# Parts of the standard library no Ansible module needs (tests, docs data, GUI, installers).
python_skip=(test pydoc_data ensurepip idlelib tkinter turtledemo lib2to3 __phello__ turtle.py)
# Compiled extensions left out likewise (test modules, audio, CJK codecs), as shell globs.
python_skip_ext=('_test*' '_ctypes_test*' 'xx*' '_xx*' ossaudiodev* audioop* '_codecs_*' _multibytecodec* _lsprof*)

log() { printf '[guest-image] %s\n' "$*" >&2; }
die() { printf '[guest-image] ERROR: %s\n' "$*" >&2; exit 1; }

[ "$(uname -m)" = x86_64 ] || die "only x86_64 hosts are supported (the guest is amd64)"
for tool in apt-get apt-cache dpkg-deb gzip sha256sum flock ldd; do
  command -v "$tool" >/dev/null || die "$tool is missing (this script expects a Debian host)"
done

mkdir -p "$debs" || die "cannot create $cache (run as root or set VIRTOPS_GUEST_CACHE)"
chmod 0755 "$cache" 2>/dev/null || true  # QEMU (libvirt-qemu) reads the builds
exec 9>"$cache/.lock"
flock -w 600 9 || die "another guest-image.sh holds $cache/.lock for 10 min"

newest_deb() {  # newest cached .deb matching a glob, by version order
  local f
  f="$(find "$debs" -maxdepth 1 -type f -name "$1" -printf '%f\n' | sort -V | tail -n 1)"
  [ -n "$f" ] && printf '%s/%s\n' "$debs" "$f"
}

apt_download() {  # apt_download PACKAGE: into $debs
  local pkg=$1 tmp
  tmp="$(mktemp -d "$cache/download.XXXXXX")"
  # Root's apt-get drops to user _apt, which cannot write here: download as the caller.
  if ! (cd "$tmp" && apt-get -q -o APT::Sandbox::User=root download "$pkg" >&2); then
    rm -rf "$tmp"
    return 1
  fi
  mv "$tmp"/*.deb "$debs"/
  rmdir "$tmp"
}

kernel_package_name() {  # linux-image-cloud-amd64 -> linux-image-6.1.0-NN-cloud-amd64
  apt-cache depends "$kernel_meta" 2>/dev/null \
    | sed -n 's/^ *Depends: \(linux-image-[0-9].*-cloud-amd64\)$/\1/p' | head -n 1
}

ensure_package_lists() {
  if ! apt-cache show "$kernel_meta" >/dev/null 2>&1; then
    [ "$(id -u)" -eq 0 ] || die "apt knows no $kernel_meta; run apt-get update as root"
    log "apt knows no $kernel_meta: apt-get update"
    apt-get -q update >&2 || die "apt-get update failed"
  fi
}

kernel_deb="$(newest_deb 'linux-image-*-cloud-amd64_*.deb' || true)"
busybox_deb="$(newest_deb 'busybox-static_*.deb' || true)"
if [ -z "$kernel_deb" ] || [ -n "${VIRTOPS_GUEST_REFRESH:-}" ]; then
  ensure_package_lists
  pkg="$(kernel_package_name)"
  [ -n "$pkg" ] || die "cannot tell which kernel package $kernel_meta depends on (apt-cache depends)"
  version="$(apt-cache policy "$pkg" | sed -n 's/^ *Candidate: //p')"
  if [ -z "$(newest_deb "${pkg}_${version//:/%3a}_*.deb" || true)" ]; then
    log "downloading $pkg $version"
    apt_download "$pkg" || die "apt-get download $pkg failed (no network and nothing cached in $debs?)"
  fi
  kernel_deb="$(newest_deb "${pkg}_*.deb")"
fi
if [ -z "$busybox_deb" ]; then
  ensure_package_lists
  log "downloading busybox-static"
  apt_download busybox-static || die "apt-get download busybox-static failed (no network?)"
  busybox_deb="$(newest_deb 'busybox-static_*.deb')"
fi
qga_deb="$(newest_deb 'qemu-guest-agent_*.deb' || true)"
if [ -z "$qga_deb" ]; then
  ensure_package_lists
  log "downloading qemu-guest-agent"
  apt_download qemu-guest-agent || die "apt-get download qemu-guest-agent failed (no network?)"
  qga_deb="$(newest_deb 'qemu-guest-agent_*.deb')"
fi
python_debs=()
for pkg in "${python_packages[@]}"; do
  deb="$(newest_deb "${pkg}_*.deb" || true)"
  if [ -z "$deb" ]; then
    ensure_package_lists
    log "downloading $pkg"
    apt_download "$pkg" || die "apt-get download $pkg failed (no network?)"
    deb="$(newest_deb "${pkg}_*.deb")"
  fi
  python_debs+=("$deb")
done

# ------------------------------------------------------------------ what runs in the guest
read -r -d '' init_script <<'EOF' || true
#!/bin/sh
# /init of the virtops tiny test guest (scripts/guest-image.sh)
/bin/busybox --install -s /bin
export PATH=/bin:/usr/bin:/usr/sbin HOME=/root
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /tmp /run /var/run /etc
mount -t devpts devpts /dev/pts
say() { echo "tiny-guest: $*" > /dev/console; }

for m in $(cat /lib/modules/load-order); do
  insmod "/lib/modules/$m.ko" || say "insmod $m failed"
done

hostname tiny-guest
datadisk=
qga=on
qga_block=
for word in $(cat /proc/cmdline); do
  case "$word" in
    tiny.hostname=*) hostname "${word#tiny.hostname=}" ;;
    tiny.datadisk=*) datadisk="${word#tiny.datadisk=}" ;;
    tiny.qga=*) qga="${word#tiny.qga=}" ;;
    tiny.qga_block=*) qga_block="${word#tiny.qga_block=}" ;;
  esac
done

# syslog into /run/messages: qemu-ga logs there what it was asked to do ("guest-fsfreeze called"),
# readable through the agent itself (guest-file-open/read).
syslogd -O /run/messages

# QEMU guest agent, when the domain has its virtio-serial channel. devtmpfs makes /dev/vportNpM;
# the /dev/virtio-ports/NAME links (udev's job elsewhere) are made here from sysfs. The port's
# name arrives from the host shortly after the device: look for up to 10 s, in the background.
mkdir -p /dev/virtio-ports /run/qemu-ga
(
  port=/dev/virtio-ports/org.qemu.guest_agent.0
  n=0
  while [ ! -e "$port" ] && [ "$n" -lt 100 ]; do
    for p in /sys/class/virtio-ports/*; do
      [ -e "$p/name" ] || continue
      name="$(cat "$p/name")"
      [ -n "$name" ] && [ -c "/dev/${p##*/}" ] && ln -sf "../${p##*/}" "/dev/virtio-ports/$name"
    done
    [ -e "$port" ] || sleep 0.1
    n=$((n + 1))
  done
  if [ ! -e "$port" ]; then
    say "no guest agent channel (org.qemu.guest_agent.0): no qemu-ga"
    exit 0
  fi
  if [ "$qga" = off ]; then
    say "guest agent channel present, qemu-ga not started (tiny.qga=off)"
    exit 0
  fi
  block=
  if [ -n "$qga_block" ]; then
    block="-b $qga_block"
    say "guest agent blocks $qga_block"
  fi
  say "guest agent started on $port"
  while :; do
    # shellcheck disable=SC2086  # $block: no words or two
    LD_LIBRARY_PATH=/lib/x86_64-linux-gnu /usr/sbin/qemu-ga -m virtio-serial -p "$port" \
      -t /run/qemu-ga -f /run/qemu-ga.pid -l /run/qemu-ga.log $block
    say "qemu-ga exited ($?), restarting it (log: /run/qemu-ga.log)"
    sleep 1
  done
) &

# Data file system (tiny.datadisk=vdX): ext2 on /data, made when the disk is blank.
if [ -n "$datadisk" ]; then
  dev="/dev/$datadisk"
  n=0
  while [ ! -b "$dev" ] && [ "$n" -lt 50 ]; do sleep 0.1; n=$((n + 1)); done
  if [ ! -b "$dev" ]; then
    say "data disk $dev: no such block device"
  else
    # ext2/3/4 superblock magic 0xEF53 at byte 1080
    magic="$(dd if="$dev" bs=1 skip=1080 count=2 2>/dev/null | od -An -tx1 | tr -d ' \n')"
    if [ "$magic" != 53ef ]; then
      if [ "$(dd if="$dev" bs=65536 count=1 2>/dev/null | tr -d '\000' | wc -c)" -eq 0 ]; then
        if mke2fs -q -L data "$dev" >/dev/null 2>&1; then
          say "data disk $dev: made an ext2 file system"
          magic=53ef
        else
          say "data disk $dev: mke2fs failed"
        fi
      else
        say "data disk $dev: not blank and no ext2/3/4 file system: left alone"
      fi
    fi
    if [ "$magic" = 53ef ]; then
      mkdir -p /data
      if mount -t ext2 "$dev" /data 2>/dev/null || mount -t ext4 "$dev" /data; then
        say "data disk $dev mounted on /data"
      else
        say "data disk $dev: mount failed"
      fi
    fi
  fi
fi

# ACPI power button (virDomainShutdown): the first input event powers off at once.
found=
for ev in /sys/class/input/event*; do
  [ -e "$ev/device/name" ] || continue
  case "$(cat "$ev/device/name")" in
    *"Power Button"*)
      found=1
      ( dd if="/dev/input/${ev##*/}" of=/dev/null bs=24 count=1 2>/dev/null
        say "power button pressed, powering off"
        sync
        poweroff -f ) &
      ;;
  esac
done
[ -n "$found" ] || say "no power button input device: ACPI shutdown will not work"

ip link set lo up
for nic in /sys/class/net/eth*; do
  [ -e "$nic" ] || continue
  nic="${nic##*/}"
  ip link set "$nic" up
  # In the background: retries until it has a lease, then renews it.
  udhcpc -b -t 5 -T 2 -A 2 -i "$nic" -x "hostname:$(hostname)" -s /etc/udhcpc.script >/dev/null 2>&1 &
done
say "up"

# A shell on the serial console (if there is one); PID 1 idles.
if [ -c /dev/ttyS0 ]; then
  ( while :; do setsid sh -c 'exec sh </dev/ttyS0 >/dev/ttyS0 2>&1'; sleep 1; done ) &
fi
while :; do sleep 3600; done
EOF

read -r -d '' udhcpc_script <<'EOF' || true
#!/bin/sh
# udhcpc hook of the tiny guest: configure the leased address and the default route.
case "$1" in
  deconfig) ip addr flush dev "$interface"; ip link set "$interface" up ;;
  bound|renew)
    ip addr flush dev "$interface"
    ip addr add "$ip/${mask:-24}" dev "$interface"
    [ -n "$router" ] && ip route replace default via "${router%% *}" dev "$interface"
    echo "tiny-guest: $interface $ip/${mask:-24}" > /dev/console
    ;;
esac
exit 0
EOF

read -r -d '' os_release <<'EOF' || true
PRETTY_NAME="virtops tiny test guest"
NAME="virtops tiny guest"
ID=virtops-tiny
VERSION_ID=1
EOF

work="$(mktemp -d "$cache/work.XXXXXX")"
trap 'rm -rf "$work"' EXIT

# qemu-ga and what it needs from the host: the shared libraries ldd resolves and the dynamic
# loader (their contents go into the build's name, so a host library update rebuilds).
dpkg-deb -x "$qga_deb" "$work/qga"
qga="$work/qga/usr/sbin/qemu-ga"
[ -x "$qga" ] || die "no usr/sbin/qemu-ga in $(basename "$qga_deb")"
ldd_out="$(ldd "$qga")" || die "ldd $qga failed"
if grep -q 'not found' <<<"$ldd_out"; then
  die "qemu-ga needs libraries this host lacks (the host must be Debian 12): $(grep 'not found' <<<"$ldd_out" | tr -s ' \t\n' ' ')"
fi
# lines: 'libx.so.1 => /lib/.../libx.so.1 (0x...)', '/lib64/ld-linux-x86-64.so.2 (0x...)', 'linux-vdso.so.1 (0x...)'
mapfile -t qga_libs < <(sed -n -e 's/^.*=> \(\/[^ ]*\) (0x.*$/\1/p' -e 's/^[[:space:]]*\(\/[^ ]*\) (0x.*$/\1/p' <<<"$ldd_out" | sort -u)
[ ${#qga_libs[@]} -gt 0 ] || die "ldd listed no libraries for qemu-ga: $ldd_out"

# Python: the interpreter and standard library from the packages, the libraries from the host
# (as for qemu-ga). Compiled stdlib extensions come along only when every library they need is
# already there (the others, e.g. _sqlite3, _curses, _ssl, would pull in more of the host).
for deb in "${python_debs[@]}"; do dpkg-deb -x "$deb" "$work/python"; done
python_bin="$work/python/usr/bin/python${python_version}"
[ -x "$python_bin" ] || die "no usr/bin/python${python_version} in the python packages"
ldd_libs() {  # ldd_libs FILE: the absolute library paths ldd resolves; fails on 'not found'
  local out
  out="$(ldd "$1" 2>/dev/null)" || return 1
  grep -q 'not found' <<<"$out" && return 1
  sed -n -e 's/^.*=> \(\/[^ ]*\) (0x.*$/\1/p' -e 's/^[[:space:]]*\(\/[^ ]*\) (0x.*$/\1/p' <<<"$out"
}
mapfile -t python_libs < <(ldd_libs "$python_bin") || true
[ ${#python_libs[@]} -gt 0 ] || die "python${python_version} needs libraries this host lacks: $(ldd "$python_bin" 2>&1 | tr -s ' \t\n' ' ')"
mapfile -t guest_libs < <(printf '%s\n' "${qga_libs[@]}" "${python_libs[@]}" | sort -u)
python_ext=()
while IFS= read -r so; do
  for pattern in "${python_skip_ext[@]}"; do
    # shellcheck disable=SC2053  # a glob on purpose
    [[ ${so##*/} == $pattern ]] && continue 2
  done
  needs="$(ldd_libs "$so")" || continue
  ok=1
  for l in $needs; do
    printf '%s\n' "${guest_libs[@]}" | grep -qxF "$l" || { ok=; break; }
  done
  [ -n "$ok" ] && python_ext+=("$so")
done < <(find "$work/python/usr/lib/python${python_version}/lib-dynload" -name '*.so' | LC_ALL=C sort)
libs_sum="$(for l in "${guest_libs[@]}"; do printf '%s ' "$l"; sha256sum < "$l"; done)"

build_id="$(printf '%s\n' "$recipe_version" "$(basename "$kernel_deb")" "$(basename "$busybox_deb")" \
  "$(basename "$qga_deb")" "$libs_sum" "${wanted_modules[*]}" "$init_script" "$udhcpc_script" \
  "$os_release" "${python_debs[*]##*/}" "${python_skip[*]}" "${python_skip_ext[*]}" "${python_ext[*]##*/}" \
  | sha256sum | cut -c1-16)"
out="$cache/build-$build_id"

print_result() {
  printf 'kernel=%s\ninitrd=%s\ncmdline=%s\n' "$out/vmlinuz" "$out/initrd.gz" "$cmdline"
}

if [ -f "$out/stamp" ] && [ -f "$out/vmlinuz" ] && [ -f "$out/initrd.gz" ]; then
  print_result
  exit 0
fi

# ------------------------------------------------------------------ build
log "building $out from $(basename "$kernel_deb"), $(basename "$busybox_deb") and $(basename "$qga_deb")"
dpkg-deb -x "$kernel_deb" "$work/kernel"
dpkg-deb -x "$busybox_deb" "$work/busybox"
kver="$(find "$work/kernel/lib/modules" -mindepth 1 -maxdepth 1 -type d -printf '%f\n' | head -n 1)"
moddir="$work/kernel/lib/modules/$kver"
vmlinuz="$work/kernel/boot/vmlinuz-$kver"
[ -f "$vmlinuz" ] || die "no kernel image in $(basename "$kernel_deb")"
busybox="$work/busybox/bin/busybox"
[ -x "$busybox" ] || die "no busybox in $(basename "$busybox_deb")"

declare -A module_file=() loaded=()
while IFS= read -r f; do
  name="$(basename "$f" .ko)"
  module_file[${name//-/_}]="$f"
done < <(find "$moddir" -name '*.ko')
load_order=()
add_module() {  # depth first: dependencies before the module
  local name=${1//-/_} f dep
  [ -n "${loaded[$name]:-}" ] && return
  f="${module_file[$name]:-}"
  [ -n "$f" ] || die "module $name not found in $kver (built in? then drop it from wanted_modules)"
  loaded[$name]=1
  # modinfo's depends= lives in the .modinfo section as a NUL-terminated string
  for dep in $(tr '\0' '\n' < "$f" | sed -n 's/^depends=//p' | tr ',' ' '); do
    add_module "$dep"
  done
  load_order+=("$name")
}
for m in "${wanted_modules[@]}"; do add_module "$m"; done

root="$work/root"
mkdir -p "$root"/{bin,dev,proc,sys,etc,tmp,lib/modules}
cp "$busybox" "$root/bin/busybox"
ln -s busybox "$root/bin/sh"
printf '%s\n' "$init_script" > "$root/init"
printf '%s\n' "$udhcpc_script" > "$root/etc/udhcpc.script"
printf '%s\n' "$os_release" > "$root/etc/os-release"
chmod 0755 "$root/init" "$root/etc/udhcpc.script"
mkdir -p "$root/usr/sbin"
cp "$qga" "$root/usr/sbin/qemu-ga"
for l in "${guest_libs[@]}"; do  # at the path ldd named (the loader: the binary's PT_INTERP)
  mkdir -p "$root$(dirname "$l")"
  cp -L "$l" "$root$l"
done
log "qemu-ga and python libraries: ${guest_libs[*]}"
# A root account (HOME for Ansible's remote temporary directory, pwd lookups of modules).
mkdir -p "$root/root" "$root/usr/bin"
chmod 0700 "$root/root"
printf 'root:x:0:0:root:/root:/bin/sh\n' > "$root/etc/passwd"
printf 'root:x:0:\n' > "$root/etc/group"
pyroot="$root/usr/lib/python${python_version}"
cp "$python_bin" "$root/usr/bin/python${python_version}"
ln -s "python${python_version}" "$root/usr/bin/python3"
mkdir -p "$pyroot/lib-dynload"
skip_args=()
for s in "${python_skip[@]}"; do skip_args+=(--exclude="./$s"); done
tar -C "$work/python/usr/lib/python${python_version}" --exclude=./lib-dynload "${skip_args[@]}" -cf - . \
  | tar -C "$pyroot" -xf -
for so in "${python_ext[@]}"; do cp "$so" "$pyroot/lib-dynload/"; done
log "python ${python_version}: $(du -sk "$pyroot" | cut -f1) KiB, extensions: ${python_ext[*]##*/}"
for m in "${load_order[@]}"; do cp "${module_file[$m]}" "$root/lib/modules/$m.ko"; done
printf '%s\n' "${load_order[@]}" > "$root/lib/modules/load-order"
log "modules: ${load_order[*]}"

mkdir -p "$work/out"
cp "$vmlinuz" "$work/out/vmlinuz"
# newc cpio with busybox's own cpio (the host may have none), owned by root, gzip for the kernel
(cd "$root" && find . | LC_ALL=C sort | "$busybox" cpio -o -H newc -R 0:0 2>/dev/null) \
  | gzip -n -9 > "$work/out/initrd.gz"
chmod 0755 "$work/out"
chmod 0644 "$work/out/vmlinuz" "$work/out/initrd.gz"
printf '%s\n' "$(basename "$kernel_deb")" "$(basename "$busybox_deb")" "$(basename "$qga_deb")" \
  "${python_debs[@]##*/}" > "$work/out/stamp"
rm -rf "$out"
mv "$work/out" "$out"
log "initramfs $(du -k "$out/initrd.gz" | cut -f1) KiB"
print_result
