"""``kubeadm init --dry-run`` with the configuration clusterdeck renders, on a full lab host;
and ``create`` after a kubeadm init that failed halfway (files written, no success recorded).

The host is prepared by clusterdeck's own pipeline pieces, as ``create`` would: the phase
bundle and the offline bundle are sent (as the sudoer, staged in its home, then moved with
sudo), and the os-prep, containerd and kube-packages phases run through ``sudo -n``. Then the
real kubeadm does everything ``init`` would, preflight included, without changing the host.
A login without passwordless sudo is refused in one line.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from clusterdeck import api
from clusterdeck.bootstrap import facts as bootstrap_facts
from clusterdeck.bootstrap.nodeconfig import MachineFacts
from clusterdeck.bootstrap.render import ClusterFacts, render_environment
from clusterdeck.bundle.manifest import Bundle, open_checked
from clusterdeck.pipeline import actions, offline
from clusterdeck.providers.ssh import facts
from clusterdeck.spec import load_file
from clusterdeck.spec.models import DEFAULT_KUBERNETES_VERSION
from clusterdeck.transport import Command, Connections
from clusterdeck.transport.errors import SudoRefused
from tests.e2e import cluster as real
from tests.e2e.client import cli
from tests.lab import full
from tests.lab.fixtures import endpoint
from tests.lab.light import Lab, LabHost

pytestmark = [pytest.mark.lab, pytest.mark.slow]


def _spec(tmp_path: Path, lab: Lab, host: LabHost, name: str, bundle_path: Path) -> Path:
    spec = tmp_path / f"{name}.yaml"
    spec.write_text(f"""\
apiVersion: clusterdeck.dev/v1alpha1
kind: Environment
metadata: {{name: {name}}}
spec:
  provider: ssh
  auth: {{privateKey: {lab.client_key}, username: {host.user}}}
  cluster:
    controlPlane: {{hosts: [{{address: {host.address}}}]}}
  kubernetes: {{version: {DEFAULT_KUBERNETES_VERSION}, cni: flannel, podCidr: 10.244.0.0/16}}
  offline: {{bundle: {bundle_path}}}
