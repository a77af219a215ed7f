"""Every rendered artifact through a real validator: shellcheck, bash -n, the typed kubeadm
v1beta4 model, Kubernetes schemas, haproxy -c and keepalived -t (the real kubeadm's own check
is in test_kubeadm_real)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

from clusterdeck import api
from clusterdeck.bootstrap import kubeadm
from clusterdeck.bootstrap.lbconfig import ConfigValueError, LoadBalancerConfig
from clusterdeck.bootstrap.render import Bundle, render_environment, write_bundle
from tests.bootstrap.conftest import SSH_FACTS, SSH_HA, load_text

K8S_SCHEMA_VERSION = "1.33.0"


def _need(tool: str) -> str:
    path = shutil.which(tool) or (
        f"/usr/sbin/{tool}" if Path(f"/usr/sbin/{tool}").exists() else None
    )
    if path is None:
        pytest.fail(f"{tool} is not installed (see .ci/apt-packages.txt)")
    return path


def _files(bundles: dict[str, Bundle], suffix: str) -> list[tuple[str, str, str]]:
    return [
        (case, node, rel)
        for case, b in bundles.items()
        for node, files in b.files.items()
        for rel in files
        if rel.endswith(suffix)
    ]


def test_every_script_passes_shellcheck_and_bash_n(bundles, tmp_path) -> None:
    paths: list[str] = []
    for case, bundle in bundles.items():
        write_bundle(bundle, tmp_path / case)
        paths += [str(p) for p in (tmp_path / case).glob("*/phases/*.sh")]
    assert len(paths) > 40
    for path in paths:
        subprocess.run(["bash", "-n", path], check=True)
    result = subprocess.run(
        [_need("shellcheck"), "--severity=style", *paths], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout[-4000:]


def test_shellcheck_catches_a_broken_script(tmp_path) -> None:
    bad = tmp_path / "bad.sh"
    bad.write_text("#!/usr/bin/env bash\nset -euo pipefail\nrm -rf $DIR/x\n")
    assert subprocess.run([_need("shellcheck"), str(bad)], capture_output=True).returncode != 0


def test_kubeadm_configs_read_back_as_typed_v1beta4(bundles) -> None:
    found = _files(bundles, "kubeadm-init.yaml") + _files(bundles, "kubeadm-join.yaml")
    assert len(found) == 3 + 6 + 4  # one init per cluster, one join per other node
    for case, node, rel in found:
        docs = kubeadm.parse(bundles[case].files[node][rel].content)
        assert all(
            d.api_version.startswith(("kubeadm.k8s.io/v1beta4", "kubelet"))  # type: ignore[attr-defined]
            for d in docs
        )


def test_typed_model_rejects_v1beta3_shapes() -> None:
    text = (
        "apiVersion: kubeadm.k8s.io/v1beta4\nkind: InitConfiguration\n"
        "nodeRegistration:\n  kubeletExtraArgs: {node-ip: 10.0.0.1}\n"
    )
    with pytest.raises(ValueError, match="kubeletExtraArgs"):
        kubeadm.parse(text)
    with pytest.raises(ValueError, match="controlPlaneEndpiont"):
        kubeadm.parse(
            "apiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\n"
            "clusterName: x\nkubernetesVersion: v1.33.4\ncontrolPlaneEndpiont: a:1\n"
            "networking: {serviceSubnet: 10.96.0.0/12, podSubnet: 10.244.0.0/16}\n"
        )


@pytest.fixture
def netns_with_host0():
    """keepalived -t checks that the named interface exists: give it a namespace that has one."""
    name = f"cdbt-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(
            ["ip", "-n", name, "link", "add", "host0", "type", "veth", "peer", "name", "peer0"],
            check=True,
        )
        yield ["ip", "netns", "exec", name]
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=True)


def test_haproxy_and_keepalived_accept_rendered_configs(
    bundles, tmp_path, netns_with_host0
) -> None:
    files = bundles["ssh-ha"].files
    for node in ("lab-cp-0", "lab-cp-1", "lab-cp-2"):
        ha = tmp_path / f"{node}-haproxy.cfg"
        ha.write_text(files[node]["files/haproxy.cfg"].content)
        ka = tmp_path / f"{node}-keepalived.conf"
        ka.write_text(files[node]["files/keepalived.conf"].content)
        result = subprocess.run(
            [_need("haproxy"), "-c", "-f", str(ha)], capture_output=True, text=True
        )
        assert result.returncode == 0, result.stderr
        result = subprocess.run(
            [*netns_with_host0, _need("keepalived"), "-t", "-f", str(ka)],
            capture_output=True,
            text=True,
        )
        assert result.returncode == 0, result.stdout + result.stderr
    # the validators do catch mistakes
    (tmp_path / "bad.cfg").write_text(
        files["lab-cp-0"]["files/haproxy.cfg"].content.replace("mode tcp", "mode tpc")
    )
    assert (
        subprocess.run(
            [_need("haproxy"), "-c", "-f", str(tmp_path / "bad.cfg")], capture_output=True
        ).returncode
        != 0
    )
    (tmp_path / "bad.conf").write_text(
        re.sub(
            r"virtual_router_id \d+",
            "virtual_router_id 999",
            files["lab-cp-0"]["files/keepalived.conf"].content,
        )
    )
    assert (
        subprocess.run(
            [*netns_with_host0, _need("keepalived"), "-t", "-f", str(tmp_path / "bad.conf")],
            capture_output=True,
        ).returncode
        != 0
    )


def test_load_balancer_config_refuses_unsafe_values() -> None:
    base = dict(
        node="n",
        vip="10.0.0.100",
        api_port=8443,
        router_id=51,
        own_address="10.0.0.1",
        peers=["10.0.0.2"],
        priority=200,
        backends=[],
    )
    with pytest.raises(ValueError):
        LoadBalancerConfig(interface="eth0", **{**base, "router_id": 256})
    with pytest.raises(ConfigValueError, match="eth0; reboot"):
        LoadBalancerConfig(interface="eth0; reboot", **base).keepalived_conf()
    with pytest.raises(ValueError):
        LoadBalancerConfig(interface="eth0", **{**base, "vip": "not-an-ip"}).keepalived_conf()


def test_containerd_config_uses_systemd_cgroups_and_nvidia_only_on_gpu_nodes(bundles) -> None:
    gpu = tomllib.loads(bundles["aws-ha"].files["gpu-workers-0"]["files/containerd.toml"].content)
    cp = tomllib.loads(bundles["aws-ha"].files["gpu-cp-0"]["files/containerd.toml"].content)
    cri = "io.containerd.grpc.v1.cri"
    for conf in (gpu, cp):
        runc = conf["plugins"][cri]["containerd"]["runtimes"]["runc"]
        assert runc["options"]["SystemdCgroup"] is True
    assert (
        gpu["plugins"][cri]["containerd"]["runtimes"]["nvidia"]["options"]["BinaryName"]
        == "/usr/bin/nvidia-container-runtime"
    )
    assert gpu["plugins"][cri]["enable_cdi"] is True
    assert "nvidia" not in cp["plugins"][cri]["containerd"]["runtimes"]


def test_vrrp_router_id_is_per_environment_and_settable(tmp_path) -> None:
    """Two environments on one network do not share a VRRP router id; the file can set it."""
    from tests.bootstrap.conftest import SSH_HA, load_text, render_case

    def router_id(bundle) -> str:
        node = next(n for n in bundle.files if n.endswith("-cp-0"))
        conf = bundle.files[node]["files/keepalived.conf"].content
        return next(line.split()[1] for line in conf.splitlines() if "virtual_router_id" in line)

    lab = render_case(tmp_path, "ssh-ha")
    other_env = load_text(tmp_path, "other", SSH_HA.replace("name: lab", "name: lab2"))
    from clusterdeck import api
    from clusterdeck.bootstrap.render import render_environment

    topology, plan = api.plan(other_env)
    other = render_environment(other_env, topology, plan)
    assert router_id(lab) != router_id(other)
    assert 1 <= int(router_id(lab)) <= 255
    pinned_env = load_text(
        tmp_path,
        "pinned",
        SSH_HA.replace("vip: 10.77.0.100}", "vip: 10.77.0.100, vrrpRouterId: 77}"),
    )
    topology, plan = api.plan(pinned_env)
    assert router_id(render_environment(pinned_env, topology, plan)) == "77"


def test_keepalived_accepts_a_control_plane_of_one_behind_its_vip(
    tmp_path, netns_with_host0
) -> None:
    """highAvailability from the first day with one control plane (to grow with apply): no
    peers yet, so no unicast block, which keepalived would refuse empty."""
    one = SSH_HA.replace(
        "hosts: [{address: 10.77.0.11}, {address: 10.77.0.12}, {address: 10.77.0.13}]",
        "hosts: [{address: 10.77.0.11}]",
    )
    env = load_text(tmp_path, "one", one)
    topology, plan = api.plan(env)
    files = render_environment(env, topology, plan, SSH_FACTS).files["lab-cp-0"]
    conf = files["files/keepalived.conf"].content
    assert "unicast_peer" not in conf and "10.77.0.100/32" in conf
    ka = tmp_path / "keepalived.conf"
    ka.write_text(conf)
    result = subprocess.run(
        [*netns_with_host0, _need("keepalived"), "-t", "-f", str(ka)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "server lab-cp-0 10.77.0.11:6443" in files["files/haproxy.cfg"].content


def test_upgrade_scripts_pass_shellcheck_and_run_the_right_kubeadm(bundles, tmp_path) -> None:
    """The online form (pkgs.k8s.io; the offline one is checked with the real bundle in
    test_kubeadm_real): apply on the first control plane only."""
    from clusterdeck.bootstrap.render import upgrade_scripts

    paths = []
    for case in ("ssh-ha", "aws-ha"):
        for node, cfg in bundles[case].configs.items():
            for phase, text in upgrade_scripts(cfg).items():
                path = tmp_path / f"{case}-{node}-{phase}.sh"
                path.write_text(text)
                paths.append(str(path))
                if phase == "kubeadm-upgrade":
                    mode = "apply" if cfg.first_control_plane else "node"
                    assert f"MODE='{mode}'" in text
    for path in paths:
        subprocess.run(["bash", "-n", path], check=True)
    result = subprocess.run(
        [_need("shellcheck"), "--severity=style", *paths], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout[-4000:]
