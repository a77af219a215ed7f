"""Fan-out benchmark: the same four-step task on N light lab hosts by clusterdeck, pyinfra, Ansible.

Run as root on the lab machine:  .venv/bin/python -m bench.fanout [--hosts 100]

Every tool does, on every host: gather facts, upload a file, run a script that hashes the file
into a result file, read the result back. All three trust the same host keys strictly (no tool
runs with host key checking off), run with as much parallelism as hosts, and are started as
their own process, so interpreter start-up counts for each. Ansible runs with forks=N,
pipelining and ControlPersist, and its smallest fact subset; pyinfra with --parallel N.
After each tool the bench checks every host's result file directly, so a tool that skipped
work cannot look fast. Prints the three wall times and the ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

PAYLOAD = b"clusterdeck fan-out bench payload\n" * 200
SCRIPT = """#!/bin/sh
set -eu
sum=$(sha256sum /tmp/cd-bench-payload | cut -d' ' -f1)
echo "$(hostname) $sum" > /tmp/cd-bench-result
"""
RESULT = "/tmp/cd-bench-result"
EXPECTED_SUM = hashlib.sha256(PAYLOAD).hexdigest()


# clusterdeck (run in its own process by the bench) ---------------------------------------
def clusterdeck_run(inventory_path: str) -> None:
    from clusterdeck.engine import Executor, Step, StepContext
    from clusterdeck.providers.ssh import facts
    from clusterdeck.state import SqliteStore
    from clusterdeck.transport import Command, Connections, Endpoint, PinnedHostKeys, Script

    inventory = json.loads(Path(inventory_path).read_text())
    work = Path(inventory["work"])
    store = SqliteStore(work / "clusterdeck-state.db")
    store.save_environment("bench", "ssh", {})
    for host in inventory["hosts"]:
        key_type, body = host["host_key"].split()
        store.pin_host_key("bench", host["address"], 22, key_type, body)
    script = Script(SCRIPT, name="work")

    async def main() -> int:
        async with Connections(PinnedHostKeys(store, "bench")) as pool:
            steps: list[Step] = []
            for host in inventory["hosts"]:
                node = Endpoint(
                    host["address"], user="root", keys=(inventory["key"],), name=host["name"]
                )

                def chain(node: Endpoint) -> list[Step]:
                    async def gather(ctx: StepContext) -> dict[str, Any]:
                        result = await pool.run(node, facts.script(), output=ctx.log)
                        return facts.parse(result.stdout)

                    async def upload(ctx: StepContext) -> None:
                        conn = await pool.get(node)
                        await conn.upload("/tmp/cd-bench-payload", PAYLOAD, output=ctx.log)

                    async def run_script(ctx: StepContext) -> None:
                        await pool.run(node, script, output=ctx.log)

                    async def read(ctx: StepContext) -> str:
                        result = await pool.run(node, Command(["cat", RESULT]), output=ctx.log)
                        return result.stdout

                    n = node.name
                    return [
                        Step(f"{n}/facts", gather, subject=n, name="facts"),
                        Step(f"{n}/upload", upload, subject=n, name="upload"),
                        Step(
                            f"{n}/script",
                            run_script,
                            subject=n,
                            name="script",
                            needs=[f"{n}/upload"],
                        ),
                        Step(
                            f"{n}/read",
                            read,
                            subject=n,
                            name="read",
                            needs=[f"{n}/script", f"{n}/facts"],
                        ),
                    ]

                steps += chain(node)
            report = await Executor(environment="bench", log_root=work / "logs").run(steps)
        bad = {k: str(v) for k, v in report.failed.items()}
        if bad:
            print(json.dumps(bad)[:2000], file=sys.stderr)
            return 1
        return 0

    sys.exit(asyncio.run(main()))


# ansible ------------------------------------------------------------------------------------
def ansible_files(work: Path, inventory: dict[str, Any]) -> list[str]:
    adir = work / "ansible"
    adir.mkdir()
    lines = ["[lab]"] + [f"{h['name']} ansible_host={h['address']}" for h in inventory["hosts"]]
    lines += [
        "",
        "[lab:vars]",
        "ansible_user=root",
        f"ansible_ssh_private_key_file={inventory['key']}",
        "ansible_python_interpreter=/usr/bin/python3",
    ]
    (adir / "hosts.ini").write_text("\n".join(lines) + "\n")
    n = len(inventory["hosts"])
    ssh_args = (
        f"-o ControlMaster=auto -o ControlPersist=60s -o StrictHostKeyChecking=yes "
        f"-o UserKnownHostsFile={inventory['known_hosts']}"
    )
    (adir / "ansible.cfg").write_text(f"""[defaults]
