"""What comes whole in a provider stream is redacted too: tools' outputs, results, quotes.

Providers that run tools themselves (code execution, web search, MCP) stream
the tool's output to the client beside the answer, and citations quote their
sources. None of it is a delta, but all of it is text the client shows: each
string in it runs through the text operators as a ``tool_output`` text of its
own. The sweeps build every output item and content block type of the
installed SDKs with a secret in each string field that is text (not an id, an
enum value or a blob) and check that no secret survives.
"""

from __future__ import annotations

import enum
import json
import types
import typing
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import pytest
from anthropic.types import RawContentBlockStartEvent
from anthropic.types import RawMessageStreamEvent as AnthropicEvent
from google.genai import types as gt
from helpers import anthropic_message
from openai.types.responses import ResponseOutputItem, ResponseStreamEvent
from pydantic import BaseModel, TypeAdapter, ValidationError

import streamops as so
from streamops._providers._gemini import _OPAQUE as _GEMINI_OPAQUE
from streamops._providers._lenses import _OPAQUE_KEYS

SECRET = "sk-proj-4f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c"
TEXT = f"it printed {SECRET} twice"


def redact() -> so.Operator[Any, Any]:
    return so.redact(["openai_key"])


def _union_args(tp: Any) -> tuple[Any, ...]:
    if get_origin(tp) is Annotated:
        tp = get_args(tp)[0]
    return get_args(tp) if get_origin(tp) in (Union, types.UnionType) else (tp,)


def sample(tp: Any, name: str = "", opaque: frozenset[str] = _OPAQUE_KEYS) -> Any:
    """A value of type ``tp`` with the secret in each string that is text (not an id)."""
    origin = get_origin(tp)
    if origin is Annotated:
        return sample(get_args(tp)[0], name, opaque)
    if tp is str:
        return "x1" if name in opaque else TEXT
    if tp is object or tp is typing.Any:
        return TEXT
    if tp is bool:
        return False
    if tp in (int, float):
        return 1
    if origin is Literal:
        return get_args(tp)[0]
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return next(iter(tp)).value
    if origin in (Union, types.UnionType):
        for arg in get_args(tp):
            if arg is type(None):
                continue
            value = sample(arg, name, opaque)
            try:
                TypeAdapter(arg).validate_python(value)
            except (ValidationError, TypeError):
                continue
            return value
        return None
    if origin in (list, typing.List, typing.Sequence, tuple):  # noqa: UP006
        return [sample(get_args(tp)[0], name, opaque)]
    if origin in (dict, typing.Dict):  # noqa: UP006
        return {"note": sample(get_args(tp)[1], name, opaque)}
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return {
            (f.alias or key): sample(f.annotation, key, opaque)
            for key, f in tp.model_fields.items()
        }
    return None


def dump(chunks: list[Any]) -> str:
    return json.dumps(
        [c.model_dump(mode="json") if isinstance(c, BaseModel) else c for c in chunks]
    )


# -- OpenAI Responses -------------------------------------------------------------

RESPONSE = {
    "id": "r1",
    "object": "response",
    "created_at": 0,
    "model": "m",
    "parallel_tool_calls": True,
    "tool_choice": "auto",
    "tools": [],
}
ITEM_CLASSES = _union_args(ResponseOutputItem)


@pytest.mark.parametrize("cls", ITEM_CLASSES, ids=lambda c: c.__name__)
def test_every_responses_output_item_is_redacted(cls: type[BaseModel]) -> None:
    item = cls.model_validate(sample(cls)).model_dump(mode="json", exclude_none=True)
    if cls.__name__ == "ImageGenerationCall":
        item["result"] = "aGVsbG8="  # the image's base64 data, no text
    raw = [
        {"type": "response.output_item.added", "sequence_number": 0, "output_index": 0,
         "item": item},
        {"type": "response.output_item.done", "sequence_number": 1, "output_index": 0,
         "item": item},
        {"type": "response.completed", "sequence_number": 2,
         "response": {**RESPONSE, "status": "completed", "output": [item]}},
    ]  # fmt: skip
    adapter: TypeAdapter[Any] = TypeAdapter(ResponseStreamEvent)
    for source in (raw, [adapter.validate_python(e) for e in raw]):
        out = list(redact()(source))
        if SECRET not in json.dumps(item):  # an item with no text at all (compaction)
            assert dump(out) == dump(source)
            continue
        assert SECRET not in dump(out)
        assert "[OPENAI_KEY]" in dump(out)
        # Still the provider's types, ids and all.
        assert [type(e) for e in out] == [type(e) for e in source]
        assert dump(out).count('"x1"') == dump(list(source)).count('"x1"')


