"""streamops.langchain: wrap_chat_model, operators as LCEL runnables, the fake as a chat model.

Every test runs real langchain-core objects: chat models subclassing
``BaseChatModel``, LCEL chains, ``astream_events(version="v2")`` and callback
handlers; the secrets are split across chunks.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Generator, Iterator, Sequence
from typing import Any

import pytest
from langchain_core.callbacks import (
    AsyncCallbackHandler,
    BaseCallbackHandler,
    CallbackManagerForLLMRun,
)
from langchain_core.language_models import BaseChatModel
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.outputs import ChatGenerationChunk, ChatResult, LLMResult
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import Runnable, RunnableGenerator
from pydantic import BaseModel

import streamops as so
from streamops.langchain import StreamOpsChatModel, as_runnable, wrap_chat_model
from streamops.testing import FakeStreamingModel, Fault

EMAIL = "ann.lee@example.com"
KEY = "sk-proj-4f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c"
REPLY = f"Write to {EMAIL} with key {KEY} today."
REDACTED = "Write to [EMAIL] with key [OPENAI_KEY] today."
PROMPT = ChatPromptTemplate.from_messages([("human", "{question}")])


def fake(reply: str = REPLY, **options: Any) -> BaseChatModel:
    """Our fake model as a LangChain chat model, cut char by char (secrets span chunks)."""
    model: BaseChatModel = FakeStreamingModel(reply, chunking="char", **options).as_langchain()
    return model


def no_secret(data: object) -> None:
    text = repr(data)
    assert EMAIL not in text
    assert KEY not in text
    # ...nor a piece of one long enough to be one (chunks repeat in events).
    assert "4f9a8b7c6d5e" not in text


class Recorder(BaseCallbackHandler):
    """A callback handler recording tokens and the final result."""

    def __init__(self) -> None:
        self.tokens: list[str] = []
        self.chunks: list[Any] = []
        self.results: list[LLMResult] = []

    def on_llm_new_token(self, token: Any, *, chunk: Any = None, **kwargs: Any) -> None:
        self.tokens.append(token)
        self.chunks.append(chunk)

    def on_llm_end(self, response: LLMResult, **kwargs: Any) -> None:
        self.results.append(response)


class AsyncRecorder(AsyncCallbackHandler):
    def __init__(self) -> None:
        self.tokens: list[str] = []

    async def on_llm_new_token(self, token: Any, **kwargs: Any) -> None:
        self.tokens.append(token)


# -- the acceptance test ------------------------------------------------------


async def test_astream_events_of_a_chain_carry_no_secret() -> None:
    model = wrap_chat_model(fake(), so.redact())
    chain = PROMPT | model | StrOutputParser()
    events = [e async for e in chain.astream_events({"question": "who?"}, version="v2")]
    kinds = {e["event"] for e in events}
    assert {"on_chat_model_stream", "on_chat_model_end", "on_parser_stream"} <= kinds
    no_secret(events)
    streamed = "".join(
        e["data"]["chunk"].text for e in events if e["event"] == "on_chat_model_stream"
    )
    assert streamed == REDACTED
    assert events[-1]["data"]["output"] == REDACTED
    # More than one model chunk: it streamed, not buffer-then-run.
    assert sum(e["event"] == "on_chat_model_stream" for e in events) > 5


def test_stream_events_v3_protocol_carries_no_secret() -> None:
    model = wrap_chat_model(fake(), so.redact())
    events: list[Any] = list(model.stream_events("hi", version="v3"))
    no_secret(events)
    finished = [e for e in events if e["event"] == "content-block-finish"]
    assert finished[0]["content"]["text"] == REDACTED


async def test_unwrapped_model_leaks_in_astream_events() -> None:
    """The control: a redactor after the model leaves the model's events raw."""
    chain = PROMPT | fake() | so.redact().as_runnable() | StrOutputParser()
    events = [e async for e in chain.astream_events({"question": "who?"}, version="v2")]
    assert EMAIL in "".join(
        e["data"]["chunk"].text for e in events if e["event"] == "on_chat_model_stream"
    )
    assert events[-1]["data"]["output"] == REDACTED


# -- every way of calling the wrapped model -----------------------------------


