"""Small helpers shared by the tests: example paths and running the real CLI entry point."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


@dataclass
class CliResult:
    code: int
    out: str
    err: str


_HOLDER = """
import sys, time
from clusterdeck.state import SqliteStore
with SqliteStore(sys.argv[1]).lock(sys.argv[2], "create"):
    print("held", flush=True)
    time.sleep(60)
"""


@contextmanager
def lock_holder(store_path: Path, environment: str) -> Iterator[subprocess.Popen[bytes]]:
    """Another process holding the environment's lock (as a running create would)."""
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(store_path), environment], stdout=subprocess.PIPE
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == b"held"
        yield holder
    finally:
        holder.kill()
        holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()


def run_cli(
    args: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> CliResult:
    """Run ``clusterdeck ARGS`` in-process through the console-script entry point."""
    from clusterdeck.cli.main import run

    monkeypatch.setattr(sys, "argv", ["clusterdeck", *args])
    code = 0
    try:
        run()
    except SystemExit as exc:
        code = int(exc.code or 0)
    captured = capsys.readouterr()
    return CliResult(code, captured.out, captured.err)
