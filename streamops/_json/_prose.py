"""Find the JSON document in an LLM's reply (``parse_json(skip_prefix=True)``).

Models wrap JSON in prose, Markdown fences and reasoning. The document the
model meant is, in order:

1. the reply itself, when it starts (after whitespace and a leading
   ``<think>...</think>`` block) with ``{`` or ``[`` that JSON can continue
   (``"`` or ``}`` after ``{``; a value or ``]`` after ``[``): streamed at once;
2. the value in the first fenced block marked ``json`` (```` ```json ````,
   also a bare ```` ``` ```` fence at the very start): streamed as soon as
   the fence line is complete; the text after its closing fence is ignored;
3. otherwise, once the reply is complete, the first ``{``/``[`` (outside
   ``<think>`` blocks) whose value parses to the end of the reply (only
   whitespace, or a fence closing one opened before it, may follow). So
   ``Return {} when empty. [1] ... {"a": 1}`` gives ``{"a": 1}``, and
   ``<think>{"draft": 1}</think>{"final": 2}`` gives ``{"final": 2}``.

Case 3 cannot be decided before the end, so nothing is shown until then;
cases 1 and 2 stream. Nothing is shown before the decision in any case, and
the decision depends on the text only, never on where the chunks split it.
"""

from __future__ import annotations

import re

from .._core._errors import JSONStreamError
from ._parser import JSONParser

__all__ = ("DocumentFinder",)

_THINK_OPEN = "<think>"
_THINK_CLOSE = "</think>"
_JSON_FENCE = re.compile(r"```[ \t]*(?:json[c5]?|JSON)[ \t]*\r?\n")
_AFTER_BRACKET = '"-0123456789tfn{[]'
_AFTER_BRACE = '"}'
_WS = " \t\r\n"
_CANDIDATE = re.compile(r"[{\[]")
_THINK_BLOCK = re.compile(r"<think>.*?(?:</think>|\Z)", re.DOTALL)


