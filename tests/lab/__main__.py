"""``python -m tests.lab up N [--full [--pxe]] [-o json] | boot SLOT DIR [HOST...] |
reboot SLOT HOST | stop SLOT HOST | down [SLOT|--all] | status``: the lab by hand.

``up --full --pxe`` reserves hosts (addresses known, nothing booted); ``boot`` PXE-boots them
from what ``clusterdeck pxe render`` wrote to DIR (all of them when no HOST is named);
``reboot`` and ``stop`` act on one, which starts pristine at its next boot (tests/lab/pxe.py).

``up N --full --sites S --nat K`` lays the hosts over S sites, the last K behind NAT
(tests/lab/sites.py); each JSON host entry then also gives its ``site`` and ``nat``.

``up`` starts N hosts that stay until ``down`` (they are not removed as stale by test runs)
and prints how to reach them; with ``-o json`` stdout holds only JSON: ``slot``, ``hosts``
(``name``, ``address``), ``user``, ``key``, ``known_hosts``, and ``vip`` (a free address on
the hosts' network for a virtual IP). Full hosts log in as a sudoer, never as root.
``down`` without arguments removes every lab this machine has,
by the lab's own name prefix, plus the safety route.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tests.lab import full, pxe
from tests.lab import sites as site_hosts
from tests.lab.light import BASE_DIR, Lab, LabHost, remove_all


def up(
    count: int,
    is_full: bool,
    default_max_startups: bool,
    as_json: bool = False,
    pxe: bool = False,
    sites: int = 0,
    nat: int = 0,
) -> int:
    lab = Lab.create(keep=True)
    try:
        if sites:
            hosts = site_hosts.add_site_hosts(lab, count, sites, nat)
        elif pxe:  # addresses reserved, nothing booted: `boot` starts them from pxe render's tree
            hosts = full.reserve_full_hosts(lab, count)
        elif is_full:
            hosts = full.add_full_hosts(lab, count)
        else:
            hosts = lab.add_hosts(
                count, max_startups=None if default_max_startups else "200:30:300"
            )
    except BaseException:
        lab.down()
        raise
    known_hosts = lab.path / "known_hosts"
    known_hosts.write_text("".join(f"{h.address} {h.host_public_key()}\n" for h in hosts))
    if as_json:  # stdout holds this JSON and nothing else
        print(
            json.dumps(
                {
                    "slot": lab.slot,
                    "hosts": [_entry(h, bool(sites)) for h in hosts],
                    "user": hosts[0].user,
                    "key": str(lab.client_key),
                    "known_hosts": str(known_hosts),
                    "vip": str(lab.network.broadcast_address - 1),
                    "network": str(lab.network),
                },
                indent=1,
            )
        )
        return 0
    print(
        f"lab {lab.slot}: {len(hosts)} {'full' if is_full else 'light'} host(s) on "
        f"{lab.network} (bridge {lab.bridge})"
    )
    for host in hosts:
        where = f"  {host.site}{' behind NAT' if host.nat else ''}" if sites else ""
        print(f"  {host.name:<6} {host.address}{where}")
    first = hosts[0]
    print(
        f"ssh: ssh -i {lab.client_key} -o UserKnownHostsFile={known_hosts} "
        f"{first.user}@{first.address}"
    )
    print(f"remove with: python -m tests.lab down {lab.slot}")
    return 0


def _entry(host: LabHost, with_sites: bool) -> dict[str, object]:
    entry: dict[str, object] = {"name": host.name, "address": host.address}
    if with_sites:
        entry |= {"site": host.site, "nat": host.nat}
    return entry


def _lab(slot: str) -> Lab:
    lab_dir = BASE_DIR / slot
    if not (lab_dir / "lab.json").exists():
        raise SystemExit(f"no lab {slot} (see python -m tests.lab status)")
    return Lab.load(lab_dir)


def _host(lab: Lab, name: str) -> LabHost:
    if name not in lab.hosts:
        raise SystemExit(f"lab {lab.slot} has no host {name} (it has {', '.join(lab.hosts)})")
    return lab.hosts[name]


def boot(slot: str, tree: Path, names: list[str]) -> int:
    lab = _lab(slot)
    hosts = [_host(lab, n) for n in names] if names else list(lab.hosts.values())
    pxe.boot(lab, hosts, tree)
    print(f"booted {', '.join(h.name for h in hosts)} from {tree}")
    return 0


def power(slot: str, name: str, action: str) -> int:
    lab = _lab(slot)
    host = _host(lab, name)
    if action == "stop":
        pxe.stop(lab, host)
    else:
        pxe.reboot(lab, host, Path((host.path / "pxe-tree").read_text()))
    print(f"{action}: {name}")
    return 0


def down(slot: str | None) -> int:
    if slot is None:
        count = remove_all()
        print(f"removed {count} lab(s)")
        return 0
    lab_dir = BASE_DIR / slot
    if not (lab_dir / "lab.json").exists():
        print(f"no lab {slot} (see python -m tests.lab status)", file=sys.stderr)
        return 1
    Lab.load(lab_dir).down()
    print(f"removed lab {slot}")
    return 0


def status() -> int:
    labs = []
    if BASE_DIR.exists():
        for child in sorted(BASE_DIR.iterdir()):
            if (child / "lab.json").exists():
                lab = Lab.load(child)
                labs.append(
                    {
                        "slot": lab.slot,
                        "network": str(lab.network),
                        "keep": lab.keep,
                        "owner_pid": lab.owner_pid,
                        "hosts": len(lab.hosts),
                    }
                )
    print(json.dumps(labs, indent=1))
    return 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.lab", description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)
    p_up = sub.add_parser("up", help="start N hosts")
    p_up.add_argument("count", type=int)
    p_up.add_argument("--full", action="store_true", help="systemd-nspawn hosts")
    p_up.add_argument(
        "--pxe", action="store_true", help="with --full: reserve the hosts, boot none (see boot)"
    )
    p_up.add_argument(
        "--sites",
        type=int,
        default=0,
        help="with --full: lay the hosts over S sites with no route between them "
        "(tests/lab/sites.py)",
    )
    p_up.add_argument(
        "--nat", type=int, default=0, help="with --sites: the last K hosts behind a NAT router"
    )
    p_up.add_argument(
        "--default-max-startups",
        action="store_true",
        help="keep sshd's default MaxStartups 10:30:100 (light hosts)",
    )
    p_up.add_argument(
        "-o", "--output", choices=["text", "json"], default="text", help="json: only JSON on stdout"
    )
    p_down = sub.add_parser("down", help="remove one lab, or all labs")
    p_down.add_argument("slot", nargs="?")
    p_down.add_argument("--all", action="store_true")
    sub.add_parser("status", help="list labs")
    p_boot = sub.add_parser("boot", help="PXE-boot hosts from what pxe render wrote to DIR")
    p_boot.add_argument("slot")
    p_boot.add_argument("dir", type=Path)
    p_boot.add_argument("hosts", nargs="*")
    for verb in ("reboot", "stop"):
        p_power = sub.add_parser(verb, help=f"{verb} one PXE-booted host (pristine at next boot)")
        p_power.add_argument("slot")
        p_power.add_argument("host")
    args = parser.parse_args(argv)
    if args.cmd == "up":
        if args.pxe and not args.full:
            parser.error("--pxe needs --full")
        if args.sites and (not args.full or args.pxe):
            parser.error("--sites needs --full (and not --pxe)")
        if args.nat and not args.sites:
            parser.error("--nat needs --sites")
        if args.sites:
            problem = site_hosts.check_layout(args.count, args.sites, args.nat)
            if problem:
                parser.error(problem)
        return up(
            args.count,
            args.full,
            args.default_max_startups,
            args.output == "json",
            args.pxe,
            args.sites,
            args.nat,
        )
    if args.cmd == "boot":
        return boot(args.slot, args.dir, args.hosts)
    if args.cmd in ("reboot", "stop"):
        return power(args.slot, args.host, args.cmd)
    if args.cmd == "down":
        return down(None if args.all else args.slot)
    return status()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
