"""Human renderings of plans, validation reports and status as rich tables.

Kept apart from the commands so every command shows the same things the same way.
"""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from clusterdeck.errors import SpecIssue
from clusterdeck.model.plan import ActionKind, NodePlan, Plan


def table_(title: str | None, *columns: str) -> Table:
    """A table whose cells wrap instead of being cut with an ellipsis (IDs and IPs matter)."""
    made = Table(title=title, title_justify="left")
    for column in columns:
        made.add_column(column, overflow="fold")
    return made


def issues(console: Console, found: list[SpecIssue], *, label: str, style: str) -> None:
    for issue in found:
        console.print(f"[{style}]{label}[/]: {issue.location()}: {issue.message}", highlight=False)


def _where(node: NodePlan) -> str:
    """Its address (or zone, or provider), and on an overlay its site and how it is reached."""
    place = node.address or node.zone or node.provider
    if node.site is None:
        return place
    how = {"nat": ", behind NAT", "relay": ", relay"}.get(node.overlay or "", "")
    return f"{place} ({node.site}{how})"


def plan(console: Console, the_plan: Plan) -> None:
    ep = the_plan.endpoint
    console.print(
        f"[bold]Environment[/] {the_plan.environment}  provider: {the_plan.provider}"
        + (f"  network: {the_plan.network_mode}" if the_plan.network_mode else "")
    )
    console.print(f"[bold]Kubernetes API[/] https://{ep.host}:{ep.port} ({ep.kind})")
    console.print(
        f"[bold]Control planes[/] {'untainted' if the_plan.control_plane_untainted else 'tainted'}"
        f": {the_plan.untainted_reason}"
    )
    for warning in the_plan.warnings:
        console.print(f"[yellow]warning[/]: {warning}")
    if the_plan.resources:
        table = table_("Cloud resources", "resource", "kind", "name", "details")
        for res in the_plan.resources:
            table.add_row(
                res.key, res.kind, res.name, ", ".join(f"{k}={v}" for k, v in res.details.items())
            )
        console.print(table)
    for group in the_plan.security_groups:
        table = table_(
            f"Security group {group.name} ({group.role})", "port", "protocol", "source", "purpose"
        )
        for rule in group.rules:
            table.add_row(
                rule.ports,
                rule.protocol.upper() if rule.protocol != "icmp" else "ICMP",
                " + ".join(str(s) for s in rule.sources),
                rule.purpose,
            )
        console.print(table)
    if the_plan.instance_groups:
        table = table_(
            "Instances (one RunInstances call per row)",
            "pool",
            "zone",
            "type",
            "count",
            "market",
            "public IP",
            "nodes",
        )
        for grp in the_plan.instance_groups:
            market = grp.market + (f" ({grp.spot_price})" if grp.spot_price else "")
            table.add_row(
                grp.pool,
                grp.zone,
                grp.instance_type,
                str(grp.count),
                market,
                "yes" if grp.public_ip else "no",
                _names(grp.nodes),
            )
        console.print(table)
    lb = the_plan.load_balancer
    if lb is not None:
        console.print(
            f"[bold]Load balancer[/] {lb.kind} {lb.name}: listener {lb.listener_port} -> "
            f"control planes :{lb.target_port} ({lb.health_check})"
            + (f", target group {lb.target_group}" if lb.target_group else "")
        )
    table = table_(
        "Nodes and their bootstrap phases (nodes with the same phases grouped)",
        "nodes",
        "role",
        "pool",
        "arch",
        "where",
        "taints",
        "phases",
    )
    groups: dict[tuple[str, ...], list[NodePlan]] = {}
    for node in the_plan.nodes:
        arch = node.arch or "from facts"
        key = (node.role, node.pool, arch, ", ".join(node.taints), " -> ".join(node.phases))
        groups.setdefault(key, []).append(node)
    for (role, pool, arch, taints, phases), members in groups.items():
        where = sorted({_where(n) for n in members})
        table.add_row(
            _names([n.name for n in members]),
            role,
            pool,
            arch,
            _names(where),
            taints or "-",
            phases,
        )
    console.print(table)
    changes = the_plan.changes()
    counts = {kind: sum(1 for a in changes if a.kind is kind) for kind in ActionKind}
    if not changes and the_plan.kubernetes_installed is False:
        console.print(
            "[yellow]Infrastructure exists; Kubernetes is not installed[/] (created with "
            f"--infra-only): `clusterdeck create -f FILE` installs it on the "
            f"{len(the_plan.nodes)} nodes."
        )
    elif not changes:
        console.print("[green]No changes[/]: everything in the file already exists.")
    else:
        console.print(
            "[bold]Plan[/]: " + ", ".join(f"{n} to {k.value}" for k, n in counts.items() if n)
        )
        for action in changes:
            if action.kind is not ActionKind.CREATE:
                console.print(f"  {action.kind.value} {action.target}: {action.reason}")


def _names(names: list[str]) -> str:
    return ", ".join(names) if len(names) <= 4 else f"{names[0]} ... {names[-1]} ({len(names)})"
