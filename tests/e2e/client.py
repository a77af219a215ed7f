"""What the user does with a cluster from their own machine: the CLI in a subprocess, the
kubeconfig it wrote used against the API (HTTPS, the kubeconfig's CA and client certificate).
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ruamel.yaml import YAML

CLI = Path(sys.executable).with_name("clusterdeck")


def cli(state: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command(state, *args), capture_output=True, text=True, timeout=timeout, env=env(state)
    )


def command(state: Path, *args: str) -> list[str]:
    exe = str(CLI) if CLI.exists() else (shutil.which("clusterdeck") or "clusterdeck")
    return [exe, "--state", str(state), *args]


def env(state: Path) -> dict[str, str]:
    return {
        **os.environ,
        "CLUSTERDECK_LOGS": str(state.parent / "logs"),
        "CI": "true",
        "COLUMNS": "200",
    }


def load_kubeconfig(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = YAML(typ="safe").load(path.read_text())
    return data


def api_get(kubeconfig: Path, path: str) -> Any:
    """GET ``path`` from the kubeconfig's server with its credentials (CA checked)."""
    config = load_kubeconfig(kubeconfig)
    cluster = config["clusters"][0]["cluster"]
    user = config["users"][0]["user"]
    ctx = ssl.create_default_context(
        cadata=base64.b64decode(cluster["certificate-authority-data"]).decode()
    )
    with tempfile.TemporaryDirectory() as tmp:
        cert, key = Path(tmp) / "cert.pem", Path(tmp) / "key.pem"
        cert.write_bytes(base64.b64decode(user["client-certificate-data"]))
        key.write_bytes(base64.b64decode(user["client-key-data"]))
        ctx.load_cert_chain(cert, key)
    server = urlsplit(cluster["server"])
    conn = http.client.HTTPSConnection(
        server.hostname or "", server.port or 443, context=ctx, timeout=20
    )
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        body = resp.read().decode()
    finally:
        conn.close()
    assert resp.status == 200, f"GET {path}: {resp.status} {body}"
    return json.loads(body) if body.startswith("{") else body
