"""The DESIGN.md guarantees on the streams users have: provider chunk types, not only ``str``.

Small builders turn a text and a list of cut points into a realistic stream of
each provider's chunk type (OpenAI ``ChatCompletionChunk`` objects and wire
dicts, Responses events, Anthropic raw events, LangChain ``AIMessageChunk``,
and UTF-8 ``bytes`` cut anywhere, inside characters too). The properties:

1. chunking invariance of the content channel, against ``regex.sub`` over the
   whole text for validator-free built-ins, and held text flushed inside the
   provider's own framing (block boundaries, sequence numbers, done events);
2. no piece of a built-in secret in any field of any chunk, at any forced end
   (budget before or after redact, a provider ``length`` finish, a quiet cancel,
   the consumer leaving), on the content channel and on the side channels;
3. pass-through stages (identity, collect) anywhere in a chain change nothing;
4. sync ≡ async: the same chunks and the same report;
5. a random stop (task cancelled, ``break``, ``close()``) closes the source
   *object* once and leaves no task behind.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from itertools import pairwise
from typing import Annotated, Any, get_args, get_origin

import regex
from anthropic.types import RawMessageStreamEvent
from helpers import SDKAsyncStream, SDKSyncStream, get
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from langchain_core.messages import AIMessageChunk
from langchain_core.messages.ai import UsageMetadata
from openai.types.chat import ChatCompletionChunk
from openai.types.responses import ResponseStreamEvent
from pydantic import BaseModel

import streamops as so

KINDS = [
    "openai",
    "openai-dict",
    "responses",
    "responses-dict",
    "anthropic",
    "anthropic-dict",
    "langchain",
    "bytes",
]
kinds = st.sampled_from(KINDS)


def _classes(union: Any) -> dict[str, type[BaseModel]]:
    """The SDK class of each event ``type`` of a union of event classes."""
    if get_origin(union) is Annotated:
        union = get_args(union)[0]
    return {get_args(cls.model_fields["type"].annotation)[0]: cls for cls in get_args(union)}


_RESPONSES = _classes(ResponseStreamEvent)
_ANTHROPIC = _classes(RawMessageStreamEvent)


# --------------------------------------------------------------------------
# builders: a text, cut points and an end -> a realistic provider stream
# --------------------------------------------------------------------------


def split(text: str, cuts: list[int]) -> list[str]:
    """``text`` cut at ``cuts`` (taken modulo its length); no empty pieces."""
    points = sorted({c % (len(text) + 1) for c in cuts} | {0, len(text)})
    return [text[a:b] for a, b in pairwise(points)]


def _openai(parts: list[str], finish: str, side: dict[str, list[str]]) -> list[dict[str, Any]]:
    def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        return {
            "id": "chatcmpl-1",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": "gpt-4o",
            "system_fingerprint": "fp_1",
            "choices": [
                {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
            ],
        }

    out = [chunk({"role": "assistant", "content": ""})]
    out += [chunk({"reasoning_content": p}) for p in side.get("reasoning", [])]
    out += [chunk({"refusal": p}) for p in side.get("refusal", [])]
    out += [chunk({"content": p}) for p in parts]
    args = side.get("arguments")
    if args is not None:
        call = {"index": 0, "id": "call_1", "type": "function"}
        out.append(chunk({"tool_calls": [{**call, "function": {"name": "f", "arguments": ""}}]}))
        out += [chunk({"tool_calls": [{"index": 0, "function": {"arguments": p}}]}) for p in args]
    out.append(chunk({}, finish))
    usage = {"prompt_tokens": 3, "completion_tokens": 9, "total_tokens": 12}
    out.append({**chunk({}), "choices": [], "usage": usage})
    return out


def _responses(parts: list[str], finish: str) -> list[dict[str, Any]]:
    full = "".join(parts)
    status = "completed" if finish == "stop" else "incomplete"
    ids = {"item_id": "msg_1", "output_index": 0, "content_index": 0}
    part = {"type": "output_text", "text": full, "annotations": [], "logprobs": []}
    item = {"type": "message", "id": "msg_1", "role": "assistant", "status": status}

    def response(status: str, output: list[Any]) -> dict[str, Any]:
        return {
            "id": "resp_1",
            "object": "response",
            "created_at": 1.0,
            "model": "gpt-4o",
            "status": status,
            "output": output,
            "parallel_tool_calls": True,
            "tool_choice": "auto",
            "tools": [],
            "incomplete_details": None
            if status != "incomplete"
            else {"reason": "max_output_tokens"},
            "usage": {
                "input_tokens": 3,
                "output_tokens": 9,
                "total_tokens": 12,
                "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
                "output_tokens_details": {"reasoning_tokens": 0},
            }
            if status != "in_progress"
            else None,
        }

    events: list[dict[str, Any]] = [
        {"type": "response.created", "response": response("in_progress", [])},
        {"type": "response.in_progress", "response": response("in_progress", [])},
        {
            "type": "response.output_item.added",
            "output_index": 0,
            "item": {**item, "status": "in_progress", "content": []},
        },
        {"type": "response.content_part.added", **ids, "part": {**part, "text": ""}},
    ]
    events += [
        {"type": "response.output_text.delta", **ids, "delta": p, "logprobs": []} for p in parts
    ]
    events += [
        {"type": "response.output_text.done", **ids, "text": full, "logprobs": []},
        {"type": "response.content_part.done", **ids, "part": part},
        {
            "type": "response.output_item.done",
            "output_index": 0,
            "item": {**item, "content": [part]},
        },
        {
            "type": f"response.{status}",
            "response": response(status, [{**item, "content": [part]}]),
        },
    ]
    return [{**e, "sequence_number": i} for i, e in enumerate(events)]


def _anthropic(parts: list[str], finish: str, side: dict[str, list[str]]) -> list[dict[str, Any]]:
    usage = {"input_tokens": 3, "output_tokens": 1}
    message: dict[str, Any] = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-x",
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": usage,
    }
    out: list[dict[str, Any]] = [{"type": "message_start", "message": message}]

    def block(start: dict[str, Any], deltas: list[dict[str, Any]]) -> None:
        index = sum(e["type"] == "content_block_start" for e in out)
        out.append({"type": "content_block_start", "index": index, "content_block": start})
        out.extend({"type": "content_block_delta", "index": index, "delta": d} for d in deltas)
        out.append({"type": "content_block_stop", "index": index})

    thinking = side.get("thinking")
    if thinking is not None:
        block(
            {"type": "thinking", "thinking": "", "signature": ""},
            [{"type": "thinking_delta", "thinking": p} for p in thinking]
            + [{"type": "signature_delta", "signature": "c2lnbmF0dXJl"}],
        )
    block({"type": "text", "text": ""}, [{"type": "text_delta", "text": p} for p in parts])
    args = side.get("arguments")
    if args is not None:
        block(
            {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}},
            [{"type": "input_json_delta", "partial_json": p} for p in args],
        )
    reason = {"stop": "end_turn", "length": "max_tokens"}[finish]
    out.append(
        {
            "type": "message_delta",
            "delta": {"stop_reason": reason, "stop_sequence": None},
            "usage": {"output_tokens": 9},
        }
    )
    out.append({"type": "message_stop"})
    return out


def _langchain(parts: list[str], finish: str) -> list[AIMessageChunk]:
    out = [AIMessageChunk(content=p, id="run-1") for p in parts]
    out.append(
        AIMessageChunk(
            content="", id="run-1", response_metadata={"finish_reason": finish, "model_name": "m"}
        )
    )
    usage = UsageMetadata(input_tokens=3, output_tokens=9, total_tokens=12)
    out.append(AIMessageChunk(content="", id="run-1", usage_metadata=usage, chunk_position="last"))
    return out


def build(
    kind: str,
    text: str,
    cuts: list[int],
    finish: str = "stop",
    side: dict[str, list[str]] | None = None,
    *,
    whole_chars: bool = False,
) -> list[Any]:
    """A stream of ``kind`` carrying ``text`` cut at ``cuts`` and ending with ``finish``.

    ``bytes`` are cut anywhere, inside characters too, unless ``whole_chars``: the
    properties that may end a stream by force use it, because a forced end inside a
    character has its own property (``test_a_forced_end_inside_a_multibyte_...``).
    """
    side = side or {}
    if kind == "bytes" and whole_chars:
        return [piece.encode() for piece in split(text, cuts)]
    if kind == "bytes":
        data = text.encode()
        points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
        return [data[a:b] for a, b in pairwise(points)]
    parts = split(text, cuts)
    if kind == "langchain":
        return _langchain(parts, finish)
    family, _, wire = kind.partition("-")
    if family == "openai":
        raw = _openai(parts, finish, side)
        return raw if wire else [ChatCompletionChunk.model_validate(c) for c in raw]
    if family == "responses":
        raw = _responses(parts, finish)
        return raw if wire else [_RESPONSES[e["type"]].model_validate(e) for e in raw]
    raw = _anthropic(parts, finish, side)
    return raw if wire else [_ANTHROPIC[e["type"]].model_validate(e) for e in raw]


# --------------------------------------------------------------------------
# readers
# --------------------------------------------------------------------------


def content(kind: str, chunks: list[Any]) -> str:
    """The text of the content channel of ``chunks``."""
    if kind == "bytes":
        return b"".join(chunks).decode()
    if kind == "langchain":
        return "".join(c.content for c in chunks)
    texts: list[str] = []
    for c in chunks:
        kind_of = get(c, "type")
        if kind.startswith("openai"):
            choices = get(c, "choices")
            if choices:
                texts.append(get(get(choices[0], "delta"), "content") or "")
        elif kind_of == "response.output_text.delta":
            texts.append(get(c, "delta"))
        elif kind_of == "content_block_delta" and get(get(c, "delta"), "type") == "text_delta":
            texts.append(get(get(c, "delta"), "text"))
        elif kind_of == "content_block_start" and get(get(c, "content_block"), "type") == "text":
            texts.append(get(get(c, "content_block"), "text") or "")
    return "".join(texts)


def dump(chunk: Any) -> str:
    """Every field of ``chunk`` as text (to search for a secret anywhere in it)."""
    if isinstance(chunk, bytes):
        return chunk.decode(errors="replace")
    if isinstance(chunk, BaseModel):
        return json.dumps(chunk.model_dump(mode="json"), ensure_ascii=False, default=str)
    return json.dumps(chunk, ensure_ascii=False, default=str)


def dumps(chunks: list[Any]) -> list[str]:
    return [dump(c) for c in chunks]


# --------------------------------------------------------------------------
# texts, secrets, references
# --------------------------------------------------------------------------

SECRETS = [
    "sk-proj-Ab12Cd34Ef56Gh78Ij90Kl12Mn34",
    "AKIAIOSFODNN7EXAMPLE",
    "john.doe@example.org",
    "4111 1111 1111 1111",
    "ghp_" + "a1" * 18,
    "123-45-6789",
    "DE89370400440532013000",  # IPs are opt-in (category "network"), not a default
]
# Multi-byte characters (2, 3 and 4 bytes in UTF-8) so bytes are cut inside characters.
FILLER = ["the ", "a", " ", ".", "\n", "x", "é", "€", "日本", "😀", "sk-", "@", "1"]
glued_text = st.lists(
    st.one_of(st.sampled_from(FILLER), st.sampled_from(SECRETS)), max_size=16
).map("".join)
cuts = st.lists(st.integers(min_value=0, max_value=600), max_size=10)

# Validator-free built-ins: for them the filter is exactly ``regex.sub`` of their
# alternation (earlier pattern first at the same start), each match -> its label.
PLAIN = ["openai_key", "aws_access_key_id", "github_token", "email", "us_ssn", "ipv4"]
_SPECS = {spec.name: spec for spec in so.builtin_patterns()}
_PLAIN_RE = regex.compile("|".join(f"(?P<{n}>{_SPECS[n].pattern})" for n in PLAIN))


def plain_reference(text: str) -> str:
    def label(m: regex.Match[str]) -> str:
        assert m.lastgroup is not None
        return _SPECS[m.lastgroup].placeholder

    return _PLAIN_RE.sub(label, text)


def str_reference(op: so.Operator[Any, Any], text: str) -> str:
    """The operator's output on the whole text as one ``str`` chunk."""
    return "".join(op([text]) if text else op([]))


