"""AWS error translation over the real HTTP path, against a local endpoint that misbehaves.

moto cannot throttle, run out of quota or refuse credentials, so a tiny HTTP server plays
an EC2 endpoint answering with AWS's own error documents. Checked: throttling and 5xx are
retried (botocore's jittered backoff) and then reported as transient; quotas, credentials
and bad parameters fail on the first answer with one line naming the resource (and the
quota); "still in use" is waited out when the caller asks for it.
"""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from clusterdeck.errors import PermanentError, TransientError
from clusterdeck.providers.aws.errors import AwsBusy, AwsNotFound, call
from clusterdeck.providers.aws.session import connect

ERROR = (
    '<?xml version="1.0" encoding="UTF-8"?><Response><Errors><Error><Code>{code}</Code>'
    "<Message>{message}</Message></Error></Errors><RequestID>r-1</RequestID></Response>"
)
OK = (
    '<?xml version="1.0" encoding="UTF-8"?><DeleteSecurityGroupResponse>'
    "<requestId>r-2</requestId><return>true</return></DeleteSecurityGroupResponse>"
)


@dataclass
class Endpoint:
    url: str
    answers: list[tuple[int, str]] = field(default_factory=list)  # consumed in order; last repeats
    hits: int = 0


@pytest.fixture
def endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[Endpoint]:
    state = Endpoint(url="")

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            state.hits += 1
            status, body = state.answers[0] if len(state.answers) == 1 else state.answers.pop(0)
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/xml")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    for var in ("AWS_PROFILE", "AWS_RETRY_MODE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", state.url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")
    yield state
    server.shutdown()
    server.server_close()


def _error(status: int, code: str, message: str = "no") -> tuple[int, str]:
    return status, ERROR.format(code=code, message=message)


def test_throttling_is_retried_then_reported_as_transient(endpoint: Endpoint) -> None:
    endpoint.answers = [_error(503, "RequestLimitExceeded", "Request limit exceeded.")]
    session = connect("us-west-2")
    with pytest.raises(
        TransientError,
        match=r"^VPC x: AWS is throttling requests "
        r"\(RequestLimitExceeded\)",
    ):
        call(session.ec2.describe_vpcs, "VPC x")
    assert endpoint.hits == 2


def test_server_errors_are_retried_then_transient(endpoint: Endpoint) -> None:
    endpoint.answers = [_error(500, "InternalError", "We encountered an internal error.")]
    with pytest.raises(TransientError, match="server error"):
        call(connect("us-west-2").ec2.describe_vpcs, "VPC x")
    assert endpoint.hits == 2


def test_a_throttle_that_passes_is_invisible(endpoint: Endpoint) -> None:
    endpoint.answers = [_error(503, "RequestLimitExceeded"), (200, OK)]
    assert call(connect("us-west-2").ec2.delete_security_group, "SG", GroupId="sg-1")
    assert endpoint.hits == 2


def test_quota_fails_fast_and_names_the_quota(endpoint: Endpoint) -> None:
    endpoint.answers = [
        _error(400, "VpcLimitExceeded", "The maximum number of VPCs has been reached.")
    ]
    with pytest.raises(PermanentError) as info:
        call(connect("us-west-2").ec2.create_vpc, "VPC gpu-vpc", CidrBlock="10.0.0.0/16")
    assert str(info.value) == (
        "VPC gpu-vpc: quota reached: VPCs per Region (VpcLimitExceeded: The maximum number of "
        "VPCs has been reached.); free some up or request an increase in the Service Quotas "
        "console"
    )
    assert endpoint.hits == 1


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("UnauthorizedOperation", "not allowed with the current AWS credentials"),
        ("InsufficientInstanceCapacity", "AWS has no capacity for it"),
        ("InvalidParameterValue", "refused by AWS (InvalidParameterValue: no)"),
    ],
)
def test_permanent_refusals_fail_on_the_first_answer(
    endpoint: Endpoint, code: str, expected: str
) -> None:
    endpoint.answers = [_error(400 if code != "UnauthorizedOperation" else 403, code)]
    with pytest.raises(PermanentError) as info:
        call(connect("us-west-2").ec2.describe_vpcs, "2 x g5.xlarge for gpu in us-west-2a")
    assert str(info.value).startswith("2 x g5.xlarge for gpu in us-west-2a: ")
    assert expected in str(info.value)
    assert not isinstance(info.value, TransientError)
    assert endpoint.hits == 1


def test_still_in_use_is_waited_out_when_asked(endpoint: Endpoint) -> None:
    endpoint.answers = [
        _error(400, "DependencyViolation"),
        _error(400, "DependencyViolation"),
        (200, OK),
    ]
    retries: list[str] = []
    assert call(
        connect("us-west-2").ec2.delete_security_group,
        "SG",
        GroupId="sg-1",
        settle=("DependencyViolation",),
        on_retry=retries.append,
    )
    assert endpoint.hits == 3 and len(retries) == 2


def test_still_in_use_without_settling_and_not_found_are_typed(endpoint: Endpoint) -> None:
    endpoint.answers = [_error(400, "DependencyViolation")]
    with pytest.raises(AwsBusy):
        call(connect("us-west-2").ec2.delete_security_group, "SG", GroupId="sg-1")
    endpoint.answers = [_error(400, "InvalidGroup.NotFound")]
    with pytest.raises(AwsNotFound):
        call(connect("us-west-2").ec2.delete_security_group, "SG", GroupId="sg-1")


def test_missing_credentials_say_how_to_configure_them(
    endpoint: Endpoint, monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(var)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(PermanentError, match=r"no usable AWS credentials .* AWS_PROFILE"):
        call(connect("us-west-2").ec2.describe_vpcs, "VPCs")
    assert endpoint.hits == 0