def test_code_interpreter_logs_equal_in_the_item_and_the_final_response() -> None:
    item = {
        "type": "code_interpreter_call", "id": "ci1", "status": "completed",
        "container_id": "c", "code": "print(key)",
        "outputs": [{"type": "logs", "logs": f"{SECRET}\n"}],
    }  # fmt: skip
    raw = [
        {"type": "response.output_item.done", "sequence_number": 0, "output_index": 0,
         "item": item},
        {"type": "response.completed", "sequence_number": 1,
         "response": {**RESPONSE, "status": "completed", "output": [item]}},
    ]  # fmt: skip
    done, final = redact()(raw)
    assert done["item"]["outputs"] == [{"type": "logs", "logs": "[OPENAI_KEY]\n"}]
    assert final["response"]["output"][0] == done["item"]


def test_output_text_annotations_are_redacted() -> None:
    annotation = {
        "type": "url_citation", "url": f"https://example.com/?k={SECRET}",
        "title": TEXT, "start_index": 0, "end_index": 4,
    }  # fmt: skip
    raw = [
        {"type": "response.output_text.annotation.added", "sequence_number": 0,
         "item_id": "m1", "output_index": 0, "content_index": 0, "annotation_index": 0,
         "annotation": annotation},
        {"type": "response.content_part.done", "sequence_number": 1, "item_id": "m1",
         "output_index": 0, "content_index": 0,
         "part": {"type": "output_text", "text": "", "annotations": [annotation]}},
    ]  # fmt: skip
    assert SECRET not in dump(list(redact()(raw)))


# -- Anthropic --------------------------------------------------------------------

BLOCK_CLASSES = _union_args(RawContentBlockStartEvent.model_fields["content_block"].annotation)


def one_block_both_ways(block: dict[str, Any]) -> tuple[list[Any], list[Any]]:
    """An Anthropic stream of one content ``block``: wire dicts, and the SDK's event types."""
    raw = anthropic_message(
        {"type": "content_block_start", "index": 0, "content_block": block},
        {"type": "content_block_stop", "index": 0},
    )
    adapter: TypeAdapter[Any] = TypeAdapter(AnthropicEvent)
    return raw, [adapter.validate_python(e) for e in raw]


@pytest.mark.parametrize("cls", BLOCK_CLASSES, ids=lambda c: c.__name__)
def test_every_anthropic_content_block_is_redacted(cls: type[BaseModel]) -> None:
    block = cls.model_validate(sample(cls)).model_dump(mode="json", exclude_none=True)
    if cls.__name__ in ("ThinkingBlock", "RedactedThinkingBlock", "ContainerUploadBlock"):
        pytest.skip("no text a client shows in the block's start (thinking streams as deltas)")
    for source in one_block_both_ways(block):
        out = list(redact()(source))
        assert SECRET not in dump(out), cls.__name__
        assert [type(e) for e in out] == [type(e) for e in source]


def test_a_fetched_page_in_plain_text_is_redacted_and_counted() -> None:
    # web_fetch_tool_result: a PlainTextSource's "data" is the page's text, not a blob
    page = {"type": "text", "media_type": "text/plain", "data": TEXT}
    document = {"type": "document", "title": "Contact", "citations": {"enabled": True},
                "source": page}  # fmt: skip
    fetched = {"type": "web_fetch_result", "url": "https://example.com/c", "content": document,
               "retrieved_at": "2025-08-25T10:30:00Z"}  # fmt: skip
    block = {"type": "web_fetch_tool_result", "tool_use_id": "srvtoolu_1", "content": fetched}
    raw, objects = one_block_both_ways(block)
    for source in (raw, objects):
        out = list(redact()(source))
        assert SECRET not in dump(out)
        assert "it printed [OPENAI_KEY] twice" in dump(out)
    stream = so.budget(max_tokens=10**6, channels=["content", "tool_output"])(raw)
    list(stream)
    usage = stream.report["budget"]
    assert isinstance(usage, so.BudgetUsage)
    assert usage.channel_tokens["tool_output"] >= len(so.get_encoding("cl100k_base").encode(TEXT))


