"""Model mode of ``parse_json`` against ``model_validate_json``, on generated pydantic models.

The rule (issue 17): for every document and every chunking, acceptance, the
final value and the error path equal those of ``validate_json`` of the whole
text, and an early rejection happens only where that call rejects.

Hypothesis builds the model itself: scalars, ``Optional``, plain unions,
discriminated unions, aliases (with and without ``validate_by_name``),
``Annotated`` before/wrap/plain/after validators, nested lists, dicts and
tuples, ``strict`` and ``extra='forbid'`` configs, nested models and
``RootModel``. Each type comes with a strategy of documents that match it;
documents are then mutated at a random place (a subtree replaced by any JSON
value), so both accepted and rejected documents are checked.
"""

from __future__ import annotations

import copy
import datetime
import enum
import itertools
import json
from typing import Annotated, Any, Literal, Optional, Union

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import (
    AfterValidator,
    AliasChoices,
    Base64Str,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    RootModel,
    SecretStr,
    TypeAdapter,
    ValidationError,
    WrapValidator,
    create_model,
)

import streamops as so
from streamops._json._models import error_pointer

ANY_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-5, 5)
    | st.floats(-10, 10, allow_nan=False)
    | st.sampled_from(["", "a", "x y", "12", "2024-01-02", "cat", "dog"]),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(["a", "b", "kind", "f0", "F0", "f1"]), inner, max_size=3)
    ),
    max_leaves=8,
)

_counter = itertools.count()


def _len_if_list(v: Any) -> Any:
    return len(v) if isinstance(v, list) else v


def _double(v: int) -> int:
    return v * 2


def _wrap_str(v: Any, handler: Any) -> Any:
    return handler(str(v) if isinstance(v, (int, float)) else v)


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


Pair = tuple[Any, st.SearchStrategy[Any]]
_LIST_UPPER: Any = list[Annotated[str, AfterValidator(str.upper)]]

# Strings whose final form is not their raw text (review B, finding 07): never
# shown growing, so a partial never holds text that the final value replaces.
REWRITTEN: list[Pair] = [
    (Annotated[str, AfterValidator(str.upper)], st.sampled_from(["", "a", "hello world"])),
    (SecretStr, st.sampled_from(["", "hunter2", "s3cret-password"])),
    (Base64Str, st.sampled_from(["", "aGVsbG8gd29ybGQ=", "aGk=", "not base64!"])),
    (_LIST_UPPER, st.lists(st.sampled_from(["a", "hello world"]), max_size=3)),
]

SCALARS: list[Pair] = [
    (int, st.integers(-3, 3)),
    (str, st.sampled_from(["", "a", "hello"])),
    (bool, st.booleans()),
    (float, st.floats(-5, 5, allow_nan=False)),
    (Literal["x", "y"], st.sampled_from(["x", "y"])),
    (Annotated[int, BeforeValidator(_len_if_list)], st.lists(st.integers(), max_size=3)),
    (Annotated[str, WrapValidator(_wrap_str)], st.integers(0, 9) | st.just("s")),
    (Annotated[int, PlainValidator(lambda v: 1)], ANY_JSON),
    (Annotated[int, AfterValidator(_double)], st.integers(-3, 3)),
    (datetime.date, st.sampled_from(["2024-01-02", "2024-13-01", 0])),
    (Color, st.sampled_from(["red", "blue", 1])),
    (set[int], st.lists(st.integers(0, 3), max_size=3)),
    *REWRITTEN,
]


@st.composite
def models(draw: st.DrawFn, inner: st.SearchStrategy[Pair]) -> Pair:
    """A generated ``BaseModel`` with 1-3 fields, and a strategy of matching objects."""
    n = draw(st.integers(1, 3))
    config = ConfigDict(
        strict=draw(st.booleans()),
        extra=draw(st.sampled_from(["ignore", "forbid", "allow"])),
        validate_by_name=draw(st.booleans()),
    )
    fields: dict[str, Any] = {}
    keys: list[tuple[str, st.SearchStrategy[Any], bool]] = []
    for i in range(n):
        tp, values = draw(inner)
        alias: Any = draw(st.sampled_from([None, f"F{i}", AliasChoices(f"F{i}", f"G{i}")]))
        required = draw(st.booleans())
        default = ... if required else None
        if not required:
            tp = _OPTIONAL[tp]
        if isinstance(alias, AliasChoices):
            fields[f"f{i}"] = (tp, Field(default, validation_alias=alias))
        else:
            fields[f"f{i}"] = (tp, Field(default, alias=alias))
        key = f"f{i}" if alias is None else f"F{i}"
        keys.append((draw(st.sampled_from([key, f"G{i}", f"f{i}"])), values, required))
    model = create_model(f"M{next(_counter)}", __config__=config, **fields)

    @st.composite
    def objects(draw2: st.DrawFn) -> dict[str, Any]:
        out = {}
        for key, values, required in keys:
            if required or draw2(st.booleans()):
                out[key] = draw2(values | st.none()) if not required else draw2(values)
        return out

    return model, objects()


@st.composite
def tagged(draw: st.DrawFn, inner: st.SearchStrategy[Pair]) -> Pair:
    """A discriminated union of two generated models tagged by ``kind``."""
    branches = []
    for tag in ("cat", "dog"):
        tp, values = draw(inner)
        model = create_model(f"T{next(_counter)}", kind=(_LITERAL[tag], ...), v=(tp, ...))
        branches.append((model, st.fixed_dictionaries({"kind": st.just(tag), "v": values})))
    union = _ANNOTATED[_UNION[branches[0][0], branches[1][0]], Field(discriminator="kind")]
    return union, branches[0][1] | branches[1][1]


