"""LangChain-native streamops: a policy inside the chat model, operators as runnables.

A redactor placed *after* a chat model in a chain cannot stop what LangChain
already emitted: ``astream_events`` (``on_chat_model_stream``), callbacks
(``on_llm_new_token``) and tracing see the model's raw text before any later
step runs. :func:`wrap_chat_model` moves the operators *into* the model: the
wrapper is a real :class:`~langchain_core.language_models.BaseChatModel`
whose ``_stream``/``_astream`` run the inner model's chunks through the
operators, so every event, callback and the final ``AIMessage`` carry only
policy-applied text. The inner model is driven through its own ``_stream``
/``_astream`` (or ``_generate`` when it cannot stream), *not* through its
public ``stream()``: that would open a second, traced run carrying the raw
text.

:meth:`streamops.lowlevel.Operator.as_runnable` (``so.redact().as_runnable()``)
makes an operator an LCEL step that streams chunk by chunk, over
``AIMessageChunk`` or ``str``; :func:`fake_chat_model` is
:meth:`streamops.testing.FakeStreamingModel.as_langchain`.

Needs ``langchain-core``: ``pip install 'streamops[langchain]'``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any

from ._core._extras import raise_missing

try:
    from langchain_core.callbacks import (
        AsyncCallbackManagerForLLMRun,
        CallbackManagerForLLMRun,
    )
    from langchain_core.language_models import BaseChatModel
    from langchain_core.messages import (
        AIMessage,
        AIMessageChunk,
        BaseMessage,
        BaseMessageChunk,
        get_buffer_string,
    )
    from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
    from langchain_core.runnables import Runnable, RunnableBinding, RunnableGenerator
except ModuleNotFoundError as exc:
    raise_missing(exc, "langchain_core", extra="langchain", feature="streamops.langchain")
    raise

from pydantic import ConfigDict, Field

from ._core._driver import Operator
from ._core._public import fixup_module_metadata
from ._core._report import StreamReport
from .lowlevel import ProcessorStage

__all__ = (
    "StreamOpsChatModel",
    "as_runnable",
    "fake_chat_model",
    "wrap_chat_model",
)

REPORT_KEY = "streamops"
"""The ``response_metadata`` key of the stream report summary (on the last chunk)."""


def _operator(policy_or_operator: Any) -> Operator[Any, Any]:
    """The operator of a :class:`~streamops.Policy` or an operator, checked."""
    if isinstance(policy_or_operator, Operator):
        op = policy_or_operator
    elif callable(getattr(policy_or_operator, "build", None)) and hasattr(
        policy_or_operator, "build_input"
    ):
        op = policy_or_operator.build()
    else:
        raise TypeError(
            "expected a streamops operator (e.g. so.redact()) or a streamops.Policy,"
            f" got {type(policy_or_operator).__name__}"
        )
    for stage in op.stages:
        # A text stage whose output is not text gives values, not rebuilt chunks.
        if isinstance(stage, ProcessorStage) and stage.produces not in (str, "same"):
            raise ValueError(
                f"stage {stage.name!r} turns text into values: a chat model must give"
                " message chunks; use chunk-preserving operators (redact, budget,"
                " timeout, collect) here and parse after the model"
            )
    return op


def _summary(report: StreamReport) -> dict[str, Any]:
    """The report as JSON data, without its event list (that may be long)."""
    data = report.to_dict()
    del data["events"]
    return data


def _to_message(gen: ChatGenerationChunk) -> BaseMessageChunk:
    """The message of a generation chunk, with its ``generation_info`` as LangChain merges it."""
    message = gen.message
    if gen.generation_info:
        message.response_metadata = {**gen.generation_info, **message.response_metadata}
    return message


def _report_chunk(template: BaseMessageChunk | None, report: StreamReport) -> ChatGenerationChunk:
    """The empty last chunk that carries the report summary in its ``response_metadata``."""
    content: Any = "" if template is None or isinstance(template.content, str) else []
    message = AIMessageChunk(
        content=content,
        id=None if template is None else template.id,
        response_metadata={REPORT_KEY: _summary(report)},
        chunk_position="last",
    )
    return ChatGenerationChunk(message=message)


class _GeneratedFromStream(BaseChatModel):
    """``invoke``/``ainvoke`` answer from the model's own stream: one code path for both."""

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return _result(list(self._stream(messages, stop, None, **kwargs)))

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return _result([c async for c in self._astream(messages, stop, None, **kwargs)])