# --------------------------------------------------------------------------
# (1) chunking invariance of the content channel
# --------------------------------------------------------------------------


@given(kinds, glued_text, cuts)
def test_redact_content_matches_regex_sub_for_every_chunking(
    kind: str, text: str, cut: list[int]
) -> None:
    op = so.redact(PLAIN)
    expected = plain_reference(text)
    assert content(kind, list(op(build(kind, text, [])))) == expected
    assert content(kind, list(op(build(kind, text, cut)))) == expected


OPS = {
    "redact": lambda k: so.redact(),
    "budget": lambda k: so.budget(max_tokens=k),
    "redact|budget": lambda k: so.redact() | so.budget(max_tokens=k),
    "budget|redact": lambda k: so.budget(max_tokens=k) | so.redact(),
}


@given(kinds, glued_text, cuts, st.sampled_from(sorted(OPS)), st.integers(1, 40))
def test_content_depends_only_on_the_whole_text(
    kind: str, text: str, cut: list[int], name: str, k: int
) -> None:
    """op(chunks) reads back as op([the whole text as one chunk of that type])."""
    op = OPS[name](k)
    forced = name != "redact"
    whole = content(kind, list(op(build(kind, text, []))))
    assert content(kind, list(op(build(kind, text, cut, whole_chars=forced)))) == whole
    if name == "redact":
        assert whole == str_reference(op, text)


