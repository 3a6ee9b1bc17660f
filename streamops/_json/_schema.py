"""Translate the JSON Schema subset that policies and tool definitions use into a pydantic type.

Supported: ``type`` (one or a list), ``properties``, ``required``,
``additionalProperties: false``, ``items``, ``enum``, and the annotations
``title``, ``description``, ``$schema``. Any other keyword is refused with a
clear error rather than ignored: a schema that silently validated less than it
says would let wrong output through.

>>> from pydantic import TypeAdapter
>>> tp = schema_type({"type": "object", "properties": {"n": {"type": "integer"}},
...                   "required": ["n"]}, "json_schema")
>>> TypeAdapter(tp).validate_python({"n": 3}).n
3
"""

from __future__ import annotations

import keyword
from typing import Any, Literal, Union

from pydantic import ConfigDict, create_model

__all__ = ("schema_type",)

_SCALARS: dict[str, Any] = {
    "string": str,
    "integer": int,
    "number": float,
    "boolean": bool,
    "null": None,
}
_SCHEMA_KEYS = frozenset(
    {"type", "properties", "required", "additionalProperties", "items", "enum"}
    | {"title", "description", "$schema"}
)


def schema_type(schema: object, where: str) -> Any:
    """Translate the supported subset of JSON Schema into a type pydantic validates."""
    if not isinstance(schema, dict):
        raise ValueError(f"{where} must be a JSON Schema object")
    unknown = sorted(set(schema) - _SCHEMA_KEYS)
    if unknown:
        raise ValueError(
            f"{where}: unsupported JSON Schema keyword(s) {unknown};"
            f" supported: {sorted(_SCHEMA_KEYS)}"
        )
    if "enum" in schema:
        values = schema["enum"]
        if not isinstance(values, list) or not values:
            raise ValueError(f"{where}.enum must be a non-empty list")
        return Literal[tuple(values)]
    kind = schema.get("type")
    if isinstance(kind, list):
        members = tuple(schema_type({**schema, "type": k}, where) for k in kind)
        return Union[members]  # noqa: UP007 - a runtime-built union needs the subscript form
    if kind is None:
        return Any
    if kind in _SCALARS:
        return _SCALARS[kind]
    if kind == "array":
        return list[schema_type(schema.get("items", {}), f"{where}.items")]  # type: ignore[misc]
    if kind == "object":
        return _object_type(schema, where)
    raise ValueError(f"{where}.type {kind!r} is not a JSON Schema type")


def _object_type(schema: dict[str, Any], where: str) -> Any:
    props = schema.get("properties", {})
    required = schema.get("required", [])
    if not isinstance(props, dict) or not isinstance(required, list):
        raise ValueError(f"{where}: properties must be an object and required a list")
    missing = [r for r in required if r not in props]
    if missing:
        raise ValueError(f"{where}.required names properties that are not defined: {missing}")
    if not props:
        return dict[str, Any]
    fields: dict[str, Any] = {}
    for name, sub in props.items():
        if not name.isidentifier() or keyword.iskeyword(name) or name.startswith(("_", "model_")):
            raise ValueError(f"{where}.properties: property name {name!r} is not supported")
        tp = schema_type(sub, f"{where}.properties.{name}")
        fields[name] = (tp, ...) if name in required else (tp | None, None)
    extra: Literal["forbid", "allow"] = (
        "forbid" if schema.get("additionalProperties") is False else "allow"
    )
    title = schema.get("title")
    model_name = title if isinstance(title, str) and title.isidentifier() else "Schema"
    return create_model(model_name, __config__=ConfigDict(extra=extra), **fields)
