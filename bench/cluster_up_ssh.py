"""cluster_up.py over real SSH: the node pipeline against 3+50 light lab hosts.

Where ``bench/cluster_up.py`` measures the schedule and the executor alone, this runs the real
``clusterdeck.pipeline.bootstrap`` (executor, SQLite events, asyncssh connection pool, bundle
upload as one tar per node, every phase script sent on stdin and run by bash, the join file
written 0600 on each joining node) against real sshd on light lab hosts (network namespaces,
see ../LAB.md). Only what a phase *does* is replaced: each phase script becomes ``sleep`` of
that phase's realistic duration times --scale, and the four cluster-wide steps that need a
Kubernetes API (join material, kubeconfig, Ready check) sleep on the first control plane over
SSH instead. The hosts are registered first with ``api.create --infra-only`` (host keys pinned,
facts read), timed separately.

The reference is the same as cluster_up.py's: the longest single-node path through the same
graph with the same durations, i.e. an orchestrator with zero overhead and unlimited
parallelism. Here the difference includes SSH round trips, uploads and bash start-up.
Run as root on the lab machine:

    .venv/bin/python -m bench.cluster_up_ssh [--workers 50] [--scale 0.05]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.cluster_up import DURATIONS, critical_path  # noqa: E402
from tests.lab.light import Lab  # noqa: E402

from clusterdeck import api  # noqa: E402
from clusterdeck.bootstrap.kubeadm_build import JoinMaterial  # noqa: E402
from clusterdeck.bootstrap.nodeconfig import BUNDLE_ON_NODE  # noqa: E402
from clusterdeck.bootstrap.render import Artifact, Bundle  # noqa: E402
from clusterdeck.pipeline import actions, graph  # noqa: E402
from clusterdeck.pipeline import run as pipeline_run  # noqa: E402
from clusterdeck.spec import load_file  # noqa: E402
from clusterdeck.state import SqliteStore  # noqa: E402
from clusterdeck.transport import Command, Connections, Endpoint  # noqa: E402

BUNDLE_PARENT = str(Path(BUNDLE_ON_NODE).parent)
SPEC = """\
apiVersion: clusterdeck.dev/v1alpha1
kind: Environment
metadata: {{name: benchssh}}
spec:
  provider: ssh
  auth: {{privateKey: {key}, username: root}}
  cluster:
    controlPlane:
      hosts: [{cps}]
    workers:
      hosts: [{workers}]
    highAvailability: {{enabled: true, loadBalancer: keepalived, vip: {vip}}}
"""
ADMIN_CONF = """\
apiVersion: v1
kind: Config
clusters: [{name: bench, cluster: {server: "https://127.0.0.1:6443"}}]
users: [{name: admin, user: {token: bench}}]
contexts: [{name: bench, context: {cluster: bench, user: admin}}]
current-context: bench
"""


def sleeping_bundle(render: Callable[..., Bundle], scale: float) -> Callable[..., Bundle]:
    """The real renderer, with each phase script's body replaced by its scaled duration."""

    def rendered(*args: Any, **kwargs: Any) -> Bundle:
        bundle = render(*args, **kwargs)
        for node, cfg in bundle.configs.items():
            for entry in cfg.phases:
                seconds = DURATIONS[entry.name] * scale
                bundle.files[node][entry.script] = Artifact(
                    f"#!/bin/bash\nset -euo pipefail\nsleep {seconds:.3f}\n", 0o755
                )
        return bundle

    return rendered


def remote_sleep(step: str, scale: float) -> Callable[[Connections, Endpoint], Any]:
    async def run(conns: Connections, endpoint: Endpoint) -> None:
        seconds = DURATIONS[step] * scale
        await conns.run(endpoint, Command(["sleep", f"{seconds:.3f}"], name=step), timeout=120)

    return run


