"""``python -m clusterdeck``: the same as the ``clusterdeck`` command."""

from clusterdeck.console import run

run()
