"""``clusterdeck bundle create --download`` against a local release server and a local registry.

What the official download would fetch is served from this machine: the release binaries and
their published .sha256 files over HTTP, laid out as ``{base}/<host>/<path>`` (so one base
stands in for dl.k8s.io and github.com), and the images from Debian's docker-registry (the
reference OCI distribution server), pushed there by the test under the repositories their
references name. The binaries and images are the lab's, built from the Go modules.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import shutil
import socket
import subprocess
import tarfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from clusterdeck.bundle import download
from clusterdeck.bundle.manifest import load
from tests.e2e.client import CLI
from tests.e2e.cluster import build_bundle

pytestmark = [pytest.mark.slow]
VERSION = "v1.37.2"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def lab_bundle() -> Path:
    return build_bundle()


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    binary = shutil.which("docker-registry")
    if binary is None:
        pytest.skip("docker-registry is not installed (apt-get install docker-registry)")
    home = tmp_path_factory.mktemp("registry")
    port = _free_port()
    config = home / "config.yml"
    config.write_text(
        "version: 0.1\nlog: {level: error}\n"
        f"storage: {{filesystem: {{rootdirectory: {home / 'data'}}}}}\n"
        f"http: {{addr: '127.0.0.1:{port}'}}\n"
    )
    proc = subprocess.Popen(
        [binary, "serve", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    base = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                urllib.request.urlopen(f"http://{base}/v2/", timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "docker-registry did not start"
                time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def push(registry: str, archive: Path, repo: str, tag: str) -> None:
    """Push one OCI layout archive to ``registry/repo:tag`` (monolithic blob uploads)."""
    with tarfile.open(archive) as tar:

        def read(name: str) -> bytes:
            member = tar.extractfile(name)
            assert member is not None
            return member.read()

        index = json.loads(read("index.json"))
        entry = index["manifests"][0]
        manifest_bytes = read(f"blobs/sha256/{entry['digest'].split(':')[1]}")
        manifest = json.loads(manifest_bytes)
        for blob in [manifest["config"], *manifest["layers"]]:
            data = read(f"blobs/sha256/{blob['digest'].split(':')[1]}")
            start = urllib.request.Request(
                f"http://{registry}/v2/{repo}/blobs/uploads/", method="POST"
            )
            with urllib.request.urlopen(start) as resp:
                location = resp.headers["Location"]
            if location.startswith("/"):
                location = f"http://{registry}{location}"
            sep = "&" if "?" in location else "?"
            put = urllib.request.Request(
                f"{location}{sep}digest={blob['digest']}", data=data, method="PUT"
            )
            put.add_header("Content-Type", "application/octet-stream")
            urllib.request.urlopen(put).close()
        put = urllib.request.Request(
            f"http://{registry}/v2/{repo}/manifests/{tag}", data=manifest_bytes, method="PUT"
        )
        put.add_header("Content-Type", entry["mediaType"])
        urllib.request.urlopen(put).close()


def _tgz(path: Path, members: dict[str, Path]) -> None:
    with tarfile.open(path, "w:gz", compresslevel=1) as tar:
        for name, source in members.items():
            tar.add(source, arcname=name)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass
class Releases:
    url: str
    root: Path  # the directory it serves

    def served(self, url: str) -> Path:
        return self.root / url.split("://", 1)[1]


@pytest.fixture(scope="module")
def releases(lab_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Releases]:
    root = tmp_path_factory.mktemp("releases")
    bins, cni = lab_bundle / "bin", lab_bundle / "cni"
    pins = download.RELEASES["default"]
    urls = download._urls(VERSION, "amd64", pins)
    files: dict[str, Path] = {}
    work = root / "work"
    work.mkdir()
    for name in ("kubeadm", "kubelet", "kubectl", "runc"):
        files[name] = bins / name
    files["containerd.tar.gz"] = work / "containerd.tar.gz"
    _tgz(
        files["containerd.tar.gz"],
        {f"bin/{b}": bins / b for b in ("containerd", "containerd-shim-runc-v2", "ctr")},
    )
    files["crictl.tar.gz"] = work / "crictl.tar.gz"
    _tgz(files["crictl.tar.gz"], {"crictl": bins / "crictl"})
    files["cni-plugins.tgz"] = work / "cni.tgz"
    _tgz(
        files["cni-plugins.tgz"],
        {f"./{p}": cni / p for p in ("bridge", "host-local", "loopback", "portmap")},
    )
    files["flannel-cni.tgz"] = work / "flannel.tgz"
    _tgz(files["flannel-cni.tgz"], {"flannel-amd64": cni / "flannel"})
    upstream = subprocess.run(
        ["go", "mod", "download", "-json", f"github.com/flannel-io/flannel@{pins['flannel']}"],
        capture_output=True,
        text=True,
        check=True,
    )
    files["kube-flannel.yml"] = (
        Path(json.loads(upstream.stdout)["Dir"]) / "Documentation/kube-flannel.yml"
    )
    for name, (url, sum_url) in urls.items():
        target = root / url.split("://", 1)[1]
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(files[name], target)
        if sum_url and not sum_url.startswith(download.PINNED):
            sums = root / sum_url.split("://", 1)[1]
            base = url.rsplit("/", 1)[1]
            sums.write_text(f"{_sha(target)}  {base}\n")

    handler = lambda *a: http.server.SimpleHTTPRequestHandler(*a, directory=str(root))  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.RequestHandlerClass.log_message = lambda *a: None  # type: ignore[method-assign]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Releases(f"http://127.0.0.1:{server.server_address[1]}", root)
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def pushed(lab_bundle: Path, registry: str, releases: Releases) -> list[str]:
    """Every image the download will ask for, under its own repository and tag."""
    flannel_url = download._urls(VERSION, "amd64", download.RELEASES["default"])["kube-flannel.yml"]
    flannel_yml = releases.served(flannel_url[0]).read_text()
    kubeadm = lab_bundle / "bin" / "kubeadm"
    wanted = download.kubeadm_images(kubeadm, VERSION)
    wanted += sorted(
        {w.split("image:")[1].strip() for w in flannel_yml.splitlines() if "image:" in w}
    )
    archives = {
        "flannel": lab_bundle / "images" / "flannel.tar",
        "flannel-cni-plugin": lab_bundle / "images" / "flannel-cni-plugin.tar",
    }
    for ref in wanted:
        name, tag = ref.rsplit(":", 1)
        repo = name.split("/", 1)[1]
        short = repo.rsplit("/", 1)[-1]
        push(registry, archives.get(short, lab_bundle / "images" / f"{short}.tar"), repo, tag)
    return wanted


def _download(releases: Releases, registry: str, out: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            str(CLI),
            "-q",
            "bundle",
            "create",
            "--download",
            "--kubernetes-version",
            VERSION,
            "--release-url",
            releases.url,
            "--registry",
            f"http://{registry}",
            "-O",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_download_builds_a_bundle_from_release_files_and_a_registry(
    pushed: list[str], registry: str, releases: Releases, lab_bundle: Path, tmp_path: Path
) -> None:
    out = tmp_path / "downloaded"
    res = _download(releases, registry, out)
    assert res.returncode == 0, res.stderr
    bundle = load(out)
    bundle.verify()
    m = bundle.manifest
    assert m.kubernetes_version == VERSION and m.cni.name == "flannel"
    assert sorted(i.reference for i in m.images) == sorted(pushed)  # named as kubeadm names them
    assert m.pause_image == "registry.k8s.io/pause:3.10.2"
    ours = load(lab_bundle).manifest
    for name in ("bin/kubeadm", "bin/kubelet", "bin/containerd", "bin/runc", "cni/flannel"):
        assert m.file(name).sha256 == ours.file(name).sha256, name
    inspect = subprocess.run(
        [str(CLI), "bundle", "inspect", str(out), "-o", "json"], capture_output=True, text=True
    )
    assert inspect.returncode == 0 and json.loads(inspect.stdout)["verified"] is True


def test_download_refuses_a_file_whose_published_checksum_differs(
    pushed: list[str], registry: str, releases: Releases, tmp_path: Path
) -> None:
    url = download._urls(VERSION, "amd64", download.RELEASES["default"])["kubelet"][1]
    target = releases.served(url)
    good = target.read_text()
    target.write_text("0" * 64 + "  kubelet\n")
    try:
        res = _download(releases, registry, tmp_path / "bad")
    finally:
        target.write_text(good)
    assert res.returncode == 1
    assert "kubelet" in res.stderr and "published checksum" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "bad").exists()


def test_pulled_archive_round_trips_the_image(
    registry: str, lab_bundle: Path, tmp_path: Path
) -> None:
    push(registry, lab_bundle / "images" / "pause.tar", "roundtrip/pause", "t1")
    target = tmp_path / "pause.tar"
    download.Registry(download.Fetcher(None), f"http://{registry}").pull(
        "example.invalid/roundtrip/pause:t1", "amd64", target
    )
    with tarfile.open(target) as tar:
        index = json.loads(tar.extractfile("index.json").read())  # type: ignore[union-attr]
    annotations = index["manifests"][0]["annotations"]
    assert annotations["io.containerd.image.name"] == "example.invalid/roundtrip/pause:t1"
