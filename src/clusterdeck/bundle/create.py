"""Build an offline bundle from a directory of binaries, image archives and a CNI manifest.

The source directory has the layout a user who builds from source (or the lab's
``scripts/kubernetes-artifacts.sh``) produces::

    bin/      kubeadm kubelet kubectl crictl containerd containerd-shim-runc-v2 ctr runc
    cni/      the CNI plugins (bridge host-local loopback portmap, and the CNI's own)
    images/   one OCI or Docker archive per image (``ctr images import`` reads both)
    manifests/cni.yaml   the CNI's release manifest

Nothing is guessed: every binary must be there, each image's reference is read from its own
archive, the images kubeadm asks for must all be present, and the CNI is recognised from its
manifest. The result is a directory, or a tar archive when the output ends in ``.tar``.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import tarfile
from collections.abc import Callable
from pathlib import Path

from clusterdeck.bundle.manifest import (
    MANIFEST,
    BundleCni,
    BundleError,
    BundleFile,
    BundleImage,
    BundleManifest,
    FileKind,
    sha256_of,
)

NODE_BINARIES = (
    "kubeadm",
    "kubelet",
    "kubectl",
    "crictl",
    "containerd",
    "containerd-shim-runc-v2",
    "ctr",
    "runc",
)
CNI_PLUGINS = ("bridge", "host-local", "loopback", "portmap")
# The images every cluster needs from the bundle (besides the CNI's): kubeadm's own list
CONTROL_PLANE_IMAGES = (
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kube-proxy",
    "etcd",
    "coredns",
    "pause",
)
Progress = Callable[[str], None]


def image_references(archive: Path) -> list[str]:
    """The image names an OCI layout or Docker archive says it holds."""
    try:
        with tarfile.open(archive) as tar:
            names = tar.getnames()
            if "index.json" in names:
                member = tar.extractfile("index.json")
                index = json.loads(member.read()) if member else {}
                refs = [
                    m.get("annotations", {}).get("io.containerd.image.name", "")
                    for m in index.get("manifests", [])
                ]
            elif "manifest.json" in names:
                member = tar.extractfile("manifest.json")
                refs = [
                    t
                    for m in json.loads(member.read() if member else b"[]")
                    for t in m.get("RepoTags") or []
                ]
            else:
                raise BundleError(f"{archive}: neither an OCI layout nor a Docker image archive")
    except (tarfile.TarError, json.JSONDecodeError) as exc:
        raise BundleError(f"{archive}: not an image archive ({exc})") from None
    refs = [r for r in refs if r]
    if not refs:
        raise BundleError(f"{archive}: the archive names no image (no io.containerd.image.name)")
    return refs


def _short_name(reference: str) -> str:
    return reference.rsplit(":", 1)[0].rsplit("/", 1)[-1]


def detect_cni(manifest: str) -> BundleCni:
    """The CNI and its version, from the images its manifest runs."""
    flannel = re.search(r"image:\s*\S*/flannel:(v[0-9][\w.\-]*)", manifest)
    if flannel:
        return BundleCni(name="flannel", version=flannel.group(1), manifest="manifests/cni.yaml")
    calico = re.search(r"image:\s*\S*calico/node:(v[0-9][\w.\-]*)", manifest)
    if calico:
        return BundleCni(name="calico", version=calico.group(1), manifest="manifests/cni.yaml")
    raise BundleError("manifests/cni.yaml: neither a Flannel nor a Calico manifest")


def create_from_directory(
    source: Path,
    output: Path,
    *,
    kubernetes_version: str,
    arch: str,
    progress: Progress = lambda _: None,
) -> BundleManifest:
    source = source.expanduser()
    if not source.is_dir():
        raise BundleError(f"{source}: not a directory")
    missing = [f"bin/{b}" for b in NODE_BINARIES if not (source / "bin" / b).is_file()]
    missing += [f"cni/{p}" for p in CNI_PLUGINS if not (source / "cni" / p).is_file()]
    if not (source / "manifests" / "cni.yaml").is_file():
        missing.append("manifests/cni.yaml")
    if missing:
        raise BundleError(f"{source}: missing {', '.join(missing)}")
    cni = detect_cni((source / "manifests" / "cni.yaml").read_text())
    files: list[tuple[Path, str, FileKind]] = [
        (source / "bin" / b, f"bin/{b}", FileKind.BINARY) for b in NODE_BINARIES
    ]
    files += [
        (p, f"cni/{p.name}", FileKind.CNI_PLUGIN)
        for p in sorted((source / "cni").iterdir())
        if p.is_file()
    ]
    images: list[BundleImage] = []
    for archive in sorted((source / "images").glob("*.tar")):
        rel = f"images/{archive.name}"
        files.append((archive, rel, FileKind.IMAGE))
        images += [BundleImage(reference=r, file=rel) for r in image_references(archive)]
    files.append((source / "manifests" / "cni.yaml", cni.manifest, FileKind.MANIFEST))
    have = {_short_name(i.reference) for i in images}
    lacking = [n for n in CONTROL_PLANE_IMAGES if n not in have]
    if lacking:
        raise BundleError(f"{source}/images: no archive for {', '.join(lacking)}")
    pause = next(i.reference for i in images if _short_name(i.reference) == "pause")
    entries = []
    for path, rel, kind in files:
        progress(f"checksum {rel}")
        with path.open("rb") as fh:
            digest = sha256_of(fh)
        entries.append(BundleFile(path=rel, kind=kind, sha256=digest, size=path.stat().st_size))
    manifest = BundleManifest(
        kubernetes_version=kubernetes_version,
        arch=arch,
        pause_image=pause,
        cni=cni,
        files=entries,
        images=images,
    )
    _write(files, manifest, output, progress)
    return manifest


def _write(
    files: list[tuple[Path, str, FileKind]],
    manifest: BundleManifest,
    output: Path,
    progress: Progress,
) -> None:
    output = output.expanduser()
    if output.exists():
        raise BundleError(f"{output}: already exists; choose a new path")
    if output.suffix == ".tar":
        tmp = output.with_name(output.name + ".part")
        with tarfile.open(tmp, "w") as tar:
            data = manifest.to_json().encode()
            info = tarfile.TarInfo(MANIFEST)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
            for path, rel, _ in files:
                progress(f"add {rel}")
                tar.add(path, arcname=rel, recursive=False)
        tmp.replace(output)
        return
    tmp = output.with_name(output.name + ".part")
    shutil.rmtree(tmp, ignore_errors=True)
    for path, rel, _ in files:
        target = tmp / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(path, target)  # same filesystem: no copy
        except OSError:
            shutil.copy2(path, target)
    (tmp / MANIFEST).write_text(manifest.to_json())
    tmp.rename(output)
