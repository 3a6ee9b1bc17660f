"""Gemini texts the review found unredacted or lost: transcription words, citations, partial args.

- A transcription's ``words`` spell its ``text`` word by word (each with its
  timing): they must show what the redacted text shows, whatever word a
  secret was split across, in a part (``audio_transcription``, whole) and in
  a Live session (``output_transcription``/``input_transcription``, streamed
  across messages).
- A candidate's ``citation_metadata`` titles are texts (their URIs are not).
- Text a streamed function call's ``partial_args`` channel still holds at a
  finish, or at the stream's end, comes back in a function-call part of that
  argument, never as answer text, never lost.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from google.genai import types
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import streamops as so

EMAIL = "ann@example.com"
CARD = "4111 1111 1111 1111"
SAID = f"mail {EMAIL} card {CARD}"


def word_infos(text: str, start: int = 0) -> list[dict[str, Any]]:
    return [
        {"word": w, "startOffset": f"{start + i}s", "endOffset": f"{start + i + 1}s"}
        for i, w in enumerate(text.split())
    ]


def dump(chunks: list[Any]) -> str:
    return json.dumps(
        [c if isinstance(c, dict) else c.model_dump(mode="json", exclude_none=True) for c in chunks]
    )


def as_dict(chunk: Any) -> Any:
    if isinstance(chunk, dict):
        return chunk
    return chunk.model_dump(mode="json", exclude_none=True, by_alias=True)


def secret_free(chunks: list[Any], *secrets: str) -> None:
    dumped = dump(chunks)
    for secret in secrets:
        assert secret not in dumped
        for piece in secret.split():  # no word of it at all (the card's "4111")
            assert piece not in dumped.replace("[CREDIT_CARD]", ""), piece


# -- a part's audio transcription (whole) ------------------------------------------


def gemini_chunk(parts: list[dict[str, Any]], finish: str | None = "STOP") -> dict[str, Any]:
    candidate: dict[str, Any] = {"content": {"role": "model", "parts": parts}, "index": 0}
    if finish:
        candidate["finishReason"] = finish
    return {"candidates": [candidate]}


@pytest.mark.parametrize("objects", [False, True])
def test_a_parts_transcription_words_are_redacted_as_one_text(objects: bool) -> None:
    chunk: Any = gemini_chunk([{"audioTranscription": {"text": SAID, "words": word_infos(SAID)}}])
    if objects:
        chunk = types.GenerateContentResponse.model_validate(chunk)
    out = list(so.redact()([chunk]))
    secret_free(out, EMAIL, CARD)
    part = as_dict(out[0])["candidates"][0]["content"]["parts"][0]
    tr = part["audioTranscription"]
    assert tr["text"] == "mail [EMAIL] card [CREDIT_CARD]"
    assert [w["word"] for w in tr["words"]] == [
        "mail", "[EMAIL]", "card", "[CREDIT_CARD]", "", "", "",
    ]  # fmt: skip
    # the timings stay on their words
    assert [w["startOffset"] for w in tr["words"]] == [f"{i}s" for i in range(7)]


def test_transcription_words_that_do_not_spell_the_text_are_redacted_too() -> None:
    # words that are not the text's own are a text of their own: redacted as one
    words = word_infos(f"to {CARD}")
    chunk = gemini_chunk([{"audioTranscription": {"text": "to the card", "words": words}}])
    out = list(so.redact()([chunk]))
    secret_free(out, CARD)
    tr = out[0]["candidates"][0]["content"]["parts"][0]["audioTranscription"]
    assert tr["text"] == "to the card"
    assert [w["word"] for w in tr["words"]] == ["to", "[CREDIT_CARD]", "", "", ""]


# -- citations ------------------------------------------------------------------------


@pytest.mark.parametrize("objects", [False, True])
def test_citation_titles_are_redacted_their_uris_kept(objects: bool) -> None:
    uri = "https://github.com/x/y"
    chunk: Any = gemini_chunk([{"text": "Here is the snippet."}])
    chunk["candidates"][0]["citationMetadata"] = {
        "citations": [{"title": f"notes of {EMAIL}", "uri": uri, "startIndex": 0, "endIndex": 4}]
    }
    if objects:
        chunk = types.GenerateContentResponse.model_validate(chunk)
    out = list(so.redact()([chunk]))
    secret_free(out, EMAIL)
    cite = as_dict(out[0])["candidates"][0]["citationMetadata"]["citations"][0]
    assert cite["title"] == "notes of [EMAIL]"
    assert cite["uri"] == uri


# -- a Live session's transcriptions (streamed) ------------------------------------


def live(field: str, text: str, words: list[dict[str, Any]] | None, **extra: Any) -> Any:
    said: dict[str, Any] = {"text": text}
    if words is not None:
        said["words"] = words
    return {"serverContent": {field: said, **extra}}


def live_said(out: list[Any], field: str) -> tuple[str, list[str], list[str | None]]:
    """The transcript, its words and their start offsets over a Live session's messages."""
    text = ""
    words: list[str] = []
    starts: list[str | None] = []
    key = {"output_transcription": "outputTranscription",
           "input_transcription": "inputTranscription"}[field]  # fmt: skip
    for m in map(as_dict, out):
        tr = (m.get("serverContent") or {}).get(key) or {}
        text += tr.get("text") or ""
        for w in tr.get("words") or ():
            words.append(w.get("word") or "")
            starts.append(w.get("startOffset"))
    return text, words, starts


