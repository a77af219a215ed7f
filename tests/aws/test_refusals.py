"""Refused and impossible creates: one clear line naming the field, a consistent state.

Refusals found before anything exists (an instance type AWS does not know, a spot percentage
without the Pricing API, no caller IP) must leave nothing in AWS and nothing in the store. A
refusal in the middle (a load-balancer name owned by someone else) leaves every resource
made so far recorded, and delete then removes them all and nothing else.
"""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator

import boto3
import pytest

from clusterdeck import api
from clusterdeck.errors import PermanentError
from clusterdeck.spec import load_file
from tests.aws.conftest import Aws
from tests.aws.support import EXAMPLES, FIXTURES, cli, counts, create, tagged

pytestmark = [pytest.mark.moto]


def test_unknown_instance_type_is_refused_before_anything_exists(aws: Aws) -> None:
    env = load_file(FIXTURES / "bad-type.yaml")
    with pytest.raises(PermanentError) as info:
        create(env, aws.store)
    assert str(info.value) == (
        "spec.cluster.workers.instanceType: instance type 'm5.gigantic' does not exist in us-west-2"
    )
    assert tagged("badtype") == {}
    assert aws.store.resources("badtype") == []
    assert aws.store.environment("badtype") is None, "a refused new environment leaves no record"


def test_unknown_instance_type_through_the_cli_is_one_line_and_exit_1(aws: Aws) -> None:
    done = cli("create", "-f", str(FIXTURES / "bad-type.yaml"), "--infra-only", "--yes")
    assert done.returncode == 1
    errors = [line for line in done.stderr.splitlines() if line.startswith("error")]
    assert errors == [
        "error: spec.cluster.workers.instanceType: instance type 'm5.gigantic' "
        "does not exist in us-west-2"
    ]
    assert "Traceback" not in done.stderr
    assert tagged("badtype") == {}


def test_max_price_percent_without_pricing_api_suggests_max_price(aws: Aws) -> None:
    env = load_file(FIXTURES / "spot-percent.yaml")
    with pytest.raises(PermanentError) as info:
        create(env, aws.store)
    message = str(info.value)
    assert message.startswith(
        "pool 'gpu': spot.maxPricePercent needs the on-demand price of "
        "g5.xlarge in us-west-2 from the AWS Pricing API, which is not "
        "available here"
    )
    assert message.endswith(
        'set spot.maxPrice (USD per hour, e.g. "0.40") instead of maxPricePercent'
    )
    assert tagged("percent") == {}


def test_key_pair_that_does_not_exist_names_the_field(aws: Aws) -> None:
    boto3.client("ec2", region_name="us-west-2").delete_key_pair(KeyName="my-key")
    with pytest.raises(
        PermanentError,
        match=r"^spec.auth.keyName: EC2 key pair 'my-key' "
        r"does not exist in us-west-2",
    ):
        create(load_file(EXAMPLES / "aws-simple.yaml"), aws.store)
    assert tagged("gpu-simple") == {}


@pytest.fixture
def ip_service() -> Iterator[tuple[str, list[bytes]]]:
    """A local HTTP service standing in for the public-IP echo service; answers in ``body``."""
    body = [b"203.0.113.77\n"]

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.end_headers()
            self.wfile.write(body[0])

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/", body
    server.shutdown()
    server.server_close()


def test_caller_ip_from_the_lookup_service_becomes_the_ssh_source(
    aws: Aws, monkeypatch: pytest.MonkeyPatch, ip_service: tuple[str, list[bytes]]
) -> None:
    url, _ = ip_service
    monkeypatch.delenv("CLUSTERDECK_CALLER_IP")
    monkeypatch.setenv("CLUSTERDECK_CALLER_IP_URL", url)
    create(load_file(EXAMPLES / "aws-minimal.yaml"), aws.store)
    ec2 = boto3.client("ec2", region_name="us-east-1")
    groups = ec2.describe_security_groups(
        Filters=[{"Name": "group-name", "Values": ["minimal-cp"]}]
    )["SecurityGroups"]
    ssh = [
        r["CidrIp"]
        for p in groups[0]["IpPermissions"]
        if p["FromPort"] == 22
        for r in p["IpRanges"]
    ]
    assert ssh == ["203.0.113.77/32"]
    assert api.delete("minimal", aws.store) == []
    assert tagged("minimal", "us-east-1") == {}


@pytest.mark.parametrize("answer", [b"<html>blocked</html>", b"0.0.0.0"])
def test_unusable_caller_ip_stops_create_and_never_opens_the_world(
    aws: Aws, monkeypatch: pytest.MonkeyPatch, ip_service: tuple[str, list[bytes]], answer: bytes
) -> None:
    url, body = ip_service
    body[0] = answer
    monkeypatch.delenv("CLUSTERDECK_CALLER_IP")
    monkeypatch.setenv("CLUSTERDECK_CALLER_IP_URL", url)
    with pytest.raises(PermanentError, match=r"set spec\.aws\.ingressCidrs") as info:
        create(load_file(EXAMPLES / "aws-minimal.yaml"), aws.store)
    assert "never opens them to 0.0.0.0/0" in str(info.value)
    assert tagged("minimal", "us-east-1") == {}


def test_unreachable_caller_ip_service_stops_create(
    aws: Aws, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CLUSTERDECK_CALLER_IP")
    monkeypatch.setenv("CLUSTERDECK_CALLER_IP_URL", "http://127.0.0.1:9/")
    with pytest.raises(
        PermanentError,
        match=r"^cannot find your public IP: "
        r"http://127.0.0.1:9/ did not answer",
    ):
        create(load_file(EXAMPLES / "aws-minimal.yaml"), aws.store)
    assert tagged("minimal", "us-east-1") == {}


def test_load_balancer_name_owned_by_someone_else_stops_midway_consistently(aws: Aws) -> None:
    ec2 = boto3.client("ec2", region_name="us-west-2")
    elb = boto3.client("elbv2", region_name="us-west-2")
    other_vpc = ec2.create_vpc(CidrBlock="172.31.0.0/16")["Vpc"]["VpcId"]
    foreign = elb.create_target_group(Name="gpu-ha-cp", Protocol="TCP", Port=443, VpcId=other_vpc)[
        "TargetGroups"
    ][0]["TargetGroupArn"]
    env = load_file(EXAMPLES / "aws-ha.yaml")
    with pytest.raises(PermanentError) as info:
        create(env, aws.store)
    assert str(info.value) == (
        "target group gpu-ha-cp already exist(s) in us-west-2 but do(es) not belong to "
        "environment 'gpu-ha'; delete or rename it, or choose another environment name"
    )
    made = tagged("gpu-ha")
    record = aws.store.environment("gpu-ha")
    assert record is not None and record.status == "failed"
    assert counts("gpu-ha")["instance"] == 6
    recorded = {r.provider_id for r in aws.store.resources("gpu-ha")}
    for kind, ids in made.items():
        if kind != "volume":
            assert set(ids) <= recorded, f"{kind} made but not recorded"
    assert api.delete("gpu-ha", aws.store) == []
    assert tagged("gpu-ha") == {}
    assert elb.describe_target_groups(TargetGroupArns=[foreign])["TargetGroups"]  # not ours
