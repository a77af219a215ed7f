"""A rebooted stateless node and the steward, through a real shared directory: the node asks,
waits out a refusal (and says why, where ``status`` can read it), and joins once the steward
has removed its leftovers; the steward refuses a request from the wrong address."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from clusterdeck.agent import material, rejoin
from clusterdeck.bootstrap.kubeadm_build import JoinMaterial
from clusterdeck.coordination import SharedDirectory, reports
from clusterdeck.errors import PermanentError
from clusterdeck.transport import Endpoint


def test_only_a_node_that_had_joined_asks_for_cleanup(tmp_path: Path) -> None:
    coord = SharedDirectory(tmp_path / "shared")
    first, had_joined = rejoin.start_boot(coord, "w0", "boot-1")
    assert (first.boots, had_joined) == (1, False)
    rejoin.joined(coord, first, rejoin=False)
    second, had_joined = rejoin.start_boot(coord, "w0", "boot-2")
    assert (second.boots, had_joined) == (2, True)
    saved = reports.read(coord, "w0")
    assert saved is not None and saved.state == "booting" and saved.boots == 2


def test_a_boot_that_got_as_far_as_joining_asks_too(tmp_path: Path) -> None:
    coord = SharedDirectory(tmp_path / "shared")
    first, _ = rejoin.start_boot(coord, "cp-1", "boot-1")
    first.state = "joining"  # its etcd member may have been added before it went down
    reports.save(coord, first)
    _, had_joined = rejoin.start_boot(coord, "cp-1", "boot-2")
    assert had_joined


def test_an_agent_restart_in_the_same_boot_is_not_a_reboot(tmp_path: Path) -> None:
    mark = tmp_path / "run" / "boot"
    boot_id, restarted = rejoin.this_boot(mark)
    assert not restarted and mark.read_text().strip() == boot_id
    assert rejoin.this_boot(mark) == (boot_id, True)
    coord = SharedDirectory(tmp_path / "shared")
    report, _ = rejoin.start_boot(coord, "cp-1", boot_id)
    rejoin.joined(coord, report, rejoin=False)
    again, had_joined = rejoin.start_boot(coord, "cp-1", boot_id)
    assert not had_joined and again.boots == 1 and again.state == "joined"
    again.state = "waiting"  # stopped while waiting for its cleanup: it asks again
    reports.save(coord, again)
    assert rejoin.start_boot(coord, "cp-1", boot_id)[1] is True


def test_a_refusal_is_reported_and_waited_out_until_the_steward_is_done(tmp_path: Path) -> None:
    coord = SharedDirectory(tmp_path)
    report, _ = rejoin.start_boot(coord, "cp-2", "boot-1")
    steward = coord.claim("steward", "cp-0", 3600)
    assert steward is not None
    logs: list[str] = []
    seen: list[reports.Report] = []

    def answer(_: float) -> None:
        """Each look: the steward answers this boot, refused twice, then done."""
        request = json.loads(coord.get(rejoin.request_key("cp-2")) or b"{}")
        assert request["address"] == "10.0.0.12"
        saved = reports.read(coord, "cp-2")
        assert saved is not None
        seen.append(saved)
        done = len(seen) >= 3
        answer = {"boot": request["boot"], "result": "done" if done else "refused"}
        answer["reason"] = "" if done else "removing would leave 1 healthy of 2: quorum needs 2"
        coord.put(rejoin.answer_key("cp-2"), json.dumps(answer).encode())

    coord.put(  # an answer to an earlier boot must not count
        rejoin.answer_key("cp-2"), json.dumps({"boot": "old", "result": "done"}).encode()
    )
    done = rejoin.ask_cleanup(
        coord, report, "10.0.0.12", logs.append, lease_seconds=20, sleep=answer
    )
    assert done["result"] == "done" and done["boot"] == report.boot
    assert seen[0].state == "waiting"
    assert seen[1].state == "refused" and "quorum needs 2" in (seen[1].refusal or "")
    assert [m for m in logs if "refused" in m] == [  # said once, not on every look
        "cp-2: rejoin refused, waiting: removing would leave 1 healthy of 2: quorum needs 2"
    ]
    final = reports.read(coord, "cp-2")
    assert final is not None and final.state == "joining" and final.refusal is None
    assert [e["kind"] for e in final.events] == ["boot", "refused", "rejoin"]


def test_without_any_steward_the_wait_is_reported_with_what_to_do(
    tmp_path: Path, monkeypatch
) -> None:
    coord = SharedDirectory(tmp_path)
    report, _ = rejoin.start_boot(coord, "cp-0", "boot-2")
    clock = [0.0]
    looks: list[reports.Report] = []

    def later(_: float) -> None:
        clock[0] += 30.0
        saved = reports.read(coord, "cp-0")
        assert saved is not None
        looks.append(saved)
        if saved.state == "refused":  # a steward appears and answers done
            request = json.loads(coord.get(rejoin.request_key("cp-0")) or b"{}")
            coord.claim("steward", "cp-1", 3600)
            coord.put(
                rejoin.answer_key("cp-0"),
                json.dumps({"boot": request["boot"], "result": "done"}).encode(),
            )

    monkeypatch.setattr(rejoin.time, "monotonic", lambda: clock[0])
    rejoin.ask_cleanup(coord, report, "10.0.0.10", print, lease_seconds=20, sleep=later)
    refused = [r for r in looks if r.state == "refused"]
    assert refused, [r.state for r in looks]
    assert "no control plane has served as steward for 60 s" in (refused[0].refusal or "")
    assert "reset" in (refused[0].refusal or "")


def test_the_steward_refuses_a_request_from_another_address(tmp_path: Path) -> None:
    coord = SharedDirectory(tmp_path)
    request = {"boot": "b1", "address": "10.0.0.121"}
    coord.put(rejoin.request_key("w0"), json.dumps(request).encode())
    logs: list[str] = []
    done = rejoin.serve_requests(
        {"w0": ("10.0.0.12", False)}, coord, Endpoint(host="10.0.0.11"), logs.append
    )
    assert done == []
    answer = json.loads(coord.get(rejoin.answer_key("w0")) or b"{}")
    assert answer["result"] == "refused" and answer["boot"] == "b1"
    assert answer["reason"] == "the request came from 10.0.0.121, but w0 is 10.0.0.12: refused"


def test_the_steward_does_not_redo_a_boot_it_answered_done(tmp_path: Path, monkeypatch) -> None:
    coord = SharedDirectory(tmp_path)
    coord.put(rejoin.request_key("w0"), json.dumps({"boot": "b1", "address": "10.0.0.12"}).encode())
    coord.put(rejoin.answer_key("w0"), json.dumps({"boot": "b1", "result": "done"}).encode())

    def must_not_run(*args: object) -> dict[str, object]:
        raise AssertionError("cleaned up twice for one boot")

    monkeypatch.setattr(rejoin, "clean_up", must_not_run)
    assert rejoin.serve_requests({"w0": ("10.0.0.12", False)}, coord, Endpoint("x"), print) == []


def test_a_refused_clean_up_is_answered_with_its_reason(tmp_path: Path, monkeypatch) -> None:
    coord = SharedDirectory(tmp_path)
    coord.put(
        rejoin.request_key("cp-1"), json.dumps({"boot": "b2", "address": "10.0.0.11"}).encode()
    )

    def no_quorum(*args: object) -> dict[str, object]:
        raise PermanentError("removing etcd member cp-1 would leave 1 healthy of 2: refused")

    monkeypatch.setattr(rejoin, "clean_up", no_quorum)
    logs: list[str] = []
    rejoin.serve_requests({"cp-1": ("10.0.0.11", True)}, coord, Endpoint("x"), logs.append)
    rejoin.serve_requests({"cp-1": ("10.0.0.11", True)}, coord, Endpoint("x"), logs.append)
    answer = json.loads(coord.get(rejoin.answer_key("cp-1")) or b"{}")
    assert answer["result"] == "refused" and "1 healthy of 2" in answer["reason"]
    assert len(logs) == 1  # the same refusal is logged once, answered every round


def test_join_material_is_private_and_not_renewed_while_fresh(tmp_path: Path, monkeypatch) -> None:
    coord = SharedDirectory(tmp_path)
    ca = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    monkeypatch.setattr(material, "ca_cert_hash", lambda _: "sha256:" + "ab" * 32)
    secret = JoinMaterial(
        token="abcdef.0123456789abcdef", ca_cert_hash="", certificate_key="k" * 64
    )
    material.publish(coord, secret, ca)
    files = [p for p in tmp_path.rglob("*") if p.is_file() and "join-material" in p.name]
    assert files and all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in files)
    found = material.wait_for(coord, "w0", print, wait=1)
    assert found.token == secret.token and found.certificate_key == secret.certificate_key
    assert found.ca_cert_hash == "sha256:" + "ab" * 32

    def no_kubeadm(*args: object, **kw: object) -> str:
        raise AssertionError("renewed material that has 110 minutes left")

    monkeypatch.setattr(material, "_secret_output", no_kubeadm)
    assert (
        material.renew_if_due(
            coord, print, certificate_key=True, address="10.0.0.10", version="v1.37.2"
        )
        is False
    )


def test_join_material_close_to_expiry_is_renewed(tmp_path: Path, monkeypatch) -> None:
    coord = SharedDirectory(tmp_path)
    monkeypatch.setattr(material, "ca_cert_hash", lambda _: "sha256:" + "cd" * 32)
    old = JoinMaterial(token="abcdef.0123456789abcdef", ca_cert_hash="", certificate_key=None)
    material.publish(coord, old, b"ca", ttl=material.RENEW_BEFORE - 60)
    ran: list[list[str]] = []

    def kubeadm(argv: list[str], what: str) -> str:
        ran.append(argv)
        return "ghijkl.0123456789abcdef\n" if "token" in argv else ""

    ca = tmp_path / "ca.crt"
    ca.write_bytes(b"ca")
    monkeypatch.setattr(material, "_secret_output", kubeadm)
    monkeypatch.setattr(material, "CA", ca)
    logs: list[str] = []
    assert (
        material.renew_if_due(
            coord, logs.append, certificate_key=False, address="10.0.0.10", version="v1.37.2"
        )
        is True
    )
    assert [a[:3] for a in ran] == [["kubeadm", "token", "create"]]
    assert material.wait_for(coord, "w0", print, wait=1).token == "ghijkl.0123456789abcdef"
    assert not any("ghijkl" in line for line in logs)  # the token is never logged


def test_waiting_for_material_that_never_comes_names_the_node(tmp_path: Path) -> None:
    with pytest.raises(PermanentError, match="w0: no join material after 0 s"):
        material.wait_for(SharedDirectory(tmp_path), "w0", print, wait=0)


def test_the_certificate_key_is_not_replaced_under_a_joining_control_plane(
    tmp_path: Path, monkeypatch
) -> None:
    coord = SharedDirectory(tmp_path)
    monkeypatch.setattr(material, "ca_cert_hash", lambda _: "sha256:" + "ef" * 32)
    old = JoinMaterial(token="abcdef.0123456789abcdef", ca_cert_hash="", certificate_key="a" * 64)
    material.publish(coord, old, b"ca", ttl=material.RENEW_BEFORE - 60)
    ran: list[list[str]] = []
    configs: list[str] = []

    def kubeadm(argv: list[str], what: str) -> str:
        ran.append(argv)
        if "--config" in argv:
            configs.append(Path(argv[argv.index("--config") + 1]).read_text())
        if "token" in argv:
            return "ghijkl.0123456789abcdef"
        return "b" * 64 if "certificate-key" in argv else ""

    ca = tmp_path / "ca.crt"
    ca.write_bytes(b"ca")
    monkeypatch.setattr(material, "_secret_output", kubeadm)
    monkeypatch.setattr(material, "CA", ca)
    joining = coord.claim("join-control-plane", "cp-2", 3600)
    assert joining is not None
    args = {"certificate_key": True, "address": "10.0.0.10", "version": "v1.37.2"}
    assert material.renew_if_due(coord, print, **args) is False and ran == []
    coord.release(joining)
    assert material.renew_if_due(coord, print, **args) is True
    upload = next(a for a in ran if "upload-certs" in a)
    assert "b" * 64 not in " ".join(upload)  # the key is in the 0600 file, not on the command line
    (config,) = configs
    assert "certificateKey: " + "b" * 64 in config
    assert 'advertiseAddress: "10.0.0.10"' in config and "kubernetesVersion: v1.37.2" in config
    renewed = material.wait_for(coord, "cp-3", print, wait=1)
    assert renewed.certificate_key == "b" * 64


def test_the_vip_name_is_added_to_etc_hosts_once(tmp_path: Path) -> None:
    from clusterdeck.agent.local import merge_hosts

    entry, hosts = tmp_path / "entry", tmp_path / "hosts"
    entry.write_text("192.0.2.100 stateless-api\n")
    hosts.write_text("127.0.0.1 localhost\n192.0.2.1000 stateless-api\n")  # not the same line
    logs: list[str] = []
    assert merge_hosts(entry, hosts, logs.append) == ["192.0.2.100 stateless-api"]
    assert merge_hosts(entry, hosts, logs.append) == []  # a restart adds nothing
    assert hosts.read_text().splitlines()[-1] == "192.0.2.100 stateless-api"
