"""A deterministic fake streaming model: scripted replies, chunking, timing and faults.

:class:`FakeStreamingModel` stands in for an LLM client in tests. Every call
picks its reply from a script, splits it with a seeded chunking strategy,
schedules it with a seeded timing (all delays are ``asyncio.sleep`` on the
running loop, so virtual time from :mod:`streamops.testing` makes them
instant), injects the faults asked for, and records what the consumer did
(how many chunks it pulled, whether it closed the stream early, whether the
stream's ``finally`` ran) in :attr:`FakeStreamingModel.calls`.

Everything about one call is computed up front (the *plan*: a list of steps
"sleep this long, then yield this or raise that"); the sync and the async
generators only walk the plan, so ``.stream`` and ``.astream`` yield the same
chunks at the same (virtual) times by construction.

Provider SDKs (``openai``, ``anthropic``, ``langchain-core``) are optional: they
are imported only when a provider-shaped ``format`` asks for their objects.
"""

from __future__ import annotations

import asyncio
import copy
import functools
import itertools
import math
import random
import re
import time
from collections.abc import AsyncGenerator, Callable, Generator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from .._budget._tokens import get_encoding
from .._core._errors import FakeModelExhaustedError, FakeUpstreamError
from .._core._extras import require

__all__ = (
    "Chunking",
    "FakeCall",
    "FakeModelExhaustedError",
    "FakeReply",
    "FakeStreamingModel",
    "FakeUpstreamError",
    "Fault",
)

ChunkFormat = Literal[
    "text",
    "openai",
    "openai-dict",
    "anthropic",
    "anthropic-dict",
    "langchain",
    "gemini",
    "gemini-dict",
]
_FORMATS: tuple[str, ...] = (
    "text",
    "openai",
    "openai-dict",
    "anthropic",
    "anthropic-dict",
    "langchain",
    "gemini",
    "gemini-dict",
)
# Which optional SDK each object format needs, and the extra that installs it.
_SDKS = {
    "openai": ("openai", "openai"),
    "anthropic": ("anthropic", "anthropic"),
    "langchain": ("langchain_core", "langchain"),
    "gemini": ("google.genai", "gemini"),
}
# Gemini's finish reasons for ours.
_GEMINI_FINISH = {"stop": "STOP", "length": "MAX_TOKENS", "content_filter": "SAFETY"}
_ANTHROPIC_STOP = {"stop": "end_turn", "length": "max_tokens"}
# A fixed creation time keeps provider-shaped chunks identical across runs.
_CREATED = 1_700_000_000


# --------------------------------------------------------------------------
# chunking
# --------------------------------------------------------------------------

_WORD = re.compile(r"\s*\S+|\s+")


def _count_tokens(text: str) -> int:
    return len(get_encoding("cl100k_base").encode(text, disallowed_special=()))


def _token_pieces(text: str) -> list[str]:
    """Split ``text`` at cl100k token boundaries, never inside a UTF-8 character."""
    enc = get_encoding("cl100k_base")
    pieces: list[str] = []
    pending = b""
    for token in enc.encode(text, disallowed_special=()):
        pending += enc.decode_single_token_bytes(token)
        try:
            piece = pending.decode("utf-8")
        except UnicodeDecodeError:
            continue  # a multi-byte character spans tokens: join them
        pieces.append(piece)
        pending = b""
    if pending:  # pragma: no cover - tiktoken round-trips valid UTF-8
        pieces.append(pending.decode("utf-8", "replace"))
    return pieces


