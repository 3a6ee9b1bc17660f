"""Parse the argument JSON of streamed tool (function) calls, per (choice, index, id).

Reads, by duck typing (the SDKs are never imported): OpenAI Chat Completions
chunks (``choices[].delta.tool_calls[i].function.arguments``), OpenAI Responses
events (``response.output_item.added``, ``response.function_call_arguments.delta``)
and Anthropic Messages events (``content_block_start`` with a ``tool_use`` block,
``input_json_delta``, ``content_block_stop``); as SDK objects or plain dicts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from .._core._driver import Operator
from .._core._errors import ChunkTypeError, JSONValidationError, ToolCallTruncatedError
from .._core._report import StreamReport
from .._core._stages import ProcessorStage
from ._models import _Root, _Validator, schema_root
from ._parser import JSONParser, JSONStreamError
from ._schema import schema_type

__all__ = ("ToolCallUpdate", "parse_tool_calls")


@dataclass(frozen=True, slots=True)
class ToolCallUpdate:
    """The state of one streamed tool call after a chunk changed it.

    ``arguments`` is the live partial value of the arguments (``None`` until
    the first character arrives); ``complete`` is True once the JSON is
    complete. ``choice`` is the choice it belongs to (OpenAI ``n>1``; 0
    otherwise). With ``tools=``, ``parsed`` is the arguments validated
    against the tool's model or schema: a typed partial while they stream
    (as ``parse_json(model=...)`` yields), the validated value once complete.

    >>> ToolCallUpdate(0, "call_1", "f", {"x": 1}, True).arguments
    {'x': 1}
    """

    index: int
    id: str | None
    name: str | None
    arguments: Any
    complete: bool
    choice: int = 0
    parsed: Any = None


def _get(obj: Any, name: str) -> Any:
    if isinstance(obj, dict):
        return obj.get(name)
    return getattr(obj, name, None)


class _Call:
    __slots__ = (
        "choice",
        "complete",
        "fed",
        "id",
        "index",
        "name",
        "parsed",
        "parser",
        "validator",
    )

    def __init__(self, choice: int, index: int, partial_strings: bool, validating: bool) -> None:
        self.choice = choice
        self.index = index
        self.id: str | None = None
        self.name: str | None = None
        # With tools, the parser follows its events as parse_json(model=...) does.
        self.parser = (
            JSONParser(
                deltas=True,
                live=True,
                string_events=False,
                materialise=partial_strings,
                steps=True,
            )
            if validating
            else JSONParser(partial_strings=partial_strings)
        )
        self.validator: _Validator | None = None
        self.parsed: Any = None
        self.complete = False
        self.fed = False

    def update(self) -> ToolCallUpdate:
        p = self.parser
        return ToolCallUpdate(
            self.index,
            self.id,
            self.name,
            p.value if p.has_value else None,
            self.complete,
            self.choice,
            self.parsed,
        )


# How each wire says the message was cut (openai-python raises on these too).
_CUT_FINISH = frozenset(("length", "content_filter"))
_CUT_STOP = frozenset(("max_tokens", "refusal"))


class _ToolCallProcessor:
    __slots__ = ("_calls", "_partial_strings", "_recover", "_report", "_tools")

    def __init__(
        self,
        report: StreamReport,
        partial_strings: bool,
        recover: bool,
        tools: dict[str, _Root] | None,
    ) -> None:
        # The open call of each (choice, index); a new id there starts a new call.
        self._calls: dict[tuple[int, int], _Call] = {}
        self._partial_strings = partial_strings
        self._recover = recover
        self._report = report
        self._tools = tools

    done = False

    def feed(self, chunk: Any) -> list[ToolCallUpdate]:
        if isinstance(chunk, (str, bytes)):
            raise ChunkTypeError(
                self._report.chunks_in, chunk, "a provider chunk or event (OpenAI, Anthropic)"
            )
        changed: dict[int, _Call] = {}
        kind = _get(chunk, "type")
        if kind is None or kind == "chat.completion.chunk":
            for choice in _get(chunk, "choices") or ():
                c = _get(choice, "index") or 0
                for tc in _get(_get(choice, "delta"), "tool_calls") or ():
                    fn = _get(tc, "function")
                    index = _get(tc, "index") or 0
                    call = self._delta(changed, c, index, _get(tc, "id"), _get(fn, "name"))
                    self._args(changed, call, _get(fn, "arguments"))
                reason = _get(choice, "finish_reason")
                if reason in _CUT_FINISH:
                    self._cut(c, reason)
        elif kind == "content_block_start":
            block = _get(chunk, "content_block")
            if _get(block, "type") in ("tool_use", "server_tool_use"):
                index = _get(chunk, "index")
                self._delta(changed, 0, index, _get(block, "id"), _get(block, "name"))
        elif kind == "content_block_delta":
            delta = _get(chunk, "delta")
            if _get(delta, "type") == "input_json_delta":
                call = self._delta(changed, 0, _get(chunk, "index"), None, None)
                self._args(changed, call, _get(delta, "partial_json"))
        elif kind == "message_delta":
            reason = _get(_get(chunk, "delta"), "stop_reason")
            if reason in _CUT_STOP:
                self._cut(0, reason)
        elif kind == "response.output_item.added":
            item = _get(chunk, "item")
            if _get(item, "type") == "function_call":
                index = _get(chunk, "output_index")
                self._delta(changed, 0, index, _get(item, "call_id"), _get(item, "name"))
        elif kind == "response.function_call_arguments.delta":
            call = self._delta(changed, 0, _get(chunk, "output_index"), None, None)
            self._args(changed, call, _get(chunk, "delta"))
        elif kind == "response.incomplete":
            reason = _get(_get(_get(chunk, "response"), "incomplete_details"), "reason")
            self._cut(0, reason or "incomplete")
        if kind in ("content_block_stop", "response.function_call_arguments.done"):
            index = _get(chunk, "index" if kind == "content_block_stop" else "output_index")
            ended = self._calls.get((0, index))
            if ended is not None and not ended.complete:
                self._finish(ended)
                changed[id(ended)] = ended
        return [call.update() for call in changed.values()]

    def _delta(
        self, changed: dict[int, _Call], choice: int, index: int, id_: Any, name: Any
    ) -> _Call:
        call = self._calls.get((choice, index))
        if call is not None and id_ and call.id and id_ != call.id:
            # A new id on an index in use: a new call (the previous one ends here).
            if not call.complete and not call.parser.incomplete:
                self._finish(call)
                changed[id(call)] = call
            call = None
        if call is None:
            call = self._calls[(choice, index)] = _Call(
                choice, index, self._partial_strings, self._tools is not None
            )
        elif id_ is None and name is None:
            return call
        if id_:
            call.id = id_
        if name:
            call.name = name
            if self._tools is not None and call.validator is None:
                root = self._tools.get(name)
                if root is None:
                    raise ValueError(
                        f"tool call {index}: no tool named {name!r} in tools"
                        f" (known: {sorted(self._tools)})"
                    )
                call.validator = _Validator(root)
        changed[id(call)] = call
        return call

    def _args(self, changed: dict[int, _Call], call: _Call, text: Any) -> None:
        if not text:
            return
        call.fed = True
        p = call.parser
        try:
            if p.feed(text):
                changed[id(call)] = call
        except JSONStreamError as exc:
            raise _for_call(exc, call) from exc
        self._validate(call)
        if p.completed:
            # An update even if the value shown did not change (a closing '}'
            # alone changes nothing shown): `complete` did.
            call.complete = True
            changed[id(call)] = call
            self._report.emit("json.tool_call", stage="parse_tool_calls", index=call.index)

    def _validate(self, call: _Call) -> None:
        validator = call.validator
        if validator is None:
            return
        p = call.parser
        try:
            final = validator.events(p.events, p.offset, p.value) if p.events else []
        except JSONValidationError as exc:
            raise JSONValidationError(
                f"tool call {call.index} ({call.name}): {exc}",
                path=exc.path,
                errors=exc.errors,
                offset=exc.offset,
            ) from exc
        call.parsed = final[-1] if final else validator.partial(p.value, p.open_string())

    def _cut(self, choice: int, reason: str) -> None:
        """The provider ended the message: a call of ``choice`` still open was cut short."""
        for call in list(self._calls.values()):
            if call.choice != choice or call.complete or call.parser.incomplete:
                continue
            if not call.fed:
                continue  # no arguments yet: nothing was cut (ends as "{}" at close)
            if self._recover:
                call.parser.close(recover=True)
                continue
            raise ToolCallTruncatedError(
                f"tool call {call.index} ({call.name}) of choice {choice}: the message ended"
                f" ({reason!r}) while its arguments were incomplete",
                offset=call.parser.offset,
                finish_reason=reason,
                index=call.index,
                choice=choice,
                call_id=call.id,
            )

    def _finish(self, call: _Call) -> None:
        if not call.fed:  # a call without arguments (e.g. a tool with no parameters)
            call.parser.feed("{}")
            self._validate(call)
        else:
            try:
                call.parser.close(recover=self._recover)
            except JSONStreamError as exc:
                raise _for_call(exc, call) from exc
            self._validate(call)
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


def _for_call(exc: JSONStreamError, call: _Call) -> JSONStreamError:
    return JSONStreamError(
        f"tool call {call.index}: {exc}", offset=exc.offset, expected=exc.expected, got=exc.got
    )


def _tool_roots(tools: Iterable[Any]) -> dict[str, _Root]:
    """Each tool's name and schema walk, from pydantic models or JSON Schema tool definitions."""
    if isinstance(tools, (str, bytes, dict)):
        raise TypeError("tools must be a list of pydantic models or tool definitions")
    roots: dict[str, _Root] = {}
    for i, tool in enumerate(tools):
        where = f"tools[{i}]"
        target: Any
        name: Any
        if isinstance(tool, type) and issubclass(tool, BaseModel):
            name, target = tool.__name__, tool
        elif isinstance(tool, dict):
            fn: dict[str, Any] = (
                tool["function"] if isinstance(tool.get("function"), dict) else tool
            )
            name = fn.get("name")
            schema = fn.get("parameters", fn.get("input_schema", {"type": "object"}))
            if not isinstance(name, str) or not name:
                raise ValueError(f"{where} has no name")
            target = schema_type(_subset(schema), f"{where}.parameters")
        else:
            raise TypeError(
                f"{where} must be a pydantic model or a tool definition dict, got {tool!r}"
            )
        roots[name] = schema_root(target)
    return roots