forks = {n}
host_key_checking = True
gathering = explicit
interpreter_python = /usr/bin/python3
retry_files_enabled = False
stdout_callback = default
display_skipped_hosts = False
local_tmp = {adir}/local-tmp

[ssh_connection]
pipelining = True
ssh_args = {ssh_args}
control_path_dir = {adir}/cp
""")
    (adir / "work.sh").write_text(SCRIPT)
    (adir / "payload").write_bytes(PAYLOAD)
    (adir / "site.yml").write_text(f"""- hosts: lab
  gather_facts: true
  gather_subset: [min]
  tasks:
    - name: upload a file
      ansible.builtin.copy: {{src: {adir}/payload, dest: /tmp/cd-bench-payload, mode: "0600"}}
    - name: run a script
      ansible.builtin.script: {adir}/work.sh
    - name: read the result
      ansible.builtin.command: cat {RESULT}
      register: result
      changed_when: false
""")
    return [
        str(Path(sys.executable).parent / "ansible-playbook"),
        "-i",
        str(adir / "hosts.ini"),
        str(adir / "site.yml"),
    ]


# pyinfra ------------------------------------------------------------------------------------
def pyinfra_files(work: Path, inventory: dict[str, Any]) -> list[str]:
    pdir = work / "pyinfra"
    pdir.mkdir()
    data = {
        "ssh_user": "root",
        "ssh_key": inventory["key"],
        "ssh_known_hosts_file": inventory["known_hosts"],
        "ssh_strict_host_key_checking": "yes",
    }
    hosts = [(h["address"], data) for h in inventory["hosts"]]
    (pdir / "inventory.py").write_text(f"lab = {hosts!r}\n")
    (pdir / "work.sh").write_text(SCRIPT)
    (pdir / "payload").write_bytes(PAYLOAD)
    (pdir / "deploy.py").write_text(f"""
from pyinfra import host
from pyinfra.facts.hardware import Cpus, Memory
from pyinfra.facts.server import Arch, Hostname, Kernel, LinuxDistribution
from pyinfra.operations import files, server

facts = {{"distro": host.get_fact(LinuxDistribution), "arch": host.get_fact(Arch),
          "kernel": host.get_fact(Kernel), "cpus": host.get_fact(Cpus),
          "memory": host.get_fact(Memory), "hostname": host.get_fact(Hostname)}}
files.put(name="upload a file", src={str(pdir / "payload")!r}, dest="/tmp/cd-bench-payload",
          mode="600")
server.script(name="run a script", src={str(pdir / "work.sh")!r})
server.shell(name="read the result", commands=["cat {RESULT}"])
""")
    n = len(inventory["hosts"])
    return [
        str(Path(sys.executable).parent / "pyinfra"),
        "-y",
        "--parallel",
        str(n),
        str(pdir / "inventory.py"),
        str(pdir / "deploy.py"),
    ]


# the bench ----------------------------------------------------------------------------------
def clear_results(hosts: list[Any]) -> None:
    for host in hosts:
        for name in ("cd-bench-result", "cd-bench-payload"):
            (host.path / "tmp" / name).unlink(missing_ok=True)


def check_results(tool: str, hosts: list[Any]) -> None:
    wrong = []
    for host in hosts:
        path = host.path / "tmp" / "cd-bench-result"
        text = path.read_text().strip() if path.exists() else "(missing)"
        if text != f"{host.name} {EXPECTED_SUM}":
            wrong.append(f"{host.name}: {text}")
    if wrong:
        raise SystemExit(f"{tool}: {len(wrong)} host(s) without the right result, e.g. {wrong[:3]}")


def host_cpu(hosts: list[Any]) -> float:
    """CPU seconds used on the lab hosts' side: each sshd with every session it reaped."""
    ticks = 0
    for host in hosts:
        fields = Path(f"/proc/{host.sshd_pid}/stat").read_text().split(")")[-1].split()
        ticks += sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
    return ticks / os.sysconf("SC_CLK_TCK")


