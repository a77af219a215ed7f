"""What each kind of step does on a node, over the transport.

Phase scripts go as files on stdin (never on a command line); the bundle goes as one tar
archive; join material is read from the first control plane without logging its output and
reaches a joining node only as a 0600 file. A failed phase raises an error naming the node,
the phase and the last lines of its output.
"""

from __future__ import annotations

import asyncio
import io
import json
import re
import shlex
import tarfile
import time
from collections.abc import Callable
from typing import Any

from clusterdeck.bootstrap import gpu, kubeadm
from clusterdeck.bootstrap.kubeadm_build import JoinMaterial, init_config_with, join_document
from clusterdeck.bootstrap.nodeconfig import BUNDLE_ON_NODE, INIT_FILE, JOIN_FILE, NodeConfig
from clusterdeck.bootstrap.render import Artifact
from clusterdeck.errors import PermanentError, TransientError
from clusterdeck.model.phases import hook_of
from clusterdeck.transport import Command, Connections, Endpoint, Masker, Script, Secret

ADMIN_CONF = "/etc/kubernetes/admin.conf"
KUBECTL = ["kubectl", f"--kubeconfig={ADMIN_CONF}"]
TAIL_LINES = 8
_CERT_KEY = re.compile(r"^[0-9a-f]{64}$")
Log = Callable[[str], None]


