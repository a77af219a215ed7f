"""Run the node pipeline for an environment, fetch its kubeconfig, ask it for live status.

``bootstrap`` renders every node's bundle from the spec and the recorded machines, turns
the graph of :mod:`clusterdeck.pipeline.graph` into executor steps and runs them; events
and their timings go to the store (``clusterdeck events``). A re-run does the same and
finds every phase already done, so a create that was stopped midway resumes.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any

from clusterdeck.bootstrap import facts as bootstrap_facts
from clusterdeck.bootstrap.kubeadm_build import JoinMaterial, ca_cert_hash, new_join_material
from clusterdeck.bootstrap.render import Bundle, ClusterFacts, render_environment
from clusterdeck.bundle.manifest import BundleSet as OfflineBundle
from clusterdeck.bundle.manifest import open_for
from clusterdeck.engine import Executor, RunReport, Step, StepContext
from clusterdeck.errors import PermanentError, TransientError
from clusterdeck.events import EventSink, discard
from clusterdeck.model.phases import Phase
from clusterdeck.model.plan import Plan
from clusterdeck.model.topology import Role, Topology
from clusterdeck.pipeline import actions, graph, offline, overlay, stateless_status
from clusterdeck.pipeline import kubeconfig as kc
from clusterdeck.pipeline.targets import Target, targets
from clusterdeck.providers.ssh.access import host_key_policy
from clusterdeck.spec.models import Environment
from clusterdeck.state.store import StateStore
from clusterdeck.transport import Command, Connections, Endpoint

PHASE_DEADLINE = 1800.0
READY_TIMEOUT = 600.0
HOOK_MARGIN = 60.0


def hook_secrets(names: list[str]) -> dict[str, str]:
    """The values of a hook's secretEnv, from clusterdeck's own environment (checked before
    the run starts: ``hook_check.require_hook_secrets``)."""
    return {name: os.environ[name] for name in names if name in os.environ}


@dataclass
class BootstrapResult:
    report: RunReport
    failed: dict[str, str] = field(default_factory=dict)
    kubeconfig: dict[str, Any] | None = None  # for the user: server = public endpoint
    server: str = ""


def public_server(env: Environment, topology: Topology, facts: ClusterFacts, plan: Plan) -> str:
    kind = plan.endpoint.kind
    if kind == "nlb" and facts.nlb_dns:
        return f"https://{facts.nlb_dns}:6443"
    if kind == "vip":
        return plan.endpoint.url()
    first = topology.control_planes()[0]
    machine = facts.machines.get(first.name)
    host = (
        (machine.public_ip if machine else None)
        or (first.host.address if first.host else None)
        or (machine.private_ip if machine else None)
    )
    if host is None:
        raise PermanentError(f"no address recorded for {first.name}")
    return f"https://{host}:6443"


def _facts(store: StateStore, env: Environment, plan: Plan) -> ClusterFacts:
    record = store.environment(env.name)
    outputs = record.outputs if record else {}
    return bootstrap_facts.from_records(store.resources(env.name), outputs, plan.endpoint.kind)


def rendered(
    env: Environment, store: StateStore, topology: Topology, plan: Plan
) -> tuple[Bundle, dict[str, Target], OfflineBundle | None]:
    """Every node's bundle for ``env`` (its offline bundle opened and checked), and where each
    node is: what a day-2 step that runs phases needs."""
    offline_bundle = None
    if env.spec.offline is not None:
        offline_bundle = open_for(
            env.spec.offline, env.spec.kubernetes.version, env.spec.kubernetes.cni.value
        )
    facts = bootstrap_facts.with_offline(_facts(store, env, plan), offline_bundle)
    return (
        render_environment(env, topology, plan, facts),
        _targets(store, env, topology),
        offline_bundle,
    )


def _targets(store: StateStore, env: Environment, topology: Topology) -> dict[str, Target]:
    record = store.environment(env.name)
    return targets(env, topology, store.resources(env.name), record.outputs if record else {})


@dataclass(frozen=True)
class OverlayContext:
    """What the overlay's cluster-wide steps need beyond the bundle."""

    env: Environment
    store: StateStore
    topology: Topology
    facts: ClusterFacts


