#!/usr/bin/env bash
# Build the real Kubernetes node and control-plane components from their Go modules, and an
# offline bundle of them, for the lab and for anyone who builds from source.
#
#   scripts/kubernetes-artifacts.sh [VERSION]   build (or find) the bundle of VERSION; its path
#                                               is the last line on stdout
#   scripts/kubernetes-artifacts.sh --versions  the Kubernetes versions this script can build,
#                                               newest first
#   scripts/kubernetes-artifacts.sh --node-binaries ARCH [VERSION]
#                                               only kubeadm, kubelet and kubectl, cross-compiled
#                                               for ARCH (arm64: what a mixed cluster's arm64
#                                               nodes run); their directory is the last line
#
# VERSION defaults to clusterdeck's default kubernetes.version. Everything is cached outside
# the checkout, keyed by version ($CLUSTERDECK_ARTIFACTS, default /var/cache/clusterdeck-artifacts;
# Go's own module and build caches stay where `go env` puts them), so a second call answers in
# seconds. Progress goes to stderr.
#
# What it builds, and from where (versions in scripts/artifacts/components.tsv):
#   k8s.io/kubernetes            kubeadm kubelet kubectl kube-apiserver kube-controller-manager
#                                kube-scheduler kube-proxy (through a wrapper module that pins
#                                every k8s.io staging module to v0.<minor>.<patch>)
#   go.etcd.io/etcd/server/v3    etcd (the version kubeadm's image list names)
#   github.com/coredns/coredns   coredns (idem)
#   containerd/v2, runc, cri-tools, CNI plugins, flannel
#   pause                        from kubernetes' own build/pause/linux/pause.c
# The container images kubeadm expects are then made from those binaries
# (scripts/oci_image.py), named exactly as `kubeadm config images list` prints them.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
COMPONENTS="$HERE/artifacts/components.tsv"
CACHE="${CLUSTERDECK_ARTIFACTS:-/var/cache/clusterdeck-artifacts}"
ARCH="${GOARCH:-amd64}"
PY="${PYTHON:-$ROOT/.venv/bin/python}"
[ -x "$PY" ] || PY=python3

say() { printf '[artifacts] %s\n' "$*" >&2; }
die() { printf '[artifacts] error: %s\n' "$*" >&2; exit 1; }

# pin COMPONENT KUBERNETES_VERSION: the component's version for that Kubernetes version
pin() {
  awk -F'\t' -v c="$1" -v k="$2" '
    $1 == c && ($2 == k || $2 == "*") { print $3; found = 1; exit }
    END { if (!found) exit 1 }' <(grep -v '^#' "$COMPONENTS")
}

kubernetes_versions() {
  awk -F'\t' '$1 == "kubernetes" { print $3 }' <(grep -v '^#' "$COMPONENTS") | sort -rV
}

default_version() {
  PYTHONPATH="$ROOT/src" "$PY" -c \
    'from clusterdeck.spec.models import DEFAULT_KUBERNETES_VERSION as v; print(v)'
}

if [ "${1:-}" = "--versions" ]; then
  kubernetes_versions
  exit 0
fi
NODE_ONLY=0
if [ "${1:-}" = "--node-binaries" ]; then
  [ -n "${2:-}" ] || die "--node-binaries needs an architecture (amd64 or arm64)"
  NODE_ONLY=1
  ARCH="$2"
  shift 2
fi
case "$ARCH" in amd64 | arm64) ;; *) die "architecture $ARCH: amd64 or arm64" ;; esac
case "${1:-}" in
  -h | --help) sed -n '2,28p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
esac

VERSION="${1:-$(default_version)}"
kubernetes_versions | grep -qx -- "$VERSION" \
  || die "cannot build Kubernetes $VERSION; buildable: $(kubernetes_versions | tr '\n' ' ')"