def close_leftover_ssh(work: Path) -> None:
    """Ansible's ControlPersist masters outlive the run; end them (ours, found by their
    control socket directory) so their sessions on the hosts end and get counted."""
    marker = str(work).encode()
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes()
        except OSError:
            continue
        if args.startswith((b"ssh\0", b"ssh: ")) and marker in args:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(cmdline.parent.name), signal.SIGTERM)


def timed(
    tool: str, argv: list[str], work: Path, env: dict[str, str], hosts: list[Any]
) -> tuple[float, float, float]:
    """(wall seconds, CPU seconds of the tool's processes, CPU seconds on the hosts)."""
    log = work / f"{tool}.out"
    before_host = host_cpu(hosts)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    with log.open("wb") as out:
        code = subprocess.call(argv, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=work)
    elapsed = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if code != 0:
        tail = log.read_text(errors="replace")[-3000:]
        raise SystemExit(f"{tool} failed (exit {code}):\n{tail}")
    close_leftover_ssh(work)
    time.sleep(1.0)  # let the hosts' sshd reap the sessions that just ended
    local = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return elapsed, local, host_cpu(hosts) - before_host


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=100)
    parser.add_argument("--tools", default="clusterdeck,pyinfra,ansible")
    parser.add_argument("--run-clusterdeck", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run_clusterdeck:
        clusterdeck_run(args.run_clusterdeck)
        return

    from tests.lab.light import Lab

    tools = args.tools.split(",")
    work = Path(tempfile.mkdtemp(prefix="clusterdeck-fanout-"))
    lab = Lab.create()
    try:
        started = time.monotonic()
        hosts = lab.add_hosts(args.hosts)
        print(
            f"lab: {len(hosts)} light hosts up in {time.monotonic() - started:.1f}s "
            f"({os.cpu_count()} CPUs)"
        )
        known_hosts = work / "known_hosts"
        known_hosts.write_text("".join(f"{h.address} {h.host_public_key()}\n" for h in hosts))
        inventory = {
            "work": str(work),
            "key": str(lab.client_key),
            "known_hosts": str(known_hosts),
            "hosts": [
                {"name": h.name, "address": h.address, "host_key": h.host_public_key()}
                for h in hosts
            ],
        }
        (work / "inventory.json").write_text(json.dumps(inventory))
        env = {
            **os.environ,
            "ANSIBLE_CONFIG": str(work / "ansible" / "ansible.cfg"),
            "PYTHONPATH": str(ROOT / "src"),
        }
        commands = {
            "clusterdeck": [
                sys.executable,
                str(Path(__file__).resolve()),
                "--run-clusterdeck",
                str(work / "inventory.json"),
            ],
            "pyinfra": pyinfra_files(work, inventory),
            "ansible": ansible_files(work, inventory),
        }
        times: dict[str, float] = {}
        cpu: dict[str, tuple[float, float]] = {}
        print(f"{'tool':<12} {'wall':>8} {'CPU here':>9} {'CPU on hosts':>13}")
        for tool in tools:
            clear_results(hosts)
            times[tool], local, remote = timed(tool, commands[tool], work, env, hosts)
            cpu[tool] = (local, remote)
            check_results(tool, hosts)
            print(f"{tool:<12} {times[tool]:7.2f}s {local:8.2f}s {remote:12.2f}s")
        if "clusterdeck" in times:
            base = times["clusterdeck"]
            base_cpu = sum(cpu["clusterdeck"])
            for tool in tools:
                if tool != "clusterdeck":
                    print(
                        f"clusterdeck is {times[tool] / base:.1f}x faster than {tool} "
                        f"(wall), {sum(cpu[tool]) / base_cpu:.1f}x less CPU"
                    )
        print(
            f"load average after the run: {os.getloadavg()[0]:.1f} (other work on this "
            "machine slows every tool alike)"
        )
        print(
            json.dumps(
                {
                    "hosts": len(hosts),
                    "seconds": {k: round(v, 2) for k, v in times.items()},
                    "cpu_seconds": {k: [round(x, 2) for x in v] for k, v in cpu.items()},
                }
            )
        )
    finally:
        lab.down()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
