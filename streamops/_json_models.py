"""pydantic validation of streamed JSON, one subtree at a time (``parse_json(model=...)``).

pydantic's ``experimental_allow_partial`` cannot validate a ``BaseModel`` root
until every required field arrived (pydantic-core #1523), and re-validating the
growing value on every chunk would be quadratic. Instead each field or item is
validated against its own sub-schema when the parser reports it complete, so a
wrong type in the first field fails at once; the root is validated in full at
the end. Sub-schemas are found by walking the type: model fields (by alias or
name), ``list``/``set``/``tuple`` items, ``dict`` values, ``TypedDict`` keys and
``Optional``. A field behind a ``before``/``wrap``/``plain`` validator (which
may rewrite the raw value) is checked only by the final validation.

Validation is in pydantic's JSON mode, on the subtree re-serialised: the input
*is* JSON, and JSON mode differs from Python mode (in strict mode a string is a
valid ``datetime``, ``UUID`` or ``Enum`` and an array a valid ``tuple`` only in
JSON mode), so the result is what ``model_validate_json`` of the whole text
gives. Each sub-schema's adapter is built with the config of the model (or
``TypedDict``, or root adapter) it belongs to, so ``strict`` and the like apply
field by field, as soon as the field is complete.
"""

from __future__ import annotations

import json
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, PydanticUserError, TypeAdapter, ValidationError

from ._errors import StreamOpsError

__all__ = ("JSONValidationError",)

_ITEMS = (list, set, frozenset, Sequence, typing.Sequence)
_RAW_MODES = ("before", "wrap", "plain")


class JSONValidationError(StreamOpsError, ValueError):
    """Raised when a streamed value does not validate against the ``model`` given to parse_json.

    Raised as soon as the offending field or item is complete, not at the end.
    ``path`` is the JSON Pointer of the first invalid value, ``errors`` is
    pydantic's error list (``ValidationError.errors()``) and ``offset`` the
    character offset at the end of the chunk that completed the value. Invalid JSON
    raises :class:`JSONStreamError` instead.

    >>> import streamops as so
    >>> from pydantic import BaseModel
    >>> class User(BaseModel):
    ...     age: int
    ...     name: str
    >>> try:
    ...     list(so.parse_json(model=User)(['{"age": "old", ', '"name": "Al"}']))
    ... except so.JSONValidationError as exc:
    ...     print(exc.path, exc.errors[0]["type"], exc.offset)
    /age int_parsing 15
    """

    def __init__(
        self, message: str, *, path: str, errors: list[dict[str, Any]], offset: int
    ) -> None:
        super().__init__(message)
        self.path = path
        self.errors = errors
        self.offset = offset


def _pointer(parts: Sequence[object]) -> str:
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


def _own_config(tp: Any) -> ConfigDict | None:
    """The config a model or ``TypedDict`` gives the members it contains."""
    base = _strip(tp)
    if isinstance(base, type) and issubclass(base, BaseModel):
        return base.model_config
    config: ConfigDict | None = getattr(base, "__pydantic_config__", None)
    return config


def _make_adapter(tp: Any, config: ConfigDict | None) -> TypeAdapter[Any]:
    """An adapter for ``tp`` under the config of the type that contains it."""
    if config:
        try:
            return TypeAdapter(tp, config=config)
        except PydanticUserError as exc:
            # A model, dataclass or TypedDict has its own config: pydantic uses
            # that one (also inside the parent) and refuses a second one.
            if exc.code != "type-adapter-config-unused":
                raise
    return TypeAdapter(tp)


class _Node:
    """The sub-schema at one place in the document, with its children cached.

    ``config`` is the config in force here (of the enclosing model, ``TypedDict``
    or root adapter); members of a model or ``TypedDict`` get that type's own.
    """

    __slots__ = ("_adapter", "_children", "_keyed", "config", "tp")

    def __init__(
        self, tp: Any, config: ConfigDict | None, adapter: TypeAdapter[Any] | None = None
    ) -> None:
        self.tp = tp
        self.config = config
        self._adapter = adapter
        self._children: dict[str, _Node | None] = {}
        # Whether members differ by key (model fields, tuple positions) or share
        # one sub-schema (list items, dict values): worked out once, not per value.
        base = _strip(tp)
        self._keyed = (
            isinstance(base, type) and (issubclass(base, BaseModel) or typing.is_typeddict(base))
        ) or get_origin(base) is tuple

    @property
    def adapter(self) -> TypeAdapter[Any]:
        if self._adapter is None:
            self._adapter = _make_adapter(self.tp, self.config)
        return self._adapter

    def child(self, key: str) -> _Node | None:
        cache_key = key if self._keyed else ""
        try:
            return self._children[cache_key]
        except KeyError:
            tp = _child_type(self.tp, key)
            own = _own_config(self.tp)  # a model's config governs its fields, even if empty
            node = None if tp is None else _Node(tp, self.config if own is None else own)
            self._children[cache_key] = node
            return node


