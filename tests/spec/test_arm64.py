"""Architectures known offline: the instance-family table against the EC2 data moto ships
(DescribeInstanceTypes' ProcessorInfo for some 1,400 instance types), and what plan shows."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import moto

from clusterdeck import api
from clusterdeck.spec import arch, aws_catalog, load_text

MOTO_TYPES = Path(moto.__file__).parent / "ec2" / "resources" / "instance_types.json.gz"


def test_the_table_gives_every_linux_instance_type_the_architecture_ec2_reports() -> None:
    with gzip.open(MOTO_TYPES) as fh:
        data = json.loads(fh.read())
    checked = 0
    for name, item in data.items():
        supported = item["ProcessorInfo"]["SupportedArchitectures"]
        if any(a.endswith("_mac") for a in supported):
            continue
        want = "arm64" if supported == ["arm64"] else "amd64"
        assert aws_catalog.architecture(name) == want, name
        checked += 1
    assert checked > 1000


def test_ssh_hosts_take_the_architecture_they_report() -> None:
    assert arch.of_node("ssh", None, "aarch64") == "arm64"
    assert arch.of_node("ssh", None, "x86_64") == "amd64"
    assert arch.of_node("ssh", None) is None
    assert arch.of_node("ssh", None, "unknown") is None
    assert arch.of_node("ssh", None, "ppc64le") == "ppc64le"  # no bundle will match it
    assert arch.of_node("aws", "c7g.large") == "arm64"
    assert arch.of_node("aws", "g4dn.xlarge") == "amd64"


def test_plan_shows_each_nodes_architecture_in_a_mixed_cluster() -> None:
    env = load_text(
        """
apiVersion: clusterdeck.dev/v1alpha1
kind: Environment
metadata: {name: mixed}
spec:
  auth: {keyName: k}
  aws: {region: us-west-2}
  cluster:
    controlPlane: {count: 1, instanceType: m7g.large}
    nodePools:
      - {name: gpu-arm, count: 1, instanceType: g5g.xlarge}
      - {name: gpu-x86, count: 1, instanceType: g5.xlarge}
      - {name: lab, provider: ssh, hosts: [{address: 192.0.2.9}]}
"""
    )
    _, plan = api.plan(env)
    assert {n.name: n.arch for n in plan.nodes} == {
        "mixed-cp-0": "arm64",
        "mixed-gpu-arm-0": "arm64",
        "mixed-gpu-x86-0": "amd64",
        "mixed-lab-0": None,
    }


def test_a_macos_instance_type_is_refused() -> None:
    from clusterdeck.spec import check_bytes

    text = """
apiVersion: clusterdeck.dev/v1alpha1
kind: Environment
metadata: {name: mac}
spec:
  auth: {keyName: k}
  aws: {region: us-west-2}
  cluster:
    controlPlane: {count: 1, instanceType: mac2.metal}
"""
    errors = [(i.path, i.message) for i in check_bytes(text.encode()).errors]
    assert errors == [
        (
            "spec.cluster.controlPlane.instanceType",
            "mac2.metal is a macOS instance; nodes run Ubuntu on x86_64 or arm64 (Graviton) "
            "instance types",
        )
    ]