def check_framing(kind: str, source: list[Any], chunks: list[Any]) -> None:
    """The provider's own framing is intact: order, block boundaries, copies of the text."""
    if kind.startswith("openai"):
        ends = [i for i, c in enumerate(chunks) if not get(c, "choices")]
        finishes = [
            i
            for i, c in enumerate(chunks)
            if get(c, "choices") and get(get(c, "choices")[0], "finish_reason")
        ]
        assert ends == [len(chunks) - 1]  # the usage chunk is last
        assert finishes == [len(chunks) - 2]  # the finish chunk comes after every text
    elif kind.startswith("responses"):
        numbers = [get(e, "sequence_number") for e in chunks]
        assert numbers == list(range(len(chunks)))
        text = content(kind, chunks)
        types = [get(e, "type") for e in chunks]
        done = chunks[types.index("response.output_text.done")]
        assert get(done, "text") == text
        part_done = chunks[types.index("response.content_part.done")]
        assert get(get(part_done, "part"), "text") == text
        item_done = chunks[types.index("response.output_item.done")]
        assert get(get(item_done, "item"), "content")[0]
        assert get(get(get(item_done, "item"), "content")[0], "text") == text
        final = get(chunks[-1], "response")
        assert get(get(final, "output")[0], "content")[0]
        assert get(get(get(final, "output")[0], "content")[0], "text") == text
        deltas = [i for i, t in enumerate(types) if t == "response.output_text.delta"]
        assert all(i < types.index("response.output_text.done") for i in deltas)
    elif kind.startswith("anthropic"):
        open_blocks: dict[int, str] = {}
        started: set[int] = set()
        for e in chunks:
            kind_of = get(e, "type")
            index = get(e, "index")
            if kind_of == "content_block_start":
                assert index not in started
                started.add(index)
                open_blocks[index] = get(get(e, "content_block"), "type")
            elif kind_of == "content_block_delta":
                block = open_blocks[index]  # a delta only inside an open block ...
                delta = get(get(e, "delta"), "type")
                assert (block, delta) in {  # ... and of that block's kind
                    ("text", "text_delta"),
                    ("thinking", "thinking_delta"),
                    ("thinking", "signature_delta"),
                    ("tool_use", "input_json_delta"),
                }
            elif kind_of == "content_block_stop":
                del open_blocks[index]
            else:
                assert not open_blocks, kind_of  # message_delta/stop after every block
        assert [get(e, "type") for e in chunks[-2:]] == ["message_delta", "message_stop"]

        def blocks(events: list[Any]) -> list[Any]:
            starts = [e for e in events if get(e, "type") == "content_block_start"]
            return [get(get(e, "content_block"), "type") for e in starts]

        assert blocks(chunks) == blocks(source)  # no text block opened after a tool call


