"""Hypothesis properties of the incremental JSON parser (issue 7).

The *prefix* relation ``is_prefix(a, b)`` — "``a`` is a state ``b`` can grow
from" — is what monotone partial values mean:

- scalars (numbers, booleans, null): ``a == b`` and ``type(a) is type(b)``
  (a number appears only when complete);
- strings: ``b.startswith(a)`` (strings only grow);
- lists: ``len(a) <= len(b)``, every item but the last equals ``b``'s item, and
  the last is a prefix of ``b``'s item at that index;
- dicts: ``a``'s keys are the first ``len(a)`` keys of ``b`` in order, every
  value but the last equals ``b``'s, and the last is a prefix of ``b``'s;
- nothing else is a prefix (a value never changes type).
"""

from __future__ import annotations

import copy
import itertools
import json
from collections.abc import Callable, Iterable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import Field

import streamops as so
from streamops._json._parser import JSONParser

_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**40), max_value=10**40)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(alphabet=st.characters(codec="utf-8"), max_size=12)
    | st.sampled_from(['"', "\\", "/", "\n", "\x00", "\x1f", "é", "😀", "~", "\u2028"])
)
VALUES = st.recursive(
    _SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4)
    ),
    max_leaves=25,
)


def deep(depth: int) -> Any:
    value: Any = 1
    for i in range(depth):
        value = [value] if i % 2 else {"k": value}
    return value


@st.composite
def documents(draw: st.DrawFn) -> tuple[Any, str]:
    value = draw(VALUES | st.integers(min_value=1, max_value=60).map(deep))
    indent = draw(st.sampled_from([None, 0, 1, 2, "\t"]))
    seps = draw(st.sampled_from([(",", ":"), (", ", ": "), (" ,\r\n", " \t: ")]))
    text = json.dumps(
        value,
        indent=indent,
        separators=None if indent is not None else seps,
        ensure_ascii=draw(st.booleans()),
    )
    ws = st.text(alphabet=" \t\r\n", max_size=3)
    return value, draw(ws) + text + draw(ws)


def split(draw: Callable[[st.SearchStrategy[Any]], Any], text: str) -> list[str]:
    cuts = sorted(draw(st.sets(st.integers(0, len(text)), max_size=max(1, len(text)))))
    edges = [0, *cuts, len(text)]
    return [text[a:b] for a, b in itertools.pairwise(edges)]


def is_prefix(a: Any, b: Any) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, str):
        return bool(b.startswith(a))
    if isinstance(a, list):
        if len(a) > len(b):
            return False
        return all(x == y for x, y in zip(a[:-1], b, strict=False)) and (
            not a or is_prefix(a[-1], b[len(a) - 1])
        )
    if isinstance(a, dict):
        keys, bkeys = list(a), list(b)
        if keys != bkeys[: len(keys)]:
            return False
        return all(a[k] == b[k] for k in keys[:-1]) and (
            not a or is_prefix(a[keys[-1]], b[keys[-1]])
        )
    return bool(a == b)


def run(op: so.Operator[Any, Any], chunks: Iterable[Any]) -> list[Any]:
    """Collect an operator's output, typed as values (not text)."""
    return list(op(chunks))


def strict_loads(text: str) -> Any:
    def reject(name: str) -> None:
        raise ValueError(name)

    return json.loads(text, parse_constant=reject)


def no_lone_surrogates(value: Any) -> bool:
    if isinstance(value, str):
        return not any(0xD800 <= ord(c) <= 0xDFFF for c in value)
    if isinstance(value, list):
        return all(map(no_lone_surrogates, value))
    if isinstance(value, dict):
        return all(map(no_lone_surrogates, value.values()))
    return True


@given(st.data(), documents(), st.booleans())
def test_snapshots_grow_to_json_loads(
    data: st.DataObject, doc: tuple[Any, str], hide: bool
) -> None:
    _, text = doc
    chunks = split(data.draw, text)
    stream: so.SyncStream[Any] = so.parse_json(partial_strings=not hide)(chunks)
    snapshots = [copy.deepcopy(v) for v in stream]  # copied as yielded: the value is live
    final = strict_loads(text)
    assert repr(snapshots[-1]) == repr(final)
    for before, after in itertools.pairwise(snapshots):
        assert is_prefix(before, after)
    for snap in snapshots:
        assert is_prefix(snap, final)
        if no_lone_surrogates(final):
            assert no_lone_surrogates(snap)