def _steps(
    specs: list[graph.StepSpec],
    bundle: Bundle,
    tgt: dict[str, Target],
    conns: Connections,
    ready_timeout: float,
    offline_bundle: OfflineBundle | None,
    expected: list[str],
    mesh_ctx: OverlayContext | None = None,
) -> list[Step]:
    configs = bundle.configs
    ha = sum(1 for c in configs.values() if c.role is Role.CONTROL_PLANE) > 1
    steps: list[Step] = []

    def bind(spec: graph.StepSpec) -> Callable[[StepContext], Awaitable[Any]]:
        async def run(ctx: StepContext) -> Any:
            endpoint = tgt[spec.runs_on].endpoint
            if spec.kind == "upload":
                await actions.upload_bundle(conns, endpoint, bundle.files[spec.node], ctx.write)
                return None
            if spec.kind == "offline":
                settings = configs[spec.node].offline
                if offline_bundle is None or settings is None:
                    raise PermanentError(f"{spec.node}: no offline bundle to send")
                return await offline.upload_offline(
                    conns, endpoint, offline_bundle.for_arch(settings.arch), settings, ctx.write
                )
            if spec.kind == "join-material":
                init = graph.step_id(spec.node, Phase.KUBEADM_INIT.value)
                given = ctx.need(init) if init in spec.needs else None  # None: init ran before
                if isinstance(given, JoinMaterial):  # init just ran with our token
                    ca = await actions.read_file(conns, endpoint, actions.CA_CERT)
                    ctx.write("join material: the token init was given, the CA hash from its CA")
                    return replace(given, ca_cert_hash=ca_cert_hash(ca.encode()))
                return await _join_material(conns, endpoint, ctx, ha)
            if spec.kind == "kubeconfig":
                return await actions.read_admin_conf(conns, endpoint)
            if spec.kind in ("overlay-sync", "overlay-routes"):
                assert mesh_ctx is not None and mesh_ctx.facts.mesh is not None
                if spec.kind == "overlay-sync":
                    await overlay.sync(conns, mesh_ctx.env, mesh_ctx.facts.mesh, tgt, ctx.write)
                else:
                    await overlay.route_pods(
                        conns,
                        mesh_ctx.env,
                        mesh_ctx.store,
                        mesh_ctx.topology,
                        mesh_ctx.facts.machines,
                        tgt,
                        spec.runs_on,
                        ctx.write,
                    )
                return None
            if spec.kind == "ready":
                return await actions.wait_ready(
                    conns, endpoint, expected, ctx.write, timeout=ready_timeout
                )
            cfg = configs[spec.node]
            script = bundle.files[spec.node][
                next(p.script for p in cfg.phases if p.name == spec.phase)
            ].content
            secrets: list[str] = []
            chosen: JoinMaterial | None = None
            if spec.phase == Phase.KUBEADM_INIT.value and not await actions.has_joined(
                conns, endpoint, control_plane=True
            ):
                chosen = new_join_material(certificate_key=ha)
                secrets = chosen.secrets()
                await actions.upload_init_config(
                    conns,
                    endpoint,
                    bundle.files[spec.node]["files/kubeadm-init.yaml"].content,
                    chosen,
                    ctx.write,
                )
            if spec.phase in graph.JOIN_PHASES:
                material: JoinMaterial | None = ctx.need(graph.JOIN_MATERIAL)
                if material is not None:  # None: every node had joined; the phase checks
                    secrets = material.secrets()
                    await actions.upload_join_config(conns, endpoint, cfg, material, ctx.write)
            hook = cfg.hook(spec.phase)
            await actions.run_phase(
                conns,
                endpoint,
                spec.node,
                spec.phase,
                script,
                ctx.write,
                # a hook has its own timeout (the script stops it); this is the backstop
                timeout=hook.timeout_seconds + HOOK_MARGIN if hook else PHASE_DEADLINE,
                secrets=secrets,
                secret_env=hook_secrets(hook.secret_env) if hook else None,
            )
            return chosen

        return run

    async def _join_material(
        conns: Connections, endpoint: Endpoint, ctx: StepContext, ha: bool
    ) -> JoinMaterial | None:
        """Fetched once, and only when a node still has to join: a re-run of a complete
        cluster creates no bootstrap token and uploads no certificates."""
        joiners = [
            c for c in configs.values() if any(p.name in graph.JOIN_PHASES for p in c.phases)
        ]
        joined = await asyncio.gather(
            *(
                actions.has_joined(
                    conns, tgt[c.name].endpoint, control_plane=c.role is Role.CONTROL_PLANE
                )
                for c in joiners
            )
        )
        if all(joined):
            ctx.write(f"all {len(joiners)} joining nodes have joined: no join material needed")
            return None
        return await actions.fetch_join_material(conns, endpoint, certificate_key=ha, log=ctx.write)

    for spec in specs:
        steps.append(
            Step(
                id=spec.id,
                run=bind(spec),
                subject=spec.subject,
                needs=spec.needs,
                name=spec.phase or spec.kind,
                retries=2,
            )
        )
    return steps