class DocumentFinder:
    """Buffer the reply until the document's start is known; then hand the parser its text.

    ``feed(chunk)`` returns the text the parser must get now (empty while
    undecided); ``close()`` returns what is left to give it at the end of
    input, or raises :class:`JSONStreamError` if the reply holds no JSON
    document. On a decision, the parser's offsets are set to count from the
    start of the reply, and a fenced document ends at its closing fence.

    >>> p = JSONParser()
    >>> f = DocumentFinder(p)
    >>> f.feed("Sure! ```json\\n{"), f.feed('"a": 1}\\n``` Bye')
    ('{', '"a": 1}\\n``` Bye')
    >>> p.feed('{"a": 1}\\n``` Bye'), p.value, p.finished
    (True, {'a': 1}, True)
    """

    __slots__ = (
        "_done",
        "_lead",
        "_lead_done",
        "_parser",
        "_scan",
        "_text",
        "_think_from",
        "_think_scan",
    )

    def __init__(self, parser: JSONParser) -> None:
        self._parser = parser
        self._text = ""  # the reply so far, while undecided
        self._done = False  # decided: text goes straight to the parser
        self._scan = 0  # where the search for a json fence goes on
        self._lead: int | None = None  # the first significant position, once known
        self._lead_done = False  # case 1 (and a fence at the start) ruled out
        self._think_from = 0  # where the lead scan goes on (after closed <think> blocks)
        self._think_scan = 0  # where the search for "</think>" goes on

    def feed(self, chunk: str) -> str:
        if self._done:
            return chunk
        # Grown in place (the attribute let go first, so the string has one
        # reference and CPython resizes it): O(n) over the whole reply.
        text = self._text
        self._text = ""
        text += chunk
        self._text = text
        start = self._decide(text)
        if start is None:
            return ""
        return self._commit(text, start)

    def close(self) -> str:
        if self._done:
            return ""
        text = self._text
        start = self._decide(text)
        if start is None:
            start = self._last_resort(text)
        return self._commit(text, start)

    def _commit(self, text: str, start: int) -> str:
        self._done = True
        self._text = ""
        self._parser._base = start  # offsets count from the start of the reply
        return text[start:]

    def _decide(self, text: str) -> int | None:
        """Where the document starts, if cases 1 or 2 decide it yet (see the module doc)."""
        n = len(text)
        if not self._lead_done:
            pos = self._lead if self._lead is not None else self._find_lead(text)
            if pos is None or pos == n:
                return None  # an open <think> block, or only whitespace so far
            self._lead = pos
            if text[pos] in "{[":
                nxt = pos + 1
                while nxt < n and text[nxt] in _WS:
                    nxt += 1
                if nxt == n:
                    return None  # undecided until the next significant character
                if text[nxt] in (_AFTER_BRACE if text[pos] == "{" else _AFTER_BRACKET):
                    return pos
            elif text.startswith("```", pos):
                line = text.find("\n", pos)
                if line < 0:
                    return None
                info = text[pos + 3 : line].strip()
                if info in ("", "json", "JSON", "jsonc", "json5"):
                    self._parser._fence = True
                    return line + 1
            elif n - pos < 3 and "```".startswith(text[pos:]):
                return None  # maybe the start of a fence
            self._lead_done = True
        m = _JSON_FENCE.search(text, self._scan)
        while m is not None:
            if not self._in_think(text, m.start()):
                self._parser._fence = True
                return m.end()
            m = _JSON_FENCE.search(text, m.end())
        self._scan = max(self._scan, n - 12)  # a fence may straddle the next chunk
        return None

    def _find_lead(self, text: str) -> int | None:
        """The first significant position after whitespace and leading <think> blocks."""
        pos = self._think_from
        n = len(text)
        while True:
            while pos < n and text[pos] in _WS:
                pos += 1
            self._think_from = pos
            if text.startswith(_THINK_OPEN, pos):
                end = text.find(_THINK_CLOSE, max(pos, self._think_scan))
                if end < 0:  # search only the new text next time
                    self._think_scan = max(pos, n - len(_THINK_CLOSE) + 1)
                    return None
                pos = end + len(_THINK_CLOSE)
                continue
            if n - pos < len(_THINK_OPEN) and _THINK_OPEN.startswith(text[pos:]) and pos < n:
                return None  # maybe the start of "<think>"
            return pos

    @staticmethod
    def _in_think(text: str, pos: int) -> bool:
        opened = text.rfind(_THINK_OPEN, 0, pos)
        return opened >= 0 and text.find(_THINK_CLOSE, opened, pos) < 0

    def _last_resort(self, text: str) -> int:
        """Case 3: the first value that parses to the end of the reply."""
        masked = _THINK_BLOCK.sub(lambda m: " " * len(m.group()), text)
        first_fence = masked.find("```")
        for m in _CANDIDATE.finditer(masked):
            p = m.start()
            fenced = 0 <= first_fence < p  # a closing fence may follow the value
            if _parses_to_end(masked, p, fenced=fenced):
                self._parser._fence = fenced
                return p
        raise JSONStreamError(
            f"no JSON document in the text (offset {len(text)}): expected '{{' or '['"
            " starting a value that parses to the end, or a ```json fence",
            offset=len(text),
            expected="'{' or '['",
            got=None,
        )


def _parses_to_end(text: str, pos: int, *, fenced: bool) -> bool:
    """Whether ``text[pos:]`` is one JSON value (then whitespace, or a closing fence).

    Fed in growing windows and stopped at the first error, so that a
    candidate costs what the parser reads of it (a slice of the rest, or
    ``json``'s error, which counts lines up to the error, would make many
    candidates quadratic).
    """
    parser = JSONParser()
    parser._fence = fenced
    n = len(text)
    i, step = pos, 256
    try:
        while i < n and not parser.finished:
            parser.feed(text[i : i + step])
            i += step
            step = min(step * 2, 1 << 16)
        if parser.finished:  # stopped at a closing fence: only whitespace after it
            end = pos + parser.offset
            return text[end : end + 3] == "```" and not text[end + 3 :].strip()
        parser.close()
    except JSONStreamError:
        return False
    return True
