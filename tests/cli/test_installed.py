"""The CLI as a user installs it: a clean venv holding only ``clusterdeck[cli]``.

The dev environment carries packages a user's install lacks (click, for one, which typer 0.29
no longer depends on: it bundles its own). So the package is installed here, as a wheel, into a
fresh venv with nothing else, and the commands a user mistypes are run there: each usage error
is one line and exit 2, never a traceback.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import ROOT

pytestmark = [pytest.mark.slow]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    venv = tmp_path_factory.mktemp("user") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    res = subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", f"{ROOT}[cli]"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    yield venv / "bin" / "clusterdeck"


def run(exe: Path, *args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(exe), *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        env={"PATH": "/usr/bin:/bin", "HOME": str(exe.parent.parent)},
    )


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["validate", "--nope"], "No such option: --nope"),
        (["nosuchcommand"], "No such command"),
        (["validate"], "Missing option"),
        (["status"], "Missing argument"),
        (["plan", "-f", "examples/aws-ha.yaml", "-o", "yaml"], "Invalid value"),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(installed: Path, args: list[str], says: str) -> None:
    res = run(installed, *args)
    assert res.returncode == 2, res.stderr
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and says in lines[0], res.stderr
    assert "Traceback" not in res.stderr and "internal error" not in res.stderr


def test_global_options_after_the_subcommand(installed: Path, tmp_path: Path) -> None:
    state = tmp_path / "state.db"
    res = run(
        installed,
        "validate",
        "-f",
        "examples/aws-ha.yaml",
        "--non-interactive",
        "-q",
        "--state",
        str(state),
    )
    assert res.returncode == 0, res.stderr
    listed = run(installed, "list", "--state", str(state), "-o", "json")
    assert listed.returncode == 0 and listed.stdout.strip() == "[]", listed.stderr


def test_a_state_path_that_is_no_store_is_refused(installed: Path, tmp_path: Path) -> None:
    other = tmp_path / "notes.txt"
    other.write_text("my notes\n")
    other.chmod(0o644)
    for path, says in ((tmp_path, "is a directory"), (other, "not a clusterdeck state store")):
        res = run(installed, "--state", str(path), "list")
        assert res.returncode == 2 and says in res.stderr, res.stderr
    assert other.read_text() == "my notes\n" and other.stat().st_mode & 0o777 == 0o644


def test_the_main_job_runs_in_the_users_install(installed: Path) -> None:
    res = run(installed, "plan", "-f", "examples/aws-ha.yaml")
    assert res.returncode == 0, res.stderr
    assert "gpu-ha" in res.stdout
