"""Properties of the SSE decoder: where the reads split the bytes never matters."""

from __future__ import annotations

import itertools
import json

from hypothesis import given
from hypothesis import strategies as st

from streamops import SSEDecoder, SSEEvent, sse_format


def _chunk(i: int, delta: dict[str, object], finish: str | None = None) -> str:
    data = {
        "id": "chatcmpl-9xQ2mZ",
        "object": "chat.completion.chunk",
        "created": 1718000000,
        "model": "gpt-4o-mini-2024-07-18",
        "system_fingerprint": "fp_0ba0d124f1",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        "usage": None,
    }
    return "data: " + json.dumps(data, separators=(",", ":"), ensure_ascii=False) + "\n\n"


# The shape of an OpenAI streaming capture (``include_usage``), with the things
# proxies add: a keep-alive comment, CRLF line ends in one event, an event
# name and id, and multi-byte characters that random splits cut in half.
_USAGE = {"prompt_tokens": 9, "completion_tokens": 7, "total_tokens": 16}
CAPTURE = (
    ": OPENROUTER PROCESSING\n\n"
    + _chunk(0, {"role": "assistant", "content": "", "refusal": None})
    + _chunk(1, {"content": "Café"})
    + _chunk(2, {"content": " ☕ — naïve"}).replace("\n", "\r\n")
    + "event: message\nid: 42\n"
    + _chunk(3, {"content": " 𝄞 done"})
    + _chunk(4, {}, "stop")
    + 'data: {"id":"chatcmpl-9xQ2mZ","object":"chat.completion.chunk","choices":[],\n'
    + 'data: "usage":'
    + json.dumps(_USAGE)
    + "}\n\n"
    + "data: [DONE]\n\n"
).encode()


def _decode(pieces: list[bytes]) -> list[SSEEvent]:
    decoder = SSEDecoder(errors="strict")
    events = [e for piece in pieces for e in decoder.feed(piece)]
    return events + decoder.close()


REFERENCE = _decode([CAPTURE])


def test_the_reference_decoding() -> None:
    assert len(REFERENCE) == 7
    assert REFERENCE[-1] == SSEEvent("[DONE]", id="42")
    text = "".join(e.json()["choices"][0]["delta"].get("content", "") for e in REFERENCE[:5])
    assert text == "Café ☕ — naïve 𝄞 done"
    assert REFERENCE[5].json()["usage"] == _USAGE  # data split over two lines


@given(st.lists(st.integers(min_value=0, max_value=len(CAPTURE)), max_size=40))
def test_random_splits_give_the_same_events(cuts: list[int]) -> None:
    points = [0, *sorted(cuts), len(CAPTURE)]
    pieces = [CAPTURE[a:b] for a, b in itertools.pairwise(points)]
    assert _decode(pieces) == REFERENCE


@given(st.text(), st.sampled_from(["\n", "\r", "\r\n"]))
def test_format_then_decode_round_trips(text: str, end: str) -> None:
    raw = sse_format(text, event="e").replace("\n", end)
    expected = text.replace("\r\n", "\n").replace("\r", "\n")
    assert _decode([raw.encode()]) == [SSEEvent(expected, "e")]
