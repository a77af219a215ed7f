"""SSM tunnel: the plugin cannot run here, so check its invocation and the missing-plugin error."""

from __future__ import annotations

import asyncio
import json

import pytest

from clusterdeck.transport import Connections, Endpoint, PluginMissing, SsmRoute
from clusterdeck.transport.ssm import RESPONSE_ENV, plugin_invocation, session_request

RESPONSE = {
    "SessionId": "alice-0a1b2c",
    "TokenValue": "TOKEN-must-not-leak",
    "StreamUrl": "wss://ssmmessages.us-west-2.amazonaws.com/v1/data-channel/alice-0a1b2c",
    "ResponseMetadata": {"HTTPStatusCode": 200},
}


def test_plugin_gets_the_session_in_its_environment_not_its_arguments() -> None:
    route = SsmRoute("i-0123456789abcdef0", "us-west-2", port=2222, profile="ops")
    argv, env = plugin_invocation(
        "/usr/local/bin/session-manager-plugin",
        route,
        RESPONSE,
        "https://ssm.us-west-2.amazonaws.com",
    )
    assert argv[:5] == [
        "/usr/local/bin/session-manager-plugin",
        RESPONSE_ENV,
        "us-west-2",
        "StartSession",
        "ops",
    ]
    assert json.loads(argv[5]) == {
        "Target": "i-0123456789abcdef0",
        "DocumentName": "AWS-StartSSHSession",
        "Parameters": {"portNumber": ["2222"]},
    }
    assert argv[6] == "https://ssm.us-west-2.amazonaws.com"
    assert all("TOKEN-must-not-leak" not in a for a in argv)
    assert json.loads(env[RESPONSE_ENV]) == {
        k: RESPONSE[k] for k in ("SessionId", "TokenValue", "StreamUrl")
    }
    assert session_request(route)["Target"] == "i-0123456789abcdef0"


def test_missing_plugin_is_one_clear_line_before_any_session(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    # No AWS endpoint or credentials here: reaching boto3 would fail differently.
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    node = Endpoint(
        "i-0123456789abcdef0",
        name="prod-worker-3",
        ssm=SsmRoute("i-0123456789abcdef0", "us-west-2"),
    )

    async def go() -> None:
        async with Connections() as pool:
            await pool.get(node)

    with pytest.raises(PluginMissing) as caught:
        asyncio.run(go())
    message = str(caught.value)
    assert "prod-worker-3" in message and "i-0123456789abcdef0" in message
    assert "session-manager-plugin" in message and "\n" not in message
