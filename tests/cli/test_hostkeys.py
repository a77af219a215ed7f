"""Pinned host keys: listed with fingerprints, deliberately unpinned by node or address."""

from __future__ import annotations

import base64
import hashlib
import json

import asyncssh

from clusterdeck.state import SqliteStore
from tests.helpers import run_cli


def _store_with_pins(tmp_path, monkeypatch):
    path = tmp_path / "s.db"
    monkeypatch.setenv("CLUSTERDECK_STATE", str(path))
    store = SqliteStore(path)
    store.save_environment("onprem", "ssh", {})
    store.record_resource(
        "onprem",
        "node/onprem-cp-0",
        "host",
        "192.0.2.11",
        {"ssh_host": "192.0.2.11", "ssh_port": 22},
    )
    keys = {}
    for host in ("192.0.2.11", "192.0.2.12"):
        line = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode()
        key_type, body = line.split()[:2]
        store.pin_host_key("onprem", host, 22, key_type, body)
        digest = base64.b64encode(hashlib.sha256(base64.b64decode(body)).digest()).decode()
        keys[host] = f"SHA256:{digest.rstrip('=')}"
    return store, keys


def test_list_shows_node_names_and_fingerprints(tmp_path, capsys, monkeypatch) -> None:
    _, keys = _store_with_pins(tmp_path, monkeypatch)
    result = run_cli(["host-key", "list", "onprem", "-o", "json"], capsys, monkeypatch)
    assert result.code == 0, result.err
    rows = {r["host"]: r for r in json.loads(result.out)}
    assert rows["192.0.2.11"]["node"] == "onprem-cp-0"
    assert rows["192.0.2.11"]["fingerprint"].endswith(keys["192.0.2.11"])
    assert rows["192.0.2.12"]["node"] == "-"


def test_forget_by_node_name_unpins_only_that_host(tmp_path, capsys, monkeypatch) -> None:
    store, _ = _store_with_pins(tmp_path, monkeypatch)
    result = run_cli(["host-key", "forget", "onprem", "onprem-cp-0", "--yes"], capsys, monkeypatch)
    assert result.code == 0, result.err
    assert store.host_key("onprem", "192.0.2.11", 22) is None
    assert store.host_key("onprem", "192.0.2.12", 22) is not None
    result = run_cli(["host-key", "forget", "onprem", "192.0.2.12", "--yes"], capsys, monkeypatch)
    assert result.code == 0 and store.host_keys("onprem") == []


def test_forget_unknown_host_is_bad_input(tmp_path, capsys, monkeypatch) -> None:
    _store_with_pins(tmp_path, monkeypatch)
    result = run_cli(["host-key", "forget", "onprem", "ghost", "--yes"], capsys, monkeypatch)
    assert result.code == 2
    assert "no pinned host key for 'ghost'" in result.err


def test_forget_asks_first_in_non_interactive_mode(tmp_path, capsys, monkeypatch) -> None:
    store, _ = _store_with_pins(tmp_path, monkeypatch)
    result = run_cli(
        ["--non-interactive", "host-key", "forget", "onprem", "onprem-cp-0"], capsys, monkeypatch
    )
    assert result.code == 2 and "--yes" in result.err
    assert store.host_key("onprem", "192.0.2.11", 22) is not None