BUNDLE="$CACHE/bundles/kubernetes-$VERSION-linux-$ARCH"
# the recipe: a bundle made by another version of these files is made again (the binaries,
# keyed by version, are reused)
RECIPE="$(cat "$0" "$COMPONENTS" "$HERE/oci_image.py" | sha256sum | cut -c1-16)"
# the lab's own workload image (busybox; never part of a bundle)
if [ ! -f "$CACHE/test-images/busybox.tar" ]; then
  mkdir -p "$CACHE/test-images"
  "$PY" "$HERE/oci_image.py" --test-image "$CACHE/test-images/busybox.tar" >&2
fi
if [ "$NODE_ONLY" = 0 ] && [ "$(cat "$BUNDLE.complete" 2>/dev/null)" = "$RECIPE" ]; then
  echo "$BUNDLE"
  exit 0
fi

command -v go >/dev/null || die "go is not installed (Go 1.26 or newer)"
mkdir -p "$CACHE"
exec 8>"$CACHE/.build.lock"
flock 8
if [ "$NODE_ONLY" = 0 ] && [ "$(cat "$BUNDLE.complete" 2>/dev/null)" = "$RECIPE" ]; then
  echo "$BUNDLE"
  exit 0
fi

export CGO_ENABLED=0 GOFLAGS=-mod=mod GOOS=linux GOARCH="$ARCH" GOTOOLCHAIN=local
MINOR="$(echo "$VERSION" | cut -d. -f2)"
PATCH="$(echo "$VERSION" | cut -d. -f3)"

# wrapper NAME MODULE VERSION [REPLACES...]: a module of our own that requires MODULE@VERSION,
# so `go build` can build its commands (go install refuses modules with replace directives)
wrapper() {
  local name=$1 module=$2 version=$3 dir
  shift 3
  dir="$CACHE/src/$name-$version"
  if [ ! -f "$dir/go.mod" ]; then
    mkdir -p "$dir"
    {
      printf 'module clusterdeck.local/build/%s\n\ngo 1.26.0\n\nrequire %s %s\n' \
        "$name" "$module" "$version"
      local r
      for r in "$@"; do printf 'replace %s\n' "$r"; done
    } >"$dir/go.mod.new"
    mv "$dir/go.mod.new" "$dir/go.mod"
  fi
  echo "$dir"
}

# build DIR OUT PACKAGE [go build args...]: build PACKAGE in the wrapper DIR to OUT, once
build() {
  local dir=$1 out=$2 pkg=$3 start
  shift 3
  if [ -x "$out" ]; then
    return 0
  fi
  start=$(date +%s)
  mkdir -p "$(dirname "$out")"
  (cd "$dir" && go build -trimpath -o "$out.tmp" "$@" "$pkg")
  mv "$out.tmp" "$out"
  say "built $(basename "$out") in $(($(date +%s) - start)) s"
}

OUT="$CACHE/bin/$VERSION-$ARCH"
mkdir -p "$OUT"

# --- Kubernetes itself -------------------------------------------------------------------
say "Kubernetes $VERSION ($ARCH): module and build caches in $(go env GOMODCACHE) and $(go env GOCACHE)"
kdir="$(go mod download -json "k8s.io/kubernetes@$VERSION" | awk -F'"' '$2 == "Dir" { print $4 }')"
[ -n "$kdir" ] || die "the module proxy does not serve k8s.io/kubernetes@$VERSION"
replaces=()
while read -r staging; do
  replaces+=("$staging => $staging v0.$MINOR.$PATCH")
done < <(awk '$1 ~ /^k8s\.io\// && $2 == "v0.0.0" { print $1 }' "$kdir/go.mod")
kwrap="$(wrapper kubernetes k8s.io/kubernetes "$VERSION" "${replaces[@]}")"
stamp="-s -w"
for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  stamp+=" -X $p.gitVersion=$VERSION -X $p.gitMajor=1 -X $p.gitMinor=$MINOR"
  stamp+=" -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
done
commands="kubeadm kubelet kubectl kube-apiserver kube-controller-manager kube-scheduler kube-proxy"
[ "$NODE_ONLY" = 0 ] || commands="kubeadm kubelet kubectl"
for cmd in $commands; do
  build "$kwrap" "$OUT/$cmd" "k8s.io/kubernetes/cmd/$cmd" -ldflags "$stamp"