FRAMED = [k for k in KINDS if k.startswith(("openai", "responses", "anthropic"))]


@given(
    st.sampled_from(FRAMED),
    glued_text,
    cuts,
    st.lists(st.sampled_from(["identity", "collect", "redact"]), max_size=3),
    st.sampled_from(["stop", "length"]),
    st.one_of(st.none(), glued_text),
)
@settings(max_examples=100)
def test_held_text_is_flushed_inside_the_providers_own_framing(
    kind: str, text: str, cut: list[int], names: list[str], finish: str, side_text: str | None
) -> None:
    """Also with thinking before the text and a tool call after it (OpenAI, Anthropic)."""
    side: dict[str, list[str]] = {}
    if side_text is not None and not kind.startswith("responses"):
        for name in CHANNELS[kind.partition("-")[0]]:
            value = json.dumps({"q": side_text}) if name == "arguments" else side_text
            side[name] = split(value, cut)
    source = build(kind, text, cut, finish=finish, side=side)
    check_framing(kind, source, list(chain(["redact", *names], 1)(source)))


# --------------------------------------------------------------------------
# (2) no leak at any forced end (content channel)
# --------------------------------------------------------------------------

# Secrets stand apart (", " around them) so that each one is a match of the library.
SEPARATE = [", ", " and ", ".\n", " é ", " 日本 ", " 😀 "]
separate_text = st.lists(
    st.tuples(st.sampled_from(SECRETS), st.sampled_from(SEPARATE)), min_size=1, max_size=4
).map(lambda items: "Here: " + "".join(s + sep for s, sep in items))
GRAM = 5