def test_invoke_stream_batch_and_callbacks() -> None:
    model = wrap_chat_model(fake(), so.redact())
    recorder = Recorder()
    reply = model.invoke("hi", config={"callbacks": [recorder]})
    assert isinstance(reply, AIMessage)
    assert reply.content == REDACTED
    assert reply.usage_metadata is not None
    assert reply.usage_metadata["output_tokens"] > 0
    assert reply.response_metadata["finish_reason"] == "stop"
    assert reply.response_metadata["streamops"]["stop_reason"] == "complete"
    redacted = reply.response_metadata["streamops"]["sections"]["redact"]["redacted"]
    assert redacted == {"email": 1, "openai_key": 1}
    no_secret(recorder.results)

    recorder = Recorder()
    chunks = list(model.stream("hi", config={"callbacks": [recorder]}))
    assert all(isinstance(c, AIMessageChunk) for c in chunks)
    assert "".join(c.text for c in chunks) == REDACTED
    assert "".join(recorder.tokens) == REDACTED
    assert len(recorder.tokens) > 5
    no_secret(recorder.chunks)
    no_secret(recorder.results)

    replies = model.batch(["a", "b"])
    assert [r.content for r in replies] == [REDACTED, REDACTED]


async def test_async_calls_and_callbacks() -> None:
    model = wrap_chat_model(fake(), so.redact())
    recorder = AsyncRecorder()
    reply = await model.ainvoke("hi", config={"callbacks": [recorder]})
    assert reply.content == REDACTED
    chunks = [c async for c in model.astream("hi", config={"callbacks": [recorder]})]
    assert "".join(c.text for c in chunks) == REDACTED
    no_secret(recorder.tokens)
    assert (await model.abatch(["a", "b"]))[1].content == REDACTED


def test_policy_and_on_report() -> None:
    reports: list[so.StreamReport] = []
    policy = so.Policy.from_dict({"redact": {"patterns": ["email"]}, "budget": {"max_tokens": 3}})
    model = wrap_chat_model(fake(), policy, on_report=reports.append)
    reply = model.invoke("hi")
    assert EMAIL not in str(reply.content)
    assert len(reports) == 1
    assert reports[0].stop_reason == so.StopReason.BUDGET
    assert reply.response_metadata["streamops"]["stop_reason"] == "budget"


def test_stop_early_closes_the_inner_stream() -> None:
    source = FakeStreamingModel(REPLY, chunking="char")
    model = wrap_chat_model(source.as_langchain(), so.redact())
    stream = model.stream("hi")
    assert isinstance(stream, Generator)
    next(stream)
    stream.close()
    assert source.last_call.closed_early
    assert source.last_call.finalized


async def test_timeout_inside_the_model_with_virtual_time() -> None:
    from streamops.testing import virtual_time

    source = FakeStreamingModel(REPLY, chunking="word", faults=[Fault.stall_at(2, 30.0)])
    model = wrap_chat_model(source.as_langchain(), so.redact() | so.timeout(idle=5.0))
    with virtual_time(), pytest.raises(so.StreamTimeout):
        await model.ainvoke("hi")
    assert source.last_call.finalized


# -- tool calls, bind_tools, with_structured_output ---------------------------


class ToolModel(BaseChatModel):
    """A real chat model streaming one tool call whose arguments hold a secret."""

    tool_name: str = "send_mail"

    @property
    def _llm_type(self) -> str:
        return "tool-model"

    def _pieces(self) -> list[AIMessageChunk]:
        args = json.dumps({"to": EMAIL, "body": "hello"})
        cut = args.index("example")
        first = AIMessageChunk(
            content="",
            tool_call_chunks=[
                {
                    "name": self.tool_name,
                    "args": args[:cut],
                    "id": "call_1",
                    "index": 0,
                    "type": "tool_call_chunk",
                }
            ],
        )
        second = AIMessageChunk(
            content="",
            tool_call_chunks=[
                {
                    "name": None,
                    "args": args[cut:],
                    "id": None,
                    "index": 0,
                    "type": "tool_call_chunk",
                }
            ],
        )
        last = AIMessageChunk(
            content="",
            response_metadata={"finish_reason": "tool_calls", "model_name": "tool-model"},
            usage_metadata={"input_tokens": 7, "output_tokens": 11, "total_tokens": 18},
            chunk_position="last",
        )
        return [first, second, last]

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        for piece in self._pieces():
            yield ChatGenerationChunk(message=piece)

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        raise AssertionError("the wrapper streams the inner model")

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> Runnable[Any, AIMessage]:
        return self.bind(tools=list(tools), **kwargs)


