"""AWS-specific commands: ``cleanup`` deletes an environment's resources by their tags alone.

For when the state store is lost, was never on this machine (created from CI), or a delete
was interrupted: everything carrying ``clusterdeck.dev/environment=<ENV>`` in the region is
listed, confirmed, and deleted in dependency order; whatever is still there is listed after.
"""

from __future__ import annotations

from typing import Annotated

import typer

from clusterdeck.cli import render
from clusterdeck.cli.context import AppState, confirm, progress, state
from clusterdeck.errors import ClusterdeckError, UsageError


def register(app: typer.Typer) -> None:
    app.command(
        help="Delete every AWS resource tagged for an environment, without the state store: "
        "load balancer, instances, security groups, NAT gateways, subnets, VPC. Lists what "
        "it finds first, and what is left after.",
        epilog="Examples:  clusterdeck cleanup gpu-lab --region us-west-2   |   "
        "CI=true clusterdeck cleanup gpu-lab --region us-west-2 --yes",
    )(cleanup)


def cleanup(
    ctx: typer.Context,
    environment: Annotated[str, typer.Argument(help="Environment name (metadata.name).")],
    region: Annotated[
        str | None,
        typer.Option(
            "--region",
            help="AWS region; default: the one the store remembers, else AWS_REGION "
            "or the profile's region.",
        ),
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do it without asking.")] = False,
) -> None:
    app = state(ctx)
    store = app.store()
    known = store.environment(environment) is not None
    from clusterdeck.providers import aws  # boto3: loaded only here

    region = region or (aws.recorded_region(store, environment) if known else None)
    try:
        region, found = aws.find(environment, region)
    except UsageError as exc:
        if "no AWS region" not in str(exc):
            raise
        raise UsageError(  # cleanup reads no file: the hint names what it does read
            f"cleanup {environment}: no region recorded for it here; pass the region its "
            "resources are in, e.g. --region us-west-2 (or set AWS_REGION)"
        ) from None
    if not found:
        app.console.print(f"Nothing tagged for environment {environment!r} in {region}.")
        _forget_if_done(app, environment, known)
        return
    table = render.table_(f"{environment} in {region}: {len(found)} tagged resource(s)", "resource")
    for line in found:
        table.add_row(line)
    app.err.print(table)
    confirm(app, f"Delete these {len(found)} resource(s) of {environment!r} in {region}?", yes=yes)
    records = store.resources(environment) if known else []
    with progress(app, f"Cleaning up {environment} in {region}") as sink:
        left = aws.cleanup(environment, region, store, sink, records)
    if left:
        for item in left:
            app.err.print(f"[red]still there[/]: {item}", highlight=False)
        raise ClusterdeckError(
            f"{len(left)} resource(s) tagged for {environment!r} remain in "
            f"{region}; run cleanup again"
        )
    app.console.print(f"[green]cleaned up[/] {environment} in {region}")
    _forget_if_done(app, environment, known)


def _forget_if_done(app: AppState, environment: str, known: bool) -> None:
    """Drop the environment from the store once nothing it records is left anywhere."""
    store = app.store()
    if known and not store.resources(environment):
        store.forget_environment(environment)
