"""The boot tree ``pxe render`` writes: the overlay every node shares and each node's own files.

See :mod:`clusterdeck.bootstrap.pxe` for what each file is. A control plane's files hold its
node bundle twice, as the node that runs ``kubeadm init`` and as one that joins, since the
election at boot decides which; this is planned here, with the topology in which that node
is the first control plane.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from clusterdeck.bootstrap.nodeconfig import OFFLINE_ON_NODE
from clusterdeck.bootstrap.pxe import (
    AGENT_CONFIG,
    AGENT_UNIT,
    HOSTS_ENTRY,
    IDENTITY,
    INIT,
    JOIN,
    VARIANTS,
    BootTree,
    NodeIdentity,
    agent_config,
    agent_unit,
    index,
)
from clusterdeck.bootstrap.render import (
    Artifact,
    ClusterFacts,
    node_config,
    node_files,
    write_artifact,
)
from clusterdeck.bundle.manifest import MANIFEST, Bundle, FileKind
from clusterdeck.model.plan import Plan
from clusterdeck.model.topology import Role, Topology
from clusterdeck.planner import build_plan
from clusterdeck.planner.expand import as_initializer
from clusterdeck.spec.models import Environment

TREE_INDEX = "nodes.json"  # address -> node directory: what a PXE server maps per node


def render_boot_tree(
    env: Environment, topology: Topology, plan: Plan, facts: ClusterFacts
) -> BootTree:
    tree = BootTree()
    config = agent_config(env, topology, plan)
    tree.overlay[f"etc/systemd/system/{AGENT_UNIT}"] = Artifact(agent_unit())
    tree.links[f"etc/systemd/system/multi-user.target.wants/{AGENT_UNIT}"] = f"../{AGENT_UNIT}"
    tree.overlay[AGENT_CONFIG.lstrip("/")] = Artifact(config.model_dump_json(indent=2) + "\n")
    # every node's name, and the VIP's: kubeadm resolves the node's own name in its preflight,
    # and an offline node without the entry waits for DNS to time out (10 s per init or join)
    names = [f"{n.host.address} {n.name}" for n in topology.nodes if n.host is not None]
    vip = env.spec.cluster.high_availability.vip
    if vip and config.api_name:
        names.insert(0, f"{vip} {config.api_name}")
    tree.overlay[HOSTS_ENTRY.lstrip("/")] = Artifact("".join(f"{line}\n" for line in names))
    for node in topology.nodes:
        if node.host is None:
            raise ValueError(f"{node.name} has no address")
        files: dict[str, Artifact] = {}
        variants = {JOIN: (topology, plan)}
        if node.role is Role.CONTROL_PLANE:
            first = as_initializer(topology, node.name)
            variants = {INIT: (first, build_plan(env, first)), JOIN: variants[JOIN]}
            if node.first_control_plane:  # the file's first control plane joins as the others
                joiner = as_initializer(topology, "")
                variants[JOIN] = (joiner, build_plan(env, joiner))
        for variant, (topo, the_plan) in variants.items():
            cfg = node_config(env, topo, the_plan, topo.node(node.name), facts)
            for rel, artifact in node_files(env, topo, cfg, facts).items():
                files[f"{VARIANTS.lstrip('/')}/{variant}/{rel}"] = artifact
        identity = NodeIdentity(
            name=node.name, role=node.role, address=node.host.address, variants=list(variants)
        )
        files[IDENTITY.lstrip("/")] = Artifact(identity.model_dump_json(indent=2) + "\n")
        tree.nodes[node.name] = files
        tree.identities[node.name] = identity
    return tree


def _bundle_into(bundle: Bundle, target: Path) -> int:
    """The offline bundle's files under ``target`` (hard links when the file system allows,
    else copies), with its manifest; the number of files."""
    target.mkdir(parents=True, exist_ok=True, mode=0o700)
    for item in bundle.manifest.files:
        dest = target / item.path
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.unlink(missing_ok=True)
        mode = 0o755 if item.kind in (FileKind.BINARY, FileKind.CNI_PLUGIN) else 0o644
        source = bundle.path / item.path
        if not bundle.is_archive:
            try:
                os.link(source, dest)
                continue
            except OSError:
                pass
        with bundle.open(item.path) as src, dest.open("wb") as out:
            shutil.copyfileobj(src, out, 1 << 20)
        dest.chmod(mode)
    (target / MANIFEST).write_text(bundle.manifest.model_dump_json(by_alias=True, indent=2))
    return len(bundle.manifest.files)


def write_tree(tree: BootTree, directory: Path, bundle: Bundle | None) -> int:
    """Write ``tree`` (and, without a bundle URL, the bundle into the overlay) under
    ``directory``; the number of files written."""
    count = 0
    for rel, artifact in sorted(tree.overlay.items()):
        write_artifact(directory / "overlay" / rel, artifact)
        count += 1
    for rel, target in tree.links.items():
        link = directory / "overlay" / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        link.unlink(missing_ok=True)
        link.symlink_to(target)
        count += 1
    for node, files in tree.nodes.items():
        for rel, artifact in sorted(files.items()):
            write_artifact(directory / "nodes" / node / rel, artifact)
            count += 1
    if bundle is not None:
        count += _bundle_into(bundle, directory / "overlay" / OFFLINE_ON_NODE.lstrip("/"))
    (directory / TREE_INDEX).write_text(index(tree))
    return count + 1
