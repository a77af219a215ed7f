"""Take worker nodes out of a running cluster: cordon, drain, delete the Node, reset the host.

Why it exists: ``apply`` shrinks a pool or removes one, and a node must leave without losing
what runs on it. The drain goes through the eviction API (``kubectl drain``), so every
PodDisruptionBudget is honoured; when the per-node timeout runs out, the removal stops with the
name of the budget that blocks it and the node stays cordoned (nothing is deleted). Only
``force`` deletes pods without eviction. On ssh hosts the machine stays the user's: kubeadm
resets it and its kubelet is stopped and disabled. Nodes leave one at a time.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from clusterdeck.bootstrap.overlay_paths import KUBELET_DROPIN, OVERLAY_DIR, UNIT, UNIT_FILE
from clusterdeck.errors import PermanentError
from clusterdeck.pipeline.actions import KUBECTL
from clusterdeck.transport import Command, Connections, Endpoint

Log = Callable[[str], None]


@dataclass(frozen=True)
class Leaving:
    name: str  # the Node's name
    endpoint: Endpoint  # its host, reset after the Node is deleted
    services: tuple[str, ...] = ()  # stopped and disabled too (a control plane's VIP holders)
    overlay: bool = False  # on the WireGuard overlay: its interface and key go too


class DrainBlocked(PermanentError):
    """A drain ran out of time; the node is left cordoned."""


def _covers(pdb: dict[str, Any], pod: dict[str, Any]) -> bool:
    if pdb["metadata"].get("namespace") != pod["metadata"].get("namespace"):
        return False
    selector = pdb.get("spec", {}).get("selector") or {}
    labels = pod["metadata"].get("labels") or {}
    wanted = selector.get("matchLabels") or {}
    if not wanted and not selector.get("matchExpressions"):
        return False
    if any(labels.get(k) != v for k, v in wanted.items()):
        return False
    for expr in selector.get("matchExpressions") or []:
        value, op, values = labels.get(expr["key"]), expr["operator"], expr.get("values") or []
        if (
            (op == "In" and value not in values)
            or (op == "NotIn" and value in values)
            or (op == "Exists" and value is None)
            or (op == "DoesNotExist" and value is not None)
        ):
            return False
    return True


def blocking_budgets(pdbs: dict[str, Any], pods: dict[str, Any]) -> list[str]:
    """``namespace/name (pods ...)`` of each budget that allows no disruption of a pod here."""
    found = []
    for pdb in pdbs.get("items", []):
        if pdb.get("status", {}).get("disruptionsAllowed", 0) > 0:
            continue
        covered = [p["metadata"]["name"] for p in pods.get("items", []) if _covers(pdb, p)]
        if covered:
            meta = pdb["metadata"]
            found.append(f"{meta['namespace']}/{meta['name']} (pods {', '.join(covered)})")
    return found


async def _kubectl(
    conns: Connections, cp: Endpoint, *args: str, timeout: float = 60, check: bool = True
) -> Any:
    return await conns.run(
        cp,
        Command([*KUBECTL, *args], name=f"kubectl {args[0]}", root=True),
        timeout=timeout,
        check=check,
    )


async def remove_node(
    conns: Connections,
    cp: Endpoint,
    node: Leaving,
    *,
    drain_timeout: float,
    force: bool,
    log: Log,
    reset: bool = True,
    before_delete: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Cordon, drain, (``before_delete``: a control plane leaves etcd), delete the Node; with
    ``reset`` (an ssh host, which stays the user's) also ``kubeadm reset`` it and stop its
    kubelet."""
    listed = await _kubectl(conns, cp, "get", "node", node.name, "--ignore-not-found", "-o", "name")
    if not listed.stdout.strip():  # a stopped run deleted it already: reset the host
        log(f"{node.name}: no longer in the cluster")
        if reset:
            await _reset_host(conns, node, log)
        return
    await drain(conns, cp, node.name, drain_timeout=drain_timeout, force=force, log=log)
    if before_delete is not None:
        await before_delete()
    log(f"{node.name}: delete the Node")
    await _kubectl(conns, cp, "delete", "node", node.name, "--ignore-not-found")
    if reset:
        await _reset_host(conns, node, log)


async def drain(
    conns: Connections, cp: Endpoint, name: str, *, drain_timeout: float, force: bool, log: Log
) -> None:
    """Cordon and drain through the eviction API; on timeout raise :class:`DrainBlocked`
    naming the budget that blocks, the node left cordoned."""
    log(f"{name}: cordon")
    await _kubectl(conns, cp, "cordon", name)
    log(f"{name}: drain (eviction API, PodDisruptionBudgets honoured, {drain_timeout:g}s)")
    argv = [
        "drain",
        name,
        "--ignore-daemonsets",
        "--delete-emptydir-data",
        f"--timeout={int(drain_timeout)}s",
    ]
    if force:
        argv += ["--disable-eviction", "--force"]
    res = await _kubectl(conns, cp, *argv, timeout=drain_timeout + 60, check=False)
    if res.exit_status != 0:
        pdbs = json.loads((await _kubectl(conns, cp, "get", "pdb", "-A", "-o", "json")).stdout)
        pods = json.loads(
            (
                await _kubectl(
                    conns,
                    cp,
                    "get",
                    "pods",
                    "-A",
                    "-o",
                    "json",
                    f"--field-selector=spec.nodeName={name}",
                )
            ).stdout
        )
        budgets = blocking_budgets(pdbs, pods)
        why = (
            "PodDisruptionBudget " + "; ".join(budgets) + " allows no disruption"
            if budgets
            else (res.stderr.strip().splitlines() or ["kubectl drain failed"])[-1]
        )
        raise DrainBlocked(
            f"{name}: drain did not finish within {drain_timeout:g}s: {why}. "
            f"{name} stays cordoned and in the cluster; relax the budget and run apply "
            "again, or pass --force to delete its pods without eviction"
        )


async def _reset_host(conns: Connections, node: Leaving, log: Log) -> None:
    log(f"{node.name}: kubeadm reset and kubelet stopped on its host")
    await conns.run(
        node.endpoint,
        Command(["kubeadm", "reset", "--force"], name="kubeadm reset", root=True),
        timeout=300,
    )
    await conns.run(
        node.endpoint,
        Command(["systemctl", "disable", "--now", "kubelet"], name="stop kubelet", root=True),
        timeout=60,
    )
    await conns.run(
        node.endpoint,
        Command(["rm", "-rf", "/var/lib/clusterdeck/done"], name="forget phases", root=True),
        timeout=30,
    )
    if node.overlay:
        # off the overlay: the interface down and the key gone (the others already dropped
        # its peer entry); a later rejoin makes a new one
        log(f"{node.name}: overlay interface removed, its key deleted")
        await conns.run(
            node.endpoint,
            Command(
                [
                    "sh",
                    "-c",
                    'systemctl disable --now "$1" 2>/dev/null || true; rm -rf "$2" "$3" "$4"',
                    "leave-overlay",
                    UNIT,
                    OVERLAY_DIR,
                    UNIT_FILE,
                    KUBELET_DROPIN,
                ],
                name="leave the overlay",
                root=True,
            ),
            timeout=60,
        )
    if node.services:
        log(f"{node.name}: {', '.join(node.services)} stopped")
        await conns.run(
            node.endpoint,
            Command(
                ["systemctl", "disable", "--now", *node.services], name="stop services", root=True
            ),
            timeout=60,
        )


async def uncordon(conns: Connections, cp: Endpoint, name: str, log: Log) -> None:
    log(f"{name}: uncordon")
    await _kubectl(conns, cp, "uncordon", name)
