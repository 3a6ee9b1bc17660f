"""Benchmark: the cost of the lens family per chunk.

- ``redact()`` over OpenAI ``ChatCompletionChunk`` objects (read, and rebuilt
  where the text changed, by the lens) against ``redact()`` over the plain
  ``str`` of the same chunks: the lens's overhead, measured in the same run.
- streamops' SSE decoder against httpx-sse's (its line decoder and event
  decoder, the same spec, behind an incremental UTF-8 decoder like ours) over
  the same OpenAI-shaped byte stream split into 64-byte reads.
"""

from __future__ import annotations

import codecs
import json
from typing import Any

from httpx_sse._decoders import SSEDecoder as HttpxSSEDecoder
from httpx_sse._decoders import SSELineDecoder

import streamops as so

from ._common import BenchResult, format_table, interleaved

_ANSWER = (
    "Sure. To reach the inventory API, export your key (mine was sk-proj-4f9a8b7c6d5e4f3a2b1c"
    "0d9e8f7a6b5c) and send a GET to /v1/items. Questions go to maria.lopez@example.com; "
    "retry on HTTP 429 with a short backoff and rotate the key if you ever see 401. "
)


def _chunks(size: int, fmt: Any) -> list[Any]:
    text = (_ANSWER * (size // len(_ANSWER) + 1))[:size]
    model = so.FakeStreamingModel(text, chunking="token", format=fmt)
    return list(model.stream("bench"))


def _text_of(chunk: Any) -> str:
    if isinstance(chunk, dict):
        return (chunk["choices"][0]["delta"].get("content") or "") if chunk["choices"] else ""
    return (chunk.choices[0].delta.content or "") if chunk.choices else ""


def _lens_row(size: int, repeat: int, fmt: Any, kind: str) -> BenchResult:
    chunks = _chunks(size, fmt)
    texts = [_text_of(c) for c in chunks]
    op = so.redact()
    out = list(op(chunks))
    # Same output, or the timing means nothing.
    assert "".join(_text_of(c) for c in out) == "".join(op(texts))
    # Each chunk whose text the operator changed (held back, released later, redacted)
    # is rebuilt: for SDK objects that is three pydantic model copies (chunk, choice,
    # delta: three models, their dicts, field sets and extras), the floor of giving
    # the app the objects it expects. OpenAIChatLens._fast makes them inline, equal
    # to model_copy(update=...)'s (tests/test_lens_fastpath.py). Measured on the
    # 2-core box: reading and feeding the objects without rebuilding them is ~1.4x;
    # building only the three objects, their dicts and the list (no fields sets, no
    # extras: not valid copies) is already ~1.65x, so 1.5x for objects would take
    # rebuilt chunks that are not model_copy's equals (or the upstream's mutated).
    changed = sum(_text_of(a) != _text_of(b) for a, b in zip(chunks, out, strict=False))
    ours, baseline = interleaved([lambda: list(op(chunks)), lambda: list(op(texts))], repeat=repeat)
    n = len(chunks)
    return BenchResult(
        operator="redact lens",
        workload=f"{n} {kind}",
        ours_s=ours / n,
        baseline_s=baseline / n,
        baseline="redact() over the str of the same chunks",
        target=1.5,  # issue 15: redact over ChatCompletionChunk objects <= 1.5x over str
        unit="s/chunk",
        note=f"{changed} of {n} chunks carry changed text and are rebuilt (every channel of"
        " each chunk is read; a changed SDK chunk is three pydantic copies)",
    )


def _wire(size: int) -> list[bytes]:
    body = "".join(
        f"data: {json.dumps(c, separators=(',', ':'))}\n\n" for c in _chunks(size, "openai-dict")
    )
    raw = (body + "data: [DONE]\n\n").encode()
    return [raw[i : i + 64] for i in range(0, len(raw), 64)]


def _ours(reads: list[bytes]) -> list[str]:
    decoder = so.SSEDecoder()
    return [e.data for read in reads for e in decoder.feed(read)]


def _httpx_sse(reads: list[bytes]) -> list[str]:
    utf8 = codecs.getincrementaldecoder("utf-8")("replace")
    lines, events = SSELineDecoder(), HttpxSSEDecoder()
    out: list[str] = []
    for read in reads:
        for line in lines.decode(utf8.decode(read)):
            event = events.decode(line)
            if event is not None:
                out.append(event.data)
    return out


def _sse_row(size: int, repeat: int) -> BenchResult:
    reads = _wire(size)
    assert _ours(reads) == _httpx_sse(reads)
    ours, baseline = interleaved([lambda: _ours(reads), lambda: _httpx_sse(reads)], repeat=repeat)
    n = len(reads)
    return BenchResult(
        operator="SSEDecoder",
        workload=f"{n} 64-byte reads of OpenAI SSE",
        ours_s=ours / n,
        baseline_s=baseline / n,
        baseline="httpx-sse line + event decoders",
        target=1.5,
        unit="s/chunk",
    )


def run(quick: bool = False) -> list[BenchResult]:
    """Time the rows on ~50 kB of answer text (4 kB when quick)."""
    size = 4_000 if quick else 50_000
    repeat = 1 if quick else 5
    return [
        _lens_row(size, repeat, "openai", "ChatCompletionChunk objects"),
        _lens_row(size, repeat, "openai-dict", "wire-format chunk dicts"),
        _sse_row(size, repeat),
    ]


if __name__ == "__main__":
    print(format_table(run()))
