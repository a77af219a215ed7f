"""Shared by the doubles on a lab host: records, the cluster store, kubeconfigs, TLS, openssl.

Runs on the lab host with Debian's python3 and PyYAML (never imports clusterdeck). The
cluster directory (``SHARED``) is bind-mounted into every host of one test cluster; its
``store.json`` is what etcd holds for a real cluster, read and written under an flock.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import http.client
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

SHARED = Path(os.environ.get("CLUSTERDECK_DOUBLES_SHARED", "/var/lib/clusterdeck-doubles"))
VERSION = os.environ.get("CLUSTERDECK_DOUBLE_VERSION", "v0.0.0")
KUBE = Path("/etc/kubernetes")
PKI = KUBE / "pki"
MANIFESTS = KUBE / "manifests"
KUBELET_DIR = Path("/var/lib/kubelet")
ADMIN_GROUPS = {"system:masters", "kubeadm:cluster-admins"}


class Fail(Exception):
    """An error the real program would print (to stderr) before exiting with ``code``."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def out(line: str = "") -> None:
    """Print a line at once, like kubeadm's progress output (a closed stdout kills us)."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


# records -------------------------------------------------------------------------------------
class Recorder:
    """One JSON line when the program starts and one when it ends, in the shared records."""

    def __init__(self, program: str, argv: list[str]) -> None:
        self.entry: dict[str, Any] = {
            "id": uuid.uuid4().hex,
            "program": program,
            "argv": argv,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "start": time.time(),
        }
        self.extra: dict[str, Any] = {}

    def _write(self, line: dict[str, Any]) -> None:
        path = SHARED / "records.jsonl"
        data = (json.dumps(line, sort_keys=True) + "\n").encode()
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            os.write(fd, data)
        finally:
            os.close(fd)

    def started(self) -> None:
        self._write({**self.entry, "event": "start"})

    def note(self, **extra: Any) -> None:
        self.extra.update(extra)

    def ended(self, rc: int) -> None:
        self._write({**self.entry, **self.extra, "event": "end", "end": time.time(), "rc": rc})


def main(program: str, run: Callable[[list[str], Recorder], int | None]) -> None:
    # Like a Go program, die of SIGPIPE when stdout is gone (e.g. the SSH session dropped).
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    argv = sys.argv[1:]
    rec = Recorder(program, argv)
    rec.started()
    try:
        rc = run(argv, rec) or 0
    except Fail as exc:
        sys.stderr.write(f"{exc}\n")
        rc = exc.code
    rec.ended(rc)
    sys.exit(rc)


# the cluster store (etcd's part) ------------------------------------------------------------
@contextlib.contextmanager
def store(write: bool = False) -> Iterator[dict[str, Any]]:
    """The cluster's objects; with ``write`` the changes made in the block are saved."""
    path = SHARED / "store.json"
    fd = os.open(SHARED / "store.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if write else fcntl.LOCK_SH)
        data: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
        for key in ("objects", "members", "credentials"):
            data.setdefault(key, {})
        yield data
        if write:
            tmp = path.with_name(f"store.json.{os.getpid()}")
            tmp.write_text(json.dumps(data, sort_keys=True))
            tmp.replace(path)
    finally:
        os.close(fd)


# kubeconfigs and the API -------------------------------------------------------------------
def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def kubeconfig(
    cluster: str,
    server: str,
    ca: bytes,
    user: str,
    *,
    cert: bytes | None = None,
    key: bytes | None = None,
    token: str | None = None,
) -> dict[str, Any]:
    creds: dict[str, Any] = {}
    if cert is not None and key is not None:
        creds = {"client-certificate-data": b64(cert), "client-key-data": b64(key)}
    if token is not None:
        creds = {"token": token}
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": cluster, "cluster": {"certificate-authority-data": b64(ca), "server": server}}
        ],
        "contexts": [{"name": f"{user}@{cluster}", "context": {"cluster": cluster, "user": user}}],
        "current-context": f"{user}@{cluster}",
        "preferences": {},
        "users": [{"name": user, "user": creds}],
    }


def write_file(path: Path, data: str | bytes, mode: int = 0o600) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data.encode() if isinstance(data, str) else data)
    os.chmod(tmp, mode)
    tmp.replace(path)


