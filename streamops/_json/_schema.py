"""Translate the JSON Schema subset that policies and tool definitions use into a pydantic type.

The type accepts exactly what the schema accepts (JSON Schema 2020-12, the
``jsonschema`` library being the reference in the property tests), in
pydantic's strict JSON mode, so nothing is coerced: ``"yes"`` or ``1`` is not
a ``boolean``, ``"7"`` or ``true`` not an ``integer``, ``"0.5"`` not a
``number``.

Supported:

- ``type``, one or a list: ``string``; ``integer`` (an int, or a float with no
  fractional part such as ``2.0``, kept as is); ``number`` (an int stays an
  int); ``boolean``; ``null``; ``array`` with ``items`` (a schema);
  ``object`` with ``properties``, ``required`` and ``additionalProperties``
  (``true``/``false``, or a schema when there are no ``properties``). A
  property that is not required may be absent (it is then ``None`` on the
  model), not ``null`` unless its schema says so. Any property name works;
  one that pydantic keeps for itself (``_id``, ``model_x``, ``json``,
  ``schema``) is a field named ``field_N`` whose alias is the property name
  (``model_dump(by_alias=True)`` gives the document's names).
- No ``type``: the other keywords apply to the kinds they are about
  (``properties`` to objects, ``items`` to arrays) and every other kind of
  value passes, as in JSON Schema.
- ``enum`` and ``const`` of strings, numbers, booleans and ``null``
  (JSON equality: ``1`` equals ``1.0``, ``true`` is not ``1``).
- ``anyOf``, and ``$ref`` to a place in the same schema (``#/$defs/Name``,
  with ``$defs``), each with only annotations next to it: what pydantic's
  ``model_json_schema`` and openai-python's ``pydantic_function_tool`` emit
  for ``Optional`` fields and nested models. A recursive ``$ref`` is refused.
- The annotations ``title``, ``description``, ``$schema``, ``$comment``,
  ``default`` and ``examples`` (they validate nothing).

Any other keyword (``minimum``, ``pattern``, ``oneOf``, ``allOf``...) is
refused with a clear error rather than ignored: a schema that silently
validated less than it says would let wrong output through.

>>> from pydantic import TypeAdapter
>>> tp = schema_type({"type": "object", "properties": {"n": {"type": "integer"}},
...                   "required": ["n"]}, "json_schema")
>>> TypeAdapter(tp).validate_json('{"n": 3}').n
3
>>> TypeAdapter(tp).validate_json('{"n": "3"}')  # doctest: +ELLIPSIS
Traceback (most recent call last):
pydantic_core._pydantic_core.ValidationError: 2 validation errors for Schema
...
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    TypeAdapter,
    ValidationError,
    create_model,
)

__all__ = ("schema_type",)

# Runtime-built generic forms, subscripted through Any (mypy reads them as values).
_LIST: Any = list
_DICT: Any = dict
_UNION: Any = Union
_ANNOTATED: Any = Annotated
_LITERAL: Any = Literal

_NUMBER: Any = Union[StrictInt, StrictFloat]  # noqa: UP007 - a value, not an annotation
# JSON Schema's integer is a number with no fractional part: 2.0 is one (draft 6 on).
_INTEGER: Any = Union[StrictInt, Annotated[StrictFloat, Field(multiple_of=1, allow_inf_nan=False)]]  # noqa: UP007
_SCALARS: dict[str, Any] = {
    "string": StrictStr,
    "integer": _INTEGER,
    "number": _NUMBER,
    "boolean": StrictBool,
    "null": None,
}
_KINDS = ("object", "array", "string", "number", "boolean", "null")
_ANNOTATIONS = frozenset({"title", "description", "$schema", "$comment", "default", "examples"})
_SCHEMA_KEYS = (
    frozenset({"type", "properties", "required", "additionalProperties", "items", "enum", "const"})
    | frozenset({"anyOf", "$ref", "$defs"})
    | _ANNOTATIONS
)
_OBJECT_KEYS = ("properties", "required", "additionalProperties")


def schema_type(schema: object, where: str) -> Any:
    """Translate the supported subset of JSON Schema into a type pydantic validates (strictly)."""
    return _Translator(schema).type(schema, where)


class _Translator:
    """One schema document's translation: ``$ref``s resolve against its root."""

    def __init__(self, root: object) -> None:
        self._root = root
        self._refs: dict[str, Any] = {}  # translated, by reference
        self._open: list[str] = []  # references being translated (a cycle is refused)

    def type(self, schema: object, where: str) -> Any:
        if schema is True:
            return Any
        if not isinstance(schema, dict):
            raise ValueError(
                f"{where} must be a JSON Schema object (or true), got {schema!r}"
                + (": a schema that accepts nothing is not supported" if schema is False else "")
            )
        unknown = sorted(set(schema) - _SCHEMA_KEYS)
        if unknown:
            raise ValueError(
                f"{where}: unsupported JSON Schema keyword(s) {unknown};"
                f" supported: {sorted(_SCHEMA_KEYS)}"
            )
        defs = schema.get("$defs", {})
        if not isinstance(defs, dict):
            raise ValueError(f"{where}.$defs must be an object")
        for key in ("$ref", "anyOf"):
            if key in schema:
                others = sorted(set(schema) - _ANNOTATIONS - {key, "$defs"})
                if others:
                    raise ValueError(
                        f"{where}: {key} together with {others} is not supported"
                        f" (only annotations may stand next to {key})"
                    )
        if "$ref" in schema:
            return self._ref(schema["$ref"], f"{where}.$ref")
        if "anyOf" in schema:
            branches = schema["anyOf"]
            if not isinstance(branches, list) or not branches:
                raise ValueError(f"{where}.anyOf must be a non-empty list of schemas")
            members = tuple(self.type(b, f"{where}.anyOf[{i}]") for i, b in enumerate(branches))
            if Any in members:
                return Any
            return members[0] if len(members) == 1 else _UNION[members]
        if "enum" in schema and "const" in schema:
            raise ValueError(f"{where}: give either enum or const, not both")
        if "const" in schema:
            rest = {k: v for k, v in schema.items() if k != "const"}
            return self._enum([schema["const"]], rest, f"{where}.const")
        if "enum" in schema:
            values = schema["enum"]
            if not isinstance(values, list) or not values:
                raise ValueError(f"{where}.enum must be a non-empty list")
            rest = {k: v for k, v in schema.items() if k != "enum"}
            return self._enum(values, rest, f"{where}.enum")
        return self._typed(schema, where)

    def _ref(self, ref: object, where: str) -> Any:
        """A reference inside this document (``#/$defs/Name``, any JSON Pointer after ``#``)."""
        if not isinstance(ref, str) or not ref.startswith("#"):
            raise ValueError(f"{where}: only references inside the schema ('#/...') are supported")
        if ref in self._refs:
            return self._refs[ref]
        if ref in self._open:
            raise ValueError(f"{where}: a recursive reference ({ref}) is not supported")
        target: Any = self._root
        for step in ref[1:].split("/")[1:] if ref != "#" else []:
            step = step.replace("~1", "/").replace("~0", "~")
            if isinstance(target, dict) and step in target:
                target = target[step]
            elif isinstance(target, list) and step.isdigit() and int(step) < len(target):
                target = target[int(step)]
            else:
                raise ValueError(f"{where}: {ref} points at nothing in the schema")
        self._open.append(ref)
        try:
            tp = self._refs[ref] = self.type(target, f"{where}({ref})")
        finally:
            self._open.pop()
        return tp

    def _typed(self, schema: dict[str, Any], where: str) -> Any:
        kind = schema.get("type")
        if kind is None:
            if not any(k in schema for k in (*_OBJECT_KEYS, "items")):
                return Any
            kind = list(_KINDS)  # the keywords apply to their kind; every other kind passes
        if isinstance(kind, list):
            if not kind or not all(isinstance(k, str) for k in kind) or len(set(kind)) < len(kind):
                raise ValueError(f"{where}.type must be a non-empty list of distinct type names")
            if "number" in kind and "integer" in kind:
                kind = [k for k in kind if k != "integer"]  # number covers integer
            members = tuple(self._typed({**schema, "type": k}, where) for k in kind)
            return members[0] if len(members) == 1 else _UNION[members]
        if kind in _SCALARS:
            return _SCALARS[kind]
        if kind == "array":
            return _LIST[self.type(schema.get("items", True), f"{where}.items")]
        if kind == "object":
            return self._object(schema, where)
        raise ValueError(f"{where}.type {kind!r} is not a JSON Schema type")

    def _object(self, schema: dict[str, Any], where: str) -> Any:
        props = schema.get("properties", {})
        required = schema.get("required", [])
        extra = schema.get("additionalProperties", True)
        if not isinstance(props, dict):
            raise ValueError(f"{where}.properties must be an object")
        if not isinstance(required, list) or not all(isinstance(r, str) for r in required):
            raise ValueError(f"{where}.required must be a list of property names")
        if not isinstance(extra, (bool, dict)):
            raise ValueError(f"{where}.additionalProperties must be true, false or a schema")
        if isinstance(extra, dict):
            values = self.type(extra, f"{where}.additionalProperties")
            if values is Any:
                extra = True
            elif props or required:
                raise ValueError(
                    f"{where}: additionalProperties as a schema is supported only without"
                    " properties and required (then the object is a map of that schema)"
                )
            else:
                return _DICT[str, values]
        if not props and not required and extra:
            return _DICT[str, Any]
        undeclared = [r for r in required if r not in props]
        if undeclared and not extra:
            raise ValueError(
                f"{where}: required names {undeclared}, which additionalProperties: false"
                " forbids (not in properties): the schema accepts no object"
            )
        fields: dict[str, Any] = {}
        names = [*props, *undeclared]
        taken = set(names)
        for name in names:
            tp = self.type(props[name], f"{where}.properties.{name}") if name in props else Any
            # Not required means "may be absent" (then None), not "may be null".
            default: Any = ... if name in required else None
            if _plain_field(name):
                fields[name] = (tp, default)
                continue
            # A name pydantic keeps for itself ("_x", "model_x", "json", "schema"):
            # the field gets another name and takes the property by its alias.
            n = 0
            while f"field_{n}" in taken:
                n += 1
            taken.add(f"field_{n}")
            fields[f"field_{n}"] = (tp, Field(default, alias=name))
        title = schema.get("title")
        model_name = title if isinstance(title, str) and title.isidentifier() else "Schema"
        config = ConfigDict(strict=True, extra="allow" if extra else "forbid")
        return create_model(model_name, __config__=config, **fields)

    def _enum(self, values: list[Any], rest: dict[str, Any], where: str) -> Any:
        """The values of ``enum``/``const`` that ``rest`` (the other keywords) also accepts."""
        for v in values:
            if not (v is None or isinstance(v, (str, int, float))):  # bool is an int
                raise ValueError(
                    f"{where}: only strings, numbers, booleans and null are supported, got {v!r}"
                )
        base = TypeAdapter(self._typed(rest, where))
        kept: list[Any] = []
        for v in values:
            try:
                base.validate_python(v)
            except ValidationError:
                continue
            if not any(_json_equal(v, k) for k in kept):
                kept.append(v)
        if not kept:
            raise ValueError(f"{where}: no value of {values!r} matches the schema's type")
        members: list[Any] = []
        strings = tuple(v for v in kept if isinstance(v, str))
        if strings:
            members.append(_LITERAL[strings])
        if None in kept:
            members.append(None)
        for v in kept:
            if isinstance(v, bool):  # pydantic's Literal[True] takes 1: compare as JSON does
                members.append(_ANNOTATED[StrictBool, AfterValidator(_Is(v))])
            elif isinstance(v, (int, float)):
                members.append(_ANNOTATED[_NUMBER, Field(ge=v, le=v)])
        return members[0] if len(members) == 1 else _UNION[tuple(members)]


def _plain_field(name: str) -> bool:
    """True if pydantic takes ``name`` as a field name as it is (no warning, no clash)."""
    return not name.startswith(("_", "model_")) and not hasattr(BaseModel, name)


class _Is:
    """An ``after`` check that a boolean is the one value ``enum``/``const`` allows."""

    __slots__ = ("value",)

    def __init__(self, value: bool) -> None:
        self.value = value

    def __call__(self, v: bool) -> bool:
        if v is not self.value:
            raise ValueError(f"Input should be {str(self.value).lower()}")
        return v


def _json_equal(a: Any, b: Any) -> bool:
    """Equality of two JSON scalars as JSON Schema defines it (``true`` is not ``1``)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    return bool(a == b) and (a is None) == (b is None) and isinstance(a, str) == isinstance(b, str)
