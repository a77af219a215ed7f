"""AWS API calls and wall time of infra create and delete, by worker count, on a local moto.

Starts its own moto server on 127.0.0.1 (instance-type, AMI and key-pair validation on),
points boto3 at it through AWS_ENDPOINT_URL, and runs the real ``api.create(...,
infra_only=True)`` and ``api.delete`` for 1+2 workers (public network, one zone, no NLB),
then 3+50 and 3+1000 (private network: NAT per zone and a bastion, three zones, HA with an
NLB; a public /24 per zone could not hold 1000 nodes). Calls are counted with botocore's
``before-call`` event on the provider's sessions. Targets: calls flat in the worker count
(the one call AWS has no batch form for, ModifyNetworkInterfaceAttribute for the
source/destination check, is shown apart), and 3+1000 created in under 30 s.

    .venv/bin/python bench/aws_calls.py [--sizes 1+2,3+50,3+1000]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from pathlib import Path

PER_INTERFACE = "ec2:ModifyNetworkInterfaceAttribute"
BATCH_LIMITS = {"ec2:TerminateInstances": 1000}  # instances per call
TARGET_SECONDS = 30.0
AMIS = [
    {
        "ami_id": "ami-0a1b2c3d4e5f60002",
        "state": "available",
        "public": True,
        "owner_id": "099720109477",
        "image_location": "amazon/ubuntu-jammy",
        "sriov": "simple",
        "root_device_type": "ebs",
        "root_device_name": "/dev/sda1",
        "description": "jammy",
        "image_type": "machine",
        "platform": None,
        "architecture": "x86_64",
        "name": "ubuntu/images/hvm-ssd/ubuntu-jammy-22.04-amd64-server-20250301",
        "virtualization_type": "hvm",
        "hypervisor": "xen",
        "creation_date": "2025-03-01T10:00:00.000Z",
    }
]


def spec(control_planes: int, workers: int) -> str:
    ha = control_planes > 1
    zones = "[us-west-2a, us-west-2b, us-west-2c]" if ha else "[us-west-2a]"
    mode = "private" if ha else "public"  # a public /24 per zone cannot hold 1000 nodes
    return f"""
apiVersion: clusterdeck.dev/v1alpha1
kind: Environment
metadata: {{name: bench-{control_planes}-{workers}}}
spec:
  auth: {{keyName: bench-key}}
  aws:
    region: us-west-2
    availabilityZones: {zones}
    ingressCidrs: [203.0.113.0/24]
    network: {{mode: {mode}}}
  cluster:
    controlPlane: {{count: {control_planes}, instanceType: m5.large}}
    workers: {{count: {workers}, instanceType: c5.large}}
    highAvailability: {{enabled: {str(ha).lower()}}}
  kubernetes: {{podCidr: 100.64.0.0/10}}  # room for 1000+ nodes at a /24 each