def bootstrap(
    env: Environment,
    store: StateStore,
    topology: Topology,
    plan: Plan,
    *,
    events: EventSink = discard,
    ready_timeout: float = READY_TIMEOUT,
    concurrency: int = 100,
    offline_bundle: OfflineBundle | None = None,
    only: set[str] | None = None,
) -> BootstrapResult:
    """Bring every node of the environment into the cluster (idempotent; re-run resumes).

    With ``spec.offline`` the bundle is opened and checked here unless the caller did.
    ``only`` (day-2) limits the phases to those nodes and the control planes, whose phases
    find their work done except where the cluster grew (load balancer backends, a new
    member's join). When ``only`` names workers alone, the control planes' own steps are left
    out (nothing of theirs changes); the Ready wait still covers every node."""
    if offline_bundle is None and env.spec.offline is not None:
        offline_bundle = open_for(
            env.spec.offline, env.spec.kubernetes.version, env.spec.kubernetes.cni.value
        )
    tgt = _targets(store, env, topology)
    expected = [n.name for n in topology.nodes]
    rendered: list[tuple[list[graph.StepSpec], ClusterFacts]] = []

    def render() -> tuple[Bundle, list[graph.StepSpec], ClusterFacts]:
        facts = bootstrap_facts.with_offline(_facts(store, env, plan), offline_bundle)
        bundle = render_environment(env, topology, plan, facts)
        if only is not None:
            keep = {
                name: cfg
                for name, cfg in bundle.configs.items()
                if name in only or cfg.role is Role.CONTROL_PLANE
            }
            bundle = replace(bundle, configs=keep)
        specs = graph.build(bundle.configs)
        if only and all(bundle.configs[n].role is Role.WORKER for n in only if n in bundle.configs):
            cps = {n for n, cfg in bundle.configs.items() if cfg.role is Role.CONTROL_PLANE}
            specs = graph.without_nodes(specs, cps)
        return bundle, specs, facts

    async def go() -> RunReport:
        async with Connections(host_keys=host_key_policy(env, store, env.name), events=events) as c:
            if env.spec.overlay is not None:  # every node's key first: the peers follow from them
                await overlay.register(c, env, store, topology, tgt, lambda _line: None)
            bundle, specs, facts = render()
            rendered.append((specs, facts))
            mesh_ctx = OverlayContext(env, store, topology, facts) if env.spec.overlay else None
            steps = _steps(specs, bundle, tgt, c, ready_timeout, offline_bundle, expected, mesh_ctx)
            executor = Executor(
                concurrency=concurrency, events=events, store=store, environment=env.name
            )
            return await executor.run(steps)

    report = asyncio.run(go())
    result = BootstrapResult(report)
    specs, facts = rendered[0]
    by_id = {s.id: s for s in specs}
    for step_id, exc in report.failed.items():
        spec = by_id[step_id]
        result.failed.setdefault(spec.subject, f"{spec.phase or spec.kind}: {exc}")
    admin = report.results.get(graph.KUBECONFIG)
    if isinstance(admin, str) and admin:
        result.server = public_server(env, topology, facts, plan)
        result.kubeconfig = kc.for_user(admin, env.name, result.server)
    return result


