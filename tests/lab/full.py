"""Full lab hosts: systemd-nspawn machines booted on lab namespaces (filled in below)."""

from __future__ import annotations

from collections.abc import Sequence


def stop_machines_in(namespaces: Sequence[str]) -> None:
    """Nothing yet."""
