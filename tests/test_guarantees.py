"""The guarantees of DESIGN.md on the streams users have, not only on ``str`` from our fakes.

Each test here reproduces a finding of the adversarial review (issue 15): the
source *object* is closed, awaitables and factories are sources, pass-through
stages fuse correctly over provider chunks, and a stream ended by force never
releases the held-back prefix of a secret.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncGenerator, Iterator
from typing import Any

import pytest
from helpers import SDKAsyncStream, SDKSyncStream, aiter_of

import streamops as so

SECRET = "sk-proj-4Ab12Cd34Ef56Gh78Ij90Kl12Mn34"
PARTS = ["my key is sk-proj-4", "Ab12Cd34Ef56Gh78Ij90Kl12Mn34 ok"]


WORDS = [f"w{i} " for i in range(50)]


# -- close what you were given ---------------------------------------------


def test_budget_cut_closes_the_sync_source_object() -> None:
    src = SDKSyncStream(WORDS)
    out = list(so.budget(max_tokens=3)(src))
    assert "".join(out)
    assert src.closed == 1
    assert src.pulled < 10


def test_consumer_break_closes_the_sync_source_object() -> None:
    src = SDKSyncStream(WORDS)
    with so.redact()(src) as stream:
        for _ in stream:
            break
    assert src.closed == 1


async def test_budget_cut_closes_the_async_source_object() -> None:
    src = SDKAsyncStream(WORDS)
    out = [x async for x in so.budget(max_tokens=3)(src)]
    assert out
    assert src.closed == 1
    assert src.pulled < 10


async def test_consumer_break_closes_the_async_source_object() -> None:
    src = SDKAsyncStream(WORDS)
    async with so.redact()(src) as stream:
        async for _ in stream:
            break
    assert src.closed == 1


async def test_upstream_error_closes_the_source_object() -> None:
    class Failing(SDKAsyncStream):
        async def _stream(self) -> AsyncGenerator[Any, None]:
            yield "a"
            raise ConnectionResetError("gone")

    src = Failing([])
    with pytest.raises(ConnectionResetError):
        async for _ in so.identity()(src):
            pass
    assert src.closed == 1


async def test_natural_end_does_not_need_a_close_but_tolerates_one() -> None:
    src = SDKAsyncStream(["a", "b"])
    stream = so.redact()(src)
    assert [x async for x in stream] == ["ab"]
    await stream.aclose()
    assert src.closed <= 1


@pytest.mark.looptime
async def test_timeout_closes_the_source_object() -> None:
    class Stalling(SDKAsyncStream):
        async def _stream(self) -> AsyncGenerator[Any, None]:
            yield "a"
            await asyncio.sleep(100)
            yield "b"

    src = Stalling([])
    with pytest.raises(so.StreamTimeout):
        async for _ in so.timeout(idle=1.0)(src):
            pass
    assert src.closed == 1


# -- a source may still have to be awaited ---------------------------------


async def test_coroutine_source_is_awaited_inside_the_stream() -> None:
    async def create() -> SDKAsyncStream:
        await asyncio.sleep(0)
        return SDKAsyncStream(["Mail a@b.co", " now"])

    stream = so.redact(["email"])(create())
    assert isinstance(stream, so.AsyncStream)
    assert "".join([x async for x in stream]) == "Mail [EMAIL] now"


async def test_factory_source_is_called_and_awaited() -> None:
    made: list[SDKAsyncStream] = []

    async def create() -> SDKAsyncStream:
        made.append(SDKAsyncStream(WORDS))
        return made[-1]

    out = [x async for x in so.budget(max_tokens=2)(create)]
    assert out
    assert made[0].closed == 1


def test_sync_factory_source() -> None:
    assert list(so.identity()(lambda: iter(["a", "b"]))) == ["a", "b"]


@pytest.mark.looptime
async def test_first_chunk_timeout_covers_the_request() -> None:
    """The wait for response headers is inside the first-chunk limit, and cancelled."""
    cancelled: list[bool] = []

    async def create() -> SDKAsyncStream:
        try:
            await asyncio.sleep(30)  # headers never come
        except asyncio.CancelledError:
            cancelled.append(True)
            raise
        return SDKAsyncStream(["late"])

    stream = so.timeout(first_chunk=1.0, idle=0.5)(create())
    with pytest.raises(so.StreamTimeout):
        async for _ in stream:
            pass
    assert cancelled == [True]
    assert stream.report.stop_reason == so.StopReason.TIMEOUT
    assert asyncio.get_running_loop().time() == pytest.approx(1.0)


@pytest.mark.looptime
async def test_time_to_first_chunk_counts_the_request() -> None:
    async def create() -> SDKAsyncStream:
        await asyncio.sleep(2.0)
        return SDKAsyncStream(["a"])

    stream = so.collect()(create())
    async for _ in stream:
        pass
    metrics = stream.report["collect"].metrics  # type: ignore[attr-defined]
    assert metrics.time_to_first_chunk == pytest.approx(2.0)


async def test_unstarted_coroutine_source_is_closed_without_warning() -> None:
    async def create() -> SDKAsyncStream:
        return SDKAsyncStream(["a"])

    stream = so.redact()(create())
    await stream.aclose()
    del stream
    gc.collect()  # a "never awaited" RuntimeWarning would be an error here
    dropped = so.redact()(create())
    del dropped
    gc.collect()


async def test_unstarted_stream_closes_its_source_object() -> None:
    src = SDKAsyncStream(WORDS)
    stream = so.redact()(src)
    await stream.aclose()
    assert src.closed == 1
    sync_src = SDKSyncStream(WORDS)
    so.redact()(sync_src).close()
    assert sync_src.closed == 1


def test_a_coroutine_on_a_sync_call_is_still_clear() -> None:
    with pytest.raises(TypeError, match="iterable"):
        so.identity()(42)  # type: ignore[call-overload]


# -- pass-through stages anywhere ------------------------------------------

OPENAI = [
    {
        "id": "c1",
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": {"content": part}, "finish_reason": None}],
    }
    for part in ["Mail a@", "b.co now"]
] + [
    {
        "id": "c1",
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
    }
]


def _content(chunks: list[Any]) -> str:
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])


@pytest.mark.parametrize(
    "op",
    [
        so.identity() | so.redact(["email"]),
        so.collect() | so.redact(["email"]),
        so.redact(["email"]) | so.identity() | so.redact(["email"]),
        so.identity() | so.identity() | so.redact(["email"]) | so.collect(),
    ],
    ids=repr,
)
def test_pass_through_stages_before_text_stages_over_provider_dicts(
    op: so.Operator[Any, Any],
) -> None:
    assert _content(list(op(OPENAI))) == "Mail [EMAIL] now"


def test_policy_collect_then_parse_json_over_openai_chunks() -> None:
    chunks = [
        {**OPENAI[0], "choices": [{"index": 0, "delta": {"content": t}, "finish_reason": None}]}
        for t in ['{"a": ', "[1, 2]}"]
    ]
    op = so.Policy.model_validate({"collect": {}, "parse_json": {}}).build()
    assert list(op(chunks))[-1] == {"a": [1, 2]}


# -- a truncated secret is a secret ----------------------------------------


@pytest.mark.parametrize("n", [6, 7, 8, 9, 10, 11])
def test_budget_cut_mid_secret_masks_the_held_prefix(n: int) -> None:
    out = "".join((so.budget(max_tokens=n) | so.redact())(PARTS))
    assert "sk-" not in out
    assert out.startswith("my key is")


def test_natural_end_still_releases_a_harmless_prefix() -> None:
    # A complete message that ends with something that only looked like a secret's start.
    assert "".join(so.redact()(["my key is sk-"])) == "my key is sk-"


@pytest.mark.looptime
async def test_quiet_timeout_mid_secret_masks_the_held_prefix() -> None:
    async def slow() -> AsyncGenerator[str, None]:
        yield PARTS[0]
        await asyncio.sleep(100)
        yield PARTS[1]

    op = so.timeout(idle=1.0, on_timeout="end") | so.redact()
    out = "".join([x async for x in op(slow())])
    assert "sk-proj" not in out
    assert out.startswith("my key is")


async def test_quiet_cancel_mid_secret_masks_the_held_prefix() -> None:
    token = so.CancelToken()

    async def src() -> AsyncGenerator[str, None]:
        yield PARTS[0]
        token.cancel()
        yield PARTS[1]

    out = "".join([x async for x in (so.cancellable(token) | so.redact())(src())])
    assert "sk-proj" not in out


@pytest.mark.parametrize("finish", ["length", "content_filter"])
def test_provider_truncation_mid_secret_masks_the_held_prefix(finish: str) -> None:
    chunks = [
        {
            "id": "c1",
            "object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": {"content": PARTS[0]}, "finish_reason": None}],
        },
        {
            "id": "c1",
            "object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": {}, "finish_reason": finish}],
        },
    ]
    out = _content(list(so.redact()(chunks)))
    assert "sk-proj" not in out
    assert out.startswith("my key is")


@pytest.mark.parametrize(
    "order",
    ["budget|redact", "redact|budget", "timeout|redact|budget", "redact|timeout|budget"],
)
def test_composition_order_never_leaks(order: str) -> None:
    ops = {
        "budget": so.budget(max_tokens=7),
        "redact": so.redact(),
        "timeout": so.cancellable(so.CancelToken()),
    }
    op = so.identity()
    for name in order.split("|"):
        op = op | ops[name]
    for k in range(1, len(PARTS[0]) + len(PARTS[1])):
        text = PARTS[0] + PARTS[1]
        out = "".join(op([text[:k], text[k:]]))
        assert "sk-proj" not in out, (order, k, out)


# -- adversarial review of the above (each reproduced, then fixed) ----------------


async def test_a_task_or_future_source_is_awaited() -> None:
    async def request() -> list[str]:
        return ["mail a@b.co"]

    task = asyncio.ensure_future(request())
    stream = so.redact(["email"])(task)
    assert isinstance(stream, so.AsyncStream)
    assert [x async for x in stream] == ["mail ", "[EMAIL]"]
    done = asyncio.ensure_future(request())
    await done
    assert "".join([x async for x in so.redact(["email"])(done)]) == "mail [EMAIL]"


class CountingSelfIterator:
    """A source whose ``__aiter__`` is itself: closing it twice would count twice."""

    def __init__(self, items: list[str]) -> None:
        self.items = iter(items)
        self.closed = 0

    def __aiter__(self) -> CountingSelfIterator:
        return self

    async def __anext__(self) -> str:
        try:
            return next(self.items)
        except StopIteration:
            raise StopAsyncIteration from None

    async def aclose(self) -> None:
        self.closed += 1


async def test_a_source_is_closed_once_at_a_halt() -> None:
    src = CountingSelfIterator(WORDS)
    assert [x async for x in (so.budget(max_tokens=3) | so.redact())(src)]
    assert src.closed == 1


@pytest.mark.looptime
async def test_a_halt_in_an_earlier_group_closes_the_source_object_at_once() -> None:
    src = SDKAsyncStream(WORDS)
    op = so.budget(max_tokens=3) | so.timeout(total=10) | so.redact()
    closed_when_last_in_hand = []
    text = ""
    async for piece in op(src):
        text += piece
        closed_when_last_in_hand.append(src.closed)
    assert closed_when_last_in_hand[-1] == 1
    assert src.closed == 1


def test_a_shared_report_does_not_make_a_later_natural_end_forced() -> None:
    report = so.StreamReport()
    list(so.budget(max_tokens=2)(["one two three four"], report=report))
    assert list(so.redact()(["write to bob"], report=report)) == ["write to ", "bob"]


def test_dropping_an_unstarted_sync_stream_closes_its_source() -> None:
    src = SDKSyncStream(WORDS)
    stream = so.redact()(src)
    del stream
    gc.collect()
    assert src.closed == 1


async def test_dropping_an_unstarted_async_stream_closes_its_source() -> None:
    src = SDKAsyncStream(WORDS)
    stream = so.redact()(src)
    del stream
    gc.collect()
    await asyncio.sleep(0)  # the close runs as a task on the loop
    assert src.closed == 1


def test_a_cut_after_a_plain_word_does_not_mask_it() -> None:
    """Only a partial match with its pattern's evidence is masked at a forced end."""
    chunks: list[dict[str, Any]] = [
        {
            "id": "c1",
            "object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": {"content": t}, "finish_reason": f}],
        }
        for t, f in [("The capital of France is", None), (" Paris", None), ("", "length")]
    ]
    out = _content(list(so.redact()(chunks)))
    assert out == "The capital of France is Paris"
    del chunks[1]
    chunks[0]["choices"][0]["delta"]["content"] = "Call 555-234-56"
    assert _content(list(so.redact()(chunks))) == "Call [PHONE]"
    chunks[0]["choices"][0]["delta"]["content"] = "Call 555 23"  # too little to tell
    assert _content(list(so.redact()(chunks))) == "Call 555 23"


