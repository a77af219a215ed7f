"""Terminate the instances of nodes that leave a running environment (a smaller or removed pool).

Why it exists: ``apply`` removes single nodes, where ``delete`` removes everything. The
instances are found by their recorded IDs, and only an instance that carries the
environment's tags and still runs is terminated. A node's
record is forgotten only once AWS reports its instance terminated, so a stopped run finds it
again. The terminations go out in one call.
"""

from __future__ import annotations

import time

from clusterdeck.errors import PermanentError
from clusterdeck.events import EventKind, EventSink
from clusterdeck.model.records import ResourceRecord
from clusterdeck.providers.aws import checkpoints, tags
from clusterdeck.providers.aws.errors import collect
from clusterdeck.providers.aws.observe import LIVE_INSTANCE_STATES, discover
from clusterdeck.providers.aws.run import INSTANCES, AwsRun
from clusterdeck.providers.aws.session import connect
from clusterdeck.state.store import StateStore

TERMINATE_TIMEOUT = 600.0


def terminate_nodes(
    environment: str,
    region: str,
    store: StateStore,
    events: EventSink,
    records: list[ResourceRecord],
) -> None:
    session = connect(region)
    inventory = discover(session, environment)
    run = AwsRun(environment, session, store, events, inventory)
    live = {i.id for i in inventory.live_instances()}
    ids = [r.provider_id for r in records if r.provider_id in live]
    if ids:
        started = time.monotonic()
        run.info(INSTANCES, f"terminating {len(ids)} instance(s): {', '.join(ids)}")
        run.call(
            session.ec2.terminate_instances,
            f"{len(ids)} instance(s)",
            INSTANCES,
            InstanceIds=ids,
        )
        checkpoints.reached("instances-terminating")
        _wait_gone(run, ids)
        run.done(INSTANCES, started, f"{len(ids)} terminated")
    for rec in records:
        store.mark_deleted(environment, rec.key)
        run.emit(EventKind.FINISHED, INSTANCES, rec.key, "terminated", rec.provider_id)


def _wait_gone(run: AwsRun, ids: list[str]) -> None:
    deadline = time.monotonic() + TERMINATE_TIMEOUT
    delay = 1.0
    flt = [
        *tags.env_filter(run.environment),
        {"Name": "instance-state-name", "Values": LIVE_INSTANCE_STATES},
    ]
    while True:
        left = collect(
            run.session.ec2,
            "describe_instances",
            "Reservations",
            "waiting for instances to terminate",
            Filters=flt,
            InstanceIds=ids,
        )
        if not any(r.get("Instances") for r in left):
            return
        if time.monotonic() > deadline:
            raise PermanentError(
                f"instances {', '.join(ids)} still not terminated after "
                f"{int(TERMINATE_TIMEOUT)} s; run apply again later"
            )
        time.sleep(delay)
        delay = min(delay * 1.5, 10.0)
