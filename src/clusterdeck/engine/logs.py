"""One log file per node, under the user data dir, readable by the owner only.

``<data dir>/logs/<environment>/<node>.log`` (``$CLUSTERDECK_LOGS`` replaces ``<data dir>/logs``).
The executor hands each step a writer for its node's file; the transport writes the command
lines (already masked) and their output into it. Files are 0600 in 0700 directories because
command output can be sensitive even with the known secrets masked.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import TextIO

from platformdirs import user_data_path

LOGS_ENV_VAR = "CLUSTERDECK_LOGS"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def default_log_root(store_path: Path | None = None) -> Path:
    """``$CLUSTERDECK_LOGS``, else ``logs/`` beside the state store in use (so ``--state``
    keeps an environment's store and its node logs together), else the user data dir's."""
    override = os.environ.get(LOGS_ENV_VAR)
    if override:
        return Path(override).expanduser()
    if store_path is not None:
        return store_path.parent / "logs"
    return user_data_path("clusterdeck") / "logs"


def _safe(name: str) -> str:
    cleaned = _UNSAFE.sub("_", name).lstrip(".")
    return cleaned or "_"


class NodeLogs:
    """Opens (lazily) and closes the per-node log files of one environment."""

    def __init__(self, environment: str, root: Path | None = None) -> None:
        self.environment = environment
        self.dir = (root or default_log_root()) / _safe(environment)
        self._files: dict[str, TextIO] = {}

    def path(self, node: str) -> Path:
        return self.dir / f"{_safe(node)}.log"

    def _file(self, node: str) -> TextIO:
        handle = self._files.get(node)
        if handle is None:
            self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            self.dir.chmod(0o700)
            path = self.path(node)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            os.fchmod(fd, 0o600)
            handle = self._files[node] = os.fdopen(fd, "a", buffering=1, encoding="utf-8")
        return handle

    def write(self, node: str, step: str, line: str) -> None:
        now = time.time()
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(now))
        self._file(node).write(f"{stamp}.{int(now % 1 * 1000):03d} [{step}] {line}\n")

    def writer(self, node: str, step: str) -> NodeLogWriter:
        return NodeLogWriter(self, node, step)

    def close(self) -> None:
        for handle in self._files.values():
            handle.close()
        self._files.clear()


class NodeLogWriter:
    """A line sink bound to one node and step (what the transport's ``output`` expects)."""

    def __init__(self, logs: NodeLogs, node: str, step: str) -> None:
        self.logs = logs
        self.node = node
        self.step = step

    def __call__(self, line: str) -> None:
        self.logs.write(self.node, self.step, line)
