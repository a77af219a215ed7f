"""Full lab hosts: systemd-nspawn machines with real systemd, booted on lab namespaces.

Test support, not product code. A Debian image is built once with debootstrap (from the mirror
this machine's apt uses) and cached outside the repository, keyed by its package list, so
later work can add packages (etcd, HAProxy, keepalived, wireguard-go are in by default,
disabled, for tests to start). Each host boots the shared image with ``--volatile=overlay``
(its writes go to a tmpfs overlay, nothing is copied), its own hostname, machine-id, SSH host
key and authorized key bind-mounted in, on the address of its lab namespace. Services in the
image start nothing but sshd (and systemd's own units). Machines are stopped with SIGTERM
(a clean shutdown), then by force.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import signal
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

from tests.lab.light import (
    SLOT_PREFIX,
    Lab,
    LabHost,
    kill,
    netns_pids,
    reap,
    run,
    running,
    spawn,
    wait_for_ports,
    wait_gone,
)

CACHE = Path(os.environ.get("CLUSTERDECK_LAB_CACHE", "/var/cache/clusterdeck-lab"))
SUITE = "bookworm"
IMAGE_VERSION = "3"  # bump when customize() changes
BASE_PACKAGES = (
    "systemd",
    "systemd-sysv",
    "dbus",
    "iproute2",
    "openssh-server",
    "procps",
    "iputils-ping",
    "iptables",
    "ca-certificates",
    "netcat-openbsd",
    "less",
    "python3",
)
SERVICE_PACKAGES = (
    "etcd-server",
    "etcd-client",
    "haproxy",
    "keepalived",
    "wireguard-go",
    "wireguard-tools",
)
DEFAULT_PACKAGES = BASE_PACKAGES + SERVICE_PACKAGES
DISABLED_UNITS = (
    "etcd.service",
    "haproxy.service",
    "keepalived.service",
    "console-getty.service",
    "getty@tty1.service",
    "apt-daily.timer",
    "apt-daily-upgrade.timer",
    "e2scrub_all.timer",
    "fstrim.timer",
)
SSHD_LAB = """\
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
UseDNS no
MaxStartups 200:30:300
HostKey /etc/ssh/ssh_host_ed25519_key
"""


def require_full_tools() -> str | None:
    for tool in ("systemd-nspawn", "debootstrap"):
        if shutil.which(tool) is None:
            return f"full lab hosts need {tool} (apt-get install systemd-container debootstrap)"
    return None


def mirror() -> str:
    """The Debian mirror this machine's apt uses for ``SUITE`` (deb822 or one-line sources)."""
    sources = Path("/etc/apt/sources.list.d")
    files = sorted(sources.glob("*.sources")) + sorted(sources.glob("*.list"))
    files.append(Path("/etc/apt/sources.list"))
    for path in files:
        if not path.exists():
            continue
        text = path.read_text()
        for stanza in text.split("\n\n"):
            fields = {}
            for line in stanza.splitlines():
                key, sep, value = line.partition(":")
                if sep and not line.startswith((" ", "#")):
                    fields[key.strip().lower()] = value.strip()
            if SUITE in fields.get("suites", "").split() and "security" not in fields.get(
                "uris", ""
            ):
                return fields["uris"].split()[0]
        for line in text.splitlines():
            words = line.split()
            if len(words) >= 3 and words[0] == "deb" and words[2] == SUITE:
                return words[1]
    return "http://deb.debian.org/debian"


