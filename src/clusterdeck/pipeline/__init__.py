"""The node pipeline: every node's bootstrap phases run over SSH through the DAG executor.

It sits between the api facade and the layers it combines (bootstrap renders, transport
reaches nodes, engine schedules). It knows nothing of providers beyond the ``node/<name>``
records they write: an address and how to log in.
"""

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported on first use (the transport, and so asyncssh, comes with them)
    from clusterdeck.pipeline.run import (
        BootstrapResult,
        bootstrap,
        fetch_kubeconfig,
        live_status,
        remove_workers,
    )


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(importlib.import_module("clusterdeck.pipeline.run"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["BootstrapResult", "bootstrap", "fetch_kubeconfig", "live_status", "remove_workers"]
