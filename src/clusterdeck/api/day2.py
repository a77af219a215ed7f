"""``apply``: observe a running environment, plan the day-2 changes, and carry out exactly them.

Why it exists: it is the facade's day-2 half. :func:`plan_apply` reads only (the store, and
unless --infra-only the cluster's Nodes) and returns the plan; :func:`apply` takes the lock,
plans again, runs the plan batch by batch only if it is the one shown, and records the new
file. A run stopped at any point (even by kill -9) is resumed by running apply again: the
next observation finds what is left.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from clusterdeck import pipeline
from clusterdeck.api.recorded import (
    APPLYING,
    INFRA_ONLY_STATUS,
    READY_STATUS,
    effective_spec,
    observed_from_store,
    recorded_names,
    settled_status,
)
from clusterdeck.errors import PermanentError, UsageError
from clusterdeck.events import EventSink, discard
from clusterdeck.model.day2 import ApplyPlan, ChangeKind, NodeChange, RunningNode
from clusterdeck.model.records import NODE_PREFIX
from clusterdeck.model.topology import Role
from clusterdeck.planner import build_plan, day2
from clusterdeck.planner.expand import NodeNames
from clusterdeck.providers import registry
from clusterdeck.providers.base import ApplyContext
from clusterdeck.spec.loader import from_recorded
from clusterdeck.spec.models import Environment
from clusterdeck.state import journal
from clusterdeck.state.store import StateStore, require_environment


def refuse_stateless(env: Environment, verb: str) -> None:
    """Stateless nodes (``spec.ephemeral``) bootstrap themselves at boot; ``create`` and
    ``apply`` push phases over SSH, which would be lost at the node's next reboot."""
    if env.spec.ephemeral is not None:
        raise UsageError(
            f"{env.name}: spec.ephemeral: its nodes are stateless and bootstrap themselves at "
            f"boot, so {verb} does not push to them over SSH: write their boot material with "
            "clusterdeck pxe render -f FILE -d DIR and serve it from your PXE server "
            "(docs/stateless.md)"
        )


def plan_apply(
    env: Environment,
    store: StateStore,
    *,
    infra_only: bool = False,
    allow_control_plane_shrink: bool = False,
    remove: tuple[str, ...] = (),
) -> tuple[Environment, ApplyPlan]:
    """Observe the running environment and diff it against the file: (the recorded spec, the
    plan). What runs is the store's node records and, unless ``infra_only``, the cluster's
    Nodes; ``remove`` names aws workers to take out instead of the newest. Reads only;
    changes nothing."""
    refuse_stateless(env, "apply")
    record = require_environment(store, env.name)
    wanted_status = INFRA_ONLY_STATUS if infra_only else READY_STATUS
    status = settled_status(record.status)
    if status != wanted_status:
        if status == INFRA_ONLY_STATUS:
            why = "it was created with --infra-only: change its machines with apply --infra-only"
        elif infra_only and status == READY_STATUS:
            why = "it runs Kubernetes: apply without --infra-only, so new machines join it"
        else:
            why = "run create first (a create that failed resumes when run again)"
        raise UsageError(f"environment {env.name!r} is {record.status}: {why}")
    before = from_recorded(record.spec)
    if infra_only:
        running = [
            RunningNode(
                name=r.key[len(NODE_PREFIX) :],
                role=str(r.data.get("role", "")),
                pool=str(r.data.get("pool", "")),
                provider=str(r.data.get("provider", "")),
                address=r.data.get("ssh_host"),
                present=True,
            )
            for r in store.resources(env.name)
            if r.key.startswith(NODE_PREFIX)
        ]
    else:
        running = pipeline.observe_running(before, store)
    running = _with_machines_gone(env.name, store, running)
    names = names_leaving(store, env, remove)
    planned = day2.diff(
        before, env, names, running, allow_control_plane_shrink=allow_control_plane_shrink
    )
    planned = replace(planned, resumes=_stopped_apply_note(store, env.name))
    drained = day2.drained_in_turn(planned)
    if drained and not infra_only and not planned.refused:
        blocking = pipeline.budgets_blocking(before, store, drained)
        if blocking:
            why = "; ".join(blocking)
            planned = replace(
                planned,
                refused=(
                    *planned.refused,
                    f"PodDisruptionBudget {why} allows no disruption now: a rolling "
                    "replacement or upgrade would stop at that node; relax it first",
                ),
            )
    return before, planned