done
if [ "$NODE_ONLY" = 1 ]; then
  say "node binaries for $ARCH in $OUT"
  echo "$OUT"
  exit 0
fi
if [ "$ARCH" = "$(go env GOHOSTARCH)" ]; then
  got="$("$OUT/kubeadm" version -o short)"
  [ "$got" = "$VERSION" ] || die "kubeadm reports $got, not $VERSION: the version stamp failed"
fi

# The images kubeadm will ask for, exactly as it names them
images="$OUT/images.txt"
if [ ! -s "$images" ]; then
  "$OUT/kubeadm" config images list --kubernetes-version "$VERSION" >"$images.tmp"
  mv "$images.tmp" "$images"
fi
image_tag() { awk -v n="$1" '{ split($0, a, ":"); k = a[1]; sub(".*/", "", k); if (k == n) print a[2] }' "$images"; }
ETCD_TAG="$(image_tag etcd)"
COREDNS_TAG="$(image_tag coredns)"
PAUSE_TAG="$(image_tag pause)"
ETCD_VERSION="$(pin etcd "$VERSION" 2>/dev/null || echo "v${ETCD_TAG%-*}")"
COREDNS_VERSION="$(pin coredns "$VERSION" 2>/dev/null || echo "$COREDNS_TAG")"
# the images as the bundle holds them: a component built at another version than kubeadm's
# default (the proxy lacks that one) is tagged with the version it is, and clusterdeck tells
# kubeadm the bundle's tags (dns.imageTag, etcd.local.imageTag)
bundle_images="$OUT/bundle-images.txt"
sed -e "s|/coredns:$COREDNS_TAG\$|/coredns:$COREDNS_VERSION|" "$images" >"$bundle_images"

# --- etcd, CoreDNS, the runtime, the CNI -----------------------------------------------
build "$(wrapper etcd go.etcd.io/etcd/server/v3 "$ETCD_VERSION")" "$OUT/etcd" go.etcd.io/etcd/server/v3 -ldflags "-s -w"
build "$(wrapper coredns github.com/coredns/coredns "$COREDNS_VERSION")" "$OUT/coredns" github.com/coredns/coredns -ldflags "-s -w"
CONTAINERD="$(pin containerd "$VERSION")"
cwrap="$(wrapper containerd github.com/containerd/containerd/v2 "$CONTAINERD")"
for cmd in containerd containerd-shim-runc-v2 ctr; do
  build "$cwrap" "$OUT/$cmd" "github.com/containerd/containerd/v2/cmd/$cmd" \
    -tags "no_btrfs no_devmapper no_zfs" \
    -ldflags "-s -w -X github.com/containerd/containerd/v2/version.Version=$CONTAINERD"
done
CRICTL="$(pin crictl "$VERSION")"
build "$(wrapper cri-tools sigs.k8s.io/cri-tools "$CRICTL")" "$OUT/crictl" sigs.k8s.io/cri-tools/cmd/crictl \
  -ldflags "-s -w -X sigs.k8s.io/cri-tools/pkg/version.Version=$CRICTL"
RUNC="$(pin runc "$VERSION")"
# runc needs cgo (its nsexec is C) and libseccomp; linked statically so it runs on any node
if [ ! -x "$OUT/runc" ]; then
  [ -f /usr/lib/x86_64-linux-gnu/libseccomp.a ] || [ "$ARCH" != amd64 ] \
    || die "runc needs libseccomp-dev and gcc (apt-get install libseccomp-dev gcc pkg-config)"
  CGO_ENABLED=1 build "$(wrapper runc github.com/opencontainers/runc "$RUNC")" "$OUT/runc" \
    github.com/opencontainers/runc -tags "seccomp urfave_cli_no_docs" \
    -ldflags "-s -w -X main.version=${RUNC#v} -extldflags -static"
