"""The aws provider: observe, create (as a reconcile) and delete an environment's AWS side.

Why it exists: it is the :class:`~clusterdeck.providers.base.InfraProvider` the API calls. It
executes the plan it is given (``ApplyContext.plan``) in resource-family order: preflight
(read-only checks), network, security groups, instances, load balancer. Every step starts
from what exists by tag and by the store, so running create again after a crash at any
point creates only what is missing. The resource families live in their own modules; this
one only sequences them and writes the environment's outputs.
"""

from __future__ import annotations

import time
from typing import Any

from clusterdeck.errors import UsageError
from clusterdeck.events import Event, EventKind, EventSink
from clusterdeck.model.observed import Observed, ObservedNode
from clusterdeck.model.plan import Plan, SourceKind
from clusterdeck.model.records import NODE_PREFIX, ResourceRecord
from clusterdeck.model.topology import Role
from clusterdeck.providers.aws import (
    caller_ip,
    compute,
    delete,
    iam,
    loadbalancer,
    network,
    preflight,
    scale,
    security,
)
from clusterdeck.providers.aws.observe import Inventory, discover
from clusterdeck.providers.aws.run import PREFLIGHT, AwsRun
from clusterdeck.providers.aws.session import CALLS, AwsSession, connect
from clusterdeck.providers.base import ApplyContext, Capabilities, InfraResult
from clusterdeck.spec.models import Environment, Provider
from clusterdeck.state.store import StateStore


class AwsProvider:
    name = "aws"
    capabilities = Capabilities(creates_machines=True, load_balancer=True)

    def observe(self, ctx: ApplyContext) -> Observed:
        session = connect(_region(ctx.spec))
        inv = _discover(session, ctx.environment, ctx.plan)
        live = {i.id: i for i in inv.live_instances()}
        nodes: dict[str, ObservedNode] = {}
        for rec in ctx.store.resources(ctx.environment):
            if rec.key.startswith(NODE_PREFIX) and rec.provider_id in live:
                inst = live[rec.provider_id]
                name = rec.key[len(NODE_PREFIX) :]
                nodes[name] = ObservedNode(
                    name=name,
                    provider_id=inst.id,
                    instance_type=inst.instance_type,
                    state=inst.state,
                )
        return Observed(nodes=nodes, resources={f.key: f.id for f in inv.all()})

    def apply(self, ctx: ApplyContext) -> InfraResult:
        env, plan = ctx.spec, ctx.plan
        session = connect(_region(env))
        calls_before = CALLS.total()
        started = time.monotonic()
        ctx.events(
            Event(
                kind=EventKind.STARTED,
                subject=PREFLIGHT,
                group=PREFLIGHT,
                step="checking instance types, images and access",
            )
        )
        caller = caller_ip.caller_cidr() if _needs_caller(plan) else None
        prepared = preflight.prepare(session, env, plan, ctx.topology)
        inventory = _discover(session, ctx.environment, plan)
        run = AwsRun(ctx.environment, session, ctx.store, ctx.events, inventory)
        run.done(
            PREFLIGHT,
            started,
            f"{len(inventory.all())} resources and "
            f"{len(inventory.live_instances())} instances exist",
        )
        network.ensure(run, plan)
        security.ensure(run, plan, run.ids["vpc"], caller)
        iam.ensure(run, plan)
        launched = compute.ensure(run, plan, env, prepared)
        targets = plan.load_balancer.targets if plan.load_balancer else []
        cp_ids = [launched.instances[n].id for n in targets if n in launched.instances]
        cp_ids += _leaving_control_planes(ctx.store, ctx.environment, inventory, set(cp_ids))
        lbs = loadbalancer.ensure(run, plan, run.ids["vpc"], cp_ids)
        # the outputs, under whatever status create or apply has set
        record = ctx.store.environment(ctx.environment)
        status = record.status if record is not None else "creating"
        ctx.store.set_status(ctx.environment, status, **_outputs(run, plan, env, launched, lbs))
        run.emit(EventKind.INFO, "aws", "aws", f"{CALLS.total() - calls_before} API calls")
        mine = {n.name for n in ctx.nodes}
        return InfraResult(
            ready=sorted(n for n in launched.instances if n in mine), failed=dict(launched.failed)
        )

    def destroy(
        self,
        environment: str,
        store: StateStore,
        events: EventSink,
        resources: list[ResourceRecord],
    ) -> list[str]:
        region = _recorded_region(store, environment, resources)
        return cleanup(environment, region, store, events, resources)

    def machines_gone(
        self, environment: str, store: StateStore, records: list[ResourceRecord]
    ) -> list[str]:
        region = _recorded_region(store, environment, records)
        if region is None or not records:
            return []
        live = {i.id for i in discover(connect(region), environment).live_instances()}
        return [r.key for r in records if r.provider_id not in live]

    def release(
        self,
        environment: str,
        store: StateStore,
        events: EventSink,
        records: list[ResourceRecord],
    ) -> None:
        region = _recorded_region(store, environment, records)
        if region is None:
            raise UsageError(f"{environment}: no region recorded for its instances")
        scale.terminate_nodes(environment, region, store, events, records)


