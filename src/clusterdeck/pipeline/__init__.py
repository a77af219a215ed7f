"""The node pipeline: every node's bootstrap phases run over SSH through the DAG executor.

It sits between the api facade and the layers it combines (bootstrap renders, transport
reaches nodes, engine schedules). It knows nothing of providers beyond the ``node/<name>``
records they write: an address and how to log in.
"""

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported on first use (the transport, and so asyncssh, comes with them)
    from clusterdeck.pipeline.day2 import (
        budgets_blocking,
        join_nodes,
        observe_running,
        remove_nodes,
    )
    from clusterdeck.pipeline.hook_check import require_hook_secrets
    from clusterdeck.pipeline.run import (
        BootstrapResult,
        bootstrap,
        fetch_kubeconfig,
        live_status,
    )
    from clusterdeck.pipeline.upgrade import upgrade

_HOME = {
    "BootstrapResult": "run",
    "bootstrap": "run",
    "fetch_kubeconfig": "run",
    "live_status": "run",
    "budgets_blocking": "day2",
    "join_nodes": "day2",
    "observe_running": "day2",
    "remove_nodes": "day2",
    "upgrade": "upgrade",
    "require_hook_secrets": "hook_check",
}


def __getattr__(name: str) -> Any:
    if name in _HOME:
        return getattr(importlib.import_module(f"clusterdeck.pipeline.{_HOME[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "BootstrapResult",
    "bootstrap",
    "budgets_blocking",
    "fetch_kubeconfig",
    "join_nodes",
    "live_status",
    "observe_running",
    "remove_nodes",
    "require_hook_secrets",
    "upgrade",
]