@given(st.data(), documents())
def test_deltas_rebuild_the_value(data: st.DataObject, doc: tuple[Any, str]) -> None:
    _, text = doc
    root: list[Any] = [None]

    def locate(path: str) -> tuple[Any, Any]:
        parent: Any = root
        key: Any = 0
        for part in path.split("/")[1:]:
            parent = parent[key]
            part = part.replace("~1", "/").replace("~0", "~")
            key = int(part) if isinstance(parent, list) else part
        return parent, key

    for ev in run(so.parse_json(deltas=True), split(data.draw, text)):
        parent, key = locate(ev.path)
        if ev.op == "set":
            value = copy.deepcopy(ev.value)
            if isinstance(parent, list) and key == len(parent):
                parent.append(value)
            else:
                parent[key] = value
        elif ev.op == "append":
            parent[key] += ev.value
        else:
            assert parent[key] == ev.value
    assert repr(root[0]) == repr(strict_loads(text))


_MUTATION_CHARS = '{}[]",:.-+eE0123456789tfnulrsa \\/\x01x'


@given(st.data(), documents())
def test_invalid_mutations_raise_at_the_first_bad_character(
    data: st.DataObject, doc: tuple[Any, str]
) -> None:
    _, text = doc
    i = data.draw(st.integers(0, len(text)))
    kind = data.draw(st.sampled_from(["insert", "delete", "replace", "truncate"]))
    c = data.draw(st.sampled_from(_MUTATION_CHARS))
    mutated = {
        "insert": text[:i] + c + text[i:],
        "delete": text[:i] + text[i + 1 :],
        "replace": text[:i] + c + text[i + 1 :],
        "truncate": text[:i],
    }[kind]
    try:
        expected = strict_loads(mutated)
    except (ValueError, RecursionError):
        valid = False
    else:
        valid = True
    chunks = split(data.draw, mutated)
    if valid:
        assert repr(run(so.parse_json(), chunks)[-1]) == repr(expected)
        return
    parser = JSONParser()
    fed = 0
    error: so.JSONStreamError | None = None
    try:
        for chunk in chunks:
            fed += len(chunk)
            parser.feed(chunk)
        parser.close()
    except so.JSONStreamError as exc:
        error = exc
    assert error is not None, f"accepted invalid JSON {mutated!r}"
    assert error.offset <= len(mutated)
    assert error.offset < fed or error.got is None  # raised when the bad character arrived
    # Everything before the offset is a valid prefix: only the end is missing.
    probe = JSONParser()
    probe.feed(mutated[: error.offset])
    probe.close(recover=True)


@given(st.lists(VALUES, min_size=1, max_size=5), st.data())
def test_multiple_values(values: list[Any], data: st.DataObject) -> None:
    text = "\n".join(json.dumps(v) for v in values) + "\n"
    out = run(so.parse_json(multiple=True), split(data.draw, text))
    assert repr(out) == repr([strict_loads(json.dumps(v)) for v in values])


# Bracketed words start with a capital letter: no JSON value starts with one.
_PROSE_WORDS = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=1, max_size=6)
_PROSE_ITEMS = (
    st.text(alphabet="ABCXYZ .!", max_size=6)
    | _PROSE_WORDS.map(lambda w: f"[{w}]")
    | _PROSE_WORDS.map(lambda w: f"[ {w} ]")
    | _PROSE_WORDS.map(lambda w: f"{{ {w}}}")
)


@given(st.data(), documents(), st.lists(_PROSE_ITEMS, max_size=5))
def test_bracketed_prose_before_the_value_is_skipped(
    data: st.DataObject, doc: tuple[Any, str], prose: list[str]
) -> None:
    # Bracketed words ("[EMAIL]", "{ NAME}") cannot start JSON: skip_prefix
    # rejects them as candidates, whatever the split, and never shows them.
    _, text = doc
    if text.strip()[:1] not in ("{", "["):
        text = "[" + text + "]"
    full = " ".join(prose) + " " + text
    whole = [copy.deepcopy(v) for v in so.parse_json(skip_prefix=True)([full])]
    chunks = split(data.draw, full)
    snapshots = [copy.deepcopy(v) for v in so.parse_json(skip_prefix=True)(chunks)]
    final = strict_loads(text)
    assert repr(snapshots[-1]) == repr(whole[-1]) == repr(final)
    for before, after in itertools.pairwise(snapshots):
        assert is_prefix(before, after)


