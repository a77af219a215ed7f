"""A node's CPU architecture, in the names Kubernetes and Go use (``amd64``, ``arm64``).

One decision for every layer that needs it (the plan, the offline bundle a node gets, the
image it boots): an aws node's comes from its instance family (the table in
:mod:`clusterdeck.spec.aws_catalog`, confirmed by AWS at create), an ssh host's from what it
reports (``uname -m`` in its facts). No I/O.
"""

from __future__ import annotations

from clusterdeck.spec import aws_catalog

ARCHITECTURES = ("amd64", "arm64")
# uname -m -> Kubernetes' name
REPORTED = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}


def of_node(provider: str, instance_type: str | None, reported: str | None = None) -> str | None:
    """The node's architecture; None for an ssh host whose facts are not known yet."""
    if provider == "aws":
        return aws_catalog.architecture(instance_type or "")
    if reported in (None, "", "unknown"):  # facts not gathered, or uname failed
        return None
    return REPORTED.get(reported, reported)  # another architecture stays itself: no bundle
