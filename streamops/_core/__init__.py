"""The core: knows no operator and no provider (private; public names re-exported).

- ``_stages``: processors (the sans-I/O protocol), stages, the lens and
  source-adapter registries (``streamops.lowlevel`` re-exports them);
- ``_driver``: the fused driver (one loop per group of processor stages, sync
  and async), ``SyncStream``/``AsyncStream``, ``Operator``;
- ``_sources``: what an operator may be called on and how it is closed;
- ``_channels``: one processor chain per text channel of a provider chunk;
- ``_report``: ``StreamReport``, ``StopReason``, events;
- ``_errors``: every exception class (the tree is in its docstring);
- ``_validate``: the shared argument checks; ``_extras``: optional imports;
  ``_public``: ``__module__`` fix-up for public names.
"""
