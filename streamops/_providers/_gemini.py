"""The Gemini lens: google-genai ``GenerateContentResponse`` stream chunks and their JSON.

``client.models.generate_content_stream(...)`` (and ``client.aio.models...``)
yields one ``GenerateContentResponse`` per server-sent event; its
``candidates[0].content.parts`` carry the text. The channels:

- answer text (parts with ``text`` and no ``thought``): ``"content"``;
- thought summaries (parts with ``thought=True``): ``"reasoning"``, ended as
  soon as the answer begins, its held text put in a thought part of its own
  just before the first answer part;
- each function call's ``args`` (complete in one chunk: a dict) go through a
  tool-arguments channel as JSON and come back as a dict; streamed
  ``partial_args`` string values go through a free-text tool channel per
  ``json_path``; ``executable_code.code`` likewise;
- what the code printed (``code_execution_result.output``) comes whole: a
  ``"tool_output"`` text; so do a server-side tool call's ``args`` (a
  ``"tool_input"``), a tool response and an audio part's transcription;
- grounding (``grounding_metadata``: Google Search, RAG and Maps sources, the
  supports quoting the answer, the model's search queries), URL context and
  citations (``citation_metadata``: each source's title, URI and license)
  come whole on the candidate: each of their texts is a
  ``"tool_output"`` text (identifiers, tokens and blobs pass through);
- what the API writes about the response comes whole too, a ``"tool_output"``
  text fed once however many chunks repeat it: why the model stopped
  (``finish_message``), why the prompt was blocked
  (``prompt_feedback.block_reason_message``, in a chunk that may have no
  candidate at all), the model's status (``model_status.message``);
- ``logprobs_result`` spells the chunk's text token by token: it is dropped
  from a chunk whose text the operators changed (or held);
- ``finish_reason`` ends every channel in that chunk (held answer text joins
  its last answer part, or a new one; what a ``partial_args`` channel held
  comes in a function-call part of its own, that call's name and id, that
  argument's ``json_path``, as the call's next piece would have; so at the
  end of a stream that had none); ``MAX_TOKENS``, ``SAFETY``,
  ``RECITATION``, ``BLOCKLIST``, ``PROHIBITED_CONTENT``, ``SPII`` and a
  stream with no finish reason end them *truncated*.

``usage_metadata``, ``model_version``, ``response_id``, safety ratings,
thought signatures and every other field pass through. The wire format (the
REST ``alt=sse`` JSON, camelCase keys) works the same as dicts.
"""

from __future__ import annotations

import json
from difflib import SequenceMatcher
from typing import Any

from .._core._errors import ChunkTypeError, LensError
from ..lowlevel import register_lens
from ._camel import camel, field, wire_key
from ._lenses import _CUT_FINISHES, _ChannelLens, _replace
from ._usage import record_usage

__all__ = ("GeminiLens",)


# Identifiers, tokens, encodings and timings in Gemini's parts and metadata (either spelling).
_OPAQUE = frozenset(
    spelling
    for name in (
        "chunk_id",
        "document_name",
        "file_search_store",
        "google_maps_widget_context_token",
        "language_code",
        "media_id",
        "place_id",
        "review_id",
        "sdk_blob",
        "source_id",
        "tool_type",
        "encoded_polyline",
        "start_offset",  # a transcription's and its words' timings (durations)
        "end_offset",
    )
    for spelling in (name, camel(name))
)
# Fields of a part that come whole, and the kind of text in each.
_WHOLE_PARTS = (
    ("code_execution_result", "tool_output"),
    ("tool_call", "tool_input"),
    ("tool_response", "tool_output"),
    ("audio_transcription", "tool_output"),
)


