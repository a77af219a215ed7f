"""Internal records that travel between layers: topology, observed state, plan, store rows.

Plain typed data with no behaviour beyond small lookups, and no imports of the spec: the
planner translates the user's spec into these.
"""
