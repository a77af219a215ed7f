"""The executor: steps with dependencies, bounded concurrency, deadlines, retries, events.

Use :class:`Executor` with a list of :class:`Step`; every node's output goes to its own log
file (:mod:`clusterdeck.engine.logs`).
"""

from clusterdeck.engine.dag import (
    DEFAULT_CONCURRENCY,
    Executor,
    RunReport,
    Step,
    StepContext,
    StepDeadline,
    check_graph,
)
from clusterdeck.engine.logs import NodeLogs, default_log_root

__all__ = [
    "DEFAULT_CONCURRENCY",
    "Executor",
    "NodeLogs",
    "RunReport",
    "Step",
    "StepContext",
    "StepDeadline",
    "check_graph",
    "default_log_root",
]
