"""Run a phase script on this machine, as the SSH path runs it remotely: bash, the node
bundle in ``CLUSTERDECK_BUNDLE``, output streamed to the agent's log (the journal)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from clusterdeck.errors import PermanentError

Log = Callable[[str], None]
TAIL_LINES = 8


def run_script(
    text: str,
    *,
    name: str,
    bundle: Path,
    log: Log,
    timeout: float = 900,
    args: tuple[str, ...] = (),
) -> str:
    """Run ``text`` with bash; its output, or PermanentError naming the phase and its last
    lines."""
    with tempfile.NamedTemporaryFile("w", prefix=f"{name}-", suffix=".sh", delete=False) as fh:
        fh.write(text)
        path = fh.name
    try:
        Path(path).chmod(0o700)
        proc = subprocess.Popen(
            ["/bin/bash", path, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "CLUSTERDECK_BUNDLE": str(bundle)},
        )
        lines: list[str] = []
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))
            log(f"{name}: {line.rstrip()}")
        status = proc.wait(timeout=timeout)
    finally:
        Path(path).unlink()
    if status != 0:
        tail = " | ".join(x for x in lines[-TAIL_LINES:] if x.strip())
        raise PermanentError(f"phase {name} failed with status {status}; last lines: {tail}")
    return "\n".join(lines)


def stderr_log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
