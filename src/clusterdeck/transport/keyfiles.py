"""The SSH private keys a run will log in with, checked before anything is created.

``validate`` and ``plan`` never read a key (they must work on a machine without it); ``create``
does, first: a missing, unreadable, public or group/world-readable key file stops the run with
one line naming the field, before any machine, record or upload exists. OpenSSH refuses
keys readable by others ("UNPROTECTED PRIVATE KEY FILE"); clusterdeck holds its own key files
to the same rule. The key's content is never parsed here beyond its armour line, and never
logged.
"""

from __future__ import annotations

import stat
from collections.abc import Iterable
from pathlib import Path

from clusterdeck.errors import UsageError

PRIVATE_MARKERS = (b"PRIVATE KEY-----", b"PuTTY-User-Key-File")


def check_key_file(field: str, path: str) -> None:
    """Raise UsageError naming ``field`` when ``path`` is not a usable private key file."""
    where = Path(path).expanduser()
    shown = f"{field}: {path}"
    try:
        info = where.stat()
    except FileNotFoundError:
        raise UsageError(f"{shown} does not exist") from None
    except OSError as exc:
        raise UsageError(f"{shown} cannot be read ({exc.strerror})") from None
    if not stat.S_ISREG(info.st_mode):
        raise UsageError(f"{shown} is not a file")
    if info.st_mode & 0o077:
        raise UsageError(
            f"{shown} is readable by others (mode {stat.S_IMODE(info.st_mode):04o}); "
            f"ssh refuses such keys: chmod 600 {path}"
        )
    try:
        with where.open("rb") as fh:
            head = fh.read(4096)
    except OSError as exc:
        raise UsageError(f"{shown} cannot be read ({exc.strerror})") from None
    if head.startswith((b"ssh-", b"ecdsa-", b"sk-")):
        raise UsageError(f"{shown} is a public key; give the private key (without .pub)")
    if not any(marker in head for marker in PRIVATE_MARKERS):
        raise UsageError(f"{shown} is not an SSH private key")


def check_key_files(keys: Iterable[tuple[str, str | None]]) -> None:
    """Check every (field, path) pair that names a key; ``None`` paths (ssh-agent) are skipped."""
    seen: set[Path] = set()
    for field, path in keys:
        if path and Path(path).expanduser() not in seen:
            seen.add(Path(path).expanduser())
            check_key_file(field, path)
