"""The docs match the code: the generated configuration reference, and every command shown."""

from __future__ import annotations

import os

import pytest

from clusterdeck.spec import reference
from tests.helpers import ROOT


def test_readme_reference_matches_the_models() -> None:
    readme = ROOT / "README.md"
    text = readme.read_text()
    assert reference.START in text and reference.END in text
    fresh = reference.splice(text)
    if os.environ.get("CLUSTERDECK_UPDATE_GOLDEN") == "1":
        readme.write_text(fresh)
    assert fresh == text, (
        "README configuration reference is stale: run "
        "`python -m clusterdeck.spec.reference --write README.md`"
    )


def test_every_model_field_is_documented() -> None:
    body = reference.render_markdown()
    assert "|  |" not in body, "each field needs a description"


DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _documented_commands() -> list[tuple[str, list[str]]]:
    """Every clusterdeck invocation inside the docs' ```sh blocks, as (doc, argv)."""
    import re
    import shlex

    found = []
    for doc in DOCS:
        in_block = False
        for line in doc.read_text().splitlines():
            if line.startswith("```"):
                in_block = line.strip() == "```sh"
                continue
            text = line.split(" #", 1)[0].strip()
            match = re.match(
                r"^(?:\w+=\S+\s+)*(?:\.venv/bin/)?clusterdeck\s+(.*?)(?:\s+\|\s.*)?$", text
            )
            if in_block and match:
                found.append((doc.name, shlex.split(match.group(1))))
    return found


def test_docs_show_the_main_verbs() -> None:
    verbs = {args[0] for _, args in _documented_commands()}
    assert {
        "create",
        "status",
        "delete",
        "cleanup",
        "exec",
        "ssh",
        "plan",
        "get",
        "events",
    } <= verbs


@pytest.mark.parametrize(
    ("doc", "args"), _documented_commands(), ids=lambda v: v if isinstance(v, str) else " ".join(v)
)
def test_documented_command_parses(doc: str, args: list[str]) -> None:
    import click
    from typer.main import get_command

    from clusterdeck.cli.main import app, register_commands

    register_commands()
    command: click.Command = get_command(app)
    while isinstance(command, click.Group):
        assert args, f"{doc}: incomplete command"
        command = command.commands[args.pop(0)]
    ctx = command.make_context(command.name or "", args, resilient_parsing=False)
    assert ctx is not None


def test_the_artifacts_script_default_is_the_project_default_and_the_readme_first() -> None:
    """One default version: the spec's, the artifact script's, and the README's first."""
    import re
    import subprocess

    from clusterdeck.spec.models import DEFAULT_KUBERNETES_VERSION

    root = ROOT
    versions = subprocess.run(
        ["bash", str(root / "scripts" / "kubernetes-artifacts.sh"), "--versions"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert versions == sorted(
        versions, key=lambda v: [int(x) for x in v[1:].split(".")], reverse=True
    )
    assert versions[0] == DEFAULT_KUBERNETES_VERSION
    first = re.search(r"v1\.\d+\.\d+", (root / "README.md").read_text())
    assert first is not None and first.group(0) == DEFAULT_KUBERNETES_VERSION
    refused = subprocess.run(
        ["bash", str(root / "scripts" / "kubernetes-artifacts.sh"), "v1.29.0"],
        capture_output=True,
        text=True,
    )
    assert refused.returncode != 0 and "cannot build Kubernetes v1.29.0" in refused.stderr