fi
CNI="$(pin cni-plugins "$VERSION")"
pwrap="$(wrapper cni-plugins github.com/containernetworking/plugins "$CNI")"
for plugin in main/bridge main/loopback ipam/host-local meta/portmap; do
  build "$pwrap" "$OUT/cni/${plugin#*/}" "github.com/containernetworking/plugins/plugins/$plugin" -ldflags "-s -w"
done
# flannel's CNI plugin (flannel-io/cni-plugin) is not served by the module proxy; the same
# plugin lived in containernetworking/plugins until v0.9.1, which is
FLANNEL_CNI="$(pin flannel-cni-plugin "$VERSION")"
build "$(wrapper cni-plugins github.com/containernetworking/plugins "$FLANNEL_CNI")" "$OUT/cni/flannel" \
  github.com/containernetworking/plugins/plugins/meta/flannel -ldflags "-s -w"
FLANNEL="$(pin flannel "$VERSION")"
fwrap="$(wrapper flannel github.com/flannel-io/flannel "$FLANNEL")"
fsrc="$(go mod download -json "github.com/flannel-io/flannel@$FLANNEL" | awk -F'"' '$2 == "Dir" { print $4 }')"
# flanneld's main links every backend; the module proxy lacks the Tencent Cloud SDK of one
# (tencentvpc), and another (udp, deprecated) needs cgo: build flanneld from its own main.go
# without those two. vxlan, host-gw and wireguard, which clusterdeck uses, are all in.
mkdir -p "$fwrap/cmd/flanneld"
sed -e '/pkg\/backend\/tencentvpc"/d' -e '/pkg\/backend\/udp"/d' "$fsrc/main.go" >"$fwrap/cmd/flanneld/main.go"
build "$fwrap" "$OUT/flanneld" ./cmd/flanneld \
  -ldflags "-s -w -X github.com/flannel-io/flannel/pkg/version.Version=$FLANNEL"
build "$fwrap" "$OUT/install-conf" github.com/flannel-io/flannel/cmd/install_conf -ldflags "-s -w"
if [ ! -x "$OUT/pause" ]; then
  cc=gcc
  [ "$ARCH" = amd64 ] || cc="$(go env GOARCH)-linux-gnu-gcc"
  "$cc" -Os -static -DVERSION="$PAUSE_TAG" -o "$OUT/pause.tmp" "$kdir/build/pause/linux/pause.c"
  strip "$OUT/pause.tmp" 2>/dev/null || true
  mv "$OUT/pause.tmp" "$OUT/pause"
  say "built pause $PAUSE_TAG"
fi
FLANNEL_MANIFEST="$fsrc/Documentation/kube-flannel.yml"

# --- images and the bundle -------------------------------------------------------------
STAGE="$CACHE/stage/$VERSION-$ARCH"
rm -rf "$STAGE"
mkdir -p "$STAGE/bin" "$STAGE/cni" "$STAGE/images" "$STAGE/manifests"
for b in kubeadm kubelet kubectl crictl containerd containerd-shim-runc-v2 ctr runc; do
  ln "$OUT/$b" "$STAGE/bin/$b" 2>/dev/null || cp "$OUT/$b" "$STAGE/bin/$b"
done
cp "$OUT"/cni/* "$STAGE/cni/"
"$PY" "$HERE/oci_image.py" --version "$VERSION" --binaries "$OUT" --images "$bundle_images" \
  --flannel "$FLANNEL" --flannel-cni "$FLANNEL_CNI" --flannel-manifest "$FLANNEL_MANIFEST" \
  --out "$STAGE" >&2
rm -rf "$BUNDLE.tmp"
"$PY" -m clusterdeck -q bundle create --from "$STAGE" --kubernetes-version "$VERSION" \
  --arch "$ARCH" --output "$BUNDLE.tmp" >&2
rm -rf "$BUNDLE"
mv "$BUNDLE.tmp" "$BUNDLE"
echo "$RECIPE" >"$BUNDLE.complete"
say "bundle ready: $(du -sh "$BUNDLE" | cut -f1)"
echo "$BUNDLE"