def test_composed_redactors_never_leak_at_a_cut() -> None:
    src = ["card 4111 1111 1111 1111"]
    for n in range(3, 12):
        for op in (
            so.budget(max_tokens=n) | so.redact(["email"]) | so.redact(["credit_card"]),
            so.budget(max_tokens=n) | so.redact(["credit_card"]) | so.redact(["email"]),
            so.budget(max_tokens=n) | so.redact(["email", "credit_card"]),
        ):
            out = "".join(op(src))
            assert "4111 1111" not in out, (n, op, out)


def test_a_callable_replacement_is_not_given_a_partial_match_at_a_cut() -> None:
    op = so.redact(
        [r"(?P<pre>ABC)-(?P<num>[0-9]{5,9})"],
        replacement=lambda m: m.group("pre") + "-" + m.group("num")[-2:],
    )
    chunks = [
        {
            "id": "c1",
            "object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": {"content": t}, "finish_reason": f}],
        }
        for t, f in [("id=ABC-12", None), ("", "length")]
    ]
    assert _content(list(op(chunks))) == "id=[REDACTED]"


# -- a per-call lens= reaches every stage that reads chunks -----------------------


class Msg:
    """A chunk type no registered lens knows."""

    def __init__(self, text: str) -> None:
        self.text = text