def test_tool_calls_usage_and_metadata_intact() -> None:
    model = wrap_chat_model(ToolModel(), so.redact())
    reply = model.invoke("mail ann")
    assert reply.tool_calls == [
        {
            "name": "send_mail",
            "args": {"to": "[EMAIL]", "body": "hello"},
            "id": "call_1",
            "type": "tool_call",
        }
    ]
    assert reply.usage_metadata == {"input_tokens": 7, "output_tokens": 11, "total_tokens": 18}
    assert reply.response_metadata["finish_reason"] == "tool_calls"
    no_secret(reply)


async def test_async_calls_over_a_sync_only_model() -> None:
    """ToolModel has no _astream: LangChain runs its _stream in a thread, redacted all the same."""
    reply = await wrap_chat_model(ToolModel(), so.redact()).ainvoke("mail ann")
    assert reply.tool_calls[0]["args"] == {"to": "[EMAIL]", "body": "hello"}
    assert reply.usage_metadata == {"input_tokens": 7, "output_tokens": 11, "total_tokens": 18}


class Mail(BaseModel):
    to: str
    body: str


def test_bind_tools_and_with_structured_output() -> None:
    model = wrap_chat_model(ToolModel(), so.redact())
    bound = model.bind_tools([Mail])
    assert isinstance(bound, StreamOpsChatModel)
    assert bound.bound_kwargs["tools"] == [Mail]
    assert bound.invoke("x").tool_calls[0]["args"]["to"] == "[EMAIL]"

    structured = wrap_chat_model(ToolModel(tool_name="Mail"), so.redact()).with_structured_output(
        Mail
    )
    assert structured.invoke("x") == Mail(to="[EMAIL]", body="hello")
    # A model with tools already bound can be wrapped too.
    rebound = wrap_chat_model(ToolModel().bind_tools([Mail]), so.redact())
    assert rebound.bound_kwargs["tools"] == [Mail]


def test_model_without_streaming_is_wrapped_through_generate() -> None:
    inner = GenericFakeChatModel(messages=iter([AIMessage(REPLY)]))
    model = wrap_chat_model(inner, so.redact())
    assert model.invoke("hi").content == REDACTED


# -- operators as runnables -----------------------------------------------------


def test_as_runnable_streams_chunk_by_chunk_sync() -> None:
    pulled: list[str] = []

    def upstream(_: Any) -> Iterator[str]:
        for piece in ["Hello ", "world, ", "mail ", "ann@", "example.com", " now"]:
            pulled.append(piece)
            yield piece

    chain = RunnableGenerator(upstream) | so.redact(["email"]).as_runnable()
    seen: list[tuple[str, int]] = []
    for out in chain.stream("go"):
        seen.append((out, len(pulled)))
    assert "".join(o for o, _ in seen) == "Hello world, mail [EMAIL] now"
    # "Hello " came out after the first upstream chunk, not at the end.
    assert ("Hello ", 1) in seen
    assert chain.invoke("go") == "Hello world, mail [EMAIL] now"


async def test_as_runnable_async_over_message_chunks() -> None:
    chain = fake() | so.redact().as_runnable() | StrOutputParser()
    pieces = [p async for p in chain.astream("hi")]
    assert "".join(pieces) == REDACTED
    assert len([p for p in pieces if p]) > 5
    assert await chain.ainvoke("hi") == REDACTED
    assert chain.invoke("hi") == REDACTED  # model.invoke gives one whole AIMessage


def test_as_runnable_refuses_non_operators() -> None:
    with pytest.raises(TypeError, match="expected a streamops operator"):
        as_runnable(len)  # type: ignore[arg-type]


# -- misuse gets correct advice -----------------------------------------------


def test_pipe_into_an_operator_gives_correct_advice() -> None:
    chain: Runnable[Any, Any] = fake() | StrOutputParser() | so.redact()
    with pytest.raises(TypeError, match=r"op\.as_runnable\(\)") as info:
        chain.invoke("hi")
    assert "wrap_chat_model" in str(info.value)
    with pytest.raises(TypeError, match=r"op\.as_runnable\(\)"):
        (fake() | so.redact()).invoke("hi")  # type: ignore[operator]


async def test_astream_events_into_an_operator_is_refused_clearly() -> None:
    chain = fake() | StrOutputParser()
    with pytest.raises(so.ChunkTypeError, match="wrap_chat_model"):
        async for _ in so.redact()(chain.astream_events("hi", version="v2")):
            pass


