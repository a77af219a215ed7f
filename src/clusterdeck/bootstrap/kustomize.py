"""Upstream release manifests, pinned, and the kustomizations that adapt them.

clusterdeck keeps no copy of a project's manifest (a CNI, NVIDIA's device plugin). It records
where the release publishes it and the sha256 of the file at that tag; the node downloads it
(or takes the offline bundle's) and applies it only when the digest matches. What clusterdeck
changes is rendered as a kustomization beside the other reviewable files: the release file as
a resource, clusterdeck's own objects, and strategic-merge patches. ``kubectl kustomize``
(built into kubectl) joins them on the node.
"""

from __future__ import annotations

import io

from ruamel.yaml import YAML
from ruamel.yaml.scalarstring import LiteralScalarString

UPSTREAM_FILE = "upstream.yaml"  # the name a kustomization gives the release manifest


def dump(doc: object) -> str:
    yaml = YAML()
    yaml.default_flow_style = False
    out = io.StringIO()
    yaml.dump(doc, out)
    return out.getvalue()


def literal(text: str) -> LiteralScalarString:
    """A multi-line string kept as a YAML block (readable in the rendered file)."""
    block: LiteralScalarString = LiteralScalarString(text)
    return block


def kustomization(patches: list[dict[str, object]], extra: list[str] | None = None) -> str:
    """The kustomization.yaml: the release file (and ``extra`` files beside it), then patches."""
    doc = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": [UPSTREAM_FILE, *(extra or [])],
        "patches": [{"patch": literal(dump(p))} for p in patches],
    }
    return dump(doc)


def daemonset_patch(name: str, namespace: str, pod_spec: dict[str, object]) -> dict[str, object]:
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"template": {"spec": pod_spec}},
    }
