"""Delete by tags alone (``clusterdeck cleanup``), and API calls that do not grow with nodes.

Calls are counted through botocore's ``before-call`` event on the provider's own sessions
(``providers/aws/session.py``). Between 2 and 50 workers the only call that may grow is
ModifyNetworkInterfaceAttribute (source/destination check): AWS has no batch form of it.
"""

from __future__ import annotations

import json
from collections import Counter

import boto3
import pytest

from clusterdeck import api
from clusterdeck.providers.aws.session import CALLS
from clusterdeck.spec import load_text
from clusterdeck.state import SqliteStore
from tests.aws.conftest import Aws
from tests.aws.support import EXAMPLES, cli, counts, create, tagged

pytestmark = [pytest.mark.moto]

PER_INTERFACE = "ec2:ModifyNetworkInterfaceAttribute"


def test_cleanup_deletes_by_tags_when_the_state_store_is_lost(aws: Aws, tmp_path) -> None:
    done = cli("create", "-f", str(EXAMPLES / "aws-ha.yaml"), "--infra-only", "--yes")
    assert done.returncode == 0, done.stderr[-2000:]
    assert counts("gpu-ha")["instance"] == 6
    lost = aws.env(CLUSTERDECK_STATE=str(tmp_path / "fresh.db"))
    refused = cli("cleanup", "gpu-ha", "--region", "us-west-2", env=lost)
    assert refused.returncode == 2
    assert "re-run with --yes" in refused.stderr
    assert counts("gpu-ha")["instance"] == 6  # nothing deleted without consent
    done = cli("cleanup", "gpu-ha", "--region", "us-west-2", "--yes", env=lost)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "cleaned up gpu-ha in us-west-2" in done.stdout
    assert tagged("gpu-ha") == {}
    again = cli("cleanup", "gpu-ha", "--region", "us-west-2", "--yes", env=lost)
    assert again.returncode == 0
    assert "Nothing tagged for environment 'gpu-ha' in us-west-2" in again.stdout


def test_cleanup_with_the_store_uses_its_region_and_forgets_the_environment(aws: Aws) -> None:
    done = cli("create", "-f", str(EXAMPLES / "aws-minimal.yaml"), "--infra-only", "--yes")
    assert done.returncode == 0, done.stderr[-2000:]
    assert counts("minimal", "us-east-1")["instance"] == 2
    done = cli("cleanup", "minimal", "--yes")
    assert done.returncode == 0, done.stderr[-2000:]
    assert tagged("minimal", "us-east-1") == {}
    assert SqliteStore(aws.state_path).environment("minimal") is None


def _spec(workers: int) -> str:
    return f"""
apiVersion: clusterdeck.dev/v1alpha1
kind: Environment
metadata: {{name: calls}}
spec:
  auth: {{keyName: my-key}}
  aws: {{region: us-west-2, availabilityZones: [us-west-2a, us-west-2b]}}
  cluster:
    controlPlane: {{count: 1, instanceType: m5.large}}
    workers: {{count: {workers}, instanceType: c5.large}}
"""


def _measure(aws: Aws, workers: int) -> tuple[Counter[str], Counter[str]]:
    env = load_text(_spec(workers))
    CALLS.reset()
    result, _ = create(env, aws.store)
    assert result.failed == {} and len(result.results["aws"].ready) == workers + 1
    made = CALLS.snapshot()
    CALLS.reset()
    assert api.delete("calls", aws.store) == []
    removed = CALLS.snapshot()
    assert tagged("calls") == {}
    return made, removed


def test_api_calls_do_not_grow_with_the_worker_count(aws: Aws) -> None:
    small_create, small_delete = _measure(aws, 2)
    large_create, large_delete = _measure(aws, 50)
    # VXLAN pod traffic carries the nodes' own addresses: no per-interface call at all, so
    # nothing grows with the node count
    assert small_create[PER_INTERFACE] == 0 and large_create[PER_INTERFACE] == 0
    assert large_create == small_create
    assert large_delete == small_delete
    assert small_create["ec2:RunInstances"] == 3  # cp in a; workers in a and in b
    assert small_delete["ec2:TerminateInstances"] == 1


@pytest.mark.parametrize(
    ("edit", "named"),
    [
        (("version: v1.37.2", "version: v1.36.3"), "kubernetes.version v1.37.2 -> v1.36.3"),
        (
            ("count: 3\n      instanceType: g4dn", "count: 4\n      instanceType: g4dn"),
            "3 -> 4 nodes",
        ),
        (
            ("instanceType: g4dn.xlarge", "instanceType: g5.xlarge"),
            "instance type g4dn.xlarge -> g5.xlarge",
        ),
    ],
)
def test_create_refuses_to_change_an_existing_environment(
    aws: Aws, tmp_path, edit: tuple[str, str], named: str
) -> None:
    """Re-running create with another version, pool size or instance type touches nothing,
    names the change and points to apply, also for an --infra-only environment."""
    text = (EXAMPLES / "aws-ha.yaml").read_text()
    assert edit[0] in text
    done = cli("create", "-f", str(EXAMPLES / "aws-ha.yaml"), "--infra-only", "--yes")
    assert done.returncode == 0, done.stderr[-2000:]
    before = tagged("gpu-ha")
    changed = tmp_path / "changed.yaml"
    changed.write_text(text.replace(edit[0], edit[1], 1))
    res = cli("create", "-f", str(changed), "--infra-only", "--yes")
    assert res.returncode == 2, res.stderr
    assert named in res.stderr and "clusterdeck apply" in res.stderr
    assert tagged("gpu-ha") == before
    record = SqliteStore(aws.state_path).environment("gpu-ha")
    assert record is not None and record.spec["spec"]["kubernetes"]["version"] == "v1.37.2"


