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
import json
import os
import shutil
import signal
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

from tests.lab.light import (
    HOST_INTERFACE,
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
IMAGE_VERSION = "7"  # bump when customize() changes
LOGIN_USER = "ubuntu"  # full hosts log in as this user, with passwordless sudo; root cannot
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
    "curl",  # as on cloud images: clusterdeck asks etcd through it
    "netcat-openbsd",
    "less",
    "python3",
    "sudo",
    "kmod",
    "ethtool",
    "socat",
    "conntrack",
    "ebtables",
    "util-linux",
    "mount",
)
SERVICE_PACKAGES = (
    "etcd-server",
    "etcd-client",
    "haproxy",
    "keepalived",
    "wireguard-go",
    "wireguard-tools",
    "iperf3",  # bench/overlay.py measures the overlay with it
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
PermitRootLogin no
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


# PID 1 of a full host: nspawn mounts the cgroup v1 controller hierarchies read-only, which
# leaves systemd (and so the kubelet's systemd cgroup driver) without memory, cpu or pids
# cgroups. Made writable before systemd starts, systemd manages them as on a real machine.
LAB_INIT = "/usr/local/sbin/cdlab-init"
LAB_INIT_SCRIPT = """#!/bin/sh
for hierarchy in /sys/fs/cgroup/*; do
  mount -o remount,bind,rw "$hierarchy" 2>/dev/null || true
done
exec /lib/systemd/systemd "$@"
"""


def customize(root: Path) -> None:
    """Host-independent settings; per-host identity is bind-mounted at boot."""
    init = root / LAB_INIT.lstrip("/")
    init.parent.mkdir(parents=True, exist_ok=True)
    init.write_text(LAB_INIT_SCRIPT)
    init.chmod(0o755)
    for key in (root / "etc" / "ssh").glob("ssh_host_*"):
        key.unlink()
    (root / "etc" / "ssh" / "sshd_config.d" / "clusterdeck-lab.conf").write_text(SSHD_LAB)
    for name in ("ssh_host_ed25519_key", "ssh_host_ed25519_key.pub"):
        (root / "etc" / "ssh" / name).touch()  # mount points for the per-host key
    # password "*": no password login, but not a locked account (which sshd refuses)
    run(["chroot", str(root), "useradd", "-m", "-s", "/bin/bash", "-p", "*", LOGIN_USER])
    sudoers = root / "etc" / "sudoers.d" / "90-clusterdeck-lab"
    sudoers.write_text(f"{LOGIN_USER} ALL=(ALL) NOPASSWD:ALL\n")
    sudoers.chmod(0o440)
    ssh_dir = root / "home" / LOGIN_USER / ".ssh"
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    (ssh_dir / "authorized_keys").touch()
    run(["chroot", str(root), "chown", "-R", f"{LOGIN_USER}:{LOGIN_USER}", f"/home/{LOGIN_USER}"])
    # the kubelet and containerd keep their state on real directories bound in per host
    # (overlayfs cannot stack on the machine's own overlay root)
    for state in ("var/lib/containerd", "var/lib/kubelet", "lib/modules"):
        (root / state).mkdir(parents=True, exist_ok=True)  # kube-proxy mounts /lib/modules
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
    hosts = reserve_full_hosts(lab, count)
    boot_full_hosts(lab, hosts, packages, boot_timeout, nspawn_args)
    return hosts


def boot_full_hosts(
    lab: Lab,
    hosts: Sequence[LabHost],
    packages: Sequence[str] = DEFAULT_PACKAGES,
    boot_timeout: float = 90,
    nspawn_args: Sequence[str] = (),
    *,
    persistent: bool = False,
) -> None:
    """Boot machines for ``hosts`` (their namespaces made) at once; wait for their sshd.

    ``persistent``: each host's writes go to a directory of its own (an overlay over the
    image) that outlives the machine, so :func:`reboot` brings it back as it was, as a
    machine with a disk; otherwise they go to a tmpfs and are lost when it stops."""
    base = image(packages)
    raise_kernel_limits()
    for host in hosts:
        extra = [*kubernetes_args(host), *nspawn_args]
        if persistent:
            root = persistent_root(host, base)
        else:
            root, extra = base, ["--volatile=overlay", *extra]
        (host.path / "nspawn.json").write_text(json.dumps({"root": str(root), "args": extra}))
        start_machine(host, root, extra)
    lab.save()
    try:
        wait_for_ports([(h.address, 22) for h in hosts], boot_timeout)
    except RuntimeError as exc:
        logs = {h.name: (h.path / "machine.log").read_text(errors="replace")[-600:] for h in hosts}
        raise RuntimeError(f"{exc}; machine logs: {logs}") from None
    for host in hosts:
        host.holder_pid = machine_init(host)
    lab.save()


def persistent_root(host: LabHost, base: Path) -> Path:
    """The host's own root: an overlay of its ``upper`` directory over the shared image."""
    root = host.path / "root-fs"
    for part in ("upper", "work", "root-fs"):
        (host.path / part).mkdir(exist_ok=True)
    if not os.path.ismount(root):
        run(
            [
                "mount",
                "-t",
                "overlay",
                "overlay",
                "-o",
                f"lowerdir={base},upperdir={host.path / 'upper'},workdir={host.path / 'work'}",
                str(root),
            ]
        )
    return root


def reboot(lab: Lab, host: LabHost, boot_timeout: float = 90) -> None:
    """A clean shutdown of the host's machine, then a boot of the same machine: what it
    wrote stays (persistent hosts), its address and keys are the same."""
    stop_machines_in([host.netns], timeout=60)
    # nothing of the old boot may outlive it (a container init that nspawn left behind would
    # be found as the machine's init instead of the new one)
    leftovers = netns_pids(host.netns)
    for pid in leftovers:
        kill(pid, signal.SIGKILL)
    wait_gone(leftovers, timeout=30)
    saved = json.loads((host.path / "nspawn.json").read_text())
    start_machine(host, Path(saved["root"]), saved["args"], same_id=True)
    lab.save()
    wait_for_ports([(host.address, 22)], boot_timeout)
    host.holder_pid = machine_init(host)
    lab.save()


def reserve_full_hosts(lab: Lab, count: int) -> list[LabHost]:
    """``count`` full hosts with their namespaces, addresses and keys; nothing booted yet."""
    hosts = [lab.prepare(None) for _ in range(count)]
    for host in hosts:
        host.full = True
        host.user = LOGIN_USER
    lab.make_namespaces(hosts)
    for host in hosts:
        run(
            ["ip", "-n", host.netns, "-batch", "-"],
            input=(
                f"link set lo up\naddr add {host.address}/{SLOT_PREFIX} dev {HOST_INTERFACE}\n"
                f"link set {HOST_INTERFACE} up\nroute add default via {lab.gateway}\n"
            ),
        )
    lab.save()
    return hosts


def start_machine(
    host: LabHost, root: Path, extra: Sequence[str], *, same_id: bool = False
) -> None:
    """Start the machine of ``host`` from the directory ``root``, with a new machine-id (as a
    stateless node gets at each boot; ``same_id``: the one it had, as a machine with a disk),
    its SSH host key, login key, hostname and hosts file."""
    ssh = host.path / "ssh"
    id_file = host.path / "etc" / "machine-id"
    if same_id and id_file.exists() and id_file.read_text().strip():
        machine_id = uuid.UUID(id_file.read_text().strip())
    else:
        machine_id = uuid.uuid4()
    id_file.write_text(machine_id.hex + "\n")
    (host.path / "etc" / "hosts").write_text(
        f"127.0.0.1 localhost\n127.0.1.1 {host.name}\n"
        f"{host.local_address or host.address} {host.name}\n"
    )
    host.machine_pid = spawn(
        [
            "bash",
            "-c",
            _IN_OWN_CGROUPS,
            "machine",
            _cgroup_name(host),
            "systemd-nspawn",
            "--kill-signal=SIGRTMIN+3",  # what --boot would send: a clean shutdown
            f"--directory={root}",
            "--register=no",
            "--keep-unit",
            f"--network-namespace-path=/run/netns/{host.netns}",
            f"--machine={host.netns}",
            f"--hostname={host.name}",
            f"--uuid={machine_id}",
            "--console=read-only",
            f"--bind-ro={ssh}/ssh_host_ed25519_key:/etc/ssh/ssh_host_ed25519_key",
            f"--bind-ro={ssh}/ssh_host_ed25519_key.pub:/etc/ssh/ssh_host_ed25519_key.pub",
            f"--bind-ro={host.path}/root/.ssh/authorized_keys:/home/{LOGIN_USER}/.ssh/authorized_keys",
            f"--bind-ro={host.path}/etc/hostname:/etc/hostname",
            f"--bind-ro={host.path}/etc/machine-id:/etc/machine-id",
            f"--bind={host.path}/etc/hosts:/etc/hosts",  # rewritten at each start
            *extra,
            LAB_INIT,
        ],
        host.path / "machine.log",
    )


# What the kubelet and containerd need from the machine around them (the recipes of kind and
# kube-spawn, checked here): every capability, the keyring, bpf and perf calls nspawn's filter
# drops by default, the kernel log for the OOM watcher, and real directories for their state.
KUBERNETES_SYSCALLS = "add_key keyctl request_key bpf perf_event_open"


# Each machine gets its own cgroup in every v1 controller hierarchy before nspawn starts
# (there is no systemd outside to delegate one): inside, the cgroup namespace makes it the
# root, and two machines' kubelets never see, or clean up, each other's pod cgroups.
# SYSTEMD_NSPAWN_API_VFS_WRITABLE keeps those hierarchies writable inside, as the kubelet needs.
CGROUP_PARENT = "cdlab"
_IN_OWN_CGROUPS = r"""
set -e
name=$1; shift
for hierarchy in /sys/fs/cgroup/*; do
  [ -f "$hierarchy/cgroup.procs" ] || continue
  dir="$hierarchy"
  for part in ${name//\// }; do
    dir="$dir/$part"
    mkdir -p "$dir"
    if [ -f "$hierarchy/cpuset.cpus" ]; then  # cpuset: a new group starts with no CPUs
      cat "$hierarchy/cpuset.cpus" >"$dir/cpuset.cpus"
      cat "$hierarchy/cpuset.mems" >"$dir/cpuset.mems"
    fi
  done
  echo $$ >"$dir/cgroup.procs"
done
export SYSTEMD_NSPAWN_API_VFS_WRITABLE=1
exec "$@"
"""


def _cgroup_name(host: LabHost) -> str:
    return f"{CGROUP_PARENT}/{host.netns}"


def remove_cgroups(namespaces: Sequence[str]) -> None:
    """Remove the machines' cgroups (deepest first) once nothing runs in them."""
    for hierarchy in Path("/sys/fs/cgroup").iterdir():
        for ns in namespaces:
            top = hierarchy / CGROUP_PARENT / ns
            if not top.is_dir():
                continue
            for sub in sorted(
                (p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)
            ):
                with contextlib.suppress(OSError):
                    sub.rmdir()
            with contextlib.suppress(OSError):
                top.rmdir()


# Kernel-wide limits every machine shares with this one (one kernel, one root user): a few
# kubelets, containerds and their pods need more inotify instances than the default 128
# (kube-proxy then fails with "too many open files"), as kind documents for its nodes.
HOST_SYSCTLS = {
    "fs/inotify/max_user_instances": 8192,
    "fs/inotify/max_user_watches": 524288,
}


def raise_kernel_limits() -> None:
    for key, wanted in HOST_SYSCTLS.items():
        path = Path("/proc/sys") / key
        if int(path.read_text().split()[0]) < wanted:
            path.write_text(f"{wanted}\n")


def kubernetes_args(host: LabHost, state_dir: Path | None = None) -> list[str]:
    """nspawn arguments for a machine that runs Kubernetes; its kubelet and containerd state
    on real directories under ``state_dir`` (default: the host's own, kept across boots)."""
    args = [
        "--capability=all",
        f"--system-call-filter={KUBERNETES_SYSCALLS}",
        "--bind=/dev/kmsg",
    ]
    for state in ("var/lib/containerd", "var/lib/kubelet"):
        real = (state_dir or host.path / "state") / state.replace("/", "-")
        real.mkdir(parents=True, exist_ok=True)
        args.append(f"--bind={real}:/{state}")
    return args


def machine_init(host: LabHost) -> int:
    """The PID (as seen here) of the machine's own PID 1."""
    for pid in netns_pids(host.netns):
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("NSpid:") and line.split()[-1] == "1" and len(line.split()) == 3:
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
    remove_cgroups(namespaces)
