"""Each run imports only its own command's module: what ``validate`` loads, and the table that
says which module registers which command."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import typer

from clusterdeck.cli.main import COMMAND_MODULES

ROOT = Path(__file__).resolve().parents[2]

LOADED = """
import sys
sys.argv = ["clusterdeck", *sys.argv[1:]]
from clusterdeck.cli.main import run
try:
    run()
except SystemExit:
    pass
import json
print(json.dumps(sorted(sys.modules)), file=sys.stderr)
"""


def _loaded(*args: str) -> set[str]:
    done = subprocess.run(
        [sys.executable, "-c", LOADED, *args], capture_output=True, text=True, timeout=60
    )
    return set(json.loads(done.stderr.strip().splitlines()[-1]))


def test_validate_loads_neither_the_api_nor_the_store_nor_an_sdk() -> None:
    loaded = _loaded("validate", "-f", str(ROOT / "examples" / "aws-ha.yaml"))
    assert "clusterdeck.spec.models" in loaded
    heavy = {"clusterdeck.api", "clusterdeck.state.sqlite", "clusterdeck.pipeline", "boto3"}
    assert not heavy & loaded, heavy & loaded
    assert not {m for m in loaded if m.startswith("asyncssh")}


def test_the_command_table_matches_what_the_modules_register() -> None:
    found: dict[str, str] = {}
    for module in sorted(set(COMMAND_MODULES.values())):
        app = typer.Typer()
        importlib.import_module(f"clusterdeck.cli.{module}").register(app)
        for cmd in app.registered_commands:
            name = cmd.name or (cmd.callback.__name__ if cmd.callback else "")
            found[name.replace("_", "-")] = module
        for group in app.registered_groups:
            found[str(group.name)] = module
    modules = {p.stem for p in (ROOT / "src" / "clusterdeck" / "cli").glob("cmd_*.py")}
    assert modules == set(COMMAND_MODULES.values())
    assert found == COMMAND_MODULES


def test_help_lists_every_command() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "clusterdeck", "--help"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    for name in COMMAND_MODULES:
        assert f" {name} " in done.stdout, name