"""


def start_moto(workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    amis = workdir / "amis.json"
    amis.write_text(json.dumps(AMIS))
    env = {
        **os.environ,
        "MOTO_AMIS_PATH": str(amis),
        "MOTO_EC2_ENABLE_INSTANCE_TYPE_VALIDATION": "true",
        "MOTO_ENABLE_AMI_VALIDATION": "true",
        "MOTO_ENABLE_KEYPAIR_VALIDATION": "true",
    }
    log = (workdir / "moto.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            urllib.request.urlopen(f"{url}/moto-api/", timeout=1).close()
            return proc, url
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("moto server did not start")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1+2,3+50,3+1000")
    args = parser.parse_args()
    sizes = [tuple(int(x) for x in s.split("+")) for s in args.sizes.split(",")]
    workdir = Path(tempfile.mkdtemp(prefix="clusterdeck-bench-"))
    proc, url = start_moto(workdir)
    os.environ.update(
        AWS_ENDPOINT_URL=url,
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",
        AWS_DEFAULT_REGION="us-west-2",
        AWS_CONFIG_FILE=str(workdir / "none"),
        AWS_SHARED_CREDENTIALS_FILE=str(workdir / "none"),
    )
    os.environ.pop("AWS_PROFILE", None)
    import boto3

    from clusterdeck import api
    from clusterdeck.events import Collector
    from clusterdeck.providers.aws.session import CALLS
    from clusterdeck.spec import load_text
    from clusterdeck.state import SqliteStore

    boto3.client("ec2", region_name="us-west-2").create_key_pair(KeyName="bench-key")
    store = SqliteStore(workdir / "state.db")
    rows = []
    per_op: dict[str, tuple[Counter[str], Counter[str]]] = {}
    phases: dict[str, str] = {}
    failed = False
    try:
        for cps, workers in sizes:
            env = load_text(spec(cps, workers))
            CALLS.reset()
            started = time.perf_counter()
            events = Collector()
            result = api.create(env, store, infra_only=True, events=events)
            create_s = time.perf_counter() - started
            made = CALLS.snapshot()
            ready = len(result.results["aws"].ready)
            CALLS.reset()
            started = time.perf_counter()
            left = api.delete(env.name, store)
            delete_s = time.perf_counter() - started
            removed = CALLS.snapshot()
            phases[f"{cps}+{workers}"] = ", ".join(
                f"{e.group} {e.duration:.1f} s"
                for e in events.events
                if e.step == "done" and e.duration is not None
            )
            if result.failed or left or ready != cps + workers:
                failed = True
            per_op[f"{cps}+{workers}"] = (made, removed)
            rows.append(
                (
                    f"{cps}+{workers}",
                    ready,
                    sum(made.values()),
                    made[PER_INTERFACE],
                    create_s,
                    sum(removed.values()),
                    delete_s,
                    len(left),
                )
            )
    finally:
        store.close()
        proc.terminate()
        proc.wait(timeout=10)
    print(
        f"{'size':>8} {'ready':>6} {'create calls':>13} {'(of which per-ENI)':>19} "
        f"{'create s':>9} {'delete calls':>13} {'delete s':>9} {'left':>5}"
    )
    for size, ready, c_calls, eni, c_s, d_calls, d_s, left_n in rows:
        print(
            f"{size:>8} {ready:>6} {c_calls:>13} {eni:>19} {c_s:>9.1f} {d_calls:>13} "
            f"{d_s:>9.1f} {left_n:>5}"
        )
    for size, text in phases.items():
        print(f"create {size} by resource family: {text}")
    ha = [k for k in per_op if not k.startswith("1+")]
    if len(ha) >= 2:
        (a_make, a_del), (b_make, b_del) = per_op[ha[0]], per_op[ha[-1]]
        a_make, b_make = Counter(a_make), Counter(b_make)
        del a_make[PER_INTERFACE], b_make[PER_INTERFACE]
        grew = {
            op: (a_make[op], b_make[op])
            for op in set(a_make) | set(b_make)
            if a_make[op] != b_make[op]
        }
        grew_del = {
            op: (a_del[op], b_del[op]) for op in set(a_del) | set(b_del) if a_del[op] != b_del[op]
        }
        print(
            f"calls that differ between {ha[0]} and {ha[-1]}, apart from {PER_INTERFACE}: "
            f"create {grew or 'none'}, delete {grew_del or 'none'}"
        )
        # Growth is allowed only where the API's own batch limit forces it.
        instances = {
            size: ready + (1 if not size.startswith("1+") else 0)  # + the bastion
            for size, ready, *_ in rows
        }
        for op, limit in BATCH_LIMITS.items():
            for grown in (grew, grew_del):
                if op in grown and grown[op] == tuple(
                    -(-instances[k] // limit) for k in (ha[0], ha[-1])
                ):
                    del grown[op]
                    print(f"{op} grows only by its batch limit of {limit} per call: fine")
        if grew or grew_del:
            failed = True
    biggest = max(rows, key=lambda r: int(r[0].split("+")[1]))
    verdict = "met" if biggest[4] < TARGET_SECONDS else "MISSED"
    print(
        f"target: {biggest[0]} infra created in < {TARGET_SECONDS:.0f} s: {verdict} "
        f"({biggest[4]:.1f} s)"
    )
    return 1 if failed or verdict != "met" else 0


if __name__ == "__main__":
    sys.exit(main())
