"""Small system files the phases install: modules-load.d, sysctl.d and apt source lists.

Each has a line format of its own; the writers here take typed values and refuse anything
that would break a line (whitespace in a token, newlines), instead of pasting strings.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict

_TOKEN = re.compile(r"^[A-Za-z0-9_.:/\-=$()\[\],+~]+$")

MODULES = ["overlay", "br_netfilter"]
SYSCTLS = {
    "net.bridge.bridge-nf-call-iptables": "1",
    "net.bridge.bridge-nf-call-ip6tables": "1",
    "net.ipv4.ip_forward": "1",
}


def _check(value: str, what: str) -> str:
    if not _TOKEN.match(value):
        raise ValueError(f"{what} {value!r} cannot be written on one line safely")
    return value


def modules_load(modules: list[str] | None = None) -> str:
    return "".join(_check(m, "module") + "\n" for m in (modules or MODULES))


def sysctl_conf(values: dict[str, str] | None = None) -> str:
    items = (values or SYSCTLS).items()
    return "".join(f"{_check(k, 'sysctl')} = {_check(v, 'sysctl value')}\n" for k, v in items)


class AptSource(BaseModel):
    """One ``deb`` line of a sources.list.d file (one-line format, signed-by a keyring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    uri: str
    suite: str
    components: list[str] = []
    signed_by: str

    def line(self) -> str:
        parts = [
            _check(self.uri, "URI"),
            _check(self.suite, "suite"),
            *(_check(c, "component") for c in self.components),
        ]
        return f"deb [signed-by={_check(self.signed_by, 'keyring')}] {' '.join(parts)}\n"


def kubernetes_source(minor: str) -> AptSource:
    return AptSource(
        uri=f"https://pkgs.k8s.io/core:/stable:/{minor}/deb/",
        suite="/",
        signed_by="/etc/apt/keyrings/kubernetes-apt-keyring.gpg",
    )


def nvidia_source() -> AptSource:
    return AptSource(
        uri="https://nvidia.github.io/libnvidia-container/stable/deb/$(ARCH)",
        suite="/",
        signed_by="/usr/share/keyrings/nvidia-container-toolkit-keyring.gpg",
    )


CONTAINERD_SOCKET = "unix:///run/containerd/containerd.sock"


def crictl_yaml() -> str:
    """/etc/crictl.yaml: crictl talks to containerd (no probing of other runtimes)."""
    return (
        f"runtime-endpoint: {CONTAINERD_SOCKET}\nimage-endpoint: {CONTAINERD_SOCKET}\ntimeout: 10\n"
    )
