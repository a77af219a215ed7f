"""Build an offline bundle from the official release artifacts, on a machine with internet.

Binaries come from their projects' release downloads, each checked against the sha256 file
published beside it; container images are pulled from their registries over the OCI
distribution API (anonymous bearer tokens where the registry asks for one), for the bundle's
platform, each blob checked against its digest, and written as OCI layout archives named as
kubeadm names them. The release versions of the node components are the ones recorded below.

``release_url`` stands in for every download host (``https://dl.k8s.io/x`` is fetched as
``{release_url}/dl.k8s.io/x``), and ``registry`` for every registry (``registry.k8s.io/pause``
is pulled as ``{registry}/pause``, ``ghcr.io/flannel-io/flannel`` as
``{registry}/flannel-io/flannel``): a mirror, or the local servers the tests start.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import shutil
import subprocess
import tarfile
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clusterdeck.bundle.create import create_from_directory
from clusterdeck.bundle.manifest import BundleError, BundleManifest
from clusterdeck.errors import PermanentError, TransientError
from clusterdeck.model.releases import FLANNEL

# The node components that go with each Kubernetes minor (release versions, official downloads)
RELEASES: dict[str, dict[str, str]] = {
    "default": {
        "containerd": "2.4.2",
        "runc": "v1.3.7",
        "crictl": "v1.37.0",
        "cni-plugins": "v1.10.0",
        "flannel": FLANNEL.version,
        "flannel-cni-plugin": "v1.9.1-flannel3",
    },
}
MANIFEST_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)
INDEX_TYPES = MANIFEST_TYPES[:2]
ATTEMPTS = 4
Progress = Callable[[str], None]


PINNED = "sha256:"  # a checksum "URL" that is the digest itself, recorded in the code


def _urls(version: str, arch: str, pins: dict[str, str]) -> dict[str, tuple[str, str]]:
    """file name -> (URL, URL of its published sha256, or PINNED + the digest)."""
    k8s = f"https://dl.k8s.io/release/{version}/bin/linux/{arch}"
    gh = "https://github.com"
    c, r, cr = pins["containerd"], pins["runc"], pins["crictl"]
    plugins, fl, flc = pins["cni-plugins"], pins["flannel"], pins["flannel-cni-plugin"]
    files = {
        name: (f"{k8s}/{name}", f"{k8s}/{name}.sha256")
        for name in ("kubeadm", "kubelet", "kubectl")
    }
    files["containerd.tar.gz"] = (
        f"{gh}/containerd/containerd/releases/download/v{c}/containerd-{c}-linux-{arch}.tar.gz",
        f"{gh}/containerd/containerd/releases/download/v{c}/containerd-{c}-linux-{arch}.tar.gz.sha256sum",
    )
    files["runc"] = (
        f"{gh}/opencontainers/runc/releases/download/{r}/runc.{arch}",
        f"{gh}/opencontainers/runc/releases/download/{r}/runc.sha256sum",
    )
    files["crictl.tar.gz"] = (
        f"{gh}/kubernetes-sigs/cri-tools/releases/download/{cr}/crictl-{cr}-linux-{arch}.tar.gz",
        f"{gh}/kubernetes-sigs/cri-tools/releases/download/{cr}/crictl-{cr}-linux-{arch}.tar.gz.sha256",
    )
    files["cni-plugins.tgz"] = (
        f"{gh}/containernetworking/plugins/releases/download/{plugins}/cni-plugins-linux-{arch}-{plugins}.tgz",
        f"{gh}/containernetworking/plugins/releases/download/{plugins}/cni-plugins-linux-{arch}-{plugins}.tgz.sha256",
    )
    files["flannel-cni.tgz"] = (
        f"{gh}/flannel-io/cni-plugin/releases/download/{flc}/cni-plugin-flannel-linux-{arch}-{flc}.tgz",
        f"{gh}/flannel-io/cni-plugin/releases/download/{flc}/cni-plugin-flannel-linux-{arch}-{flc}.tgz.sha256",
    )
    # the release manifest is pinned by its own sha256 (no checksum file is published beside it)
    if fl != FLANNEL.version:
        raise PermanentError(f"flannel {fl}: only the {FLANNEL.version} manifest is pinned")
    files["kube-flannel.yml"] = (FLANNEL.url, PINNED + FLANNEL.sha256)
    return files


@dataclass
class Fetcher:
    """HTTP GETs with retries of transient failures, through an optional mirror base URL."""

    release_url: str | None
    timeout: float = 60.0

    def url(self, url: str) -> str:
        if not self.release_url:
            return url
        parts = urllib.parse.urlsplit(url)
        return f"{self.release_url.rstrip('/')}/{parts.netloc}{parts.path}"

    def get(self, url: str, headers: dict[str, str] | None = None) -> bytes:
        data: bytes = self.open(url, headers, lambda resp: resp.read())
        return data

    def save(self, url: str, target: Path, headers: dict[str, str] | None = None) -> str:
        """Stream ``url`` to ``target``; return its sha256."""

        def write(resp: Any) -> str:
            digest = hashlib.sha256()
            with target.open("wb") as out:
                while chunk := resp.read(1 << 20):
                    digest.update(chunk)
                    out.write(chunk)
            return digest.hexdigest()

        digest: str = self.open(url, headers, write)
        return digest

    def open(self, url: str, headers: dict[str, str] | None, use: Callable[[Any], Any]) -> Any:
        for attempt in range(ATTEMPTS):
            request = _request(url, headers or {})
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as resp:  # noqa: S310
                    return use(resp)
            except urllib.error.HTTPError as exc:
                if exc.code < 500 and exc.code != 429:
                    raise
                problem: Exception = exc
            except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
                problem = exc
            if attempt + 1 == ATTEMPTS:
                raise TransientError(f"{url}: {problem}") from problem
            time.sleep(0.5 * 2**attempt)
        raise AssertionError("unreachable")


def _request(url: str, headers: dict[str, str]) -> urllib.request.Request:
    """Only http(s): a mirror URL must never make this read local files."""
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise BundleError(f"{url}: only http and https URLs are fetched")
    return urllib.request.Request(url, headers=headers)  # noqa: S310


def _published_sum(text: str, name_hint: str) -> str:
    """The hex digest out of a .sha256 / .sha256sum file (one sum, or a list with names)."""
    lines = [line.split() for line in text.splitlines() if line.strip()]
    for words in lines:
        if len(words) >= 2 and words[1].lstrip("*").endswith(name_hint):
            return words[0]
    if lines and re.fullmatch(r"[0-9a-f]{64}", lines[0][0]):
        return lines[0][0]
    raise PermanentError(f"no sha256 for {name_hint} in the published checksum file")


def _fetch_files(
    fetch: Fetcher, work: Path, urls: dict[str, tuple[str, str]], progress: Progress
) -> None:
    for name, (url, sum_url) in urls.items():
        progress(f"download {url}")
        try:
            got = fetch.save(fetch.url(url), work / name)
        except urllib.error.HTTPError as exc:
            raise PermanentError(f"{url}: HTTP {exc.code}") from None
        if sum_url.startswith(PINNED):
            want = sum_url.removeprefix(PINNED)
            if got != want:
                raise PermanentError(f"{url}: sha256 {got}, but the pinned sha256 is {want}")
        elif sum_url:
            want = _published_sum(
                fetch.get(fetch.url(sum_url)).decode(),
                urllib.parse.urlsplit(url).path.rsplit("/", 1)[-1],
            )
            if got != want:
                raise PermanentError(f"{url}: sha256 {got}, but the published checksum is {want}")


def _extract(archive: Path, members: dict[str, Path]) -> None:
    """Copy the named members (by base name) out of a .tar.gz to their targets."""
    with tarfile.open(archive) as tar:
        for member in tar.getmembers():
            base = member.name.rsplit("/", 1)[-1]
            if member.isfile() and base in members:
                src = tar.extractfile(member)
                if src is not None:
                    with src, members[base].open("wb") as out:
                        shutil.copyfileobj(src, out)
                    members[base].chmod(0o755)
                    members.pop(base)
        if members:
            raise PermanentError(f"{archive.name}: no {', '.join(sorted(members))} inside")


# --- images ---------------------------------------------------------------------------------
@dataclass
class Registry:
    """An anonymous OCI distribution client: pull one image for one platform."""

    fetch: Fetcher
    mirror: str | None  # host[:port], or a URL with its scheme (http://127.0.0.1:5000)

    @property
    def scheme(self) -> str:
        return self.mirror.partition("://")[0] if self.mirror and "://" in self.mirror else "https"

    def _where(self, reference: str) -> tuple[str, str, str]:
        name, _, tag = reference.rpartition(":")
        host, _, repo = name.partition("/")
        if self.mirror:
            return self.mirror.rpartition("://")[2], repo, tag
        return host, repo, tag

    def _get(self, base: str, path: str, accept: str, token: list[str]) -> tuple[bytes, str]:
        url = f"{self.scheme}://{base}/v2/{path}"
        headers = {"Accept": accept}
        if token:
            headers["Authorization"] = f"Bearer {token[0]}"
        try:
            request = _request(url, headers)
            with urllib.request.urlopen(request, timeout=self.fetch.timeout) as resp:  # noqa: S310
                return resp.read(), resp.headers.get("Content-Type", "")
        except urllib.error.HTTPError as exc:
            challenge = exc.headers.get("WWW-Authenticate", "")
            if exc.code != 401 or token or not challenge.startswith("Bearer "):
                raise PermanentError(f"{url}: HTTP {exc.code}") from None
            fields = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
            query = urllib.parse.urlencode({k: v for k, v in fields.items() if k != "realm"})
            answer = json.loads(self.fetch.get(f"{fields['realm']}?{query}"))
            token.append(answer.get("token") or answer.get("access_token", ""))
            return self._get(base, path, accept, token)

    def pull(self, reference: str, arch: str, target: Path) -> None:
        base, repo, tag = self._where(reference)
        token: list[str] = []
        body, kind = self._get(base, f"{repo}/manifests/{tag}", ", ".join(MANIFEST_TYPES), token)
        data = json.loads(body)
        kind = data.get("mediaType") or kind.split(";")[0]
        if kind in INDEX_TYPES:
            chosen = [
                m
                for m in data.get("manifests", [])
                if m.get("platform", {}).get("os") == "linux"
                and m.get("platform", {}).get("architecture") == arch
            ]
            if not chosen:
                raise PermanentError(f"{reference}: no linux/{arch} image")
            digest = chosen[0]["digest"]
            body, kind = self._get(
                base, f"{repo}/manifests/{digest}", ", ".join(MANIFEST_TYPES[2:]), token
            )
            _check(body, digest, reference)
            data = json.loads(body)
            kind = data.get("mediaType") or kind.split(";")[0]
        blobs = {}
        for item in [data["config"], *data["layers"]]:
            blob, _ = self._get(base, f"{repo}/blobs/{item['digest']}", "*/*", token)
            _check(blob, item["digest"], reference)
            blobs[item["digest"]] = blob
        manifest_digest = "sha256:" + hashlib.sha256(body).hexdigest()
        blobs[manifest_digest] = body
        index = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [
                {
                    "mediaType": kind,
                    "digest": manifest_digest,
                    "size": len(body),
                    "platform": {"os": "linux", "architecture": arch},
                    "annotations": {
                        "io.containerd.image.name": reference,
                        "org.opencontainers.image.ref.name": tag,
                    },
                }
            ],
        }
        with tarfile.open(target, "w") as tar:
            entries = {
                "oci-layout": json.dumps({"imageLayoutVersion": "1.0.0"}).encode(),
                "index.json": json.dumps(index).encode(),
            }
            entries |= {f"blobs/sha256/{d.split(':', 1)[1]}": b for d, b in blobs.items()}
            for name, blob in entries.items():
                info = tarfile.TarInfo(name)
                info.size = len(blob)
                info.mode = 0o644
                tar.addfile(info, io.BytesIO(blob))


def _check(data: bytes, digest: str, reference: str) -> None:
    algorithm, _, want = digest.partition(":")
    if algorithm != "sha256" or hashlib.sha256(data).hexdigest() != want:
        raise PermanentError(f"{reference}: a blob does not match its digest {digest}")


def kubeadm_images(kubeadm: Path, version: str) -> list[str]:
    res = subprocess.run(
        [str(kubeadm), "config", "images", "list", "--kubernetes-version", version],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if res.returncode != 0:
        raise PermanentError(f"kubeadm config images list: {res.stderr.strip()}")
    return [line.strip() for line in res.stdout.splitlines() if line.strip()]


def create_by_download(
    output: Path,
    *,
    kubernetes_version: str,
    arch: str,
    release_url: str | None = None,
    registry: str | None = None,
    progress: Progress = lambda _: None,
) -> BundleManifest:
    if output.expanduser().exists():
        raise BundleError(f"{output}: already exists; choose a new path")
    pins = RELEASES["default"]
    fetch = Fetcher(release_url)
    with tempfile.TemporaryDirectory(prefix="clusterdeck-bundle-") as tmp:
        work, stage = Path(tmp) / "download", Path(tmp) / "stage"
        for sub in ("bin", "cni", "images", "manifests"):
            (stage / sub).mkdir(parents=True)
        work.mkdir()
        _fetch_files(fetch, work, _urls(kubernetes_version, arch, pins), progress)
        for name in ("kubeadm", "kubelet", "kubectl", "runc"):
            shutil.move(work / name, stage / "bin" / name)
            (stage / "bin" / name).chmod(0o755)
        _extract(
            work / "containerd.tar.gz",
            {b: stage / "bin" / b for b in ("containerd", "containerd-shim-runc-v2", "ctr")},
        )
        _extract(work / "crictl.tar.gz", {"crictl": stage / "bin" / "crictl"})
        _extract(
            work / "cni-plugins.tgz",
            {p: stage / "cni" / p for p in ("bridge", "host-local", "loopback", "portmap")},
        )
        _extract(work / "flannel-cni.tgz", {f"flannel-{arch}": stage / "cni" / "flannel"})
        manifest_text = (work / "kube-flannel.yml").read_text()
        (stage / "manifests" / "cni.yaml").write_text(manifest_text)
        refs = kubeadm_images(stage / "bin" / "kubeadm", kubernetes_version)
        refs += sorted(set(re.findall(r"image:\s*(\S+)", manifest_text)))
        client = Registry(fetch, registry)
        for ref in refs:
            progress(f"pull {ref}")
            short = ref.rsplit(":", 1)[0].rsplit("/", 1)[-1]
            client.pull(ref, arch, stage / "images" / f"{short}.tar")
        return create_from_directory(
            stage, output, kubernetes_version=kubernetes_version, arch=arch, progress=progress
        )
