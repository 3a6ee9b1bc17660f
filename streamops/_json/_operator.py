"""Incremental JSON parsing of text streams: ``parse_json`` and friends.

The parser core is sans-I/O (:mod:`streamops._json._parser`); this module wraps
it as an operator, records the ``"json"`` report section, and plugs in pydantic
validation (:mod:`streamops._json._models`) and tool-call arguments
(:mod:`streamops._json._tools`).
"""

from __future__ import annotations

import codecs
from collections.abc import Callable
from typing import Any, Literal, cast

from pydantic import BaseModel, PydanticUserError, TypeAdapter

from .._core._driver import Operator
from .._core._report import StreamReport
from .._core._stages import ProcessorStage
from .._core._validate import check_bool, check_choice
from ._items import JSONItem, _ItemStream, check_selector
from ._models import JSONValidationError, _Validator, schema_root
from ._parser import _STRING, JSONDelta, JSONParser, JSONStreamError
from ._prose import DocumentFinder
from ._tools import ToolCallUpdate, parse_tool_calls

__all__ = [
    "JSONDelta",
    "JSONItem",
    "JSONReport",
    "JSONStreamError",
    "JSONValidationError",
    "ToolCallUpdate",
    "parse_json",
    "parse_tool_calls",
]

_STAGE = "parse_json"


class JSONReport(BaseModel):
    """The ``"json"`` section of a stream's report, written by :func:`parse_json`.

    ``chars_parsed`` counts characters consumed by the parser (text after a
    value that was not parsed, with ``trailing="stop"``, is not counted);
    ``incomplete`` is True when ``recover=True`` closed a truncated document.

    >>> import streamops as so
    >>> s = so.parse_json(recover=True)(['{"a": [1, 2'])
    >>> list(s)
    [{'a': [1]}]
    >>> s.report["json"]
    JSONReport(values_completed=0, chars_parsed=11, incomplete=True)
    """

    values_completed: int = 0
    chars_parsed: int = 0
    incomplete: bool = False


