"""Which image instances boot: Canonical's newest for the OS and architecture, or aws.ami.

moto has no SSM public parameters for Canonical, so these go through the DescribeImages
fallback (owner 099720109477); the fixture also holds a newer look-alike image owned by
another account, which must never be chosen.
"""

from __future__ import annotations

import pytest

from clusterdeck import api
from clusterdeck.errors import PermanentError
from clusterdeck.spec import load_text
from tests.aws.conftest import Aws
from tests.aws.support import create, instances, tagged

pytestmark = [pytest.mark.moto]


def _spec(extra_aws: str = "", cp_type: str = "m5.large", worker_type: str = "c5.large") -> str:
    return f"""
apiVersion: clusterdeck.dev/v1alpha1
kind: Environment
metadata: {{name: images}}
spec:
  auth: {{keyName: my-key}}
  aws: {{region: us-west-2, ingressCidrs: [203.0.113.0/24]{extra_aws}}}
  cluster:
    controlPlane: {{count: 1, instanceType: {cp_type}}}
    workers: {{count: 1, instanceType: {worker_type}}}
"""


def _images() -> dict[str, str]:
    return {i["InstanceType"]: i["ImageId"] for i in instances("images")}


def test_each_architecture_gets_canonicals_newest_image(aws: Aws) -> None:
    create(load_text(_spec(worker_type="m6g.large")), aws.store)
    assert _images() == {"m5.large": "ami-0a1b2c3d4e5f60002", "m6g.large": "ami-0a1b2c3d4e5f60003"}
    assert api.delete("images", aws.store) == []


def test_ubuntu_24_04_resolves_to_noble(aws: Aws) -> None:
    create(load_text(_spec(", os: ubuntu-24.04")), aws.store)
    assert set(_images().values()) == {"ami-0a1b2c3d4e5f60004"}
    assert api.delete("images", aws.store) == []


def test_explicit_ami_is_used_as_given(aws: Aws) -> None:
    create(load_text(_spec(", ami: ami-0a1b2c3d4e5f60001")), aws.store)
    assert set(_images().values()) == {"ami-0a1b2c3d4e5f60001"}
    assert api.delete("images", aws.store) == []


def test_explicit_ami_of_the_wrong_architecture_is_refused_first(aws: Aws) -> None:
    with pytest.raises(PermanentError) as info:
        create(load_text(_spec(", ami: ami-0a1b2c3d4e5f60001", worker_type="m6g.large")), aws.store)
    assert str(info.value) == (
        "spec.aws.ami: image ami-0a1b2c3d4e5f60001 is x86_64, but "
        "instance types of this environment need arm64"
    )
    assert tagged("images") == {}


def test_explicit_ami_that_does_not_exist_is_refused_first(aws: Aws) -> None:
    with pytest.raises(PermanentError, match=r"^spec\.aws\.ami: image ami-0deadbeef0000000 "):
        create(load_text(_spec(", ami: ami-0deadbeef0000000")), aws.store)
    assert tagged("images") == {}


def test_a_g5g_gpu_pool_is_planned_arm64_and_gets_the_arm64_image(aws: Aws) -> None:
    env = load_text(_spec(worker_type="g5g.xlarge"))
    _, plan = api.plan(env)
    assert {n.name: n.arch for n in plan.nodes} == {
        "images-cp-0": "amd64",
        "images-workers-0": "arm64",
    }
    create(env, aws.store)
    assert _images() == {"m5.large": "ami-0a1b2c3d4e5f60002", "g5g.xlarge": "ami-0a1b2c3d4e5f60003"}
    assert api.delete("images", aws.store) == []


def test_an_architecture_aws_contradicts_is_refused_before_anything(
    aws: Aws, monkeypatch: pytest.MonkeyPatch
) -> None:
    from clusterdeck.spec import aws_catalog

    # as if the table did not know a Graviton family yet: AWS's answer (arm64) wins, loudly
    monkeypatch.setattr(aws_catalog, "ARM64_FAMILIES", frozenset())
    with pytest.raises(PermanentError) as info:
        create(load_text(_spec(worker_type="g5g.xlarge")), aws.store)
    assert str(info.value).startswith(
        "spec.cluster.workers.instanceType: AWS reports g5g.xlarge as arm64, but"
    )
    assert tagged("images") == {}