def _with_machines_gone(
    environment: str, store: StateStore, running: list[RunningNode]
) -> list[RunningNode]:
    """Each provider asked which recorded machines are gone (by tag, one call per provider):
    such a node is not there, whatever the API server still lists, and joins again on a new
    machine."""
    records = [r for r in store.resources(environment) if r.key.startswith(NODE_PREFIX)]
    gone: set[str] = set()
    for name in sorted({str(r.data.get("provider", "")) for r in records} & set(registry.KNOWN)):
        mine = [r for r in records if r.data.get("provider") == name]
        gone |= {
            k[len(NODE_PREFIX) :]
            for k in registry.get(name).machines_gone(environment, store, mine)
        }
    return [replace(r, present=False, machine_gone=True) if r.name in gone else r for r in running]


def _stopped_apply_note(store: StateStore, environment: str) -> str | None:
    """What the last apply was doing when it stopped, if it never ended (killed)."""
    stopped = journal.stopped_apply(store, environment)
    if stopped is None:
        return None
    plan_event, steps = stopped
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(plan_event.started_at))
    doing = "; ".join(f"{s.step} {s.subject}" for s in steps) or "between steps"
    return f"the apply begun {when} did not finish (it stopped during: {doing})"


def names_leaving(store: StateStore, env: Environment, remove: tuple[str, ...]) -> NodeNames:
    """The recorded names, with the nodes ``--remove`` names marked as leaving. Only an aws
    worker can be named: an ssh node leaves when its host leaves the file, and a control
    plane when ``controlPlane`` shrinks."""
    names = recorded_names(store, env.name)
    records = {
        r.key[len(NODE_PREFIX) :]: r
        for r in store.resources(env.name)
        if r.key.startswith(NODE_PREFIX)
    }
    for name in remove:
        rec = records.get(name)
        if rec is None:
            known = ", ".join(sorted(records)) or "none"
            raise UsageError(f"--remove {name}: {env.name!r} has no such node (it has: {known})")
        if rec.data.get("role") != Role.WORKER.value:
            raise UsageError(
                f"--remove {name}: a control plane leaves when controlPlane shrinks "
                "(with --allow-control-plane-shrink)"
            )
        if name not in names.machines:
            raise UsageError(
                f"--remove {name}: an ssh node leaves when its host is taken out of its "
                "pool's hosts in the file"
            )
    return replace(names, leaving=frozenset(remove))


def refuse_unsupported(planned: ApplyPlan) -> None:
    if planned.refused:
        raise UsageError("apply cannot make these changes yet: " + "; ".join(planned.refused))


def apply(
    env: Environment,
    store: StateStore,
    planned: ApplyPlan,
    *,
    drain_timeout: float,
    force: bool,
    log: Callable[[str], None],
    events: EventSink = discard,
    infra_only: bool = False,
    snapshot_dir: Path | None = None,
    allow_control_plane_shrink: bool = False,
    remove: tuple[str, ...] = (),
) -> None:
    """Carry out exactly ``planned`` (from :func:`plan_apply`), batch by batch, then record the
    new file. A stopped run is resumed by running apply again: it observes what is left. An
    upgrade saves an etcd snapshot under ``snapshot_dir`` first."""
    refuse_unsupported(planned)
    if not infra_only:
        pipeline.require_hook_secrets(env)
    with store.lock(env.name, "apply"):
        before, again = plan_apply(
            env,
            store,
            infra_only=infra_only,
            allow_control_plane_shrink=allow_control_plane_shrink,
            remove=remove,
        )
        if again != planned:
            raise UsageError(f"{env.name!r} changed since the plan was shown: run apply again")
        status = INFRA_ONLY_STATUS if infra_only else READY_STATUS
        store.set_status(env.name, APPLYING[status])  # left as it is if the run is killed
        summary = "; ".join(f"{c.kind.value} {c.node}" for c in planned.changes)
        run = _Run(before, env, store, events, log, infra_only, remove)
        try:
            with journal.recorded_step(store, env.name, journal.APPLY_SUBJECT, "plan", summary):
                for kind, batch in planned.batches():
                    names = [c.node for c in batch]
                    with journal.recorded_step(
                        store, env.name, ", ".join(names), f"apply {kind.value}"
                    ):
                        if kind is ChangeKind.ADD:
                            run.join(names)
                        elif kind is ChangeKind.UPGRADE:
                            if snapshot_dir is None:
                                raise UsageError("an upgrade needs a directory for its snapshot")
                            _upgrade(
                                before,
                                env,
                                store,
                                names,
                                snapshot_dir=snapshot_dir,
                                drain_timeout=drain_timeout,
                                force=force,
                                log=log,
                            )
                        else:
                            run.remove(batch, drain_timeout=drain_timeout, force=force)
        finally:  # a provider marks its own work in progress; the environment stays usable
            store.set_status(env.name, status)
        dedicated = day2.dedicated_for(before, env)
        store.save_environment(env.name, env.spec.provider.value, effective_spec(env, dedicated))


