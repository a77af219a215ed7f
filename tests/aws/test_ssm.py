"""Private nodes reachable through Systems Manager: the IAM role and instance profile created
and deleted with the environment, given to every node without a public address, and (with
``nodeAccess: ssm``) the logins through SSM sessions instead of a bastion. On moto, plus
botocore's Stubber for StartSession, which moto does not implement: the Stubber checks the
request against the SSM service model and against the exact parameters expected."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from clusterdeck import api
from clusterdeck.model import aws_iam
from clusterdeck.pipeline.targets import targets
from clusterdeck.providers.aws import session as aws_session
from clusterdeck.spec import load_file, load_text
from clusterdeck.transport import ssm
from tests.aws.conftest import Aws
from tests.aws.support import EXAMPLES, counts, create, tagged

PROFILE = aws_iam.node_profile_name("private-lab", "us-west-2")


def _ssm_spec() -> str:
    text = (EXAMPLES / "aws-private.yaml").read_text()
    return text.replace("network: {mode: private}", "network: {mode: private, nodeAccess: ssm}")


def _instances(environment: str) -> list[dict[str, Any]]:
    ec2 = boto3.client("ec2", region_name="us-west-2")
    flt = [{"Name": "tag:clusterdeck.dev/environment", "Values": [environment]}]
    return [
        i
        for r in ec2.describe_instances(Filters=flt)["Reservations"]
        for i in r["Instances"]
        if i["State"]["Name"] != "terminated"
    ]


def _ssh_rules(group_name: str) -> list[Any]:
    ec2 = boto3.client("ec2", region_name="us-west-2")
    (group,) = ec2.describe_security_groups(
        Filters=[{"Name": "group-name", "Values": [group_name]}]
    )["SecurityGroups"]
    return [p for p in group["IpPermissions"] if p.get("FromPort") == 22]


def test_private_nodes_get_the_ssm_role_without_being_asked(
    aws: Aws, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent: list[dict[str, Any]] = []
    monkeypatch.setattr(
        aws_session,
        "EXTRA_HANDLERS",
        [("before-parameter-build.ec2.RunInstances", lambda params, **_: sent.append(params))],
    )
    result, _ = create(load_file(EXAMPLES / "aws-private.yaml"), aws.store)
    monkeypatch.setattr(aws_session, "EXTRA_HANDLERS", [])
    assert result.failed == {}
    # every launch of nodes (moto checks that the profile exists) asks for the profile
    profiles = sorted(str(p.get("IamInstanceProfile")) for p in sent)
    assert profiles == ["None"] + [str({"Name": PROFILE})] * 4  # the bastion has a public IP
    iam = boto3.client("iam", region_name="us-west-2")
    role = iam.get_role(RoleName=PROFILE)["Role"]
    trust = role["AssumeRolePolicyDocument"]
    trust = json.loads(trust) if isinstance(trust, str) else trust
    assert trust["Statement"][0]["Principal"] == {"Service": "ec2.amazonaws.com"}
    attached = iam.list_attached_role_policies(RoleName=PROFILE)["AttachedPolicies"]
    assert [p["PolicyArn"] for p in attached] == [aws_iam.SSM_POLICY_ARN]
    profile = iam.get_instance_profile(InstanceProfileName=PROFILE)["InstanceProfile"]
    assert [r["RoleName"] for r in profile["Roles"]] == [PROFILE]
    by_role: dict[str, list[dict[str, Any]]] = {}
    for inst in _instances("private-lab"):
        tags = {t["Key"]: t["Value"] for t in inst["Tags"]}
        by_role.setdefault(tags["clusterdeck.dev/role"], []).append(inst)
    # moto associates the profile with the first instance of each launch only
    with_profile = [
        i for i in by_role["control-plane"] + by_role["worker"] if "IamInstanceProfile" in i
    ]
    assert with_profile and all(
        i["IamInstanceProfile"]["Arn"] == profile["Arn"] for i in with_profile
    )
    assert all("PublicIpAddress" not in i for i in by_role["control-plane"] + by_role["worker"])
    (bastion,) = by_role["bastion"]
    assert "IamInstanceProfile" not in bastion
    found = counts("private-lab")
    assert found["iam-role"] == 1 and found["instance-profile"] == 1
    assert api.delete("private-lab", aws.store) == []
    assert tagged("private-lab") == {}  # the role and the profile too


def test_node_access_ssm_needs_no_bastion_and_no_ssh_port(aws: Aws) -> None:
    env = load_text(_ssm_spec())
    result, _ = create(env, aws.store)
    assert result.failed == {}
    roles = sorted(
        {
            t["Value"]
            for i in _instances("private-lab")
            for t in i["Tags"]
            if t["Key"].endswith("/role")
        }
    )
    assert roles == ["control-plane", "worker"]  # no bastion instance
    assert _ssh_rules("private-lab-cp") == [] and _ssh_rules("private-lab-worker") == []
    records = aws.store.resources("private-lab")
    record = aws.store.environment("private-lab")
    assert record is not None and "bastion" not in record.outputs
    topology, _ = api.plan(env, aws.store)
    found = targets(env, topology, records, record.outputs)
    for name, target in found.items():
        rec = next(r for r in records if r.key == f"node/{name}")
        assert target.endpoint.jump is None
        assert target.endpoint.ssm == ssm.SsmRoute(
            instance_id=rec.provider_id, region="us-west-2", port=22
        )
    assert api.delete("private-lab", aws.store) == []
    assert tagged("private-lab") == {}


def test_start_session_request_shape_and_the_token_kept_off_the_command_line(
    aws: Aws, monkeypatch: pytest.MonkeyPatch
) -> None:
    route = ssm.SsmRoute(instance_id="i-0123456789abcdef0", region="us-west-2", port=22)
    client = boto3.client("ssm", region_name="us-west-2")
    answer = {"SessionId": "s-1", "TokenValue": "secret-token", "StreamUrl": "wss://x/s-1"}
    with Stubber(client) as stub:
        stub.add_response(
            "start_session",
            answer,
            {
                "Target": "i-0123456789abcdef0",
                "DocumentName": "AWS-StartSSHSession",
                "Parameters": {"portNumber": ["22"]},
            },
        )
        response, url = ssm.start_session(route, "private-lab-cp-0", client=client)
        stub.assert_no_pending_responses()
    argv, env = ssm.plugin_invocation("/usr/bin/session-manager-plugin", route, response, url)
    assert "secret-token" not in " ".join(argv)
    assert json.loads(env[ssm.RESPONSE_ENV])["TokenValue"] == "secret-token"
    assert argv[2:4] == ["us-west-2", "StartSession"]


def test_launch_waits_for_a_just_created_instance_profile(
    aws: Aws, monkeypatch: pytest.MonkeyPatch
) -> None:
    """IAM is eventually consistent: RunInstances may refuse a profile created a moment ago
    ("Invalid IAM Instance Profile name"); the launch waits for it instead of failing."""
    from botocore.awsrequest import AWSResponse

    from clusterdeck.providers.aws import compute

    body = (
        b"<Response><Errors><Error><Code>InvalidParameterValue</Code><Message>Value "
        b"(clusterdeck-x) for parameter iamInstanceProfile.name is invalid. Invalid IAM "
        b"Instance Profile name</Message></Error></Errors><RequestID>r</RequestID></Response>"
    )
    refused: list[str] = []

    class Raw:
        def stream(self, **_: object):
            yield body

    def not_yet(request, **_: object):
        raw = request.body or b""
        text = raw.decode() if isinstance(raw, bytes) else str(raw)
        if "Action=RunInstances" in text and "IamInstanceProfile" in text and len(refused) < 2:
            refused.append("RunInstances")
            return AWSResponse(request.url, 400, {}, Raw())
        return None

    monkeypatch.setattr(compute, "PROFILE_POLL", 0.05)
    monkeypatch.setattr(aws_session, "EXTRA_HANDLERS", [("before-send.ec2", not_yet)])
    result, events = create(load_text(_ssm_spec()), aws.store)
    assert result.failed == {}
    assert refused == ["RunInstances", "RunInstances"]
    assert any(e.step == "waiting" and "instance profile" in e.message for e in events.events)
    monkeypatch.setattr(aws_session, "EXTRA_HANDLERS", [])
    assert counts("private-lab")["instance"] == 5
    assert api.delete("private-lab", aws.store) == []
