"""The nodes' IAM role and instance profile, so Systems Manager can reach private nodes.

Why it exists: a node without a public address is reached through the bastion or through an
SSM session, and SSM needs the instance to carry a role that lets its agent register
(AmazonSSMManagedInstanceCore). The role and profile are created with the environment, before
any instance, given to every node without a public address, and deleted with the environment.
IAM has no tag filter on its list calls, so they are found by their fixed name and accepted as
ours only when they carry the environment's tags. Their name is their ID in the store.
"""

from __future__ import annotations

import time
from typing import Any

from clusterdeck.errors import PermanentError
from clusterdeck.model import aws_iam
from clusterdeck.model.plan import Plan
from clusterdeck.providers.aws import checkpoints, tags
from clusterdeck.providers.aws.run import SECURITY_GROUPS, AwsRun

GROUP = SECURITY_GROUPS  # shown with the access rules: it is what lets SSM in


def _iam_tags(environment: str, key: str, name: str) -> list[dict[str, str]]:
    return [{"Key": t["Key"], "Value": t["Value"]} for t in tags.tags(environment, key, name)]


def ensure(run: AwsRun, plan: Plan) -> None:
    """Create what is missing of the role, its policy and the profile holding it."""
    wanted = {r.key for r in plan.resources}
    if aws_iam.ROLE_KEY not in wanted:
        return
    started = time.monotonic()
    name = aws_iam.node_profile_name(run.environment, run.region)
    for item in run.inventory.foreign:
        if item.endswith(f" {name}"):
            raise PermanentError(
                f"{item} exists but is not this environment's (no clusterdeck tags): "
                "delete or rename it, or give the environment another name"
            )
    iam = run.session.iam
    role = run.inventory.get(aws_iam.ROLE_KEY)
    if role is None:
        run.info(GROUP, f"creating IAM role {name} for SSM")
        created = run.call(
            iam.create_role,
            f"IAM role {name}",
            GROUP,
            RoleName=name,
            AssumeRolePolicyDocument=aws_iam.TRUST_POLICY,
            Description=f"clusterdeck {run.environment}: nodes reachable through SSM",
            Tags=_iam_tags(run.environment, aws_iam.ROLE_KEY, name),
        )["Role"]
        run.record(aws_iam.ROLE_KEY, "iam-role", name, arn=created["Arn"])
        checkpoints.reached("iam-role")  # the role without its policy and profile
    else:
        run.record(aws_iam.ROLE_KEY, "iam-role", name, arn=str(role.raw.get("Arn", "")))
    # attaching an attached policy is a no-op: always make sure it is there
    run.call(
        iam.attach_role_policy,
        f"policy {aws_iam.SSM_POLICY_ARN} on {name}",
        GROUP,
        RoleName=name,
        PolicyArn=aws_iam.SSM_POLICY_ARN,
    )
    profile = run.inventory.get(aws_iam.PROFILE_KEY)
    roles: list[Any] = []
    if profile is None:
        created_profile = run.call(
            iam.create_instance_profile,
            f"instance profile {name}",
            GROUP,
            InstanceProfileName=name,
            Tags=_iam_tags(run.environment, aws_iam.PROFILE_KEY, name),
        )["InstanceProfile"]
        run.record(aws_iam.PROFILE_KEY, "instance-profile", name, arn=created_profile["Arn"])
    else:
        roles = list(profile.raw.get("Roles", []))
        run.record(
            aws_iam.PROFILE_KEY, "instance-profile", name, arn=str(profile.raw.get("Arn", ""))
        )
    if not any(r.get("RoleName") == name for r in roles):
        run.call(
            iam.add_role_to_instance_profile,
            f"role {name} in instance profile {name}",
            GROUP,
            InstanceProfileName=name,
            RoleName=name,
        )
    run.done(GROUP, started, f"IAM role and instance profile {name}")


def delete(run: AwsRun, gone: Any) -> None:
    """Take the role out of the profile, then delete both (after the instances are gone)."""
    profile = run.inventory.get(aws_iam.PROFILE_KEY)
    role = run.inventory.get(aws_iam.ROLE_KEY)
    iam = run.session.iam
    if profile is not None:
        for r in profile.raw.get("Roles", []):
            gone(
                run,
                GROUP,
                f"role {r['RoleName']} in instance profile {profile.id}",
                iam.remove_role_from_instance_profile,
                InstanceProfileName=profile.id,
                RoleName=r["RoleName"],
            )
        gone(
            run,
            GROUP,
            f"instance profile {profile.id}",
            iam.delete_instance_profile,
            InstanceProfileName=profile.id,
        )
    if role is not None:
        gone(
            run,
            GROUP,
            f"policy on IAM role {role.id}",
            iam.detach_role_policy,
            RoleName=role.id,
            PolicyArn=aws_iam.SSM_POLICY_ARN,
        )
        gone(run, GROUP, f"IAM role {role.id}", iam.delete_role, RoleName=role.id)
