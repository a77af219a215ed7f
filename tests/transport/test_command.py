"""Commands are quoted once and secrets never show: checked by running the wire form in sh."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clusterdeck.transport import MASK, Command, Masker, Script, Secret, upload_command


def sh(
    line: str, stdin: bytes = b"", env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[bytes]:
    """Run a wire line the way sshd does: ``$SHELL -c LINE``."""
    return subprocess.run(
        ["sh", "-c", line], input=stdin, capture_output=True, env=env, timeout=10, check=False
    )


def test_argv_is_quoted_once_and_reaches_the_program_intact() -> None:
    argv = ["printf", "%s|", "a b", "$HOME", "it's", "; rm -rf /", "*", ""]
    wire = Command(argv).wire()
    assert wire.line == "printf '%s|' 'a b' '$HOME' 'it'\"'\"'s' '; rm -rf /' '*' ''"
    assert sh(wire.line).stdout == b"a b|$HOME|it's|; rm -rf /|*||"


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.text(
            st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"), max_size=20
        ),
        max_size=6,
    )
)
def test_any_argument_survives_the_trip(args: list[str]) -> None:
    wire = Command(["printf", "%s\\0", *args]).wire()
    out = sh(wire.line).stdout
    expected = b"".join(a.encode() + b"\0" for a in args) if args else b"\0"
    assert out == expected


def test_secret_arguments_are_masked_when_shown_but_real_on_the_wire() -> None:
    cmd = Command(["echo", "--token", Secret("s3cr3t-t0ken")], name="login")
    assert "s3cr3t" not in cmd.masked()
    assert cmd.masked() == f"echo --token '{MASK}'"
    assert str(Secret("x")) == MASK and "x" not in repr(Secret("x"))
    wire = cmd.wire()
    assert "s3cr3t" not in wire.shown
    assert sh(wire.line).stdout == b"--token s3cr3t-t0ken\n"
    assert wire.secrets == ("s3cr3t-t0ken",)


def test_secret_environment_values_travel_on_stdin_not_the_command_line() -> None:
    cmd = Command(
        ["sh", "-c", 'printf "%s/%s/" "$TOKEN" "$PLAIN"; cat'],
        env={"TOKEN": Secret("hunter2 with spaces"), "PLAIN": "visible"},
        stdin=b"payload after the secrets",
    )
    wire = cmd.wire()
    assert "hunter2" not in wire.line
    assert "hunter2" not in wire.shown
    assert "PLAIN=visible" in wire.shown and f"TOKEN={MASK}" in wire.shown
    result = sh(wire.line, wire.stdin)
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"hunter2 with spaces/visible/payload after the secrets"


def test_environment_names_and_multiline_secrets_are_refused() -> None:
    with pytest.raises(ValueError, match="not a valid identifier"):
        Command(["true"], env={"BAD-NAME": "x"})
    with pytest.raises(ValueError, match="single line"):
        Command(["true"], env={"KEY": Secret("a\nb")})
    with pytest.raises(ValueError, match="program name"):
        Command([])


def test_scripts_are_sent_as_files_never_on_the_command_line(tmp_path: Path) -> None:
    text = 'set -eu\nprintf \'%s,\' "$@" "$SECRET" "$MODE"\necho "$0" > "$OUT"\nexit 3\n'
    script = Script(
        text,
        args=["a b", Secret("argsecret")],
        env={"SECRET": Secret("envsecret"), "MODE": "fast", "OUT": str(tmp_path / "where")},
        name="probe",
    )
    wire = script.wire()
    assert "printf" not in wire.line and "envsecret" not in wire.line
    assert "argsecret" not in wire.shown and "envsecret" not in wire.shown
    assert "<probe>" in wire.shown
    result = sh(wire.line, wire.stdin, env={**os.environ, "TMPDIR": str(tmp_path)})
    assert result.returncode == 3
    assert result.stdout == b"a b,argsecret,envsecret,fast,"
    ran_from = Path((tmp_path / "where").read_text().strip())
    assert ran_from.parent == tmp_path and ran_from.name.startswith("clusterdeck.")
    assert not ran_from.exists(), "the script file is removed after it ran"


@pytest.mark.parametrize("mode", [0o640, 0o600, 0o644, 0o755, 0o4750])
def test_upload_writes_atomically_with_the_mode(tmp_path: Path, mode: int) -> None:
    target = tmp_path / "dir" / "file.conf"
    target.parent.mkdir()
    target.write_text("old content")
    data = bytes(range(256)) * 10
    wire = upload_command(str(target), data, mode).wire()
    assert data[:20].hex() not in wire.line
    result = sh(wire.line, wire.stdin)
    assert result.returncode == 0, result.stderr
    assert target.read_bytes() == data
    assert stat.S_IMODE(target.stat().st_mode) == mode
    assert [p.name for p in target.parent.iterdir()] == ["file.conf"]


def test_a_taken_script_file_name_is_not_followed(tmp_path: Path) -> None:
    """Someone else's file (or symlink) where the script would go: use another name."""
    victim = tmp_path / "victim"
    victim.write_text("precious")
    wire = Script("echo ran\n").wire()
    # The wrapper names its file after the shell's PID; occupy every plausible name.
    for pid in range(os.getpid(), os.getpid() + 400):
        (tmp_path / f"clusterdeck.{pid}").symlink_to(victim)
    result = sh(wire.line, wire.stdin, env={**os.environ, "TMPDIR": str(tmp_path)})
    assert result.returncode == 0 and result.stdout == b"ran\n"
    assert victim.read_text() == "precious"


def test_masker_hides_overlapping_secrets_longest_first() -> None:
    mask = Masker(["abc", "abcdef", ""])
    assert mask("x abcdef y abc") == f"x {MASK} y {MASK}"
    assert not Masker([])