def test_citation_quotes_are_redacted_and_the_text_stays_exact() -> None:
    email = "ann@example.com"
    raw = anthropic_message(
        {"type": "content_block_start", "index": 0,
         "content_block": {"type": "text", "text": "", "citations": []}},
        {"type": "content_block_delta", "index": 0,
         "delta": {"type": "text_delta", "text": "Her address is ann@exa"}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "citations_delta",
         "citation": {"type": "char_location", "cited_text": f"Contact: {email}",
                      "document_index": 0, "document_title": f"card of {email}",
                      "start_char_index": 0, "end_char_index": 24}}},
        {"type": "content_block_delta", "index": 0,
         "delta": {"type": "text_delta", "text": "mple.com."}},
        {"type": "content_block_stop", "index": 0},
    )  # fmt: skip
    adapter: TypeAdapter[Any] = TypeAdapter(AnthropicEvent)
    for source in (raw, [adapter.validate_python(e) for e in raw]):
        out = list(so.redact(["email"])(source))
        assert email not in dump(out)
        text = "".join(
            d["delta"]["text"]
            for d in json.loads(dump(out))
            if d["type"] == "content_block_delta" and d["delta"]["type"] == "text_delta"
        )
        # The quote is a text of its own: the answer's address is still one match.
        assert text == "Her address is [EMAIL]."


def test_a_tool_input_given_whole_in_the_block_start_is_redacted() -> None:
    raw = anthropic_message(
        {"type": "content_block_start", "index": 0, "content_block": {
            "type": "tool_use", "id": "t1", "name": "send", "input": {"key": SECRET, "n": 2}}},
        {"type": "content_block_stop", "index": 0},
    )  # fmt: skip
    out = list(redact()(raw))
    assert out[1]["content_block"]["input"] == {"key": "[OPENAI_KEY]", "n": 2}


# -- Gemini -----------------------------------------------------------------------


def _gemini(part: gt.Part) -> gt.GenerateContentResponse:
    content = gt.Content(role="model", parts=[part])
    return gt.GenerateContentResponse(candidates=[gt.Candidate(content=content)])


def test_gemini_code_execution_output_is_redacted() -> None:
    result = gt.CodeExecutionResult(outcome=gt.Outcome.OUTCOME_OK, output=f"{SECRET}\n")
    chunks = [
        _gemini(
            gt.Part(executable_code=gt.ExecutableCode(language=gt.Language.PYTHON, code="print(k)"))
        ),
        _gemini(gt.Part(code_execution_result=result)),
        _gemini(gt.Part(text="done")),
    ]
    out = list(redact()(chunks))
    assert SECRET not in dump(out)
    part = out[1].candidates[0].content.parts[0]
    assert part.code_execution_result.output == "[OPENAI_KEY]\n"
    assert part.code_execution_result.outcome == gt.Outcome.OUTCOME_OK
    wire = [c.model_dump(mode="json", by_alias=True, exclude_none=True) for c in chunks]
    assert SECRET not in dump(list(redact()(wire)))


# Grounding (Google Search, RAG, URL context) comes whole on a candidate: the supports
# quote the answer (segment.text), the chunks quote their sources, the queries are
# the model's own words. Identifiers, tokens and blobs in it are left alone.
GEMINI_OPAQUE = _OPAQUE_KEYS | _GEMINI_OPAQUE
GEMINI_METADATA = (gt.GroundingMetadata, gt.UrlContextMetadata)


@pytest.mark.parametrize("cls", GEMINI_METADATA, ids=lambda c: c.__name__)
def test_gemini_grounding_and_url_context_metadata_are_redacted(cls: type[BaseModel]) -> None:
    metadata = cls.model_validate(sample(cls, opaque=GEMINI_OPAQUE))
    assert SECRET in dump([metadata])  # the sample has the secret in each text field
    field = "grounding_metadata" if cls is gt.GroundingMetadata else "url_context_metadata"
    candidate = gt.Candidate(
        content=gt.Content(role="model", parts=[gt.Part(text="done")]),
        finish_reason=gt.FinishReason.STOP,
    )
    last = gt.GenerateContentResponse(candidates=[candidate.model_copy(update={field: metadata})])
    chunks = [_gemini(gt.Part(text="Searching. ")), last]
    out = list(redact()(chunks))
    assert SECRET not in dump(out)
    fixed = getattr(out[-1].candidates[0], field)
    for name in GEMINI_OPAQUE & cls.model_fields.keys():
        assert getattr(fixed, name) == "x1"  # identifiers pass through
    wire = [c.model_dump(mode="json", by_alias=True, exclude_none=True) for c in chunks]
    assert SECRET not in dump(list(redact()(wire)))