def fetch_kubeconfig(
    env: Environment, store: StateStore, topology: Topology, plan: Plan
) -> dict[str, Any]:
    """The admin kubeconfig from the first reachable control plane, server = public endpoint."""
    facts = _facts(store, env, plan)
    tgt = _targets(store, env, topology)

    async def go() -> str:
        errors = []
        async with Connections(host_keys=host_key_policy(env, store, env.name)) as conns:
            for cp in topology.control_planes():
                try:
                    return await actions.read_admin_conf(conns, tgt[cp.name].endpoint)
                except (TransientError, PermanentError) as exc:
                    errors.append(f"{cp.name}: {exc}")
        raise PermanentError("no control plane gave its admin.conf: " + "; ".join(errors))

    return kc.for_user(asyncio.run(go()), env.name, public_server(env, topology, facts, plan))


def live_status(env: Environment, store: StateStore, topology: Topology) -> dict[str, Any]:
    """API health and every node's state, from the first control plane that answers; for
    stateless nodes also their own reports, which answer when the API does not."""
    tgt = _targets(store, env, topology)

    async def go() -> dict[str, Any]:
        tried = []
        async with Connections(host_keys=host_key_policy(env, store, env.name)) as conns:
            for cp in topology.control_planes():
                endpoint = tgt[cp.name].endpoint
                try:
                    health = await conns.run(
                        endpoint,
                        Command([*actions.KUBECTL, "get", "--raw=/readyz"], root=True),
                        timeout=20,
                        check=False,
                    )
                    data = await actions.nodes_json(conns, endpoint, timeout=20)
                except (TransientError, PermanentError, ValueError) as exc:
                    tried.append({"control_plane": cp.name, "error": str(exc)})
                    continue
                return {
                    "environment": env.name,
                    "asked": cp.name,
                    "api": {
                        "healthy": health.exit_status == 0,
                        "detail": health.stdout.strip() or health.stderr.strip(),
                    },
                    "nodes": _node_rows(data, [n.name for n in topology.nodes]),
                    "unreachable": tried,
                }
        raise PermanentError(
            "no control plane answered: "
            + "; ".join(f"{t['control_plane']}: {t['error']}" for t in tried)
        )

    try:
        view = asyncio.run(go())
    except PermanentError as exc:
        if env.spec.ephemeral is None:
            raise
        # a stateless cluster without an API (quorum lost) still has its nodes' own reports
        view = {
            "environment": env.name,
            "asked": None,
            "api": {"healthy": False, "detail": str(exc)},
            "nodes": [],
            "unreachable": [],
        }
    if env.spec.ephemeral is not None:
        try:
            view["stateless"] = stateless_status.node_reports(env, store, topology, tgt)
        except PermanentError as exc:
            view["stateless"] = {"read_from": None, "nodes": [], "error": str(exc)}
    return view


def _node_rows(data: dict[str, Any], expected: list[str]) -> list[dict[str, Any]]:
    rows = []
    seen = set()
    for item in data.get("items", []):
        meta, status = item.get("metadata", {}), item.get("status", {})
        name = meta.get("name", "")
        seen.add(name)
        ready = any(
            c.get("type") == "Ready" and c.get("status") == "True"
            for c in status.get("conditions", [])
        )
        roles = sorted(
            k.split("/", 1)[1]
            for k in meta.get("labels", {})
            if k.startswith("node-role.kubernetes.io/")
        )
        taints = [
            f"{t['key']}{'=' + t['value'] if t.get('value') else ''}:{t['effect']}"
            for t in item.get("spec", {}).get("taints", []) or []
        ]
        rows.append(
            {
                "name": name,
                "ready": ready,
                "roles": roles,
                "taints": taints,
                "version": status.get("nodeInfo", {}).get("kubeletVersion", ""),
            }
        )
    rows += [
        {"name": n, "ready": False, "roles": [], "taints": [], "version": "", "missing": True}
        for n in expected
        if n not in seen
    ]
    return rows