@pytest.mark.parametrize("objects", [False, True])
@pytest.mark.parametrize("field", ["outputTranscription", "inputTranscription"])
def test_live_transcription_words_are_redacted(objects: bool, field: str) -> None:
    msgs: list[Any] = [
        live(field, SAID, word_infos(SAID)),
        {"serverContent": {"turnComplete": True}},
    ]
    if objects:
        msgs = [types.LiveServerMessage.model_validate(m) for m in msgs]
    out = list(so.redact()(msgs))
    secret_free(out, EMAIL, CARD)
    snake = "output_transcription" if field.startswith("output") else "input_transcription"
    text, words, starts = live_said(out, snake)
    assert text == "mail [EMAIL] card [CREDIT_CARD]"
    assert " ".join(w for w in words if w) == text
    assert starts[:7] == [f"{i}s" for i in range(7)]


@pytest.mark.parametrize("objects", [False, True])
def test_live_transcription_words_of_a_card_split_across_messages(objects: bool) -> None:
    first, second = "card 4111 1111", " 1111 1111 thanks"
    msgs: list[Any] = [
        live("outputTranscription", first, word_infos(first)),
        live("outputTranscription", second, word_infos(second, 3)),
        {"serverContent": {"turnComplete": True}},
    ]
    if objects:
        msgs = [types.LiveServerMessage.model_validate(m) for m in msgs]
    out = list(so.redact()(msgs))
    secret_free(out, CARD)
    text, words, _ = live_said(out, "output_transcription")
    assert text == "card [CREDIT_CARD] thanks"
    assert " ".join(w for w in words if w) == text


# -- partial args held at a finish or at the end -------------------------------------


def vertex(parts: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"candidates": [{"content": {"role": "model", "parts": parts}, "index": 0, **extra}]}


def partial_call(value: str, more: bool = True, path: str = "$.body") -> dict[str, Any]:
    arg = {"jsonPath": path, "stringValue": value, "willContinue": more}
    return {"functionCall": {"name": "send", "willContinue": True, "partialArgs": [arg]}}


def call_values(out: list[Any]) -> tuple[dict[str, str], list[str]]:
    """Each argument's text over the stream's function-call parts, and the answer text parts."""
    values: dict[str, str] = {}
    texts = []
    for c in map(as_dict, out):
        for p in c["candidates"][0]["content"]["parts"]:
            if p.get("text"):
                texts.append(p["text"])
            call = p.get("functionCall")
            if call:
                assert call["name"] == "send"
                for a in call.get("partialArgs") or ():
                    values[a["jsonPath"]] = values.get(a["jsonPath"], "") + a.get("stringValue", "")
    return values, texts


