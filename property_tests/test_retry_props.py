"""Properties of so.retry under random faults: no duplicated text, side effects once iff success.

Each scenario scripts every attempt of every factory (primary and fallbacks):
its chunks (text unique to that attempt) and, on a random subset of attempts, a
fault at a random chunk. A small reference model says what must happen; the
fake model's call records say what did.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncGenerator, Callable, Generator
from dataclasses import dataclass, field
from typing import Any, Literal

from hypothesis import given
from hypothesis import strategies as st

import streamops as so
from streamops.testing import FakeReply, FakeStreamingModel, FakeUpstreamError, Fault, run

NO_WAIT = so.Backoff(initial=0.0, jitter=0.0)
Mode = Literal["before_first_chunk", "buffered"]


@dataclass
class Handles:
    """Upstreams that stay open until closed (like an SDK stream object).

    A bare generator that raises is finished at once, so it would hide a
    missing ``close()``; these record the ``close()``/``aclose()`` calls, and
    whether every earlier upstream was closed when a new one was made.
    """

    closed: list[bool] = field(default_factory=list)
    opened_while_open: int = 0

    def _new(self) -> int:
        self.opened_while_open += not all(self.closed)
        self.closed.append(False)
        return len(self.closed) - 1

    def sync(self, make: Callable[[], Generator[str, None, None]]) -> Callable[[], SyncHandle]:
        return lambda: SyncHandle(self, self._new(), make)

    def async_(self, make: Callable[[], AsyncGenerator[str, None]]) -> Callable[[], AsyncHandle]:
        return lambda: AsyncHandle(self, self._new(), make)


class SyncHandle:
    def __init__(
        self, handles: Handles, n: int, make: Callable[[], Generator[str, None, None]]
    ) -> None:
        self.handles, self.n, self.gen = handles, n, make()

    def __iter__(self) -> SyncHandle:
        return self

    def __next__(self) -> str:
        return next(self.gen)

    def close(self) -> None:
        self.gen.close()
        self.handles.closed[self.n] = True


class AsyncHandle:
    def __init__(
        self, handles: Handles, n: int, make: Callable[[], AsyncGenerator[str, None]]
    ) -> None:
        self.handles, self.n, self.gen = handles, n, make()

    def __aiter__(self) -> AsyncHandle:
        return self

    async def __anext__(self) -> str:
        return await anext(self.gen)

    async def aclose(self) -> None:
        await self.gen.aclose()
        self.handles.closed[self.n] = True


@dataclass
class Scenario:
    attempts: int
    mode: Mode
    # scripts[f][a] = (chunks, fail_at or None) for attempt a of factory f
    scripts: list[list[tuple[list[str], int | None]]]
    take: int | None  # the consumer stops after this many chunks (None: reads all)

    def models(self, delay: float = 0.0) -> list[FakeStreamingModel]:
        return [
            FakeStreamingModel(
                [
                    FakeReply(
                        chunks=chunks,
                        faults=[] if fail is None else [Fault.raise_at(fail)],
                    )
                    for chunks, fail in replies
                ],
                cycle=False,
                delay=delay,
            )
            for replies in self.scripts
        ]

    def expected(self) -> tuple[str, list[str], int]:
        """Return (outcome, the chunks the consumer gets, how many attempts run)."""
        made = 0
        for replies in self.scripts:
            for chunks, fail in replies:
                made += 1
                if fail is None:
                    return "success", chunks, made
                if self.mode == "before_first_chunk" and fail > 0:
                    # After text was released a retryable failure is always an
                    # interruption, whether or not attempts were left.
                    return "interrupted", chunks[:fail], made
        return "failed", [], made


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    attempts = draw(st.integers(1, 3))
    factories = draw(st.integers(1, 3))
    scripts = []
    for f in range(factories):
        replies = []
        for a in range(attempts):
            n = draw(st.integers(0, 4))
            chunks = [f"<{f}.{a}.{i}>" for i in range(n)]
            replies.append((chunks, draw(st.none() | st.integers(0, n))))
        scripts.append(replies)
    modes: list[Mode] = ["before_first_chunk", "buffered"]
    mode = draw(st.sampled_from(modes))
    take = draw(st.none() | st.integers(0, 5))
    return Scenario(attempts, mode, scripts, take)


def check(
    sc: Scenario,
    models: list[FakeStreamingModel],
    got: list[str],
    error: BaseException | None,
    side_effects: list[str],
    handles: Handles,
) -> None:
    outcome, chunks, made = sc.expected()
    calls = [call for model in models for call in model.calls]
    full_texts = ["".join(chunks) for replies in sc.scripts for chunks, _ in replies]
    received = "".join(got)
    read_all = sc.take is None or sc.take > len(chunks)

    # Never duplicated: what arrived is a prefix of one attempt's text (texts are unique).
    if received:
        assert sum(text.startswith(received) for text in full_texts) == 1
    assert got == (chunks if read_all else chunks[: sc.take])
    # Attempts never exceed the limit, and no attempt starts after the outcome.
    assert len(calls) <= sc.attempts * len(sc.scripts)
    assert len(calls) <= made
    if read_all:
        assert len(calls) == made
    # Every attempt's upstream was closed, each before the next was made (also
    # the one retry() made eagerly, when the consumer closes before pulling).
    assert all(call.finalized or not call.started for call in calls)
    assert all(handles.closed)
    assert handles.opened_while_open == 0
    # Side effects exactly once iff the stream succeeded and was read to the end.
    if outcome == "success" and read_all:
        assert error is None
        assert side_effects == ["".join(chunks)]
    else:
        assert side_effects == []
    if read_all and outcome == "interrupted":
        assert isinstance(error, so.StreamInterruptedError)
        assert error.released == "".join(chunks)
        assert isinstance(error.__cause__, FakeUpstreamError)
    elif read_all and outcome == "failed":
        assert isinstance(error, FakeUpstreamError)


@given(scenarios())
def test_sync_retry_never_duplicates_and_side_effects_once(sc: Scenario) -> None:
    models = sc.models()
    handles = Handles()
    side_effects: list[str] = []
    s = so.retry(
        handles.sync(models[0].stream),
        attempts=sc.attempts,
        mode=sc.mode,
        fallbacks=[handles.sync(m.stream) for m in models[1:]],
        backoff=NO_WAIT,
        on_success=lambda text, report: side_effects.append(text),
    )
    got: list[str] = []
    error: BaseException | None = None
    with s:
        try:
            got.extend(s if sc.take is None else itertools.islice(s, sc.take))
        except (so.StreamInterruptedError, FakeUpstreamError) as exc:
            error = exc
    check(sc, models, got, error, side_effects, handles)


@given(scenarios(), st.floats(0.0, 5.0))
def test_async_retry_never_duplicates_and_side_effects_once(sc: Scenario, delay: float) -> None:
    models = sc.models(delay)  # chunks arrive over virtual time
    handles = Handles()
    side_effects: list[str] = []

    async def notify(text: str, report: so.StreamReport) -> None:
        side_effects.append(text)

    async def main() -> tuple[list[str], BaseException | None]:
        s = so.retry(
            handles.async_(models[0].astream),
            attempts=sc.attempts,
            mode=sc.mode,
            fallbacks=[handles.async_(m.astream) for m in models[1:]],
            backoff=so.Backoff(seed=0),
            on_success=notify,
        )
        got: list[str] = []
        try:
            async with s:
                while sc.take is None or len(got) < sc.take:  # never pull past take
                    try:
                        got.append(await anext(s))
                    except StopAsyncIteration:
                        break
        except (so.StreamInterruptedError, FakeUpstreamError) as exc:
            return got, exc
        return got, None

    got, error = run(main())
    check(sc, models, got, error, side_effects, handles)


# --------------------------------------------------------------------------
# provider chunks: framing before the first text, stop buttons, sync and async
# --------------------------------------------------------------------------

Format = Literal["text", "openai", "openai-dict", "anthropic", "anthropic-dict"]
End = Literal["natural", "fail", "stop"]


@dataclass
class Attempt:
    texts: list[str]  # "" pieces become text-free chunks (after the provider's framing)
    end: End
    at: int  # fail: text index of the fault; stop: upstream item before which it is pressed


@dataclass
class ProviderScenario:
    fmt: Format
    attempts: int
    scripts: list[list[Attempt]]  # scripts[f][a]
    take: int | None
    is_async: bool

    def expected(self) -> tuple[str, str, int]:
        """Return (outcome, the text the consumer gets when it reads all, attempts made)."""
        made = 0
        for replies in self.scripts:
            for att in replies:
                made += 1
                if att.end == "fail":
                    released = "".join(att.texts[: att.at])
                    if released:
                        return "interrupted", released, made
                    continue  # nothing released: retried (framing included)
                if att.end == "stop" and att.at < self.items(att):
                    return "ended", "", made
                return "success", "", made
        return "failed", "", made

    def items(self, att: Attempt) -> int:
        """How many items the attempt's upstream yields when nothing stops it."""
        model = FakeStreamingModel([FakeReply(chunks=att.texts)], format=self.fmt)
        return len(list(model.stream()))

    def attempt(self, made: int) -> Attempt:
        """The script of attempt number ``made`` (1-based, across factories)."""
        return [att for replies in self.scripts for att in replies][made - 1]


