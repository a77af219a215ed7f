#!/usr/bin/env bash
# clusterdeck phase cni for node solo-cp-0: pod network add-on
# Rendered by clusterdeck from solo's node config. Safe to re-run:
# every step checks the machine before it changes anything.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
PHASE='cni'
NODE='solo-cp-0'
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

# apply_release NAME VERSION SOURCE SHA256 DIR RECORD: apply a project's release manifest,
# joined by kubectl kustomize with clusterdeck's kustomization in DIR. SOURCE is the release URL
# (downloaded) or the offline bundle's file; either way its sha256 must be SHA256. RECORD is the
# kube-system ConfigMap that remembers what was applied, so a re-run applies nothing new.
apply_release() {
  local name=$1 version=$2 source=$3 want_sha=$4 dir=$5 record=$6
  local work="/run/clusterdeck/$name" got want have
  install -d -m 0700 /run/clusterdeck "$work"
  install -m 0600 "$dir"/*.yaml "$work/"
  case "$source" in
    https://*)
      if [ "$(sha256sum "$work/upstream.yaml" 2>/dev/null | cut -d' ' -f1)" != "$want_sha" ]; then
        log "downloading the $name $version release manifest"
        retry 5 curl -fsSL --proto '=https' "$source" -o "$work/upstream.yaml"
      fi
      ;;
    *) install -m 0600 "$source" "$work/upstream.yaml" ;;
  esac
  got="$(sha256sum "$work/upstream.yaml" | cut -d' ' -f1)"
  if [ "$got" != "$want_sha" ]; then
    rm -f "$work/upstream.yaml"
    fail "the $name $version manifest from $source has sha256 $got, not the pinned $want_sha: refusing to apply it"
  fi
  kubectl kustomize "$work" >"$work/applied.yaml"
  want="$(sha256sum "$work/applied.yaml" | cut -d' ' -f1)"
  have="$(kubectl -n kube-system get configmap "$record" -o jsonpath='{.data.sha256}' 2>/dev/null || true)"
  if [ "$have" = "$want" ]; then
    log "$name $version already applied"
    return 0
  fi
  log "applying $name $version"
  retry 5 kubectl apply --server-side --force-conflicts -f "$work/applied.yaml"
  kubectl -n kube-system create configmap "$record" --from-literal=sha256="$want" \
    --from-literal=name="$name" --from-literal=version="$version" --dry-run=client -o yaml \
    | kubectl apply -f - >/dev/null
}


export KUBECONFIG=/etc/kubernetes/admin.conf

SOURCE='https://raw.githubusercontent.com/flannel-io/flannel/v0.28.10/Documentation/kube-flannel.yml'

log "pod network: flannel v0.28.10, pod CIDR 10.244.0.0/16"
apply_release 'flannel' 'v0.28.10' "$SOURCE" \
  '944a3c1f925f117727a1b7272a323c80965da642498397ec7e6ea9bef0f9e6c5' "$BUNDLE/files/cni" clusterdeck-cni
log "pod network applied"
