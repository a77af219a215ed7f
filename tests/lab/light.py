"""Light lab hosts: a network namespace, a private mount/UTS namespace and a real sshd each.

Test support, not product code. A :class:`Lab` owns one Linux bridge and one /22 out of the
benchmarking range 198.18.0.0/15 (RFC 2544, used by nothing real), so several labs (pytest
workers, a lab brought up by hand) live side by side. The root namespace gets the safety route
``unreachable 198.18.0.0/15`` and a FORWARD rule that drops whatever a lab host sends
beyond the lab range, so lab traffic can never leave the machine. Hosts get a default route
via their lab's gateway, as real machines have one (service IPs are only routable with it:
kube-proxy rewrites them after the route lookup); nothing is forwarded from there.
Every name the lab makes starts with ``cdlab`` and cleanup goes by that prefix
only; processes are stopped by the PIDs the lab recorded (or found in its own namespaces).
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

PREFIX = "cdlab"
LAB_RANGE = ipaddress.ip_network("198.18.0.0/15")
SLOT_PREFIX = 22  # each lab gets a /22: up to 1021 hosts
MAX_SLOTS = 2 ** (SLOT_PREFIX - LAB_RANGE.prefixlen)
BASE_DIR = Path(os.environ.get("CLUSTERDECK_LAB_DIR", "/var/tmp/clusterdeck-lab"))
LAB_MAX_STARTUPS = "200:30:300"
MINIMAL_BASHRC = "# clusterdeck lab host: deliberately minimal (no pyenv init per command)\n"
# Lab hosts' network interface: deliberately not eth0, as on most real machines (ens5 on AWS
# Nitro instances), so nothing in clusterdeck can get away with assuming eth0.
HOST_INTERFACE = "ens5"

_HOLDER = r"""
set -e
d=$1; name=$2; addr=$3; iface=$4; gateway=$5; shift 5
hostname "$name"
mount --bind "$d/etc/hostname" /etc/hostname
mount --bind "$d/root" /root
mount --bind "$d/run" /run
mount --bind "$d/tmp" /tmp
for extra in "$@"; do
  mkdir -p "$d/private$extra"
  mount --bind "$d/private$extra" "$extra"
done
ip link set lo up
ip addr add "$addr" dev "$iface"
ip link set "$iface" up
ip route add default via "$gateway"
touch "$d/ready"
exec sleep infinity
"""

_SSHD_CONFIG = """\
ListenAddress {address}
Port 22
HostKey {dir}/ssh/ssh_host_ed25519_key
PidFile {dir}/sshd.pid
AuthorizedKeysFile /root/.ssh/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
UseDNS no
PrintMotd no
AcceptEnv LANG LC_*
Subsystem sftp internal-sftp
LogLevel INFO
"""


def run(
    argv: Sequence[str], *, check: bool = True, input: str | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(argv), check=check, capture_output=True, text=True, input=input, timeout=timeout
    )


def require_lab_tools() -> str | None:
    """None when this machine can run the lab, else the reason it cannot."""
    if os.geteuid() != 0:
        return "the lab needs root (network namespaces)"
    for tool in ("ip", "unshare", "nsenter", "/usr/sbin/sshd", "ssh-keygen"):
        if shutil.which(tool) is None:
            return f"the lab needs {tool} (apt-get install iproute2 util-linux openssh-server)"
    return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}
"""Processes this Python process started (holders, sshd), waited for when they stop."""


def spawn(argv: Sequence[str], log: Path) -> int:
    with log.open("ab") as out:
        proc = subprocess.Popen(
            list(argv), stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True
        )
    _CHILDREN[proc.pid] = proc
    return proc.pid


def kill(pid: int, sig: int = signal.SIGTERM) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def reap(pid: int) -> None:
    proc = _CHILDREN.get(pid)
    if proc is not None:
        if proc.poll() is not None:
            del _CHILDREN[pid]
        return
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def wait_gone(pids: Sequence[int], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    left = list(pids)
    while left and time.monotonic() < deadline:
        for pid in left:
            reap(pid)
        left = [p for p in left if _alive(p) and not _is_zombie(p)]
        if left:
            time.sleep(0.02)
    for pid in left:
        kill(pid, signal.SIGKILL)
        reap(pid)


def running(pid: int) -> bool:
    return _alive(pid) and not _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z"
    except (OSError, IndexError):
        return True


def link_names() -> set[str]:
    """The names of every network interface of this machine's own namespace."""
    return {
        line.split(":")[1].strip().split("@")[0]
        for line in run(["ip", "-o", "link", "show"]).stdout.splitlines()
        if ":" in line
    }