def grams(secret: str) -> set[str]:
    return {secret[i : i + GRAM] for i in range(len(secret) - GRAM + 1)}


def plain_prefix(secret: str) -> str:
    """The longest prefix of ``secret`` that a forced end may release.

    Masking at a forced end starts where a pattern's partial match shows that
    pattern's ``evidence`` (the ``@`` of an address, the ``sk-`` of a key): before
    it, the text is a plain word (``john.doe`` could only have begun an address).
    """
    for j in range(1, len(secret) + 1):
        for spec in so.builtin_patterns():
            m = regex.match(str(spec.pattern), secret[:j], partial=True)
            if (
                m is not None
                and m.partial
                and spec.evidence is not None
                and regex.search(spec.evidence, m.group()) is not None
            ):
                return secret[: j - 1]
    raise AssertionError(f"no evidence in {secret!r}")


# The pieces of each secret that no output may contain, at any end.
FORBIDDEN = {g: s for s in SECRETS for g in grams(s) - grams(plain_prefix(s))}
# None of them can come from the surrounding text, a placeholder or the framing of a
# stream (field names, event types such as "response.completed").
_SAFE = "\n".join(
    [
        "".join(a + b for a in SEPARATE for b in SEPARATE),
        *(spec.placeholder for spec in so.builtin_patterns()),
        *(d for kind in KINDS for d in dumps(build(kind, "Here: ", [], finish="length"))),
        *(d for kind in KINDS for d in dumps(build(kind, "Here: ", []))),
    ]
)
assert not any(g in _SAFE for g in FORBIDDEN)


def leaks(chunks: list[Any]) -> list[tuple[str, str]]:
    """(secret, piece of it) for every piece of a secret found in any field of any chunk."""
    text = "\n".join(dumps(chunks))
    return sorted({(s, g) for g, s in FORBIDDEN.items() if g in text})


