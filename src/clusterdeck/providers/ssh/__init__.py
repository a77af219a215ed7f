"""The ssh provider: existing machines reached over SSH (registration, facts, node access).

Found by :mod:`clusterdeck.providers.registry` through :func:`provider`. The implementation
is imported only when asked for, so that using one module of this package (``facts``,
``access``) stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from clusterdeck.providers.base import InfraProvider


def provider() -> InfraProvider:
    from clusterdeck.providers.ssh.hostprovider import SshProvider

    return SshProvider()
