"""A small facade over the flow (load, plan, create, delete, status) for scripts and the CLI.

Each function is the one flow cut short: load -> expand -> observe -> plan -> execute. It
holds the environment lock for anything that changes the world, and records the spec in
the store. No printing here: progress goes out as events, results come back as data.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from clusterdeck import pipeline
from clusterdeck.bundle.manifest import Bundle as OfflineBundle
from clusterdeck.bundle.manifest import open_checked
from clusterdeck.errors import PermanentError, UsageError
from clusterdeck.events import EventSink, discard
from clusterdeck.model.day2 import ApplyPlan, ChangeKind, RunningNode
from clusterdeck.model.observed import Observed, ObservedNode
from clusterdeck.model.plan import ActionKind, Plan
from clusterdeck.model.records import NODE_PREFIX, EnvironmentRecord, ResourceRecord
from clusterdeck.model.topology import Role, Topology
from clusterdeck.planner import build_plan, day2, expand
from clusterdeck.planner.expand import HostIdentity
from clusterdeck.providers import registry
from clusterdeck.providers.base import ApplyContext, InfraResult
from clusterdeck.spec import ValidationReport, check_file, load_file
from clusterdeck.spec.loader import from_recorded
from clusterdeck.spec.models import Environment, Provider
from clusterdeck.state.store import StateStore, require_environment
from clusterdeck.transport.keyfiles import check_key_files

PROVIDER_ORDER = ("aws", "ssh")


def validate(path: str | Path) -> ValidationReport:
    return check_file(path)


def load(path: str | Path) -> Environment:
    return load_file(path)


def plan(
    env: Environment, store: StateStore | None = None, *, dedicated: bool | None = None
) -> tuple[Topology, Plan]:
    """The plan for ``env``; with a store, what it already records counts as existing."""
    names = recorded_names(store, env.name) if store is not None else None
    topology = expand(env, dedicated=dedicated, names=names)
    observed = observed_from_store(store, env.name) if store is not None else Observed.nothing()
    the_plan = build_plan(env, topology, observed)
    record = store.environment(env.name) if store is not None else None
    if record is not None:
        installed = kubernetes_installed(record)
        the_plan = the_plan.model_copy(update={"kubernetes_installed": installed})
    return topology, the_plan


INFRA_ONLY_STATUS = "infra-ready"  # what a create with --infra-only leaves


def kubernetes_installed(record: EnvironmentRecord) -> bool | None:
    """False after an --infra-only create (machines, no Kubernetes); True once a create has
    bootstrapped it; None when the store cannot tell (a create still running or failed)."""
    if record.status == INFRA_ONLY_STATUS:
        return False
    if record.status in ("ready", "bootstrap-failed"):
        return True
    return None


def recorded_names(store: StateStore, environment: str) -> dict[HostIdentity, str]:
    """The name each recorded ssh host's node has: it follows the host through edits."""
    names: dict[HostIdentity, str] = {}
    for res in store.resources(environment):
        data = res.data
        ssh = data.get("provider") == Provider.SSH.value and data.get("ssh_host")
        if res.key.startswith(NODE_PREFIX) and ssh:
            key = (str(data.get("pool")), str(data["ssh_host"]), int(data.get("ssh_port") or 22))
            names[key] = res.key[len(NODE_PREFIX) :]
    return names


def observed_from_store(store: StateStore, environment: str) -> Observed:
    nodes: dict[str, ObservedNode] = {}
    resources: dict[str, str] = {}
    for res in store.resources(environment):
        if res.key.startswith(NODE_PREFIX):
            name = res.key[len(NODE_PREFIX) :]
            nodes[name] = ObservedNode(
                name=name,
                provider_id=res.provider_id,
                instance_type=res.data.get("instance_type"),
                state=str(res.data.get("state", "recorded")),
            )
        else:
            resources[res.key] = res.provider_id
    return Observed(nodes=nodes, resources=resources)