class MsgLens:
    def unwrap(self, chunk: Any, /) -> str:
        return str(chunk.text)

    def wrap(self, chunk: Any, texts: list[str], /) -> list[Any]:
        return [Msg("".join(texts))]

    def finish(self, texts: list[str], /) -> list[Any]:
        return [Msg("".join(texts))] if texts else []


def msg_lens(chunk: Any) -> MsgLens | None:
    return MsgLens() if isinstance(chunk, Msg) else None


def test_per_call_lens_reaches_collect_and_ledger_budget() -> None:
    msgs = [Msg("mail a@"), Msg("b.co"), Msg(" done")]
    stream = (so.collect() | so.redact(["email"]))(msgs, lens=msg_lens)
    assert "".join(m.text for m in stream) == "mail [EMAIL] done"
    assert so.Collected.of(stream).text == "mail a@b.co done"

    async def ledgered() -> str:
        op = so.budget(max_tokens=100, ledger=so.MemoryLedger(limit=100), key="k")
        out = [m async for m in op(aiter_of(msgs), lens=msg_lens)]
        return "".join(m.text for m in out)

    assert asyncio.run(ledgered()) == "mail a@b.co done"


def test_per_call_lens_reaches_retry() -> None:
    calls: list[int] = []

    def upstream() -> Iterator[Any]:
        calls.append(1)
        yield Msg("")  # no text: framing, held
        if len(calls) == 1:
            raise ConnectionResetError("before any text")
        yield Msg("hello")

    stream = so.retry(upstream, backoff=so.Backoff(initial=0, jitter=0), lens=msg_lens)
    assert [m.text for m in stream] == ["", "hello"]
    assert len(calls) == 2