class _Processor:
    """One stream's parse: the parser, the report section and the output mode."""

    __slots__ = (
        "_bytes",
        "_finder",
        "_items",
        "_mode",
        "_multiple",
        "_parser",
        "_recover",
        "_report",
        "_section",
        "_validator",
        "feed",
        "feed_live",
        "value",
    )

    # Set per instance: the general path, or one built on feed_live's feed.
    feed: Callable[[str | bytes], list[Any]]
    # The common cases' direct feed for the driver (see _Chain.direct): a feed
    # of str chunks that says whether the chunk yields an item, and the object
    # whose ``value`` is that item (the parser itself for snapshots: its live
    # value; this processor in model mode, the typed partial).
    feed_live: tuple[Callable[[str], bool], Any]
    value: Any

    def __init__(
        self,
        report: StreamReport,
        parser: JSONParser,
        *,
        mode: Literal["values", "deltas", "model", "items"],
        validator: _Validator | None,
        multiple: bool,
        recover: bool,
        items: _ItemStream | None = None,
        skip_prefix: bool = False,
    ) -> None:
        self._items = items
        self._finder = DocumentFinder(parser) if skip_prefix else None
        self._bytes: _Utf8 | None = None
        self._parser = parser
        self._report = report
        self._section = report.section("json", JSONReport)
        self._mode = mode
        self._validator = validator
        self._multiple = multiple
        self._recover = recover
        self.value = None
        one = not multiple and not skip_prefix
        if one and mode == "values":
            # Snapshots of one document: the parser's own feed() is the direct
            # feed (what it returns, "the value changed as shown", is exactly
            # "yield the live value"), with no layer of ours per chunk; a
            # completed value is reported from inside it (on_complete), and
            # an error's report section is finalised by abort().
            parser.on_complete = self._on_value
            self.feed_live = (parser.feed, parser)
            self.feed = self._listed(*self.feed_live)
        elif one and mode == "model" and validator is not None:
            parser.on_complete = self._on_value  # (as above)
            self.feed_live = (self._typed(validator), self)
            self.feed = self._listed(*self.feed_live)
        else:
            self.feed = self._feed

    @property
    def done(self) -> bool:
        return self._parser.finished

    def abort(self) -> None:
        """The stream ended early (an error included): finalise the report section."""
        self._sync()

    def _listed(
        self, flagged: Callable[[str], bool], holder: Any
    ) -> Callable[[str | bytes], list[Any]]:
        """feed() from feed_live: bytes, and chains the driver does not feed directly."""
        general = self._feed

        def feed(chunk: str | bytes, /) -> list[Any]:
            if type(chunk) is not str:
                return general(chunk)
            return [holder.value] if flagged(chunk) else []

        return feed

    def _on_value(self) -> None:
        """The one document completed (the parser's on_complete: see __init__)."""
        self._sync()
        self._report.emit("json.value", stage=_STAGE, index=self._parser.values_completed - 1)

    def _typed(self, validator: _Validator) -> Callable[[str], bool]:
        """feed_live's feed in model mode on one document (a closure: fewer lookups).

        The parser's events go to the validator; a chunk that completes no
        value but changed what is shown yields the typed partial (left in
        ``self.value``, the item the driver yields when this returns True).
        """
        p = self._parser
        parse = p.feed
        follow = validator.events
        partial = validator.partial
        open_string = p.open_string

        def feed(chunk: str, /) -> bool:
            # (an error's report section: abort(); a completed value: on_complete)
            if not parse(chunk):
                return False
            events: list[Any] = p.events
            if events:
                if len(events) == 1:
                    # The most common chunk: one plain scalar field of a model
                    # complete. What follow() does for it (its first case),
                    # without the call.
                    first: Any = events[0]  # (model mode's events are plain tuples)
                    op, step, value = first
                    stack = validator._stack
                    if op == "done" and step is not None and stack:
                        frame = stack[-1]
                        quick = frame.quick
                        if quick is not None and value is not frame.live:
                            hit = quick.get(step)
                            if hit is not None and type(value) in hit[0]:
                                validator._open_str = None
                                frame.sink_dict[hit[1]] = value
                                frame.fields_set.add(hit[1])
                                events = []  # (followed: a string may still open below)
                if events:
                    # (p._base is p.offset without the property's call)
                    out = follow(events, p._base, p.value)
                    if out:  # the final value (one document: the only one)
                        self.value = out[0]
                        return True
            if p._state != _STRING:
                # No string is growing: the typed partial is the validator's
                # top object, when there is one (what partial() returns then).
                top = validator._top
                if top is not None:
                    self.value = top
                    return True
            else:
                # A model's string field growing, as partial() last saw it (its
                # frame's container and key, the model's __dict__ and field):
                # what partial() does for it again, without the calls.
                opened = validator._open_str
                if (
                    opened is not None
                    and len(opened) == 5
                    and p._scont is opened[0].live
                    and p._skey == opened[1]
                ):
                    opened[3][opened[4]] = p._scont[p._skey]
                    self.value = validator._top
                    return True
            self.value = partial(p.value, open_string())
            return True

        return feed

    def _feed(self, chunk: str | bytes, /) -> list[Any]:
        p = self._parser
        if type(chunk) is not str:
            if isinstance(chunk, str):  # a str subclass is text (the parser's checks want str)
                chunk = str(chunk)
            else:
                if self._bytes is None:
                    self._bytes = _Utf8()
                chunk = self._bytes.decode(chunk)
        if self._finder is not None:
            chunk = self._finder.feed(chunk)
            if not chunk:
                return []
        try:
            changed = p.feed(chunk)
        except JSONStreamError as exc:
            self._sync()
            if self._bytes is not None:
                exc.byte_offset = self._bytes.byte_offset(exc.offset)
            raise
        if self._items is not None:
            if p.completed:
                self._on_completed()
            return self._items.events(p.events, p.offset) if p.events else []
        if not changed:
            # A value completed by a chunk that changes nothing shown (its closing
            # bracket): counted, and in multiple mode yielded, but not shown again.
            if not p.completed:
                return []
            self._on_completed()
            return p.completed if self._multiple else []
        if p.completed:
            self._on_completed()
        # The common case first: one live snapshot per changed chunk.
        if self._mode == "values" and not self._multiple:
            return [p.value]
        return self._output(changed)

    def close(self) -> list[Any]:
        p = self._parser
        if self._bytes is not None and not p.finished:
            self._bytes.end(p.offset, self._recover)
        if self._finder is not None:
            text = self._finder.close()
            self._finder = None
            if text:
                out = self.feed(text)
                return out + self._close()
        return self._close()

    def _close(self) -> list[Any]:
        p = self._parser
        try:
            changed = p.close(recover=self._recover)
        except JSONStreamError:
            self._sync()
            raise
        self._sync()
        if self._items is not None:
            if p.completed:
                self._on_completed()
            elif p.incomplete:
                self._section.incomplete = True
                self._report.emit("json.incomplete", stage=_STAGE, offset=p.offset)
            return self._items.events(p.events, p.offset) if p.events else []
        if p.completed:
            self._on_completed()
        elif p.incomplete:
            self._section.incomplete = True
            self._report.emit("json.incomplete", stage=_STAGE, offset=p.offset)
            if self._multiple or not p.has_value:
                return []
            if self._mode == "model":
                return [self._partial()]
        if not changed:
            return []
        if self._mode == "values" and not self._multiple:
            return [p.value]
        return self._output(changed)

    def _partial(self) -> Any:
        assert self._validator is not None
        return self._validator.partial(self._parser.value, self._parser.open_string())

    def _output(self, changed: bool) -> list[Any]:
        p = self._parser
        if self._mode == "deltas":
            return p.events
        if self._mode == "values":  # multiple values: each once complete
            return p.completed
        validator = self._validator
        assert validator is not None
        out = validator.events(p.events, p.offset, p.value) if p.events else []
        if not out and changed and not self._multiple:
            out.append(validator.partial(p.value, p.open_string()))
        return out

    def _on_completed(self) -> None:
        p = self._parser
        self._sync()
        if p.on_complete is not None:  # each was reported as it completed (see _on_value)
            return
        first = p.values_completed - len(p.completed)
        for i in range(len(p.completed)):
            self._report.emit("json.value", stage=_STAGE, index=first + i)

    def _sync(self) -> None:
        section = self._section
        section.chars_parsed = self._parser.offset
        section.values_completed = self._parser.values_completed