def code_parts(lens: _ChannelLens, part: Any, channels: Any) -> Any:
    """``part`` with what came whole in it through the operators.

    Gemini and Gemini Live alike: the code the model runs is a free-text tool
    input; what it printed, a server-side tool call and its response, an audio
    part's transcription are texts of their own (see the module docstring).
    """
    code_obj = field(part, "executable_code")
    code = field(code_obj, "code")
    if isinstance(code, str) and code:
        out = lens._whole(channels, "tool_input", code)
        if out != code:
            new_code = _replace(code_obj, code=out)
            part = _replace(part, **{wire_key(part, "executable_code"): new_code})
    for name, kind in _WHOLE_PARTS:
        value = field(part, name)
        if value is not None:
            if name == "audio_transcription":
                fixed = whole_transcription(lens, value, channels, kind)
            else:
                fixed = lens._scrub(value, channels, opaque=_OPAQUE, kind=kind)
            if fixed is not value:
                part = _replace(part, **{wire_key(part, name): fixed})
    return part


def word_spans(text: str, words: list[str]) -> list[tuple[int, int]] | None:
    """Where each of ``words`` sits in ``text``, in order; ``None`` if they do not spell it.

    >>> word_spans(" mail ann@x.co", ["mail", "ann@x.co"])
    [(1, 5), (6, 14)]
    >>> word_spans("mail", ["call"]) is None
    True
    """
    spans = []
    at = 0
    for word in words:
        start = text.find(word, at) if word else at
        if start < 0:
            return None
        at = start + len(word)
        spans.append((start, at))
    return spans


def _mapping(ops: list[tuple[str, int, int, int, int]]) -> Any:
    """Where a place between two characters of the source lands in the output.

    Inside a span the operators changed (a replacement, a deletion), a place
    lands at the span's end: the first word the span overlaps gets all of its
    output, the words after it within the span get nothing.
    """

    def where(pos: int) -> int:
        for tag, i1, i2, j1, j2 in ops:
            if i1 <= pos < i2:
                if tag == "equal":
                    return j1 + pos - i1
                return j1 if pos == i1 else j2
        return ops[-1][4] if ops else 0

    return where


def _opcodes(source: str, out: str) -> list[tuple[str, int, int, int, int]]:
    ops = SequenceMatcher(None, source, out, autojunk=False).get_opcodes()
    return [(str(tag), i1, i2, j1, j2) for tag, i1, i2, j1, j2 in ops]


def words_onto(source: str, out: str, spans: list[tuple[int, int]]) -> list[str]:
    """The text of each word (its ``spans`` in ``source``) after ``source`` became ``out``.

    The operators replace spans of a text (a secret by its placeholder) and
    keep the rest as it was; the two are aligned (:mod:`difflib`) and each word
    gets the output of its own characters: a word a replacement begins in
    gets the whole replacement, the words after it that the replacement covers
    an empty string. Each word's text is a piece of ``out``, in order, so a
    word can show nothing ``out`` does not.

    >>> text = "card 4111 1111 1111 1111 ok"
    >>> words_onto(text, "card [CREDIT_CARD] ok", word_spans(text, text.split()))
    ['card', '[CREDIT_CARD]', '', '', '', 'ok']
    """
    if source == out:
        return [source[a:b] for a, b in spans]
    where = _mapping(_opcodes(source, out))
    return [out[where(a) : where(b)] for a, b in spans]


def whole_transcription(lens: _ChannelLens, value: Any, channels: Any, kind: str) -> Any:
    """A transcription that came whole (a part's), its text and its words redacted alike.

    The text (and any other text field) is a ``kind`` text; the words are
    mapped onto the redacted text (:func:`words_onto`). Words that do not
    spell the text are a text of their own, joined by spaces, redacted as one
    and mapped back the same way.
    """
    fixed = lens._scrub(value, channels, skip=frozenset({"words"}), opaque=_OPAQUE, kind=kind)
    words = list(field(value, "words") or ())
    if not words:
        return fixed
    said = [w if isinstance(w := field(word, "word"), str) else "" for word in words]
    text = field(value, "text")
    source = text if isinstance(text, str) else ""
    spans = word_spans(source, said)
    if spans is not None:
        out = field(fixed, "text") or ""
    else:  # the words are not the text's: a text of their own
        source = " ".join(said)
        spans = word_spans(source, said)
        assert spans is not None
        out = lens._whole(channels, kind, source) if source else source
    texts = words_onto(source, out, spans)
    new_words = []
    for word, said_word, text_now in zip(words, said, texts, strict=True):
        # any other text of a word entry (its timings are identifiers: they pass)
        new = lens._scrub(word, channels, skip=frozenset({"word"}), opaque=_OPAQUE, kind=kind)
        new_words.append(new if text_now == said_word else _replace(new, word=text_now))
    if all(a is b for a, b in zip(new_words, words, strict=True)):
        return fixed
    return _replace(fixed, **{wire_key(value, "words"): new_words})


