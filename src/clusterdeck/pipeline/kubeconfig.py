"""The admin kubeconfig for the user: server set to the public endpoint, written 0600 or
merged into ~/.kube/config as a named context. Never stored in the state store."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from clusterdeck.errors import UsageError


def _yaml() -> YAML:
    yaml = YAML(typ="safe")
    yaml.default_flow_style = False
    return yaml


def load(text: str) -> dict[str, Any]:
    data = _yaml().load(text)
    if not isinstance(data, dict) or not data.get("clusters"):
        raise UsageError("the control plane's admin.conf is not a kubeconfig")
    return data


def dump(data: dict[str, Any]) -> str:
    out = io.StringIO()
    _yaml().dump(data, out)
    return out.getvalue()


def for_user(admin_conf: str, name: str, server: str) -> dict[str, Any]:
    """admin.conf renamed to ``name`` (cluster, user, context) with ``server`` as its API."""
    data = load(admin_conf)
    cluster = dict(data["clusters"][0]["cluster"])
    cluster["server"] = server
    user = dict(data["users"][0]["user"])
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "preferences": {},
        "clusters": [{"name": name, "cluster": cluster}],
        "users": [{"name": f"{name}-admin", "user": user}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": f"{name}-admin"}}],
        "current-context": name,
    }


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` with mode 0600 from the first byte (no umask window)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".clusterdeck.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    tmp.chmod(0o600)
    tmp.replace(path)


def merge(path: Path, config: dict[str, Any]) -> None:
    """Add or replace the named cluster, user and context in an existing kubeconfig."""
    existing: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [],
        "users": [],
        "contexts": [],
    }
    if path.exists():
        loaded = _yaml().load(path.read_text()) or {}
        if not isinstance(loaded, dict):
            raise UsageError(f"{path} is not a kubeconfig; not merging into it")
        existing.update(loaded)
    for section in ("clusters", "users", "contexts"):
        new = config[section]
        names = {item["name"] for item in new}
        existing[section] = [i for i in existing.get(section) or [] if i.get("name") not in names]
        existing[section] += new
    existing["current-context"] = config["current-context"]
    write_private(path, dump(existing))
