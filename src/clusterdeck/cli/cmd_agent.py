"""``clusterdeck agent``: bootstrap the stateless node this runs on (its systemd unit's job).

Users do not run it by hand: ``pxe render`` writes the unit that starts it at boot.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from clusterdeck.bootstrap.pxe import AGENT_CONFIG, IDENTITY


def register(app: typer.Typer) -> None:
    app.command(
        help="Bootstrap this stateless node (run at boot by clusterdeck-agent.service): "
        "init or join, elected through the shared directory; a control plane then stays up "
        "to serve the others.",
        epilog="Example:  systemctl status clusterdeck-agent",
    )(agent)


def agent(
    config: Annotated[
        Path, typer.Option("--config", help="The agent's config (pxe render wrote it).")
    ] = Path(AGENT_CONFIG),
    identity: Annotated[
        Path, typer.Option("--identity", help="This node's identity (its per-node files).")
    ] = Path(IDENTITY),
) -> None:
    import threading

    from clusterdeck.agent import boot
    from clusterdeck.agent.local import merge_hosts, run_script, stderr_log
    from clusterdeck.bootstrap.pxe import HOSTS_ENTRY
    from clusterdeck.coordination.shared_dir import SharedDirectory
    from clusterdeck.model.topology import Role
    from clusterdeck.providers.ssh.facts import FACTS_SCRIPT

    def probe() -> str:
        return run_script(FACTS_SCRIPT, name="facts", bundle=boot.BUNDLES, log=lambda _: None)

    merge_hosts(Path(HOSTS_ENTRY), Path("/etc/hosts"), stderr_log)
    view = boot.load(config, identity, probe)
    coord = SharedDirectory(Path(view.config.shared_directory) / view.config.environment)
    ran = boot.boot(view, coord, stderr_log)
    if ran != boot.RUNNING:
        stderr_log(f"{view.identity.name}: {ran} done")
    if view.identity.role is Role.CONTROL_PLANE:
        boot.serve(view, coord, stderr_log, threading.Event())