""")
    return spec


async def _prepare(
    conns: Connections, lab: Lab, host: LabHost, spec: Path, bundle: Bundle
) -> tuple[list[str], list[str], list[str]]:
    """What create does up to kubeadm: facts, both uploads (twice), os-prep, containerd and
    kube-packages through sudo. Returns the files sent the first time and the second time,
    and the log lines."""
    env = load_file(spec)
    topology, plan = api.plan(env)
    node = endpoint(lab, host)
    found = facts.parse((await conns.run(node, facts.script())).stdout)
    assert found["sudo"] == "yes" and found["cgroup"] in ("v1", "v2")
    machine = MachineFacts(
        private_ip=host.address,
        interface=found["interfaces"][host.address],
        cgroup=found["cgroup"],
        can_lower_oom_score=found["can_lower_oom_score"],
    )
    name = f"{env.name}-cp-0"
    cluster = bootstrap_facts.with_offline(ClusterFacts(machines={name: machine}), bundle)
    rendered = render_environment(env, topology, plan, cluster)
    cfg, files = rendered.configs[name], rendered.files[name]
    assert cfg.offline is not None
    log: list[str] = []
    await actions.upload_bundle(conns, node, files, log.append)
    sent = await offline.upload_offline(conns, node, bundle, cfg.offline, log.append)
    again = await offline.upload_offline(conns, node, bundle, cfg.offline, log.append)
    for entry in cfg.phases[:3]:
        assert entry.name in ("os-prep", "containerd", "kube-packages")
        await actions.run_phase(
            conns, node, name, entry.name, files[entry.script].content, log.append, timeout=600
        )
    return sent, again, log


INIT_CONFIG = "/var/lib/clusterdeck/bundle/files/kubeadm-init.yaml"


def test_kubeadm_init_dry_run_on_a_prepared_host(lab: Lab, tmp_path: Path) -> None:
    if full.require_full_tools():
        pytest.skip(full.require_full_tools() or "")
    bundle_path = real.build_bundle()
    (host,) = real.boot(lab, 1)
    try:
        spec = _spec(tmp_path, lab, host, "dry", bundle_path)
        bundle = open_checked(bundle_path, DEFAULT_KUBERNETES_VERSION, "flannel")

        # an upload interrupted halfway: the first MB of the kubelet already staged
        staged = f"/home/{host.user}/.clusterdeck/offline-staging/bin/kubelet.part"
        host.exec(["runuser", "-u", host.user, "--", "mkdir", "-p", staged.rsplit("/", 1)[0]])
        with (bundle_path / "bin" / "kubelet").open("rb") as fh:
            (host.path / "state" / "var-lib-kubelet" / "part").write_bytes(fh.read(1 << 20))
        host.exec(["sh", "-c", f"mv /var/lib/kubelet/part {staged} && chown {host.user} {staged}"])

        async def go() -> tuple[int, str]:
            async with Connections() as conns:
                sent, again, log = await _prepare(conns, lab, host, spec, bundle)
                assert "bin/kubeadm" in sent and "bin/kubelet" in sent
                assert any("bin/kubelet: resuming at 1 of" in line for line in log), log
                assert again == []  # checked by sha256 on the node: nothing sent twice
                res = await conns.run(
                    endpoint(lab, host),
                    Command(["kubeadm", "init", "--dry-run", "--config", INIT_CONFIG], root=True),
                    timeout=300,
                    check=False,
                )
                return res.exit_status, res.stdout + res.stderr

        status, output = asyncio.run(go())
        assert status == 0, output[-3000:]
        assert "[dryrun]" in output or "dry-run" in output
        # nothing was really initialised
        assert host.exec(["test", "-e", "/etc/kubernetes/admin.conf"], check=False).returncode != 0
    finally:
        lab.remove_host(host)


def test_a_login_without_passwordless_sudo_is_refused_in_one_line(lab: Lab) -> None:
    if full.require_full_tools():
        pytest.skip(full.require_full_tools() or "")
    (host,) = real.boot(lab, 1)
    try:
        host.exec(["rm", "-f", "/etc/sudoers.d/90-clusterdeck-lab"])

        async def go() -> str:
            async with Connections() as conns:
                found = facts.parse((await conns.run(endpoint(lab, host), facts.script())).stdout)
                assert found["sudo"] == "no"
                with pytest.raises(SudoRefused) as refused:
                    await conns.run(endpoint(lab, host), Command(["true"], root=True), timeout=30)
                return str(refused.value)

        message = asyncio.run(go())
        assert "passwordless sudo" in message and host.address in message
        assert "\n" not in message
    finally:
        lab.remove_host(host)


def test_create_after_an_init_that_failed_halfway_resets_and_inits_again(
    lab: Lab, tmp_path: Path
) -> None:
    """kubeadm init failed after writing its certificates, kubeconfigs and static-pod
    manifests: those files prove nothing, the re-run resets the node and inits again."""
    if full.require_full_tools():
        pytest.skip(full.require_full_tools() or "")
    bundle_path = real.build_bundle()
    (host,) = real.boot(lab, 1)
    try:
        spec = _spec(tmp_path, lab, host, "half", bundle_path)
        state = tmp_path / "state.db"
        bundle = open_checked(bundle_path, DEFAULT_KUBERNETES_VERSION, "flannel")

        async def half_init() -> None:
            async with Connections() as conns:
                await _prepare(conns, lab, host, spec, bundle)
                for phase in ("certs all", "kubeconfig all", "control-plane all"):
                    await conns.run(
                        endpoint(lab, host),
                        Command(
                            ["kubeadm", "init", "phase", *phase.split(), "--config", INIT_CONFIG],
                            root=True,
                        ),
                        timeout=120,
                    )

        asyncio.run(half_init())
        assert host.exec(["test", "-f", "/etc/kubernetes/admin.conf"]).returncode == 0
        res = cli(state, "create", "-f", str(spec), "--yes", "-k", str(tmp_path / "k"), timeout=900)
        assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
        log = (state.parent / "logs" / "half" / "half-cp-0.log").read_text()
        assert "did not succeed: kubeadm reset, then init again" in log
        kubectl = real.Kubectl(bundle_path / "bin" / "kubectl", tmp_path / "k")
        (item,) = kubectl.json("get", "nodes")["items"]
        ready = [c for c in item["status"]["conditions"] if c["type"] == "Ready"]
        assert ready[0]["status"] == "True"
        done = host.exec(["test", "-f", "/var/lib/clusterdeck/done/kubeadm-init"], check=False)
        assert done.returncode == 0  # success recorded now
    finally:
        lab.remove_host(host)