def bundle_tar(files: dict[str, Artifact]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for rel, artifact in sorted(files.items()):
            data = artifact.content.encode()
            info = tarfile.TarInfo(rel)
            info.size = len(data)
            info.mode = artifact.mode
            info.mtime = 0
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


async def upload_bundle(
    conns: Connections, endpoint: Endpoint, files: dict[str, Artifact], log: Log
) -> None:
    unpack = (
        'umask 077; rm -rf "$1.new" && mkdir -p "$1.new" && tar -x -C "$1.new" '
        '&& rm -rf "$1" && mv "$1.new" "$1"'
    )
    await conns.run(
        endpoint,
        Command(
            ["sh", "-c", unpack, "clusterdeck-bundle", BUNDLE_ON_NODE],
            stdin=bundle_tar(files),
            name="upload bundle",
            root=True,
        ),
        output=log,
        timeout=120,
    )


def _tail(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return " | ".join(lines[-TAIL_LINES:])


async def run_phase(
    conns: Connections,
    endpoint: Endpoint,
    node: str,
    phase: str,
    script: str,
    log: Log,
    *,
    timeout: float,
    secrets: list[str] | None = None,
    secret_env: dict[str, str] | None = None,
) -> None:
    """Run one phase script as root; ``secret_env`` reaches it as environment variables
    through stdin, masked in every line of output and in the error."""
    hidden = dict(secret_env or {})
    result = await conns.run(
        endpoint,
        Script(
            script,
            interpreter="/bin/bash",
            name=phase,
            env={"CLUSTERDECK_BUNDLE": BUNDLE_ON_NODE, **{k: Secret(v) for k, v in hidden.items()}},
            root=True,
        ),
        output=log,
        timeout=timeout,
        check=False,
    )
    if result.exit_status != 0:
        mask = Masker([*(secrets or []), *hidden.values()])
        hook = hook_of(phase)
        what = f"hook {hook}" if hook else f"phase {phase}"
        raise PermanentError(
            f"{node}: {what} failed with status {result.exit_status}; "
            f"last lines: {mask(_tail(result.stdout + result.stderr))}"
        )


async def fetch_join_material(
    conns: Connections, endpoint: Endpoint, *, certificate_key: bool, log: Log
) -> JoinMaterial:
    """A fresh token (2 h TTL) and CA hash, and for HA a fresh certificate key. The output of
    these commands is secret: it is parsed here and never written to a log."""
    log("creating a bootstrap token and reading the CA hash (output not logged)")
    res = await conns.run(
        endpoint,
        Command(
            ["kubeadm", "token", "create", "--ttl", "2h0m0s", "--print-join-command"],
            name="kubeadm token",
            root=True,
        ),
        timeout=120,
    )
    words = shlex.split(res.stdout.strip().splitlines()[-1] if res.stdout.strip() else "")
    try:
        token = words[words.index("--token") + 1]
        ca_hash = words[words.index("--discovery-token-ca-cert-hash") + 1]
    except (ValueError, IndexError):
        raise TransientError(
            f"{endpoint.label}: kubeadm token create printed no join command"
        ) from None
    key = None
    if certificate_key:
        log("uploading control-plane certificates for joining control planes (key not logged)")
        res = await conns.run(
            endpoint,
            Command(
                ["kubeadm", "init", "phase", "upload-certs", "--upload-certs"],
                name="kubeadm upload-certs",
                root=True,
            ),
            timeout=120,
        )
        keys = [w for w in res.stdout.split() if _CERT_KEY.match(w)]
        if not keys:
            raise TransientError(f"{endpoint.label}: upload-certs printed no certificate key")
        key = keys[-1]
    return JoinMaterial(token=token, ca_cert_hash=ca_hash, certificate_key=key)


DONE_DIR = "/var/lib/clusterdeck/done"


async def has_joined(conns: Connections, endpoint: Endpoint, *, control_plane: bool) -> bool:
    """The node's join (or, on the first control plane, init) phase recorded its success:
    the same record the phase checks. Files it would have written prove nothing."""
    phases = (
        ["kubeadm-init", "kubeadm-join-control-plane"] if control_plane else ["kubeadm-join-worker"]
    )
    test = ["sh", "-c", 'for p; do [ -f "$0/$p" ] && exit 0; done; exit 1', DONE_DIR, *phases]
    try:
        res = await conns.run(
            endpoint, Command(test, name="joined?", root=True), timeout=30, check=False
        )
    except (TransientError, PermanentError):
        return False  # cannot tell: the material is fetched, the node's phase decides
    return res.exit_status == 0


CA_CERT = "/etc/kubernetes/pki/ca.crt"


async def read_file(conns: Connections, endpoint: Endpoint, path: str) -> str:
    res = await conns.run(
        endpoint, Command(["cat", path], name=f"read {path}", root=True), timeout=30
    )
    return res.stdout


async def upload_init_config(
    conns: Connections, endpoint: Endpoint, rendered: str, material: JoinMaterial, log: Log
) -> None:
    """The rendered init config plus the token (and certificate key) chosen for this init,
    as a 0600 file the init phase uses and removes."""
    await conns.run(
        endpoint,
        Command(["mkdir", "-p", "-m", "0700", "/run/clusterdeck"], root=True),
        output=log,
        timeout=30,
    )
    conn = await conns.get(endpoint)
    await conn.upload(
        INIT_FILE, init_config_with(rendered, material).encode(), mode=0o600, timeout=30, output=log
    )


async def upload_join_config(
    conns: Connections, endpoint: Endpoint, cfg: NodeConfig, material: JoinMaterial, log: Log
) -> None:
    text = kubeadm.to_yaml(join_document(cfg, material))
    await conns.run(
        endpoint,
        Command(["mkdir", "-p", "-m", "0700", "/run/clusterdeck"], root=True),
        output=log,
        timeout=30,
    )
    conn = await conns.get(endpoint)
    await conn.upload(JOIN_FILE, text.encode(), mode=0o600, timeout=30, output=log)


async def nodes_json(conns: Connections, endpoint: Endpoint, timeout: float = 30) -> dict[str, Any]:
    res = await conns.run(
        endpoint, Command([*KUBECTL, "get", "nodes", "-o", "json"], root=True), timeout=timeout
    )
    data: dict[str, Any] = json.loads(res.stdout)
    return data


async def daemonsets_json(conns: Connections, endpoint: Endpoint) -> dict[str, Any]:
    res = await conns.run(
        endpoint,
        Command([*KUBECTL, "get", "daemonsets", "--all-namespaces", "-o", "json"], root=True),
        timeout=30,
    )
    data: dict[str, Any] = json.loads(res.stdout)
    return data


def unavailable_daemonsets(data: dict[str, Any]) -> list[str]:
    """``namespace/name (ready/desired)`` of each DaemonSet whose pods are not all ready."""
    waiting = []
    for item in data.get("items", []):
        status = item.get("status", {})
        meta = item.get("metadata", {})
        desired = status.get("desiredNumberScheduled", 0)
        ready = status.get("numberReady", 0)
        # until the controller has seen the current spec, its counts say nothing (0 of 0 just
        # after an apply); after that, 0 of 0 is a DaemonSet for nodes this cluster lacks
        observed = status.get("observedGeneration", 0) >= meta.get("generation", 1)
        if ready < desired or not observed:
            waiting.append(f"{meta.get('namespace')}/{meta.get('name')} ({ready}/{desired} ready)")
    return waiting


def gpus_not_advertised(data: dict[str, Any]) -> list[str]:
    """Nodes labelled as having an NVIDIA GPU whose kubelet does not offer ``nvidia.com/gpu``
    (no driver, no toolkit runtime, or no device plugin running there)."""
    missing = []
    for item in data.get("items", []):
        meta = item.get("metadata", {})
        if meta.get("labels", {}).get(gpu.GPU_LABEL) != "true":
            continue
        count = item.get("status", {}).get("allocatable", {}).get(gpu.GPU_RESOURCE, "0")
        if str(count) in ("", "0"):
            missing.append(f"{meta.get('name')} (no {gpu.GPU_RESOURCE} advertised)")
    return missing


def ready_nodes(data: dict[str, Any]) -> set[str]:
    ready = set()
    for item in data.get("items", []):
        for cond in item.get("status", {}).get("conditions", []):
            if cond.get("type") == "Ready" and cond.get("status") == "True":
                ready.add(item["metadata"]["name"])
    return ready


async def wait_ready(
    conns: Connections,
    endpoint: Endpoint,
    expected: list[str],
    log: Log,
    *,
    timeout: float,
    interval: float = 2.0,
) -> list[str]:
    deadline = time.monotonic() + timeout
    missing = list(expected)
    while True:
        try:
            nodes = await nodes_json(conns, endpoint)
            ready = ready_nodes(nodes)
            missing = [n for n in expected if n not in ready]
            if not missing:
                # a kubelet says Ready once a CNI config exists; the pod network works only
                # when the CNI's and kube-proxy's pods run on every node
                missing = unavailable_daemonsets(await daemonsets_json(conns, endpoint))
            if not missing:
                missing = gpus_not_advertised(nodes)
        except (TransientError, PermanentError, ValueError) as exc:
            log(f"cannot list nodes yet: {exc}")
        if not missing:
            log(f"all {len(expected)} nodes Ready, every DaemonSet's pods ready on them")
            return expected
        if time.monotonic() >= deadline:
            raise PermanentError(f"not Ready after {timeout:g}s: {', '.join(missing)}")
        log(f"waiting for {len(missing)} to be ready: {', '.join(missing[:10])}")
        await asyncio.sleep(interval)


async def read_admin_conf(conns: Connections, endpoint: Endpoint) -> str:
    res = await conns.run(
        endpoint, Command(["cat", ADMIN_CONF], name="read admin.conf", root=True), timeout=30
    )
    return res.stdout
