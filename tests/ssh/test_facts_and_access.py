"""Pure parts of the ssh provider: facts parsing, endpoints from records, the ssh command line."""

from __future__ import annotations

import shlex
import subprocess

from clusterdeck.model.records import ResourceRecord
from clusterdeck.providers.ssh import facts
from clusterdeck.providers.ssh.access import record_endpoint, split_host_port
from clusterdeck.providers.ssh.remote import known_hosts_text, ssh_invocation
from clusterdeck.transport import Endpoint, HostKey, SsmRoute

LSPCI_T4 = (
    "00:1e.0 3D controller [0302]: NVIDIA Corporation TU104GL [Tesla T4] [10de:1eb8] (rev a1)\n"
    "00:02.0 VGA compatible controller [0300]: Amazon.com, Inc. Device [1d0f:1111]\n"
)


def script_output(lspci: str | None) -> str:
    lines = [
        "os_id=ubuntu",
        "os_version=22.04",
        "os=Ubuntu 22.04.4 LTS",
        "arch=x86_64",
        "kernel=6.5.0-1014-aws",
        "cpus=4",
        "memory_kib=16093424",
        "hostname=ip-10-0-1-5",
        "addresses=10.0.1.5 172.17.0.1",
        "init=systemd",
    ]
    if lspci is None:
        lines.append("lspci=no")
    else:
        lines.append("lspci=yes")
        lines += [f"gpu={line}" for line in lspci.splitlines()]
    return "\n".join(lines) + "\n"


def test_facts_with_gpus_seen_by_lspci() -> None:
    found = facts.parse(script_output(LSPCI_T4))
    assert found["os"] == "Ubuntu 22.04.4 LTS" and found["os_id"] == "ubuntu"
    assert (found["arch"], found["cpus"], found["memory_mib"]) == ("x86_64", 4, 15716)
    assert found["addresses"] == ["10.0.1.5", "172.17.0.1"]
    assert found["nvidia_gpus"] == 1
    assert found["gpus"][0] == {
        "slot": "00:1e.0",
        "vendor": "nvidia",
        "pci_id": "10de:1eb8",
        "description": "3D controller [0302]: NVIDIA Corporation TU104GL [Tesla T4] "
        "[10de:1eb8] (rev a1)",
    }
    assert found["gpus"][1]["pci_id"] == "1d0f:1111"


def test_the_conntrack_limit_is_writable_fixed_or_unknown() -> None:
    for line, expected in (("writable", True), ("fixed", False), ("absent", None)):
        found = facts.parse(script_output(None) + f"conntrack_max={line}\n")
        assert found["conntrack_max_writable"] is expected


def test_missing_lspci_means_unknown_not_zero() -> None:
    found = facts.parse(script_output(None))
    assert found["gpus"] is None and found["nvidia_gpus"] is None
    assert "pciutils" in found["notes"][0]


def test_the_facts_script_runs_in_plain_sh() -> None:
    result = subprocess.run(
        ["sh", "-c", facts.FACTS_SCRIPT], capture_output=True, text=True, check=True, timeout=30
    )
    found = facts.parse(result.stdout)
    assert found["cpus"] and found["cpus"] >= 1 and found["arch"] not in ("", "unknown")


def record(data: dict[str, object], provider_id: str = "i-0abc") -> ResourceRecord:
    return ResourceRecord(
        environment="e",
        key="node/e-cp-0",
        kind="instance",
        provider_id=provider_id,
        data=data,
        created_at=0,
    )


def test_endpoints_from_store_records() -> None:
    direct = record_endpoint(
        record({"ssh_host": "203.0.113.7", "ssh_port": 22, "ssh_user": "ubuntu", "ssh_key": "/k"}),
        None,
    )
    assert (direct.host, direct.user, direct.keys, direct.jump) == (
        "203.0.113.7",
        "ubuntu",
        ("/k",),
        None,
    )
    jumped = record_endpoint(
        record({"ssh_host": "10.0.1.5", "ssh_user": "ubuntu", "bastion": "203.0.113.9:2200"}), None
    )
    assert jumped.jump is not None and (jumped.jump.host, jumped.jump.port) == ("203.0.113.9", 2200)
    ssm = record_endpoint(
        record({"reach": "ssm", "region": "us-west-2", "ssh_user": "ubuntu"}), None
    )
    assert ssm.ssm == SsmRoute("i-0abc", "us-west-2") and ssm.host == "i-0abc"
    assert split_host_port("[2001:db8::1]:2222") == ("2001:db8::1", 2222)


KEY = HostKey("ssh-ed25519", "AAAAC3NzaC1lZDI1NTE5AAAAIDq3")


def test_ssh_command_line_trusts_the_pinned_key_only() -> None:
    bastion = Endpoint("203.0.113.9", port=2200, user="jump", keys=("/kb",), name="bastion")
    node = Endpoint("10.0.1.5", user="ubuntu", keys=("/k",), name="e-cp-0", jump=bastion)
    keys = {bastion: HostKey("ssh-rsa", "AAAAB3Nza"), node: KEY}
    assert known_hosts_text(keys) == (
        "[203.0.113.9]:2200 ssh-rsa AAAAB3Nza\n10.0.1.5 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDq3\n"
    )
    argv = ssh_invocation(node, keys, "/tmp/kh", ["ls", "-l", "a b"])
    assert argv[0] == "ssh" and argv[-3:] == ["10.0.1.5", "--", "ls -l 'a b'"]
    options = [argv[i + 1] for i, a in enumerate(argv) if a == "-o"]
    assert "StrictHostKeyChecking=yes" in options and "UserKnownHostsFile=/tmp/kh" in options
    assert "HostKeyAlgorithms=ssh-ed25519" in options
    proxy = next(o for o in options if o.startswith("ProxyCommand="))
    words = shlex.split(proxy.removeprefix("ProxyCommand="))
    assert words[-3:] == ["-W", "%h:%p", "203.0.113.9"]
    assert "StrictHostKeyChecking=yes" in words and "/kb" in words and "2200" in words
    assert "HostKeyAlgorithms=rsa-sha2-512,rsa-sha2-256,ssh-rsa" in words
    shell = ssh_invocation(
        Endpoint("h", user="u"), {Endpoint("h", user="u"): KEY}, "/tmp/kh", ["uptime; df -h"]
    )
    assert shell[-1] == "uptime; df -h"
    ssm_node = Endpoint("i-0abc", user="ubuntu", ssm=SsmRoute("i-0abc", "us-west-2"))
    via_ssm = ssh_invocation(ssm_node, {ssm_node: KEY}, "/tmp/kh")
    proxy = next(a for a in via_ssm if a.startswith("ProxyCommand="))
    assert "clusterdeck.transport.ssm_proxy i-0abc us-west-2 22" in proxy
