"""``clusterdeck pxe render``: the boot material of stateless nodes, for a PXE server.

Stateless nodes (``spec.ephemeral``) are not reached over SSH: what this writes is served by
Warewulf or any PXE setup, and each node's agent bootstraps it at boot (docs/stateless.md).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Annotated

import typer

from clusterdeck.cli.cmd_core import FileOpt, check_output_dir, load_checked
from clusterdeck.cli.context import state
from clusterdeck.errors import UsageError

pxe_app = typer.Typer(help="Boot material for stateless (PXE-booted) nodes.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(pxe_app, name="pxe")


@pxe_app.command(
    "render",
    help="Write the node overlay every node shares (the agent's systemd unit and config, the "
    "offline bundle, the hosts entry naming the VIP) under DIR/overlay, each node's own files "
    "under DIR/nodes/NAME, and DIR/nodes.json mapping addresses to nodes. Nothing runs; the "
    "environment is recorded, so get kubeconfig and status --live work once the nodes boot.",
    epilog="Example:  clusterdeck pxe render -f stateless-ha.yaml -d boot/",
)
def render(
    ctx: typer.Context,
    file: FileOpt,
    directory: Annotated[
        Path, typer.Option("--dir", "-d", help="Output directory.", file_okay=False)
    ],
) -> None:
    from clusterdeck import api
    from clusterdeck.api.stateless import record_rendered, refuse_another
    from clusterdeck.bootstrap import facts as bootstrap_facts
    from clusterdeck.bootstrap.render import ClusterFacts
    from clusterdeck.bundle.manifest import open_checked
    from clusterdeck.pipeline.pxe_tree import TREE_INDEX, render_boot_tree, write_tree

    app = state(ctx)
    env = load_checked(app, file)
    if env.spec.ephemeral is None or env.spec.offline is None or env.spec.offline.bundle is None:
        raise UsageError(
            f"{file}: pxe render is for stateless nodes: the file has no spec.ephemeral "
            "(for machines reached over SSH, use clusterdeck render)"
        )
    earlier = check_output_dir(directory, TREE_INDEX, "pxe render")
    refuse_another(env, app.store())
    bundle = open_checked(
        env.spec.offline.bundle, env.spec.kubernetes.version, env.spec.kubernetes.cni.value
    )
    topology, plan = api.plan(env)
    facts = bootstrap_facts.with_offline(ClusterFacts(), bundle)
    tree = render_boot_tree(env, topology, plan, facts)
    if earlier:  # its own earlier output: replaced whole
        shutil.rmtree(directory)
    count = write_tree(tree, directory, None if env.spec.ephemeral.bundle_url else bundle)
    record_rendered(env, topology, app.store())
    app.console.print(
        f"wrote {count} files for {len(tree.nodes)} stateless nodes to {directory} "
        f"(overlay/ for every node, nodes/NAME/ for each); once they have booted: "
        f"clusterdeck status {env.name} --live",
        highlight=False,
    )
