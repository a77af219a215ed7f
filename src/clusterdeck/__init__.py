"""clusterdeck: one declarative YAML file to a working Kubernetes cluster.

The package root only exposes the version; the library entry points live in
:mod:`clusterdeck.api` and the command line in :mod:`clusterdeck.cli`.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("clusterdeck")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
