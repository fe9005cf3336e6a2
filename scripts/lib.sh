# Shared helpers for scripts/*; sourced, not run.

# Runs a command as root (directly, or through sudo when available).
as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo "$@"
  else
    echo "error: '$*' needs root; run as root or install sudo" >&2
    return 1
  fi
}

# Installs Debian packages that are missing; `apt-get update` only if needed.
apt_install() {
  local missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "==> installing ${missing[*]}"
  # Package scripts must not start system services (the tests run their own).
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# Builds the release binaries: xmpp-edge and loadtest's (loadtest,
# fake-upstream). Every script builds this same set: cargo unifies dependency
# features over the packages of one build, so building xmpp-edge alone in one
# script and with loadtest in another rebuilt the whole release tree twice.
build_release() {
  cargo build --release --locked -p xmpp-edge -p xmpp-edge-loadtest "$@"
}

# Fails with a clear message when Rust is missing or too old.
need_rust() {
  if ! command -v cargo >/dev/null 2>&1; then
    echo "error: cargo not found. Install Rust (1.85 or newer) with rustup: https://rustup.rs" >&2
    exit 1
  fi
}
