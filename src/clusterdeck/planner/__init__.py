"""Pure functions from the user's spec to a topology and a plan. No I/O, ever.

``expand`` turns the spec into every node; ``build_plan`` diffs that topology against what
is observed and lists resources, rules, phases and actions with reasons.
"""

from clusterdeck.planner.expand import expand
from clusterdeck.planner.plan import build_plan

__all__ = ["build_plan", "expand"]
