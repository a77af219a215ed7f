"""The join material of a stateless cluster: published once by the initialiser, renewed by the
steward before it expires, read by every node that joins.

It is one secret of the coordination point (0600 in a 0700 directory for the shared
directory): the bootstrap token, the CA's public key hash and, for HA, the key of the
certificates uploaded to the cluster. Its life is shorter than both the token's TTL and the
two hours kubeadm keeps uploaded certificates. The steward makes a new token and uploads the
certificates again under a new key once less than :data:`RENEW_BEFORE` is left, so a node that
boots hours later still joins. Nothing of it is ever logged: the commands that print a token or
key are run with their output captured and dropped.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import time
from pathlib import Path

from clusterdeck.agent.local import Log
from clusterdeck.bootstrap.kubeadm import KUBEADM_API
from clusterdeck.bootstrap.kubeadm_build import JoinMaterial, ca_cert_hash
from clusterdeck.coordination.base import Coordinator
from clusterdeck.errors import PermanentError

NAME = "join-material"
TTL = 110 * 60.0  # within the 2 h of the token and of the uploaded certificates
TOKEN_LIFETIME = "2h0m0s"  # noqa: S105 - a duration, not a secret
RENEW_BEFORE = 40 * 60.0  # a node that read it just now still has half an hour to join
POLL = 1.0
CA = Path("/etc/kubernetes/pki/ca.crt")
ADMIN = "/etc/kubernetes/admin.conf"


def publish(coord: Coordinator, material: JoinMaterial, ca: bytes, *, ttl: float = TTL) -> None:
    data = {
        "token": material.token,
        "ca_cert_hash": ca_cert_hash(ca),
        "certificate_key": material.certificate_key,
        "expires_at": time.time() + ttl,
    }
    coord.publish(NAME, json.dumps(data).encode(), ttl)


def _parse(raw: bytes) -> tuple[JoinMaterial, float]:
    data = json.loads(raw)
    material = JoinMaterial(
        token=data["token"],
        ca_cert_hash=data["ca_cert_hash"],
        certificate_key=data.get("certificate_key"),
    )
    return material, float(data.get("expires_at", 0.0))


def wait_for(coord: Coordinator, name: str, log: Log, wait: float) -> JoinMaterial:
    deadline = time.monotonic() + wait
    told = False
    while True:
        raw = coord.fetch(NAME)
        if raw is not None:
            return _parse(raw)[0]
        if time.monotonic() > deadline:
            raise PermanentError(f"{name}: no join material after {wait:.0f} s")
        if not told:
            log(
                "waiting for the join material (the cluster is being initialised, or the "
                "steward is renewing it)"
            )
            told = True
        time.sleep(POLL)


def _secret_output(argv: list[str], what: str) -> str:
    """Run a kubeadm command whose output is a secret: it is returned, never logged."""
    try:
        res = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise PermanentError(f"{what} did not run: {type(exc).__name__}") from None
    if res.returncode != 0:
        # kubeadm's errors do not contain the token or key; its output on success would
        last = [x for x in res.stderr.splitlines() if x.strip()][-1:] or ["no message"]
        raise PermanentError(f"{what} failed with status {res.returncode}: {last[0]}")
    return res.stdout.strip()


def upload_config(key: str, address: str, version: str) -> str:
    """The config ``kubeadm init phase upload-certs`` reads: the key, and what kubeadm would
    otherwise guess (the advertise address, from the default route; the version, by asking
    the internet)."""
    return (
        f"apiVersion: {KUBEADM_API}\nkind: InitConfiguration\ncertificateKey: {key}\n"
        f'localAPIEndpoint:\n  advertiseAddress: "{address}"\n  bindPort: 6443\n---\n'
        f"apiVersion: {KUBEADM_API}\nkind: ClusterConfiguration\nkubernetesVersion: {version}\n"
    )


def renew_if_due(
    coord: Coordinator, log: Log, *, certificate_key: bool, address: str, version: str
) -> bool:
    """On the steward: publish new material when it is missing or about to expire. Not while
    a control plane holds ``join-control-plane`` with material it read: a new certificate key
    replaces the uploaded certificates, and the key it holds would no longer open them."""
    raw = coord.fetch(NAME)
    if raw is not None:
        if _parse(raw)[1] - time.time() > RENEW_BEFORE:
            return False
        if certificate_key and coord.leader("join-control-plane") is not None:
            return False  # renewed after that join, still within the material's life
    printed = _secret_output(
        ["kubeadm", "token", "create", "--ttl", TOKEN_LIFETIME, "--kubeconfig", ADMIN],
        "kubeadm token create",
    ).splitlines()
    token = printed[-1].strip() if printed else ""
    if not token:
        raise PermanentError("kubeadm token create printed no token")
    key = None
    if certificate_key:
        key = _secret_output(
            ["kubeadm", "certs", "certificate-key"], "kubeadm certs certificate-key"
        )
        # the key goes in a private file, not on a command line that ps would show
        with tempfile.NamedTemporaryFile("w", prefix="upload-certs-", suffix=".yaml") as fh:
            fh.write(upload_config(key, address, version))
            fh.flush()
            _secret_output(
                [
                    "kubeadm", "init", "phase", "upload-certs", "--upload-certs",
                    "--config", fh.name, "--skip-certificate-key-print", "--kubeconfig", ADMIN,
                ],
                "kubeadm init phase upload-certs",
            )  # fmt: skip
    publish(coord, JoinMaterial(token=token, ca_cert_hash="", certificate_key=key), CA.read_bytes())
    log(
        f"steward: join material renewed (a new token{' and certificate key' if key else ''}, "
        f"{TTL / 60:.0f} min)"
    )
    return True
