#!/usr/bin/env bash
# Idempotent setup: Debian packages (as root), a virtual environment with secpolicy
# installed, bcc reachable from it, kernel headers linked for bcc, tracefs mounted.
# Usage: scripts/setup.sh [--with-test-tools]
# Without root it still builds the virtual environment; `secpolicy doctor` says what is missing.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
venv="${SECPOLICY_VENV:-$here/.venv}"
with_test_tools=0
[ "${1:-}" = "--with-test-tools" ] && with_test_tools=1

log() { printf 'setup: %s\n' "$*" >&2; }

is_root() { [ "$(id -u)" = 0 ]; }
created_policy_rc=

# Debian packages: runtime (bcc, bpftool, headers, PDF rendering libs) and, for tests and
# benchmarks, the real tools we compare against or talk to.
runtime_debs="python3 python3-venv python3-bpfcc bpftool libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz0b libharfbuzz-subset0 libfontconfig1 fonts-dejavu-core"
# Kernel headers for bcc: none when the running kernel has them; else its own Debian package
# (a Debian kernel has one); else Debian's cloud headers of this architecture, linked below.
headers_deb() {
  local kver arch
  kver=$(uname -r)
  [ -e "/lib/modules/$kver/build" ] && return 0
  if command -v apt-cache >/dev/null && apt-cache show "linux-headers-$kver" >/dev/null 2>&1; then
    echo "linux-headers-$kver"
    return 0
  fi
  arch=$(dpkg --print-architecture 2>/dev/null || echo amd64)
  echo "linux-headers-cloud-$arch"
}
runtime_debs="$runtime_debs $(headers_deb)"
test_debs="ansible-core python3-gi gir1.2-glib-2.0 libdconf1 postgresql skopeo sqlite3 poppler-utils rsyslog rsyslog-gnutls gnutls-bin auditd aide lynis openscap-scanner ssg-debian pamtester libpam-modules strace binutils iptables acl attr libcap2-bin openssh-server libxml2-utils make iproute2"

install_debs() {
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if ! command -v apt-get >/dev/null; then
    log "no apt-get: skipping Debian packages: ${missing[*]}"
    return 0
  fi
  if ! is_root; then
    log "not root: skipping Debian packages: ${missing[*]} (root installs them: run scripts/setup.sh as root, or apt-get install them); \`secpolicy doctor\` says what live monitoring lacks without them"
    return 0
  fi
  log "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # Installing must not start services (auditd, rsyslog) behind the user's back. The blocker
  # goes away however apt-get ends (a failed install too): left behind, it would keep every
  # later package on this machine from starting its service.
  local policy_rc=/usr/sbin/policy-rc.d
  if [ ! -e "$policy_rc" ]; then
    created_policy_rc=$policy_rc
    trap 'rm -f "$created_policy_rc"' EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    printf '#!/bin/sh\nexit 101\n' > "$policy_rc"; chmod +x "$policy_rc"
  fi
  apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null 2>&1 || {
    apt-get update >/dev/null 2>&1 || true
    apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null
  }
  [ -n "$created_policy_rc" ] && rm -f "$created_policy_rc" && created_policy_rc=
  return 0
}

install_debs $runtime_debs
[ $with_test_tools = 1 ] && install_debs $test_debs

# Virtual environment with the project installed (editable, so the checkout is what runs).
py=${PYTHON:-python3}
# A venv without pip is what an interrupted or failed creation leaves (Debian's python3 without
# python3-venv has no ensurepip): build it again rather than fail on it at every run.
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import pip' >/dev/null 2>&1; then
  if [ -f "$venv/pyvenv.cfg" ]; then
    log "recreating the incomplete virtual environment $venv"
    "$py" -m venv --clear "$venv"
  else
    log "creating virtual environment $venv"
    "$py" -m venv "$venv"
  fi
fi
stamp="$venv/.secpolicy-installed"
if [ ! -f "$stamp" ] || [ "$here/pyproject.toml" -nt "$stamp" ]; then
  log "installing Python dependencies"
  "$venv/bin/python" -m pip install -q --upgrade pip >/dev/null
  "$venv/bin/python" -m pip install -q -e "$here[test]"
  touch "$stamp"
fi

# Parsers the conformance tests ask (sudo's cvtsudoers, libpwquality and pam_pwquality, kmod's
# modprobe and depmod, chronyd -p, ufw-init, systemd-journal-upload, nft, postfix's postconf,
# systemd-coredump, dconf's compile and read) and the AIDE configuration Debian ships
# (aide-common), unpacked from their Debian packages into the virtual environment rather than
# installed: sudo, kmod, chrony, aide-common, systemd-journal-remote, nftables, an MTA,
# systemd-coredump (which sets kernel.core_pattern) or dconf-cli on the host would change it.
unpack_debs() {
  local dest="$venv/oracles" tmp
  [ "$(cat "$dest/.unpacked" 2>/dev/null)" = "$*" ] && return 0
  if ! command -v apt-get >/dev/null || ! command -v dpkg-deb >/dev/null; then
    log "no apt-get: not unpacking $*"
    return 0
  fi
  tmp=$(mktemp -d)
  if (cd "$tmp" && apt-get download "$@" >/dev/null 2>&1); then
    mkdir -p "$dest"
    for deb in "$tmp"/*.deb; do dpkg-deb -x "$deb" "$dest"; done
    chmod -R u-s,g-s "$dest"
    printf '%s' "$*" > "$dest/.unpacked"
    log "unpacked $* into $dest"
  else
    log "could not download $*"
  fi
  rm -rf "$tmp"
}
[ $with_test_tools = 1 ] && unpack_debs sudo libpwquality1 libpam-pwquality libcrack2 kmod chrony ufw aide-common systemd-journal-remote nftables libnftables1 libnftnl11 libjansson4 postfix systemd-coredump dconf-cli

# bcc comes from Debian (the PyPI package named bcc is unrelated): expose only its module.
site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
for d in /usr/lib/python3/dist-packages/bcc; do
  if [ -d "$d" ] && [ ! -e "$site/bcc" ]; then ln -s "$d" "$site/bcc"; log "linked bcc into the virtual environment"; fi
done

# bcc compiles BPF C against kernel headers; where the running kernel ships none,
# Debian's cloud headers serve tracepoint programs. Only link where nothing exists.
if is_root; then
  kver=$(uname -r)
  mod=/lib/modules/$kver
  if [ ! -e "$mod/build" ]; then
    arch=$(dpkg --print-architecture 2>/dev/null || echo amd64)
    hdr=$(ls -d /usr/src/linux-headers-*-cloud-"$arch" 2>/dev/null | sort -V | tail -n 1 || true)
    if [ -n "$hdr" ]; then
      common=${hdr%-cloud-"$arch"}-common
      mkdir -p "$mod"
      ln -sfn "$hdr" "$mod/build"
      [ -e "$mod/source" ] || ln -sfn "$common" "$mod/source"
      log "linked $mod/build to Debian cloud headers (no headers for $kver)"
    fi
  fi
  if [ -d /sys/kernel/tracing ] && [ ! -e /sys/kernel/tracing/events ]; then
    mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null && log "mounted tracefs" || true
  fi
fi
log "ready: $venv/bin/secpolicy"