@dataclass(frozen=True)
class Chunking:
    """How a reply's text is cut into chunks; the cuts never lose or add text.

    Use the constructors: :meth:`chars`, :meth:`words` (each word with the
    whitespace before it, like LLM tokens), :meth:`tokens` (cl100k tokens via
    tiktoken, merged so no chunk splits a character), :meth:`fixed` and
    :meth:`random` (sizes drawn from the model's seed). ``FakeStreamingModel``
    also accepts the shorthands ``"char"``, ``"word"``, ``"token"``,
    ``"random"`` and an ``int`` (fixed size).

    >>> Chunking.words().split("Hello big world")
    ['Hello', ' big', ' world']
    >>> Chunking.fixed(4).split("Hello world")
    ['Hell', 'o wo', 'rld']
    >>> Chunking.random(1, 3).split("Hello", seed=7) == Chunking.random(1, 3).split("Hello", seed=7)
    True
    """

    kind: Literal["char", "word", "token", "fixed", "random"]
    size: int = 1
    max_size: int = 1

    def __post_init__(self) -> None:
        if self.kind not in ("char", "word", "token", "fixed", "random"):
            raise ValueError(f"unknown chunking kind {self.kind!r}")
        if self.size < 1:
            raise ValueError(f"chunk size must be at least 1, got {self.size}")
        if self.kind == "random" and self.max_size < self.size:
            raise ValueError(f"max_size ({self.max_size}) must be at least min_size ({self.size})")

    @classmethod
    def chars(cls) -> Chunking:
        """One chunk per character (code point)."""
        return cls("char")

    @classmethod
    def words(cls) -> Chunking:
        """One chunk per word, carrying the whitespace before it."""
        return cls("word")

    @classmethod
    def tokens(cls) -> Chunking:
        """One chunk per cl100k token (tokens that split a character are merged)."""
        return cls("token")

    @classmethod
    def fixed(cls, size: int) -> Chunking:
        """Chunks of ``size`` characters (the last one may be shorter)."""
        return cls("fixed", size)

    @classmethod
    def random(cls, min_size: int = 1, max_size: int = 8) -> Chunking:
        """Chunks of a seeded random size between ``min_size`` and ``max_size``."""
        return cls("random", min_size, max_size)

    def split(self, text: str, *, seed: int = 0) -> list[str]:
        """Cut ``text`` into chunks; ``seed`` drives :meth:`random` only."""
        if self.kind == "char":
            return list(text)
        if self.kind == "word":
            return _WORD.findall(text)
        if self.kind == "token":
            return _token_pieces(text)
        if self.kind == "fixed":
            return [text[i : i + self.size] for i in range(0, len(text), self.size)]
        rng = random.Random(f"{seed}:chunks")
        pieces: list[str] = []
        pos = 0
        while pos < len(text):
            step = rng.randint(self.size, self.max_size)
            pieces.append(text[pos : pos + step])
            pos += step
        return pieces


def _chunking(spec: str | int | Chunking) -> Chunking:
    if isinstance(spec, Chunking):
        return spec
    if isinstance(spec, bool):
        raise TypeError("chunking must be a Chunking, a name or an int, not a bool")
    if isinstance(spec, int):
        return Chunking.fixed(spec)
    shorthands = {
        "char": Chunking.chars,
        "word": Chunking.words,
        "token": Chunking.tokens,
        "random": Chunking.random,
    }
    if spec not in shorthands:
        raise ValueError(
            f"unknown chunking {spec!r}; use one of {sorted(shorthands)}, an int or a Chunking"
        )
    return shorthands[spec]()


# --------------------------------------------------------------------------
# faults and replies
# --------------------------------------------------------------------------

# What a raising fault raises: an exception, its class, or a function making one.
ErrorSpec = BaseException | type[BaseException] | Callable[[], BaseException]