def _strip(tp: Any) -> Any:
    while get_origin(tp) is Annotated:
        tp = get_args(tp)[0]
    return tp


def _child_type(tp: Any, key: str) -> Any:
    """The type of ``tp``'s member ``key``, or None when it cannot be known early."""
    base = _strip(tp)
    if isinstance(base, type) and issubclass(base, BaseModel):
        return _field_type(base, key)
    if isinstance(base, type) and typing.is_typeddict(base):
        return typing.get_type_hints(base, include_extras=True).get(key)
    origin, args = get_origin(base), get_args(base)
    if origin is Union or origin is types.UnionType:
        members = [a for a in args if a is not type(None)]
        return _child_type(members[0], key) if len(members) == 1 else None
    if not args:
        return None
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return args[0]
        return args[int(key)] if key.isdigit() and int(key) < len(args) else None
    if origin in _ITEMS:
        return args[0]
    if origin is dict or origin is Mapping:
        return args[1]
    return None


def _field_type(model: type[BaseModel], key: str) -> Any:
    decorators = model.__pydantic_decorators__
    if any(d.info.mode in ("before", "wrap") for d in decorators.model_validators.values()):
        return None
    for name, field in model.model_fields.items():
        alias = field.validation_alias if isinstance(field.validation_alias, str) else field.alias
        if key not in (name, alias):
            continue
        for d in decorators.field_validators.values():
            if d.info.mode in _RAW_MODES and (name in d.info.fields or "*" in d.info.fields):
                return None
        if field.metadata:
            return Annotated[(field.annotation, *field.metadata)]
        return field.annotation
    return None


def schema_root(target: Any) -> _Node:
    """The schema tree of ``target`` (a type or a TypeAdapter), shared by every stream."""
    if isinstance(target, TypeAdapter):
        # TypeAdapter keeps its type and config privately; without the type only
        # the root is checked.
        return _Node(getattr(target, "_type", None), getattr(target, "_config", None), target)
    return _Node(target, None, TypeAdapter(target))


class _Validator:
    """Validate completed subtrees as their ``done`` events arrive; build partial results."""

    __slots__ = ("_fields", "_model", "_root")

    def __init__(self, root: _Node) -> None:
        self._root = root
        tp = _strip(root.tp)
        self._model = tp if isinstance(tp, type) and issubclass(tp, BaseModel) else None
        self._fields: dict[str, Any] = {}

    def done(self, path: str, value: Any, offset: int) -> None:
        """Validate the complete value at ``path`` (not the root) against its sub-schema."""
        node: _Node | None = self._root
        parts = [p.replace("~1", "/").replace("~0", "~") for p in path.split("/")[1:]]
        for part in parts:
            if node is None or node.tp is None:
                return
            node = node.child(part)
        if node is None:
            return
        result = self._check(node.adapter, value, parts, offset)
        if len(parts) == 1 and self._model is not None:
            self._fields[parts[0]] = result

    def final(self, value: Any, offset: int) -> Any:
        """Validate the complete root value; return the validated result."""
        self._fields = {}
        return self._check(self._root.adapter, value, [], offset)

    def partial(self, value: Any) -> Any:
        """The partial result to show: a model built without validation, or the raw value.

        Fields already complete hold their validated values; the field still
        streaming holds its raw partial JSON value; missing fields are absent.
        """
        if self._model is None or not isinstance(value, dict):
            return value
        fields = self._fields
        data = {k: fields.get(k, v) for k, v in value.items()}
        return self._model.model_construct(**data)

    @staticmethod
    def _check(adapter: TypeAdapter[Any], value: Any, parts: list[str], offset: int) -> Any:
        try:
            # JSON mode, as model_validate_json of the text (see the module doc).
            # Re-serialising is exact: the value came from JSON (floats round-trip,
            # big ints stay exact, a lone surrogate stays an escape).
            try:
                text = json.dumps(value)
            except RecursionError:
                # Nested deeper than json.dumps can go (the parser is iterative):
                # pydantic's own depth limit applies in Python mode as in JSON mode.
                return adapter.validate_python(value)
            return adapter.validate_json(text)
        except ValidationError as exc:
            errors: list[dict[str, Any]] = [dict(e) for e in exc.errors()]
            path = _pointer([*parts, *errors[0]["loc"]]) if errors else _pointer(parts)
            message = f"invalid value at {path or '(root)'} (offset {offset}): " + "; ".join(
                f"{_pointer(e['loc']) or '(here)'}: {e['msg']}" for e in errors[:3]
            )
            raise JSONValidationError(message, path=path, errors=errors, offset=offset) from exc
