"""PXE-booted lab hosts: a full host started from the pristine image plus a boot overlay.

Test support, not product code. What a PXE server (Warewulf) gives a stateless node is an
image and overlays assembled into a root file system in RAM. Here each boot mounts, on the
host side, an overlayfs whose lower layers are (top first) the node's own files
(``nodes/<name>/`` of what ``pxe render`` wrote), the common overlay (``overlay/``) and the
cached lab image, all read-only, with its upper layer on a tmpfs made for this boot. The kubelet's
and containerd's state live on the same tmpfs (they need real directories, not overlayfs).
Stopping the machine and unmounting the tmpfs loses everything: a reboot starts pristine.
The lab's shared directory (``<lab>/shared``, the NFS export of the reference design) is bound
where ``agent.json`` says.
"""

from __future__ import annotations

import json
import shutil
import signal
import sysconfig
import time
from collections.abc import Sequence
from pathlib import Path

from tests.lab import full
from tests.lab.light import Lab, LabHost, kill, netns_pids, run

MOUNTS = "pxe"  # under the host's directory: tmpfs with upper/, work/, state/; root/ on top
AGENT_HOME = "/opt/clusterdeck"  # the agent as the image would install it: src/ and site/
# what `pip install clusterdeck` would put in the image: this checkout and its dependencies
AGENT_WRAPPER = f"""#!/bin/sh
export PYTHONPATH={AGENT_HOME}/src:{AGENT_HOME}/site
exec /usr/bin/python3 -m clusterdeck "$@"
"""


def _agent_binds() -> list[str]:
    import clusterdeck

    src = Path(clusterdeck.__file__).resolve().parents[1]
    site = Path(sysconfig.get_paths()["purelib"])
    return [f"--bind-ro={src}:{AGENT_HOME}/src", f"--bind-ro={site}:{AGENT_HOME}/site"]


def shared_dir(lab: Lab) -> Path:
    path = lab.path / "shared"
    path.mkdir(mode=0o700, exist_ok=True)
    return path


def node_for(tree: Path, host: LabHost) -> str:
    """The node directory of ``tree`` whose address is the host's (``nodes.json``)."""
    rows = json.loads((tree / "nodes.json").read_text())["nodes"]
    if host.address not in rows:
        raise RuntimeError(f"{tree}: no node has address {host.address} ({host.name})")
    return str(rows[host.address]["node"])


def _unmount(host: LabHost) -> None:
    base = host.path / MOUNTS
    for point in (base / "root", base):
        if point.is_mount():
            run(["umount", "--lazy", str(point)], check=False)


def boot(lab: Lab, hosts: Sequence[LabHost], tree: Path) -> None:
    """Start each host from the pristine image with its overlay (all at once)."""
    image = full.image()
    full.raise_kernel_limits()
    agent = json.loads((tree / "overlay" / "etc" / "clusterdeck" / "agent.json").read_text())
    shared = shared_dir(lab)
    for host in hosts:
        node = tree / "nodes" / node_for(tree, host)
        _unmount(host)
        base = host.path / MOUNTS
        base.mkdir(exist_ok=True)
        run(["mount", "-t", "tmpfs", "-o", "mode=0755", f"pxe-{host.name}", str(base)])
        for sub in ("upper", "work", "root", "state"):
            (base / sub).mkdir()
        lower = ":".join(str(p) for p in (node, tree / "overlay", image))
        run(
            [
                "mount",
                "-t",
                "overlay",
                f"pxe-root-{host.name}",
                "-o",
                f"lowerdir={lower},upperdir={base / 'upper'},workdir={base / 'work'}",
                str(base / "root"),
            ]
        )
        wrapper = base / "root" / "usr" / "local" / "bin" / "clusterdeck"
        wrapper.parent.mkdir(parents=True, exist_ok=True)
        wrapper.write_text(AGENT_WRAPPER)
        wrapper.chmod(0o755)
        (host.path / "pxe-tree").write_text(str(tree))
        full.start_machine(
            host,
            base / "root",
            [
                *full.kubernetes_args(host, base / "state"),
                f"--bind={shared}:{agent['shared_directory']}",
                *_agent_binds(),
            ],
        )
    lab.save()
    deadline = time.monotonic() + 60
    for host in hosts:  # the machine's own init, for exec (namespaces entered directly)
        while True:
            try:
                host.holder_pid = full.machine_init(host)
                break
            except RuntimeError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
    lab.save()


def _power_off(host: LabHost, timeout: float = 30.0) -> None:
    """Nothing of the machine left running: a machine whose clean shutdown outlasted the stop
    can leave its init (and its API server on :6443) behind in the namespace, where the next
    boot would meet it. Every process still in the host's namespace is the old machine's."""
    deadline = time.monotonic() + timeout
    while left := netns_pids(host.netns):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{host.name}: processes {left} outlived its machine")
        for pid in left:
            kill(pid, signal.SIGKILL)
        time.sleep(0.2)


def stop(lab: Lab, host: LabHost) -> None:
    """Power the host off: its machine stopped, everything it wrote in RAM gone."""
    full.stop_machines_in([host.netns])
    _power_off(host)
    _unmount(host)
    shutil.rmtree(host.path / MOUNTS, ignore_errors=True)
    host.machine_pid = 0
    lab.save()


def reboot(lab: Lab, host: LabHost, tree: Path) -> None:
    stop(lab, host)
    boot(lab, [host], tree)
