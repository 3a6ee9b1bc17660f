"""Model mode of parse_json follows pydantic's core schema (issue 17, "Model mode is wrong").

The rule every test here checks: for a document and a chunking, acceptance,
the final value and the error path are those of
``Model.model_validate_json(full_text)``, and an early rejection happens only
where that call rejects, at one of the paths it reports.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Optional

import pytest
from pydantic import (
    AfterValidator,
    AliasChoices,
    AliasPath,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    RootModel,
    TypeAdapter,
    ValidationError,
    WrapValidator,
    field_validator,
)
from typing_extensions import TypedDict

import streamops as so
from streamops._json._models import error_pointer


def _split(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


SIZES = [1, 2, 3, 5, 8, 13, 1000]


def _reference(target: Any, text: str) -> tuple[bool, Any, list[str]]:
    """What ``validate_json`` of the whole text gives: (accepted, value, error paths)."""
    adapter = target if isinstance(target, TypeAdapter) else TypeAdapter(target)
    try:
        return True, adapter.validate_json(text), []
    except ValidationError as exc:
        import json

        doc = json.loads(text)
        return False, None, [error_pointer(e["loc"], doc, e["type"]) for e in exc.errors()]


def check(target: Any, text: str, sizes: list[int] = SIZES) -> None:
    """Assert the rule for every chunking in ``sizes``."""
    ok, value, paths = _reference(target, text)
    for size in sizes:
        chunks = _split(text, size)
        if ok:
            out = list(so.parse_json(model=target)(chunks))
            assert out[-1] == value, (size, out[-1], value)
        else:
            with pytest.raises(so.JSONValidationError) as info:
                list(so.parse_json(model=target)(chunks))
            assert info.value.path in paths, (size, info.value.path, paths)


# -- Optional and unions -----------------------------------------------------


class Address(BaseModel):
    street: str
    number: int


class Person(BaseModel):
    name: str
    address: Optional[Address] = None  # noqa: UP045  # the spelling the issue reproduces


class PersonPipe(BaseModel):
    name: str
    address: Address | None = None


PERSON = '{"name": "Al", "address": {"street": "Main", "number": 5}}'


@pytest.mark.parametrize("model", [Person, PersonPipe])
def test_optional_model_accepted_whatever_the_chunking(model: type[BaseModel]) -> None:
    out = list(so.parse_json(model=model)(_split(PERSON, 8)))
    assert out[-1] == model.model_validate_json(PERSON)
    check(model, PERSON)


def test_optional_model_still_rejects_early_inside() -> None:
    text = '{"name": "Al", "address": {"number": "five", "street": "Main"}}'
    check(Person, text)
    pulled: list[str] = []

    def source() -> Any:
        for piece in ['{"name": "Al", "address": {"number": "five",', ' "street": "M"}}']:
            pulled.append(piece)
            yield piece

    with pytest.raises(so.JSONValidationError) as info:
        list(so.parse_json(model=Person)(source()))
    assert info.value.path == "/address/number"
    assert len(pulled) == 1


class People(BaseModel):
    people: list[Optional[Address]]  # noqa: UP045  # the spelling the issue reproduces
    pair: tuple[str, int] | None = None


def test_list_of_optional_models_and_optional_tuple() -> None:
    check(People, '{"people": [null, {"street": "a", "number": 1}], "pair": ["x", 3]}')
    check(People, '{"people": [{"street": "a", "number": "x"}]}')
    check(People, '{"people": [], "pair": ["x", "y"]}')


class Lax(BaseModel):
    n: int


class StrictParent(BaseModel):
    model_config = ConfigDict(strict=True)
    child: Lax | None = None
    m: int = 0


def test_optional_lax_model_in_strict_parent_keeps_its_own_config() -> None:
    check(StrictParent, '{"child": {"n": "5"}}')
    check(StrictParent, '{"child": {"n": "5"}, "m": "5"}')


class Cat(BaseModel):
    kind: Literal["cat"]
    lives: int


class Dog(BaseModel):
    kind: Literal["dog"]
    bark: str


class Pets(BaseModel):
    pets: list[Annotated[Cat | Dog, Field(discriminator="kind")]]
    either: Cat | Dog | None = None


def test_discriminated_union_error_path_is_a_json_pointer() -> None:
    text = '{"pets": [{"kind": "cat", "lives": "many"}]}'
    with pytest.raises(so.JSONValidationError) as info:
        list(so.parse_json(model=Pets)(_split(text, 4)))
    assert info.value.path == "/pets/0/lives"
    check(Pets, text)


@pytest.mark.parametrize(
    "text",
    [
        '{"pets": [{"kind": "dog", "bark": "woof"}, {"kind": "cat", "lives": 9}]}',
        '{"pets": [{"lives": 9, "kind": "cat"}, {"bark": 1, "kind": "dog"}]}',
        '{"pets": [{"kind": "cow"}]}',
        '{"pets": [], "either": {"kind": "dog", "bark": "x"}}',
        '{"pets": [], "either": {"kind": "dog", "lives": 3}}',
        '{"pets": [], "either": {"lives": "x", "kind": "cat"}}',
    ],
)
def test_unions_follow_model_validate_json(text: str) -> None:
    check(Pets, text)


class NumOrText(BaseModel):
    v: list[int] | list[str]
    w: int | dict[str, int] = 0


@pytest.mark.parametrize(
    "text",
    ['{"v": ["a", "b"]}', '{"v": [1, 2]}', '{"v": [1, "b"]}', '{"v": [], "w": {"a": "x"}}'],
)
def test_plain_union_checks_a_child_only_when_every_branch_rejects_it(text: str) -> None:
    check(NumOrText, text)


# -- validators through Annotated ----------------------------------------------


def _parse_pair(v: Any) -> Any:
    if isinstance(v, str):
        return v.split(",")
    if isinstance(v, list):  # words count as their length: the raw items are not ints
        return [len(x) if isinstance(x, str) and not x.isdigit() else x for x in v]
    return v


class Validated(BaseModel):
    before: Annotated[list[int], BeforeValidator(_parse_pair)] = []
    wrap: Annotated[list[int], WrapValidator(lambda v, h: h(_parse_pair(v)))] = []
    plain: Annotated[int, PlainValidator(lambda v: len(v))] = 0
    items: list[Annotated[int, BeforeValidator(_parse_pair)]] = []
    plain_list: Annotated[list[int], PlainValidator(lambda v: [len(x) for x in v])] = []
    after: Annotated[int, AfterValidator(lambda v: v * 2)] = 0


@pytest.mark.parametrize(
    "text",
    [
        '{"before": "1,2", "wrap": "3,4", "plain": [1, 2, 3], "after": 4}',
        '{"before": ["1", "2"], "wrap": [5]}',
        '{"before": ["one", 2], "wrap": ["three", 4], "plain": {"a": [1]}}',
        '{"plain_list": [["a"], "bc"]}',
        '{"items": [[1], [2]]}',
        '{"after": "x"}',
        '{"before": ["x"]}',
    ],
)
def test_annotated_validators_are_respected(text: str) -> None:
    check(Validated, text)


class WithInfo(BaseModel):
    a: int
    b: int

    @field_validator("b")
    @classmethod
    def _bigger(cls, v: int, info: Any) -> int:
        if v <= info.data["a"]:
            raise ValueError("b must exceed a")
        return v


def test_after_validator_using_other_fields_runs_only_in_final_validation() -> None:
    check(WithInfo, '{"a": 1, "b": 2}')
    check(WithInfo, '{"a": 3, "b": 2}')
    check(WithInfo, '{"a": 3, "b": "x"}')


# -- keys: aliases, names, extras -----------------------------------------------


class Aliased(BaseModel):
    user_name: str = Field(alias="userName")


class ByName(BaseModel):
    model_config = ConfigDict(validate_by_name=True)
    user_name: str = Field(alias="userName")


class Choices(BaseModel):
    v: int = Field(validation_alias=AliasChoices("v", "value"))
    deep: int = Field(0, validation_alias=AliasPath("nested", 0))


@pytest.mark.parametrize(
    ("model", "text"),
    [
        (Aliased, '{"userName": "bob", "user_name": 5}'),
        (Aliased, '{"user_name": 5, "userName": "bob"}'),
        (Aliased, '{"userName": 5}'),
        (ByName, '{"user_name": 5, "userName": "bob"}'),
        (ByName, '{"user_name": "bob"}'),
        (ByName, '{"user_name": 5}'),
        (Choices, '{"v": "x", "value": 3}'),
        (Choices, '{"value": 3, "nested": ["4"]}'),
        (Choices, '{"value": 3, "nested": ["x"]}'),
    ],
)
def test_keys_are_matched_as_pydantic_matches_them(model: type[BaseModel], text: str) -> None:
    check(model, text)


class Closed(BaseModel):
    model_config = ConfigDict(extra="forbid")
    a: int = 0
    inner: Address | None = None


def test_extra_forbid_rejects_at_once() -> None:
    pulled: list[str] = []

    def source() -> Any:
        for piece in ['{"b": 1,', ' "a": 2}']:
            pulled.append(piece)
            yield piece

    with pytest.raises(so.JSONValidationError) as info:
        list(so.parse_json(model=Closed)(source()))
    assert info.value.path == "/b"
    assert info.value.errors[0]["type"] == "extra_forbidden"
    assert len(pulled) == 1
    check(Closed, '{"a": 1, "zz": {"x": [1]}}')
    check(Closed, '{"a": 1, "inner": {"street": "s", "number": 1, "x": 2}}')


class TD(TypedDict, total=False):
    __pydantic_config__ = ConfigDict(extra="forbid", strict=True)  # type: ignore[misc]
    n: int


def test_typed_dict_config_and_extras() -> None:
    check(TD, '{"n": 1}')
    check(TD, '{"n": "1"}')
    check(TD, '{"m": 1}')


# -- root models and adapters -----------------------------------------------------


def test_root_model_of_dict() -> None:
    model = RootModel[dict[str, int]]
    text = '{"a": 1, "b": 2}'
    out = list(so.parse_json(model=model)(_split(text, 3)))
    assert out[-1] == model.model_validate_json(text)
    assert all(isinstance(x, model) for x in out)
    check(model, text)
    check(model, '{"a": 1, "b": "x"}')


def test_root_model_of_list_of_models() -> None:
    model = RootModel[list[Address]]
    check(model, '[{"street": "a", "number": 1}]')
    check(model, '[{"street": "a", "number": "z"}]')


def test_type_adapter_config_applies_outside_models() -> None:
    adapter: TypeAdapter[list[int]] = TypeAdapter(list[int], config=ConfigDict(strict=True))
    check(adapter, '[1, "2", 3]')
    check(adapter, "[1, 2, 3]")


class Node(BaseModel):
    name: str
    children: list[Node] = []


def test_recursive_model() -> None:
    check(Node, '{"name": "a", "children": [{"name": "b", "children": [{"name": 3}]}]}')
    check(Node, '{"name": "a", "children": [{"name": "b", "children": [{"name": "c"}]}]}')


class Bounded(BaseModel):
    pair: tuple[int, int] | None = None
    few: Annotated[list[int], Field(max_length=2)] = []
    nested: Annotated[list[list[int]], Field(max_length=1)] = []


@pytest.mark.parametrize(
    "text",
    [
        '{"pair": [null, null, null]}',
        '{"pair": [null, null]}',
        '{"few": ["x", 1, 2]}',
        '{"few": ["x"]}',
        '{"nested": [["x"], []]}',
    ],
)
def test_bounded_arrays_report_what_validate_json_reports(text: str) -> None:
    # An array that ends too long reports only "too_long" at the array: an
    # early rejection of one of its items would name a path the final
    # validation does not report.
    check(Bounded, text)


def test_a_model_schema_walk_is_shared_by_operators_until_the_model_is_rebuilt() -> None:
    from pydantic import BaseModel

    from streamops._json import _models

    class Point(BaseModel):
        x: int
        y: int

    root = _models.schema_root(Point)
    assert _models.schema_root(Point) is root  # a second operator starts warm
    Point.model_rebuild(force=True)  # a new core schema: a new walk
    rebuilt = _models.schema_root(Point)
    assert rebuilt is not root
    assert list(so.parse_json(model=Point)(['{"x": 1, "y"', ": 2}"]))[-1] == Point(x=1, y=2)
    for i in range(_models._ROOTS_MAX + 1):  # bounded: models made on the fly are let go
        _models.schema_root(type(f"M{i}", (BaseModel,), {"__annotations__": {"a": int}}))
    assert Point not in _models._ROOTS
    assert len(_models._ROOTS) == _models._ROOTS_MAX
