#!/usr/bin/env bash
# Fetch the test data of the libvirt that runs on this host (its Debian source package) for the
# corpus test (tests/corpus): the XML files libvirt's own test suite feeds its parsers.
#
# * The version is the installed libvirt-daemon's (dpkg-query), so the corpus always matches
#   the daemon that judges it.
# * apt runs with a PRIVATE configuration: deb-src entries derived from the host's own
#   sources (/etc/apt/sources.list and /etc/apt/sources.list.d/*.sources|*.list, same URIs,
#   suites, components and Signed-By keyrings), and its own package lists and cache in the cache
#   directory. The host's apt configuration and lists are not touched; apt still checks the
#   signed Release files and the hashes of every file it downloads.
# * Only the directories the corpus reads are kept (KEEP below); the rest of the source tree
#   and the downloaded files are deleted.
# * Idempotent and offline on the second run (a complete copy carries a .complete marker);
#   concurrent runs are serialised with flock.
# * Cache: $VIRTOPS_LIBVIRT_TESTDATA (the data directory itself) or
#   ${VIRTOPS_LIBVIRT_CACHE:-/var/cache/virtops-libvirt}/libvirt-testdata-<version>.
#   Root-owned, readable by root only is fine (the corpus test runs as root).
# Prints the data directory on its last line of stdout; progress goes to stderr.
set -euo pipefail
export LC_ALL=C

KEEP=(tests/qemuxml2argvdata tests/qemuxml2xmloutdata tests/networkxml2xmlin
      tests/storagepoolxml2xmlin tests/nwfilterxml2xmlin)

log() { printf '[libvirt-testdata] %s\n' "$*" >&2; }
die() { printf '[libvirt-testdata] ERROR: %s\n' "$*" >&2; exit 1; }

version="$(dpkg-query -W -f='${Version}' libvirt-daemon 2>/dev/null)" ||
  die "libvirt-daemon is not installed (run scripts/setup-host.sh)"
[ -n "$version" ] || die "libvirt-daemon has no installed version"
cache_root="${VIRTOPS_LIBVIRT_CACHE:-/var/cache/virtops-libvirt}"
dest="${VIRTOPS_LIBVIRT_TESTDATA:-$cache_root/libvirt-testdata-$version}"

if [ -f "$dest/.complete" ]; then
  echo "$dest"
  exit 0
fi

command -v dpkg-source >/dev/null || die "dpkg-source is missing (Debian package dpkg-dev; scripts/setup-host.sh installs it)"
umask 077
mkdir -p "$cache_root"
exec 8>"$cache_root/.lock"
flock -w 900 8 || die "another run still holds $cache_root/.lock after 15 min"
# Another run may have finished while this one waited for the lock.
if [ -f "$dest/.complete" ]; then
  echo "$dest"
  exit 0
fi

apt_dir="$cache_root/apt"
mkdir -p "$apt_dir/etc/sources.list.d" "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial"
: > "$apt_dir/etc/sources.list"
rm -f "$apt_dir/etc/sources.list.d/"*

# deb-src twins of the host's sources: one-line format (deb [opts] uri suite comp...) and
# deb822 stanzas (Types: deb). Disabled files (other suffixes) stay disabled.
for list in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
  [ -f "$list" ] || continue
  sed -n -E 's/^[[:space:]]*deb[[:space:]]+/deb-src /p' "$list" >> "$apt_dir/etc/sources.list"
done
for src in /etc/apt/sources.list.d/*.sources; do
  [ -f "$src" ] || continue
  # Types: deb [deb-src] -> Types: deb-src; stanzas without "deb" (only deb-src) kept as they are.
  sed -E 's/^(Types:).*$/\1 deb-src/I' "$src" > "$apt_dir/etc/sources.list.d/$(basename "$src")"
done
if [ ! -s "$apt_dir/etc/sources.list" ] && [ -z "$(ls -A "$apt_dir/etc/sources.list.d")" ]; then
  die "no apt sources on this host to derive deb-src entries from"
fi

apt_opts=(
  -o "Dir::Etc::SourceList=$apt_dir/etc/sources.list"
  -o "Dir::Etc::SourceParts=$apt_dir/etc/sources.list.d"
  -o "Dir::State::Lists=$apt_dir/lists"
  -o "Dir::Cache=$apt_dir/cache"
  -o "Dir::Cache::pkgcache=" -o "Dir::Cache::srcpkgcache="
  -o "APT::Get::List-Cleanup=1"
  -o "Acquire::Languages=none"
  # The private directories are root's (0700): apt's _apt sandbox user could not write there.
  # The downloads are still checked against the signed Release files' hashes.
  -o "APT::Sandbox::User=root"
)

work="$(mktemp -d "$cache_root/work.XXXXXX")"
trap 'rm -rf "$work"' EXIT

log "libvirt $version: updating the private source package lists in $apt_dir"
apt-get "${apt_opts[@]}" -qq update >&2 || die "apt-get update (private deb-src lists) failed"
log "downloading the source package libvirt=$version"
(cd "$work" && apt-get "${apt_opts[@]}" -qq source --download-only "libvirt=$version" >&2) ||
  die "apt-get source libvirt=$version failed"
dsc="$(find "$work" -maxdepth 1 -name 'libvirt_*.dsc' -print -quit)"
[ -n "$dsc" ] || die "apt-get source left no .dsc in $work"
log "unpacking $(basename "$dsc")"
# The .dsc and its tarballs were verified by apt (hashes from the signed Sources index);
# dpkg-source checks the tarballs against the .dsc again and applies the Debian patches.
dpkg-source --no-copy -x "$dsc" "$work/src" >&2 || die "dpkg-source -x $(basename "$dsc") failed"

staging="$dest.partial"
rm -rf "$staging"
mkdir -p "$staging/tests"
for dir in "${KEEP[@]}"; do
  [ -d "$work/src/$dir" ] || die "the source package has no $dir"
  # -L: some files are links into directories not kept (networkxml2xmlin -> networkxml2confdata)
  cp -rL "$work/src/$dir" "$staging/tests/"
done
printf 'libvirt %s\n' "$version" > "$staging/.complete"
rm -rf "$dest"
mv "$staging" "$dest"
# The source package lists (about 20 MB) serve only this fetch; another version updates them.
rm -rf "$apt_dir/lists" "$apt_dir/cache"
log "test data of libvirt $version in $dest"
echo "$dest"
