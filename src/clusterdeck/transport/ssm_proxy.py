"""``python -m clusterdeck.transport.ssm_proxy INSTANCE REGION [PORT [PROFILE]]``.

A ProxyCommand for the system ``ssh`` (``clusterdeck ssh`` to a node reached through SSM):
starts the SSM session with boto3 and replaces itself with ``session-manager-plugin``, which
gets the session token in its environment, never in its arguments.
"""

from __future__ import annotations

import os
import sys

from clusterdeck.errors import ClusterdeckError
from clusterdeck.transport.ssm import SsmRoute, find_plugin, plugin_invocation, start_session


def main(args: list[str]) -> int:
    if len(args) < 2:
        sys.stderr.write(
            "usage: python -m clusterdeck.transport.ssm_proxy INSTANCE REGION [PORT [PROFILE]]\n"
        )
        return 2
    route = SsmRoute(
        args[0], args[1], int(args[2]) if len(args) > 2 else 22, args[3] if len(args) > 3 else ""
    )
    try:
        plugin = find_plugin(route.instance_id, route)
        response, endpoint_url = start_session(route, route.instance_id)
    except ClusterdeckError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 1
    argv, extra = plugin_invocation(plugin, route, response, endpoint_url)
    os.execve(plugin, argv, {**os.environ, **extra})  # noqa: S606 (argv list, no shell)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
