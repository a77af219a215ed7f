"""The overlay's steps that span nodes: keys registered, peers kept in step, pod ranges routed.

Why this exists: a node's WireGuard peers depend on every other node's public key, which
exists only once that node made it. So before anything is rendered, each node makes its key
pair (kept if it has one: a persistent node keeps its key across re-runs and reboots) and
reports the public half; clusterdeck records it with the node's overlay address in the store
(``overlay/<node>``; the private half never leaves the node). Then:
- ``sync`` gives every node the peer list of the mesh as it now is (a node added or removed
  reaches every other node's WireGuard, not only the new one's) and checks each tunnel with a
  don't-fragment ping the size of the MTU;
- ``route_pods`` reads the pod range Kubernetes gave each node, records it, and syncs again:
  WireGuard's allowed IPs then route each node's pods, so pod traffic is encrypted and
  encapsulated once (Flannel's host-gw backend puts the routes on the overlay interface).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import ipaddress
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from clusterdeck.bootstrap import overlay as overlay_files
from clusterdeck.bootstrap.nodeconfig import MachineFacts
from clusterdeck.bootstrap.overlay_paths import OVERLAY_DIR, PEERS_FILE, PRIVATE_KEY, UP_SCRIPT
from clusterdeck.errors import PermanentError
from clusterdeck.model.overlay import Mesh, MeshError, assign_addresses
from clusterdeck.model.records import OVERLAY_KIND, OVERLAY_PREFIX
from clusterdeck.model.topology import Topology
from clusterdeck.pipeline import actions
from clusterdeck.pipeline.targets import Target
from clusterdeck.spec.models import Environment
from clusterdeck.state.store import StateStore
from clusterdeck.transport import Command, Connections

Log = Callable[[str], None]
PING_SECONDS = 60  # how long a tunnel may take to answer (a peer still coming up)

# Made on the node, kept there: prints only the public half. wireguard-tools is installed
# when missing (online); an offline node must have it.
_KEY = r"""
set -eu
dir=$1 key=$2 offline=$3
if ! command -v wg >/dev/null; then
  if [ "$offline" = 1 ]; then
    echo "wireguard-tools (wg) is not installed; offline nodes need it" \
      "(apt-get install wireguard-tools)" >&2
    exit 3
  fi
  export DEBIAN_FRONTEND=noninteractive
  get() { apt-get install -y -q --no-install-recommends wireguard-tools >/dev/null 2>&1; }
  get || { apt-get update -q >/dev/null && get; }
fi
umask 077
install -d -m 0700 "$dir"
if [ ! -s "$key" ]; then
  wg genkey >"$key.new"
  mv "$key.new" "$key"
fi
chmod 0600 "$key"
wg pubkey <"$key"
"""

# The node's new peer list on stdin: applied (wg syncconf: live tunnels stay) when it differs,
# then every peer pinged at the MTU with don't-fragment set.
_SYNC = r"""
set -eu
peers=$1 up=$2 iface=$3 deadline=$4
shift 4
umask 077
cat >"$peers.new"
if [ -f "$peers" ] && cmp -s "$peers.new" "$peers"; then
  rm -f "$peers.new"
else
  mv "$peers.new" "$peers"
  "$up" >/dev/null
fi
field='{ for (i = 1; i < NF; i++) if ($i == "mtu") { print $(i + 1); exit } }'
mtu="$(ip -o link show dev "$iface" | awk "$field")"
size=$((mtu - 28))
for peer in "$@"; do
  n=0
  until ping -n -q -M do -s "$size" -c 1 -W 1 "$peer" >/dev/null 2>&1; do
    n=$((n + 1))
    if [ "$n" -ge "$deadline" ]; then
      echo "no answer from $peer over $iface to a ${mtu}-byte packet with don't-fragment set" \
        "(the tunnel is down, or the MTU is too large for the path)" >&2
      exit 4
    fi
    sleep 1
  done
