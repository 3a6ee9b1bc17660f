"""Incremental JSON (private; ``so.parse_json`` and friends are re-exported by ``streamops``).

- ``_parser``: the O(n) character-at-a-time JSON parser core;
- ``_operator``: ``parse_json()`` on top of it; ``_items``: element streaming;
- ``_models``: pydantic validation as fields complete (walks the core schema);
- ``_tools``: ``parse_tool_calls()``; ``_schema``: a JSON Schema subset as a
  pydantic type; ``_prose``: finding the JSON document in an LLM's prose.
"""
