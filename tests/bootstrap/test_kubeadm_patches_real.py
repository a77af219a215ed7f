"""``spec.kubernetes.config`` checked by the real kubeadm at ``validate`` (and every command
that loads the file), through the CLI as users run it.

The kubeadm is the offline bundle's own, built from k8s.io/kubernetes by
``scripts/kubernetes-artifacts.sh``; a file without an offline bundle finds one on the PATH.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.cluster import build_bundle
from tests.helpers import run_cli


@pytest.fixture(scope="module")
def bundle() -> Path:
    return build_bundle()


def write(tmp_path: Path, config: str, *, bundle: Path | None) -> Path:
    offline = f"  offline: {{bundle: {bundle}}}\n" if bundle else ""
    text = (
        "apiVersion: clusterdeck.dev/v1alpha1\n"
        "kind: Environment\n"
        "metadata: {name: dra}\n"
        "spec:\n"
        "  provider: ssh\n"
        "  cluster:\n"
        "    controlPlane:\n"
        "      hosts: [{address: 192.0.2.11}, {address: 192.0.2.12}, {address: 192.0.2.13}]\n"
        "    workers:\n"
        "      hosts: [{address: 192.0.2.21}]\n"
        "    highAvailability: {enabled: true, loadBalancer: keepalived, vip: 192.0.2.100}\n"
        "  kubernetes:\n"
        "    version: v1.37.2\n"
        "    cni: flannel\n"
        "    config:\n" + "".join(f"      {line}\n" for line in config.strip("\n").splitlines())
    ) + offline
    path = tmp_path / "env.yaml"
    path.write_text(text)
    return path


VALID = """
featureGates: {DynamicResourceAllocation: true, DRAPartitionableDevices: true}
apiServer: {extraArgs: {audit-log-maxage: "30"}}
scheduler: {extraArgs: {v: "2"}}
kubelet: {extraArgs: {max-pods: "80"}}
clusterConfiguration:
  apiServer:
    extraArgs: [{name: audit-log-maxbackup, value: "3"}]
  controllerManager:
    extraArgs: [{name: terminated-pod-gc-threshold, value: "100"}]
initConfiguration:
  skipPhases: [addon/kube-proxy]
joinConfiguration:
  nodeRegistration: {imagePullPolicy: Never}
kubeletConfiguration: {maxPods: 80, serializeImagePulls: false}
"""


def test_valid_fragments_pass_the_real_kubeadm(
    bundle: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    res = run_cli(
        ["validate", "-f", str(write(tmp_path, VALID, bundle=bundle))], capsys, monkeypatch
    )
    assert res.code == 0, res.err
    assert "valid" in res.out and "warning" not in res.err


@pytest.mark.parametrize(
    ("config", "path", "said"),
    [
        (  # a misspelt field: only kubeadm's strict decoding knows the field list
            "clusterConfiguration: {apiServer: {timeoutForControlPlan: 4m}}",
            "spec.kubernetes.config.clusterConfiguration",
            'unknown field "apiServer.timeoutForControlPlan"',
        ),
        (  # v1beta3's map form of extraArgs, which v1beta4 no longer reads
            "clusterConfiguration: {scheduler: {extraArgs: {v: '2'}}}",
            "spec.kubernetes.config.clusterConfiguration",
            "ClusterConfiguration",
        ),
        (
            "kubeletConfiguration: {maxPods: eighty}",
            "spec.kubernetes.config.kubeletConfiguration",
            "KubeletConfiguration.maxPods",
        ),
        (
            "joinConfiguration: {nodeRegistration: {imagePullPolicy: Sometimes}}",
            "spec.kubernetes.config",
            "imagePullPolicy",
        ),
    ],
)
def test_fragments_the_real_kubeadm_refuses_fail_validate_naming_them(
    bundle: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    config: str,
    path: str,
    said: str,
) -> None:
    spec = write(tmp_path, config, bundle=bundle)
    res = run_cli(["validate", "-f", str(spec), "-o", "json"], capsys, monkeypatch)
    assert res.code == 2
    report = json.loads(res.out)
    assert report["errors"]
    for error in report["errors"]:  # one per refused document (a join: control plane, worker)
        assert error["path"] == path and said in error["message"], error
        assert "kubeadm" in error["message"]
    # every command that loads the file refuses it the same way, before doing anything
    res = run_cli(["render", "-f", str(spec), "-d", str(tmp_path / "out")], capsys, monkeypatch)
    assert res.code == 2 and said in res.err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("config", "path"),
    [
        (
            "clusterConfiguration: {networking: {podSubnet: 10.0.0.0/8}}",
            "spec.kubernetes.config.clusterConfiguration.networking.podSubnet",
        ),
        (
            "clusterConfiguration: {apiServer: {certSANs: [api.example.com]}}",
            "spec.kubernetes.config.clusterConfiguration.apiServer.certSANs",
        ),
        (
            "kubelet: {extraArgs: {node-ip: 10.9.9.9}}",
            "spec.kubernetes.config.kubelet.extraArgs.node-ip",
        ),
    ],
)
def test_fragments_that_override_clusterdecks_fields_are_refused_though_kubeadm_would_take_them(
    bundle: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    config: str,
    path: str,
) -> None:
    import subprocess

    from ruamel.yaml import YAML

    from clusterdeck.pipeline import kubeadm_check
    from clusterdeck.spec import check_bytes, kubeadm_patches

    spec = write(tmp_path, config, bundle=bundle)
    res = run_cli(["validate", "-f", str(spec), "-o", "json"], capsys, monkeypatch)
    assert res.code == 2
    assert [e["path"] for e in json.loads(res.out)["errors"]] == [path]
    # the override is well-formed kubeadm: only clusterdeck's ownership rule stops it
    env = check_bytes(write(tmp_path, "featureGates: {}", bundle=bundle).read_bytes()).environment
    assert env is not None
    raw = YAML(typ="safe").load(config)
    monkeypatch.setattr(kubeadm_patches, "findings", lambda _config: iter(()))
    forced = env.model_copy(
        update={
            "spec": env.spec.model_copy(
                update={
                    "kubernetes": env.spec.kubernetes.model_copy(
                        update={"config": kubeadm_patches.KubernetesConfig.model_validate(raw)}
                    )
                }
            )
        }
    )
    text = kubeadm_check.documents(forced)["InitConfiguration (first control plane)"]
    file = tmp_path / "forced.yaml"
    file.write_text(text)
    ran = subprocess.run(
        [str(bundle / "bin" / "kubeadm"), "config", "validate", "--config", str(file)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ran.returncode == 0, ran.stderr


def test_without_a_local_kubeadm_validate_says_the_nodes_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    res = run_cli(["validate", "-f", str(write(tmp_path, VALID, bundle=None))], capsys, monkeypatch)
    assert res.code == 0
    assert "no kubeadm" in res.err and "before kubeadm init or join" in res.err


def test_a_kubeadm_on_the_path_checks_files_without_a_bundle(
    bundle: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PATH", str(bundle / "bin"))
    spec = write(tmp_path, "kubeletConfiguration: {maxPods: eighty}", bundle=None)
    res = run_cli(["validate", "-f", str(spec)], capsys, monkeypatch)
    assert res.code == 2 and "KubeletConfiguration.maxPods" in res.err
