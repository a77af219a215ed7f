"""Environments the bootstrap tests render: built from YAML text, as users write them."""

from __future__ import annotations

from pathlib import Path

import pytest

from clusterdeck import api
from clusterdeck.bootstrap.nodeconfig import MachineFacts
from clusterdeck.bootstrap.render import Bundle, ClusterFacts, render_environment
from clusterdeck.spec import load_file

SSH_HA = """
apiVersion: clusterdeck.dev/v1alpha1
kind: Environment
metadata: {name: lab}
spec:
  provider: ssh
  auth: {username: root, privateKey: /root/.ssh/id_ed25519}
  cluster:
    controlPlane:
      hosts: [{address: 10.77.0.11}, {address: 10.77.0.12}, {address: 10.77.0.13}]
    workers:
      hosts: [{address: 10.77.0.21}, {address: 10.77.0.22}, {address: 10.77.0.23},
              {address: 10.77.0.24}]
      labels: {site: rack-4}
      taints: ["dedicated=batch:NoSchedule"]
    highAvailability: {enabled: true, loadBalancer: keepalived, vip: 10.77.0.100}
  kubernetes: {cni: calico, podCidr: 192.168.0.0/16}
"""

SINGLE = """
apiVersion: clusterdeck.dev/v1alpha1
kind: Environment
metadata: {name: solo}
spec:
  provider: ssh
  auth: {username: root}
  cluster:
    controlPlane: {hosts: [{address: 10.77.0.31}]}
  kubernetes: {cni: flannel, podCidr: 10.244.0.0/16}
"""

AWS_HA = """
apiVersion: clusterdeck.dev/v1alpha1
kind: Environment
metadata: {name: gpu}
spec:
  provider: aws
  auth: {keyName: k, privateKey: ~/.ssh/k.pem}
  aws: {region: us-west-2}
  cluster:
    controlPlane: {count: 3, dedicated: true}
    workers: {count: 2, instanceType: g5.xlarge, taints: ["nvidia.com/gpu=present:NoSchedule"]}
    highAvailability: {enabled: true, loadBalancer: nlb}
  nvidiaDriver: {install: true}
  nvidiaContainerToolkit: {install: true}
  kubernetes: {version: v1.37.2}
"""

CASES = {"ssh-ha": SSH_HA, "single": SINGLE, "aws-ha": AWS_HA}

AWS_FACTS = ClusterFacts(
    machines={
        "gpu-cp-0": MachineFacts(
            private_ip="10.0.1.10",
            public_ip="203.0.113.10",
            public_name="ec2-203-0-113-10.compute.amazonaws.com",
        ),
        "gpu-cp-1": MachineFacts(private_ip="10.0.1.11", public_ip="203.0.113.11"),
        "gpu-cp-2": MachineFacts(private_ip="10.0.1.12", public_ip="203.0.113.12"),
        "gpu-workers-0": MachineFacts(private_ip="10.0.1.20"),
        "gpu-workers-1": MachineFacts(private_ip="10.0.1.21"),
    },
    nlb_dns="gpu-nlb-0123456789.elb.us-west-2.amazonaws.com",
)
SSH_FACTS = ClusterFacts(
    machines={
        f"lab-cp-{i}": MachineFacts(private_ip=f"10.77.0.1{i + 1}", interface="host0")
        for i in range(3)
    }
)


def load_text(tmp_path: Path, name: str, text: str):
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    return load_file(path)


def render_case(tmp_path: Path, name: str) -> Bundle:
    env = load_text(tmp_path, name, CASES[name])
    topology, plan = api.plan(env)
    facts = {"aws-ha": AWS_FACTS, "ssh-ha": SSH_FACTS}.get(name, ClusterFacts())
    return render_environment(env, topology, plan, facts)


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Bundle]:
    tmp = tmp_path_factory.mktemp("specs")
    return {name: render_case(tmp, name) for name in CASES}
