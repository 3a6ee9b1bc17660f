"""Declarative policies (private; ``so.Policy`` and ``so.load_policy`` are re-exported).

- ``_policy``: the policy model (one section per operator), loading, building;
- ``presets/``: the built-in presets (``safe-chat``, ``cost-capped``, ``strict-json``).
"""