# The chunk types parse_json reads itself: text, and UTF-8 bytes (see _Utf8).
_TEXT_OR_BYTES = (str, bytes, bytearray, memoryview)


class _Utf8:
    """Decode UTF-8 bytes input as ``json.loads(bytes)`` does, counting bytes.

    A character split between chunks waits for its end; a sequence still
    incomplete at the end of input is an error (``json.loads`` raises too);
    a UTF-8 BOM is accepted at the very start (``json.loads(bytes)`` accepts
    it, ``json.loads(str)`` does not). Errors carry the byte offset too.
    """

    __slots__ = ("_bom", "_bytes_done", "_chars_done", "_decoder", "_seen", "_text")

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")("strict")
        self._seen = 0  # bytes received
        # Counted over the whole stream (prose that skip_prefix skips included),
        # as the parser's offsets are: the text decoded before the last chunk's.
        self._bytes_done = 0
        self._chars_done = 0
        self._text = ""  # the text of the last chunk
        self._bom = True  # a BOM may still come (nothing decoded yet)

    def decode(self, data: Any) -> str:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"parse_json takes str or bytes chunks, got {type(data).__name__}")
        data = bytes(data)
        try:
            text = self._decoder.decode(data, False)
        except UnicodeDecodeError as exc:
            pending = self._decoder.getstate()[0]  # unchanged by the failed call
            at = self._seen + exc.start - len(pending)
            # The characters before the bad byte are whole: count them.
            before = (pending + data)[: exc.start].decode()
            if self._bom and before.startswith("\ufeff"):
                before = before[1:]
            raise JSONStreamError(
                f"invalid UTF-8 at byte offset {at}: {exc.reason}",
                offset=self._chars_done + len(self._text) + len(before),
                expected="UTF-8 text",
                got=None,
                byte_offset=at,
            ) from exc
        self._seen += len(data)
        last = self._text
        self._chars_done += len(last)
        self._bytes_done += len(last) if last.isascii() else len(last.encode())
        if self._bom and text:
            self._bom = False
            if text[0] == "\ufeff":
                text = text[1:]
                self._bytes_done += 3
        self._text = text
        return text

    def byte_offset(self, offset: int) -> int:
        """The byte offset of character ``offset`` of the stream."""
        base = self._chars_done
        if offset >= base:
            return self._bytes_done + len(self._text[: offset - base].encode())
        return self._bytes_done - (base - offset)  # a carried token: ASCII

    def end(self, offset: int, recover: bool) -> None:
        pending = self._decoder.getstate()[0]
        if pending and not recover:
            at = self._seen - len(pending)
            raise JSONStreamError(
                f"truncated UTF-8 sequence at byte offset {at} (end of input)",
                offset=offset,
                expected="the rest of a UTF-8 sequence",
                got=None,
                byte_offset=at,
            )


