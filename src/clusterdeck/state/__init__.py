"""The state store: what clusterdeck knows it created, and what happened when.

:class:`StateStore` is the interface the rest of the library uses; :class:`SqliteStore` is the
embedded default, so a shared remote store can replace it later without touching callers.
"""

from clusterdeck.state.sqlite import SqliteStore
from clusterdeck.state.store import StateStore, default_state_path

__all__ = ["SqliteStore", "StateStore", "default_state_path"]