@st.composite
def provider_scenarios(draw: st.DrawFn) -> ProviderScenario:
    formats: list[Format] = ["text", "openai", "openai-dict", "anthropic", "anthropic-dict"]
    fmt = draw(st.sampled_from(formats))
    attempts = draw(st.integers(1, 3))
    scripts = []
    for f in range(draw(st.integers(1, 2))):
        replies = []
        for a in range(attempts):
            n = draw(st.integers(0, 4))
            texts = [draw(st.sampled_from(["", f"<{f}.{a}.{i}>"])) for i in range(n)]
            ends: list[End] = ["natural", "fail", "stop"]
            end = draw(st.sampled_from(ends))
            at = draw(st.integers(0, n if end == "fail" else n + 3))
            replies.append(Attempt(texts, end, at))
        scripts.append(replies)
    take = draw(st.none() | st.integers(0, 8))
    return ProviderScenario(fmt, attempts, scripts, take, draw(st.booleans()))


def _text_of(chunks: list[object]) -> str:
    from streamops._core._stages import _find_lens

    out = []
    lens = None
    for chunk in chunks:
        if isinstance(chunk, str):
            out.append(chunk)
            continue
        lens = lens or _find_lens(chunk)
        assert lens is not None
        out.append(lens.unwrap(chunk))
    return "".join(out)