ENDS = ["natural", "budget-before", "budget-after", "length", "cancel", "consumer-stop"]


async def _aiter(items: list[Any], token: so.CancelToken | None, at: int) -> AsyncIterator[Any]:
    for i, item in enumerate(items):
        if token is not None and i == at:
            token.cancel()
        await asyncio.sleep(0)
        yield item


def _iter(items: list[Any], token: so.CancelToken | None, at: int) -> Iterator[Any]:
    for i, item in enumerate(items):
        if token is not None and i == at:
            token.cancel()
        yield item


def run(op: so.Operator[Any, Any], chunks: list[Any], mode: str, before: Any = None) -> list[Any]:
    """Run ``op`` over ``chunks``, sync or async; ``before(i)`` runs before chunk i is pulled."""

    def source() -> Iterator[Any]:
        for i, chunk in enumerate(chunks):
            if before is not None:
                before(i)
            yield chunk

    if mode == "sync":
        return list(op(source()))

    async def asource() -> AsyncIterator[Any]:
        for item in source():
            await asyncio.sleep(0)
            yield item

    async def main() -> list[Any]:
        return [c async for c in op(asource())]

    return asyncio.run(main())


def run_forced(
    kind: str,
    text: str,
    cut: list[int],
    end: str,
    at: int,
    mode: str,
    side: dict[str, list[str]] | None = None,
) -> list[Any]:
    """Run ``so.redact()`` over the stream, ended by force as ``end`` says; the output."""
    token: so.CancelToken | None = None
    op: so.Operator[Any, Any] = so.redact()
    stop_after: int | None = None
    if end == "length":
        if side is None:  # else the caller cut the last channel itself
            text = text[: at % (len(text) + 1)]
        chunks = build(kind, text, cut, finish="length", side=side)
    else:
        forced = end in ("budget-before", "budget-after", "cancel")
        chunks = build(kind, text, cut, side=side, whole_chars=forced)
    if end == "budget-before":
        op = so.budget(max_tokens=at + 1) | so.redact()
    elif end == "budget-after":
        op = so.redact() | so.budget(max_tokens=at + 1)
    elif end == "cancel":
        token = so.CancelToken()
        op = so.cancellable(token) | so.redact()
    elif end == "consumer-stop":
        stop_after = at
    if mode == "sync":
        out: list[Any] = []
        with op(_iter(chunks, token, at % (len(chunks) + 1))) as stream:
            for chunk in stream:
                if stop_after is not None and len(out) >= stop_after:
                    break
                out.append(chunk)
        return out

    async def main() -> list[Any]:
        got: list[Any] = []
        async with op(_aiter(chunks, token, at % (len(chunks) + 1))) as stream:
            async for chunk in stream:
                if stop_after is not None and len(got) >= stop_after:
                    break
                got.append(chunk)
        return got

    return asyncio.run(main())


@given(
    kinds,
    separate_text,
    cuts,
    st.sampled_from(ENDS),
    st.integers(0, 60),
    st.sampled_from(["sync", "async"]),
)
def test_no_secret_leaks_from_the_content_channel_at_any_end(
    kind: str, text: str, cut: list[int], end: str, at: int, mode: str
) -> None:
    assume(not (kind == "bytes" and end == "length"))  # bytes carry no finish reason
    assert not leaks([str_reference(so.redact(), text)])  # every secret is a match
    out = run_forced(kind, text, cut, end, at, mode)
    assert leaks(out) == [], (content(kind, out), [type(c).__name__ for c in out])