@pytest.mark.parametrize("objects", [False, True])
@pytest.mark.parametrize("finish", ["MAX_TOKENS", "STOP", None])
def test_held_partial_args_come_back_in_their_call(objects: bool, finish: str | None) -> None:
    raw: list[Any] = [
        vertex([partial_call("Call me at ")]),
        vertex([partial_call("555-123-4567 tomorrow")]),
    ]
    if finish:
        raw.append(vertex([], finishReason=finish))
    if objects:
        raw = [types.GenerateContentResponse.model_validate(c) for c in raw]
    out = list(so.redact()(raw))
    values, texts = call_values(out)
    assert values == {"$.body": "Call me at 555-123-4567 tomorrow"}
    assert texts == []


@pytest.mark.parametrize("finish", ["MAX_TOKENS", None])
def test_a_partial_secret_held_in_partial_args_at_a_cut_is_masked(finish: str | None) -> None:
    raw = [vertex([partial_call("write to ann@exa")])]
    if finish:
        raw.append(vertex([], finishReason=finish))
    out = list(so.redact(["email"])(raw))
    values, texts = call_values(out)
    assert "ann" not in dump(out)
    assert values["$.body"].startswith("write to ")
    assert texts == []


def test_held_partial_args_of_two_paths_each_come_back_in_their_own_argument() -> None:
    raw = [
        vertex([partial_call("to ann@example.com", path="$.to")]),
        vertex([{"text": "Sending."}, partial_call("hello ann@exa", path="$.body")]),
        vertex([partial_call("mple.com", path="$.body")], finishReason="STOP"),
    ]
    out = list(so.redact(["email"])(raw))
    values, texts = call_values(out)
    assert values == {"$.to": "to [EMAIL]", "$.body": "hello [EMAIL]"}
    assert texts == ["Sending."]


def test_a_budget_counts_held_partial_args_exactly() -> None:
    enc = so.get_encoding("cl100k_base")
    body = "Call me at 555-123-4567 tomorrow"
    raw = [vertex([partial_call("Call me at ")]), vertex([partial_call("555-123-4567 tomorrow")])]
    for tail in ([vertex([], finishReason="MAX_TOKENS")], []):
        stream = so.budget(max_tokens=10**6, channels=["content", "tool_arguments"])(raw + tail)
        out = list(stream)
        values, _ = call_values(out)
        assert values == {"$.body": body}
        usage = stream.report["budget"]
        assert isinstance(usage, so.BudgetUsage)
        assert usage.completion_tokens == len(enc.encode(body))


# -- properties: a secret split anywhere never shows --------------------------------


def splits(text: str) -> st.SearchStrategy[list[str]]:
    cuts = st.lists(st.integers(1, max(len(text) - 1, 1)), max_size=6, unique=True)
    return cuts.map(
        lambda c: [text[a:b] for a, b in itertools.pairwise([0, *sorted(c), len(text)])]
    )


