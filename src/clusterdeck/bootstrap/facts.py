"""Read what providers recorded about the machines into :class:`ClusterFacts`.

Providers write ``node/<name>`` records (private_ip, public_ip, ssh_host, ...) and the
environment's ``endpoint`` output (see ``providers/base.py``). This is the only place the
bootstrap layer looks at them, so the node pipeline and ``render`` know nothing else of the
provider.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Literal
from urllib.parse import urlsplit

from clusterdeck.bootstrap.nodeconfig import MachineFacts
from clusterdeck.bootstrap.render import ClusterFacts
from clusterdeck.bundle.manifest import Bundle, BundleSet
from clusterdeck.model.records import NODE_PREFIX, OVERLAY_PREFIX, ResourceRecord


def _text(value: Any) -> str | None:
    return str(value) if value not in (None, "") else None


def _cgroup(value: Any) -> Literal["v1", "v2"] | None:
    if value == "v1":
        return "v1"
    if value == "v2":
        return "v2"
    return None


def from_records(
    records: Iterable[ResourceRecord], outputs: Mapping[str, Any], endpoint_kind: str
) -> ClusterFacts:
    machines: dict[str, MachineFacts] = {}
    records = list(records)
    for rec in records:
        if not rec.key.startswith(NODE_PREFIX) or rec.deleted_at is not None:
            continue
        data = rec.data
        machines[rec.key[len(NODE_PREFIX) :]] = MachineFacts(
            private_ip=_text(data.get("private_ip")),
            public_ip=_text(data.get("public_ip")),
            public_name=_text(data.get("public_dns")),
            interface=_text(data.get("interface")),
            cgroup=_cgroup((data.get("facts") or {}).get("cgroup")),
            can_lower_oom_score=(data.get("facts") or {}).get("can_lower_oom_score"),
            conntrack_max_writable=(data.get("facts") or {}).get("conntrack_max_writable"),
            nvidia_gpus=(data.get("facts") or {}).get("nvidia_gpus"),
            arch=_text((data.get("facts") or {}).get("arch")),
        )
    for rec in records:
        name = rec.key[len(OVERLAY_PREFIX) :]
        if rec.key.startswith(OVERLAY_PREFIX) and rec.deleted_at is None and name in machines:
            machines[name] = machines[name].model_copy(
                update={
                    "overlay_address": _text(rec.data.get("address")),
                    "overlay_public_key": _text(rec.data.get("public_key")),
                    "pod_cidr": _text(rec.data.get("pod_cidr")),
                }
            )
    nlb_dns = internal = None
    endpoint = _text(outputs.get("endpoint"))
    if endpoint_kind == "nlb" and _text(outputs.get("internal_endpoint")):
        internal = urlsplit(str(outputs["internal_endpoint"])).hostname
    if endpoint_kind == "nlb" and endpoint:
        nlb_dns = urlsplit(endpoint).hostname
    return ClusterFacts(machines=machines, nlb_dns=nlb_dns, nlb_internal_dns=internal)


def with_offline(facts: ClusterFacts, bundles: BundleSet | Bundle | None) -> ClusterFacts:
    """The same facts plus the offline bundles' manifests (files, images and CNI), by
    architecture (one bundle: a set of one)."""
    if bundles is None:
        return facts
    if isinstance(bundles, Bundle):
        bundles = BundleSet({bundles.manifest.arch: bundles})
    facts.bundles = bundles.manifests
    return facts