def _framing(chunk: object) -> bool:
    """An OpenAI role chunk or an Anthropic message_start: must reach the consumer once."""
    if isinstance(chunk, str):
        return False
    data: Any = chunk if isinstance(chunk, dict) else chunk.model_dump()  # type: ignore[attr-defined]
    if data.get("type") == "message_start":
        return True
    return any((c.get("delta") or {}).get("role") for c in data.get("choices") or [])


@given(provider_scenarios(), st.floats(0.0, 3.0))
def test_provider_streams_commit_at_the_first_text(sc: ProviderScenario, delay: float) -> None:
    models: list[FakeStreamingModel] = []
    pressed: list[bool] = []
    handles = Handles()

    def factory(f: int) -> Callable[[], Any]:
        model = FakeStreamingModel(
            [
                FakeReply(
                    chunks=att.texts,
                    faults=[Fault.raise_at(att.at)] if att.end == "fail" else [],
                )
                for att in sc.scripts[f]
            ],
            cycle=False,
            format=sc.fmt,
            delay=delay,
        )
        models.append(model)

        def pipeline(source: Any, att: Attempt) -> object:
            # A stop button pressed before upstream item ``att.at`` (never, if it has fewer).
            token = so.CancelToken()
            pressed.append(False)
            n = len(pressed) - 1

            def press(i: int) -> None:
                if att.end == "stop" and i == att.at:
                    token.cancel()
                    pressed[n] = True

            if sc.is_async:

                async def agen() -> AsyncGenerator[Any, None]:
                    i = 0
                    async for item in source:
                        press(i)
                        i += 1
                        yield item

                return so.cancellable(token)(handles.async_(agen)())

            def gen() -> Generator[Any, None, None]:
                for i, item in enumerate(source):
                    press(i)
                    yield item

            return so.cancellable(token)(handles.sync(gen)())

        def make() -> object:
            att = sc.scripts[f][len(model.calls)]
            return pipeline(model.astream() if sc.is_async else model.stream(), att)

        return make

    side_effects: list[str] = []
    factories = [factory(f) for f in range(len(sc.scripts))]
    s: Any = so.retry(
        factories[0],
        fallbacks=factories[1:],
        attempts=sc.attempts,
        backoff=NO_WAIT,
        kind="async" if sc.is_async else "sync",
        on_success=lambda text, report: side_effects.append(text),
    )
    got: list[object] = []
    error: BaseException | None = None

    async def aconsume() -> None:
        async with s:
            while sc.take is None or len(got) < sc.take:
                try:
                    got.append(await anext(s))
                except StopAsyncIteration:
                    break

    try:
        if sc.is_async:
            run(aconsume())
        else:
            with s:
                got.extend(s if sc.take is None else itertools.islice(s, sc.take))
    except (so.StreamInterruptedError, FakeUpstreamError) as exc:
        error = exc

    outcome, released, made = sc.expected()
    calls = [call for model in models for call in model.calls]
    received = _text_of(got)
    read_all = error is not None or (sc.take is None or len(got) < sc.take)
    # Never duplicated: the consumer's chunks are a prefix of one attempt's chunks,
    # so its text comes from one attempt and framing arrives at most once.
    assert any(got == call.chunks[: len(got)] for call in calls) or not got
    assert sum(_framing(c) for c in got) <= 1
    # Every upstream closed, each before the next was made.
    assert all(call.finalized or not call.started for call in calls)
    assert all(handles.closed)
    assert handles.opened_while_open == 0
    assert len(calls) <= made
    if read_all:
        assert len(calls) == made
        if outcome == "interrupted":
            assert isinstance(error, so.StreamInterruptedError)
            assert error.released == received == released
            assert isinstance(error.__cause__, FakeUpstreamError)
        elif outcome == "failed":
            assert isinstance(error, FakeUpstreamError)
            assert received == ""
        else:
            assert error is None
    # Side effects exactly once iff the last attempt ended naturally and was read to the end.
    if outcome == "success" and read_all:
        assert side_effects == [received]
        assert received == "".join(sc.attempt(made).texts)
    else:
        assert side_effects == []
