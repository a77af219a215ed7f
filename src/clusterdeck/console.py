"""Console-script entry point that works even when the CLI extra is not installed.

The library installs without typer and rich; the ``clusterdeck`` command needs them. Instead
of an ImportError traceback, a missing extra gets one line saying what to install.
"""

from __future__ import annotations

import os
import sys

CLI_MODULES = {"typer", "rich", "click"}


def run() -> None:
    # clusterdeck's models use no pydantic plugin; looking for them scans every installed
    # package's entry points at the first model (about 20 ms of each start)
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    try:
        from clusterdeck.cli.main import run as cli_run
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] not in CLI_MODULES:
            raise
        sys.stderr.write(
            "error: the clusterdeck command needs the CLI extra: pip install 'clusterdeck[cli]'\n"
        )
        sys.exit(1)
    cli_run()
