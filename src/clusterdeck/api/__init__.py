"""A small facade over the flow (load, plan, create, delete, status) for scripts and the CLI.

Each function is the one flow cut short: load -> expand -> observe -> plan -> execute. It
holds the environment lock for anything that changes the world, and records the spec in
the store. No printing here: progress goes out as events, results come back as data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clusterdeck import pipeline
from clusterdeck.api.day2 import (
    apply,
    plan_apply,
    record_file,
    refuse_stateless,
    refuse_unsupported,
)
from clusterdeck.api.recorded import (
    INFRA_ONLY_STATUS,
    READY_STATUS,
    effective_spec,
    kubernetes_installed,
    observed_from_store,
    recorded_names,
)
from clusterdeck.bundle.manifest import BundleError, no_bundle_for, open_for
from clusterdeck.bundle.manifest import BundleSet as OfflineBundle
from clusterdeck.errors import UsageError
from clusterdeck.events import EventSink, discard
from clusterdeck.model.observed import Observed
from clusterdeck.model.plan import ActionKind, Plan
from clusterdeck.model.records import NODE_PREFIX, EnvironmentRecord, ResourceRecord
from clusterdeck.model.topology import Topology
from clusterdeck.planner import build_plan, expand
from clusterdeck.providers import registry
from clusterdeck.providers.base import ApplyContext, InfraResult
from clusterdeck.spec import ValidationReport, arch, check_file, load_file
from clusterdeck.spec.loader import from_recorded
from clusterdeck.spec.models import Environment, Provider
from clusterdeck.state.store import StateStore, require_environment
from clusterdeck.transport.keyfiles import check_key_files

__all__ = [
    "INFRA_ONLY_STATUS",
    "CreateResult",
    "Status",
    "apply",
    "create",
    "delete",
    "effective_spec",
    "kubernetes_installed",
    "load",
    "observed_from_store",
    "plan",
    "plan_apply",
    "record_file",
    "recorded_names",
    "refuse_unsupported",
    "status",
    "validate",
]


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
    refuse_stateless(env, "create")
    refuse_running_changes(env, store)
    check_login_keys(env, infra_only=infra_only)
    if not infra_only:
        pipeline.require_hook_secrets(env)
    offline_bundle = None
    if env.spec.offline is not None and not infra_only:
        # checked before anything is created or uploaded: a bundle for another version, or
        # one whose files do not match their checksums, is refused in one line
        offline_bundle = open_for(
            env.spec.offline, env.spec.kubernetes.version, env.spec.kubernetes.cni.value
        )
        require_bundles_for(env, offline_bundle)
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


def require_bundles_for(env: Environment, bundles: OfflineBundle) -> None:
    """Every node whose architecture is known now (aws: its instance type) has a bundle of
    its architecture, before anything is created; ssh hosts are checked on their facts."""
    for node in expand(env).nodes:
        node_arch = arch.of_node(node.provider, node.instance_type)
        if node_arch is None or node_arch in bundles.by_arch:
            continue
        who = f"{node.name} ({node.instance_type}) is {node_arch}"
        raise BundleError(no_bundle_for(who, node_arch, bundles.by_arch))


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
    for name in sorted(by_provider, key=registry.KNOWN.index):
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
    store.set_status(env.name, READY_STATUS if ready else "bootstrap-failed", **outputs)
    return result


def delete(name: str, store: StateStore, *, events: EventSink = discard) -> list[str]:
    """Delete everything recorded for ``name``; return what could not be deleted."""
    record = require_environment(store, name)
    with store.lock(name, "delete"):
        store.set_status(name, "deleting")
        leftovers: list[str] = []
        resources = store.resources(name)
        providers_used = {str(res.data.get("provider", record.provider)) for res in resources}
        providers_used.add(record.provider)
        for provider_name in sorted(providers_used, key=registry.KNOWN.index):
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