def _visible(parser: JSONParser) -> str | None:
    return repr(parser.value) if parser.has_value else None


@given(st.data(), documents(), st.booleans())
def test_a_change_is_reported_iff_the_value_shown_changed(
    data: st.DataObject, doc: tuple[Any, str], hide: bool
) -> None:
    # Whether a chunk takes the plan cache, the str fast path or the general
    # loop must not matter: feed() is True exactly when the value shown changed.
    _, text = doc
    parser = JSONParser(partial_strings=not hide)
    for chunk in split(data.draw, text):
        before = _visible(parser)
        changed = parser.feed(chunk)
        assert changed == (_visible(parser) != before), chunk
    parser.close()
    # So the operator never yields the same snapshot twice in a row.
    stream: so.SyncStream[Any] = so.parse_json(partial_strings=not hide)(split(data.draw, text))
    reprs = [repr(v) for v in stream]  # taken as yielded: the value is live
    assert all(a != b for a, b in itertools.pairwise(reprs))
    assert reprs[-1] == repr(strict_loads(text))


def _trace(parser: JSONParser, chunks: list[str]) -> list[Any]:
    """Everything a parser shows, chunk by chunk, up to its end or its error."""
    out: list[Any] = []
    try:
        for chunk in chunks:
            changed = parser.feed(chunk)
            shown = repr(parser.value) if parser.has_value else None
            out.append((changed, shown, repr(parser.events), repr(parser.completed)))
        out.append(("close", parser.close(), repr(parser.value), repr(parser.events)))
    except so.JSONStreamError as exc:
        out.append(("error", exc.offset, exc.expected, exc.got, str(exc)))
    return out


@settings(max_examples=300)
@given(st.data(), documents(), st.sampled_from(["values", "model"]))
def test_cached_plans_and_programs_do_what_the_general_path_does(
    data: st.DataObject, doc: tuple[Any, str], mode: str
) -> None:
    # feed() replays cached plans and token programs for small chunks of common
    # shapes; with the caches turned off every chunk takes the general loop. Both
    # must show the same values, changes, events and errors, chunk by chunk, on
    # valid and broken text alike (small chunks: the caches take chunks of <= 16).
    from streamops._json._parser import _NoCache

    _, text = doc
    for _ in range(data.draw(st.integers(0, 3))):  # insertions and replacements
        i = data.draw(st.integers(0, len(text)))
        c = data.draw(st.sampled_from(_MUTATION_CHARS))
        text = text[:i] + c + text[i + data.draw(st.integers(0, 1)) :]
    sizes = data.draw(st.lists(st.integers(1, 9), min_size=1, max_size=8))
    chunks: list[str] = []
    pos = 0
    for size in itertools.cycle(sizes):
        if pos >= len(text):
            break
        chunks.append(text[pos : pos + size])
        pos += size
    # Model mode's parser: deltas without string events, containers live.
    options: dict[str, Any] = (
        {"deltas": True, "live": True, "string_events": False, "steps": True}
        if mode == "model"
        else {}
    )
    cached = JSONParser(**options)
    general = JSONParser(**options)
    general._plans = tuple(_NoCache() for _ in general._plans)
    general._progs = tuple(_NoCache() for _ in general._progs)
    assert _trace(cached, chunks) == _trace(general, chunks)


# Objects of many members, nested, with lists of strings (whose ', "' looks like
# the one between members) and strings holding ',', '"' and '}': big chunks of
# them take the parser's runs (_rest, _members) as often as the member loop.
_TEXTS = st.text(alphabet=st.sampled_from('ab, "}{]:\\\n'), max_size=8)
_RECORDS = st.recursive(
    _SCALARS | _TEXTS | st.lists(_TEXTS, max_size=4),
    lambda inner: (
        st.lists(inner, max_size=5)
        | st.dictionaries(st.text('kéy,"', max_size=4), inner, min_size=1, max_size=9)
    ),
    max_leaves=60,
)


