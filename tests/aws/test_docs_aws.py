"""Every clusterdeck command shown in docs/aws.md exists with the options it uses."""

from __future__ import annotations

import re
import shlex

import pytest
from typer.main import get_command

from clusterdeck.cli.main import app
from tests.aws.support import ROOT

DOC = ROOT / "docs" / "aws.md"


def _commands() -> list[list[str]]:
    """The clusterdeck invocations inside the doc's ```sh blocks."""
    found = []
    in_block = False
    for line in DOC.read_text().splitlines():
        if line.startswith("```"):
            in_block = line.strip() == "```sh"
            continue
        text = line.split("#", 1)[0].strip()
        match = re.match(r"^(?:\w+=\S+\s+)*clusterdeck\s+(.*?)(?:\s*\|.*)?$", text)
        if in_block and match:
            found.append(shlex.split(match.group(1)))
    return found


def test_the_doc_shows_create_status_delete_and_cleanup() -> None:
    verbs = {args[0] for args in _commands()}
    assert {"create", "status", "delete", "cleanup", "validate", "plan"} <= verbs


@pytest.mark.parametrize("args", _commands(), ids=lambda a: " ".join(a))
def test_documented_command_parses(args: list[str]) -> None:
    root = get_command(app)
    command = root.commands[args[0]]  # type: ignore[attr-defined]
    ctx = command.make_context(args[0], args[1:], resilient_parsing=False)
    assert ctx is not None
