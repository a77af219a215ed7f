"""Coordination through a directory every node mounts (NFS in the reference design).

Atomicity comes from ``link(2)``, which fails when the target exists, on local filesystems and
on NFS alike (where ``O_EXCL`` has not always been safe). A lease is a file
``leases/<role>/<generation>``: its content (holder and expiry) is written to a private
temporary file first and linked into place complete, so a reader never sees half of it.

- Claim: read the highest generation. If it is live and not released, the role is taken.
  Otherwise link generation + 1: exactly one of any number of claimers succeeds.
- Renew: rewrite one's own generation's file (rename is atomic), then look again: a higher
  generation means the lease expired and was taken over, and the old holder must stop.
- Release: mark the file released; the next claim may take the role at once.

Secrets are files of mode 0600 in a 0700 directory, written the same way, with their expiry;
an expired one is never returned, and is removed when found. Clocks: expiries are wall-clock
times, so the nodes' clocks must agree to well within a lease's length (NTP, as kubeadm's
certificates already require).
"""

from __future__ import annotations

import json
import os
import secrets
import time
from collections.abc import Callable
from pathlib import Path

from clusterdeck.coordination.base import Lease

Clock = Callable[[], float]


RECORDS = "records"  # under the environment's directory: one file per record, named as it


class SharedDirectory:
    def __init__(self, root: Path, clock: Clock = time.time) -> None:
        self.root = Path(root)
        self.clock = clock

    # leases ---------------------------------------------------------------------------------
    def claim(self, role: str, holder: str, ttl: float) -> Lease | None:
        current = self._newest(role)
        if current is not None and self._live(current):
            return None
        generation = current[0] + 1 if current is not None else 1
        lease = Lease(role, holder, generation, self.clock() + ttl)
        try:
            self._write_new(self._lease_dir(role) / f"{generation:012d}", _lease_json(lease))
        except FileExistsError:
            return None  # another claimer linked this generation first
        return lease

    def renew(self, lease: Lease, ttl: float) -> Lease | None:
        if not self._still_mine(lease):
            return None
        renewed = Lease(lease.role, lease.holder, lease.generation, self.clock() + ttl)
        self._replace(
            self._lease_dir(lease.role) / f"{lease.generation:012d}", _lease_json(renewed)
        )
        return renewed if self._still_mine(renewed) else None

    def release(self, lease: Lease) -> None:
        if self._still_mine(lease):
            data = {**json.loads(_lease_json(lease)), "released": True}
            path = self._lease_dir(lease.role) / f"{lease.generation:012d}"
            self._replace(path, json.dumps(data).encode())

    def leader(self, role: str) -> Lease | None:
        current = self._newest(role)
        if current is None or not self._live(current):
            return None
        generation, data = current
        return Lease(role, str(data["holder"]), generation, float(str(data["expires_at"])))

    # secrets --------------------------------------------------------------------------------
    def publish(self, name: str, data: bytes, ttl: float) -> None:
        _check_name(name)
        record = {"expires_at": self.clock() + ttl, "data": data.hex()}
        self._replace(self._secret_dir() / name, json.dumps(record).encode())

    def fetch(self, name: str) -> bytes | None:
        _check_name(name)
        path = self._secret_dir() / name
        try:
            record = json.loads(path.read_bytes())
        except FileNotFoundError:
            return None
        if float(record["expires_at"]) <= self.clock():
            path.unlink(missing_ok=True)
            return None
        return bytes.fromhex(str(record["data"]))

    # records --------------------------------------------------------------------------------
    def put(self, name: str, data: bytes) -> None:
        _check_name(name)
        self._replace(self._record_dir() / name, data)

    def get(self, name: str) -> bytes | None:
        _check_name(name)
        try:
            return (self._record_dir() / name).read_bytes()
        except FileNotFoundError:
            return None

    # internals ------------------------------------------------------------------------------
    def _record_dir(self) -> Path:
        path = self.root / RECORDS
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        return path

    def _lease_dir(self, role: str) -> Path:
        _check_name(role)
        path = self.root / "leases" / role
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        return path

    def _secret_dir(self) -> Path:
        path = self.root / "secrets"
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        path.chmod(0o700)
        return path

    def _newest(self, role: str) -> tuple[int, dict[str, object]] | None:
        generations = sorted(
            (int(p.name) for p in self._lease_dir(role).iterdir() if p.name.isdigit()),
            reverse=True,
        )
        for generation in generations:
            try:
                raw = (self._lease_dir(role) / f"{generation:012d}").read_bytes()
            except FileNotFoundError:
                continue
            return generation, json.loads(raw)
        return None

    def _live(self, current: tuple[int, dict[str, object]]) -> bool:
        _, data = current
        return not data.get("released") and float(str(data["expires_at"])) > self.clock()

    def _still_mine(self, lease: Lease) -> bool:
        current = self._newest(lease.role)
        return (
            current is not None
            and current[0] == lease.generation
            and current[1].get("holder") == lease.holder
            and not current[1].get("released")
        )

    def _temporary(self, directory: Path, data: bytes) -> Path:
        tmp = directory / f".tmp-{os.getpid()}-{secrets.token_hex(8)}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        return tmp

    def _write_new(self, path: Path, data: bytes) -> None:
        """Make ``path`` with ``data``, complete, or raise FileExistsError."""
        tmp = self._temporary(path.parent, data)
        try:
            os.link(tmp, path)
        finally:
            tmp.unlink()

    def _replace(self, path: Path, data: bytes) -> None:
        self._temporary(path.parent, data).replace(path)


def _lease_json(lease: Lease) -> bytes:
    return json.dumps({"holder": lease.holder, "expires_at": lease.expires_at}).encode()


def _check_name(name: str) -> None:
    if not name or "/" in name or name.startswith(".") or "\0" in name:
        raise ValueError(f"{name!r} cannot name a lease or a secret")