@given(
    st.integers(0, 80),
    st.integers(1, 12),
    st.sampled_from(["budget", "cancel"]),
    st.sampled_from(["sync", "async"]),
)
def test_a_forced_end_inside_a_multibyte_character_is_clean(
    at: int, k: int, end: str, mode: str
) -> None:
    """Bytes cut inside a character, then a budget cut or a cancel: no error, valid UTF-8.

    The bytes of the incomplete character were never going to be released: a forced
    end drops them (as it drops any text after the cut) instead of raising LensError.
    """
    text = "Hi 日本 and 😀 é ok, " * 3
    data = text.encode()
    chunks = [data[: at % len(data)], data[at % len(data) :]]
    token = so.CancelToken()
    if end == "budget":
        op = so.budget(max_tokens=k) | so.redact()
    else:
        op = so.cancellable(token) | so.redact()
    out = run(op, chunks, mode, lambda i: token.cancel() if i == 1 else None)
    assert text.startswith(b"".join(out).decode())


# --------------------------------------------------------------------------
# side channels: refusal, reasoning, tool-call arguments, thinking
# --------------------------------------------------------------------------

SIDE_KINDS = ["openai", "openai-dict", "anthropic", "anthropic-dict"]
CHANNELS = {"openai": ["refusal", "reasoning", "arguments"], "anthropic": ["thinking", "arguments"]}


def channel(kind: str, chunks: list[Any], name: str) -> str:
    """The text of side channel ``name`` of ``chunks``."""
    texts: list[str] = []
    for c in chunks:
        if kind.startswith("openai"):
            choices = get(c, "choices")
            delta = get(choices[0], "delta") if choices else None
            if delta is None:
                continue
            if name == "arguments":
                for call in get(delta, "tool_calls") or []:
                    texts.append(get(get(call, "function"), "arguments") or "")
            else:
                field = {"refusal": "refusal", "reasoning": "reasoning_content"}[name]
                texts.append(get(delta, field) or "")
        elif get(c, "type") == "content_block_delta":
            delta = get(c, "delta")
            field = {"thinking": "thinking", "arguments": "partial_json"}[name]
            if get(delta, "type") == {"thinking": "thinking_delta"}.get(name, "input_json_delta"):
                texts.append(get(delta, field))
    return "".join(texts)


@given(
    st.sampled_from(SIDE_KINDS),
    separate_text,
    separate_text,
    cuts,
    st.sampled_from(["natural", *ENDS]),
    st.integers(0, 60),
)
@settings(max_examples=60)
def test_no_secret_leaks_from_a_side_channel(
    kind: str, text: str, side_text: str, cut: list[int], end: str, at: int
) -> None:
    family = kind.partition("-")[0]
    # Tool-call arguments are JSON: the secret sits in a string value. They come last,
    # so a provider's length cut falls inside them (the blocks before are complete).
    arguments = json.dumps({"q": side_text})
    if end == "length":
        arguments = arguments[: at % (len(arguments) + 1)]
    side = {
        name: split(arguments if name == "arguments" else side_text, cut)
        for name in CHANNELS[family]
    }
    out = run_forced(kind, text, cut, end, at, "sync", side=side)
    assert leaks(out) == []
    if end == "natural":  # each channel is its own stream, redacted like the content
        expected = str_reference(so.redact(), side_text)
        for name in CHANNELS[family]:
            got = channel(kind, out, name)
            assert (json.loads(got)["q"] if name == "arguments" else got) == expected, name


# --------------------------------------------------------------------------
# (3) pass-through stages anywhere in the chain
# --------------------------------------------------------------------------

STAGES = st.sampled_from(["identity", "collect", "redact", "budget"])


def chain(names: list[str], k: int, *, passthrough: bool = True) -> so.Operator[Any, Any]:
    op: so.Operator[Any, Any] = so.identity()
    for i, name in enumerate(names):
        if name == "identity" and passthrough:
            op = op | so.identity()
        elif name == "collect" and passthrough:
            op = op | so.collect(name=f"collect{i}")
        elif name == "redact":
            op = op | so.redact()
        elif name == "budget":
            op = op | so.budget(max_tokens=k + i)
        elif name == "timeout":  # a shell stage (async streams only) that never fires here
            op = op | so.timeout(idle=60.0, total=600.0)
    return op


