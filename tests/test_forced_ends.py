"""A forced end is never taken for a natural one (adversarial review C, findings 1-4).

Two ways a stream can end by force without the operator seeing the cause itself:

- **The upstream is a streamops stream that was stopped** (a budget cut, a block,
  a quiet timeout, a stop button): ``op2(op1(source))`` must end like
  ``(op1 | op2)(source)``, with the same text and stop reason. DESIGN.md: "A
  truncated secret is a secret ... Composition order never leaks" and "Side
  effects run only after a natural, complete end".
- **The provider cut the message** (a ``length`` finish, Anthropic's
  ``max_tokens``, no end event at all): noticed by every pipeline, also one
  without a text stage (``collect()``, ``identity() | timeout()``), and by
  :func:`so.retry` over a raw SDK stream. An attempt that ended without its end
  event before any text is a failure, and retried.

The provider tests use the stock ``openai`` and ``anthropic`` clients against
:class:`streamops.testing.FakeOpenAIServer`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import anthropic
import openai
import pytest

import streamops as so
from streamops.testing import FakeOpenAIServer, FakeReply, Fault

SECRET = "sk-proj-" + "Ab12Cd34Ef56Gh78Ij90Kl12Mn34Op56Qr78St90Uv12Wx34"
TEXT = "my key is " + SECRET + " ok"
WORDS = "one two three four five six seven eight nine ten"
MESSAGES: Any = [{"role": "user", "content": "hi"}]
NO_WAIT = so.Backoff(initial=0, jitter=0)


# --------------------------------------------------------------------------
# A: an operator called on a streamops stream that was stopped
# --------------------------------------------------------------------------


@pytest.mark.parametrize("n", range(1, 25))
def test_nested_redact_masks_a_secret_a_budget_cut(n: int) -> None:
    composed = (so.budget(max_tokens=n) | so.redact())([TEXT])
    nested = so.redact()(so.budget(max_tokens=n)([TEXT]))
    assert nested.text() == composed.text()
    assert "sk-pro" not in nested.report.released_text
    assert nested.report.stop_reason == composed.report.stop_reason == "budget"


async def test_nested_redact_masks_a_secret_a_quiet_timeout_cut() -> None:
    model = so.FakeStreamingModel(TEXT, chunking=6, faults=[Fault.stall_at(5, 3600.0)])
    inner = so.timeout(idle=0.05, on_timeout="end")(model.astream("x"))
    outer = so.redact()(inner)
    async with outer:
        text = "".join([piece async for piece in outer])
    assert "sk-pro" not in text
    assert text.endswith("[OPENAI_KEY]")
    assert inner.report.stop_reason == outer.report.stop_reason == "timeout"
    assert outer.report.stop_detail == inner.report.stop_detail


def test_nested_stop_reason_and_detail_reach_the_outer_report() -> None:
    inner = so.budget(max_tokens=3)([WORDS])
    outer = so.identity()(inner)
    assert outer.text() == "one two three"
    assert outer.report.stop_reason == inner.report.stop_reason == "budget"
    assert outer.report.stop_detail == inner.report.stop_detail


def test_nested_block_and_cancel_reach_the_outer_report() -> None:
    blocked = so.identity()(so.redact(["two"], action="block")([WORDS]))
    assert blocked.text() == "one "
    assert blocked.report.stop_reason == "blocked"
    token = so.CancelToken()
    inner = so.cancellable(token)(iter(["my key is ", SECRET[:12], SECRET[12:]]))
    outer = so.redact()(inner)
    first = next(outer)
    token.cancel("stop")
    rest = list(outer)
    assert "sk-pro" not in first + "".join(rest)
    assert outer.report.stop_reason == "cancelled"
    assert outer.report.stop_detail == "stop"


def test_a_natural_end_of_a_nested_stream_stays_complete() -> None:
    outer = so.redact()(so.identity()([TEXT]))
    assert outer.text() == "my key is [OPENAI_KEY] ok"
    assert outer.report.stop_reason == "complete"


def _attempt(factory: Callable[[], Any]) -> tuple[str, list[str], Any]:
    saved: list[str] = []

    async def run() -> tuple[str, Any]:
        stream = so.retry(factory, attempts=2, on_success=lambda text, r: saved.append(text))
        async with stream:
            text = "".join([piece async for piece in stream])
        return text, stream.report

    text, report = asyncio.run(run())
    return text, saved, report


def _model() -> so.FakeStreamingModel:
    return so.FakeStreamingModel(WORDS, chunking=4)


@pytest.mark.parametrize(
    ("shape", "reason"),
    [
        ("redact()(budget()(src))", "budget"),
        ("identity()(redact(block)(src))", "blocked"),
    ],
)
def test_retry_skips_side_effects_after_a_nested_forced_end(shape: str, reason: str) -> None:
    factories: dict[str, Callable[[], Any]] = {
        "redact()(budget()(src))": lambda: so.redact()(
            so.budget(max_tokens=3)(_model().astream("x"))
        ),
        "identity()(redact(block)(src))": lambda: so.identity()(
            so.redact(["two"], action="block")(_model().astream("x"))
        ),
    }
    _, saved, report = _attempt(factories[shape])
    assert saved == []
    assert report.stop_reason == reason
    assert report["retry"].side_effects_skipped == reason
    assert [a.outcome for a in report["retry"].attempts] == ["ended"]


# --------------------------------------------------------------------------
# B: the provider cut the message, and no text stage runs
# --------------------------------------------------------------------------


def _chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {
        "id": "c1",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": "m",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


SCRIPTS = {
    "length": [
        _chunk({"role": "assistant", "content": ""}),
        _chunk({"content": "The refund is appro"}),
        _chunk({}, "length"),
    ],
    "no end event": [
        _chunk({"role": "assistant", "content": ""}),
        _chunk({"content": "The refund is appro"}),
    ],
    "stop": [
        _chunk({"role": "assistant", "content": ""}),
        _chunk({"content": "The refund is approved."}),
        _chunk({}, "stop"),
    ],
}

SHAPES: dict[str, Callable[[], so.Operator[Any, Any]]] = {
    "collect()": so.collect,
    "identity() | timeout(idle=10)": lambda: so.identity() | so.timeout(idle=10.0),
    "timeout(idle=10)": lambda: so.timeout(idle=10.0),
    "identity()": so.identity,
    "redact() | collect()": lambda: so.redact() | so.collect(),
}


@pytest.fixture(params=list(SCRIPTS))
def scripted(request: pytest.FixtureRequest) -> Iterator[tuple[str, FakeOpenAIServer]]:
    with FakeOpenAIServer("unused", events={"chat.completions": SCRIPTS[request.param]}) as fake:
        yield request.param, fake


@pytest.mark.parametrize("shape", list(SHAPES))
async def test_a_provider_cut_is_seen_without_a_text_stage(
    scripted: tuple[str, FakeOpenAIServer], shape: str
) -> None:
    script, server = scripted
    async with openai.AsyncOpenAI(base_url=server.base_url, api_key="x", max_retries=0) as client:
        source = await client.chat.completions.create(model="m", messages=MESSAGES, stream=True)
        stream = SHAPES[shape]()(source)
        async with stream:
            chunks = [chunk async for chunk in stream]
    if "redact" not in shape:  # every chunk passes, unchanged in number
        assert len(chunks) == len(SCRIPTS[script])
    expected = "complete" if script == "stop" else "truncated"
    assert stream.report.stop_reason == expected
    if "collect" in shape:
        assert so.Collected.of(stream).stop_reason == expected


@pytest.mark.parametrize("shape", ["collect()", "identity()"])
def test_a_provider_cut_is_seen_without_a_text_stage_sync(
    scripted: tuple[str, FakeOpenAIServer], shape: str
) -> None:
    script, server = scripted
    with openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0) as client:
        source = client.chat.completions.create(model="m", messages=MESSAGES, stream=True)
        stream = SHAPES[shape]()(source)
        with stream:
            assert len(list(stream)) == len(SCRIPTS[script])
    assert stream.report.stop_reason == ("complete" if script == "stop" else "truncated")


def test_on_complete_is_told_the_answer_was_cut() -> None:
    seen: list[Any] = []
    with (
        FakeOpenAIServer("unused", events={"chat.completions": SCRIPTS["length"]}) as server,
        openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0) as client,
    ):
        source = client.chat.completions.create(model="m", messages=MESSAGES, stream=True)
        list(so.collect(on_complete=lambda c: seen.append(c.stop_reason))(source))
    assert seen == ["truncated"]


async def _retried(make: Callable[[], Any], wrap: so.Operator[Any, Any] | None = None) -> Any:
    saved: list[str] = []
    factory = make if wrap is None else (lambda: wrap(make()))
    stream = so.retry(
        factory, attempts=3, backoff=NO_WAIT, on_success=lambda text, r: saved.append(text)
    )
    async with stream:
        text = "".join([so.OpenAIChatLens().unwrap(c) async for c in stream])
    return text, saved, stream.report


@pytest.mark.parametrize("wrap", [None, "identity() | timeout(idle=10)", "collect()"])
async def test_retry_skips_side_effects_on_a_length_finish(wrap: str | None) -> None:
    with FakeOpenAIServer("unused", events={"chat.completions": SCRIPTS["length"]}) as server:
        async with openai.AsyncOpenAI(
            base_url=server.base_url, api_key="x", max_retries=0
        ) as client:

            def make() -> Any:
                return client.chat.completions.create(model="m", messages=MESSAGES, stream=True)

            op = None if wrap is None else SHAPES[wrap]()
            text, saved, report = await _retried(make, op)
    assert text == "The refund is appro"
    assert saved == []
    assert report.stop_reason == "truncated"
    assert [a.outcome for a in report["retry"].attempts] == ["ended"]  # not retried
    assert report["retry"].side_effects_skipped == "truncated"


async def test_retry_side_effects_run_after_a_stop_finish() -> None:
    with FakeOpenAIServer("unused", events={"chat.completions": SCRIPTS["stop"]}) as server:
        async with openai.AsyncOpenAI(
            base_url=server.base_url, api_key="x", max_retries=0
        ) as client:
            text, saved, report = await _retried(
                lambda: client.chat.completions.create(model="m", messages=MESSAGES, stream=True)
            )
    assert saved == [text] == ["The refund is approved."]
    assert report.stop_reason == "complete"


@pytest.mark.parametrize("wire", ["openai", "anthropic"])
@pytest.mark.parametrize("wrapped", [False, True])
async def test_retry_retries_an_attempt_that_dropped_before_any_text(
    wire: str, wrapped: bool
) -> None:
    replies: list[str | FakeReply] = [
        FakeReply("alpha beta", faults=[Fault.disconnect_at(0)]),
        "full answer",
    ]
    model = so.FakeStreamingModel(replies, format="openai-dict", cycle=False)
    saved: list[str] = []
    with FakeOpenAIServer(model) as server:
        make: Callable[[], Any]
        closer: Any
        if wire == "openai":
            oa = openai.AsyncOpenAI(base_url=server.base_url, api_key="x", max_retries=0)
            closer = oa

            def make() -> Any:
                return oa.chat.completions.create(model="m", messages=MESSAGES, stream=True)
        else:
            an = anthropic.AsyncAnthropic(
                base_url=server.base_url.removesuffix("/v1"), api_key="x", max_retries=0
            )
            closer = an

            def make() -> Any:
                return an.messages.create(model="m", max_tokens=50, messages=MESSAGES, stream=True)

        factory = (lambda: so.identity()(make())) if wrapped else make
        stream = so.retry(
            factory, attempts=3, backoff=NO_WAIT, on_success=lambda t, r: saved.append(t)
        )
        try:
            async with stream:
                chunks = [chunk async for chunk in stream]
        finally:
            await closer.close()
    attempts = stream.report["retry"].attempts
    assert [a.outcome for a in attempts] == ["failed", "success"]
    assert attempts[0].error_type is not None
    assert saved == ["full answer"]
    assert stream.report.stop_reason == "complete"
    assert chunks  # the second attempt's, framing once


def test_retry_gives_up_on_attempts_that_all_dropped_before_any_text() -> None:
    model = so.FakeStreamingModel(
        FakeReply("alpha", faults=[Fault.disconnect_at(0)]), format="openai-dict"
    )
    saved: list[str] = []
    with (
        FakeOpenAIServer(model) as server,
        openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0) as client,
    ):
        stream = so.retry(
            lambda: client.chat.completions.create(model="m", messages=MESSAGES, stream=True),
            attempts=2,
            backoff=NO_WAIT,
            on_success=lambda t, r: saved.append(t),
        )
        with pytest.raises(ConnectionError, match="without its end event") as info:
            list(stream)
    assert isinstance(info.value, so.StreamOpsError)
    assert saved == []
    section = stream.report["retry"]
    assert isinstance(section, so.RetryReport)
    assert [a.outcome for a in section.attempts] == ["failed", "failed"]