# Every other field of a candidate, and of the response around it, that holds text
# the API writes: finish_message (why the model stopped), the prompt feedback's
# block_reason_message, the model status message. (content has its own tests;
# logprobs_result spells the text and is dropped with it; continuation_token is bytes.)
GEMINI_CANDIDATE_FIELDS = sorted(
    set(gt.Candidate.model_fields)
    - {"content", "finish_reason", "logprobs_result", "continuation_token"}
)
# (sdk_http_response: the HTTP headers; automatic_function_calling_history: the
# request's own contents; parsed: set by the SDK from the text, not on the wire)
GEMINI_RESPONSE_FIELDS = sorted(
    set(gt.GenerateContentResponse.model_fields)
    - {"candidates", "sdk_http_response", "automatic_function_calling_history", "parsed"}
)


@pytest.mark.parametrize(
    ("holder", "name"),
    [("candidate", n) for n in GEMINI_CANDIDATE_FIELDS]
    + [("response", n) for n in GEMINI_RESPONSE_FIELDS],
)
def test_every_gemini_candidate_and_response_field_with_text_is_redacted(
    holder: str, name: str
) -> None:
    cls = gt.Candidate if holder == "candidate" else gt.GenerateContentResponse
    ids = GEMINI_OPAQUE | {"model_version", "response_id"}
    value = sample(cls.model_fields[name].annotation, name, ids)
    candidate = {"content": {"role": "model", "parts": [{"text": "done"}]}, "finishReason": "STOP"}
    if holder == "candidate":
        candidate[name] = value
        last = gt.GenerateContentResponse.model_validate({"candidates": [candidate]})
    else:
        last = gt.GenerateContentResponse.model_validate({"candidates": [candidate], name: value})
    chunks = [_gemini(gt.Part(text="Hello. ")), last]
    wire = [c.model_dump(mode="json", by_alias=True, exclude_none=True) for c in chunks]
    if SECRET not in dump(chunks):  # no text in it (numbers, enums, identifiers)
        assert dump(list(redact()(chunks))) == dump(chunks)
        return
    for source in (chunks, wire):
        out = list(redact()(source))
        assert SECRET not in dump(out), name
        assert "[OPENAI_KEY]" in dump(out)
        assert [type(c) for c in out] == [type(c) for c in source]


def test_a_blocked_prompt_s_message_is_redacted_in_a_chunk_without_candidates() -> None:
    feedback = {"blockReason": "OTHER", "blockReasonMessage": f"The prompt quoted {SECRET}."}
    chunk = gt.GenerateContentResponse.model_validate({"promptFeedback": feedback})
    for source in ([chunk], [chunk.model_dump(mode="json", by_alias=True, exclude_none=True)]):
        out = list(redact()(source))
        assert SECRET not in dump(out)
        assert "The prompt quoted [OPENAI_KEY]." in dump(out)


def test_a_note_the_api_repeats_in_every_chunk_is_fed_once() -> None:
    status = {"message": f"Model retiring soon, see {SECRET}", "modelStage": "STABLE"}
    chunks = [
        {"candidates": [{"content": {"role": "model", "parts": [{"text": t}]}, **extra}],
         "modelStatus": status}
        for t, extra in (("Hello ", {}), ("there.", {"finishReason": "STOP",
                                                     "finishMessage": f"Stopped at {SECRET}"}))
    ]  # fmt: skip
    stream = so.budget(max_tokens=10**6, channels=["tool_output"])(chunks)
    assert [c["modelStatus"] for c in stream] == [status, status]
    tokens = so.get_encoding("cl100k_base").encode
    expected = len(tokens(status["message"])) + len(tokens(f"Stopped at {SECRET}"))
    usage = stream.report["budget"]
    assert isinstance(usage, so.BudgetUsage)
    assert usage.channel_tokens == {"tool_output": expected}
    redacted = redact()(chunks)
    out = list(redacted)
    assert [c["modelStatus"]["message"] for c in out] == [
        "Model retiring soon, see [OPENAI_KEY]"
    ] * 2
    assert out[-1]["candidates"][0]["finishMessage"] == "Stopped at [OPENAI_KEY]"
    assert [e.kind for e in redacted.report.events].count("redact.redact") == 2


@pytest.mark.parametrize("name", ["tool_call", "tool_response", "audio_transcription"])
def test_gemini_parts_that_come_whole_are_redacted(name: str) -> None:
    value = sample(gt.Part.model_fields[name].annotation, name, GEMINI_OPAQUE)
    part = gt.Part.model_validate({name: value})
    assert SECRET in dump([part])
    chunks = [_gemini(part), _gemini(gt.Part(text="done"))]
    out = list(redact()(chunks))
    assert SECRET not in dump(out)
    assert "x1" in dump(out)  # its id passes through
    wire = [c.model_dump(mode="json", by_alias=True, exclude_none=True) for c in chunks]
    assert SECRET not in dump(list(redact()(wire)))