def _check_delay(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds, got {type(value).__name__}")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number of seconds >= 0, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class Fault:
    """Something that goes wrong at text chunk ``index`` (zero-based) of a reply.

    - :meth:`raise_at`: chunks ``0..index-1`` arrive, then the stream raises.
    - :meth:`stall_at`: chunk ``index`` arrives ``seconds`` later than planned.
    - :meth:`disconnect_at`: chunks ``0..index-1`` arrive, then the stream ends
      quietly, with no finish reason and no usage chunk.

    ``index`` may equal the number of text chunks: the fault then hits after
    the last text chunk, before the provider's final chunk. Framing chunks
    (OpenAI's role chunk, Anthropic's start/stop events) are not counted.
    When several faults end the stream, the one with the lowest index wins.

    >>> model = FakeStreamingModel("a b c", faults=[Fault.disconnect_at(2)])
    >>> list(model.stream()), model.calls[0].disconnected
    (['a', ' b'], True)
    """

    kind: Literal["raise", "stall", "disconnect"]
    index: int
    seconds: float = 0.0
    error: ErrorSpec | None = None

    def __post_init__(self) -> None:
        if isinstance(self.index, bool) or not isinstance(self.index, int):
            raise TypeError(f"fault index must be an int, got {type(self.index).__name__}")
        if self.index < 0:
            raise ValueError(f"fault index must be >= 0, got {self.index}")
        _check_delay("stall seconds", self.seconds)
        err: object = self.error  # checked at run time: callers may not type-check
        if isinstance(err, type) and not issubclass(err, BaseException):
            raise TypeError(f"error must be an exception class, got {err!r}")
        if not (err is None or isinstance(err, BaseException) or callable(err)):
            raise TypeError(
                f"error must be an exception, an exception class or a function"
                f" returning an exception, got {err!r}"
            )

    @classmethod
    def raise_at(cls, index: int, error: ErrorSpec | None = None) -> Fault:
        """Raise ``error`` instead of chunk ``index`` (default :class:`FakeUpstreamError`).

        ``error`` is an exception class (called with a message), a function of
        no arguments returning the exception (called on every call: a fresh
        error each time), or an exception instance. An instance is copied on
        every call where it can be; errors whose constructor takes
        keyword-only arguments (``openai.RateLimitError``,
        ``httpx.HTTPStatusError``) cannot be copied, so that same object is
        raised again, with its traceback reset: pass a function to get a
        fresh one per call.

        >>> import httpx
        >>> def rate_limited() -> httpx.HTTPStatusError:
        ...     request = httpx.Request("POST", "https://api.invalid/v1/chat")
        ...     response = httpx.Response(429, request=request)
        ...     return httpx.HTTPStatusError("429", request=request, response=response)
        >>> model = FakeStreamingModel("a b", faults=[Fault.raise_at(1, rate_limited)])
        >>> list(model.stream())
        Traceback (most recent call last):
        ...
        httpx.HTTPStatusError: 429
        """
        return cls("raise", index, error=error)

    @classmethod
    def stall_at(cls, index: int, seconds: float) -> Fault:
        """Delay chunk ``index`` by ``seconds`` more than planned."""
        return cls("stall", index, seconds=seconds)

    @classmethod
    def disconnect_at(cls, index: int) -> Fault:
        """End the stream quietly instead of chunk ``index``."""
        return cls("disconnect", index)

    @property
    def ends_stream(self) -> bool:
        """True for faults that stop the stream (raise, disconnect)."""
        return self.kind != "stall"

    def make_error(self) -> BaseException:
        """Return the exception to raise for this fault (a fresh one where possible)."""
        err = self.error
        if err is None:
            return FakeUpstreamError(f"fake upstream error at chunk {self.index}")
        if isinstance(err, type):
            made_by_class: BaseException = err(f"fake upstream error at chunk {self.index}")
            return made_by_class
        if isinstance(err, BaseException):
            try:
                return copy.copy(err)
            except Exception:
                # Copying re-calls the constructor with ``args`` only, which
                # fails for keyword-only arguments: raise the same object.
                return err
        made: object = err()
        if not isinstance(made, BaseException):
            raise TypeError(
                f"the error function of the fault at chunk {self.index} returned"
                f" {type(made).__name__}, not an exception"
            )
        return made


@dataclass(frozen=True)
class FakeReply:
    """One scripted reply: its text (or explicit chunks), faults and finish reason.

    Give ``text`` (cut by the model's chunking) or ``chunks`` (used as is),
    not both. ``faults`` apply to this reply only, on top of the model's.

    >>> model = FakeStreamingModel([
    ...     FakeReply("", faults=[Fault.raise_at(0, TimeoutError)]),
    ...     FakeReply(chunks=["Hel", "lo"]),
    ... ])
    >>> model.invoke("try 1")
    Traceback (most recent call last):
    ...
    TimeoutError: fake upstream error at chunk 0
    >>> list(model.stream("try 2"))
    ['Hel', 'lo']
    """

    text: str | None = None
    chunks: Sequence[str] | None = None
    faults: Sequence[Fault] = ()
    finish_reason: str = "stop"

    def __post_init__(self) -> None:
        if (self.text is None) == (self.chunks is None):
            raise ValueError("FakeReply takes either text or chunks, exactly one of them")
        text: object = self.text  # checked at run time: callers may not type-check
        if text is not None and not isinstance(text, str):
            raise TypeError(f"reply text must be a str, got {type(text).__name__}")
        if self.chunks is not None:
            chunks: Sequence[object] = self.chunks
            if isinstance(chunks, str):
                raise TypeError("chunks must be a list of str, not a bare str")
            bad = [c for c in chunks if not isinstance(c, str)]
            if bad:
                raise TypeError(f"every chunk must be a str, got {type(bad[0]).__name__}")
            object.__setattr__(self, "chunks", tuple(self.chunks))
        object.__setattr__(self, "faults", tuple(self.faults))
        for fault in self.faults:
            if not isinstance(fault, Fault):
                raise TypeError(f"faults must be Fault objects, got {type(fault).__name__}")


Response = str | FakeReply | BaseException


def _as_reply(response: object, where: str) -> FakeReply:
    if isinstance(response, FakeReply):
        return response
    if isinstance(response, str):
        return FakeReply(response)
    if isinstance(response, BaseException):
        return FakeReply("", faults=[Fault.raise_at(0, response)])
    raise TypeError(
        f"{where}: a reply must be a str, a FakeReply or an exception,"
        f" got {type(response).__name__}"
    )


# --------------------------------------------------------------------------
# the record of one call
# --------------------------------------------------------------------------


@dataclass
class FakeCall:
    """What happened during one call of a :class:`FakeStreamingModel`.

    ``chunks`` are the objects the consumer received (framing chunks
    included); ``texts`` the text chunks among them, so ``pulled`` counts text
    chunks like fault indexes do. ``finalized`` is true once the stream's
    ``finally`` ran; ``closed_early`` when the consumer stopped it (``break``
    and close, ``aclose()``, cancellation) before its natural end.

    >>> model = FakeStreamingModel("one two three")
    >>> stream = model.stream("hi")
    >>> next(stream)
    'one'
    >>> stream.close()
    >>> call = model.calls[0]
    >>> call.prompt, call.pulled, call.closed_early, call.finalized, call.text
    ('hi', 1, True, True, 'one')
    """

    index: int
    prompt: Any
    method: Literal["stream", "astream", "invoke", "ainvoke"]
    response: str
    planned: list[str]
    delays: list[float]
    chunks: list[Any] = field(default_factory=list, repr=False)
    texts: list[str] = field(default_factory=list)
    started: bool = False
    finalized: bool = False
    completed: bool = False
    closed_early: bool = False
    disconnected: bool = False
    error: BaseException | None = None
    finish_reason: str | None = None

    @property
    def pulled(self) -> int:
        """How many text chunks the consumer received."""
        return len(self.texts)

    @property
    def text(self) -> str:
        """The text the consumer received."""
        return "".join(self.texts)

    @property
    def open(self) -> bool:
        """True while the stream was started and its ``finally`` has not run."""
        return self.started and not self.finalized


# --------------------------------------------------------------------------
# provider shapes
# --------------------------------------------------------------------------


@dataclass
class _Shaper:
    """Builds the chunk objects of one call in the requested format."""

    fmt: str
    call: int
    prompt: Any
    response: str
    model_name: str

    @functools.cached_property
    def _usage(self) -> tuple[int, int]:
        prompt = self.prompt if isinstance(self.prompt, str) else repr(self.prompt)
        return _count_tokens(prompt), _count_tokens(self.response)

    def _openai(self, choices: list[dict[str, Any]], **extra: Any) -> Any:
        data = {
            "id": f"chatcmpl-fake{self.call}",
            "object": "chat.completion.chunk",
            "created": _CREATED,
            "model": self.model_name,
            "choices": choices,
            **extra,
        }
        if self.fmt == "openai":
            from openai.types.chat import ChatCompletionChunk

            return ChatCompletionChunk.model_validate(data)
        return data

    def _anthropic(self, data: dict[str, Any]) -> Any:
        if self.fmt == "anthropic-dict":
            return data
        from anthropic import types as at

        classes: dict[str, Any] = {
            "message_start": at.RawMessageStartEvent,
            "content_block_start": at.RawContentBlockStartEvent,
            "content_block_delta": at.RawContentBlockDeltaEvent,
            "content_block_stop": at.RawContentBlockStopEvent,
            "message_delta": at.RawMessageDeltaEvent,
            "message_stop": at.RawMessageStopEvent,
        }
        return classes[data["type"]].model_validate(data)

    def _gemini(self, parts: list[dict[str, Any]], **extra: Any) -> Any:
        data: dict[str, Any] = {
            "candidates": [{"content": {"role": "model", "parts": parts}, "index": 0, **extra}],
            "modelVersion": self.model_name,
            "responseId": f"fake{self.call}",
        }
        if "finishReason" in extra:
            prompt_tokens, completion_tokens = self._usage
            data["usageMetadata"] = {
                "promptTokenCount": prompt_tokens,
                "candidatesTokenCount": completion_tokens,
                "totalTokenCount": prompt_tokens + completion_tokens,
            }
        if self.fmt == "gemini-dict":
            return data
        from google.genai import types

        return types.GenerateContentResponse.model_validate(data)

    def _choice(self, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}

    def head(self) -> list[Any]:
        """Framing chunks sent before the first text chunk."""
        if self.fmt.startswith("openai"):
            return [self._openai([self._choice({"role": "assistant", "content": ""})])]
        if self.fmt.startswith("anthropic"):
            message: dict[str, Any] = {
                "id": f"msg_fake{self.call}",
                "type": "message",
                "role": "assistant",
                "content": [],
                "model": self.model_name,
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {"input_tokens": self._usage[0], "output_tokens": 0},
            }
            return [
                self._anthropic({"type": "message_start", "message": message}),
                self._anthropic(
                    {
                        "type": "content_block_start",
                        "index": 0,
                        "content_block": {"type": "text", "text": ""},
                    }
                ),
            ]
        return []

    def piece(self, text: str) -> Any:
        """The chunk object carrying ``text``."""
        if self.fmt == "text":
            return text
        if self.fmt.startswith("openai"):
            return self._openai([self._choice({"content": text})])
        if self.fmt.startswith("gemini"):
            return self._gemini([{"text": text}])
        if self.fmt.startswith("anthropic"):
            return self._anthropic(
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "text_delta", "text": text},
                }
            )
        from langchain_core.messages import AIMessageChunk

        return AIMessageChunk(content=text, id=f"run-fake{self.call}")

    def tail(self, finish_reason: str) -> list[Any]:
        """Final chunks: finish reason, then usage, as the provider sends them."""
        if self.fmt == "text":
            return []
        prompt_tokens, completion_tokens = self._usage
        if self.fmt.startswith("gemini"):
            finish = _GEMINI_FINISH.get(finish_reason, finish_reason.upper())
            return [self._gemini([], finishReason=finish)]
        if self.fmt.startswith("openai"):
            usage = {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            }
            return [
                self._openai([self._choice({}, finish_reason)]),
                self._openai([], usage=usage),
            ]
        if self.fmt.startswith("anthropic"):
            stop = _ANTHROPIC_STOP.get(finish_reason, finish_reason)
            return [
                self._anthropic({"type": "content_block_stop", "index": 0}),
                self._anthropic(
                    {
                        "type": "message_delta",
                        "delta": {"stop_reason": stop, "stop_sequence": None},
                        "usage": {"output_tokens": completion_tokens},
                    }
                ),
                self._anthropic({"type": "message_stop"}),
            ]
        from langchain_core.messages import AIMessageChunk

        extra: dict[str, Any] = {}
        if "chunk_position" in AIMessageChunk.model_fields:  # langchain-core >= 1.0
            extra["chunk_position"] = "last"
        return [
            AIMessageChunk(
                content="",
                id=f"run-fake{self.call}",
                response_metadata={"finish_reason": finish_reason, "model_name": self.model_name},
                usage_metadata={
                    "input_tokens": prompt_tokens,
                    "output_tokens": completion_tokens,
                    "total_tokens": prompt_tokens + completion_tokens,
                },
                **extra,
            )
        ]


