"""Token and cost budgets (private; re-exported by ``streamops``).

- ``_processor``: ``budget()``, ``BudgetUsage``, provider-reported usage;
- ``_tokens``: exact incremental token counts (tiktoken, encodings available offline);
- ``_ledger``: budgets shared by streams (``MemoryLedger``, ``RedisLedger``);
- ``_pricing``: model prices (``PriceTable``).
"""