PROSE = ["mail", EMAIL, "or", "call", "card", "to", "today", "ok", "4", "11"]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    words=st.lists(st.sampled_from(PROSE), min_size=1, max_size=12),
    data=st.data(),
    objects=st.booleans(),
)
def test_live_transcription_words_never_show_a_secret(
    words: list[str], data: Any, objects: bool
) -> None:
    text = " ".join([*words, "mail", EMAIL, "card", CARD, "ok"])
    # messages split at word boundaries (the words of each message spell its text)
    tokens = text.split(" ")
    cuts = data.draw(st.lists(st.integers(1, len(tokens) - 1), max_size=5, unique=True))
    bounds = [0, *sorted(cuts), len(tokens)]
    msgs: list[Any] = []
    n = 0
    for a, b in itertools.pairwise(bounds):
        piece = (" " if a else "") + " ".join(tokens[a:b])
        msgs.append(live("outputTranscription", piece, word_infos(piece, n)))
        n += b - a
    if data.draw(st.booleans(), label="turn complete"):
        msgs.append({"serverContent": {"turnComplete": True}})
    if objects:
        msgs = [types.LiveServerMessage.model_validate(m) for m in msgs]
    out = list(so.redact()(msgs))
    said, out_words, starts = live_said(out, "output_transcription")
    for w in out_words:
        assert EMAIL not in w, w
        assert "4111" not in w, w
        assert "1111" not in w, w
    assert EMAIL not in said
    assert "4111" not in said
    # the words show the text, in order (none lost, none made up)
    assert " ".join(w for w in out_words if w) == said.strip()
    timed = [s for s in starts if s is not None]  # (a late entry has no timing)
    assert timed == [f"{i}s" for i in range(len(timed))]
    assert len(timed) == len(text.split())


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pieces=splits(f"Write to {EMAIL} now"), finish=st.sampled_from([None, "STOP", "MAX_TOKENS"]))
def test_partial_args_never_show_a_secret_and_keep_the_rest(
    pieces: list[str], finish: str | None
) -> None:
    raw = [vertex([partial_call(p)]) for p in pieces]
    if finish:
        raw.append(vertex([], finishReason=finish))
    out = list(so.redact(["email"])(raw))
    values, texts = call_values(out)
    assert texts == []
    assert EMAIL not in dump(out)
    assert values["$.body"] == "Write to [EMAIL] now"


SENTENCE = f"mail {EMAIL} card {CARD} ok"
REDACTED = "mail [EMAIL] card [CREDIT_CARD] ok"


def squeeze(text: str) -> str:
    return "".join(text.split())


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pieces=splits(SENTENCE), objects=st.booleans())
def test_a_parts_transcription_words_cut_anywhere_never_show_a_secret(
    pieces: list[str], objects: bool
) -> None:
    # word entries cut anywhere in the text, a secret's characters over several
    words = [{"word": p.strip(), "startOffset": f"{i}s"} for i, p in enumerate(pieces) if p.strip()]
    chunk: Any = gemini_chunk([{"audioTranscription": {"text": SENTENCE, "words": words}}])
    if objects:
        chunk = types.GenerateContentResponse.model_validate(chunk)
    (first,) = so.redact()([chunk])
    out = as_dict(first)
    tr = out["candidates"][0]["content"]["parts"][0]["audioTranscription"]
    assert tr["text"] == REDACTED
    shown = [w.get("word", "") for w in tr["words"]]
    for w in shown:
        assert "@" not in w, w
        assert not any(c.isdigit() for c in w), w
    assert squeeze("".join(shown)) == squeeze(REDACTED)  # none lost, none made up
    assert [w["startOffset"] for w in tr["words"]] == [w["startOffset"] for w in words]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pieces=splits(SENTENCE), done=st.booleans(), objects=st.booleans())
def test_live_transcription_cut_anywhere_never_shows_a_secret(
    pieces: list[str], done: bool, objects: bool
) -> None:
    msgs: list[Any] = []
    n = 0
    for piece in pieces:
        msgs.append(live("outputTranscription", piece, word_infos(piece, n)))
        n += len(piece.split())
    if done:
        msgs.append({"serverContent": {"turnComplete": True}})
    if objects:
        msgs = [types.LiveServerMessage.model_validate(m) for m in msgs]
    said, shown, starts = live_said(list(so.redact()(msgs)), "output_transcription")
    assert said == REDACTED
    for w in shown:
        assert "@" not in w, w
        assert not any(c.isdigit() for c in w), w
    assert squeeze("".join(shown)) == squeeze(REDACTED)
    assert [s for s in starts if s is not None] == [f"{i}s" for i in range(n)]


# -- a ledger budget stays exact over them ----------------------------------------

CHANNELS = ["content", "tool_arguments", "tool_output"]