@settings(max_examples=300, deadline=None)
@given(
    st.data(),
    st.lists(_RECORDS, min_size=1, max_size=6),
    st.sampled_from([None, 0, 2]),
    st.sampled_from(
        [
            {},
            {"partial_strings": False},
            {"allow_trailing_commas": True},
            {"allow_nan": True, "allow_control_chars": True},  # (json's lenient scanner)
            {"skip_prefix": True, "multiple": True},  # (an object opened by the prose skip)
        ]
    ),
)
def test_runs_do_what_the_member_loop_does(
    data: st.DataObject, records: list[Any], indent: int | None, options: dict[str, Any]
) -> None:
    # In big chunks the members of an object left open by the last chunk, or
    # open at this chunk's end, go to json's scanner at once (_rest, _members);
    # with those off every member takes the state machine's steps. Both must
    # show the same values, changes and errors, chunk by chunk, on valid and
    # broken text alike, in every chunking.
    text = json.dumps({"items": records, "n": len(records)}, indent=indent)
    if options.get("multiple"):
        text = f"Here: {text}\n{text}"
    for _ in range(data.draw(st.integers(0, 2))):  # insertions and replacements
        i = data.draw(st.integers(0, len(text)))
        c = data.draw(st.sampled_from(_MUTATION_CHARS))
        text = text[:i] + c + text[i + data.draw(st.integers(0, 1)) :]
    sizes = data.draw(st.lists(st.integers(1, 400), min_size=1, max_size=6))
    chunks: list[str] = []
    pos = 0
    for size in itertools.cycle(sizes):
        if pos >= len(text):
            break
        chunks.append(text[pos : pos + size])
        pos += size
    runs = JSONParser(**options)
    steps = JSONParser(**options)
    steps._runs = False
    assert _trace(runs, chunks) == _trace(steps, chunks)


def _deep_text(kinds: list[bool], leaf: str, ws: str) -> tuple[str, str]:
    """The opening and the closing part of a chain of one-member containers around ``leaf``."""
    opens = "".join(f"[{ws}" if is_list else f'{{{ws}"k"{ws}:{ws}' for is_list in kinds)
    closes = "".join(f"{ws}]" if is_list else f"{ws}}}" for is_list in reversed(kinds))
    return opens + leaf, closes


def _unwrap(value: Any, kinds: list[bool]) -> Any:
    """Walk down the chain of one-member containers (iteratively: it is deep)."""
    for is_list in kinds:
        assert type(value) is (list if is_list else dict)
        assert len(value) == 1
        value = value[0] if isinstance(value, list) else value["k"]
    return value


# Deeper than the recursion limit (json.loads raises RecursionError there), in
# a test of its own so that the other properties stay fast.
@settings(max_examples=15)
@given(
    st.integers(min_value=1001, max_value=2500),
    st.sampled_from(["lists", "dicts", "mixed"]),
    _SCALARS,
    st.sampled_from(["", " ", "\n  "]),
    st.sampled_from([1, 4, 7, 1000, 10**6]),
    st.booleans(),
)
def test_nesting_deeper_than_the_recursion_limit(
    depth: int, shape: str, leaf: Any, ws: str, size: int, deltas: bool
) -> None:
    kinds = [shape == "lists" or (shape == "mixed" and i % 3 == 0) for i in range(depth)]
    head, closes = _deep_text(kinds, json.dumps(leaf), ws)
    text = head + closes

    def chunks(t: str) -> list[str]:
        return [t[i : i + size] for i in range(0, len(t), size)]

    if deltas:
        last = run(so.parse_json(deltas=True), chunks(text))[-1]
        assert (last.op, last.path) == ("done", "")
        final = last.value
    else:
        final = run(so.parse_json(), chunks(text))[-1]
    assert repr(_unwrap(final, kinds)) == repr(strict_loads(json.dumps(leaf)))
    # The wrong bracket at the bottom is an error at its offset, whatever the split.
    wrong = "}" if kinds[-1] else "]"
    at = len(head) + len(ws)
    bad = text[:at] + wrong + text[at + 1 :]
    with pytest.raises(so.JSONStreamError) as info:
        run(so.parse_json(), chunks(bad))
    assert info.value.offset == at


# -- model mode follows model_validate_json (issue 17) ------------------------------
#
# Models are drawn with Optional, unions, discriminated unions, aliases, Annotated
# validators, nested lists/dicts/tuples and RootModel; documents are drawn to
# match them, with wrong leaves and extra keys mixed in when ``noisy``. The rule:
# for every chunking, acceptance and the final value are model_validate_json's,
# and an error's path is one of the paths model_validate_json reports (the
# first one when the error comes from the final validation).

_NOISE = st.sampled_from([0, -1, "s", "", None, [], {}, True, 1.5, ["x"], {"k": 1}])
_model_names = itertools.count()


def _lenient(v: Any) -> Any:
    return len(v) if isinstance(v, (str, list)) else v


