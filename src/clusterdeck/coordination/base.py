"""The coordination interface: a lease per role, short-lived secrets, and node reports.

A lease is an atomic claim with an expiry: at most one holder per generation, and a holder
that stops renewing (it died in the middle of ``kubeadm init``) is replaced by the next
claimer once its lease has expired. Holders are machine identities, compared whole.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Lease:
    role: str  # what the holder leads, e.g. "init"
    holder: str  # the machine's identity (its machine-id), compared exactly
    generation: int  # one more each time the role changes hands
    expires_at: float  # seconds since the epoch


class Coordinator(Protocol):
    def claim(self, role: str, holder: str, ttl: float) -> Lease | None:
        """Take ``role`` if nobody holds it (or its lease expired); None when another does."""
        ...

    def renew(self, lease: Lease, ttl: float) -> Lease | None:
        """Extend a lease still held; None when it was lost (expired and taken over)."""
        ...

    def release(self, lease: Lease) -> None:
        """Give the role up now (the next claim need not wait for the expiry)."""
        ...

    def leader(self, role: str) -> Lease | None:
        """The live lease of ``role``, if any."""
        ...

    def publish(self, name: str, data: bytes, ttl: float) -> None:
        """Store a secret (join material) readable only by root, until ``ttl`` runs out."""
        ...

    def fetch(self, name: str) -> bytes | None:
        """A published secret, or None when it is missing or expired."""
        ...

    def put(self, name: str, data: bytes) -> None:
        """Store a record that does not expire (the cluster exists; a node's report)."""
        ...

    def get(self, name: str) -> bytes | None:
        """A stored record, or None."""
        ...