def metadata(lens: _ChannelLens, holder: Any, channels: Any) -> dict[str, Any]:
    """The changes to ``holder`` (a candidate, a Live server content) for its metadata.

    Grounding, URL context and citations come whole: each of their texts goes
    through the operators as a ``"tool_output"`` text.
    """
    changes: dict[str, Any] = {}
    for name in ("grounding_metadata", "url_context_metadata", "citation_metadata"):
        value = field(holder, name)
        if value is not None:
            fixed = lens._scrub(value, channels, opaque=_OPAQUE)
            if fixed is not value:
                changes[wire_key(holder, name)] = fixed
    return changes


# Free text the API writes on a response (outside its candidates): (field, its text field).
_RESPONSE_NOTES = (("prompt_feedback", "block_reason_message"), ("model_status", "message"))


def note(lens: _ChannelLens, holder: Any, name: str, channels: Any) -> dict[str, Any]:
    """The change to ``holder`` for its free-text field ``name`` (a note the API wrote).

    A ``"tool_output"`` text that came whole; the same note repeated in a later
    chunk is fed once (see ``_scrub``'s ``at``).
    """
    text = field(holder, name)
    if not isinstance(text, str) or not text:
        return {}
    out = lens._scrub(text, channels, at=("note", name))
    return {} if out == text else {wire_key(holder, name): out}


def _finish(value: Any) -> str | None:
    if value is None:
        return None
    return str(getattr(value, "value", value))


def _is_gemini(chunk: Any) -> bool:
    cls = type(chunk)
    if cls.__name__ == "GenerateContentResponse" and cls.__module__.startswith("google.genai"):
        return True
    if type(chunk) is not dict or "choices" in chunk:
        return False
    if isinstance(chunk.get("candidates"), list):
        return True
    # a blocked prompt's response has no candidates, only the feedback
    return isinstance(chunk.get("promptFeedback", chunk.get("prompt_feedback")), dict)


