"""A real moto server process on 127.0.0.1 for the AWS tests, reached via AWS_ENDPOINT_URL.

One server per test session (per xdist worker), reset before each test through moto's own
reset endpoint. The server validates instance types, AMIs and key pairs like AWS does, and
holds Canonical-owned Ubuntu images from ``fixtures/amis.json`` (plus a look-alike owned by
another account that must never be picked).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from clusterdeck.state import SqliteStore

FIXTURES = Path(__file__).parent / "fixtures"
CALLER_IP = "198.51.100.7"
KEY_NAME = "my-key"
REGIONS = ("us-west-2", "us-east-1")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def moto_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = _free_port()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    env = {
        **os.environ,
        "MOTO_AMIS_PATH": str(FIXTURES / "amis.json"),
        "MOTO_EC2_ENABLE_INSTANCE_TYPE_VALIDATION": "true",
        "MOTO_ENABLE_AMI_VALIDATION": "true",
        "MOTO_ENABLE_KEYPAIR_VALIDATION": "true",
        # AWS's managed policies exist in every account (AmazonSSMManagedInstanceCore)
        "MOTO_IAM_LOAD_MANAGED_POLICIES": "true",
    }
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"{url}/moto-api/", timeout=1).close()
            break
        except OSError as exc:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"moto server did not start: {log.read_text()[-2000:]}") from exc
            time.sleep(0.1)
    try:
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass
class Aws:
    """The test's view of the fake cloud: clients, the state store, the environment vars."""

    endpoint: str
    store: SqliteStore
    state_path: Path

    def client(self, service: str, region: str = "us-west-2") -> Any:
        return boto3.client(service, region_name=region)  # type: ignore[call-overload]

    def env(self, **extra: str) -> dict[str, str]:
        return {**os.environ, **extra}


@pytest.fixture
def aws(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Aws]:
    request = urllib.request.Request(f"{moto_endpoint}/moto-api/reset", method="POST")
    urllib.request.urlopen(request, timeout=10).close()
    for var in (
        "AWS_PROFILE",
        "AWS_SESSION_TOKEN",
        "AWS_SECURITY_TOKEN",
        "AWS_RETRY_MODE",
        "CLUSTERDECK_CALLER_IP_URL",
        "CLUSTERDECK_TEST_CRASH_AFTER",
    ):
        monkeypatch.delenv(var, raising=False)
    state_path = tmp_path / "state.db"
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-west-2")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")
    monkeypatch.setenv("CLUSTERDECK_CALLER_IP", CALLER_IP)
    monkeypatch.setenv("CLUSTERDECK_STATE", str(state_path))
    monkeypatch.setenv("CLUSTERDECK_NONINTERACTIVE", "true")
    for region in REGIONS:
        boto3.client("ec2", region_name=region).create_key_pair(KeyName=KEY_NAME)
    store = SqliteStore(state_path)
    try:
        yield Aws(moto_endpoint, store, state_path)
    finally:
        store.close()
