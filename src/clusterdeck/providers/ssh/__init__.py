"""The ssh provider: existing machines reached over SSH (registration, facts, node access).

Found by :mod:`clusterdeck.providers.registry` through :func:`provider`.
"""

from __future__ import annotations

from clusterdeck.providers.base import InfraProvider
from clusterdeck.providers.ssh.provider import SshProvider


def provider() -> InfraProvider:
    return SshProvider()
