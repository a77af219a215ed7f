"""Downloaded package signing keys are checked against pinned fingerprints before they are trusted.

The check is the rendered scripts' own ``check_key`` function, run by bash against real keys
made with gpg: the pinned key passes, any other key stops the phase with a clear line.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from clusterdeck.bootstrap.scripts import SIGNING_KEYS

pytestmark = pytest.mark.skipif(shutil.which("gpg") is None, reason="gpg not installed")


def _script(bundles, phase: str) -> str:
    for bundle in bundles.values():
        for files in bundle.files.values():
            for rel, artifact in files.items():
                if rel.endswith(f"-{phase}.sh"):
                    return artifact.content
    raise AssertionError(f"no {phase} script rendered")


def _make_key(home: Path, name: str) -> tuple[Path, str]:
    env = {**os.environ, "GNUPGHOME": str(home)}
    home.mkdir(mode=0o700)
    subprocess.run(
        ["gpg", "--batch", "--passphrase", "", "--quick-gen-key", name, "ed25519", "sign", "never"],
        env=env,
        check=True,
        capture_output=True,
    )
    listing = subprocess.run(
        ["gpg", "--batch", "--with-colons", "--list-keys", name],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    fingerprint = next(
        line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr:")
    )
    armored = home / "key.asc"
    armored.write_bytes(
        subprocess.run(
            ["gpg", "--batch", "--armor", "--export", name],
            env=env,
            check=True,
            capture_output=True,
        ).stdout
    )
    return armored, fingerprint


def _check(script: str, key: Path, pinned: str) -> subprocess.CompletedProcess[str]:
    function = re.search(r"^check_key\(\) \{\n.*?^\}\n", script, re.S | re.M)
    assert function, "check_key is defined in the rendered header"
    program = (
        'set -euo pipefail\nfail() { echo "error: $*" >&2; exit 1; }\n'
        + function.group(0)
        + 'check_key "$1" "$2" example.org\necho accepted\n'
    )
    return subprocess.run(
        ["bash", "-c", program, "check", str(key), pinned], capture_output=True, text=True
    )


@pytest.mark.parametrize(
    ("phase", "which"), [("kube-packages", "kubernetes"), ("nvidia-container-toolkit", "nvidia")]
)
def test_each_key_download_is_checked_before_it_is_trusted(bundles, phase, which) -> None:
    script = _script(bundles, phase)
    check = script.index(f"check_key \"$tmp\" '{SIGNING_KEYS[which]}'")
    assert check < script.index("--dearmor"), "the fingerprint is checked before the key is used"


def test_check_key_accepts_the_pinned_key_and_refuses_another(bundles, tmp_path) -> None:
    script = _script(bundles, "kube-packages")
    good, good_fpr = _make_key(tmp_path / "a", "pinned signer")
    evil, evil_fpr = _make_key(tmp_path / "b", "someone else")
    accepted = _check(script, good, good_fpr)
    assert accepted.returncode == 0 and accepted.stdout.strip() == "accepted", accepted.stderr
    refused = _check(script, evil, good_fpr)
    assert refused.returncode == 1
    assert f"has fingerprint {evil_fpr}, not the pinned {good_fpr}: refusing it" in refused.stderr
    garbage = tmp_path / "garbage.asc"
    garbage.write_text("<html>captive portal</html>")
    assert "fingerprint none" in _check(script, garbage, good_fpr).stderr