def test_a_stream_left_open_at_asyncio_run_shutdown_closes_quietly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    src = SDKAsyncStream(WORDS)
    timed = SDKAsyncStream(WORDS)

    async def main() -> None:
        stream = (so.redact() | so.budget(max_tokens=40))(src)
        await stream.__anext__()  # one piece, then the app returns without closing
        other = (so.timeout(idle=5) | so.redact())(timed)
        await other.__anext__()
        main.streams = (stream, other)  # type: ignore[attr-defined]

    with caplog.at_level("ERROR", logger="asyncio"):
        asyncio.run(main())
    assert [r.getMessage() for r in caplog.records] == []
    assert src.closed == 1
    assert timed.closed == 1


async def test_tee_closes_the_source_object_with_its_last_branch() -> None:
    src = SDKAsyncStream(WORDS)
    a, b = so.tee(src, 2)
    assert await a.__anext__() == WORDS[0]
    await a.aclose()
    assert src.closed == 0  # one branch still reads
    assert await b.__anext__() == WORDS[0]
    await b.aclose()
    assert src.closed == 1


def test_tee_of_a_sync_sdk_stream_and_of_a_factory() -> None:
    src = SDKSyncStream(WORDS)
    a, b = so.tee(lambda: src, 2)
    assert next(a) == next(b) == WORDS[0]
    a.close()
    b.close()
    assert src.closed == 1


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("pay with 4111111111111", "pay with [CREDIT_CARD]"),  # 13 digits: a card, Luhn-invalid
        ("pay with 411111111111111", "pay with [CREDIT_CARD]"),  # 15 of 16
        ("iban DE893704004405320130", "iban [IBAN]"),  # 20 of 22 characters
        ("Here: GB82 WEST 1234", "Here: [IBAN]"),
        ("tok eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.", "tok [JWT]"),
    ],
)
def test_a_cut_masks_an_open_complete_match_a_longer_text_could_validate(
    text: str, expected: str
) -> None:
    """A complete match at the cut (rejected by its validator, or still growing) is open."""
    chunks: list[dict[str, Any]] = [
        {
            "id": "c1",
            "object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": {"content": t}, "finish_reason": f}],
        }
        for t, f in [(text, None), ("", "length")]
    ]
    assert _content(list(so.redact()(chunks))) == expected


