"""How much the orchestration adds to a cluster bring-up: 3 control planes + 50 workers.

Builds the real bootstrap graph (clusterdeck.pipeline.graph) for an HA ssh environment of
3+50 nodes from the real renderer, runs it through the real DAG executor with a real SQLite
store recording every event, and replaces what each step does on a node with a double that
sleeps a realistic duration for that phase (scaled by --scale, so the run is short). No SSH
is involved: this measures the schedule (what waits for what) and the executor's overhead,
not the network.

The reference is the longest single-node path: the critical path through the same graph
with the same durations (what an ideal orchestrator, with unlimited parallelism and zero
overhead, would take). Target: wall time within 10 % of it.

    .venv/bin/python bench/cluster_up.py [--workers 50] [--scale 0.02]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from clusterdeck import api
from clusterdeck.bootstrap.render import render_environment
from clusterdeck.engine import Executor, Step, StepContext
from clusterdeck.pipeline import graph
from clusterdeck.spec import load_file
from clusterdeck.state import SqliteStore

# seconds a phase typically takes on a fresh Ubuntu VM (measured order of magnitude)
DURATIONS = {
    "upload": 1.0,
    "os-prep": 3.0,
    "containerd": 25.0,
    "kube-packages": 35.0,
    "api-load-balancer": 12.0,
    "kubeadm-init": 60.0,
    "cni": 8.0,
    "kubeadm-join-control-plane": 45.0,
    "kubeadm-join-worker": 20.0,
    "labels-and-taints": 2.0,
    "join-material": 2.0,
    "kubeconfig": 0.5,
    "ready": 30.0,
}

SPEC = """
apiVersion: clusterdeck.dev/v1alpha1
kind: Environment
metadata: {{name: bench}}
spec:
  provider: ssh
  auth: {{username: root}}
  cluster:
    controlPlane:
      hosts: [{{address: 10.88.0.1}}, {{address: 10.88.0.2}}, {{address: 10.88.0.3}}]
    workers:
      hosts: [{hosts}]
    highAvailability: {{enabled: true, loadBalancer: keepalived, vip: 10.88.1.1}}
"""


def critical_path(specs: list[graph.StepSpec], cost: dict[str, float]) -> float:
    by_id = {s.id: s for s in specs}
    memo: dict[str, float] = {}

    def finish(step_id: str) -> float:
        if step_id not in memo:
            spec = by_id[step_id]
            memo[step_id] = max((finish(n) for n in spec.needs), default=0.0) + cost[step_id]
        return memo[step_id]

    return max(finish(s.id) for s in specs)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=50)
    parser.add_argument(
        "--scale",
        type=float,
        default=0.02,
        help="fraction of the realistic duration each double sleeps",
    )
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="cluster-up-"))
    hosts = ", ".join(f"{{address: 10.88.2.{i + 1}}}" for i in range(args.workers))
    (tmp / "bench.yaml").write_text(SPEC.format(hosts=hosts))
    env = load_file(tmp / "bench.yaml")
    topology, plan = api.plan(env)
    bundle = render_environment(env, topology, plan)
    specs = graph.build(bundle.configs)
    cost = {s.id: DURATIONS[s.phase or s.kind] * args.scale for s in specs}
    store = SqliteStore(tmp / "state.db")
    store.save_environment(env.name, "ssh", {})

    def double(seconds: float):  # a phase's double: it only takes its time
        async def run(_: StepContext) -> None:
            await asyncio.sleep(seconds)

        return run

    steps = [
        Step(
            id=s.id,
            run=double(cost[s.id]),
            subject=s.subject,
            needs=s.needs,
            name=s.phase or s.kind,
        )
        for s in specs
    ]
    executor = Executor(store=store, environment=env.name, log_root=tmp / "logs")
    started = time.monotonic()
    report = executor.run_sync(steps)
    wall = time.monotonic() - started
    if not report.ok:
        print(f"run failed: {report.failed or report.skipped}", file=sys.stderr)
        return 1
    ideal = critical_path(specs, cost)
    per_phase: dict[str, list[float]] = defaultdict(list)
    for event in store.events(env.name):
        if event.ended_at is not None:
            per_phase[event.step].append(event.ended_at - event.started_at)
    print(
        f"nodes: {len(bundle.configs)} (3 control planes + {args.workers} workers), "
        f"steps: {len(steps)}, durations scaled by {args.scale}"
    )
    print(f"{'phase':30} {'runs':>5} {'mean s':>8} {'max s':>8}")
    for phase, values in sorted(per_phase.items(), key=lambda kv: -max(kv[1])):
        print(f"{phase:30} {len(values):5d} {sum(values) / len(values):8.3f} {max(values):8.3f}")
    overhead = (wall - ideal) / ideal * 100
    print(f"longest single-node path (ideal): {ideal:.2f} s")
    print(f"wall time for all nodes:          {wall:.2f} s ({overhead:+.1f} %)")
    print(f"target within 10 %: {'met' if overhead <= 10 else 'MISSED'}")
    return 0 if overhead <= 10 else 1


if __name__ == "__main__":
    sys.exit(main())
