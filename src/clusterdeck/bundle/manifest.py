"""The offline bundle's manifest, and reading and checking a bundle before anything uses it.

An offline bundle carries everything a node needs to become part of a cluster without a
download: kubeadm, kubelet, kubectl and crictl, containerd and runc, the CNI plugins, the
container images kubeadm and the CNI ask for (OCI archives) and the CNI manifest. Its
``bundle.json`` records the Kubernetes version, the architecture, every file with its sha256
and size, and every image with its reference. A bundle is a directory or a tar archive of
one; inside an archive the files are plain entries under the same paths (``bin/kubeadm``).

clusterdeck checks a bundle against its manifest before uploading anything: a bundle for
another Kubernetes version or architecture, a file missing, or one whose checksum differs is
refused with one line that names it. This module reads files but writes nothing.
"""

from __future__ import annotations

import hashlib
import tarfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import IO, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from clusterdeck.errors import UsageError
from clusterdeck.spec.models import Offline

MANIFEST = "bundle.json"
SCHEMA: Literal["clusterdeck.dev/bundle/v1alpha1"] = "clusterdeck.dev/bundle/v1alpha1"
CHUNK = 1 << 20


class BundleError(UsageError):
    """A bundle that cannot be used as it is (bad input: exit 2)."""


class FileKind(StrEnum):
    BINARY = "binary"  # installed to /usr/local/bin (runc: /usr/local/sbin)
    CNI_PLUGIN = "cni-plugin"  # installed to /opt/cni/bin
    IMAGE = "image"  # an OCI archive imported into containerd's k8s.io namespace
    MANIFEST = "manifest"  # applied to the cluster (the CNI)


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class BundleFile(Model):
    path: str  # relative, POSIX separators
    kind: FileKind
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size: int = Field(ge=0)


class BundleImage(Model):
    reference: str  # exactly as kubeadm config images list prints it
    file: str


class BundleCni(Model):
    name: Literal["flannel", "calico"]
    version: str
    manifest: str  # path of the manifest file in the bundle


class BundleManifest(Model):
    schema_: Literal["clusterdeck.dev/bundle/v1alpha1"] = Field(default=SCHEMA, alias="schema")
    kubernetes_version: str = Field(alias="kubernetesVersion")
    arch: Literal["amd64", "arm64"]
    pause_image: str = Field(alias="pauseImage")
    cni: BundleCni
    files: list[BundleFile]
    images: list[BundleImage]

    def to_json(self) -> str:
        return self.model_dump_json(by_alias=True, indent=2) + "\n"

    def file(self, path: str) -> BundleFile:
        for item in self.files:
            if item.path == path:
                return item
        raise KeyError(path)

    def of_kind(self, kind: FileKind) -> list[BundleFile]:
        return [f for f in self.files if f.kind is kind]

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)


def sha256_of(stream: IO[bytes]) -> str:
    digest = hashlib.sha256()
    while chunk := stream.read(CHUNK):
        digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class Bundle:
    """A bundle on this machine: a directory, or a tar archive holding the same layout."""

    path: Path
    manifest: BundleManifest

    @property
    def is_archive(self) -> bool:
        return self.path.is_file()

    @contextmanager
    def open(self, rel: str) -> Iterator[IO[bytes]]:
        """One file of the bundle, for reading."""
        if not self.is_archive:
            with (self.path / rel).open("rb") as fh:
                yield fh
            return
        with tarfile.open(self.path) as tar:
            member = _member(tar, rel)
            stream = tar.extractfile(member) if member is not None else None
            if stream is None:
                raise BundleError(f"{self.path}: {rel} is listed in {MANIFEST} but missing")
            with stream:
                yield stream

    def verify(self) -> None:
        """Every listed file present with its sha256; raise naming the first that is not."""
        for item in self.manifest.files:
            try:
                with self.open(item.path) as fh:
                    got = sha256_of(fh)
            except FileNotFoundError:
                raise BundleError(
                    f"{self.path}: {item.path} is listed in {MANIFEST} but missing"
                ) from None
            if got != item.sha256:
                raise BundleError(
                    f"{self.path}: {item.path} has sha256 {got}, not the {item.sha256} its "
                    f"manifest records: the bundle is damaged or was changed"
                )


def _member(tar: tarfile.TarFile, rel: str) -> tarfile.TarInfo | None:
    for name in (rel, f"./{rel}"):
        try:
            member = tar.getmember(name)
        except KeyError:
            continue
        return member if member.isfile() else None
    return None