@dataclass
class CreateResult:
    environment: str
    plan: Plan
    results: dict[str, InfraResult] = field(default_factory=dict)
    bootstrap: pipeline.BootstrapResult | None = None

    @property
    def failed(self) -> dict[str, str]:
        failed = {k: v for r in self.results.values() for k, v in r.failed.items()}
        return {**failed, **(self.bootstrap.failed if self.bootstrap else {})}


def create(
    env: Environment,
    store: StateStore,
    *,
    infra_only: bool,
    dedicated: bool | None = None,
    events: EventSink = discard,
) -> CreateResult:
    """Reconcile the environment's infrastructure and nodes with the file.

    A refusal before anything exists leaves no trace of a new environment; a failure after
    something exists leaves status ``failed`` and every recorded resource, so a re-run resumes
    and ``delete`` can clean up.
    """
    refuse_running_changes(env, store)
    check_login_keys(env, infra_only=infra_only)
    offline_bundle = None
    if env.spec.offline is not None and not infra_only:
        # checked before anything is created or uploaded: a bundle for another version, or
        # one whose files do not match their checksums, is refused in one line
        offline_bundle = open_checked(
            env.spec.offline.bundle, env.spec.kubernetes.version, env.spec.kubernetes.cni.value
        )
    with store.lock(env.name, "create"):
        existed = store.environment(env.name) is not None
        store.save_environment(env.name, env.spec.provider.value, effective_spec(env, dedicated))
        try:
            result = _create_locked(
                env,
                store,
                infra_only=infra_only,
                dedicated=dedicated,
                events=events,
                offline_bundle=offline_bundle,
            )
        except BaseException:
            _after_failure(store, env.name, existed=existed, status="failed")
            raise
        if result.failed:
            _after_failure(store, env.name, existed=existed)
        return result


def check_login_keys(env: Environment, *, infra_only: bool) -> None:
    """The key files a create will log in with, read now (validate and plan never read them);
    an --infra-only create of aws pools logs in nowhere."""
    if not infra_only or any(n.provider == Provider.SSH.value for n in expand(env).nodes):
        check_key_files(login_keys(env))


def login_keys(env: Environment) -> list[tuple[str, str | None]]:
    """Every private key file the file names, with the field that names it."""
    auth = env.spec.auth
    keys: list[tuple[str, str | None]] = [("spec.auth.privateKey", auth.private_key)]
    if auth.bastion is not None:
        keys.append(("spec.auth.bastion.privateKey", auth.bastion.private_key))
    cluster = env.spec.cluster
    groups = [("controlPlane", cluster.control_plane), ("workers", cluster.workers)]
    groups += [(f"nodePools[{i}]", pool) for i, pool in enumerate(cluster.node_pools)]
    for name, group in groups:
        for j, host in enumerate(group.hosts if group is not None else []):
            keys.append((f"spec.cluster.{name}.hosts[{j}].key", host.key))
    return keys


def running_changes(before: Environment, after: Environment) -> list[str]:
    """What a file changes in an environment that exists: the Kubernetes version, and each
    pool's size or instance type (``create`` builds only what does not exist yet)."""
    changes = []
    old, new = before.spec.kubernetes.version, after.spec.kubernetes.version
    if old != new:
        changes.append(f"kubernetes.version {old} -> {new}")

    def pools(env: Environment) -> dict[str, tuple[int, str | None]]:
        found: dict[str, tuple[int, str | None]] = {}
        for node in expand(env).nodes:
            count, kind = found.get(node.pool, (0, node.instance_type))
            found[node.pool] = (count + 1, kind)
        return found

    was, now = pools(before), pools(after)
    for pool in sorted(set(was) | set(now)):
        (count0, type0), (count1, type1) = was.get(pool, (0, None)), now.get(pool, (0, None))
        if count0 != count1:
            changes.append(f"pool {pool}: {count0} -> {count1} nodes")
        elif type0 != type1:
            changes.append(f"pool {pool}: instance type {type0} -> {type1}")
    return changes