def _subset(schema: Any) -> Any:
    """Drop the annotations providers add (``strict``) that the schema compiler has no use for."""
    if isinstance(schema, dict):
        # (a boolean: a property named "strict" is a schema, kept)
        return {k: _subset(v) for k, v in schema.items() if k != "strict" or type(v) is not bool}
    return schema


def parse_tool_calls(
    *,
    partial_strings: bool = True,
    recover: bool = False,
    tools: Iterable[Any] | None = None,
) -> Operator[Any, Any]:
    """Return an operator parsing the arguments of streamed tool calls.

    Takes provider chunks (OpenAI Chat Completions chunks, OpenAI Responses
    events, Anthropic Messages events; SDK objects or dicts) and yields a
    :class:`ToolCallUpdate` for each call a chunk changed; other chunks (text
    deltas, usage) yield nothing. Calls are told apart by choice, index and
    id: with ``n>1`` each choice has its own calls, and a new id on an index
    already in use starts a new call. Arguments are parsed as by
    :func:`parse_json`: monotone partial values, one live object per call.
    An incomplete call at the end of the stream raises
    :class:`JSONStreamError`, unless ``recover`` (then it is left incomplete);
    a message the provider ended mid-arguments (``finish_reason`` ``length``
    or ``content_filter``, Anthropic ``max_tokens``/``refusal``, Responses
    ``response.incomplete``) raises :class:`ToolCallTruncatedError` at once.

    ``tools``: pydantic models (the tool's name is the class name, as
    openai-python's ``pydantic_function_tool`` names it) or tool definitions
    with a JSON Schema (OpenAI ``{"type": "function", "function": {...}}``,
    Responses ``{"type": "function", "name", "parameters"}``, Anthropic
    ``{"name", "input_schema"}``). Arguments are then validated field by
    field as they stream, by the same rule as ``parse_json(model=...)``
    (rejected early only where the whole arguments would be), and each
    update's ``parsed`` holds the typed result; a call naming no known tool
    raises ``ValueError``.

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
    roots = None if tools is None else _tool_roots(tools)
    factory: Callable[[StreamReport], _ToolCallProcessor] = lambda report: _ToolCallProcessor(  # noqa: E731
        report, partial_strings, recover, roots
    )
    return Operator(ProcessorStage("parse_tool_calls", factory, accepts=None, produces=None))
