"""kill -9 at every step boundary of create, then run it again: it converges, no duplicates.

The create runs as a real ``clusterdeck create`` child process; ``CLUSTERDECK_TEST_CRASH_AFTER``
(a test-only switch, see ``providers/aws/checkpoints.py``) makes it SIGKILL itself at the
named boundary, exactly as ``kill -9`` would. The private HA example goes through every
boundary (NAT gateways, bastion, NLB). Deleting after a partial create must leave nothing.
"""

from __future__ import annotations

import signal

import boto3
import pytest

from clusterdeck import api
from clusterdeck.providers.aws.checkpoints import CRASH_ENV, STEPS
from tests.aws.conftest import Aws
from tests.aws.support import EXAMPLES, cli, counts, tagged

pytestmark = [pytest.mark.moto, pytest.mark.slow]

FILE = str(EXAMPLES / "aws-private.yaml")
NAME = "private-lab"
EXPECTED = {
    "vpc": 1,
    "subnet": 4,
    "igw": 1,
    "rtb": 3,
    "sg": 3,
    "eip": 2,
    "nat": 2,
    "instance": 6,
    "volume": 6,
    "load-balancer": 2,  # users' NLB and the nodes' internal one
    "target-group": 2,
    "iam-role": 1,  # the nodes' role for SSM, and its instance profile
    "instance-profile": 1,
}


def _crash(aws: Aws, step: str) -> None:
    done = cli("create", "-f", FILE, "--infra-only", "--yes", env=aws.env(**{CRASH_ENV: step}))
    assert done.returncode == -signal.SIGKILL, done.stderr[-2000:]


def _assert_recorded(aws: Aws) -> None:
    recorded = {r.provider_id for r in aws.store.resources(NAME)}
    for kind, ids in tagged(NAME).items():
        if kind != "volume":
            assert set(ids) <= recorded, f"{kind} exists but is not in the state store"


@pytest.mark.parametrize("step", STEPS)
def test_killed_create_then_rerun_converges_without_duplicates(aws: Aws, step: str) -> None:
    _crash(aws, step)
    done = cli("create", "-f", FILE, "--infra-only", "--yes")
    assert done.returncode == 0, done.stderr[-2000:]
    assert counts(NAME) == EXPECTED
    elb = boto3.client("elbv2", region_name="us-west-2")
    lb = elb.describe_load_balancers(Names=["private-lab-nlb"])["LoadBalancers"][0]
    assert len(elb.describe_listeners(LoadBalancerArn=lb["LoadBalancerArn"])["Listeners"]) == 1
    _assert_recorded(aws)
    nodes = [r for r in aws.store.resources(NAME) if r.key.startswith("node/")]
    assert len(nodes) == 5 and all(n.data["state"] == "running" for n in nodes)
    assert len({n.provider_id for n in nodes}) == 5
    record = aws.store.environment(NAME)
    assert record is not None and record.status == "infra-ready"
    assert record.outputs["endpoint"] == f"https://{lb['DNSName']}:6443"
    assert api.delete(NAME, aws.store) == []
    assert tagged(NAME) == {}


@pytest.mark.parametrize(
    "step", ["subnets", "security-group-rules", "instances-launched-unrecorded", "load-balancer"]
)
def test_delete_after_a_killed_create_leaves_nothing(aws: Aws, step: str) -> None:
    _crash(aws, step)
    assert tagged(NAME) != {}
    done = cli("delete", NAME, "--yes")
    assert done.returncode == 0, done.stderr[-2000:]
    assert tagged(NAME) == {}
