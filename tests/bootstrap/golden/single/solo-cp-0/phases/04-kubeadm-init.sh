#!/usr/bin/env bash
# clusterdeck phase kubeadm-init for node solo-cp-0: kubeadm init from the rendered configuration
# Rendered by clusterdeck from solo's node config. Safe to re-run:
# every step checks the machine before it changes anything.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
PHASE='kubeadm-init'
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


LOCAL_API='https://127.0.0.1:6443'
# point_local FILE: this control plane's own kubeconfigs talk to its local API server, so they
# never depend on the load balancer reaching back to the node that asks (NLBs do not hairpin)
point_local() {
  local file=$1 server
  [ -f "$file" ] || return 0
  server="$(kubectl --kubeconfig="$file" config view -o jsonpath='{.clusters[0].cluster.server}')"
  if [ "$server" != "$LOCAL_API" ]; then
    local cluster
    cluster="$(kubectl --kubeconfig="$file" config view -o jsonpath='{.clusters[0].name}')"
    kubectl --kubeconfig="$file" config set-cluster "$cluster" --server="$LOCAL_API" >/dev/null
    echo changed
  fi
}

local_kubeconfigs() {
  local changed=""
  for file in /etc/kubernetes/admin.conf /etc/kubernetes/super-admin.conf /etc/kubernetes/kubelet.conf; do
    changed="${changed}$(point_local "$file")"
  done
  if [ -n "$changed" ]; then
    log "control-plane kubeconfigs now use ${LOCAL_API}"
    systemctl restart kubelet
  fi
}

wait_api() {
  for _ in $(seq 1 120); do
    if kubectl --kubeconfig=/etc/kubernetes/admin.conf get --raw=/readyz >/dev/null 2>&1; then
      return 0
    fi
    sleep 2
  done
  fail "the local API server did not become ready in 240 s (journalctl -u kubelet)"
}


# init_completed: the control plane answers and init got to its end (its config uploaded, its
# add-ons in): a control plane made before success was recorded here, kept as it is
init_completed() {
  local k=(kubectl --kubeconfig=/etc/kubernetes/admin.conf --request-timeout=5s)
  [ -f /etc/kubernetes/admin.conf ] \
    && "${k[@]}" get --raw=/readyz >/dev/null 2>&1 \
    && "${k[@]}" -n kube-system get configmap kubeadm-config >/dev/null 2>&1 \
    && "${k[@]}" -n kube-system get daemonset kube-proxy >/dev/null 2>&1
}

if phase_done kubeadm-init; then
  log "kubeadm init already succeeded here: not running it again"
elif init_completed; then
  log "this control plane was initialised (it answers, init reached its end): keeping it"
  if [ -s '/run/clusterdeck/kubeadm-init.yaml' ]; then  # the join material clusterdeck chose: make it valid here
    kubeadm init phase bootstrap-token --config '/run/clusterdeck/kubeadm-init.yaml' >/dev/null
  fi
else
  # clusterdeck uploads the config with the bootstrap token (and certificate key) it chose,
  # 0600, so joins need no second round trip; the rendered review copy has neither
  config='/run/clusterdeck/kubeadm-init.yaml'
  [ -s "$config" ] || config="$BUNDLE/files/kubeadm-init.yaml"
  if [ -e /etc/kubernetes/admin.conf ] || [ -e /etc/kubernetes/manifests/kube-apiserver.yaml ] \
    || [ -d /var/lib/etcd/member ]; then
    log "an earlier kubeadm init left files but did not succeed: kubeadm reset, then init again"
    kubeadm reset --force --cri-socket 'unix:///var/run/containerd/containerd.sock'
    rm -rf /var/lib/etcd /etc/cni/net.d/*
  fi
  log "kubeadm init (endpoint 10.77.0.31:6443)"
  kubeadm init --config "$config" --skip-token-print
fi
rm -f '/run/clusterdeck/kubeadm-init.yaml'
local_kubeconfigs
wait_api
mark_done
log "control plane ${NODE} is up"