@contextlib.contextmanager
def _build_lock() -> Iterator[None]:
    CACHE.mkdir(parents=True, exist_ok=True, mode=0o755)
    fd = os.open(CACHE / "build.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def image(packages: Sequence[str] = DEFAULT_PACKAGES) -> Path:
    """The cached image with ``packages``, built on first use (about a minute)."""
    wanted = sorted(set(packages) | set(BASE_PACKAGES))
    key = hashlib.sha256(f"{SUITE} {IMAGE_VERSION} {' '.join(wanted)}".encode()).hexdigest()
    path = CACHE / f"{SUITE}-{key[:12]}"
    if (path / ".clusterdeck-complete").exists():
        return path
    with _build_lock():
        if (path / ".clusterdeck-complete").exists():
            return path
        build = CACHE / f".build-{key[:12]}-{os.getpid()}"
        shutil.rmtree(build, ignore_errors=True)
        try:
            run(
                [
                    "debootstrap",
                    "--variant=minbase",
                    f"--include={','.join(wanted)}",
                    SUITE,
                    str(build),
                    mirror(),
                ],
                timeout=1800,
            )
            customize(build)
            (build / ".clusterdeck-complete").write_text(" ".join(wanted) + "\n")
            shutil.rmtree(path, ignore_errors=True)
            build.rename(path)
        finally:
            shutil.rmtree(build, ignore_errors=True)
    return path


def customize(root: Path) -> None:
    """Host-independent settings; per-host identity is bind-mounted at boot."""
    for key in (root / "etc" / "ssh").glob("ssh_host_*"):
        key.unlink()
    (root / "etc" / "ssh" / "sshd_config.d" / "clusterdeck-lab.conf").write_text(SSHD_LAB)
    for name in ("ssh_host_ed25519_key", "ssh_host_ed25519_key.pub"):
        (root / "etc" / "ssh" / name).touch()  # mount points for the per-host key
    ssh_dir = root / "root" / ".ssh"
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    (ssh_dir / "authorized_keys").touch()
    (root / "etc" / "machine-id").write_text("")  # per host: bind-mounted at boot
    dbus_id = root / "var" / "lib" / "dbus" / "machine-id"  # systemd would copy this one
    dbus_id.unlink(missing_ok=True)
    dbus_id.symlink_to("/etc/machine-id")
    (root / "etc" / "hostname").write_text("lab\n")
    run(["systemctl", f"--root={root}", "disable", *DISABLED_UNITS], check=False)
    run(
        [
            "systemctl",
            f"--root={root}",
            "mask",
            "console-getty.service",
            "systemd-networkd-wait-online.service",
            "systemd-machine-id-commit.service",
        ],
        check=False,
    )  # the id is bind-mounted
    run(["systemctl", f"--root={root}", "enable", "ssh.service"])
    shutil.rmtree(root / "var" / "cache" / "apt" / "archives", ignore_errors=True)
    for lists in (root / "var" / "lib" / "apt" / "lists").glob("*_Packages"):
        lists.unlink()


def add_full_hosts(
    lab: Lab,
    count: int,
    packages: Sequence[str] = DEFAULT_PACKAGES,
    boot_timeout: float = 90,
    nspawn_args: Sequence[str] = (),
) -> list[LabHost]:
    """Boot ``count`` systemd machines at once on new lab namespaces; wait for their sshd.

    ``nspawn_args`` are extra systemd-nspawn arguments given to every host, e.g.
    ``--bind=/tmp/shared:/var/lib/shared`` for a directory a test shares with them, or
    ``--capability=CAP_NET_ADMIN`` for hosts that manage their own (namespaced) network."""
    problem = require_full_tools()
    if problem:
        raise RuntimeError(problem)
    root = image(packages)
    hosts = [lab.prepare(None) for _ in range(count)]
    for host in hosts:
        host.full = True
    lab.make_namespaces(hosts)
    for host in hosts:
        run(
            ["ip", "-n", host.netns, "-batch", "-"],
            input=(
                f"link set lo up\naddr add {host.address}/{SLOT_PREFIX} dev eth0\n"
                "link set eth0 up\n"
            ),
        )
        ssh = host.path / "ssh"
        machine_id = uuid.uuid4()
        (host.path / "etc" / "machine-id").write_text(machine_id.hex + "\n")
        host.machine_pid = spawn(
            [
                "systemd-nspawn",
                "--boot",
                f"--directory={root}",
                "--volatile=overlay",
                "--register=no",
                "--keep-unit",
                f"--network-namespace-path=/run/netns/{host.netns}",
                f"--machine={host.netns}",
                f"--hostname={host.name}",
                f"--uuid={machine_id}",
                "--console=read-only",
                f"--bind-ro={ssh}/ssh_host_ed25519_key:/etc/ssh/ssh_host_ed25519_key",
                f"--bind-ro={ssh}/ssh_host_ed25519_key.pub:/etc/ssh/ssh_host_ed25519_key.pub",
                f"--bind-ro={host.path}/root/.ssh/authorized_keys:/root/.ssh/authorized_keys",
                f"--bind-ro={host.path}/etc/hostname:/etc/hostname",
                f"--bind-ro={host.path}/etc/machine-id:/etc/machine-id",
                *nspawn_args,
            ],
            host.path / "machine.log",
        )
    lab.save()
    try:
        wait_for_ports([(h.address, 22) for h in hosts], boot_timeout)
    except RuntimeError as exc:
        logs = {h.name: (h.path / "machine.log").read_text(errors="replace")[-600:] for h in hosts}
        raise RuntimeError(f"{exc}; machine logs: {logs}") from None
    for host in hosts:
        host.holder_pid = _machine_init(host)
    lab.save()
    return hosts


def _machine_init(host: LabHost) -> int:
    """The PID (as seen here) of the machine's own PID 1."""
    for pid in netns_pids(host.netns):
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("NSpid:") and line.split()[-1] == "1" and len(line.split()) > 2:
                return pid
    raise RuntimeError(f"no init process found for full host {host.name}")


def _machines(namespaces: Sequence[str]) -> list[int]:
    wanted = {f"--network-namespace-path=/run/netns/{ns}" for ns in namespaces}
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if (
            args
            and args[0].endswith(b"systemd-nspawn")
            and any(a.decode(errors="replace") in wanted for a in args)
        ):
            found.append(int(cmdline.parent.name))
    return found


def stop_machines_in(namespaces: Sequence[str], timeout: float = 15.0) -> None:
    """SIGTERM (clean shutdown) every lab machine on these namespaces, then force."""
    if not namespaces:
        return
    pids = _machines(namespaces)
    for pid in pids:
        kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while pids and time.monotonic() < deadline:
        for pid in pids:
            reap(pid)
        pids = [p for p in pids if running(p)]
        time.sleep(0.1)
    for pid in pids:
        kill(pid, signal.SIGKILL)
    wait_gone(pids)
