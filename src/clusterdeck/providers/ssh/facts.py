"""What a registered host is: OS, architecture, CPUs, memory, interfaces, cgroup version,
whether the login has passwordless sudo, and the GPUs lspci sees.

One small POSIX sh script gathers everything in a single round trip and prints ``key=value``
lines; :func:`parse` turns them into the ``facts`` dict stored with the node. When ``lspci``
is missing (minimal images often lack pciutils) GPUs are recorded as unknown, not as none.
"""

from __future__ import annotations

import re
from typing import Any

from clusterdeck.transport import Script

FACTS_SCRIPT = r"""
set -u
# shell builtins and /proc where possible: a fork per fact adds up over hundreds of hosts
if [ -r /etc/os-release ]; then . /etc/os-release; fi
echo "os_id=${ID:-unknown}"
echo "os_version=${VERSION_ID:-}"
echo "os=${PRETTY_NAME:-Linux}"
echo "arch=$(uname -m)"
read -r kernel < /proc/sys/kernel/osrelease && echo "kernel=$kernel"
read -r name < /proc/sys/kernel/hostname && echo "hostname=$name"
echo "cpus=$(nproc 2>/dev/null || getconf _NPROCESSORS_ONLN)"
while read -r key value _; do
  if [ "$key" = "MemTotal:" ]; then echo "memory_kib=$value"; break; fi
done < /proc/meminfo
echo "addresses=$(hostname -I 2>/dev/null || true)"
if [ -d /run/systemd/system ]; then echo "init=systemd"; else echo "init=other"; fi
# which interface carries which IPv4 address (keepalived binds the VIP to the node's own)
if command -v ip >/dev/null 2>&1; then
  ip -o -4 addr show 2>/dev/null | while read -r _ dev _ cidr _; do
    echo "inet=$dev ${cidr%/*}"
  done
fi
if [ -f /sys/fs/cgroup/cgroup.controllers ]; then echo "cgroup=v2"; else echo "cgroup=v1"; fi
# the capability bounding set: without CAP_SYS_RESOURCE (bit 24; a container-like machine)
# no process may lower an OOM score, which runc does for every pod unless told not to
while read -r key value; do
  if [ "$key" = "CapBnd:" ]; then echo "capbnd=$value"; fi
done < /proc/self/status
# kube-proxy raises the conntrack table's limit unless told not to; in a container-like machine
# (a network namespace of its own) the limit is read-only and kube-proxy would fail on it
f=/proc/sys/net/netfilter/nf_conntrack_max
if [ ! -e "$f" ]; then echo "conntrack_max=absent"
elif { [ "$(id -u)" = 0 ] && [ -w "$f" ]; } || sudo -n test -w "$f" 2>/dev/null; then
  echo "conntrack_max=writable"
else echo "conntrack_max=fixed"; fi
if [ "$(id -u)" = 0 ]; then echo "sudo=root"
elif sudo -n true 2>/dev/null; then echo "sudo=yes"
else echo "sudo=no"; fi
# NVIDIA display controllers (vendor 0x10de, class 0x03....) straight from sysfs: no lspci needed
n=0
for dev in /sys/bus/pci/devices/*; do
  [ -r "$dev/vendor" ] && [ -r "$dev/class" ] || continue
  read -r vendor < "$dev/vendor"; read -r class < "$dev/class"
  if [ "$vendor" = 0x10de ] && [ "${class#0x03}" != "$class" ]; then n=$((n + 1)); fi
done
echo "nvidia_pci=$n"
if command -v lspci >/dev/null 2>&1; then
  echo "lspci=yes"
  lspci -nn 2>/dev/null | grep -Ei 'vga compatible|3d controller|display controller' \
    | sed 's/^/gpu=/' || true
else
  echo "lspci=no"
fi
"""

_VENDORS = {"10de": "nvidia", "1002": "amd", "8086": "intel"}
_PCI_ID = re.compile(r"\[([0-9a-f]{4}):([0-9a-f]{4})\]")


def script() -> Script:
    return Script(FACTS_SCRIPT, name="facts")


def _gpu(line: str) -> dict[str, str]:
    slot, _, description = line.partition(" ")
    ids = _PCI_ID.findall(description)
    vendor_id, device_id = ids[-1] if ids else ("", "")
    return {
        "slot": slot,
        "vendor": _VENDORS.get(vendor_id, vendor_id or "unknown"),
        "pci_id": f"{vendor_id}:{device_id}" if vendor_id else "",
        "description": description.strip(),
    }


def parse(output: str) -> dict[str, Any]:
    """The facts dict from the script's output (unknown keys are ignored)."""
    values: dict[str, str] = {}
    gpus: list[dict[str, str]] = []
    interfaces: dict[str, str] = {}
    for line in output.splitlines():
        key, sep, value = line.partition("=")
        if not sep:
            continue
        if key == "gpu":
            gpus.append(_gpu(value))
        elif key == "inet":
            dev, _, address = value.strip().partition(" ")
            if dev and address:
                interfaces[address] = dev
        else:
            values[key] = value.strip()
    facts: dict[str, Any] = {
        "os": values.get("os", "unknown"),
        "os_id": values.get("os_id", "unknown"),
        "os_version": values.get("os_version", ""),
        "arch": values.get("arch", "unknown"),
        "kernel": values.get("kernel", ""),
        "cpus": _int(values.get("cpus")),
        "memory_mib": (_int(values.get("memory_kib")) or 0) // 1024 or None,
        "hostname": values.get("hostname", ""),
        "addresses": values.get("addresses", "").split(),
        "init": values.get("init", "other"),
        "interfaces": interfaces,  # IPv4 address -> interface name
        "cgroup": values.get("cgroup", "unknown"),
        "sudo": values.get("sudo", "unknown"),  # root | yes (passwordless) | no
        "can_lower_oom_score": _has_capability(values.get("capbnd"), CAP_SYS_RESOURCE),
        # None: no conntrack table yet (kube-proxy loads the module and may set it)
        "conntrack_max_writable": {"writable": True, "fixed": False}.get(
            values.get("conntrack_max", "")
        ),
    }
    if values.get("lspci") == "yes":
        facts["gpus"] = gpus
        facts["nvidia_gpus"] = sum(1 for g in gpus if g["vendor"] == "nvidia")
    else:
        facts["gpus"] = None  # unknown: lspci is not installed
        facts["nvidia_gpus"] = _int(values.get("nvidia_pci"))
        facts["notes"] = ["lspci not installed (package pciutils): GPUs not probed"]
    return facts


CAP_SYS_RESOURCE = 24


def _has_capability(mask: str | None, bit: int) -> bool | None:
    try:
        return bool(int(mask or "", 16) >> bit & 1)
    except ValueError:
        return None  # not probed


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value else None
    except ValueError:
        return None