def find(environment: str, region: str | None) -> tuple[str, list[str]]:
    """(region, a line per resource tagged for ``environment``): what cleanup would delete."""
    session = connect(region)
    inventory = discover(session, environment, scan_load_balancers=True)
    return session.region, inventory.describe()


def recorded_region(store: StateStore, environment: str) -> str | None:
    """The region the store remembers for ``environment`` (None when it knows nothing)."""
    return _recorded_region(store, environment, store.resources(environment))


def cleanup(
    environment: str,
    region: str | None,
    store: StateStore,
    events: EventSink,
    resources: list[ResourceRecord] | None = None,
) -> list[str]:
    """Delete everything tagged for ``environment`` in ``region``; return what is left."""
    session = connect(region)
    inventory = discover(session, environment, scan_load_balancers=True)
    run = AwsRun(environment, session, store, events, inventory)
    return delete.delete_all(run, resources or [])


def _region(env: Environment) -> str:
    if env.spec.aws is None:
        raise UsageError(f"environment {env.name!r} has aws pools but no spec.aws section")
    return env.spec.aws.region


def _recorded_region(
    store: StateStore, environment: str, resources: list[ResourceRecord]
) -> str | None:
    for rec in resources:
        if rec.data.get("region"):
            return str(rec.data["region"])
    record = store.environment(environment)
    if record is not None:
        if record.outputs.get("region"):
            return str(record.outputs["region"])
        aws = record.spec.get("spec", {}).get("aws") or {}
        if aws.get("region"):
            return str(aws["region"])
    return None


def _needs_caller(plan: Plan) -> bool:
    return any(
        src.kind is SourceKind.CALLER
        for g in plan.security_groups
        for r in g.rules
        for src in r.sources
    )


def _discover(session: AwsSession, environment: str, plan: Plan) -> Inventory:
    lb = plan.load_balancer
    if lb is None or lb.kind != "nlb":
        return discover(session, environment)
    return discover(
        session,
        environment,
        lb_names=[n for n in (lb.name, lb.internal_name) if n],
        tg_names=[n for n in (lb.target_group, lb.internal_target_group) if n],
    )


def _outputs(
    run: AwsRun,
    plan: Plan,
    env: Environment,
    launched: compute.Launched,
    lbs: loadbalancer.Endpoints | None,
) -> dict[str, Any]:
    outputs: dict[str, Any] = {"region": run.region}
    bastion = run.ids.get("bastion-address")
    if bastion:
        outputs["bastion"] = bastion
    if lbs:
        outputs["endpoint"] = f"https://{lbs.public}:{loadbalancer.PORT}"
        outputs["internal_endpoint"] = f"https://{lbs.internal}:{loadbalancer.PORT}"
    elif plan.endpoint.kind == "control-plane":
        first = next((n for n in plan.nodes if n.role == "control-plane"), None)
        inst = launched.instances.get(first.name) if first else None
        if inst is not None:
            host = inst.public_ip or inst.private_ip
            outputs["endpoint"] = f"https://{host}:{plan.endpoint.port}"
    return outputs


def _leaving_control_planes(
    store: StateStore, environment: str, inventory: Inventory, registered: set[str]
) -> list[str]:
    """Recorded control planes the file no longer has but that still run (the old members of
    a replacement): they stay targets until apply removes them, so the API keeps answering
    while their replacements join. A removed one's record goes with its instance."""
    live = {i.id for i in inventory.live_instances()}
    return sorted(
        str(r.provider_id)
        for r in store.resources(environment)
        if r.key.startswith(NODE_PREFIX)
        and r.data.get("role") == Role.CONTROL_PLANE.value
        and r.data.get("provider") == Provider.AWS.value
        and r.provider_id in live
        and r.provider_id not in registered
    )