def test_bad_arguments() -> None:
    with pytest.raises(TypeError, match="needs a LangChain chat model"):
        wrap_chat_model(object(), so.redact())
    with pytest.raises(TypeError, match="operator"):
        wrap_chat_model(fake(), "redact")
    with pytest.raises(ValueError, match="parse after the model"):
        wrap_chat_model(fake(), so.parse_json())
    with pytest.raises(ValueError, match="with_config"):
        wrap_chat_model(ToolModel().bind_tools([Mail]).with_config(tags=["x"]), so.redact())


# -- the fake as a LangChain model ---------------------------------------------


async def test_fake_as_langchain_records_calls_and_faults() -> None:
    source = FakeStreamingModel(["one two", ValueError("boom")])
    model = source.as_langchain()
    reply = await model.ainvoke([("system", "be brief"), ("human", "hi")])
    assert reply.content == "one two"
    assert reply.usage_metadata is not None
    assert source.calls[0].prompt == "System: be brief\nHuman: hi"
    with pytest.raises(ValueError, match="boom"):
        model.invoke("again")
    assert model.bind_tools([Mail]).invoke("x").content == "one two"


def test_fake_as_langchain_virtual_time_sync_equals_async() -> None:
    source = FakeStreamingModel("a b c", delay=1.0)
    model = source.as_langchain()
    sync = [c.content for c in model.stream("x")]

    async def main() -> list[Any]:
        return [c.content async for c in model.astream("x")]

    assert asyncio.run(main()) == sync


async def test_wrapped_fake_in_chain_report_event_metadata() -> None:
    model = wrap_chat_model(fake(), so.redact())
    chunks: list[AIMessageChunk] = [c async for c in model.astream("hi")]
    last = chunks[-1]
    assert last.chunk_position == "last"
    assert last.response_metadata["streamops"]["sections"]["redact"]["max_held"] > 0


def test_example_langchain_events(capsys: pytest.CaptureFixture[str]) -> None:
    import runpy
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "examples" / "langchain_events.py"
    events = runpy.run_path(str(path))["main"]()
    no_secret(events)
    assert events[-1]["data"]["output"] == "Ask [EMAIL]; the key is [OPENAI_KEY]."
    out = capsys.readouterr().out
    assert "redacted: {'email': 1, 'openai_key': 1}" in out


class WholeReply(BaseChatModel):
    """A provider integration with ``_generate`` only: its reply is one whole message."""

    message: AIMessage

    @property
    def _llm_type(self) -> str:
        return "whole-reply"

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: Any = None,
        **kwargs: Any,
    ) -> ChatResult:
        from langchain_core.outputs import ChatGeneration

        return ChatResult(generations=[ChatGeneration(message=self.message)])


@pytest.mark.parametrize("op", [so.redact(["email"]), so.budget(max_tokens=1000)])
def test_a_whole_reply_keeps_its_tool_call_whole(op: so.Operator[Any, Any]) -> None:
    # The arguments come and end in one chunk: what the channel held at the end
    # joins the call's own arguments, never a second, invalid call.
    args = {"query": "weather in Paris", "note": "mail ann@example.com"}
    call = {"name": "search", "args": args, "id": "call_1"}
    out = wrap_chat_model(WholeReply(message=AIMessage("", tool_calls=[call])), op).invoke("hi")
    assert out.invalid_tool_calls == []
    [kept] = out.tool_calls
    assert kept["id"] == "call_1"
    expected = {**args, "note": "mail [EMAIL]"} if "redact" in repr(op) else args
    assert kept["args"] == expected


def test_a_whole_reply_keeps_its_invalid_tool_calls() -> None:
    # Arguments that are not JSON stay an invalid call, redacted. (Arguments
    # that LangChain's parse_partial_json can complete become a call, as they
    # would in any stream of chunks: that is LangChain's chunk algebra.)
    bad = "city=Paris; to=ann@example.com"
    invalid = {"name": "weather", "args": bad, "id": "call_1", "error": "bad JSON"}
    model = WholeReply(message=AIMessage("", invalid_tool_calls=[invalid]))
    out = wrap_chat_model(model, so.redact(["email"])).invoke("hi")
    assert out.tool_calls == []
    [kept] = out.invalid_tool_calls
    assert (kept["name"], kept["id"]) == ("weather", "call_1")
    assert kept["args"] == "city=Paris; to=[EMAIL]"