# Types built at run time: subscripted through Any so that mypy does not read them as annotations.
_LIST: Any = list
_DICT: Any = dict
_TUPLE: Any = tuple
_OPTIONAL: Any = Optional
_UNION: Any = Union
_ANNOTATED: Any = Annotated
_LITERAL: Any = Literal


def _extend(inner: st.SearchStrategy[Pair]) -> st.SearchStrategy[Pair]:
    keys = st.sampled_from("abc")
    return st.one_of(
        inner.map(lambda p: (_LIST[p[0]], st.lists(p[1], max_size=3))),
        inner.map(lambda p: (_DICT[str, p[0]], st.dictionaries(keys, p[1], max_size=2))),
        st.tuples(inner, inner).map(
            lambda ps: (_TUPLE[ps[0][0], ps[1][0]], st.tuples(ps[0][1], ps[1][1]).map(list))
        ),
        inner.map(
            lambda p: (
                _ANNOTATED[_LIST[p[0]], Field(max_length=2)],
                st.lists(p[1], max_size=3),
            )
        ),
        inner.map(lambda p: (_OPTIONAL[p[0]], p[1] | st.none())),
        st.tuples(inner, inner).map(lambda ps: (_UNION[ps[0][0], ps[1][0]], ps[0][1] | ps[1][1])),
        models(inner),
        tagged(inner),
    )


TYPES: st.SearchStrategy[Pair] = st.recursive(st.sampled_from(SCALARS), _extend, max_leaves=6)


@st.composite
def targets(draw: st.DrawFn) -> Pair:
    """The validated target: a generated model, a RootModel, or a bare type."""
    kind = draw(st.sampled_from(["model", "root", "type"]))
    if kind == "model":
        return draw(models(TYPES))
    tp, values = draw(TYPES)
    if kind == "root":
        return RootModel[tp], values  # type: ignore[valid-type]  # a generated type
    return TypeAdapter(tp), values


@st.composite
def mutated(draw: st.DrawFn, value: Any) -> Any:
    """``value`` with (sometimes) one subtree replaced by arbitrary JSON."""
    if not draw(st.integers(0, 2)):
        return value
    places: list[tuple[Any, Any]] = []
    stack = [value]
    while stack:
        cur = stack.pop()
        items = (
            cur.items()
            if isinstance(cur, dict)
            else enumerate(cur)
            if isinstance(cur, list)
            else ()
        )
        for k, v in items:
            places.append((cur, k))
            stack.append(v)
    if not places:
        return draw(ANY_JSON)
    cont, key = draw(st.sampled_from(places))
    cont[key] = draw(ANY_JSON)
    return value


def _cuts(data: st.DataObject, text: str) -> list[str]:
    points = sorted(data.draw(st.sets(st.integers(1, max(1, len(text) - 1)), max_size=12)))
    bounds = [0, *points, len(text)]
    return [text[a:b] for a, b in itertools.pairwise(bounds) if b > a]


def _reference(target: Any, text: str) -> tuple[bool, Any, list[str]]:
    adapter = target if isinstance(target, TypeAdapter) else TypeAdapter(target)
    try:
        return True, adapter.validate_json(text), []
    except ValidationError as exc:
        doc = json.loads(text)
        return False, None, [error_pointer(e["loc"], doc, e["type"]) for e in exc.errors()]


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(st.data())
def test_model_mode_equals_model_validate_json(data: st.DataObject) -> None:
    target, values = data.draw(targets())
    doc = data.draw(values.flatmap(mutated))
    text = json.dumps(doc, indent=data.draw(st.sampled_from([None, 1])))
    ok, value, paths = _reference(target, text)
    chunks = _cuts(data, text)
    if not ok:
        with pytest.raises(so.JSONValidationError) as info:
            list(so.parse_json(model=target)(chunks))
        assert info.value.path in paths, (info.value.path, paths, text, chunks)
        return
    # Snapshots: partials are one live object updated in place.
    out = [copy.deepcopy(v) for v in so.parse_json(model=target)(chunks)]
    assert ok, f"accepted, but validate_json rejects at {paths}"  # no early (or false) rejection
    assert out, "no value yielded"
    assert out[-1] == value
    for partial in out[:-1]:  # None, then the final type; strings only grow
        _check_stable(partial, value, text, chunks)


def _check_stable(partial: Any, final: Any, *why: Any) -> None:
    """``partial`` shows nothing that ``final`` (the validated value) replaces or retypes."""
    if partial is None:
        return
    assert type(partial) is type(final), (partial, final, *why)
    if isinstance(final, BaseModel):
        for name in type(final).model_fields:
            _check_stable(partial.__dict__.get(name), getattr(final, name), *why)
    elif isinstance(final, list):
        assert len(partial) <= len(final), (partial, final, *why)
        for p, f in zip(partial, final, strict=False):
            _check_stable(p, f, *why)
    elif isinstance(final, dict):
        for key, p in partial.items():
            assert key in final, (partial, final, *why)
            _check_stable(p, final[key], *why)
    elif isinstance(final, str):
        assert final.startswith(partial), (partial, final, *why)
    else:
        assert partial == final, (partial, final, *why)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_partials_never_show_a_string_that_the_final_value_rewrites(data: st.DataObject) -> None:
    # The stability check above, on models made of those strings (and plain
    # ones, which must still grow): each partial is None or a prefix of the final.
    target, values = data.draw(models(st.sampled_from([*REWRITTEN, SCALARS[1]])))
    text = json.dumps(data.draw(values))
    ok, value, _ = _reference(target, text)
    if not ok:
        return
    chunks = _cuts(data, text)
    out = [copy.deepcopy(v) for v in so.parse_json(model=target)(chunks)]
    assert out[-1] == value
    for partial in out[:-1]:
        _check_stable(partial, value, text, chunks)