done
echo "mtu $mtu: ${#} node(s) answer"
"""


def _public_key(node: str, text: str) -> str:
    key = text.strip()
    try:
        raw = base64.b64decode(key, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 32:
        raise PermanentError(f"{node}: its overlay key step printed no WireGuard public key")
    return key


async def register(
    conns: Connections,
    env: Environment,
    store: StateStore,
    topology: Topology,
    targets: Mapping[str, Target],
    log: Log,
) -> dict[str, str]:
    """Every node's public key, made on the node if it has none, recorded with its overlay
    address (kept once given); records of nodes no longer in the topology are removed.
    Returns node -> overlay address."""
    overlay = env.spec.overlay
    assert overlay is not None
    offline = "1" if env.spec.offline is not None else "0"

    async def one(name: str) -> str:
        result = await conns.run(
            targets[name].endpoint,
            Command(
                ["sh", "-c", _KEY, "overlay-key", OVERLAY_DIR, PRIVATE_KEY, offline],
                name="overlay key",
                root=True,
            ),
            timeout=300,
        )
        return _public_key(name, result.stdout)

    names = [n.name for n in topology.nodes]
    keys = dict(zip(names, await asyncio.gather(*(one(n) for n in names)), strict=True))
    records = {
        r.key[len(OVERLAY_PREFIX) :]: r
        for r in store.resources(env.name)
        if r.key.startswith(OVERLAY_PREFIX)
    }
    recorded = {n: str(r.data.get("address")) for n, r in records.items() if r.data.get("address")}
    try:
        addresses = assign_addresses(overlay.cidr, names, recorded)
    except MeshError as exc:
        raise PermanentError(str(exc)) from None
    for name in names:
        old = records.get(name)
        data: dict[str, Any] = {"address": addresses[name], "public_key": keys[name]}
        if (
            old is not None
            and old.data.get("public_key") == keys[name]
            and old.data.get("pod_cidr")
        ):
            data["pod_cidr"] = old.data["pod_cidr"]  # same node, same key: same pod range
        if old is None or dict(old.data) != data or old.deleted_at is not None:
            store.record_resource(
                env.name, f"{OVERLAY_PREFIX}{name}", OVERLAY_KIND, keys[name], data
            )
            what = "new key" if old is None or old.data.get("public_key") != keys[name] else "kept"
            log(f"{name}: overlay {addresses[name]} ({what})")
    for name, old in records.items():
        if name not in addresses and old.deleted_at is None:
            store.mark_deleted(env.name, f"{OVERLAY_PREFIX}{name}")
            log(f"{name}: left the overlay; its peer entries go from every node")
    return addresses


async def sync(
    conns: Connections,
    env: Environment,
    mesh: Mesh,
    targets: Mapping[str, Target],
    log: Log,
    *,
    nodes: Sequence[str] | None = None,
) -> None:
    """Give every node of the mesh (or ``nodes``) its peer list, then check that it reaches
    every other node (directly, or through the relay) at the MTU."""
    overlay = env.spec.overlay
    assert overlay is not None
    names = [m.name for m in mesh.members if nodes is None or m.name in nodes]

    async def one(name: str) -> None:
        result = await conns.run(
            targets[name].endpoint,
            Command(
                [
                    "sh",
                    "-c",
                    _SYNC,
                    "overlay-sync",
                    PEERS_FILE,
                    UP_SCRIPT,
                    overlay.interface,
                    str(PING_SECONDS),
                    *(m.address for m in mesh.members if m.name != name),
                ],
                stdin=overlay_files.peers_file(mesh, name).encode(),
                name="overlay sync",
                root=True,
            ),
            timeout=PING_SECONDS * 2 + 5 * len(mesh.members) + 60,
            check=False,
        )
        if result.exit_status != 0:
            raise PermanentError(
                f"{name}: overlay check failed: {(result.stderr or result.stdout).strip()[-300:]}"
            )
        log(f"{name}: {result.stdout.strip()}")

    await asyncio.gather(*(one(n) for n in names))


def pod_ranges(nodes: dict[str, Any]) -> dict[str, str]:
    """Each Node's pod range (IPv4), from ``kubectl get nodes -o json``."""
    found: dict[str, str] = {}
    for item in nodes.get("items", []):
        name = item.get("metadata", {}).get("name")
        cidrs = item.get("spec", {}).get("podCIDRs") or [item.get("spec", {}).get("podCIDR")]
        for cidr in cidrs:
            if name and cidr and ipaddress.ip_network(cidr).version == 4:
                found[name] = cidr
                break
    return found


async def route_pods(
    conns: Connections,
    env: Environment,
    store: StateStore,
    topology: Topology,
    machines: dict[str, MachineFacts],
    targets: Mapping[str, Target],
    first: str,
    log: Log,
) -> Mesh:
    """Record each node's pod range and route it through WireGuard on every node."""
    ranges = pod_ranges(await actions.nodes_json(conns, targets[first].endpoint))
    missing = [n.name for n in topology.nodes if n.name not in ranges]
    if missing:
        raise PermanentError(f"no pod range assigned yet to {', '.join(missing)}")
    updated = dict(machines)
    for rec in store.resources(env.name):
        name = rec.key[len(OVERLAY_PREFIX) :]
        if not rec.key.startswith(OVERLAY_PREFIX) or name not in ranges:
            continue
        if rec.data.get("pod_cidr") != ranges[name]:
            store.record_resource(
                env.name, rec.key, rec.kind, rec.provider_id, {**rec.data, "pod_cidr": ranges[name]}
            )
        if name in updated:
            updated[name] = updated[name].model_copy(update={"pod_cidr": ranges[name]})
    mesh = overlay_files.mesh_of(env, topology, updated)
    await sync(conns, env, mesh, targets, log)
    log(f"pod ranges of {len(ranges)} nodes routed through the overlay")
    return mesh
