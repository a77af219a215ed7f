"""Pytest fixtures for the lab: one lab per test session (per xdist worker), hosts per test.

Import them in a conftest (``from tests.lab.fixtures import lab, lab_hosts  # noqa: F401``).
Hosts a test adds are removed when it ends, pass or fail; the lab itself at session end; a lab
left by a killed run is removed by the next one (its owner PID is gone).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.lab.light import Lab, LabHost, require_lab_tools

HostFactory = Callable[..., list[LabHost]]


@pytest.fixture(scope="session")
def lab() -> Iterator[Lab]:
    problem = require_lab_tools()
    if problem:
        pytest.skip(problem)
    the_lab = Lab.create()
    try:
        yield the_lab
    finally:
        the_lab.down()


@pytest.fixture
def lab_hosts(lab: Lab) -> Iterator[HostFactory]:
    """``lab_hosts(n, **options)`` starts n fresh light hosts, removed after the test."""
    made: list[LabHost] = []

    def make(count: int, **options: Any) -> list[LabHost]:
        hosts = lab.add_hosts(count, **options)
        made.extend(hosts)
        return hosts

    yield make
    for host in made:
        lab.remove_host(host)


def endpoint(lab: Lab, host: LabHost, **overrides: Any) -> Any:
    """The transport Endpoint for a lab host, logging in as its user with the lab's key."""
    from clusterdeck.transport import Endpoint

    fields: dict[str, Any] = {
        "host": host.address,
        "port": host.port,
        "user": host.user,
        "keys": (str(lab.client_key),),
        "name": host.name,
    }
    fields.update(overrides)
    return Endpoint(**fields)
