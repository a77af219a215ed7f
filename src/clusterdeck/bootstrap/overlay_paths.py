"""Where the WireGuard overlay's files live on a node: one place for the phase script, the
unit, ``overlay-up`` and the pipeline step that registers each node's key."""

from __future__ import annotations

OVERLAY_DIR = "/etc/clusterdeck/overlay"
PRIVATE_KEY = f"{OVERLAY_DIR}/private.key"  # made on the node, 0600; never read off it
PEERS_FILE = f"{OVERLAY_DIR}/peers.conf"
ENV_FILE = f"{OVERLAY_DIR}/overlay.env"
UP_SCRIPT = "/usr/local/lib/clusterdeck/overlay-up"
UNIT = "clusterdeck-overlay.service"
UNIT_FILE = f"/etc/systemd/system/{UNIT}"
KUBELET_DROPIN = "/etc/systemd/system/kubelet.service.d/05-clusterdeck-overlay.conf"