@dataclass(frozen=True)
class _Run:
    """What every batch of one apply shares."""

    before: Environment
    env: Environment
    store: StateStore
    events: EventSink
    log: Callable[[str], None]
    infra_only: bool
    leaving: tuple[str, ...]

    def join(self, names: list[str], *, infra_only: bool | None = None) -> None:
        _join(
            self.before,
            self.env,
            self.store,
            names,
            events=self.events,
            log=self.log,
            infra_only=self.infra_only if infra_only is None else infra_only,
            remove=self.leaving,
        )

    def remove(self, batch: list[NodeChange], *, drain_timeout: float, force: bool) -> None:
        pipeline.remove_nodes(
            self.env,
            self.store,
            [c.node for c in batch],
            drain_timeout=drain_timeout,
            force=force,
            log=self.log,
            events=self.events,
            cluster=not self.infra_only,
        )
        if not self.infra_only and (
            self.env.spec.overlay is not None
            or any(c.role == Role.CONTROL_PLANE.value for c in batch)
        ):
            # the control planes that stay: load balancer backends and peers without the one
            # that left; on an overlay, every node's WireGuard peers without it; then the
            # cluster healthy again
            self.join([], infra_only=False)


def record_file(env: Environment, store: StateStore) -> bool:
    """When apply has nothing to do but the file differs from the one recorded (a changed key
    path; an upgrade whose every node already runs the new version), record it; True if so."""
    with store.lock(env.name, "apply"):
        journal.close_stopped(store, env.name, "stopped; a later apply found nothing left to do")
        record = require_environment(store, env.name)
        before = from_recorded(record.spec)
        wanted = effective_spec(env, day2.dedicated_for(before, env))
        if wanted == record.spec:
            return False
        store.save_environment(env.name, env.spec.provider.value, wanted)
        return True


def _join(
    before: Environment,
    env: Environment,
    store: StateStore,
    names: list[str],
    *,
    events: EventSink,
    log: Callable[[str], None],
    infra_only: bool,
    remove: tuple[str, ...] = (),
) -> None:
    """Have the providers make or register the new machines, then bring them into the cluster;
    the topology of this step is what the file wants of what is recorded by now. (The aws
    provider reconciles its whole side: every missing instance of the file is launched, one
    RunInstances per pool and zone, and new control planes go behind the load balancer.)"""
    recorded_now = names_leaving(store, env, remove)
    # the providers see what exists and what joins now, nothing more: a rolling wave
    # launches its own new machines, not those of the waves after it
    there = set(observed_from_store(store, env.name).nodes) | set(names)
    # (without the machines that leave: a provider lays out what the file wants; the aws one
    # keeps the control planes it still runs behind the load balancer until they leave)
    now = day2.join_step(before, env, recorded_now, there, with_leaving=False)
    joining = [now.node(n) for n in names]
    ctx_plan = build_plan(env, now, observed_from_store(store, env.name))
    for provider_name in sorted({n.provider for n in joining}, key=registry.KNOWN.index):
        mine = [n for n in joining if n.provider == provider_name]
        provider = registry.get(provider_name)
        infra = provider.apply(ApplyContext(env.name, ctx_plan, now, mine, store, events, env))
        if infra.failed:
            raise PermanentError(
                "could not make or reach: "
                + "; ".join(f"{n}: {why}" for n, why in infra.failed.items())
            )
    if infra_only:
        return
    step = day2.join_step(
        before, env, recorded_now, set(observed_from_store(store, env.name).nodes)
    )
    the_plan = build_plan(env, step, observed_from_store(store, env.name))
    result = pipeline.join_nodes(env, store, step, the_plan, names, events=events, log=log)
    if result.failed:
        raise PermanentError(
            "joining failed, nothing else was changed (run apply again to resume): "
            + "; ".join(f"{n}: {why}" for n, why in result.failed.items())
        )


def _upgrade(
    before: Environment,
    env: Environment,
    store: StateStore,
    names: list[str],
    *,
    snapshot_dir: Path,
    drain_timeout: float,
    force: bool,
    log: Callable[[str], None],
) -> None:
    record = require_environment(store, env.name)
    server = str(record.outputs.get("endpoint") or "")
    if not server:
        raise PermanentError(f"{env.name}: no API endpoint recorded; run create again first")
    topology = day2.desired_topology(before, env, recorded_names(store, env.name))
    the_plan = build_plan(env, topology, observed_from_store(store, env.name))
    pipeline.upgrade(
        env,
        store,
        topology,
        the_plan,
        names,
        server=server,
        snapshot_dir=snapshot_dir,
        from_version=before.spec.kubernetes.version,
        drain_timeout=drain_timeout,
        force=force,
        log=log,
    )
