# shellcheck shell=bash
# Shared helpers for the alpy shell scripts. Source it; do not run it.

# Print a step, run it, and print "done (N.NN s)" or "failed" like alpy's
# step logger. Usage: step "Build image alpy/node" cmd args...
step() {
  local what=$1; shift
  local t0 t1 rc errexit=
  case $- in *e*) errexit=1 ;; esac
  t0=$(date +%s.%N)
  printf '%s...\n' "$what" >&2
  # Under `set -e` a failing command would end the script before the
  # "failed" line: run it in a subshell that keeps the caller's -e (so a
  # function stops at its first failure) while this shell goes on.
  set +e
  (
    if [ -n "$errexit" ]; then set -e; fi
    "$@"
  )
  rc=$?
  if [ -n "$errexit" ]; then set -e; fi
  t1=$(date +%s.%N)
  if [ "$rc" -eq 0 ]; then
    printf '%s... done (%.2f s)\n' "$what" "$(awk -v a="$t0" -v b="$t1" 'BEGIN{print b-a}')" >&2
  else
    printf '%s... failed (exit %d)\n' "$what" "$rc" >&2
  fi
  return "$rc"
}

# Print an error for a human and exit.
die() {
  printf 'alpy setup: error: %s\n' "$*" >&2
  exit 1
}

# Where alpy keeps built artifacts (guest kernels, Rabbit images) between runs.
alpy_cache_dir() {
  printf '%s\n' "${ALPY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/alpy}"
}

# The host's apt sources, one file per argument, for mmdebstrap. Naming no
# mirror keeps the build on whatever mirror or proxy the host is set up for.
host_apt_sources() {
  local f
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
    [ -s "$f" ] && grep -qE '^[[:space:]]*(deb |Types:)' "$f" && printf '%s\n' "$f"
  done
  return 0
}

# The host's release codename (bookworm, jammy, ...).
host_suite() {
  . /etc/os-release && printf '%s\n' "${VERSION_CODENAME:?no VERSION_CODENAME in /etc/os-release}"
}

# --- Packages from the repositories, never from the host's dpkg state -------
#
# Guests and images are made of packages as the host's apt sources serve them.
# repo_apt runs apt-get or apt-cache with those sources and package lists but
# with an EMPTY dpkg status: to apt nothing is installed, so a package that
# the host has in another version (newer than the repositories, from
# backports, built by hand) is never a "candidate" and never leaks into a
# build. Usage: repo_apt apt-cache policy busybox-static
repo_apt() {
  local tool=$1; shift
  local dir
  dir=$(alpy_cache_dir)/apt
  mkdir -p "$dir"
  [ -e "$dir/empty-status" ] || : >"$dir/empty-status"
  # The binary caches are private too: apt's own in /var/cache/apt describes
  # the host's status, and must not be overwritten with ours. apt rebuilds
  # them when the lists change and writes them atomically.
  "$tool" -q -o Dir::State::status="$dir/empty-status" \
    -o Dir::Cache::pkgcache="$dir/pkgcache.bin" -o Dir::Cache::srcpkgcache="$dir/srcpkgcache.bin" \
    -o Debug::NoLocking=1 "$@"
}

# The versioned kernel package behind linux-image-amd64, as served.
repo_kernel_package() {
  local k
  k=$(repo_apt apt-cache depends linux-image-amd64 2>/dev/null |
      sed -n 's/^ *Depends: \(linux-image-[0-9].*\)$/\1/p' | head -1)
  [ -n "$k" ] || die "the repositories serve no linux-image-amd64 (are the package lists empty? run apt-get update)"
  printf '%s\n' "$k"
}

# "file SHA256:..." of each package apt would download for the arguments:
# exactly the files a build unpacks, with their versions. Recipe hashes take
# these, so a new version in the repositories rebuilds, and the mirror's
# address (in the URI) does not count.
repo_pins() {
  repo_apt apt-get download --print-uris "$@" 2>"${ALPY_APT_ERR:-/dev/null}" |
    awk '{print $2, $4}' | sort
}

# Download the named packages (as the repositories serve them) into DIR.
# If the package lists are stale (a version no longer served), refresh them
# once (root only) and try again. On failure, apt's own error lines are shown.
# Usage: repo_download DIR pkg...
repo_download() {
  local dir=$1; shift
  local log
  log=$(mktemp)
  if (cd "$dir" && repo_apt apt-get download "$@") >"$log" 2>&1; then
    rm -f "$log"; return 0
  fi
  if [ "$(id -u)" -eq 0 ] && [ -z "${ALPY_NO_APT_UPDATE:-}" ]; then
    echo "Downloading packages failed; refreshing the package lists (apt-get update) and trying again" >&2
    if apt-get update -q >"$log" 2>&1 && (cd "$dir" && repo_apt apt-get download "$@") >"$log" 2>&1; then
      rm -f "$log"; return 0
    fi
  fi
  grep -E '^(E|W): ' "$log" | grep -v 'unsandboxed' >&2 || tail -n 10 "$log" >&2
  rm -f "$log"
  die "could not download from the repositories: $* (apt's messages above)"
}

# Unpack the repositories' busybox-static into DIR/busybox and print its
# path: the one busybox every guest and image uses, whatever the host has.
repo_busybox() {
  local dir=$1
  mkdir -p "$dir/busybox-deb"
  repo_download "$dir/busybox-deb" busybox-static
  dpkg-deb -x "$dir"/busybox-deb/busybox-static_*.deb "$dir/busybox-root"
  [ -x "$dir/busybox-root/bin/busybox" ] || die "busybox-static has no /bin/busybox"
  printf '%s\n' "$dir/busybox-root/bin/busybox"
}