def install_doubles(scale: float) -> None:
    """The steps that need a Kubernetes API take their time on the control plane instead."""
    join_sleep = remote_sleep("join-material", scale)
    kubeconfig_sleep = remote_sleep("kubeconfig", scale)
    ready_sleep = remote_sleep("ready", scale)

    async def fetch_join_material(conns: Connections, endpoint: Endpoint, **_: Any) -> JoinMaterial:
        await join_sleep(conns, endpoint)
        return JoinMaterial("abcdef.0123456789abcdef", "sha256:" + "0" * 64, "1" * 64)

    async def read_admin_conf(conns: Connections, endpoint: Endpoint) -> str:
        await kubeconfig_sleep(conns, endpoint)
        return ADMIN_CONF

    async def wait_ready(
        conns: Connections, endpoint: Endpoint, expected: list[str], *_: Any, **__: Any
    ) -> list[str]:
        await ready_sleep(conns, endpoint)
        return expected

    actions.fetch_join_material = fetch_join_material  # type: ignore[assignment]
    actions.read_admin_conf = read_admin_conf  # type: ignore[assignment]
    actions.wait_ready = wait_ready  # type: ignore[assignment]
    pipeline_run.render_environment = sleeping_bundle(  # type: ignore[assignment]
        pipeline_run.render_environment, scale
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=50)
    parser.add_argument(
        "--scale", type=float, default=0.05, help="fraction of each phase's realistic duration"
    )
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="cluster-up-ssh-"))
    lab = Lab.create()
    try:
        # light hosts share the machine's filesystem: each gets its own bundle directory
        Path(BUNDLE_PARENT).mkdir(parents=True, exist_ok=True)
        hosts = lab.add_hosts(3 + args.workers, private_dirs=(BUNDLE_PARENT,))
        spec = tmp / "bench.yaml"
        spec.write_text(
            SPEC.format(
                key=lab.client_key,
                cps=", ".join(f"{{address: {h.address}}}" for h in hosts[:3]),
                workers=", ".join(f"{{address: {h.address}}}" for h in hosts[3:]),
                vip=lab.network.broadcast_address - 1,
            )
        )
        env = load_file(spec)
        store = SqliteStore(tmp / "state.db")
        started = time.monotonic()
        registered = api.create(env, store, infra_only=True)
        registration = time.monotonic() - started
        if registered.failed:
            print(f"registration failed: {registered.failed}", file=sys.stderr)
            return 1
        install_doubles(args.scale)
        topology, plan = api.plan(env, store)
        bundle = pipeline_run.render_environment(env, topology, plan)
        specs = graph.build(bundle.configs)
        cost = {s.id: DURATIONS[s.phase or s.kind] * args.scale for s in specs}
        started = time.monotonic()
        result = pipeline_run.bootstrap(env, store, topology, plan)
        wall = time.monotonic() - started
        if result.failed:
            print(f"bootstrap failed: {result.failed}", file=sys.stderr)
            return 1
    finally:
        lab.down()
    ideal = critical_path(specs, cost)
    per_phase: dict[str, list[float]] = defaultdict(list)
    for event in store.events(env.name):
        if event.ended_at is not None and event.step in DURATIONS:
            per_phase[event.step].append(event.ended_at - event.started_at)
    print(
        f"nodes: {len(bundle.configs)} (3 control planes + {args.workers} workers) over SSH, "
        f"steps: {len(specs)}, durations scaled by {args.scale}"
    )
    print(f"registration (--infra-only: banner, handshake, pin, facts): {registration:.2f} s")
    print(f"{'phase':30} {'runs':>5} {'mean s':>8} {'max s':>8} {'sleeps s':>9}")
    for phase, values in sorted(per_phase.items(), key=lambda kv: -max(kv[1])):
        print(
            f"{phase:30} {len(values):5d} {sum(values) / len(values):8.3f} {max(values):8.3f} "
            f"{DURATIONS[phase] * args.scale:9.3f}"
        )
    overhead = (wall - ideal) / ideal * 100
    print(f"longest single-node path (ideal): {ideal:.2f} s")
    print(f"wall time for all nodes:          {wall:.2f} s ({overhead:+.1f} %)")
    print(f"target within 10 %: {'met' if overhead <= 10 else 'MISSED'}")
    return 0 if overhead <= 10 else 1


if __name__ == "__main__":
    sys.exit(main())
