# Shared helpers for the alpy shell scripts. Source it; do not run it.

# Print a step, run it, and print "done (N.NN s)" or "failed" like alpy's
# step logger. Usage: step "Build image alpy/node" cmd args...
step() {
  local what=$1; shift
  local t0 t1 rc
  t0=$(date +%s.%N)
  printf '%s...\n' "$what" >&2
  "$@"
  rc=$?
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
