"""The entry point: ``python -m clusterdeck`` works, and a missing CLI extra is one clear line."""

from __future__ import annotations

import subprocess
import sys


def test_python_m_clusterdeck_runs_the_cli() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "clusterdeck", "version", "-o", "json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert '"clusterdeck"' in done.stdout


BLOCK_TYPER = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "typer":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, Block())
from clusterdeck.console import run
run()
"""


def test_missing_cli_extra_says_what_to_install() -> None:
    done = subprocess.run(
        [sys.executable, "-c", BLOCK_TYPER, "version"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1
    assert "pip install 'clusterdeck[cli]'" in done.stderr
    assert "Traceback" not in done.stderr
