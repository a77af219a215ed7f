"""The caller's public IP, for SSH and API ingress when ``spec.aws.ingressCidrs`` is empty.

Why it exists: opening port 22 and 6443 to the world is the most common mistake of cluster
tools. When the file names no sources, clusterdeck allows only the address it is running
from, found here at create time. If it cannot be found, create stops with a clear error:
this module never falls back to 0.0.0.0/0.

``CLUSTERDECK_CALLER_IP`` gives the address directly (offline use, CI behind a known NAT,
tests); ``CLUSTERDECK_CALLER_IP_URL`` replaces the lookup service (default: AWS's
checkip endpoint, which answers with the address as plain text).
"""

from __future__ import annotations

import ipaddress
import os
import urllib.error
import urllib.request

from clusterdeck.errors import PermanentError

IP_ENV = "CLUSTERDECK_CALLER_IP"
URL_ENV = "CLUSTERDECK_CALLER_IP_URL"
DEFAULT_URL = "https://checkip.amazonaws.com"
TIMEOUT = 5.0
ATTEMPTS = 3

HINT = (
    "set spec.aws.ingressCidrs to the addresses allowed to reach SSH and the API "
    f"(e.g. [203.0.113.7/32]) or {IP_ENV}; clusterdeck never opens them to 0.0.0.0/0"
)


def _parse(text: str, origin: str) -> str:
    value = text.strip()
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        shown = value[:60] + ("..." if len(value) > 60 else "")
        raise PermanentError(
            f"cannot find your public IP: {origin} answered {shown!r}, not an IP address; {HINT}"
        ) from None
    if address.is_unspecified or address.is_multicast:
        raise PermanentError(f"cannot use {address} from {origin} as your public IP; {HINT}")
    return f"{address}/{address.max_prefixlen}"


def caller_cidr() -> str:
    """``a.b.c.d/32`` (or an IPv6 ``/128``) of the machine running clusterdeck."""
    given = os.environ.get(IP_ENV, "").strip()
    if given:
        return _parse(given, IP_ENV)
    url = os.environ.get(URL_ENV, "").strip() or DEFAULT_URL
    if not url.startswith(("https://", "http://")):
        raise PermanentError(f"{URL_ENV}={url!r} is not an http(s) URL; {HINT}")
    problem = ""
    for _ in range(ATTEMPTS):
        try:
            with urllib.request.urlopen(url, timeout=TIMEOUT) as response:  # noqa: S310
                body = response.read(256).decode("ascii", errors="replace")
            return _parse(body, url)
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            problem = str(getattr(exc, "reason", exc))
    raise PermanentError(f"cannot find your public IP: {url} did not answer ({problem}); {HINT}")