def test_gemini_grounding_support_quotes_the_answer_redacted() -> None:
    support = gt.GroundingSupport(
        segment=gt.Segment(start_index=0, end_index=60, text=f"Your key is {SECRET}."),
        grounding_chunk_indices=[0],
    )
    source = gt.GroundingChunk(
        retrieved_context=gt.GroundingChunkRetrievedContext(
            uri="gs://docs/a.txt", title="notes", text=f"key: {SECRET}"
        )
    )
    metadata = gt.GroundingMetadata(
        grounding_supports=[support], grounding_chunks=[source], web_search_queries=[SECRET]
    )
    chunks = [
        _gemini(gt.Part(text=f"Your key is {SECRET[:10]}")),
        gt.GenerateContentResponse(
            candidates=[
                gt.Candidate(
                    content=gt.Content(role="model", parts=[gt.Part(text=f"{SECRET[10:]}.")]),
                    finish_reason=gt.FinishReason.STOP,
                    grounding_metadata=metadata,
                )
            ]
        ),
    ]
    out = list(redact()(chunks))
    assert SECRET not in dump(out)
    got = out[-1].candidates[0].grounding_metadata
    assert got.grounding_supports[0].segment.text == "Your key is [OPENAI_KEY]."
    assert got.grounding_supports[0].segment.end_index == 60  # positions pass through
    assert got.grounding_chunks[0].retrieved_context.text == "key: [OPENAI_KEY]"
    assert got.grounding_chunks[0].retrieved_context.uri == "gs://docs/a.txt"
    assert got.web_search_queries == ["[OPENAI_KEY]"]


def test_gemini_logprobs_of_a_changed_chunk_are_dropped() -> None:
    """Logprobs spell the chunk's text token by token: kept only while the text is."""

    def chunk(text: str, finish: gt.FinishReason | None = None) -> gt.GenerateContentResponse:
        tokens = [text[i : i + 3] for i in range(0, len(text), 3)]
        chosen = [gt.LogprobsResultCandidate(token=t, log_probability=-0.1) for t in tokens]
        logprobs = gt.LogprobsResult(
            chosen_candidates=chosen,
            top_candidates=[gt.LogprobsResultTopCandidates(candidates=[c]) for c in chosen],
        )
        candidate = gt.Candidate(
            content=gt.Content(role="model", parts=[gt.Part(text=text)]),
            logprobs_result=logprobs,
            avg_logprobs=-0.1,
            finish_reason=finish,
        )
        return gt.GenerateContentResponse(candidates=[candidate])

    chunks = [chunk("Plain text. "), chunk(f"Key {SECRET[:12]}"), chunk(f"{SECRET[12:]} ok")]
    chunks.append(chunk("bye", gt.FinishReason.STOP))
    out = list(redact()(chunks))
    tokens = [
        c.token
        for o in out
        if o.candidates[0].logprobs_result is not None
        for c in o.candidates[0].logprobs_result.chosen_candidates or ()
    ]
    assert SECRET[:12] not in "".join(tokens)
    assert SECRET not in dump(out)
    for o, c in ((out[0], chunks[0]), (out[-1], chunks[-1])):  # unchanged texts keep theirs
        assert o.candidates is not None
        assert c.candidates is not None
        assert o.candidates[0].logprobs_result == c.candidates[0].logprobs_result
    wire = [c.model_dump(mode="json", by_alias=True, exclude_none=True) for c in chunks]
    out_wire = list(redact()(wire))
    assert SECRET[:12] not in dump(out_wire)
    assert out_wire[0] == wire[0]


# -- the budget counts what is billed ------------------------------------------------


def test_the_budget_does_not_count_tool_output_unless_asked() -> None:
    long_output = "word " * 500
    raw = anthropic_message(
        {"type": "content_block_start", "index": 0, "content_block": {
            "type": "code_execution_tool_result", "tool_use_id": "s1",
            "content": {"type": "code_execution_result", "stdout": long_output,
                        "stderr": "", "return_code": 0, "content": []}}},
        {"type": "content_block_stop", "index": 0},
        {"type": "content_block_start", "index": 1,
         "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 1,
         "delta": {"type": "text_delta", "text": "All done."}},
        {"type": "content_block_stop", "index": 1},
    )  # fmt: skip
    stream = so.budget(max_tokens=50)(raw)
    out = list(stream)
    assert stream.report.stop_reason is not so.StopReason.BUDGET
    assert out[1]["content_block"]["content"]["stdout"] == long_output
    counted = so.budget(max_tokens=50, channels=["content", "tool_output"])(raw)
    list(counted)
    assert counted.report.stop_reason is so.StopReason.BUDGET