def test_a_message_the_provider_cut_is_reported_and_runs_no_side_effect() -> None:
    def chunks() -> list[dict[str, Any]]:
        return [
            {
                "id": "c1",
                "object": "chat.completion.chunk",
                "choices": [{"index": 0, "delta": {"content": t}, "finish_reason": f}],
            }
            for t, f in [("The answer is", None), ("", "length")]
        ]

    stream = so.redact()(chunks())
    list(stream)
    assert stream.report.stop_reason is so.StopReason.TRUNCATED
    ran: list[str] = []
    retried = so.retry(lambda: so.redact()(chunks()), on_success=lambda t, r: ran.append(t))
    list(retried)
    assert ran == []  # side effects only after a natural, complete end
    complete = chunks()
    complete[-1]["choices"][0]["finish_reason"] = "stop"
    done = so.redact()(complete)
    list(done)
    assert done.report.stop_reason is so.StopReason.COMPLETE


def _cut_responses(pieces: list[str]) -> list[dict[str, Any]]:
    """A Responses stream of ``pieces`` of answer text that the provider cuts short."""
    delta = {"type": "response.output_text.delta", "item_id": "m1", "output_index": 0}
    events: list[dict[str, Any]] = [
        {"type": "response.created", "response": {"id": "r1", "output": []}},
        *({**delta, "content_index": 0, "delta": p, "logprobs": []} for p in pieces),
        {"type": "response.incomplete", "response": {"id": "r1", "output": [],
         "incomplete_details": {"reason": "max_output_tokens"}}},
    ]  # fmt: skip
    for i, event in enumerate(events):
        event["sequence_number"] = i
    return events


@pytest.mark.parametrize(
    ("provider", "objects"),
    [
        ("chat", False),
        ("chat", True),
        ("anthropic", False),
        ("anthropic", True),
        ("responses", False),
    ],
)
@pytest.mark.parametrize("held", [True, False])
def test_a_cut_message_is_truncated_even_when_a_partial_secret_was_masked(
    provider: str, objects: bool, held: bool
) -> None:
    """The provider's cut is the stream's end (``truncated``), and ``collect`` runs no
    side effect, whether or not a redactor held a partial secret there: masking it ends
    the redactor, and that end must not hide the provider's word."""
    from helpers import anthropic_events, chat_stream, dump

    pieces = ["my key is ", SECRET[:20] if held else "gone for good"]
    if provider == "chat":
        chunks: list[Any] = chat_stream([("content", pieces)], finish="length", objects=objects)
    elif provider == "anthropic":
        chunks = anthropic_events([("text", pieces)], stop_reason="max_tokens", objects=objects)
    else:
        chunks = _cut_responses(pieces)
    seen: list[so.StopReason | None] = []
    stream = (so.redact() | so.collect(on_complete=lambda c: seen.append(c.stop_reason)))(chunks)
    out = "".join(dump(chunk) for chunk in stream)
    assert stream.report.stop_reason is so.StopReason.TRUNCATED
    assert seen == [so.StopReason.TRUNCATED]
    assert "sk-proj" not in out
    assert "my key is" in out