def partial_stream(finish: str | None) -> list[dict[str, Any]]:
    pieces = ["Call me at ", "555-123-4567 ", "tomorrow about ", "the card ", "renewal"]
    raw = [vertex([partial_call(p)]) for p in pieces]
    raw.insert(2, vertex([{"text": "Sending the message now."}]))
    if finish:
        raw.append(vertex([{"text": " Sent."}], finishReason=finish))
    return raw


def live_stream() -> list[dict[str, Any]]:
    heard = "please mail the notes to the team"
    said = "sure, I will mail the notes to the whole team today"
    return [
        {"setupComplete": {}},
        live("inputTranscription", heard, word_infos(heard)),
        live("outputTranscription", said[:20], word_infos(said[:20])),
        live("outputTranscription", said[20:], word_infos(said[20:], 4)),
        {"serverContent": {"modelTurn": {"parts": [{"text": "Done, mailed."}]}}},
        {"serverContent": {"turnComplete": True}},
    ]


def transcript_part_stream() -> list[dict[str, Any]]:
    said = "the card number is on the back of the card"
    return [
        gemini_chunk([{"text": "Here is what you said: "}], None),
        gemini_chunk([{"audioTranscription": {"text": said, "words": word_infos(said)}}]),
    ]


def notes_stream() -> list[dict[str, Any]]:
    """Notes the API writes: the model's status in every chunk, a message at the finish."""
    status = {"modelStage": "STABLE", "message": "this model is retired after next month"}
    chunks = [
        gemini_chunk([{"text": "The answer "}], None),
        gemini_chunk([{"text": "is forty-two."}], "STOP"),
    ]
    chunks[-1]["candidates"][0]["finishMessage"] = "stopped at the end of the answer"
    return [{**c, "modelStatus": status} for c in chunks]


LEDGER_STREAMS = {
    "notes": notes_stream(),
    "partial-max-tokens": partial_stream("MAX_TOKENS"),
    "partial-stop": partial_stream("STOP"),
    "partial-no-finish": partial_stream(None),
    "live-transcripts": live_stream(),
    "part-transcription": transcript_part_stream(),
}


def run_budget(raw: list[Any], limit: int, *, ledger: bool) -> tuple[so.BudgetUsage, Any, int]:
    memory = so.MemoryLedger(limit=limit)

    async def source() -> AsyncIterator[Any]:
        for item in raw:
            yield item

    async def main() -> Any:
        if ledger:
            op = so.budget(ledger=memory, key="k", channels=CHANNELS, block=7)
        else:
            op = so.budget(max_tokens=limit, channels=CHANNELS)
        stream = op(source())
        _ = [c async for c in stream]
        return stream.report

    report = asyncio.run(main())
    usage = report["budget"]
    assert isinstance(usage, so.BudgetUsage)
    spent = asyncio.run(memory.spent("k")) if ledger else usage.completion_tokens
    return usage, report.stop_reason, spent


LEDGER_TOTALS = {
    name: run_budget(raw, 10**6, ledger=False)[0].completion_tokens
    for name, raw in LEDGER_STREAMS.items()
}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(sorted(LEDGER_STREAMS)), data=st.data())
def test_a_ledger_budget_is_exact_over_gemini_partial_args_and_transcripts(
    name: str, data: Any
) -> None:
    total = LEDGER_TOTALS[name]
    limit = data.draw(st.integers(1, total + 5), label="limit")
    usage, stop, spent = run_budget(LEDGER_STREAMS[name], limit, ledger=True)
    local, local_stop, _ = run_budget(LEDGER_STREAMS[name], limit, ledger=False)
    assert usage.completion_tokens == spent == min(limit, total)
    assert (stop is so.StopReason.BUDGET) == (limit < total)
    assert stop is local_stop
    assert usage.channel_tokens == local.channel_tokens


def test_notes_repeated_in_every_chunk_are_counted_once() -> None:
    encode = so.get_encoding("cl100k_base").encode
    texts = ["The answer is forty-two.", "this model is retired after next month"]
    texts.append("stopped at the end of the answer")
    assert LEDGER_TOTALS["notes"] == sum(len(encode(t)) for t in texts)