def test_source_dest_check_goes_off_only_when_the_plan_says_so(aws: Aws, monkeypatch) -> None:
    """A mode with unencapsulated pod traffic gets every interface's check switched off, one
    call per interface (AWS has no batch form); the default VXLAN modes get none."""
    from clusterdeck.planner import plan as planner_plan

    monkeypatch.setattr(planner_plan, "pod_traffic_unencapsulated", lambda env: True)
    env = load_text(_spec(2))
    CALLS.reset()
    result, _ = create(env, aws.store)
    assert result.failed == {}
    assert CALLS.snapshot()[PER_INTERFACE] == 3
    ec2 = boto3.client("ec2", region_name="us-west-2")
    found = ec2.describe_instances(
        Filters=[{"Name": "tag:clusterdeck.dev/environment", "Values": ["calls"]}]
    )
    checks = [
        n["SourceDestCheck"]
        for r in found["Reservations"]
        for i in r["Instances"]
        for n in i["NetworkInterfaces"]
    ]
    assert checks and not any(checks)
    assert api.delete("calls", aws.store) == []


def test_throttled_calls_are_retried_with_backoff(aws: Aws, monkeypatch) -> None:
    """EC2 answers RequestLimitExceeded (HTTP 503, as a throttled account sees it) to the
    first attempts of every mutating call; each is retried by botocore's retry handler with
    backoff and the create still converges, with nothing duplicated."""
    from botocore.awsrequest import AWSResponse

    from clusterdeck.providers.aws import session as aws_session

    throttled: Counter[str] = Counter()
    attempts: Counter[str] = Counter()
    body = (
        b"<Response><Errors><Error><Code>RequestLimitExceeded</Code>"
        b"<Message>Request limit exceeded.</Message></Error></Errors>"
        b"<RequestID>throttled</RequestID></Response>"
    )

    class Raw:
        def stream(self, **_: object):  # botocore reads the body through this
            yield body

    def throttle(request, **_: object):
        raw = request.body or b""
        text = raw.decode() if isinstance(raw, bytes) else str(raw)
        action = dict(p.split("=", 1) for p in text.split("&") if "=" in p).get("Action", "")
        if not action or action.startswith("Describe"):
            return None
        attempts[action] += 1
        if attempts[action] <= 2:  # the first two attempts of each mutating action
            throttled[action] += 1
            return AWSResponse(request.url, 503, {}, Raw())
        return None

    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "4")  # the tests' default is fewer, for speed
    monkeypatch.setattr(aws_session, "EXTRA_HANDLERS", [("before-send.ec2", throttle)])
    env = load_text(_spec(2))
    result, _ = create(env, aws.store)
    assert result.failed == {}, result.failed
    assert throttled["RunInstances"] == 2 and throttled["CreateVpc"] == 2
    assert counts("calls")["instance"] == 3  # throttled launches not duplicated
    monkeypatch.setattr(aws_session, "EXTRA_HANDLERS", [])
    assert api.delete("calls", aws.store) == []


def test_rules_no_longer_wanted_are_revoked(aws: Aws) -> None:
    """A removed ingressCidrs entry loses its rules on the next create; the new one is added."""

    def spec(cidr: str) -> str:
        return _spec(2).replace(
            "aws: {region: us-west-2,", f"aws: {{region: us-west-2, ingressCidrs: [{cidr}],"
        )

    def sources(group: str) -> set[tuple[int, str]]:
        ec2 = boto3.client("ec2", region_name="us-west-2")
        found = ec2.describe_security_groups(Filters=[{"Name": "group-name", "Values": [group]}])[
            "SecurityGroups"
        ][0]
        return {
            (p.get("FromPort", -1), r["CidrIp"])
            for p in found["IpPermissions"]
            for r in p.get("IpRanges", [])
        }

    first, _ = create(load_text(spec("203.0.113.0/24")), aws.store)
    assert first.failed == {}
    assert (22, "203.0.113.0/24") in sources("calls-cp")
    again, _ = create(load_text(spec("198.51.100.0/24")), aws.store)
    assert again.failed == {}
    now = sources("calls-cp")
    assert (22, "198.51.100.0/24") in now and (6443, "198.51.100.0/24") in now
    assert not any(cidr == "203.0.113.0/24" for _, cidr in now)
    assert not any(cidr == "203.0.113.0/24" for _, cidr in sources("calls-worker"))
    assert api.delete("calls", aws.store) == []


def test_after_infra_only_plan_and_status_say_kubernetes_is_not_installed(aws: Aws) -> None:
    """Not "no changes": the machines exist, Kubernetes does not, and both commands say so."""
    file = str(EXAMPLES / "aws-minimal.yaml")
    done = cli("create", "-f", file, "--infra-only", "--yes")
    assert done.returncode == 0, done.stderr[-2000:]
    plan = cli("plan", "-f", file)
    assert plan.returncode == 0, plan.stderr
    text = plan.stdout + plan.stderr
    assert "Infrastructure exists; Kubernetes is not installed" in text
    assert "No changes" not in text
    as_json = json.loads(cli("plan", "-f", file, "-o", "json").stdout)
    assert as_json["kubernetes_installed"] is False
    status = cli("status", "minimal")
    assert "Kubernetes is not installed" in status.stdout
    assert (
        json.loads(cli("status", "minimal", "-o", "json").stdout)["kubernetes_installed"] is False
    )
    assert cli("delete", "minimal", "--yes").returncode == 0