def netns_pids(netns: str) -> list[int]:
    out = run(["ip", "netns", "pids", netns], check=False).stdout
    return [int(p) for p in out.split()]


@dataclass
class LabHost:
    name: str
    index: int
    address: str
    netns: str
    dir: str
    holder_pid: int = 0
    sshd_pid: int = 0
    max_startups: str = LAB_MAX_STARTUPS
    full: bool = False
    machine_pid: int = 0  # full hosts: the systemd-nspawn process
    port: int = 22
    user: str = "root"  # the login user (full hosts: a sudoer, root login refused)
    site: str = ""  # tests/lab/sites.py: the site it sits at
    nat: bool = False  # behind a NAT router: ``address`` is the router's (SSH forwarded)
    local_address: str = ""  # its own address, when ``address`` is not (behind NAT)

    @property
    def path(self) -> Path:
        return Path(self.dir)

    def host_public_key(self) -> str:
        """``ssh-ed25519 AAAA...`` of the host's current host key."""
        text = (self.path / "ssh" / "ssh_host_ed25519_key.pub").read_text().split()
        return f"{text[0]} {text[1]}"

    def nsenter(self) -> list[str]:
        if self.full:  # the machine's own init: its root, PIDs and IPC too
            return ["nsenter", "-t", str(self.holder_pid), "-m", "-u", "-i", "-n", "-p", "-r", "-w"]
        return ["nsenter", "-t", str(self.holder_pid), "-n", "-m", "-u"]

    def exec(
        self, argv: Sequence[str], *, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        """Run a command on the host as root (namespaces entered directly, not over SSH)."""
        return run([*self.nsenter(), *argv], check=check, timeout=timeout)


@dataclass
class Lab:
    """One bridge, one address block, any number of hosts; remove with :meth:`down`."""

    slot: int
    dir: str
    keep: bool = False  # brought up by hand: only `down` removes it, never stale cleanup
    owner_pid: int = field(default_factory=os.getpid)
    hosts: dict[str, LabHost] = field(default_factory=dict)
    next_index: int = 0
    site_bridges: list[str] = field(default_factory=list)  # tests/lab/sites.py: one per site

    # creation ---------------------------------------------------------------------------
    @classmethod
    def create(cls, *, keep: bool = False) -> Lab:
        problem = require_lab_tools()
        if problem:
            raise RuntimeError(problem)
        BASE_DIR.mkdir(parents=True, exist_ok=True, mode=0o700)
        remove_stale()
        with _allocation_lock():
            used = {int(p.name) for p in BASE_DIR.iterdir() if p.name.isdigit()}
            bridges = set(run(["ip", "-o", "link", "show", "type", "bridge"]).stdout.split())
            slot = next(
                (s for s in range(MAX_SLOTS) if s not in used and f"{PREFIX}{s}:" not in bridges),
                None,
            )
            if slot is None:
                raise RuntimeError("all lab slots are in use; run `python -m tests.lab down --all`")
            lab_dir = BASE_DIR / str(slot)
            lab_dir.mkdir(mode=0o700)
            lab = cls(slot=slot, dir=str(lab_dir), keep=keep)
            lab.save()
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        run(["ip", "route", "replace", "unreachable", str(LAB_RANGE)])
        keep_in_lab()
        run(["ip", "link", "add", lab.bridge, "type", "bridge"])
        run(["ip", "addr", "add", f"{lab.gateway}/{SLOT_PREFIX}", "dev", lab.bridge])
        run(["ip", "link", "set", lab.bridge, "up"])
        lab._client_key()
        return lab

    @property
    def path(self) -> Path:
        return Path(self.dir)

    @property
    def bridge(self) -> str:
        return f"{PREFIX}{self.slot}"

    @property
    def network(self) -> ipaddress.IPv4Network:
        base = int(LAB_RANGE.network_address) + self.slot * 2 ** (32 - SLOT_PREFIX)
        return ipaddress.IPv4Network((base, SLOT_PREFIX))

    @property
    def gateway(self) -> str:
        return str(self.network.network_address + 1)

    @property
    def client_key(self) -> Path:
        return self.path / "client_ed25519"

    def _client_key(self) -> None:
        if not self.client_key.exists():
            run(
                [
                    "ssh-keygen",
                    "-q",
                    "-t",
                    "ed25519",
                    "-N",
                    "",
                    "-C",
                    "clusterdeck-lab",
                    "-f",
                    str(self.client_key),
                ]
            )

    def save(self) -> None:
        data = asdict(self)
        tmp = self.path / "lab.json.tmp"
        tmp.write_text(json.dumps(data, indent=1))
        tmp.replace(self.path / "lab.json")

    @classmethod
    def load(cls, lab_dir: Path) -> Lab:
        data = json.loads((lab_dir / "lab.json").read_text())
        hosts = {k: LabHost(**v) for k, v in data.pop("hosts").items()}
        return cls(**data, hosts=hosts)

    # hosts ------------------------------------------------------------------------------
    def add_hosts(
        self,
        count: int,
        *,
        max_startups: str | None = LAB_MAX_STARTUPS,
        private_dirs: Sequence[str] = (),
        start_sshd: bool = True,
    ) -> list[LabHost]:
        """Start ``count`` light hosts at once; ``max_startups=None`` keeps sshd's default."""
        hosts = [self.prepare(max_startups) for _ in range(count)]
        self.make_namespaces(hosts)
        for h in hosts:
            h.holder_pid = spawn(
                [
                    "ip",
                    "netns",
                    "exec",
                    h.netns,
                    "unshare",
                    "--uts",
                    "--mount",
                    "--propagation",
                    "private",
                    "sh",
                    "-c",
                    _HOLDER,
                    "holder",
                    h.dir,
                    h.name,
                    f"{h.address}/{SLOT_PREFIX}",
                    HOST_INTERFACE,
                    self.gateway,
                    *private_dirs,
                ],
                h.path / "holder.log",
            )
        self.save()
        _wait_for(
            lambda: all((h.path / "ready").exists() for h in hosts),
            30,
            lambda: (
                "lab host holders did not come up: "
                + ", ".join(
                    f"{h.name}: {(h.path / 'holder.log').read_text()[-200:]}"
                    for h in hosts
                    if not (h.path / "ready").exists()
                )
            ),
        )
        if start_sshd:
            for h in hosts:
                self.start_sshd(h, wait=False)
            self.save()
            wait_for_ports([(h.address, 22) for h in hosts], 30)
        return hosts

    def make_namespaces(self, hosts: Sequence[LabHost]) -> None:
        """A network namespace per host, ``HOST_INTERFACE`` on the lab bridge (one ``ip`` call)."""
        batch = []
        # A deleted namespace can live on for minutes (orphaned TCP sockets of its last
        # connections hold it) and keep its veth pair, whose host-side name an earlier lab in
        # this slot used: remove such a leftover, which frees the old namespace too.
        existing = link_names()
        for h in hosts:
            veth = f"{self.bridge}v{h.index}"
            if veth in existing:
                batch.append(f"link del {veth}")
            batch += [
                f"netns add {h.netns}",
                f"link add {veth} type veth peer name {HOST_INTERFACE} netns {h.netns}",
                f"link set {veth} master {self.bridge} up",
            ]
        for h in hosts:
            self.hosts[h.name] = h
        self.save()
        run(["ip", "-batch", "-"], input="\n".join(batch) + "\n")

    def prepare(self, max_startups: str | None) -> LabHost:
        index = self.next_index
        self.next_index += 1
        address = str(self.network.network_address + 2 + index)
        if ipaddress.ip_address(address) not in self.network or index > 1000:
            raise RuntimeError(f"lab {self.slot} is full")
        name = f"h{index}"
        host_dir = self.path / name
        for sub in ("etc", "root/.ssh", "run/sshd", "tmp", "ssh", "private"):
            (host_dir / sub).mkdir(parents=True, exist_ok=True)
        os.chmod(host_dir / "tmp", 0o1777)
        (host_dir / "etc" / "hostname").write_text(name + "\n")
        (host_dir / "root" / ".bashrc").write_text(MINIMAL_BASHRC)
        (host_dir / "root" / ".profile").write_text(MINIMAL_BASHRC)
        shutil.copy(
            self.client_key.with_suffix(".pub"), host_dir / "root" / ".ssh" / "authorized_keys"
        )
        host = LabHost(
            name=name,
            index=index,
            address=address,
            netns=f"{self.bridge}-{name}",
            dir=str(host_dir),
            max_startups=max_startups or "",
        )
        self.new_host_key(host)
        return host

    def new_host_key(self, host: LabHost) -> None:
        key = host.path / "ssh" / "ssh_host_ed25519_key"
        for path in (key, key.with_suffix(".pub")):
            path.unlink(missing_ok=True)
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", host.name, "-f", str(key)])
        config = _SSHD_CONFIG.format(address=host.address, dir=host.dir)
        if host.max_startups:
            config += f"MaxStartups {host.max_startups}\n"
        (host.path / "sshd_config").write_text(config)

    def start_sshd(self, host: LabHost, *, wait: bool = True) -> None:
        host.sshd_pid = spawn(
            [*host.nsenter(), "/usr/sbin/sshd", "-D", "-e", "-f", str(host.path / "sshd_config")],
            host.path / "sshd.log",
        )
        if wait:
            self.save()
            wait_for_ports([(host.address, 22)], 15)

    def stop_sshd(self, host: LabHost) -> None:
        """Stop the host's sshd and every session it serves, like a crashed or stopped host."""
        pids = [p for p in netns_pids(host.netns) if p != host.holder_pid]
        for pid in pids:
            kill(pid)
        wait_gone(pids)
        host.sshd_pid = 0
        self.save()

    def remove_host(self, host: LabHost) -> None:
        from tests.lab import full

        full.stop_machines_in([host.netns])
        pids = netns_pids(host.netns)
        for pid in pids:
            kill(pid)
        wait_gone(pids)
        run(["ip", "netns", "del", host.netns], check=False)
        unmount_under(host.path)
        shutil.rmtree(host.path, ignore_errors=True)
        self.hosts.pop(host.name, None)
        self.save()

    # teardown ---------------------------------------------------------------------------
    def down(self) -> None:
        namespaces = [h.netns for h in self.hosts.values()]
        namespaces += [n for n in _lab_namespaces() if n.startswith(f"{self.bridge}-")]
        teardown(sorted(set(namespaces)), [self.bridge, *self.site_bridges], self.path)


# Dropped in the root namespace's FORWARD chain: anything from a lab host to an address
# outside the lab range (hosts have a default route via the gateway, like real machines)
_CONTAIN = ["-s", str(LAB_RANGE), "!", "-d", str(LAB_RANGE), "-j", "DROP"]


# Accepted first: frames bridged between lab hosts (bridge netfilter hands them to FORWARD
# too), which never leave the machine: a site's network (tests/lab/sites.py) carries the lab
# range's packets to private addresses, which the drop above would otherwise catch.
_BRIDGED = ["-i", f"{PREFIX}+", "-o", f"{PREFIX}+", "-j", "ACCEPT"]


def keep_in_lab() -> None:
    if run(["iptables", "-C", "FORWARD", *_CONTAIN], check=False).returncode != 0:
        run(["iptables", "-I", "FORWARD", *_CONTAIN])
    if run(["iptables", "-C", "FORWARD", *_BRIDGED], check=False).returncode != 0:
        run(["iptables", "-I", "FORWARD", *_BRIDGED])


def _lab_namespaces() -> list[str]:
    out = run(["ip", "netns", "list"], check=False).stdout
    return [
        line.split()[0] for line in out.splitlines() if line.strip() and line.startswith(PREFIX)
    ]


def teardown(namespaces: Sequence[str], bridges: Sequence[str], lab_dir: Path | None) -> None:
    """Stop every process in the given lab namespaces, delete them, the bridges and the dir."""
    from tests.lab import full

    full.stop_machines_in(namespaces)
    pids = [pid for ns in namespaces for pid in netns_pids(ns)]
    for pid in pids:
        kill(pid)
    wait_gone(pids)
    if namespaces:
        run(
            ["ip", "-batch", "-"],
            input="".join(f"netns del {n}\n" for n in namespaces),
            check=False,
        )
    for bridge in bridges:
        run(["ip", "link", "del", bridge], check=False)
    if lab_dir is not None:
        unmount_under(lab_dir)
        shutil.rmtree(lab_dir, ignore_errors=True)


def unmount_under(directory: Path) -> None:
    """Unmount what is mounted under ``directory`` (PXE hosts' roots), deepest first."""
    prefix = str(directory.resolve()) + "/"
    points = [
        line.split()[4]
        for line in Path("/proc/self/mountinfo").read_text().splitlines()
        if line.split()[4].startswith(prefix)
    ]
    for point in sorted(points, key=len, reverse=True):
        run(["umount", "--lazy", point], check=False)


def remove_all() -> int:
    """Remove every lab on this machine (by name prefix) and the safety route. Returns count."""
    bridges = [
        line.split(":")[1].strip().split("@")[0]
        for line in run(["ip", "-o", "link", "show", "type", "bridge"]).stdout.splitlines()
    ]
    ours = [b for b in bridges if b.startswith(PREFIX) and b[len(PREFIX) :].isdigit()]
    sites = [b for b in bridges if re.fullmatch(rf"{PREFIX}\d+s\d+", b)]
    teardown(_lab_namespaces(), ours + sites, None)
    if BASE_DIR.exists():
        for child in BASE_DIR.iterdir():
            if child.name.isdigit():
                shutil.rmtree(child, ignore_errors=True)
    run(["ip", "route", "del", "unreachable", str(LAB_RANGE)], check=False)
    run(["iptables", "-D", "FORWARD", *_CONTAIN], check=False)
    run(["iptables", "-D", "FORWARD", *_BRIDGED], check=False)
    return len(ours)


def remove_stale() -> None:
    """Remove labs whose owning test process died without cleaning up (not `up` labs)."""
    if not BASE_DIR.exists():
        return
    for child in BASE_DIR.iterdir():
        if not child.name.isdigit():
            continue
        try:
            lab = Lab.load(child)
        except (OSError, ValueError, TypeError):
            if time.time() - child.stat().st_mtime > 60:
                shutil.rmtree(child, ignore_errors=True)
            continue
        if not lab.keep and not _alive(lab.owner_pid):
            lab.down()


@contextlib.contextmanager
def _allocation_lock() -> Iterator[None]:
    fd = os.open(BASE_DIR / "alloc.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _wait_for(ready: object, timeout: float, why: object) -> None:
    assert callable(ready) and callable(why)
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise RuntimeError(why())
        time.sleep(0.02)


def wait_for_ports(addresses: Sequence[tuple[str, int]], timeout: float) -> None:
    """Wait until every address accepts TCP connections (sshd listening)."""
    deadline = time.monotonic() + timeout
    pending = list(addresses)
    while pending:
        still = []
        for address in pending:
            try:
                with socket.create_connection(address, timeout=0.5):
                    pass
            except OSError:
                still.append(address)
        pending = still
        if pending:
            if time.monotonic() > deadline:
                raise RuntimeError(f"lab sshd not listening on {pending[:5]}")
            time.sleep(0.05)