def load_kubeconfig(path: str | Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(Path(path).read_text())
    except OSError as exc:
        raise Fail(f"error: stat {path}: no such file or directory") from exc
    if not isinstance(data, dict) or not data.get("clusters"):
        raise Fail(f"error: {path} is not a kubeconfig")
    return data


def endpoint_url(endpoint: str) -> str:
    return endpoint if endpoint.startswith("https://") else f"https://{endpoint}"


class Api:
    """A small HTTPS client of the API server (the double), with kubeconfig credentials."""

    def __init__(
        self,
        server: str,
        ca: bytes | None,
        *,
        cert: bytes | None = None,
        key: bytes | None = None,
        token: str | None = None,
    ) -> None:
        self.server = server
        parts = urlsplit(server)
        self.host = parts.hostname or ""
        self.port = parts.port or 443
        self.ca, self.cert, self.key, self.token = ca, cert, key, token

    @classmethod
    def from_kubeconfig(cls, path: str | Path) -> Api:
        data = load_kubeconfig(path)
        cluster = data["clusters"][0]["cluster"]
        user = (data.get("users") or [{}])[0].get("user", {}) or {}
        ca = (
            base64.b64decode(cluster["certificate-authority-data"])
            if cluster.get("certificate-authority-data")
            else None
        )
        cert = (
            base64.b64decode(user["client-certificate-data"])
            if user.get("client-certificate-data")
            else None
        )
        key = base64.b64decode(user["client-key-data"]) if user.get("client-key-data") else None
        return cls(cluster["server"], ca, cert=cert, key=key, token=user.get("token"))

    def _context(self) -> ssl.SSLContext:
        if self.ca is None:  # kubeadm's discovery: trust on first use, checked by the pin
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        else:
            ctx = ssl.create_default_context(cadata=self.ca.decode())
        if self.cert is not None and self.key is not None:
            with tempfile.TemporaryDirectory() as tmp:
                cert, key = Path(tmp) / "c.pem", Path(tmp) / "k.pem"
                write_file(cert, self.cert)
                write_file(key, self.key)
                ctx.load_cert_chain(cert, key)
        return ctx

    # A connection the load balancer dropped (before, during or after the TLS handshake) is
    # retried; a certificate that does not verify is not.
    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        content_type: str = "application/json",
        timeout: float = 10,
        attempts: int = 8,
    ) -> tuple[int, Any]:
        """One API call; a dropped or refused connection is retried with backoff, as kubeadm's
        API client does (a load balancer can drop a connection while a health check flaps)."""
        for attempt in range(attempts):
            try:
                return self._request_once(method, path, body, content_type, timeout)
            except DROPPED:
                if attempt == attempts - 1:
                    raise
                time.sleep(min(0.25 * 2**attempt, 4))
        raise AssertionError("unreachable")

    def _request_once(
        self, method: str, path: str, body: Any, content_type: str, timeout: float
    ) -> tuple[int, Any]:
        conn = http.client.HTTPSConnection(
            self.host, self.port, context=self._context(), timeout=timeout
        )
        headers = {"Accept": "application/json"}
        payload = None
        if body is not None:
            payload = body if isinstance(body, bytes) else json.dumps(body).encode()
            headers["Content-Type"] = content_type
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        try:
            conn.request(method, path, body=payload, headers=headers)
            resp = conn.getresponse()
            raw = resp.read()
        finally:
            conn.close()
        try:
            return resp.status, json.loads(raw) if raw else None
        except ValueError:
            return resp.status, raw.decode(errors="replace")

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last = ""
        while True:
            try:
                status, body = self.request("GET", "/readyz", timeout=3, attempts=1)
                if status == 200:
                    return
                last = f"status {status}: {body}"
            except (OSError, ssl.SSLError, http.client.HTTPException) as exc:
                last = str(exc)
            if time.monotonic() > deadline:
                raise Fail(f"timed out waiting for the API server at {self.server}: {last}")
            time.sleep(0.5)


DROPPED = (
    ConnectionError,
    TimeoutError,
    http.client.RemoteDisconnected,
    http.client.BadStatusLine,
    ssl.SSLZeroReturnError,
    ssl.SSLEOFError,
)


# certificates (real X.509, made with openssl) ----------------------------------------------
def openssl(*args: str, stdin: bytes | None = None) -> bytes:
    res = subprocess.run(["openssl", *args], input=stdin, capture_output=True, check=False)
    if res.returncode != 0:
        raise Fail(f"openssl {args[0]} failed: {res.stderr.decode(errors='replace').strip()}")
    return res.stdout


def new_key(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", str(path))
    os.chmod(path, 0o600)


def new_ca(key: Path, cert: Path, cn: str) -> None:
    new_key(key)
    openssl(
        "req",
        "-x509",
        "-new",
        "-key",
        str(key),
        "-subj",
        f"/CN={cn}",
        "-days",
        "3650",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
        "-out",
        str(cert),
    )


def issue(
    ca_cert: Path,
    ca_key: Path,
    key: Path,
    cert: Path,
    cn: str,
    *,
    orgs: tuple[str, ...] = (),
    sans: list[str] | None = None,
) -> None:
    """A certificate for ``key`` (made when missing) signed by the CA."""
    if not key.exists():
        new_key(key)
    subject = "".join(f"/O={o}" for o in orgs) + f"/CN={cn}"
    args = [
        "req",
        "-x509",
        "-new",
        "-key",
        str(key),
        "-subj",
        subject,
        "-days",
        "365",
        "-CA",
        str(ca_cert),
        "-CAkey",
        str(ca_key),
        "-out",
        str(cert),
        "-addext",
        "basicConstraints=critical,CA:FALSE",
    ]
    if sans:
        names = ",".join(("IP:" if _is_ip(s) else "DNS:") + s for s in sans)
        args += ["-addext", f"subjectAltName={names}", "-addext", "extendedKeyUsage=serverAuth"]
    else:
        args += ["-addext", "extendedKeyUsage=clientAuth"]
    openssl(*args)


def _is_ip(text: str) -> bool:
    try:
        socket.inet_pton(socket.AF_INET6 if ":" in text else socket.AF_INET, text)
    except OSError:
        return False
    return True


def ca_hash(ca_pem: bytes) -> str:
    """``sha256:<hex>`` of the CA's SubjectPublicKeyInfo, as kubeadm pins it."""
    pub = openssl("x509", "-pubkey", "-noout", stdin=ca_pem)
    der = openssl("pkey", "-pubin", "-outform", "DER", stdin=pub)
    return "sha256:" + hashlib.sha256(der).hexdigest()


def systemctl(*args: str) -> None:
    res = subprocess.run(["systemctl", *args], capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise Fail(f"systemctl {' '.join(args)} failed: {res.stderr.strip()}")


def service_active(name: str) -> bool:
    return subprocess.run(["systemctl", "is-active", "--quiet", name], check=False).returncode == 0
