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

import json
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
_TAIL_FENCE = re.compile(r"\s*```\s*\Z")


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


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

    __slots__ = ("_buf", "_done", "_parser", "_scan")

    def __init__(self, parser: JSONParser) -> None:
        self._parser = parser
        self._buf: list[str] = []
        self._done = False  # decided: text goes straight to the parser
        self._scan = 0  # where the search for a json fence goes on

    def feed(self, chunk: str) -> str:
        if self._done:
            return chunk
        self._buf.append(chunk)
        text = "".join(self._buf)
        self._buf = [text]
        start = self._decide(text)
        if start is None:
            return ""
        return self._commit(text, start)

    def close(self) -> str:
        if self._done:
            return ""
        text = "".join(self._buf)
        start = self._decide(text)
        if start is None:
            start = self._last_resort(text)
        return self._commit(text, start)

    def _commit(self, text: str, start: int) -> str:
        self._done = True
        self._buf = []
        self._parser._base = start  # offsets count from the start of the reply
        return text[start:]

    def _decide(self, text: str) -> int | None:
        """Where the document starts, if cases 1 or 2 decide it yet (see the module doc)."""
        pos = self._lead(text)
        if pos is None:
            return None  # an open <think> block at the start
        n = len(text)
        if pos < n and text[pos] in "{[":
            nxt = pos + 1
            while nxt < n and text[nxt] in _WS:
                nxt += 1
            if nxt == n:
                return None  # undecided until the next significant character
            if text[nxt] in (_AFTER_BRACE if text[pos] == "{" else _AFTER_BRACKET):
                return pos
        if text.startswith("```", pos):
            line = text.find("\n", pos)
            if line < 0:
                return None
            info = text[pos + 3 : line].strip()
            if info in ("", "json", "JSON", "jsonc", "json5"):
                self._parser._fence = True
                return line + 1
        m = _JSON_FENCE.search(text, self._scan)
        while m is not None:
            if not self._in_think(text, m.start()):
                self._parser._fence = True
                return m.end()
            m = _JSON_FENCE.search(text, m.end())
        self._scan = max(self._scan, n - 12)  # a fence may straddle the next chunk
        return None

    @staticmethod
    def _lead(text: str) -> int | None:
        """The first significant position after whitespace and leading <think> blocks."""
        pos = 0
        n = len(text)
        while True:
            while pos < n and text[pos] in _WS:
                pos += 1
            if text.startswith(_THINK_OPEN, pos):
                end = text.find(_THINK_CLOSE, pos)
                if end < 0:
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
        fenced = "```" in masked
        for m in _CANDIDATE.finditer(masked):
            p = m.start()
            try:
                _, end = _DECODER.raw_decode(masked, p)
            except (ValueError, RecursionError):
                if not _parses_to_end(masked, p):
                    continue
                return p
            rest = masked[end:]
            if not rest.strip() or (fenced and "```" in masked[:p] and _TAIL_FENCE.fullmatch(rest)):
                if rest.strip():
                    self._parser._fence = True
                return p
        raise JSONStreamError(
            f"no JSON document in the text (offset {len(text)}): expected '{{' or '['"
            " starting a value that parses to the end, or a ```json fence",
            offset=len(text),
            expected="'{' or '['",
            got=None,
        )


def _parses_to_end(text: str, pos: int) -> bool:
    """Whether ``text[pos:]`` is one JSON value (deeper than json's recursion: our parser)."""
    parser = JSONParser()
    try:
        parser.feed(text[pos:])
        parser.close()
    except JSONStreamError:
        return False
    return True
