"""Make the container images kubeadm expects from binaries built here, as OCI archives.

Used by ``scripts/kubernetes-artifacts.sh`` (the lab's way, and that of a user who builds
from source): each image is one layer holding a static binary (and, for the images that call
iptables, Debian's iptables with the libraries it loads), named exactly as ``kubeadm config
images list`` prints it, written as an OCI image layout tar that ``ctr images import`` reads.
Also writes the Flannel manifest of the built release, with its images pointed at the ones
made here. Standard library only; deterministic output (fixed mtimes, sorted entries).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import re
import subprocess
import sys
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
PATH_ENV = "PATH=/usr/local/bin:/usr/local/sbin:/usr/bin:/usr/sbin:/bin:/sbin"
# Debian's iptables (nft backend), for kube-proxy and flanneld: they run iptables-restore etc.
IPTABLES_TOOLS = (
    "iptables",
    "iptables-save",
    "iptables-restore",
    "ip6tables",
    "ip6tables-save",
    "ip6tables-restore",
)
FLANNEL_CNI_IMAGE = "clusterdeck.local/flannel-cni-plugin"
TEST_IMAGE = "clusterdeck.local/busybox:lab"  # not in the bundle: the lab's tests import it
# (Debian's static busybox: its wget crashes in static glibc's resolver; nc and httpd work)


@dataclass
class Layer:
    """Files of one image layer: path inside the image -> (source file or bytes, mode)."""

    files: dict[str, tuple[Path | bytes, int]] = field(default_factory=dict)
    links: dict[str, str] = field(default_factory=dict)

    def add(self, inside: str, source: Path | bytes, mode: int = 0o755) -> None:
        self.files[inside.lstrip("/")] = (source, mode)

    def tar(self) -> bytes:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
            dirs: set[str] = {"tmp"}
            for name in list(self.files) + list(self.links):
                parts = name.split("/")[:-1]
                dirs.update("/".join(parts[: i + 1]) for i in range(len(parts)))
            for d in sorted(dirs):
                info = tarfile.TarInfo(d)
                info.type = tarfile.DIRTYPE
                info.mode = 0o1777 if d == "tmp" else 0o755
                tar.addfile(info)
            for name in sorted(self.files):
                source, mode = self.files[name]
                data = source if isinstance(source, bytes) else source.read_bytes()
                info = tarfile.TarInfo(name)
                info.size = len(data)
                info.mode = mode
                tar.addfile(info, io.BytesIO(data))
            for name in sorted(self.links):
                info = tarfile.TarInfo(name)
                info.type = tarfile.SYMTYPE
                info.linkname = self.links[name]
                tar.addfile(info)
        return buf.getvalue()


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def write_image(
    path: Path, reference: str, layer: Layer, *, entrypoint: list[str] | None, arch: str
) -> None:
    """One image as an OCI layout archive, its name in the index annotations."""
    raw = layer.tar()
    compressed = gzip.compress(raw, compresslevel=1, mtime=0)
    config = {
        "architecture": arch,
        "os": "linux",
        "config": {"Env": [PATH_ENV], "WorkingDir": "/"}
        | ({"Entrypoint": entrypoint} if entrypoint else {}),
        "rootfs": {"type": "layers", "diff_ids": [_digest(raw)]},
        "history": [{"created_by": "clusterdeck scripts/oci_image.py"}],
    }
    config_bytes = json.dumps(config, sort_keys=True).encode()
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": OCI_CONFIG,
            "digest": _digest(config_bytes),
            "size": len(config_bytes),
        },
        "layers": [
            {"mediaType": OCI_LAYER, "digest": _digest(compressed), "size": len(compressed)}
        ],
    }
    manifest_bytes = json.dumps(manifest, sort_keys=True).encode()
    tag = reference.rsplit(":", 1)[1]
    index = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {
                "mediaType": OCI_MANIFEST,
                "digest": _digest(manifest_bytes),
                "size": len(manifest_bytes),
                "platform": {"architecture": arch, "os": "linux"},
                "annotations": {
                    "io.containerd.image.name": reference,
                    "org.opencontainers.image.ref.name": tag,
                },
            }
        ],
    }
    blobs = {_digest(b): b for b in (compressed, config_bytes, manifest_bytes)}
    tmp = path.with_suffix(".tmp")
    with tarfile.open(tmp, mode="w") as tar:
        entries = {
            "oci-layout": json.dumps({"imageLayoutVersion": "1.0.0"}).encode(),
            "index.json": json.dumps(index, sort_keys=True).encode(),
        }
        entries |= {f"blobs/sha256/{d.split(':', 1)[1]}": b for d, b in blobs.items()}
        for name, data in entries.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    tmp.replace(path)


def shared_libraries(binary: Path) -> set[Path]:
    """The loader and every library ``binary`` links (ldd), resolved to real files."""
    out = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, check=False).stdout
    libs = set()
    for match in re.finditer(r"(/\S+)\s+\(0x", out):
        libs.add(Path(match.group(1)))
    return libs


def add_iptables(layer: Layer) -> None:
    """Debian's nft-backed iptables, its extensions and every library they load."""
    multi = Path("/usr/sbin/xtables-nft-multi")
    if not multi.exists():
        raise SystemExit("iptables is needed to build the images (apt-get install iptables)")
    layer.add("/usr/sbin/xtables-nft-multi", multi)
    for tool in IPTABLES_TOOLS:
        layer.links[f"usr/sbin/{tool}"] = "xtables-nft-multi"
    loaded = shared_libraries(multi)
    extensions = sorted(Path("/usr/lib/x86_64-linux-gnu/xtables").glob("*.so"))
    for ext in extensions:
        layer.add(str(ext), ext, 0o644)
        loaded |= shared_libraries(ext)
    for lib in sorted(loaded):
        layer.add(str(lib), lib.resolve(), 0o755)
    conntrack = Path("/usr/sbin/conntrack")
    if conntrack.exists():
        layer.add("/usr/sbin/conntrack", conntrack)
        for lib in sorted(shared_libraries(conntrack)):
            layer.add(str(lib), lib.resolve(), 0o755)
    for name in ("protocols", "services", "ethertypes"):
        source = Path("/etc") / name
        if source.exists():
            layer.add(f"/etc/{name}", source, 0o644)
    layer.add("/etc/nsswitch.conf", b"hosts: files dns\nprotocols: files\nservices: files\n", 0o644)