def parse_json(
    *,
    model: type[Any] | TypeAdapter[Any] | None = None,
    partial_strings: bool = True,
    deltas: bool = False,
    skip_prefix: bool = False,
    trailing: Literal["error", "stop"] = "error",
    multiple: bool = False,
    recover: bool = False,
    items: str | None = None,
    allow_control_chars: bool = False,
    allow_nan: bool = False,
    allow_trailing_commas: bool = False,
) -> Operator[str, Any]:
    """Return an operator that parses a stream of JSON text chunks into values as they arrive.

    After every chunk that changes the value shown it yields the current
    partial value, and only then (a chunk that changes nothing shown, such as
    a closing bracket, yields nothing, whatever its length). The last one of a
    complete document equals ``json.loads`` of the whole text (ints stay ints,
    big ints exact, floats as ``float()``) for every text this parser accepts,
    which is strict RFC 8259: ``NaN``, ``Infinity`` and ``-Infinity``, which
    ``json.loads`` accepts by default, raise :class:`JSONStreamError` here.
    Nesting deeper than ``json.loads`` can recurse is parsed all the same.
    Partial values only grow: numbers, literals and keys appear when complete,
    strings only get longer (``partial_strings=False`` shows a string only
    once complete), nothing changes type or vanishes, half a surrogate pair is
    never shown. The one exception is a duplicate key: the last one wins, as
    in ``json.loads``, so the value under it is replaced, possibly by one of
    another type (``{"a": [1], "a": "x"}`` cut after ``[1],`` shows ``{'a': [1]}``, then
    ``{'a': 'x'}``). Each character is parsed once: the whole stream costs O(n).

    The yielded value is **one live object mutated in place** (the same dict
    or list each time): copy it (``copy.deepcopy``) if you keep a snapshot.
    A string that is still growing is rebuilt once per chunk, so an extremely
    long string costs O(length) per chunk; ``deltas=True`` avoids that.

    Options (all keyword-only):

    - ``model``: a pydantic model (or any type, or a ``TypeAdapter``). Each
      field and item is checked as soon as it is complete (a wrong first
      field fails at once with :class:`JSONValidationError`), but only where
      ``model_validate_json`` of the whole text fails too, following
      pydantic's core schema (see :mod:`streamops._json._models`). Partial
      results are typed at every level and, like snapshots, one live object
      updated in place: models (nested ones and list items included) are
      instances whose fields not yet arrived are None (never an
      ``AttributeError``); a plain ``str`` field shows its text as it grows;
      any other value (a number, a ``datetime``, an ``Enum``, a union, a
      tuple) is shown only once complete and checked, so a field never
      changes type between partials (None, then its final type). The last
      item is the model's own validation of the whole document. Cost: O(n)
      whatever the depth (each complete scalar is checked once).
      Validation is in pydantic's JSON mode, under the model's config (so
      ``strict=True`` applies field by field and accepts what
      ``model_validate_json`` of the whole text accepts, e.g. an ISO string
      for a ``datetime``).
    - ``deltas``: yield :class:`JSONDelta` events instead of snapshots.
    - ``skip_prefix``: find the document the model meant in a reply with
      prose, fences or reasoning (see :mod:`streamops._json._prose`): a
      reply that starts with ``{``/``[`` (after a leading
      ``<think>...</think>``) or a ```` ```json ```` fence streams at once
      (text after the closing fence is ignored); otherwise, at the end, the
      first ``{``/``[`` outside ``<think>`` whose value parses to the end of
      the reply (so ``Return {} ...``, ``[1]`` citations and a Python fence
      before the JSON are skipped). Nothing is shown before that decision,
      whatever the chunking; no document raises :class:`JSONStreamError`.
    - ``trailing``: ``"error"`` (default: only whitespace may follow the value)
      or ``"stop"`` (stop after the value; the upstream is closed). With
      ``multiple``, ``"stop"`` yields every value and stops at the first
      text that cannot start one (a value starts with ``{ [ "``, a digit,
      ``-``, ``t``, ``f`` or ``n``).
    - ``multiple``: parse a stream of values (NDJSON or concatenated) and yield
      each value once complete.
    - ``items``: a JSON Pointer ending in ``/*`` (``"/results/*"``, ``"/*"``
      for a top-level array; ``*`` also matches any step in the middle):
      yield each element of the selected container(s) as a :class:`JSONItem`
      (path, index, value) as soon as it closes — validated as ``model``
      when given (``model`` is then the element type) — and nothing else.
      Yielded elements are dropped from the parsed tree, so a list of any
      length streams in memory bounded by its largest element.
    - ``recover``: at the end of a truncated document keep the best partial
      value instead of raising; ``report["json"].incomplete`` is then True and
      a ``json.incomplete`` event is emitted. A number cut by the end is dropped.

    Chunks are ``str`` or UTF-8 ``bytes`` (read as ``json.loads(bytes)``
    does: a UTF-8 BOM at the start is accepted, a character cut at the end of
    input is an error, and errors also carry ``byte_offset``).
    Leniency, each opt-in and named (strict RFC 8259 by default, as
    jiter and ``json.loads(strict=True)`` can be; LangChain's parser is
    lenient): ``allow_control_chars`` (raw control characters such as a
    newline or tab inside strings, as ``json.loads(strict=False)``),
    ``allow_nan`` (``NaN``, ``Infinity``, ``-Infinity`` as floats, as
    ``json.loads`` by default) and ``allow_trailing_commas`` (``[1, 2,]``,
    ``{"a": 1,}``).

    Invalid JSON raises :class:`JSONStreamError` with the character offset,
    as soon as the offending character arrives. The report's ``"json"``
    section is a :class:`JSONReport`; each complete value emits ``json.value``.

    >>> import streamops as so
    >>> for value in so.parse_json()(['{"name": "Bo', 'b", "tags": [1', '2, 3]}']):
    ...     print(value)
    {'name': 'Bo'}
    {'name': 'Bob', 'tags': []}
    {'name': 'Bob', 'tags': [12, 3]}
    >>> list(so.parse_json(multiple=True)(['{"a": 1}\\n{"a"', ': 2}\\n']))
    [{'a': 1}, {'a': 2}]
    """
    check_choice("trailing", trailing, ("error", "stop"))
    for option, value in (
        ("partial_strings", partial_strings),
        ("deltas", deltas),
        ("skip_prefix", skip_prefix),
        ("multiple", multiple),
        ("recover", recover),
        ("allow_control_chars", allow_control_chars),
        ("allow_nan", allow_nan),
        ("allow_trailing_commas", allow_trailing_commas),
    ):
        check_bool(option, value)
    if model is not None and deltas:
        raise ValueError("model and deltas cannot be combined: deltas are not validated")
    steps = None if items is None else check_selector(items)
    if steps is not None and deltas:
        raise ValueError("items and deltas cannot be combined: items yields whole elements")
    # Build (and so check) the schema now: a bad model fails at start-up.
    try:
        schema = None if model is None else schema_root(model)
    except PydanticUserError as exc:
        raise TypeError(
            f"model must be a pydantic model, a type pydantic can validate or a TypeAdapter: {exc}"
        ) from exc
    mode: Literal["values", "deltas", "model", "items"] = (
        "items"
        if steps is not None
        else "model"
        if model is not None
        else "deltas"
        if deltas
        else "values"
    )
    element_adapter: TypeAdapter[Any] | None = None
    if steps is not None and schema is not None:
        element_adapter = schema.adapter
        schema = None

    lenient = {
        "allow_control_chars": bool(allow_control_chars),
        "allow_nan": bool(allow_nan),
        "allow_trailing_commas": bool(allow_trailing_commas),
    }

    def factory(report: StreamReport) -> _Processor:
        if steps is not None:
            return _Processor(
                report,
                JSONParser(
                    deltas=True,
                    materialise=False,
                    live=True,
                    string_events=False,
                    multiple=multiple,
                    trailing=trailing,
                    **lenient,
                ),
                mode=mode,
                validator=None,
                multiple=multiple,
                recover=recover,
                items=_ItemStream(steps, element_adapter),
                skip_prefix=skip_prefix,
            )
        parser = JSONParser(
            partial_strings=partial_strings,
            deltas=mode != "values",
            materialise=partial_strings and mode != "deltas",
            live=mode == "model",
            string_events=mode != "model",
            steps=mode == "model",
            multiple=multiple,
            trailing=trailing,
            **lenient,
        )
        validator = None if schema is None else _Validator(schema)
        return _Processor(
            report,
            parser,
            mode=mode,
            validator=validator,
            multiple=multiple,
            recover=recover,
            skip_prefix=skip_prefix,
        )

    # Only these options make the parser finish before its input ends.
    can_stop = trailing == "stop" or skip_prefix
    stage = ProcessorStage(_STAGE, factory, accepts=str, produces=None, can_stop=can_stop)
    # Bytes are decoded by the processor itself (see _Utf8), not by the bytes
    # lens; a tuple keeps the driver's per-chunk isinstance check at C speed
    # (an ABC's check costs ~0.5 us a chunk) and str keeps its channels.
    stage.accepts = cast(type, _TEXT_OR_BYTES)
    return Operator(stage)