@given(kinds, glued_text, cuts, st.lists(STAGES, min_size=1, max_size=5), st.integers(1, 30))
@settings(max_examples=100)
def test_pass_through_stages_anywhere_change_nothing(
    kind: str, text: str, cut: list[int], names: list[str], k: int
) -> None:
    chunks = build(kind, text, cut, whole_chars="budget" in names)
    with_them = content(kind, list(chain(names, k)(chunks)))
    without = content(kind, list(chain(names, k, passthrough=False)(chunks)))
    assert with_them == without
    assert with_them == content(kind, list(chain(names, k)(build(kind, text, []))))
    assert with_them == "".join(chain(names, k)(split(text, cut)))


# --------------------------------------------------------------------------
# (4) sync ≡ async
# --------------------------------------------------------------------------


def _report(report: so.StreamReport) -> tuple[Any, str]:
    return report.stop_reason, report.released_text


@given(
    kinds,
    glued_text,
    cuts,
    st.lists(STAGES, min_size=1, max_size=4),
    st.integers(1, 30),
    st.sampled_from(["stop", "length"]),
)
def test_sync_and_async_give_the_same_chunks_and_report(
    kind: str, text: str, cut: list[int], names: list[str], k: int, finish: str
) -> None:
    chunks = build(kind, text, cut, finish=finish, whole_chars="budget" in names)
    sync_stream = chain(names, k)(iter(chunks))
    sync_out = list(sync_stream)

    async def main() -> tuple[list[Any], so.StreamReport]:
        stream = chain(names, k)(_aiter(chunks, None, 0))
        return [c async for c in stream], stream.report

    async_out, async_report = asyncio.run(main())
    assert dumps(async_out) == dumps(sync_out)
    assert _report(async_report) == _report(sync_stream.report)


# --------------------------------------------------------------------------
# (5) a random stop closes the source object once, leaves no task
# --------------------------------------------------------------------------


def _assert_closed_once(src: SDKAsyncStream | SDKSyncStream) -> None:
    if src.exhausted:
        assert src.closed <= 1  # a natural end may close it too, never twice
    else:
        assert src.closed == 1


CLEAN_STAGES = st.sampled_from(["identity", "collect", "redact", "budget", "timeout"])


@given(
    kinds,
    glued_text,
    cuts,
    st.lists(CLEAN_STAGES, max_size=4),
    st.integers(1, 30),
    st.sampled_from(["cancel-task", "break"]),
    st.integers(0, 40),
)
@settings(max_examples=80)
def test_async_random_stop_closes_the_source_object_once(
    kind: str, text: str, cut: list[int], names: list[str], k: int, how: str, when: int
) -> None:
    loop_errors: list[dict[str, Any]] = []
    src = SDKAsyncStream(build(kind, text, cut, whole_chars="budget" in names), yield_to_loop=True)

    async def consume() -> None:
        n = 0
        async with chain(names, k)(src) as stream:
            async for _ in stream:
                n += 1
                if how == "break" and n > when:
                    break

    async def main() -> None:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(lambda loop, context: loop_errors.append(context))
        task = asyncio.create_task(consume())
        if how == "cancel-task":
            for _ in range(when + 1):  # the task has started: it owns the stream
                await asyncio.sleep(0)
            task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            assert how == "cancel-task"
        assert asyncio.all_tasks() == {asyncio.current_task()}  # nothing left behind

    asyncio.run(main())
    _assert_closed_once(src)
    assert loop_errors == []


@given(
    kinds,
    glued_text,
    cuts,
    st.lists(st.sampled_from(["identity", "collect", "redact", "budget"]), max_size=4),
    st.integers(1, 30),
    st.integers(0, 40),
)
@settings(max_examples=60)
def test_sync_close_at_a_random_point_closes_the_source_object_once(
    kind: str, text: str, cut: list[int], names: list[str], k: int, when: int
) -> None:
    src = SDKSyncStream(build(kind, text, cut, whole_chars="budget" in names))
    stream = chain(names, k)(src)
    for n, _ in enumerate(stream):
        if n >= when:
            break
    stream.close()
    _assert_closed_once(src)