def image_name(reference: str) -> str:
    return reference.rsplit(":", 1)[0].rsplit("/", 1)[-1]


def flannel_manifest(text: str, flannel: str, flannel_image: str, cni_image: str) -> str:
    """Upstream's kube-flannel.yml with the images made here. The flannel CNI plugin built
    here (containernetworking/plugins v0.9.1) speaks CNI up to 0.4.0, so the conflist says so."""
    text = re.sub(r"image: \S*flannel-cni-plugin:\S+", f"image: {cni_image}", text)
    text = re.sub(r"image: \S*/flannel:\S+", f"image: {flannel_image}", text)
    text = text.replace('"cniVersion": "1.0.0"', '"cniVersion": "0.4.0"')
    if flannel_image not in text or cni_image not in text:
        raise SystemExit(f"kube-flannel.yml of {flannel} names no images to replace")
    return text


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--version")
    parser.add_argument("--binaries", type=Path)
    parser.add_argument("--images", type=Path, help="kubeadm config images list")
    parser.add_argument("--flannel")
    parser.add_argument("--flannel-manifest", type=Path)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--arch", default="amd64")
    parser.add_argument("--flannel-cni", help="version of the flannel CNI plugin")
    parser.add_argument(
        "--test-image", type=Path, help="also write a busybox image here (for the lab's tests)"
    )
    args = parser.parse_args(argv)
    if args.test_image:
        if shared_libraries(Path("/bin/busybox")):
            # Debian's dynamic busybox: in an image without its libraries, exec of /bin/sh
            # fails with "no such file or directory"
            print(
                "error: /bin/busybox is dynamically linked; the test image needs the static "
                "one (apt-get install busybox-static)",
                file=sys.stderr,
            )
            return 1
        layer = Layer()
        layer.add("/bin/busybox", Path("/bin/busybox"))
        for applet in (
            "sh",
            "nc",
            "httpd",
            "ping",
            "sleep",
            "cat",
            "hostname",
            "ip",
            "mkdir",
            "echo",
        ):
            layer.links[f"bin/{applet}"] = "busybox"
        write_image(args.test_image, TEST_IMAGE, layer, entrypoint=["/bin/sh"], arch=args.arch)
    if args.out is None:
        return 0
    if not all((args.binaries, args.images, args.flannel, args.flannel_cni, args.flannel_manifest)):
        parser.error(
            "--out needs --binaries, --images, --flannel, --flannel-cni, --flannel-manifest"
        )
    bins: Path = args.binaries
    images_dir = args.out / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    refs = [line.strip() for line in args.images.read_text().splitlines() if line.strip()]
    flannel_ref = f"clusterdeck.local/flannel:{args.flannel}"
    cni_ref = f"{FLANNEL_CNI_IMAGE}:{args.flannel_cni}"
    for ref in [*refs, flannel_ref, cni_ref]:
        name = image_name(ref)
        layer = Layer()
        entrypoint: list[str] | None = None
        if name in ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "etcd"):
            layer.add(f"/usr/local/bin/{name}", bins / name)
        elif name == "kube-proxy":
            layer.add("/usr/local/bin/kube-proxy", bins / "kube-proxy")
            add_iptables(layer)
        elif name == "coredns":
            layer.add("/coredns", bins / "coredns")
            entrypoint = ["/coredns"]
        elif name == "pause":
            layer.add("/pause", bins / "pause")
            entrypoint = ["/pause"]
        elif ref == flannel_ref:
            layer.add("/opt/bin/flanneld", bins / "flanneld")
            layer.add("/opt/bin/install-conf", bins / "install-conf")
            add_iptables(layer)
            entrypoint = ["/opt/bin/flanneld"]
        elif ref == cni_ref:
            layer.add("/flannel", bins / "cni" / "flannel")
            layer.add("/bin/busybox", Path("/bin/busybox"))
            layer.links["bin/cp"] = "busybox"
        else:
            raise SystemExit(f"no recipe for image {ref}")
        target = images_dir / f"{name}.tar"
        write_image(target, ref, layer, entrypoint=entrypoint, arch=args.arch)
        print(f"image {ref}: {target.stat().st_size // 1024} KiB")
    manifest = flannel_manifest(
        args.flannel_manifest.read_text(), args.flannel, flannel_ref, cni_ref
    )
    (args.out / "manifests").mkdir(exist_ok=True)
    (args.out / "manifests" / "cni.yaml").write_text(manifest)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