def refuse_running_changes(env: Environment, store: StateStore) -> None:
    """Refuse, touching nothing, a ``create`` whose file changes an existing environment."""
    record = store.environment(env.name)
    if record is None or not record.spec:
        return
    try:
        before = from_recorded(record.spec)
    except ValueError:
        return
    changes = running_changes(before, env)
    if changes:
        raise UsageError(
            f"{env.name} exists and the file changes it ({'; '.join(changes)}): create only "
            f"builds what does not exist yet; change a running environment with "
            f"`clusterdeck apply -f FILE`, which shows its plan first"
        )


def _after_failure(
    store: StateStore, name: str, *, existed: bool, status: str | None = None
) -> None:
    """A new environment that got nowhere leaves no trace; otherwise its failure is recorded."""
    if not existed and not store.resources(name, include_deleted=True):
        store.forget_environment(name)
    elif status is not None:
        store.set_status(name, status)


def _create_locked(
    env: Environment,
    store: StateStore,
    *,
    infra_only: bool,
    dedicated: bool | None,
    events: EventSink,
    offline_bundle: OfflineBundle | None = None,
) -> CreateResult:
    topology, the_plan = plan(env, store, dedicated=dedicated)
    result = CreateResult(env.name, the_plan)
    by_provider: dict[str, list[Any]] = {}
    for node in topology.nodes:
        by_provider.setdefault(node.provider, []).append(node)
    store.set_status(env.name, "creating")
    for name in sorted(by_provider, key=PROVIDER_ORDER.index):
        provider = registry.get(name)
        ctx = ApplyContext(
            environment=env.name,
            plan=the_plan,
            topology=topology,
            nodes=by_provider[name],
            store=store,
            events=events,
            spec=env,
        )
        result.results[name] = provider.apply(ctx)
    if result.failed or infra_only:
        store.set_status(env.name, "failed" if result.failed else INFRA_ONLY_STATUS)
        return result
    result.bootstrap = pipeline.bootstrap(
        env, store, topology, the_plan, events=events, offline_bundle=offline_bundle
    )
    ready = not result.bootstrap.failed
    outputs = {"endpoint": result.bootstrap.server} if result.bootstrap.server else {}
    store.set_status(env.name, "ready" if ready else "bootstrap-failed", **outputs)
    return result


def effective_spec(env: Environment, dedicated: bool | None) -> dict[str, Any]:
    """The spec as recorded: the file, plus the answer to the dedicated prompt if one was given,
    so later plans and status agree with what was built."""
    data: dict[str, Any] = env.model_dump(mode="json", by_alias=True)
    if dedicated is not None:
        data["spec"]["cluster"]["controlPlane"]["dedicated"] = dedicated
    return data


def plan_apply(
    env: Environment,
    store: StateStore,
    *,
    infra_only: bool = False,
    allow_control_plane_shrink: bool = False,
) -> tuple[Environment, ApplyPlan]:
    """Observe the running environment and diff it against the file: (the recorded spec, the
    plan). What runs is the store's node records and, unless ``infra_only``, the cluster's
    Nodes. Reads only; changes nothing."""
    record = require_environment(store, env.name)
    wanted_status = INFRA_ONLY_STATUS if infra_only else "ready"
    if record.status != wanted_status:
        if record.status == INFRA_ONLY_STATUS:
            why = "it was created with --infra-only: change its machines with apply --infra-only"
        elif infra_only and record.status == "ready":
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
    names = recorded_names(store, env.name)
    planned = day2.diff(
        before, env, names, running, allow_control_plane_shrink=allow_control_plane_shrink
    )
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
) -> None:
    """Carry out exactly ``planned`` (from :func:`plan_apply`), batch by batch, then record the
    new file. A stopped run is resumed by running apply again: it observes what is left. An
    upgrade saves an etcd snapshot under ``snapshot_dir`` first."""
    refuse_unsupported(planned)
    with store.lock(env.name, "apply"):
        before, again = plan_apply(
            env,
            store,
            infra_only=infra_only,
            allow_control_plane_shrink=allow_control_plane_shrink,
        )
        if again != planned:
            raise UsageError(f"{env.name!r} changed since the plan was shown: run apply again")
        status = INFRA_ONLY_STATUS if infra_only else "ready"
        try:
            for kind, batch in planned.batches():
                names = [c.node for c in batch]
                if kind is ChangeKind.ADD:
                    _join(before, env, store, names, events=events, log=log, infra_only=infra_only)
                elif kind is ChangeKind.UPGRADE:
                    if snapshot_dir is None:
                        raise UsageError("an upgrade needs a directory for its etcd snapshot")
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
                    pipeline.remove_nodes(
                        env,
                        store,
                        names,
                        drain_timeout=drain_timeout,
                        force=force,
                        log=log,
                        events=events,
                        cluster=not infra_only,
                    )
                    if not infra_only and any(c.role == Role.CONTROL_PLANE.value for c in batch):
                        # the control planes that stay: load balancer backends and peers
                        # without the one that left, then the cluster healthy again
                        _join(before, env, store, [], events=events, log=log, infra_only=False)
        finally:  # a provider marks its own work in progress; the environment stays usable
            store.set_status(env.name, status)
        dedicated = day2.dedicated_for(before, env)
        store.save_environment(env.name, env.spec.provider.value, effective_spec(env, dedicated))


