"""keepalived.conf and haproxy.cfg for the keepalived HA mode, from typed models.

Neither format has a serializer library, so this module has a small one: a config is a tree
of blocks and directives, each directive a keyword and tokens, and every token is checked
(no whitespace, braces, quotes, comment signs or newlines unless it is emitted as a quoted
string). Nothing is pasted into a template: a bad value fails here with its name.

Layout: every control plane runs HAProxy on ``api_port`` forwarding to port 6443 of all control
planes, and keepalived holding the VIP on the control plane whose HAProxy is alive, talking
VRRP by unicast to its peers (works where multicast does not, e.g. most clouds).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, Field

BARE_TOKEN = re.compile(r"^[A-Za-z0-9_.:/*@%+=,\-\[\]]+$")


class ConfigValueError(ValueError):
    """A value cannot be written into the config safely."""


@dataclass(frozen=True)
class Quoted:
    """A token written as a double-quoted string (keepalived scripts)."""

    text: str


Token = str | int | Quoted


def _token(value: Token, where: str) -> str:
    if isinstance(value, int):
        return str(value)
    if isinstance(value, Quoted):
        if any(c in value.text for c in '"\n\\'):
            raise ConfigValueError(f"{where}: {value.text!r} cannot be quoted safely")
        return f'"{value.text}"'
    if not BARE_TOKEN.match(value):
        raise ConfigValueError(f"{where}: {value!r} is not a plain config token")
    return value


@dataclass
class Block:
    """``name args { ... }`` (keepalived) or a ``name args`` section (haproxy)."""

    head: tuple[Token, ...]
    body: list[tuple[Token, ...] | Block] = field(default_factory=list)

    def add(self, *tokens: Token) -> Block:
        self.body.append(tokens)
        return self


def _line(tokens: tuple[Token, ...], where: str) -> str:
    return " ".join(_token(t, where) for t in tokens)


def keepalived_text(blocks: list[Block]) -> str:
    out: list[str] = []

    def emit(block: Block, depth: int) -> None:
        pad = "    " * depth
        out.append(f"{pad}{_line(block.head, 'keepalived')} {{")
        for item in block.body:
            if isinstance(item, Block):
                emit(item, depth + 1)
            else:
                out.append(f"{pad}    {_line(item, _line(block.head, 'keepalived'))}")
        out.append(f"{pad}}}")

    for block in blocks:
        emit(block, 0)
    return "\n".join(out) + "\n"


def haproxy_text(sections: list[Block]) -> str:
    out: list[str] = []
    for section in sections:
        out.append(_line(section.head, "haproxy"))
        for item in section.body:
            if isinstance(item, Block):
                raise ConfigValueError("haproxy sections do not nest")
            out.append(f"    {_line(item, _line(section.head, 'haproxy'))}")
        out.append("")
    return "\n".join(out)


class Backend(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    address: str


HAPROXY_ADMIN_SOCKET = "/run/clusterdeck-haproxy.sock"  # root's only: servers in or out
API_BACKEND = "kube_api_servers"


class LoadBalancerConfig(BaseModel):
    """Everything one control plane needs for its keepalived and HAProxy."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    node: str
    vip: str
    api_port: int
    router_id: int = Field(ge=1, le=255)
    interface: str
    own_address: str
    peers: list[str]
    priority: int
    backends: list[Backend]
    haproxy_pidfile: str = "/run/haproxy.pid"
    haproxy_socket: str = HAPROXY_ADMIN_SOCKET

    def keepalived_conf(self) -> str:
        ipaddress.ip_address(self.vip)
        check = Block(("vrrp_script", "chk_haproxy"))
        check.add("script", Quoted("/usr/bin/systemctl is-active --quiet haproxy"))
        check.add("interval", 2).add("fall", 2).add("rise", 2)
        instance = Block(("vrrp_instance", "kube_api"))
        instance.add("state", "BACKUP").add("interface", self.interface)
        instance.add("virtual_router_id", self.router_id).add("priority", self.priority)
        # VRRPv3 adverts every half second: a backup takes the VIP about 1.6 s after the
        # master goes silent (3 adverts plus skew), against about 3.2 s with VRRPv2's 1 s
        instance.add("advert_int", "0.5")
        if self.peers:  # alone (a control plane of one, to grow), there is no one to tell
            instance.add("unicast_src_ip", self.own_address)
            peers = Block(("unicast_peer",))
            for peer in self.peers:
                peers.add(peer)
            instance.body.append(peers)
        instance.body.append(
            Block(("virtual_ipaddress",), [(f"{self.vip}/32", "dev", self.interface)])
        )
        instance.body.append(Block(("track_script",), [("chk_haproxy",)]))
        glob = Block(("global_defs",))
        glob.add("router_id", self.node).add("enable_script_security")
        glob.add("script_user", "root").add("vrrp_version", 3)
        return keepalived_text([glob, check, instance])

    def haproxy_cfg(self) -> str:
        glob = Block(("global",))
        glob.add("maxconn", 4000).add("pidfile", self.haproxy_pidfile)
        # the runtime API a stateless control plane's agent uses to keep the servers in step
        # with etcd's members (clusterdeck.agent.backends); root's only
        glob.add("stats", "socket", self.haproxy_socket, "mode", 600, "level", "admin")
        defaults = Block(("defaults",))
        # A connection that cannot reach its server in 1 s is sent to another one on every
        # retry (redispatch 1), instead of failing: the API stays reachable while a dead
        # server is still marked up.
        defaults.add("mode", "tcp").add("timeout", "connect", "1s").add("timeout", "check", "1s")
        defaults.add("retries", 2).add("option", "redispatch", 1)
        defaults.add("timeout", "client", "1h").add("timeout", "server", "1h")
        front = Block(("frontend", "kube_api"))
        front.add("bind", f":{self.api_port}").add("default_backend", API_BACKEND)
        back = Block(("backend", API_BACKEND))
        back.add("balance", "roundrobin")
        # A server counts as up only while its API server says it is ready (HTTPS /readyz,
        # which anonymous callers may read): one that is starting, or shutting down in an
        # upgrade, gets no new connections, where a TCP check would send them to it. The
        # check proves readiness, not identity, so it does not verify the certificate (the
        # cluster CA does not exist yet when HAProxy starts). After a failed check the next
        # comes within 300 ms, and a connection that fails marks the server down at once.
        back.add("option", "httpchk", "GET", "/readyz")
        back.add("http-check", "expect", "status", 200)
        back.add(
            "default-server",
            *("inter", "1s", "fastinter", "300ms", "downinter", "1s", "fall", 2, "rise", 2),
            *("check-ssl", "verify", "none", "observe", "layer4"),
            *("error-limit", 1, "on-error", "mark-down"),
        )
        for backend in self.backends:
            back.add("server", backend.name, f"{backend.address}:6443", "check")
        return haproxy_text([glob, defaults, front, back])
