"""The ``clusterdeck`` command: global options, command registration and exit codes.

Exit codes everywhere: 0 success, 1 the operation failed, 2 bad input. Expected errors print
one line; unexpected ones print one line pointing at a debug log with the traceback.
Command modules are the ``cmd_*.py`` files beside this one, each with ``register(app)``.
"""

from __future__ import annotations

import importlib
import sys
import traceback
from pathlib import Path
from typing import Annotated

import typer
from platformdirs import user_log_path
from rich.console import Console

from clusterdeck.cli import context
from clusterdeck.errors import ClusterdeckError, SpecError

app = typer.Typer(
    name="clusterdeck",
    help="Turn one declarative YAML file into a working Kubernetes cluster, and keep it so.\n\n"
    "Start with: clusterdeck validate -f cluster.yaml, then clusterdeck plan -f cluster.yaml.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    rich_markup_mode="rich",
)


@app.callback()
def main(
    ctx: typer.Context,
    state_path: Annotated[
        Path | None,
        typer.Option(
            "--state",
            envvar="CLUSTERDECK_STATE",
            help="State store file (default: the user data dir's clusterdeck/state.db).",
        ),
    ] = None,
    verbose: Annotated[
        int, typer.Option("--verbose", "-v", count=True, help="More detail; repeat for more.")
    ] = 0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress display.")] = False,
    non_interactive: Annotated[
        bool,
        typer.Option(
            "--non-interactive",
            help="Never prompt (also CLUSTERDECK_NONINTERACTIVE=true or CI=true); "
            "take the file's values and require --yes for changes.",
        ),
    ] = False,
) -> None:
    ctx.obj = context.AppState(
        state_path=state_path,
        verbose=-1 if quiet else verbose,
        non_interactive_flag=non_interactive,
    )


# The module that registers each command: a run imports only its command's module (start-up
# time: the API, the providers and the store load only for the commands that use them).
# ``--help``, no command or an unknown one registers them all. tests/cli checks the table
# against what the modules register.
COMMAND_MODULES = {
    "apply": "cmd_apply",
    "cleanup": "cmd_aws",
    "bundle": "cmd_bundle",
    "events": "cmd_cluster",
    "get": "cmd_cluster",
    "validate": "cmd_core",
    "plan": "cmd_core",
    "list": "cmd_core",
    "status": "cmd_core",
    "schema": "cmd_core",
    "version": "cmd_core",
    "create": "cmd_create",
    "delete": "cmd_create",
    "host-key": "cmd_hostkeys",
    "exec": "cmd_remote",
    "ssh": "cmd_remote",
    "render": "cmd_render",
    "pxe": "cmd_pxe",
    "agent": "cmd_agent",
}
_registered: set[str] = set()


def register_commands(argv: list[str] | None = None) -> None:
    """Register the command ``argv`` runs (every command when it names none we know)."""
    first = next((w for w in argv or [] if not w.startswith("-")), None)
    modules = (
        [COMMAND_MODULES[first]]
        if first in COMMAND_MODULES and argv is not None
        else sorted(set(COMMAND_MODULES.values()))
    )
    for name in modules:
        if name not in _registered:
            _registered.add(name)
            importlib.import_module(f"clusterdeck.cli.{name}").register(app)


# Global options are accepted after the subcommand too (`create -f x.yaml --non-interactive`),
# as users of the reference tool type them: they are moved in front of it before parsing.
_GLOBAL_FLAGS = {"--non-interactive", "--quiet", "-q", "--verbose", "-v", "-vv", "-vvv"}
_GLOBAL_VALUED = {"--state"}


def hoist_global_options(argv: list[str]) -> list[str]:
    """``argv`` with global options found after the subcommand moved before it. Nothing after
    ``--`` is touched (``exec NAME -- cmd -v`` keeps its ``-v``)."""
    front: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(argv):
        word = argv[i]
        if word == "--":
            rest += argv[i:]
            break
        if word in _GLOBAL_FLAGS:
            front.append(word)
        elif word in _GLOBAL_VALUED and i + 1 < len(argv):
            front += [word, argv[i + 1]]
            i += 1
        elif word.split("=", 1)[0] in _GLOBAL_VALUED and "=" in word:
            front.append(word)
        else:
            rest.append(word)
        i += 1
    return front + rest


def usage_error_line(exc: BaseException) -> str | None:
    """One line for a usage error (unknown option or command, missing argument, bad value),
    whichever click typer brings: its own (typer 0.29 on) or the click package."""
    kinds: list[type[BaseException]] = []
    try:
        from typer._click.exceptions import UsageError as BundledUsageError

        kinds.append(BundledUsageError)
    except ImportError:
        pass
    try:
        from click.exceptions import UsageError as ClickUsageError

        kinds.append(ClickUsageError)
    except ImportError:
        pass
    if not kinds or not isinstance(exc, tuple(kinds)):
        return None
    message = str(getattr(exc, "format_message", lambda: str(exc))())
    ctx = getattr(exc, "ctx", None)
    path = getattr(ctx, "command_path", "clusterdeck") if ctx is not None else "clusterdeck"
    return f"{message} (see `{path} --help`)"


def _command_words(argv: list[str]) -> list[str]:
    """``argv`` without the global options in front (``--state PATH`` takes a value)."""
    words = list(argv)
    while words and words[0].startswith("-"):
        flag = words.pop(0)
        if flag in _GLOBAL_VALUED and words:
            words.pop(0)
    return words


def run() -> None:
    """Console-script entry point: run the app and map errors to one line and an exit code."""
    err = Console(stderr=True, soft_wrap=True)
    try:
        argv = hoist_global_options(sys.argv[1:])
        register_commands(_command_words(argv))
        code = app(args=argv, standalone_mode=False)
        if isinstance(code, int) and code:
            sys.exit(code)
    except SpecError as exc:
        for issue in exc.issues:
            err.print(f"[red]error[/]: {issue.location()}: {issue.message}", highlight=False)
        sys.exit(exc.exit_code)
    except ClusterdeckError as exc:
        err.print(f"[red]error[/]: {exc}", highlight=False)
        sys.exit(exc.exit_code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        err.print("aborted")
        sys.exit(1)
    except KeyboardInterrupt:
        err.print("interrupted; run the same command again to resume")
        sys.exit(130)
    except Exception as exc:
        usage = usage_error_line(exc)
        if usage is not None:
            err.print(f"[red]error[/]: {usage}", highlight=False)
            sys.exit(2)
        log_dir = user_log_path("clusterdeck")
        log_dir.mkdir(parents=True, exist_ok=True)
        log = log_dir / "debug.log"
        with log.open("a") as fh:
            fh.write(traceback.format_exc() + "\n")
        err.print(
            f"[red]internal error[/]: {type(exc).__name__}: {exc} (details in {log})",
            highlight=False,
        )
        sys.exit(1)
