"""Reaching AWS nodes without a public address through an SSM session instead of a bastion.

boto3's ``start_session`` (document ``AWS-StartSSHSession``) opens the session; AWS's
``session-manager-plugin`` carries the byte stream, and our SSH runs over it through a socket
pair, so host key pinning and everything else stay the same as for a direct connection.
The session token goes to the plugin in the ``AWS_SSM_START_SESSION_RESPONSE`` environment
variable (as the AWS CLI does), never on its command line, and never into a log.
The plugin is a separate program the user installs; without it we stop with one clear line
before any session is opened.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
from dataclasses import dataclass
from typing import Any

from clusterdeck.errors import PermanentError, TransientError

PLUGIN = "session-manager-plugin"
RESPONSE_ENV = "AWS_SSM_START_SESSION_RESPONSE"
DOCUMENT = "AWS-StartSSHSession"
INSTALL_URL = (
    "https://docs.aws.amazon.com/systems-manager/latest/userguide/"
    "session-manager-working-with-install-plugin.html"
)
_TRANSIENT_CODES = {
    "ThrottlingException",
    "TargetNotConnected",
    "InternalServerError",
    "ServiceUnavailable",
    "RequestLimitExceeded",
}


@dataclass(frozen=True)
class SsmRoute:
    """Reach ``instance_id``'s sshd (``port``) through Systems Manager in ``region``."""

    instance_id: str
    region: str
    port: int = 22
    profile: str = ""


class PluginMissing(PermanentError):
    def __init__(self, node: str, instance_id: str) -> None:
        super().__init__(
            f"{node}: reaching {instance_id} through SSM needs the AWS {PLUGIN} program, "
            f"which is not on PATH; install it ({INSTALL_URL}) or give the nodes a bastion"
        )


def find_plugin(node: str, route: SsmRoute) -> str:
    path = shutil.which(PLUGIN)
    if path is None:
        raise PluginMissing(node, route.instance_id)
    return path


def session_request(route: SsmRoute) -> dict[str, Any]:
    return {
        "Target": route.instance_id,
        "DocumentName": DOCUMENT,
        "Parameters": {"portNumber": [str(route.port)]},
    }


def plugin_invocation(
    plugin: str, route: SsmRoute, response: dict[str, Any], endpoint_url: str
) -> tuple[list[str], dict[str, str]]:
    """The plugin's argv (no secrets) and the extra environment that carries the session."""
    session = {k: response[k] for k in ("SessionId", "TokenValue", "StreamUrl") if k in response}
    argv = [
        plugin,
        RESPONSE_ENV,
        route.region,
        "StartSession",
        route.profile,
        json.dumps(session_request(route)),
        endpoint_url,
    ]
    return argv, {RESPONSE_ENV: json.dumps(session)}


def start_session(route: SsmRoute, node: str, client: Any = None) -> tuple[dict[str, Any], str]:
    """Call SSM StartSession (blocking); return the response and the endpoint URL used.
    ``client``: an SSM client to use (default: one for the route's profile and region)."""
    import boto3
    import botocore.exceptions

    if client is None:
        session = boto3.session.Session(
            profile_name=route.profile or None, region_name=route.region
        )
        client = session.client("ssm")
    try:
        response: dict[str, Any] = dict(client.start_session(**session_request(route)))
    except botocore.exceptions.ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        message = f"{node}: SSM StartSession for {route.instance_id} failed: {code}"
        if code in _TRANSIENT_CODES:
            raise TransientError(message) from exc
        raise PermanentError(message) from exc
    except botocore.exceptions.BotoCoreError as exc:
        raise TransientError(
            f"{node}: SSM StartSession for {route.instance_id} failed: {type(exc).__name__}"
        ) from exc
    return response, str(client.meta.endpoint_url)


class SsmStream:
    """A running plugin joined to one end of a socket pair; SSH uses the other end."""

    def __init__(self, process: asyncio.subprocess.Process, sock: socket.socket) -> None:
        self.process = process
        self.sock = sock

    def close(self) -> None:
        if self.process.returncode is None:
            self.process.terminate()


async def open_stream(route: SsmRoute, node: str) -> SsmStream:
    plugin = find_plugin(node, route)
    response, endpoint_url = await asyncio.to_thread(start_session, route, node)
    argv, extra_env = plugin_invocation(plugin, route, response, endpoint_url)
    ours, theirs = socket.socketpair()
    try:
        process = await asyncio.create_subprocess_exec(
            *argv,
            stdin=theirs.fileno(),
            stdout=theirs.fileno(),
            stderr=asyncio.subprocess.DEVNULL,
            env={**os.environ, **extra_env},
        )
    except OSError as exc:
        ours.close()
        raise PermanentError(f"{node}: cannot start {PLUGIN}: {exc.strerror}") from exc
    finally:
        theirs.close()
    return SsmStream(process, ours)
