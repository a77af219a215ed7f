"""Find the provider implementation for a pool's ``provider`` value, importing it lazily.

Lazy so that a plan or an ssh-only run never imports boto3, and an aws-only run never
imports asyncssh.
"""

from __future__ import annotations

import importlib

from clusterdeck.errors import UsageError
from clusterdeck.providers.base import InfraProvider

KNOWN = ("aws", "ssh")  # also the order they run in: aws machines, then ssh hosts


def get(name: str) -> InfraProvider:
    if name not in KNOWN:
        raise UsageError(f"unknown provider {name!r}; known: {', '.join(KNOWN)}")
    module = importlib.import_module(f"clusterdeck.providers.{name}")
    factory = getattr(module, "provider", None)
    if factory is None:
        raise UsageError(f"the {name} provider is not available in this build")
    provider: InfraProvider = factory()
    return provider
