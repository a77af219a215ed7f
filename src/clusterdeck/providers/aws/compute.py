"""Instances: one RunInstances per instance group (a pool in a zone), then one wait loop.

Why it exists: launching node by node is what makes other tools slow and leaky. Here every
group's missing nodes go in ONE RunInstances call with ``MinCount = MaxCount = missing``,
tags in ``TagSpecifications`` and a deterministic ``ClientToken``; the IDs are written to the
store as soon as the call returns. A re-run first adopts instances that carry the group's tag
but are not in the store yet (a crash right after RunInstances), so it never launches a
duplicate. Waiting is one paginated DescribeInstances per poll for all groups together.
Source/destination checking is switched off on every interface only when the plan says pod
traffic crosses the VPC unencapsulated (no mode clusterdeck sets up today does); AWS has no
batch form of that call, so it is one call per interface, made in parallel, and only where
the check is still on.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Any

from clusterdeck.errors import ClusterdeckError, PermanentError
from clusterdeck.events import EventKind
from clusterdeck.model.plan import InstanceGroupPlan, Plan
from clusterdeck.model.records import NODE_PREFIX, ResourceRecord
from clusterdeck.providers.aws import checkpoints, tags
from clusterdeck.providers.aws.errors import EVENTUAL, aws_code, collect
from clusterdeck.providers.aws.observe import Instance, instances_from
from clusterdeck.providers.aws.preflight import Prepared
from clusterdeck.providers.aws.run import INSTANCES, AwsRun
from clusterdeck.spec.models import Environment

RUNNING_TIMEOUT = 900.0
PARALLEL = 16
BASTION_KEY = "instances/bastion"
# how long RunInstances may refuse a just-created instance profile (IAM propagation)
PROFILE_PROPAGATION = 90.0
PROFILE_POLL = 3.0


@dataclass
class Launched:
    """Node name -> instance, for every node of the plan that has one now."""

    instances: dict[str, Instance] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)


def record_key(group: InstanceGroupPlan, name: str) -> str:
    return BASTION_KEY if group.role == "bastion" else f"{NODE_PREFIX}{name}"


def ensure(run: AwsRun, plan: Plan, env: Environment, prepared: Prepared) -> Launched:
    started = time.monotonic()
    records = {r.key: r for r in run.store.resources(run.environment)}
    result = Launched()
    to_launch: list[tuple[InstanceGroupPlan, list[str]]] = []
    for group in plan.instance_groups:
        missing = _adopt(run, group, env, records, result)
        if missing:
            to_launch.append((group, missing))
    # Source/destination checks are switched off as soon as an interface exists (the
    # RunInstances answer lists them), overlapping the other launches and the wait.
    eni_pool = ThreadPoolExecutor(max_workers=PARALLEL)
    eni_jobs: list[Future[None]] = []
    try:
        if plan.source_dest_check_off:
            _source_dest_off(run, eni_pool, eni_jobs, list(result.instances.values()))
        if to_launch:
            _launch_all(
                run,
                env,
                prepared,
                to_launch,
                result,
                eni_pool,
                eni_jobs,
                plan.source_dest_check_off,
            )
        checkpoints.reached("instances-launched")
        _wait_running(run, result)
        _record_all(run, plan, env, result, records)
        checkpoints.reached("instances-running")
        for job in eni_jobs:
            job.result()
    finally:
        eni_pool.shutdown(wait=True, cancel_futures=True)
    checkpoints.reached("source-dest-check")
    run.done(INSTANCES, started, f"{len(result.instances)} running")
    return result


def _launch_all(
    run: AwsRun,
    env: Environment,
    prepared: Prepared,
    to_launch: list[tuple[InstanceGroupPlan, list[str]]],
    result: Launched,
    eni_pool: ThreadPoolExecutor,
    eni_jobs: list[Future[None]],
    source_dest_off: bool,
) -> None:
    """One RunInstances per group, all groups at once; the first refusal is raised after
    every launch has returned (and been recorded)."""
    total = sum(len(names) for _, names in to_launch)
    run.info(INSTANCES, f"launching {total} instance(s) in {len(to_launch)} group(s)")
    errors: list[ClusterdeckError] = []
    with ThreadPoolExecutor(max_workers=min(8, len(to_launch))) as pool:
        futures = {pool.submit(_launch, run, g, names, env, prepared): g for g, names in to_launch}
        for future in as_completed(futures):
            try:
                launched = future.result()
            except ClusterdeckError as exc:
                errors.append(exc)
                run.emit(EventKind.FAILED, INSTANCES, futures[future].key, "launch", str(exc))
                continue
            result.instances.update(launched)
            if source_dest_off:
                _source_dest_off(run, eni_pool, eni_jobs, list(launched.values()))
    if errors:
        raise errors[0]


def _adopt(
    run: AwsRun,
    group: InstanceGroupPlan,
    env: Environment,
    records: dict[str, ResourceRecord],
    result: Launched,
) -> list[str]:
    """Match existing instances of the group to its nodes; return the nodes still missing."""
    live = {i.id: i for i in run.inventory.live_instances() if i.key == group.key}
    mapped: dict[str, Instance] = {}
    for name in group.nodes:
        rec = records.get(record_key(group, name))
        if rec is not None and rec.provider_id in live:
            mapped[name] = live.pop(rec.provider_id)
    # only an instance no record claims, launched as this group's type, is one a crash left
    # unrecorded: the old instances of a rolling replacement carry the same group tag
    claimed = {r.provider_id for r in records.values()}
    free = sorted(
        (
            i
            for i in live.values()
            if i.id not in claimed and i.instance_type == group.instance_type
        ),
        key=lambda i: i.order,
    )
    missing = [n for n in group.nodes if n not in mapped]
    adopted = list(zip(missing, free, strict=False))
    for name, inst in adopted:
        mapped[name] = inst
        _record(run, group, env, name, inst)
        run.emit(EventKind.INFO, INSTANCES, name, "adopted", f"{inst.id} (tagged, not recorded)")
    for extra in free[len(adopted) :]:  # reported only: delete removes them
        run.emit(
            EventKind.INFO,
            INSTANCES,
            extra.id,
            "not needed",
            f"tagged for {group.key} but the plan has no node for it; delete removes it",
        )
    missing = missing[len(adopted) :]
    result.instances.update(mapped)
    return missing


def _token(run: AwsRun, group: InstanceGroupPlan, names: list[str]) -> str:
    seed = f"{run.ids.get('vpc', '')}/{group.key}/{','.join(names)}"
    return hashlib.sha256(seed.encode()).hexdigest()[:48]


def _launch(
    run: AwsRun, group: InstanceGroupPlan, names: list[str], env: Environment, prepared: Prepared
) -> dict[str, Instance]:
    image = prepared.image_for(group.instance_type)
    name_tag = names[0] if len(names) == 1 else f"{run.environment}-{group.pool}"
    tag_list = tags.tags(run.environment, group.key, name_tag, role=group.role, pool=group.pool)
    kwargs: dict[str, Any] = {
        "ImageId": image.id,
        "InstanceType": group.instance_type,
        "MinCount": len(names),
        "MaxCount": len(names),
        "NetworkInterfaces": [
            {
                "DeviceIndex": 0,
                "SubnetId": run.ids[group.subnet],
                "Groups": [run.ids[group.security_group]],
                "AssociatePublicIpAddress": group.public_ip,
                "DeleteOnTermination": True,
            }
        ],
        "BlockDeviceMappings": [
            {
                "DeviceName": image.root_device,
                "Ebs": {
                    "VolumeSize": group.root_volume_gb,
                    "VolumeType": "gp3",
                    "DeleteOnTermination": True,
                    "Encrypted": True,
                },
            }
        ],
        "MetadataOptions": {
            "HttpTokens": "required",
            "HttpEndpoint": "enabled",
            "HttpPutResponseHopLimit": 2,
        },
        "TagSpecifications": [tags.spec("instance", tag_list), tags.spec("volume", tag_list)],
    }
    if env.spec.auth.key_name:
        kwargs["KeyName"] = env.spec.auth.key_name
    if group.instance_profile:
        kwargs["IamInstanceProfile"] = {"Name": group.instance_profile}
    if group.market == "spot":
        options: dict[str, Any] = {
            "SpotInstanceType": "one-time",
            "InstanceInterruptionBehavior": "terminate",
        }
        limit = prepared.spot_limits.get(group.key)
        if limit:
            options["MaxPrice"] = limit
        kwargs["InstanceMarketOptions"] = {"MarketType": "spot", "SpotOptions": options}
    what = f"{len(names)} x {group.instance_type} for {group.pool} in {group.zone}"
    token = _token(run, group, names)
    profile_deadline = time.monotonic() + PROFILE_PROPAGATION
    fresh_tokens = 0
    while True:
        try:
            out = run.call(
                run.session.ec2.run_instances,
                what,
                INSTANCES,
                settle=tuple(EVENTUAL),
                ClientToken=token,
                **kwargs,
            )
        except PermanentError as exc:
            if _profile_not_visible_yet(exc) and time.monotonic() < profile_deadline:
                run.emit(EventKind.RETRYING, INSTANCES, what, "waiting", "instance profile")
                time.sleep(PROFILE_POLL)
                continue
            if aws_code(exc) != "IdempotentParameterMismatch" or fresh_tokens:
                raise
            fresh_tokens += 1
            token = uuid.uuid4().hex  # an earlier launch used this token with other settings
            continue
        launched = instances_from([out])
        if all(i.state in ("pending", "running") for i in launched):
            break
        if fresh_tokens:
            raise PermanentError(f"{what}: AWS returned instances that are not starting")
        fresh_tokens += 1
        token = uuid.uuid4().hex  # the token was used by an earlier, since-terminated launch
    checkpoints.reached("instances-launched-unrecorded")
    launched.sort(key=lambda i: i.launch_index)
    mapped = dict(zip(names, launched, strict=False))
    for name, inst in mapped.items():
        _record(run, group, env, name, inst)
    run.emit(
        EventKind.INFO, INSTANCES, group.key, "launched", f"{len(mapped)} x {group.instance_type}"
    )
    return mapped


def _profile_not_visible_yet(exc: PermanentError) -> bool:
    """RunInstances refuses a just-created instance profile until IAM has propagated it (IAM
    is eventually consistent): "Invalid IAM Instance Profile name"."""
    return aws_code(exc) == "InvalidParameterValue" and "iaminstanceprofile" in str(exc).lower()


def _record(
    run: AwsRun, group: InstanceGroupPlan, env: Environment, name: str, inst: Instance
) -> None:
    run.record(record_key(group, name), "instance", inst.id, **_data(run, group, env, inst))


def _data(
    run: AwsRun, group: InstanceGroupPlan, env: Environment, inst: Instance
) -> dict[str, Any]:
    bastion = run.ids.get("bastion-address")
    ssh_host = inst.public_ip if group.public_ip else inst.private_ip
    data: dict[str, Any] = {
        "role": group.role,
        "pool": group.pool,
        "zone": group.zone,
        "group": group.key,
        "instance_type": group.instance_type,
        "market": group.market,
        "private_ip": inst.private_ip,
        "public_ip": inst.public_ip,
        "ssh_host": ssh_host,
        "ssh_port": 22,
        "ssh_user": env.spec.auth.username,
        "state": inst.state,
    }
    if group.machine:
        data["machine"] = dict(group.machine)
    if bastion and group.role != "bastion":
        data["bastion"] = bastion
    if group.reach == "ssm":
        data["reach"] = "ssm"  # logins go through an SSM session to the instance's sshd
    return {"provider": "aws", "region": run.region, **data}


def _wait_running(run: AwsRun, result: Launched) -> None:
    waiting = {name: inst for name, inst in result.instances.items() if inst.state != "running"}
    if not waiting:
        return
    run.info(INSTANCES, f"waiting for {len(waiting)} instance(s) to run")
    deadline = time.monotonic() + RUNNING_TIMEOUT
    delay = 1.0
    by_id = {inst.id: name for name, inst in result.instances.items()}
    while waiting:
        described = collect(
            run.session.ec2,
            "describe_instances",
            "Reservations",
            "waiting for instances",
            Filters=tags.env_filter(run.environment),
            PaginationConfig={"PageSize": 1000},
        )
        for inst in instances_from(described):
            name = by_id.get(inst.id)
            if name is None or name not in waiting:
                continue
            if inst.state == "running":
                result.instances[name] = inst
                del waiting[name]
            elif inst.state in ("shutting-down", "terminated", "stopping", "stopped"):
                result.failed[name] = f"instance {inst.id} is {inst.state}"
                del waiting[name]
        if not waiting:
            break
        if time.monotonic() > deadline:
            for name in waiting:
                result.failed[name] = f"not running after {int(RUNNING_TIMEOUT)} s"
            break
        time.sleep(delay)
        delay = min(delay * 1.5, 10.0)
    for name in result.failed:
        result.instances.pop(name, None)


def _record_all(
    run: AwsRun, plan: Plan, env: Environment, result: Launched, before: dict[str, ResourceRecord]
) -> None:
    """Write every node's final addresses and state (bastion first: nodes point to it)."""
    groups = sorted(plan.instance_groups, key=lambda g: g.role != "bastion")
    for group in groups:
        for name in group.nodes:
            inst = result.instances.get(name)
            if inst is None:
                continue
            if group.role == "bastion" and inst.public_ip:
                run.ids["bastion-address"] = f"{inst.public_ip}:22"
            old = before.get(record_key(group, name))
            if (
                old is None
                or old.provider_id != inst.id
                or old.data != _data(run, group, env, inst)
            ):
                _record(run, group, env, name, inst)


def _source_dest_off(
    run: AwsRun, pool: ThreadPoolExecutor, jobs: list[Future[None]], instances: list[Instance]
) -> None:
    """Queue one ModifyNetworkInterfaceAttribute per interface whose check is still on."""
    enis = [eni for inst in instances for eni, check in inst.interfaces if check]
    if not enis:
        return
    run.info(INSTANCES, f"disabling source/destination check on {len(enis)} interface(s)")
    ec2 = run.session.ec2

    def off(eni: str) -> None:
        run.call(
            ec2.modify_network_interface_attribute,
            f"network interface {eni}",
            INSTANCES,
            settle=tuple(EVENTUAL),
            NetworkInterfaceId=eni,
            SourceDestCheck={"Value": False},
        )

    jobs.extend(pool.submit(off, eni) for eni in enis)