@st.composite
def _typed(draw: st.DrawFn, depth: int, noisy: bool) -> tuple[Any, st.SearchStrategy[Any]]:
    """A type pydantic validates and a strategy for JSON values meant to match it."""
    from typing import Annotated, Literal, Optional, Union

    from pydantic import AfterValidator, BeforeValidator

    def noise(values: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
        return st.one_of(values, values, values, _NOISE) if noisy else values

    kinds = ["int", "str", "bool", "before", "after", "literal"]
    if depth < 3:
        kinds += ["optional", "list", "dict", "tuple", "model", "model", "union", "tagged"]
    kind = draw(st.sampled_from(kinds))
    if kind == "int":
        return int, noise(st.integers(-3, 3))
    if kind == "str":
        return str, noise(st.text("ab", max_size=3))
    if kind == "bool":
        return bool, noise(st.booleans())
    if kind == "literal":
        return Literal["x", 1], noise(st.sampled_from(["x", 1]))
    if kind == "before":
        tp = Annotated[int, BeforeValidator(_lenient)]
        return tp, noise(st.integers(0, 3) | st.text("a", max_size=2) | st.lists(st.just(1)))
    if kind == "after":
        return Annotated[int, AfterValidator(lambda v: v + 1)], noise(st.integers(0, 3))
    if kind in ("model", "union", "tagged"):
        count = 1 if kind == "model" else 2
        tag = kind == "tagged"
        made = [draw(_model(depth + 1, noisy, tag=f"t{i}" if tag else None)) for i in range(count)]
        if count == 1:
            return made[0]
        types = tuple(m for m, _ in made)
        values = st.one_of(*(v for _, v in made))
        if tag:
            return Annotated[Union[types], Field(discriminator="kind")], values  # noqa: UP007
        return Union[types], values  # noqa: UP007  # built from a tuple at run time
    inner, values = draw(_typed(depth + 1, noisy))
    if kind == "optional":
        return Optional[inner], st.none() | values  # noqa: UP045  # as the issue spells it
    if kind == "list":
        return list[inner], noise(st.lists(values, max_size=3))  # type: ignore[valid-type]
    if kind == "dict":
        return dict[str, inner], noise(st.dictionaries(st.sampled_from("pq"), values, max_size=2))  # type: ignore[valid-type]
    other, more = draw(_typed(depth + 1, noisy))
    return tuple[inner, other], noise(st.tuples(values, more).map(list))  # type: ignore[valid-type]


@st.composite
def _model(
    draw: st.DrawFn, depth: int, noisy: bool, tag: str | None = None
) -> tuple[Any, st.SearchStrategy[Any]]:
    from typing import Literal

    from pydantic import ConfigDict, create_model

    config = ConfigDict(
        strict=draw(st.booleans()),
        extra=draw(st.sampled_from(["ignore", "forbid", "allow"])),
        validate_by_name=draw(st.booleans()),
    )
    fields: dict[str, Any] = {}
    keys: dict[str, st.SearchStrategy[Any]] = {}
    optional: dict[str, st.SearchStrategy[Any]] = {}
    if tag is not None:
        fields["kind"] = (Literal[tag], ...)
        keys["kind"] = st.just(tag)
    for name in draw(st.lists(st.sampled_from("abc"), min_size=1, max_size=3, unique=True)):
        tp, values = draw(_typed(depth, noisy))
        alias = draw(st.sampled_from([None, name.upper()]))
        required = draw(st.booleans())
        default: Any = ... if required else None
        fields[name] = (tp, Field(default, alias=alias)) if alias else (tp, default)
        key = alias or name
        if alias and config["validate_by_name"] and draw(st.booleans()):
            key = name
        (keys if required else optional)[key] = values
        if noisy and alias and draw(st.booleans()):
            optional[name if key != name else alias] = _NOISE  # the other spelling too
    if noisy:
        optional["zz"] = _NOISE
    model = create_model(f"M{next(_model_names)}", __config__=config, **fields)
    return model, st.fixed_dictionaries(keys, optional=optional)


@st.composite
def _models_and_documents(draw: st.DrawFn) -> tuple[Any, str]:
    from pydantic import RootModel

    noisy = draw(st.booleans())
    if draw(st.booleans()):
        target, values = draw(_model(0, noisy))
    else:
        tp, values = draw(_typed(0, noisy))
        target = RootModel[tp]  # type: ignore[valid-type]
    doc = draw(values)
    order = draw(st.randoms())
    if isinstance(doc, dict) and draw(st.booleans()):  # keys in another order
        items = list(doc.items())
        order.shuffle(items)
        doc = dict(items)
    return target, json.dumps(doc)


@settings(max_examples=300, deadline=None)
@given(st.data(), _models_and_documents())
def test_model_mode_follows_model_validate_json(data: st.DataObject, case: tuple[Any, str]) -> None:
    from pydantic import ValidationError

    from streamops._json._models import error_pointer

    target, text = case
    chunks = split(data.draw, text)
    try:
        expected = target.model_validate_json(text)
    except ValidationError as exc:
        doc = json.loads(text)
        paths = [error_pointer(e["loc"], doc, e["type"]) for e in exc.errors()]
        with pytest.raises(so.JSONValidationError) as info:
            run(so.parse_json(model=target), chunks)
        assert info.value.path in paths
    else:
        assert run(so.parse_json(model=target), chunks)[-1] == expected


class _WithoutDirectFeed:
    """A parse_json processor without ``feed_opt``: the driver feeds it its general way."""

    def __init__(self, proc: Any) -> None:
        self._proc = proc

    def __getattr__(self, name: str) -> Any:
        if name == "feed_opt":
            raise AttributeError(name)
        return getattr(self._proc, name)


def _general_path(op: so.Operator[Any, Any]) -> so.Operator[Any, Any]:
    from streamops.lowlevel import ProcessorStage

    (stage,) = op.stages
    assert isinstance(stage, ProcessorStage)
    factory = stage.factory
    general = ProcessorStage(
        stage.name,
        lambda report: _WithoutDirectFeed(factory(report)),
        accepts=stage.accepts,
        produces=stage.produces,
        can_stop=stage.can_stop,
    )
    return so.Operator(general)


def _outcome(
    op: so.Operator[Any, Any], chunks: list[Any], stop_after: int | None, is_async: bool
) -> tuple[list[str], str | None, dict[str, Any]]:
    """What a consumer sees (copied as yielded), the error, and the report without times."""
    import asyncio

    got: list[str] = []
    error: str | None = None

    async def agen() -> Any:
        for chunk in chunks:
            yield chunk

    async def consume_async() -> Any:
        stream = op(agen())
        try:
            async with stream:
                async for value in stream:
                    got.append(repr(value))
                    if len(got) == stop_after:
                        break
        finally:
            await stream.aclose()
        return stream

    def consume_sync() -> Any:
        stream = op(chunks)
        with stream:
            for value in stream:
                got.append(repr(value))
                if len(got) == stop_after:
                    break
        return stream

    stream: Any = None
    try:
        stream = asyncio.run(consume_async()) if is_async else consume_sync()
    except (so.JSONStreamError, so.JSONValidationError) as exc:
        error = f"{type(exc).__name__} {exc} {getattr(exc, 'offset', None)}"
    report = {} if stream is None else stream.report.to_dict()
    for event in report.get("events", []):
        event.pop("time")
    return got, error, report


@settings(max_examples=150, deadline=None)
@given(st.data(), documents(), st.sampled_from(["values", "hide", "model"]))
def test_direct_feed_is_the_general_path(
    data: st.DataObject, doc: tuple[Any, str], mode: str
) -> None:
    # The driver feeds a lone parse_json stage directly (its feed_opt, for str
    # chunks): what a consumer sees, the error and the report are those of the
    # general path (compiled feed, list per chunk), sync and async, whatever
    # the chunking, an invalid character or a consumer that leaves early.
    _, text = doc
    if data.draw(st.booleans()):
        i = data.draw(st.integers(0, len(text)))
        text = text[:i] + data.draw(st.sampled_from(_MUTATION_CHARS)) + text[i:]
    chunks: list[Any] = split(data.draw, text)
    if data.draw(st.booleans()):  # a bytes chunk among str ones takes feed() either way
        k = data.draw(st.integers(0, len(chunks) - 1))
        chunks[k] = chunks[k].encode()
    stop_after = data.draw(st.none() | st.integers(1, 4))
    if mode == "model":
        from pydantic import JsonValue, RootModel

        op = so.parse_json(model=RootModel[JsonValue])
    else:
        op = so.parse_json(partial_strings=mode == "values")
    expected = _outcome(_general_path(op), chunks, stop_after, is_async=False)
    for is_async in (False, True):
        assert _outcome(op, chunks, stop_after, is_async) == expected
        assert _outcome(_general_path(op), chunks, stop_after, is_async) == expected