class StreamOpsChatModel(_GeneratedFromStream):
    """A chat model whose every output went through streamops operators.

    Made by :func:`wrap_chat_model`; ``invoke``/``ainvoke``/``stream``/
    ``astream``/``batch``/``astream_events`` and callbacks all see the
    policy-applied chunks. The last chunk of each reply is an empty one whose
    ``response_metadata["streamops"]`` is the stream report (stop reason,
    counters, sections such as redactions by rule); ``on_report`` is also
    called with the :class:`~streamops.StreamReport` itself.

    >>> from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
    >>> from langchain_core.messages import AIMessage
    >>> import streamops as so
    >>> inner = GenericFakeChatModel(messages=iter([AIMessage("mail ann@example.com")]))
    >>> model = wrap_chat_model(inner, so.redact(["email"]))
    >>> reply = model.invoke("hi")
    >>> reply.content, reply.response_metadata["streamops"]["sections"]["redact"]["redacted"]
    ('mail [EMAIL]', {'email': 1})
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    inner: BaseChatModel
    """The wrapped chat model."""
    operator: Any = Field(exclude=True)
    """The operator every reply streams through."""
    bound_kwargs: dict[str, Any] = Field(default_factory=dict)
    """Call options bound to the inner model (tools from ``bind_tools``...)."""
    on_report: Callable[[StreamReport], None] | None = Field(default=None, exclude=True)
    """Called with the report of each reply when its stream ends."""

    @property
    def _llm_type(self) -> str:
        return f"streamops-{self.inner._llm_type}"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {
            "inner": self.inner._identifying_params,
            "operator": repr(self.operator),
        }

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> Any:
        return self.inner._get_ls_params(stop=stop, **{**self.bound_kwargs, **kwargs})

    def _done(self, report: StreamReport) -> None:
        if self.on_report is not None:
            self.on_report(report)

    # The inner model is driven through its private streaming methods, with no
    # run manager: its public stream() would open a run of its own (callbacks,
    # astream_events, tracing) carrying the raw text.
    def _inner_sync(
        self, messages: list[BaseMessage], stop: list[str] | None, kwargs: dict[str, Any]
    ) -> Iterator[BaseMessageChunk]:
        inner = self.inner
        options = _options(self.bound_kwargs, kwargs)
        if type(inner)._stream is BaseChatModel._stream:  # it cannot stream: one chunk
            result = inner._generate(messages, stop=stop, **options)
            yield from (_whole(gen) for gen in result.generations)
            return
        gens = inner._stream(messages, stop=stop, **options)
        try:
            for gen in gens:
                yield _to_message(gen)
        finally:
            close = getattr(gens, "close", None)
            if close is not None:
                close()

    async def _inner_async(
        self, messages: list[BaseMessage], stop: list[str] | None, kwargs: dict[str, Any]
    ) -> AsyncIterator[BaseMessageChunk]:
        inner = self.inner
        options = _options(self.bound_kwargs, kwargs)
        cls = type(inner)
        if cls._astream is BaseChatModel._astream and cls._stream is BaseChatModel._stream:
            result = await inner._agenerate(messages, stop=stop, **options)
            for gen in result.generations:
                yield _whole(gen)
            return
        gens = inner._astream(messages, stop=stop, **options)
        try:
            async for gen in gens:
                yield _to_message(gen)
        finally:
            aclose = getattr(gens, "aclose", None)
            if aclose is not None:
                await aclose()

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        stream = self.operator(self._inner_sync(messages, stop, kwargs))
        last: BaseMessageChunk | None = None
        with stream:
            for message in stream:
                last = message
                chunk = ChatGenerationChunk(message=message)
                if run_manager is not None:  # (stream() fires them itself; _generate does not)
                    run_manager.on_llm_new_token(message.text, chunk=chunk)
                yield chunk
        self._done(stream.report)
        yield _report_chunk(last, stream.report)

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        stream = self.operator(self._inner_async(messages, stop, kwargs))
        last: BaseMessageChunk | None = None
        async with stream:
            async for message in stream:
                last = message
                chunk = ChatGenerationChunk(message=message)
                if run_manager is not None:
                    await run_manager.on_llm_new_token(message.text, chunk=chunk)
                yield chunk
        self._done(stream.report)
        yield _report_chunk(last, stream.report)

    def bind_tools(
        self,
        tools: Sequence[Any],
        *,
        tool_choice: str | None = None,
        **kwargs: Any,
    ) -> Runnable[Any, AIMessage]:
        """Bind tools to the inner model; the result is wrapped by the same operator.

        ``with_structured_output`` (LangChain's tool-calling default) works
        through this.
        """
        if tool_choice is not None:
            kwargs["tool_choice"] = tool_choice
        bound = self.inner.bind_tools(tools, **kwargs)
        return _wrap(bound, self.operator, self.on_report, self.bound_kwargs)


def _options(bound: dict[str, Any], kwargs: dict[str, Any]) -> dict[str, Any]:
    """The call options for the inner model, as its public ``stream()`` would pass them."""
    options = {**bound, **kwargs}
    # Tracing hints that stream() pops before calling _stream.
    options.pop("ls_structured_output_format", None)
    options.pop("structured_output_format", None)
    return options


def _whole(gen: ChatGeneration) -> BaseMessageChunk:
    """A whole reply (from ``_generate``) as one last chunk."""
    message = gen.message
    chunk = AIMessageChunk(
        content=message.content,
        id=message.id,
        additional_kwargs=message.additional_kwargs,
        response_metadata={**(gen.generation_info or {}), **message.response_metadata},
        chunk_position="last",
    )
    if isinstance(message, AIMessage):
        chunk = AIMessageChunk(
            content=message.content,
            id=message.id,
            additional_kwargs=message.additional_kwargs,
            response_metadata=chunk.response_metadata,
            usage_metadata=message.usage_metadata,
            # Invalid calls keep their raw arguments: LangChain parses them
            # again, so they come out invalid (and redacted), never dropped.
            tool_call_chunks=[
                {"name": name, "args": args, "id": id_, "index": i, "type": "tool_call_chunk"}
                for i, (name, args, id_) in enumerate(
                    [
                        *((c["name"], _json_args(c["args"]), c["id"]) for c in message.tool_calls),
                        *((c["name"], c["args"], c["id"]) for c in message.invalid_tool_calls),
                    ]
                )
            ],
            chunk_position="last",
        )
    return chunk


def _json_args(args: Any) -> str:
    import json

    return json.dumps(args)


def _result(chunks: list[ChatGenerationChunk]) -> ChatResult:
    """The chat result of a whole reply streamed through the operators."""
    merged = chunks[0]
    for chunk in chunks[1:]:
        merged = merged + chunk
    message = merged.message
    final = AIMessage(
        content=message.content,
        id=message.id,
        additional_kwargs=message.additional_kwargs,
        response_metadata=message.response_metadata,
        tool_calls=getattr(message, "tool_calls", []),
        invalid_tool_calls=getattr(message, "invalid_tool_calls", []),
        usage_metadata=getattr(message, "usage_metadata", None),
    )
    return ChatResult(generations=[ChatGeneration(message=final)])


def _wrap(
    model: Any,
    op: Operator[Any, Any],
    on_report: Callable[[StreamReport], None] | None,
    bound: dict[str, Any] | None = None,
) -> StreamOpsChatModel:
    kwargs = dict(bound or {})
    while isinstance(model, RunnableBinding):  # model.bind_tools(...), model.bind(...)
        kwargs = {**model.kwargs, **kwargs}
        if model.config:
            raise ValueError(
                "the model has a bound config (with_config): wrap the model first, then"
                " call with_config on the wrapper"
            )
        model = model.bound
    if not isinstance(model, BaseChatModel):
        raise TypeError(
            "wrap_chat_model() needs a LangChain chat model (a BaseChatModel, or one with"
            f" bound tools), got {type(model).__name__}"
        )
    return StreamOpsChatModel(inner=model, operator=op, bound_kwargs=kwargs, on_report=on_report)


def wrap_chat_model(
    model: Any,
    policy_or_operator: Any,
    /,
    *,
    on_report: Callable[[StreamReport], None] | None = None,
) -> StreamOpsChatModel:
    """Return a LangChain chat model that applies ``policy_or_operator`` to ``model``'s output.

    ``model`` is a ``BaseChatModel`` (``ChatOpenAI``, ``ChatAnthropic``...)
    or one with bound tools (``model.bind_tools([...])``);
    ``policy_or_operator`` an operator (``so.redact() | so.budget(...)``) or
    a :class:`~streamops.Policy` (its :meth:`~streamops.Policy.build`). The
    result drops into any chain where ``model`` was: every output LangChain
    emits (stream events, ``on_llm_new_token``, the final message, traces)
    is the operators' output; tool calls, usage and response metadata pass
    through. ``on_report`` is called with each reply's
    :class:`~streamops.StreamReport`; its summary is also in the final
    message's ``response_metadata["streamops"]``.

    Raises ``TypeError`` for something that is not a chat model or not an
    operator, ``ValueError`` for an operator that does not give message
    chunks back (``parse_json``: parse after the model).

    >>> from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
    >>> from langchain_core.messages import AIMessage
    >>> import streamops as so
    >>> inner = GenericFakeChatModel(messages=iter([AIMessage("key sk-abcdefghijklmnopqrstu0")]))
    >>> model = wrap_chat_model(inner, so.redact())
    >>> "".join(c.text for c in model.stream("hi"))
    'key [OPENAI_KEY]'
    >>> wrap_chat_model("gpt-4o", so.redact())
    Traceback (most recent call last):
    ...
    TypeError: wrap_chat_model() needs a LangChain chat model ..., got str
    """
    return _wrap(model, _operator(policy_or_operator), on_report)


def _lc_chunk(item: Any) -> Any:
    """A whole ``AIMessage`` (``model.invoke`` upstream) as the one, last chunk of a stream."""
    if isinstance(item, AIMessage) and not isinstance(item, BaseMessageChunk):
        return _whole(ChatGeneration(message=item))
    return item


def as_runnable(operator: Operator[Any, Any], /) -> Runnable[Any, Any]:
    """Return ``operator`` as an LCEL step that streams chunk by chunk.

    It is a ``RunnableGenerator`` over ``transform``/``atransform``: each
    chunk the step before it yields goes through the operator as it comes
    (``AIMessageChunk`` through the LangChain lens, ``str`` as text), sync
    and async. ``invoke`` runs the same stream over the one input (a whole
    ``AIMessage`` counts as a message that ended) and adds the chunks up.
    It is what :meth:`Operator.as_runnable <streamops.lowlevel.Operator.as_runnable>`
    returns.

    A redactor after the model does not hide the raw text from the model's
    own events and callbacks: use :func:`wrap_chat_model` for that.

    >>> from langchain_core.output_parsers import StrOutputParser
    >>> from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
    >>> from langchain_core.messages import AIMessage
    >>> import streamops as so
    >>> model = GenericFakeChatModel(messages=iter([AIMessage("write to ann@example.com")]))
    >>> chain = model | so.redact(["email"]).as_runnable() | StrOutputParser()
    >>> [text for text in chain.stream("hi") if text]
    ['write ', 'to ', '[EMAIL]']
    """
    if not isinstance(operator, Operator):
        raise TypeError(f"expected a streamops operator, got {type(operator).__name__}")

    def transform(chunks: Iterator[Any]) -> Iterator[Any]:
        with operator(_lc_chunk(c) for c in chunks) as stream:
            yield from stream

    async def atransform(chunks: AsyncIterator[Any]) -> AsyncIterator[Any]:
        async def source() -> AsyncIterator[Any]:
            async for c in chunks:
                yield _lc_chunk(c)

        async with operator(source()) as stream:
            async for out in stream:
                yield out

    return RunnableGenerator(transform, atransform, name=f"streamops({operator!r})")


class _FakeChatModel(_GeneratedFromStream):
    """:class:`~streamops.testing.FakeStreamingModel` as a LangChain chat model."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    fake: Any = Field(exclude=True)

    @property
    def _llm_type(self) -> str:
        return "streamops-fake"

    @staticmethod
    def _prompt(messages: list[BaseMessage]) -> str:
        return messages[0].text if len(messages) == 1 else get_buffer_string(messages)

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        for message in self.fake._langchain_stream(self._prompt(messages)):
            yield ChatGenerationChunk(message=message)

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        gen = self.fake._langchain_astream(self._prompt(messages))
        try:
            async for message in gen:
                chunk = ChatGenerationChunk(message=message)
                if run_manager is not None:
                    await run_manager.on_llm_new_token(message.text, chunk=chunk)
                yield chunk
        finally:
            await gen.aclose()

    def bind_tools(
        self,
        tools: Sequence[Any],
        *,
        tool_choice: str | None = None,
        **kwargs: Any,
    ) -> Runnable[Any, AIMessage]:
        """Accept tools (the fake replies its script whatever the tools)."""
        return self.bind(tools=list(tools), tool_choice=tool_choice, **kwargs)


def fake_chat_model(fake: Any, /) -> BaseChatModel:
    """Return the fake model as a LangChain chat model (:meth:`FakeStreamingModel.as_langchain`).

    Its replies, chunking, faults and (virtual) timing are the fake's; each
    call is recorded in ``fake.calls`` with the conversation as its prompt
    (one message: its text; several: LangChain's ``get_buffer_string``).
    Chunks are ``AIMessageChunk`` ending with the finish reason and usage.
    ``bind_tools`` accepts tools and ignores them.

    >>> from streamops.testing import FakeStreamingModel
    >>> model = FakeStreamingModel("Hello there").as_langchain()
    >>> model.invoke("hi").content
    'Hello there'
    """
    return _FakeChatModel(fake=fake)


fixup_module_metadata(__name__, globals(), __all__)
