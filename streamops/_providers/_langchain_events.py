"""Refuse LangChain ``astream_events`` events with advice that works.

An ``astream_events()`` stream repeats the model's text in many places (each
``on_chat_model_stream`` chunk, the ``on_chain_stream``/``on_parser_stream``
outputs of every step after it, the inputs and outputs of the ``*_end``
events): no lens can rebuild all those copies, and the model run already
emitted its raw text to callbacks and tracing. So the stream is refused with
what to do instead, rather than the generic "no lens for dict".
"""

from __future__ import annotations

from typing import Any

from .._core._errors import ChunkTypeError
from ..lowlevel import register_lens

_EVENT_KEYS = frozenset({"event", "run_id", "data"})


def _refuse_events(chunk: Any) -> None:
    """The lens factory: raise for an ``astream_events`` event, ``None`` for anything else."""
    if type(chunk) is dict and chunk.keys() >= _EVENT_KEYS:
        event = chunk.get("event")
        if isinstance(event, str) and event.startswith("on_"):
            raise ChunkTypeError(
                0,
                chunk,
                "chunks of a model's stream, not LangChain astream_events() events",
                f"the {event!r} event's text is repeated in other events and was already"
                " sent to callbacks and tracing; wrap the model instead:"
                " streamops.langchain.wrap_chat_model(model, op), and every event of"
                " chain.astream_events() carries the operators' output",
            )


register_lens(_refuse_events)