# --------------------------------------------------------------------------
# the plan of one call
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Prepared:
    """A reply cut into chunks with its schedule: the same for every call."""

    reply: FakeReply
    chunks: list[str]
    delays: list[float]  # before each text chunk, then before the end
    faults: tuple[Fault, ...]


@dataclass(frozen=True)
class _End:
    """How a call's stream ends: its finish, a raised error or a disconnect."""

    finish: str | None = None
    error: BaseException | None = None


# One step of a plan: sleep ``delay``, then yield ``item`` (recording ``text``,
# the text of a text chunk) or, when ``end`` is set, end the stream. Plain
# tuples: a plan has a step per chunk and is built at every call.
_Step = tuple[float, Any, "str | None", "_End | None"]


class FakeStreamingModel:
    """A deterministic fake LLM that streams scripted replies.

    ``responses`` is one reply, a list of replies (each a ``str``, a
    :class:`FakeReply`, or an exception that the call raises before any
    chunk, as :meth:`Fault.raise_at` raises it), or a callable
    ``prompt -> str | FakeReply``. Call *k* gets reply
    *k* of the list, cycling unless ``cycle=False`` (then an extra call raises
    :class:`FakeModelExhaustedError`).

    Options (keyword-only):

    - ``chunking``: ``"word"`` (default), ``"char"``, ``"token"``, ``"random"``,
      an ``int`` (fixed size) or a :class:`Chunking`.
    - ``seed``: drives random chunk sizes and jitter; same seed, same chunks
      and delays, on every run and for ``.stream`` and ``.astream`` alike.
    - ``first_chunk_delay``, ``delay``: seconds before the first chunk and
      between chunks; ``jitter`` adds a seeded ``uniform(0, jitter)`` to each
      gap. Delays are ``asyncio.sleep`` on the running loop: instant under
      :func:`streamops.testing.virtual_time`.
    - ``faults``: :class:`Fault` objects applied to every call.
    - ``format``: ``"text"`` (``str`` chunks, the default), ``"openai"``
      (``ChatCompletionChunk`` objects), ``"openai-dict"``, ``"anthropic"``
      (``anthropic.types`` stream events), ``"anthropic-dict"``,
      ``"langchain"`` (``AIMessageChunk``), ``"gemini"`` (google-genai
      ``GenerateContentResponse`` objects; ``"stop"`` becomes ``STOP``,
      ``"length"`` ``MAX_TOKENS``), ``"gemini-dict"``. Provider formats end with the
      finish reason and token usage (cl100k counts of prompt and reply).
    - ``sync_sleep``: ``.stream``/``.invoke`` sleep for real when true. Off by
      default, so sync tests are instant; they yield the same chunks.

    Bad configuration raises ``ValueError``/``TypeError`` here, not mid-test:
    negative delays, an empty reply list, a fault index beyond a reply's
    chunk count (checked per call for callable replies).

    >>> model = FakeStreamingModel("Hello there, world", delay=0.5)
    >>> list(model.stream("hi"))
    ['Hello', ' there,', ' world']
    >>> model.calls[0].delays
    [0.0, 0.5, 0.5, 0.0]
    >>> import asyncio
    >>> async def main():
    ...     return [c async for c in model.astream("hi")]
    >>> asyncio.run(main())
    ['Hello', ' there,', ' world']
    """

    def __init__(
        self,
        responses: Response | Sequence[Response] | Callable[[Any], str | FakeReply],
        /,
        *,
        chunking: str | int | Chunking = "word",
        seed: int = 0,
        first_chunk_delay: float = 0.0,
        delay: float = 0.0,
        jitter: float = 0.0,
        faults: Sequence[Fault] = (),
        cycle: bool = True,
        format: ChunkFormat = "text",
        model_name: str = "fake-model",
        sync_sleep: bool = False,
    ) -> None:
        self.chunking = _chunking(chunking)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"seed must be an int, got {type(seed).__name__}")
        self.seed = seed
        self.first_chunk_delay = _check_delay("first_chunk_delay", first_chunk_delay)
        self.delay = _check_delay("delay", delay)
        self.jitter = _check_delay("jitter", jitter)
        if format not in _FORMATS:
            raise ValueError(f"unknown format {format!r}; use one of {list(_FORMATS)}")
        sdk = _SDKS.get(format)
        if sdk is not None:
            require(sdk[0], extra=sdk[1], feature=f"format={format!r}")
        self.format = format
        self.model_name = model_name
        self.sync_sleep = sync_sleep
        self.cycle = cycle
        self.faults: tuple[Fault, ...] = tuple(faults)
        for fault in self.faults:
            if not isinstance(fault, Fault):
                raise TypeError(f"faults must be Fault objects, got {type(fault).__name__}")
        self.calls: list[FakeCall] = []
        self._script: Callable[[Any], str | FakeReply] | None = None
        self._prepared: list[_Prepared] = []
        if callable(responses) and not isinstance(responses, (str, FakeReply, BaseException)):
            self._script = responses
            return
        replies: Sequence[object] = (
            [responses] if isinstance(responses, (str, FakeReply, BaseException)) else responses
        )
        if not isinstance(replies, Sequence):
            raise TypeError(
                "responses must be a str, a FakeReply, a list of them or a callable,"
                f" got {type(responses).__name__}"
            )
        if not replies:
            raise ValueError("responses is empty: give at least one reply")
        self._prepared = [
            self._prepare(_as_reply(r, f"responses[{i}]"), f"responses[{i}]")
            for i, r in enumerate(replies)
        ]

    def __repr__(self) -> str:
        return (
            f"FakeStreamingModel(replies={len(self._prepared) or 'callable'},"
            f" chunking={self.chunking.kind}, format={self.format!r}, calls={len(self.calls)})"
        )

    @property
    def last_call(self) -> FakeCall:
        """The record of the most recent call (``IndexError`` if none yet)."""
        if not self.calls:
            raise IndexError("the fake model has not been called yet")
        return self.calls[-1]

    # -- planning ----------------------------------------------------------
    def _prepare(self, reply: FakeReply, where: str) -> _Prepared:
        if reply.chunks is not None:
            chunks = list(reply.chunks)
        else:
            assert reply.text is not None  # guarded by FakeReply
            chunks = self.chunking.split(reply.text, seed=self.seed)
        faults = (*self.faults, *reply.faults)
        for fault in faults:
            if fault.index > len(chunks):
                raise ValueError(
                    f"{where}: fault {fault.kind} at chunk {fault.index} is out of range:"
                    f" the reply has {len(chunks)} chunks (index 0..{len(chunks)})"
                )
        rng = random.Random(f"{self.seed}:timing")
        delays = [
            self.first_chunk_delay
            if i == 0
            else self.delay + (round(rng.uniform(0, self.jitter), 6) if self.jitter else 0.0)
            for i in range(len(chunks))
        ]
        delays.append(0.0 if chunks else self.first_chunk_delay)
        return _Prepared(reply, chunks, delays, faults)

    def _begin(
        self,
        prompt: Any,
        method: Literal["stream", "astream", "invoke", "ainvoke"],
        fmt: str | None = None,
    ) -> tuple[FakeCall, list[_Step]]:
        index = len(self.calls)
        if self._script is not None:
            prepared = self._prepare(
                _as_reply(self._script(prompt), f"call {index + 1}"), f"call {index + 1}"
            )
        elif index < len(self._prepared) or self.cycle:
            prepared = self._prepared[index % len(self._prepared)]
        else:
            raise FakeModelExhaustedError(
                f"call {index + 1}: all {len(self._prepared)} replies were used (cycle=False)"
            )
        response = "".join(prepared.chunks)
        call = FakeCall(index, prompt, method, response, prepared.chunks, prepared.delays)
        self.calls.append(call)
        if fmt is None:
            fmt = "text" if method.endswith("invoke") else self.format
        return call, self._steps(prepared, _Shaper(fmt, index, prompt, response, self.model_name))

    def _steps(self, prepared: _Prepared, shaper: _Shaper) -> list[_Step]:
        chunks = prepared.chunks
        waits = list(prepared.delays)
        for fault in prepared.faults:
            waits[fault.index] += fault.seconds
        ending = min(
            (f for f in prepared.faults if f.ends_stream), key=lambda f: f.index, default=None
        )
        stop = len(chunks) if ending is None else ending.index  # text chunks delivered
        texts = chunks[:stop]
        items = texts if shaper.fmt == "text" else [shaper.piece(t) for t in texts]
        steps: list[_Step] = list(zip(waits, items, texts, itertools.repeat(None)))
        if ending is None:
            finish = prepared.reply.finish_reason
            last: list[_Step] = [(0.0, item, None, None) for item in shaper.tail(finish)]
            last.append((0.0, None, None, _End(finish=finish)))
        elif ending.kind == "raise":
            last = [(0.0, None, None, _End(error=ending.make_error()))]
        else:
            last = [(0.0, None, None, _End())]
        last[0] = (waits[stop], *last[0][1:])
        steps += last
        if stop or ending is None:  # framing precedes whatever comes first
            head: list[_Step] = [(0.0, item, None, None) for item in shaper.head()]
            if head:
                head[0] = (steps[0][0], *head[0][1:])
                steps[0] = (0.0, *steps[0][1:])
                steps[:0] = head
        return steps

    # -- driving -----------------------------------------------------------
    @staticmethod
    def _end(call: FakeCall, end: _End) -> None:
        if end.error is not None:
            call.error = end.error
            # A reused error object (one that could not be copied) would
            # otherwise keep every earlier call's traceback.
            raise end.error.with_traceback(None)
        if end.finish is not None:
            call.completed = True
            call.finish_reason = end.finish
        else:
            call.disconnected = True

    @staticmethod
    def _finalize(call: FakeCall) -> None:
        call.finalized = True
        call.closed_early = not (call.completed or call.disconnected or call.error is not None)

    def _run_sync(self, call: FakeCall, steps: list[_Step]) -> Generator[Any, None, None]:
        call.started = True
        try:
            for delay, item, text, end in steps:
                if self.sync_sleep and delay:
                    time.sleep(delay)
                if end is not None:
                    self._end(call, end)
                    return
                call.chunks.append(item)
                if text is not None:
                    call.texts.append(text)
                yield item
        finally:
            self._finalize(call)

    async def _run_async(self, call: FakeCall, steps: list[_Step]) -> AsyncGenerator[Any, None]:
        call.started = True
        try:
            for delay, item, text, end in steps:
                # Always yield to the loop, like real I/O: other tasks and
                # timeouts get their turn between chunks even at zero delay.
                await asyncio.sleep(delay)
                if end is not None:
                    self._end(call, end)
                    return
                call.chunks.append(item)
                if text is not None:
                    call.texts.append(text)
                yield item
        finally:
            self._finalize(call)

    # -- public calls ------------------------------------------------------
    def stream(self, prompt: Any = "", /) -> Generator[Any, None, None]:
        """Return a sync generator of the next reply's chunks (no sleeping by default).

        The call is recorded (and its reply chosen) now, before iteration.
        """
        return self._run_sync(*self._begin(prompt, "stream"))

    def astream(self, prompt: Any = "", /) -> AsyncGenerator[Any, None]:
        """Return an async generator of the next reply's chunks, sleeping on the loop.

        The call is recorded (and its reply chosen) now, before iteration.
        Close it with ``aclose()`` (or ``contextlib.aclosing``) when you stop early.
        """
        return self._run_async(*self._begin(prompt, "astream"))

    def invoke(self, prompt: Any = "", /) -> str:
        """Return the next reply's whole text (faults apply; disconnects truncate)."""
        return "".join(self._run_sync(*self._begin(prompt, "invoke")))

    async def ainvoke(self, prompt: Any = "", /) -> str:
        """Async :meth:`invoke`: sleeps on the loop like :meth:`astream`."""
        return "".join([piece async for piece in self._run_async(*self._begin(prompt, "ainvoke"))])

    # -- LangChain ---------------------------------------------------------
    def as_langchain(self) -> Any:
        """Return this fake as a LangChain chat model (a ``BaseChatModel``).

        Same script, chunking, faults and (virtual) timing; it yields
        ``AIMessageChunk`` objects whatever this model's ``format``. See
        :func:`streamops.langchain.fake_chat_model`. Needs langchain-core
        (``pip install 'streamops[langchain]'``).

        >>> model = FakeStreamingModel("Hi there").as_langchain()
        >>> [c.content for c in model.stream("hello")][:2]
        ['Hi', ' there']
        """
        from ..langchain import fake_chat_model

        return fake_chat_model(self)

    def _langchain_stream(self, prompt: str) -> Generator[Any, None, None]:
        return self._run_sync(*self._begin(prompt, "stream", "langchain"))

    def _langchain_astream(self, prompt: str) -> AsyncGenerator[Any, None]:
        return self._run_async(*self._begin(prompt, "astream", "langchain"))
