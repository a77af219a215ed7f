"""Named step boundaries of an AWS create, and the TEST-ONLY crash switch at each of them.

Why it exists: "create is a reconcile" is only believable if it is tested by killing the
process at every boundary and running it again. ``CLUSTERDECK_TEST_CRASH_AFTER=<step>`` makes
the process SIGKILL itself (exactly like ``kill -9``: no cleanup, no finally blocks, the
environment lock released by the kernel) when it reaches that boundary. It exists for the
test-suite only; nothing else may set it. Unset, :func:`reached` does nothing.
"""

from __future__ import annotations

import os
import signal

CRASH_ENV = "CLUSTERDECK_TEST_CRASH_AFTER"

# In the order a create reaches them. "instances-launched-unrecorded" is the worst moment:
# RunInstances has returned but the IDs are not in the state store yet.
STEPS = (
    "vpc",
    "subnets",
    "internet-gateway",
    "nat-gateways",
    "route-tables",
    "security-groups",
    "security-group-rules",
    "iam-role",
    "instances-launched-unrecorded",
    "instances-launched",
    "instances-running",
    "source-dest-check",
    "target-group",
    "load-balancer",
    "listener",
)
# reached only by apply: terminations asked for, the records not yet forgotten
APPLY_STEPS = ("instances-terminating",)


def reached(step: str) -> None:
    """Mark a boundary; with ``CLUSTERDECK_TEST_CRASH_AFTER=step`` the process dies here."""
    if os.environ.get(CRASH_ENV) == step:
        os.kill(os.getpid(), signal.SIGKILL)
