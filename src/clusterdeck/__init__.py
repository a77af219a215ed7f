"""clusterdeck: one declarative YAML file to a working Kubernetes cluster.

The package root only exposes the version; the library entry points live in
:mod:`clusterdeck.api` and the command line in :mod:`clusterdeck.cli`.
"""

from typing import Any

__all__ = ["__version__"]


def __getattr__(name: str) -> Any:
    """``__version__`` is read from the installed metadata on first use (importlib.metadata
    costs about 30 ms of start-up that ``validate`` and ``plan`` do not need)."""
    if name != "__version__":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("clusterdeck")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "0.0.0+unknown"
