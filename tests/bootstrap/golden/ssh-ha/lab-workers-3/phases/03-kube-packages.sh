#!/usr/bin/env bash
# clusterdeck phase kube-packages for node lab-workers-3: kubeadm, kubelet and kubectl pinned to the cluster version
# Rendered by clusterdeck from lab's node config. Safe to re-run:
# every step checks the machine before it changes anything.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
PHASE='kube-packages'
NODE='lab-workers-3'
BUNDLE="${CLUSTERDECK_BUNDLE:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"
export BUNDLE

# Note for these scripts: never `cmd | grep -q` to test output. grep -q exits at its first
# match, cmd can then die of SIGPIPE, and with pipefail the test fails at random (ip -o addr
# with two addresses: about one run in three). `grep ... >/dev/null` reads everything.
log() { printf '[%s %s] %s\n' "$NODE" "$PHASE" "$*"; }
fail() { printf '[%s %s] error: %s\n' "$NODE" "$PHASE" "$*" >&2; exit 1; }

# A phase runs to its end even when the connection that started it is lost (clusterdeck
# killed, network gone): its output goes through a tee that ignores a closed pipe (-p), so no
# command dies of SIGPIPE halfway through, and is kept in the node's own log. A re-run waits
# for such a leftover run of the same phase to finish, then finds its work done.
install -d -m 0700 /var/log/clusterdeck /run/lock/clusterdeck
exec > >(tee -p -a "/var/log/clusterdeck/${NODE}.${PHASE}.log") 2>&1
log "started $(date -u +%Y-%m-%dT%H:%M:%SZ)"
exec 9>"/run/lock/clusterdeck/${NODE}.${PHASE}.lock"
if ! flock -n 9; then
  log "an earlier run of this phase is still going (interrupted clusterdeck?): waiting for it"
  flock 9
fi

# A phase that changes the cluster (init, joins) is done only when its success was recorded
# here, at its end: files it would have written prove nothing (it may have failed after them).
DONE_DIR=/var/lib/clusterdeck/done
phase_done() { [ -f "$DONE_DIR/$1" ]; }
mark_done() {
  install -d -m 0700 "$DONE_DIR"
  date -u +%Y-%m-%dT%H:%M:%SZ >"$DONE_DIR/$PHASE"
}

# retry N CMD...: transient failures (mirrors, network) are retried with a growing pause
retry() {
  local tries=$1 n=1
  shift
  until "$@"; do
    if [ "$n" -ge "$tries" ]; then
      return 1
    fi
    sleep $((n * 2))
    n=$((n + 1))
  done
}

# check_key FILE FINGERPRINT SOURCE: refuse a downloaded signing key whose primary-key
# fingerprint is not the pinned one (awk reads all of gpg's output: no SIGPIPE under pipefail)
check_key() {
  local got
  # gpg fails on something that is not a key (a proxy's error page): then there is no fingerprint
  got="$(gpg --batch --show-keys --with-colons "$1" 2>/dev/null \
    | awk -F: '$1 == "fpr" && !seen { print $10; seen = 1 }')" || got=""
  if [ "$got" != "$2" ]; then
    fail "the signing key from $3 has fingerprint ${got:-none}, not the pinned $2: refusing it"
  fi
}

# install_file SRC DEST MODE: copy only when the content differs; prints "changed" if it did
install_file() {
  if [ -f "$2" ] && cmp -s "$1" "$2"; then
    return 0
  fi
  install -D -m "$3" "$1" "$2"
  echo changed
}

# pkg_version NAME: the installed version of a Debian package, empty when absent
pkg_version() {
  dpkg-query -W -f='${db:Status-Status} ${Version}\n' "$1" 2>/dev/null \
    | awk '$1 == "installed" { print $2 }'
}

apt_updated=0
apt_update() {
  if [ "$apt_updated" -eq 0 ]; then
    retry 5 apt-get update -q
    apt_updated=1
  fi
}

apt_install() {
  apt_update
  retry 5 apt-get install -y -q --no-install-recommends "$@"
}

check_os() {
  # shellcheck disable=SC1091
  . /etc/os-release
  case "${ID:-}:${VERSION_ID:-}" in
    'ubuntu:22.04') ;;
    'ubuntu:24.04') ;;
    'debian:12') ;;
    *) fail "unsupported OS ${PRETTY_NAME:-unknown}: clusterdeck supports Ubuntu 22.04 and 24.04" ;;
  esac
}

# has_nvidia_gpu: a PCI device of vendor 0x10de (NVIDIA) is present
has_nvidia_gpu() {
  local vendor
  for vendor in /sys/bus/pci/devices/*/vendor; do
    [ -r "$vendor" ] || continue
    if [ "$(cat "$vendor")" = "0x10de" ]; then
      return 0
    fi
  done
  return 1
}



MINOR='v1.37'
WANT='1.37.2-1.1'
# kube_apt_install PKG...: these Kubernetes packages at the cluster's version, from
# pkgs.k8s.io (the signing key checked by fingerprint), held so apt upgrades leave them alone
kube_apt_install() {
  local need=() pkg
  for pkg in "$@"; do
    if [ "$(pkg_version "$pkg")" != "$WANT" ]; then
      need+=("${pkg}=${WANT}")
    fi
  done
  if [ "${#need[@]}" -eq 0 ]; then
    log "$* already at ${WANT}: nothing to download"
  else
    # the package repository is set up only when something has to come from it
    local keyring=/etc/apt/keyrings/kubernetes-apt-keyring.gpg tmp
    if [ ! -s "$keyring" ]; then
      log "adding the Kubernetes package signing key for ${MINOR}"
      for tool in curl gpg; do
        command -v "$tool" >/dev/null 2>&1 || apt_install ca-certificates curl gpg
      done
      install -d -m 0755 /etc/apt/keyrings
      tmp="$(mktemp)"
      retry 5 curl -fsSL --proto '=https' "https://pkgs.k8s.io/core:/stable:/${MINOR}/deb/Release.key" -o "$tmp"
      check_key "$tmp" 'DE15B14486CD377B9E876E1A234654DA9A296436' pkgs.k8s.io
      gpg --batch --yes --dearmor -o "$keyring" "$tmp"
      rm -f "$tmp"
    fi
    # the list names one minor's repository: an upgrade points it at the next one
    if [ -n "$(install_file "$BUNDLE/files/kubernetes.list" /etc/apt/sources.list.d/kubernetes.list 0644)" ]; then
      apt_updated=0
    fi
    log "installing ${need[*]}"
    apt-mark unhold "$@" >/dev/null 2>&1 || true
    apt_install --allow-downgrades --allow-change-held-packages "${need[@]}"
  fi
  for pkg in "$@"; do
    if ! apt-mark showhold | grep -x "$pkg" >/dev/null; then
      apt-mark hold "$pkg" >/dev/null
    fi
  done
}

kube_apt_install kubelet kubeadm kubectl
if ! systemctl is-enabled --quiet kubelet; then
  systemctl enable kubelet
fi
log "kubelet, kubeadm and kubectl ${WANT} installed and held"