def record_file(env: Environment, store: StateStore) -> bool:
    """When apply has nothing to do but the file differs from the one recorded (a changed key
    path; an upgrade whose every node already runs the new version), record it; True if so."""
    with store.lock(env.name, "apply"):
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
) -> None:
    """Have the providers make or register the new machines, then bring them into the cluster;
    the topology of this step is what the file wants of what is recorded by now. (The aws
    provider reconciles its whole side: every missing instance of the file is launched, one
    RunInstances per pool and zone, and new control planes go behind the load balancer.)"""
    wanted = day2.desired_topology(before, env, recorded_names(store, env.name))
    joining = [wanted.node(n) for n in names]
    ctx_plan = build_plan(env, wanted, observed_from_store(store, env.name))
    for provider_name in sorted({n.provider for n in joining}, key=PROVIDER_ORDER.index):
        mine = [n for n in joining if n.provider == provider_name]
        provider = registry.get(provider_name)
        infra = provider.apply(ApplyContext(env.name, ctx_plan, wanted, mine, store, events, env))
        if infra.failed:
            raise PermanentError(
                "could not make or reach: "
                + "; ".join(f"{n}: {why}" for n, why in infra.failed.items())
            )
    if infra_only:
        return
    recorded = set(observed_from_store(store, env.name).nodes)
    step = wanted.model_copy(update={"nodes": [n for n in wanted.nodes if n.name in recorded]})
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


def delete(name: str, store: StateStore, *, events: EventSink = discard) -> list[str]:
    """Delete everything recorded for ``name``; return what could not be deleted."""
    record = require_environment(store, name)
    with store.lock(name, "delete"):
        store.set_status(name, "deleting")
        leftovers: list[str] = []
        resources = store.resources(name)
        providers_used = {str(res.data.get("provider", record.provider)) for res in resources}
        providers_used.add(record.provider)
        for provider_name in sorted(providers_used, key=PROVIDER_ORDER.index):
            provider = registry.get(provider_name)
            mine = [
                r
                for r in resources
                if str(r.data.get("provider", record.provider)) == provider_name
            ]
            leftovers += provider.destroy(name, store, events, mine)
        if leftovers:
            store.set_status(name, "delete-incomplete")
        else:
            store.forget_environment(name)
        return leftovers


@dataclass
class Status:
    record: EnvironmentRecord
    nodes: list[ResourceRecord]
    resources: list[ResourceRecord]
    missing: list[str]
    plan: Plan | None


def status(store: StateStore, name: str) -> Status:
    """What the store knows of an environment, and what its plan still lacks."""
    record = require_environment(store, name)
    resources = store.resources(name)
    nodes = [r for r in resources if r.key.startswith(NODE_PREFIX)]
    the_plan: Plan | None = None
    missing: list[str] = []
    try:
        env: Environment | None = from_recorded(record.spec)
    except ValueError:
        env = None
    if env is not None:
        _, the_plan = plan(env, store)
        missing = [a.target for a in the_plan.changes() if a.kind is ActionKind.CREATE]
    return Status(record, nodes, [r for r in resources if r not in nodes], missing, the_plan)
