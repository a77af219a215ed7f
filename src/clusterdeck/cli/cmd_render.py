"""``clusterdeck render``: every node's scripts and config files, written for review.

Nothing runs and nothing is created: the files are what ``create`` would upload to each
node. When the environment already exists in the store, the recorded addresses are used;
otherwise values known only after create are placeholders ending in ``.pending.invalid``.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Annotated

import typer

from clusterdeck import api
from clusterdeck.cli.cmd_core import FileOpt, check_output_dir, existing_store, load_checked
from clusterdeck.cli.context import state


def register(app: typer.Typer) -> None:
    app.command(
        help="Write every node's bootstrap bundle (node.json, phase scripts, kubeadm, "
        "containerd, CNI, load-balancer and cloud-init files) to a directory for review. "
        "Runs nothing, creates nothing.",
        epilog="Example:  clusterdeck render -f cluster.yaml -d out/ && ls out/*/phases",
    )(render)


def render(
    ctx: typer.Context,
    file: FileOpt,
    directory: Annotated[
        Path, typer.Option("--dir", "-d", help="Output directory.", file_okay=False)
    ],
) -> None:
    from clusterdeck.bootstrap import facts as bootstrap_facts  # jinja2 and the templates
    from clusterdeck.bootstrap.render import ClusterFacts, render_environment, write_bundle

    app = state(ctx)
    env = load_checked(app, file)
    store = existing_store(app)
    recorded = store.environment(env.name) if store else None
    topology, the_plan = api.plan(env, store)
    facts = ClusterFacts()
    if store is not None and recorded is not None:
        facts = bootstrap_facts.from_records(
            store.resources(env.name), recorded.outputs, the_plan.endpoint.kind
        )
    # a directory render wrote before (its bundle.json) is replaced; anything else is not
    earlier = check_output_dir(directory, "bundle.json", "render")
    if env.spec.offline is not None:  # its CNI manifest and images are part of the review
        from clusterdeck.bundle.manifest import open_for

        offline = open_for(
            env.spec.offline,
            env.spec.kubernetes.version,
            env.spec.kubernetes.cni.value,
            verify=False,
        )
        facts = bootstrap_facts.with_offline(facts, offline)
    bundle = render_environment(env, topology, the_plan, facts)
    if earlier:  # render's own earlier output: replaced whole
        shutil.rmtree(directory)
    written = write_bundle(bundle, directory)
    app.console.print(
        f"wrote {len(written)} files for {len(bundle.configs)} nodes to {directory}",
        highlight=False,
    )
    for node, items in bundle.pending().items():
        app.err.print(
            f"[yellow]note[/]: {node}: known after create: {'; '.join(items)}", highlight=False
        )
