"""The SSH layer: every connection to a node, command quoting and secret masking.

Other layers use :class:`Connections` (one pooled, retried, host-key-checked connection per
node), :class:`Command` / :class:`Script` (argv objects, quoted once, secrets masked) and the
errors in :mod:`clusterdeck.transport.errors`. Nothing here prints; retries are reported as
events.
"""

import importlib
from typing import TYPE_CHECKING, Any

from clusterdeck.transport.command import (
    MASK,
    Command,
    FileSource,
    Masker,
    Script,
    Secret,
    upload_command,
)
from clusterdeck.transport.hostkeys import (
    HostKey,
    HostKeyPolicy,
    KnownHostsOnly,
    MemoryHostKeys,
    PinnedHostKeys,
    known_hosts_line,
)

if TYPE_CHECKING:  # imported on first use: they load asyncssh, which costs start-up time
    from clusterdeck.transport.errors import (
        AuthFailed,
        CommandFailed,
        ConnectionDropped,
        DeadlineExceeded,
        HostKeyChanged,
        HostKeyUnknown,
        Unreachable,
    )
    from clusterdeck.transport.run import OutputSink, Result
    from clusterdeck.transport.ssh import Connection, Connections, ConnectOptions, Endpoint
    from clusterdeck.transport.ssm import PluginMissing, SsmRoute

_LAZY = {
    **dict.fromkeys(
        (
            "AuthFailed",
            "CommandFailed",
            "ConnectionDropped",
            "DeadlineExceeded",
            "HostKeyChanged",
            "HostKeyUnknown",
            "Unreachable",
        ),
        "clusterdeck.transport.errors",
    ),
    **dict.fromkeys(("OutputSink", "Result"), "clusterdeck.transport.run"),
    **dict.fromkeys(
        ("Connection", "Connections", "ConnectOptions", "Endpoint"), "clusterdeck.transport.ssh"
    ),
    **dict.fromkeys(("PluginMissing", "SsmRoute"), "clusterdeck.transport.ssm"),
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = [
    "MASK",
    "AuthFailed",
    "Command",
    "CommandFailed",
    "ConnectOptions",
    "Connection",
    "ConnectionDropped",
    "Connections",
    "DeadlineExceeded",
    "Endpoint",
    "FileSource",
    "HostKey",
    "HostKeyChanged",
    "HostKeyPolicy",
    "HostKeyUnknown",
    "KnownHostsOnly",
    "Masker",
    "MemoryHostKeys",
    "OutputSink",
    "PinnedHostKeys",
    "PluginMissing",
    "Result",
    "Script",
    "Secret",
    "SsmRoute",
    "Unreachable",
    "known_hosts_line",
    "upload_command",
]