class GeminiLens(_ChannelLens):
    """Lens for google-genai ``GenerateContentResponse`` chunks (objects or wire JSON).

    See the module docstring for the channels. A stream with several
    candidates (``candidate_count > 1``) is refused with
    :class:`~streamops.LensError`.

    >>> import streamops as so
    >>> from google.genai import types
    >>> def chunk(text, finish=None):
    ...     return types.GenerateContentResponse.model_validate({"candidates": [
    ...         {"content": {"role": "model", "parts": [{"text": text}]}, "finishReason": finish}]})
    >>> out = list(so.redact(["email"])([chunk("Mail ann@exa"), chunk("mple.com", "STOP")]))
    >>> [c.text for c in out]
    ['Mail ', '[EMAIL]']
    >>> out[-1].candidates[0].finish_reason
    <FinishReason.STOP: 'STOP'>
    """

    __slots__ = ("_calls", "_part_type", "_partials", "_template")

    _generic = False

    def __init__(self) -> None:
        super().__init__()
        self._template: Any = None
        self._part_type: Any = None
        self._calls = 0
        # A partial-args channel's key -> (the part's key, its call, its argument): the
        # latest piece it came in, the shape its held text comes back in.
        self._partials: dict[Any, tuple[str, Any, Any]] = {}

    @classmethod
    def match(cls, chunk: Any, /) -> GeminiLens | None:
        """Return a lens for Gemini stream chunks (objects or dicts), else ``None``."""
        return cls() if _is_gemini(chunk) else None

    def _candidate(self, chunk: Any) -> Any:
        if not _is_gemini(chunk):
            raise ChunkTypeError(max(self._n - 1, 0), chunk, "a Gemini GenerateContentResponse")
        candidates = field(chunk, "candidates")
        if not candidates:
            return None
        if len(candidates) > 1:
            raise LensError(
                f"chunk {max(self._n - 1, 0)}: {len(candidates)} candidates; streamops runs"
                " one text pipeline per stream, so only candidate_count=1 streams can be wrapped"
            )
        return candidates[0]

    @staticmethod
    def _parts(candidate: Any) -> list[Any]:
        content = field(candidate, "content")
        return list(field(content, "parts") or ()) if content is not None else []

    def unwrap(self, chunk: Any, /) -> str:
        """Return the answer text of ``chunk`` (its text parts that are not thoughts)."""
        candidate = self._candidate(chunk)
        if candidate is None:
            return ""
        return "".join(
            t
            for p in self._parts(candidate)
            if isinstance(t := field(p, "text"), str) and not field(p, "thought")
        )

    def texts(self, chunk: Any, /) -> list[str]:
        """Return every text of ``chunk``: answer, thoughts, function-call arguments, code."""
        candidate = self._candidate(chunk)
        out: list[str] = []
        for part in self._parts(candidate) if candidate is not None else ():
            text = field(part, "text")
            if isinstance(text, str) and text:
                out.append(text)
            call = field(part, "function_call")
            if call is not None:
                args = field(call, "args")
                if args:
                    out.append(json.dumps(args))
                for arg in field(call, "partial_args") or ():
                    value = field(arg, "string_value")
                    if isinstance(value, str) and value:
                        out.append(value)
            code = field(field(part, "executable_code"), "code")
            if isinstance(code, str) and code:
                out.append(code)
        return out

    def _new_part(self, chunk: Any, **fields: Any) -> Any:
        if type(chunk) is dict:
            return fields
        if self._part_type is None:
            from google.genai import types

            self._part_type = types.Part
        return self._part_type(**fields)

    def _notes(self, chunk: Any, channels: Any) -> Any:
        """``chunk`` with the notes the API wrote on it (outside its candidates) redacted."""
        for name, text_field in _RESPONSE_NOTES:
            holder = field(chunk, name)
            if holder is None:
                continue
            changes = note(self, holder, text_field, channels)
            if changes:
                chunk = _replace(chunk, **{wire_key(chunk, name): _replace(holder, **changes)})
        return chunk

    def _process(self, chunk: Any, channels: Any) -> list[Any]:
        candidate = self._candidate(chunk)
        chunk = self._notes(chunk, channels)
        if candidate is None:  # prompt feedback or usage alone
            record_usage(channels, field(chunk, "usage_metadata"))
            return [chunk]
        self._template = chunk
        parts = self._parts(candidate)
        new_parts: list[Any] = []
        changed = False
        for part in parts:
            if self._part_type is None and type(part) is not dict:
                self._part_type = type(part)
            text = field(part, "text")
            if isinstance(text, str):
                thought = bool(field(part, "thought"))
                if not thought and "thought" in channels.open_keys():
                    held = channels.end("thought")  # the thoughts are over
                    if held:
                        new_parts.append(self._new_part(chunk, text=held, thought=True))
                        changed = True
                key = "thought" if thought else "content"
                out = channels.feed(key, "reasoning" if thought else "content", text)
                if out != text:
                    part = _replace(part, text=out)
                    changed = True
            call = field(part, "function_call")
            if call is not None or field(part, "executable_code") is not None:
                # A call ends the text before it: its held text goes before the call.
                for key in ("thought", "content"):
                    held = channels.end(key) if key in channels.open_keys() else ""
                    if held:
                        fields: dict[str, Any] = {"text": held}
                        if key == "thought":
                            fields["thought"] = True
                        new_parts.append(self._new_part(chunk, **fields))
                        changed = True
            if call is not None:
                new_call = self._call(call, channels, wire_key(part, "function_call"))
                if new_call is not call:
                    part = _replace(part, **{wire_key(part, "function_call"): new_call})
                    changed = True
            fixed_part = code_parts(self, part, channels)
            if fixed_part is not part:
                part, changed = fixed_part, True
            new_parts.append(part)
        finish = _finish(field(candidate, "finish_reason"))
        if finish is not None:
            self._ended = True
            record_usage(channels, field(chunk, "usage_metadata"))
            if finish in _CUT_FINISHES:
                self.truncated = True
            for key in channels.open_keys():
                held = channels.end(key)
                if not held:
                    continue
                changed = True
                new_parts.append(self._held_part(chunk, key, held))
        extra = metadata(self, candidate, channels)
        extra.update(note(self, candidate, "finish_message", channels))
        if changed and field(candidate, "logprobs_result") is not None:
            extra[wire_key(candidate, "logprobs_result")] = None  # it spells the original
        if not changed:
            if not extra:
                return [chunk]
            return [_replace(chunk, candidates=[_replace(candidate, **extra)])]
        return [self._with_parts(chunk, candidate, new_parts, **extra)]

    def _held_part(self, chunk: Any, key: Any, held: str) -> Any:
        """A part for what channel ``key`` held at its end, in the shape of its own parts.

        Answer text and thoughts in a text part; a partial-args channel's text in
        a function-call part of its call (name, id) and argument (``json_path``),
        as that call's next piece would have come.
        """
        if key == "thought":
            return self._new_part(chunk, text=held, thought=True)
        partial = self._partials.pop(key, None)
        if partial is None:
            return self._new_part(chunk, text=held)
        part_key, call, arg = partial
        arg = _replace(arg, **{wire_key(arg, "string_value"): held})
        call = _replace(call, **{wire_key(call, "partial_args"): [arg]})
        if field(call, "args") is not None:  # (shown, redacted, with its own piece)
            call = _replace(call, **{wire_key(call, "args"): None})
        return self._new_part(chunk, **{part_key: call})

    def _call(self, call: Any, channels: Any, part_key: str = "function_call") -> Any:
        """The function call with its arguments through the tool channels."""
        new = call
        args = field(call, "args")
        if args:
            self._calls += 1
            key = ("tool", self._calls)
            text = json.dumps(args, ensure_ascii=False)
            out = channels.feed(key, "tool_arguments", text) + channels.end(key)
            if out != text:
                try:
                    value = json.loads(out)
                except ValueError:  # cut short by a budget: no arguments rather than a part
                    value = None
                new = _replace(new, args=value)
        partials = field(call, "partial_args")
        if partials:
            new_partials = []
            for arg in partials:
                value = field(arg, "string_value")
                if isinstance(value, str) and value:
                    path = field(arg, "json_path")
                    key = ("partial", path)
                    self._partials[key] = (part_key, call, arg)
                    out = channels.feed(key, "tool_input", value)
                    if not field(arg, "will_continue"):
                        out += channels.end(key)
                        self._partials.pop(key, None)
                    if out != value:
                        arg = _replace(arg, **{wire_key(arg, "string_value"): out})
                new_partials.append(arg)
            new = _replace(new, **{wire_key(call, "partial_args"): new_partials})
        return new

    @staticmethod
    def _with_parts(chunk: Any, candidate: Any, parts: list[Any], **changes: Any) -> Any:
        content = field(candidate, "content")
        if content is None:
            if type(chunk) is dict:
                content = {"role": "model", "parts": parts}
            else:
                from google.genai import types

                content = types.Content(role="model", parts=parts)
        else:
            content = _replace(content, parts=parts)
        new_candidate = _replace(candidate, content=content, **changes)
        return _replace(chunk, candidates=[new_candidate])

    def _flush(self, channels: Any) -> list[Any]:
        template = self._template
        parts = []
        for key in channels.open_keys():
            held = channels.end(key)
            if held and template is not None:
                parts.append(self._held_part(template, key, held))
        if not parts or template is None:
            return []
        candidate = self._candidate(template)
        finish_key = wire_key(candidate, "finish_reason")
        candidate = _replace(candidate, **{finish_key: None})
        chunk = self._with_parts(template, candidate, parts)
        return [_replace(chunk, **{wire_key(chunk, "usage_metadata"): None})]


register_lens(GeminiLens.match)