def _parse(raw: bytes, where: str) -> BundleManifest:
    try:
        return BundleManifest.model_validate_json(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        raise BundleError(
            f"{where}: {MANIFEST} is not a bundle manifest ({field}: {first['msg']})"
        ) from None


def load(path: str | Path) -> Bundle:
    """The bundle at ``path`` (a directory or tar archive), its manifest read, files unchecked."""
    root = Path(path).expanduser()
    if root.is_dir():
        manifest = root / MANIFEST
        if not manifest.is_file():
            raise BundleError(f"{root}: no {MANIFEST}; not a clusterdeck bundle")
        return Bundle(root, _parse(manifest.read_bytes(), str(root)))
    if root.is_file():
        try:
            with tarfile.open(root) as tar:
                member = _member(tar, MANIFEST)
                stream = tar.extractfile(member) if member is not None else None
                if stream is None:
                    raise BundleError(
                        f"{root}: no {MANIFEST} in the archive; not a clusterdeck bundle"
                    )
                raw = stream.read()
        except tarfile.TarError as exc:
            raise BundleError(f"{root}: not a directory or a tar archive ({exc})") from None
        return Bundle(root, _parse(raw, str(root)))
    raise BundleError(f"{root}: no such bundle (a directory or a tar archive)")


def check_for(
    bundle: Bundle, kubernetes_version: str, arch: str = "amd64", cni: str | None = None
) -> None:
    """Refuse a bundle made for another Kubernetes version, architecture or CNI."""
    have = bundle.manifest
    if cni is not None and have.cni.name != cni:
        raise BundleError(
            f"{bundle.path}: the bundle carries the {have.cni.name} CNI, but kubernetes.cni "
            f"is {cni}"
        )
    if have.kubernetes_version != kubernetes_version:
        raise BundleError(
            f"{bundle.path}: the bundle holds Kubernetes {have.kubernetes_version}, but "
            f"kubernetes.version is {kubernetes_version}"
        )
    if have.arch != arch:
        raise BundleError(
            f"{bundle.path}: the bundle is for {have.arch}, but it stands for {arch} nodes"
        )


def open_checked(
    path: str | Path, kubernetes_version: str, cni: str | None = None, *, verify: bool = True
) -> Bundle:
    """The bundle a file names, refused unless it is for that version and (``verify``) every
    file matches its checksum: the check that comes before anything is uploaded."""
    bundle = load(path)
    check_for(bundle, kubernetes_version, cni=cni)
    if verify:
        bundle.verify()
    return bundle


def no_bundle_for(who: str, arch: str, have: Iterable[str]) -> str:
    """The one message for a node whose architecture has no bundle (``who``: the node)."""
    return (
        f"{who}, and spec.offline has no {arch} bundle (only {', '.join(sorted(have))}): make "
        f"one with `clusterdeck bundle create --arch {arch}` and list both under "
        "spec.offline.bundles"
    )


@dataclass(frozen=True)
class BundleSet:
    """An environment's offline bundles, by architecture (``spec.offline.bundle`` is a set of
    one, keyed by what its manifest says): each node gets the one of its architecture."""

    by_arch: dict[str, Bundle]

    def for_arch(self, arch: str | None) -> Bundle:
        """The bundle for ``arch``; for an architecture not known yet (an ssh host before
        its facts), the only bundle, or the amd64 one."""
        if arch is None:
            if len(self.by_arch) == 1:
                return next(iter(self.by_arch.values()))
            arch = "amd64"
        found = self.by_arch.get(arch)
        if found is None:
            raise BundleError(no_bundle_for(f"a node is {arch}", arch, self.by_arch))
        return found

    @property
    def manifests(self) -> dict[str, BundleManifest]:
        return {arch: b.manifest for arch, b in self.by_arch.items()}

    def verify(self) -> None:
        for bundle in self.by_arch.values():
            bundle.verify()


def open_for(
    offline: Offline, kubernetes_version: str, cni: str | None = None, *, verify: bool = True
) -> BundleSet:
    """The bundles ``spec.offline`` names, opened and checked (see :func:`open_set`)."""
    per_arch = {str(arch): path for arch, path in offline.bundles.items()}
    return open_set(offline.bundle, per_arch, kubernetes_version, cni, verify=verify)


def open_set(
    single: str | None,
    per_arch: dict[str, str],
    kubernetes_version: str,
    cni: str | None = None,
    *,
    verify: bool = True,
) -> BundleSet:
    """The bundles a file names (``spec.offline.bundle``, or ``bundles`` per architecture),
    each refused unless it is for that version, CNI and architecture, and (``verify``) every
    file matches its checksum: the check before anything is created or uploaded."""
    found: dict[str, Bundle] = {}
    if single is not None:
        bundle = load(single)
        check_for(bundle, kubernetes_version, bundle.manifest.arch, cni)
        found[bundle.manifest.arch] = bundle
    for arch, path in sorted(per_arch.items()):
        bundle = load(path)
        check_for(bundle, kubernetes_version, arch, cni)
        found[arch] = bundle
    out = BundleSet(found)
    if verify:
        out.verify()
    return out
