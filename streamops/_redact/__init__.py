"""Redaction (private; ``so.redact`` and friends are re-exported by ``streamops``).

- ``_filter``: the streaming filter (``redact``, ``RedactReport``), exact under chunking;
- ``_analysis``: what a regex can match (widths, lookbehinds, refusals) before it runs;
- ``_patterns``: the built-in pattern library, categories and validators (Luhn, IBAN).
"""
