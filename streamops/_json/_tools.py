"""Parse the argument JSON of streamed tool (function) calls, per call index.

Reads, by duck typing (the SDKs are never imported): OpenAI Chat Completions
chunks (``choices[].delta.tool_calls[i].function.arguments``), OpenAI Responses
events (``response.output_item.added``, ``response.function_call_arguments.delta``)
and Anthropic Messages events (``content_block_start`` with a ``tool_use`` block,
``input_json_delta``, ``content_block_stop``); as SDK objects or plain dicts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .._core._driver import Operator
from .._core._errors import ChunkTypeError
from .._core._report import StreamReport
from .._core._stages import ProcessorStage
from ._parser import JSONParser, JSONStreamError

__all__ = ("ToolCallUpdate", "parse_tool_calls")


@dataclass(frozen=True, slots=True)
class ToolCallUpdate:
    """The state of one streamed tool call after a chunk changed it.

    ``arguments`` is the live partial value of the arguments (``None`` until
    the first character arrives); ``complete`` is True once the JSON is
    complete.

    >>> ToolCallUpdate(0, "call_1", "f", {"x": 1}, True).arguments
    {'x': 1}
    """

    index: int
    id: str | None
    name: str | None
    arguments: Any
    complete: bool


def _get(obj: Any, name: str) -> Any:
    if isinstance(obj, dict):
        return obj.get(name)
    return getattr(obj, name, None)


class _Call:
    __slots__ = ("complete", "fed", "id", "index", "name", "parser")

    def __init__(self, index: int, partial_strings: bool) -> None:
        self.index = index
        self.id: str | None = None
        self.name: str | None = None
        self.parser = JSONParser(partial_strings=partial_strings)
        self.complete = False
        self.fed = False

    def update(self) -> ToolCallUpdate:
        p = self.parser
        return ToolCallUpdate(
            self.index, self.id, self.name, p.value if p.has_value else None, self.complete
        )


class _ToolCallProcessor:
    __slots__ = ("_calls", "_partial_strings", "_recover", "_report")

    def __init__(self, report: StreamReport, partial_strings: bool, recover: bool) -> None:
        self._calls: dict[int, _Call] = {}
        self._partial_strings = partial_strings
        self._recover = recover
        self._report = report

    done = False

    def _call(self, index: int) -> _Call:
        call = self._calls.get(index)
        if call is None:
            call = self._calls[index] = _Call(index, self._partial_strings)
        return call

    def feed(self, chunk: Any) -> list[ToolCallUpdate]:
        if isinstance(chunk, (str, bytes)):
            raise ChunkTypeError(
                self._report.chunks_in, chunk, "a provider chunk or event (OpenAI, Anthropic)"
            )
        changed: dict[int, _Call] = {}
        kind = _get(chunk, "type")
        if kind is None or kind == "chat.completion.chunk":
            for choice in _get(chunk, "choices") or ():
                for tc in _get(_get(choice, "delta"), "tool_calls") or ():
                    fn = _get(tc, "function")
                    self._delta(changed, _get(tc, "index") or 0, _get(tc, "id"), _get(fn, "name"))
                    self._args(changed, _get(tc, "index") or 0, _get(fn, "arguments"))
        elif kind == "content_block_start":
            block = _get(chunk, "content_block")
            if _get(block, "type") in ("tool_use", "server_tool_use"):
                self._delta(changed, _get(chunk, "index"), _get(block, "id"), _get(block, "name"))
        elif kind == "content_block_delta":
            delta = _get(chunk, "delta")
            if _get(delta, "type") == "input_json_delta":
                self._args(changed, _get(chunk, "index"), _get(delta, "partial_json"))
        elif kind == "response.output_item.added":
            item = _get(chunk, "item")
            if _get(item, "type") == "function_call":
                index = _get(chunk, "output_index")
                self._delta(changed, index, _get(item, "call_id"), _get(item, "name"))
        elif kind == "response.function_call_arguments.delta":
            self._args(changed, _get(chunk, "output_index"), _get(chunk, "delta"))
        if kind in ("content_block_stop", "response.function_call_arguments.done"):
            index = _get(chunk, "index" if kind == "content_block_stop" else "output_index")
            call = self._calls.get(index)
            if call is not None and not call.complete:
                self._finish(call)
                changed[index] = call
        return [call.update() for call in changed.values()]

    def _delta(self, changed: dict[int, _Call], index: int, id_: Any, name: Any) -> None:
        if id_ is None and name is None and index in self._calls:
            return
        call = self._call(index)
        if id_:
            call.id = id_
        if name:
            call.name = name
        changed[index] = call

    def _args(self, changed: dict[int, _Call], index: int, text: Any) -> None:
        if not text:
            return
        call = self._call(index)
        call.fed = True
        try:
            if call.parser.feed(text):
                changed[index] = call
        except JSONStreamError as exc:
            raise _for_call(exc, index) from exc
        if call.parser.completed:
            # An update even if the value shown did not change (a closing '}'
            # alone changes nothing shown): `complete` did.
            call.complete = True
            changed[index] = call
            self._report.emit("json.tool_call", stage="parse_tool_calls", index=index)

    def _finish(self, call: _Call) -> None:
        if not call.fed:  # a call without arguments (e.g. a tool with no parameters)
            call.parser.feed("{}")
        else:
            try:
                call.parser.close(recover=self._recover)
            except JSONStreamError as exc:
                raise _for_call(exc, call.index) from exc
        call.complete = not call.parser.incomplete
        if call.parser.incomplete:
            self._report.emit("json.incomplete", stage="parse_tool_calls", index=call.index)

    def close(self) -> list[ToolCallUpdate]:
        out = []
        for call in self._calls.values():
            if not call.complete and not call.parser.incomplete:
                self._finish(call)
                out.append(call.update())
        return out


def _for_call(exc: JSONStreamError, index: int) -> JSONStreamError:
    return JSONStreamError(
        f"tool call {index}: {exc}", offset=exc.offset, expected=exc.expected, got=exc.got
    )


def parse_tool_calls(*, partial_strings: bool = True, recover: bool = False) -> Operator[Any, Any]:
    """Return an operator parsing the arguments of streamed tool calls, per call index.

    Takes provider chunks (OpenAI Chat Completions chunks, OpenAI Responses
    events, Anthropic Messages events; SDK objects or dicts) and yields a
    :class:`ToolCallUpdate` for each call a chunk changed; other chunks (text
    deltas, usage) yield nothing. Arguments are parsed as by
    :func:`parse_json`: monotone partial values, one live object per call.
    An incomplete call at the end of the stream raises
    :class:`JSONStreamError`, unless ``recover`` (then it is left incomplete).

    >>> def chunk(**call):
    ...     return {"choices": [{"delta": {"tool_calls": [{"index": 0, **call}]}}]}
    >>> chunks = [
    ...     chunk(id="call_1", function={"name": "get_weather", "arguments": ""}),
    ...     chunk(function={"arguments": '{"city": "Par'}),
    ...     chunk(function={"arguments": 'is"}'}),
    ... ]
    >>> for update in parse_tool_calls()(chunks):
    ...     print(update.name, update.arguments, update.complete)
    get_weather None False
    get_weather {'city': 'Par'} False
    get_weather {'city': 'Paris'} True
    """
    factory: Callable[[StreamReport], _ToolCallProcessor] = lambda report: _ToolCallProcessor(  # noqa: E731
        report, partial_strings, recover
    )
    return Operator(ProcessorStage("parse_tool_calls", factory, accepts=None, produces=None))
