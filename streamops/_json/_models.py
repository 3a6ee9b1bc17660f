"""pydantic validation of streamed JSON, one subtree at a time (``parse_json(model=...)``).

pydantic's ``experimental_allow_partial`` cannot validate a ``BaseModel`` root
until every required field arrived (pydantic-core #1523), and re-validating the
growing value on every chunk would be quadratic. Instead each field or item is
checked against its own sub-schema when the parser reports it complete, so a
wrong type in the first field fails at once; the root is validated in full, by
the target's own validator, at the end.

The rule: acceptance, the final value and the error path are those of
``validate_json`` of the whole text, and an early rejection happens only where
that call rejects (at one of the paths it reports). So the sub-schemas come
from pydantic's **core schema** (what pydantic itself validates with), not from
type hints, and the walk checks early only what is sure to fail in the end:

- *Walking down.* ``definitions``/``definition-ref``, ``default``, ``nullable``,
  ``function-after`` (its inner schema runs first), ``json-or-python`` (JSON
  side), ``lax-or-strict`` (lax side, the weaker) and ``chain`` (its first step)
  are passed through; a ``model`` or ``typed-dict`` brings its own config into
  force for what it contains, as in pydantic-core; ``RootModel`` goes to its
  root's schema. Members: ``model-fields``/``typed-dict`` fields by the key
  pydantic looks up, ``list``/``set``/``tuple`` items, ``dict`` values.
- *Not checking early* (the final validation decides): anything behind a
  ``before``/``wrap``/``plain`` validator (it may rewrite the raw value), a
  custom ``__init__``, dataclasses, custom error types; a field that more than
  one key can fill (alias and name, ``AliasChoices``, ``AliasPath``), since
  another key may still come and win; a key of a discriminated union whose tag
  has not arrived.
- *Unions.* A member of a ``union`` is rejected early only if every branch that
  can hold a container of its parent's kind rejects it (then every branch
  fails, and so does the union); a ``tagged-union`` checks the branch its tag
  (already in the parent) selects.
- *Extra keys* are rejected as soon as they are complete under
  ``extra='forbid'``, and checked against the extras schema if one is given.

An early check validates the complete subtree, re-serialised, in JSON mode
(JSON mode differs from Python mode: in strict mode a string is a valid
``datetime``, ``UUID`` or ``Enum`` only in JSON mode) with a ``SchemaValidator``
built once per sub-schema from a *stripped* copy of it: ``after`` validators
removed, ``before``/``wrap``/``plain`` ones replaced by ``any``, no
``__post_init__``/``model_post_init``. So no user function runs early (it may
read other fields through ``info.data`` or a validation context), and the
stripped schema accepts everything the real one accepts.

Error paths are JSON Pointers into the document: pydantic's ``loc`` also holds
union branch labels, discriminator tags and ``[key]``; :func:`error_pointer`
keeps only the steps that exist in the document (and the name of a missing
member). One exception to the rule, as for the parser: with a duplicate key
the last one wins in the end, but an earlier value was already checked.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from types import MemberDescriptorType
from typing import Any, Literal

from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic_core import SchemaValidator

from .._core._errors import JSONValidationError

__all__ = ("JSONValidationError",)


def _pointer(parts: Sequence[object]) -> str:
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


def _pointer_parts(loc: Sequence[Any], doc: Any, error_type: str) -> list[Any]:
    parts: list[Any] = []
    cur: Any = doc
    last = len(loc) - 1
    for i, step in enumerate(loc):
        if isinstance(cur, dict):
            found = isinstance(step, str) and step in cur
        else:
            found = isinstance(cur, list) and type(step) is int and 0 <= step < len(cur)
        if found:
            parts.append(step)
            cur = cur[step]
        elif i == last and error_type == "missing":
            parts.append(step)  # a member that is not there: its would-be pointer
        # anything else is not in the document: a union branch label, a tag, "[key]"
    return parts


def error_pointer(loc: Sequence[Any], doc: Any, error_type: str) -> str:
    """The JSON Pointer into ``doc`` of a pydantic error at ``loc``.

    Steps of ``loc`` that are not in the document (union branch labels,
    discriminator tags, ``[key]``) are dropped; the last step of a ``missing``
    error is kept (the member that should be there).

    >>> doc = {"pets": [{"kind": "cat", "lives": "x"}]}
    >>> error_pointer(("pets", 0, "cat", "lives"), doc, "int_parsing")
    '/pets/0/lives'
    """
    return _pointer(_pointer_parts(loc, doc, error_type))


# -- the stripped schema ---------------------------------------------------------

_ANY: dict[str, Any] = {"type": "any"}
_OPAQUE = frozenset(
    ("function-before", "function-wrap", "function-plain", "dataclass", "call", "arguments")
)
# Keys of a core schema whose values are schemas (or lists of them).
_SUB_KEYS = (
    "schema",
    "keys_schema",
    "values_schema",
    "lax_schema",
    "strict_schema",
    "json_schema",
    "python_schema",
    "extras_schema",
    "extras_keys_schema",
)
# Schemas that never accept a JSON object or array (in JSON mode).
_SCALARS = frozenset(
    (
        "int",
        "float",
        "decimal",
        "str",
        "bool",
        "none",
        "literal",
        "date",
        "time",
        "datetime",
        "timedelta",
        "uuid",
        "url",
        "multi-host-url",
        "bytes",
        "complex",
    )
)
_ARRAYS = frozenset(("list", "set", "frozenset", "generator", "tuple"))
_OBJECTS = frozenset(("model-fields", "typed-dict", "dict"))


class _Schemas:
    """The definitions of one core schema and its stripped copies, shared by every node."""

    def __init__(self, schema: dict[str, Any]) -> None:
        self.defs: dict[str, dict[str, Any]] = {}
        self._collect(schema)
        self._stripped: dict[int, dict[str, Any]] = {}
        self._stripped_defs: dict[str, dict[str, Any]] = {}
        self._validators: dict[tuple[int, int], SchemaValidator] = {}

    def _collect(self, schema: Any) -> None:
        stack = [schema]
        seen: set[int] = set()
        while stack:
            s = stack.pop()
            if isinstance(s, (list, tuple)):
                stack.extend(s)
                continue
            if not isinstance(s, dict) or id(s) in seen:
                continue
            seen.add(id(s))
            if isinstance(s.get("ref"), str) and "type" in s:
                self.defs.setdefault(s["ref"], s)
            for key, v in s.items():
                if key not in ("metadata", "config", "default", "serialization", "cls"):
                    stack.append(v)

    def resolve(self, schema: dict[str, Any]) -> dict[str, Any]:
        """``schema`` with ``definitions`` and ``definition-ref`` looked through."""
        for _ in range(100):  # a ref to a ref to ...: bounded
            t = schema.get("type")
            if t == "definitions":
                schema = schema["schema"]
            elif t == "definition-ref":
                target = self.defs.get(schema["schema_ref"])
                if target is None:
                    return _ANY
                schema = target
            else:
                return schema
        return _ANY

    def strip(self, schema: Any) -> Any:
        """A copy that accepts at least what ``schema`` accepts and runs no user function."""
        if not isinstance(schema, dict):
            return schema
        if schema.get("type") == "definition-ref":
            target = self.defs.get(schema["schema_ref"])
            return _ANY if target is None else self.strip(target)
        ref = schema.get("ref")
        if isinstance(ref, str):
            if ref not in self._stripped_defs:
                self._stripped_defs[ref] = _ANY  # a recursive schema meets itself
                body = self._strip_body(schema)
                self._stripped_defs[ref] = {**body, "ref": ref}
            return {"type": "definition-ref", "schema_ref": ref}
        done = self._stripped.get(id(schema))
        if done is None:
            done = self._stripped[id(schema)] = self._strip_body(schema)
        return done

    def _strip_body(self, schema: dict[str, Any]) -> dict[str, Any]:
        t = schema.get("type")
        if t in _OPAQUE or (t == "model" and schema.get("custom_init")):
            return _ANY
        if t == "function-after":
            inner = self.strip(schema["schema"])
            return dict(inner) if isinstance(inner, dict) else _ANY
        if t == "chain":
            steps = schema.get("steps") or [_ANY]
            return dict(self.strip(steps[0]))
        if t == "definitions":
            for d in schema.get("definitions", ()):
                self.strip(d)
            return dict(self.strip(schema["schema"]))
        out = {k: v for k, v in schema.items() if k not in ("ref", "serialization", "post_init")}
        for key in _SUB_KEYS:
            if isinstance(out.get(key), dict):
                out[key] = self.strip(out[key])
        items = out.get("items_schema")
        if isinstance(items, dict):
            out["items_schema"] = self.strip(items)
        elif isinstance(items, list):
            out["items_schema"] = [self.strip(s) for s in items]
        choices = out.get("choices")
        if isinstance(choices, list):
            out["choices"] = [
                (self.strip(c[0]), c[1]) if isinstance(c, tuple) else self.strip(c) for c in choices
            ]
        elif isinstance(choices, dict):
            out["choices"] = {k: self.strip(c) for k, c in choices.items()}
        fields = out.get("fields")
        if isinstance(fields, dict):
            out["fields"] = {n: {**f, "schema": self.strip(f["schema"])} for n, f in fields.items()}
        return out

    def exact(self, schema: Any, config: dict[str, Any] | None) -> bool:
        """True if stripping ``schema`` removed nothing (so its check returns the real value)."""
        stack = [schema]
        seen: set[int] = set()
        while stack:
            s = stack.pop()
            if isinstance(s, (list, tuple)):
                stack.extend(s)
                continue
            if not isinstance(s, dict) or id(s) in seen:
                continue
            seen.add(id(s))
            t = s.get("type")
            if t == "definition-ref":
                target = self.defs.get(s.get("schema_ref", ""))
                if target is None:
                    return False
                stack.append(target)
                continue
            if (
                t in _OPAQUE
                or t in ("function-after", "chain")
                or s.get("custom_init")
                or s.get("post_init")
            ):
                return False
            for key, v in s.items():
                if key not in ("metadata", "config", "default", "serialization", "cls", "ref"):
                    stack.append(v)
        return True

    def validator(self, schema: dict[str, Any], config: dict[str, Any] | None) -> SchemaValidator:
        key = (id(schema), id(config))
        v = self._validators.get(key)
        if v is None:
            root = self.strip(schema)
            defs = self._reachable(root)
            wrapped = {"type": "definitions", "schema": root, "definitions": defs} if defs else root
            v = self._validators[key] = SchemaValidator(wrapped, config)  # type: ignore[arg-type]
        return v

    def _reachable(self, root: Any) -> list[dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        stack = [root]
        while stack:
            s = stack.pop()
            if isinstance(s, (list, tuple)):
                stack.extend(s)
            elif isinstance(s, dict):
                if s.get("type") == "definition-ref" and isinstance(s.get("schema_ref"), str):
                    ref = s["schema_ref"]
                    if ref not in found and ref in self._stripped_defs:
                        found[ref] = self._stripped_defs[ref]
                        stack.append(found[ref])
                    continue
                for k, v in s.items():
                    if k not in ("metadata", "config", "default", "cls"):
                        stack.append(v)
        return list(found.values())


# -- the nodes ------------------------------------------------------------------


class _Structural:
    """A branch that cannot hold the parent at all (a scalar, or the other container kind)."""


_NO = _Structural()


class _Forbidden:
    """An extra key under ``extra='forbid'``: its value is rejected once complete."""

    __slots__ = ()

    def check(self, value: Any, text: str) -> Any:
        raise _EarlyError(
            [
                {
                    "type": "extra_forbidden",
                    "loc": (),
                    "msg": "Extra inputs are not permitted",
                    "input": value,
                }
            ]
        )

    def child(self, key: str, parent: Any) -> Any:
        return _NO


_FORBIDDEN = _Forbidden()


class _EarlyError(Exception):
    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__()
        self.errors = errors


def _combine(results: list[Any]) -> Any:
    """The member node of a union: None (no early check) if any branch leaves it open."""
    nodes: list[Any] = []
    for r in results:
        if r is None:
            return None
        if r is _NO:
            continue
        nodes.extend(r.nodes if isinstance(r, _AnyOf) else [r])
    if not nodes:
        return None  # every branch rejects the parent: its own check will say so
    return nodes[0] if len(nodes) == 1 else _AnyOf(nodes)


class _AnyOf:
    """A member of a union: rejected only if every branch rejects it."""

    __slots__ = ("nodes",)

    def __init__(self, nodes: list[Any]) -> None:
        self.nodes = nodes

    def check(self, value: Any, text: str) -> Any:
        first: _EarlyError | None = None
        for node in self.nodes:
            try:
                return node.check(value, text)
            except _EarlyError as exc:
                first = first or exc
        assert first is not None
        raise first

    def child(self, key: str, parent: Any) -> Any:
        return _combine([n.child(key, parent) for n in self.nodes])


class _Node:
    """One place in the core schema, under the config in force there; children cached."""

    __slots__ = (
        "_children",
        "_inner",
        "_schemas",
        "blank",
        "config",
        "members",
        "model_plan",
        "quick",
        "schema",
    )

    def __init__(
        self, schemas: _Schemas, schema: dict[str, Any], config: dict[str, Any] | None
    ) -> None:
        self._schemas = schemas
        self.schema = schema
        self.config = config
        self._children: dict[Any, Any] = {}
        self._inner: tuple[dict[str, Any], dict[str, Any] | None] | None = None
        # The child node of each member step, shared by every frame that follows
        # this node member by member (see _Frame.children): for those kinds the
        # child depends on the step alone.
        self.members: dict[Any, Any] = {}
        # Of a model: per key whose field is a plain scalar (see fast()), that
        # field's fast types and name, learnt as members arrive (see
        # _Validator.events).
        self.quick: dict[Any, tuple[tuple[type, ...], str]] = {}
        # Of a model: its fields, each None (what a blank instance copies).
        self.blank: dict[str, None] | None = None
        # What a frame of a plain model (no RootModel around it) is made from:
        # see plan_model(); None until asked, False for any other node.
        self.model_plan: _ModelPlan | Literal[False] | None = None

    def check(self, value: Any, text: str) -> Any:
        """Validate ``value`` (whose JSON is ``text``); raise _EarlyError if invalid."""
        validator = self._schemas.validator(self.schema, self.config)
        try:
            return validator.validate_json(text)
        except ValidationError as exc:
            raise _EarlyError([dict(e) for e in exc.errors()]) from exc

    def fast(self) -> tuple[type, ...]:
        """Python types of a JSON value that this node surely accepts unchanged (maybe none).

        A plain ``str``/``int``/``float``/``bool`` schema without constraints
        (``nullable`` also takes None, ``any`` everything): such a value needs
        no validator call, and its check returns it as is.
        """
        cached = self._children.get("fast")
        if cached is None:
            cached = self._children["fast"] = self._fast()
        return cached

    def _fast(self) -> tuple[type, ...]:
        schema = self._schemas.resolve(self.schema)
        types: tuple[type, ...] = ()
        for _ in range(10):
            t = schema.get("type")
            if t == "nullable":
                types += (type(None),)
            elif t != "default":
                break
            schema = self._schemas.resolve(schema["schema"])
        t = schema.get("type")
        plain = set(schema) <= {"type", "ref", "metadata", "serialization", "strict"}
        if t == "any":
            return (str, int, float, bool, type(None), dict, list)
        if not plain:
            return ()
        if t == "str" and not any(k.startswith("str_") for k in self.config or {}):
            return (*types, str)
        if t in ("int", "float", "bool"):
            return (*types, {"int": int, "float": float, "bool": bool}[t])
        return ()

    def exact(self) -> bool:
        """True if the stripped check's result equals the real validation's (no user code)."""
        cached = self._children.get("exact")
        if cached is None:
            cached = self._children["exact"] = self._schemas.exact(self.schema, self.config)
        return bool(cached)

    def shape(self) -> tuple[str, list[tuple[type[BaseModel], bool]], dict[str, str]]:
        """What typed partial follows this node: its kind, the model classes on the way, keys.

        The kind is ``"model"``, ``"typed-dict"``, ``"list"``, ``"dict"`` (built
        member by member), ``"any"`` (the raw value is the value), ``"str"`` (a
        plain string), ``"scalar"`` (no container) or ``"other"``.
        """
        cached = self._children.get("shape")
        if cached is None:
            cached = self._children["shape"] = self._shape()
        return cached

    def _shape(self) -> tuple[str, list[tuple[type[BaseModel], bool]], dict[str, str]]:
        schemas = self._schemas
        schema, config = self.schema, self.config
        classes: list[tuple[type[BaseModel], bool]] = []
        # Passed an after validator or a JSON side that differs from the Python
        # one: a container under it is still followed member by member, but a
        # string's raw text is not its final value (SecretStr, Base64Str, ...).
        rewritten = False
        for _ in range(1000):
            schema = schemas.resolve(schema)
            t = schema.get("type")
            if t in ("default", "nullable", "function-after"):
                rewritten = rewritten or t == "function-after"
                schema = schema["schema"]
            elif t == "json-or-python":
                rewritten = rewritten or schema["json_schema"] != schema.get("python_schema")
                schema = schema["json_schema"]
            elif t == "lax-or-strict":
                schema = schema["lax_schema"]
            elif t == "model" and not schema.get("custom_init"):
                cls = schema.get("cls")
                if not (isinstance(cls, type) and issubclass(cls, BaseModel)):
                    return "other", [], {}
                classes.append((cls, bool(schema.get("root_model"))))
                config = schema.get("config", config)
                schema = schema["schema"]
            else:
                break
        t = schema.get("type")
        if t == "model-fields" and classes and not classes[-1][1]:
            return "model", classes, _field_keys(schema, config)[0]
        if t == "typed-dict":
            return "typed-dict", classes, _field_keys(schema, schema.get("config", config))[0]
        if t in ("list", "dict", "any"):
            return t, classes, {}
        if t == "str" and not rewritten:
            transforms = ("strip_whitespace", "to_lower", "to_upper")
            if not any(schema.get(k) for k in transforms) and not any(
                (config or {}).get("str_" + k) for k in transforms
            ):
                return "str", classes, {}
        if t in _SCALARS or (t == "enum" and _scalar_enum(schema)):
            return "scalar", classes, {}
        return "other", classes, {}

    def plan_model(self) -> _ModelPlan | Literal[False]:
        """What a frame of a plain model at this node is made from (see _Validator._frame)."""
        plan = self.model_plan
        if plan is None:
            plan = False
            kind, classes, fields = self.shape()
            if kind == "model" and not any(is_root for _cls, is_root in classes):
                cls = classes[-1][0]
                # (__pydantic_fields__ is what model_fields reads, without its cost)
                fields_of = getattr(cls, "__pydantic_fields__", None) or cls.model_fields
                if self.blank is None:
                    self.blank = dict.fromkeys(fields_of)
                plan = (cls, self.blank, fields, self.members, self.quick)
            self.model_plan = plan
        return plan

    def _container(self) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """The schema that says what members are, and the config in force for them."""
        if self._inner is None:
            schemas = self._schemas
            schema, config = self.schema, self.config
            for _ in range(1000):
                schema = schemas.resolve(schema)
                t = schema.get("type")
                if t in ("default", "nullable", "function-after"):
                    schema = schema["schema"]
                elif t == "json-or-python":
                    schema = schema["json_schema"]
                elif t == "lax-or-strict":
                    schema = schema["lax_schema"]
                elif t == "chain":
                    schema = (schema.get("steps") or [_ANY])[0]
                elif t == "model":
                    if schema.get("custom_init"):
                        schema = _ANY
                        break
                    config = schema.get("config", config)
                    schema = schema["schema"]
                elif t == "typed-dict":
                    config = schema.get("config", config)
                    break
                else:
                    break
            self._inner = (schema, config)
        return self._inner

    def child(self, key: str, parent: Any) -> Any:
        """The node of member ``key`` of ``parent`` (a dict or list), ``_NO`` or None."""
        schema, config = self._container()
        t = schema.get("type")
        is_obj = isinstance(parent, dict)
        if t in _SCALARS or (t == "enum" and _scalar_enum(schema)):
            return _NO
        if t in _ARRAYS:
            return self._item(schema, config, key) if not is_obj else _NO
        if t in _OBJECTS:
            if not is_obj:
                return _NO
            if t == "dict":
                return self._cached("", schema.get("values_schema"), config)
            return self._field(schema, config, key)
        if t == "union":
            if schema.get("custom_error_type") or schema.get("strict"):
                return None
            branches = self._children.get("|")
            if branches is None:
                branches = self._children["|"] = [
                    _Node(self._schemas, c[0] if isinstance(c, tuple) else c, config)
                    for c in schema["choices"]
                ]
            return _combine([b.child(key, parent) for b in branches])
        if t == "tagged-union":
            return self._tagged(schema, config, key, parent)
        return None

    def _cached(self, slot: Any, schema: Any, config: dict[str, Any] | None) -> _Node | None:
        if not isinstance(schema, dict):
            return None
        node = self._children.get(slot)
        if node is None:
            node = self._children[slot] = _Node(self._schemas, schema, config)
        return node

    def _item(self, schema: dict[str, Any], config: dict[str, Any] | None, key: str) -> Any:
        items = schema.get("items_schema")
        if schema.get("max_length") is not None:
            return None  # an array that ends too long reports only that, not its items
        if schema["type"] != "tuple":
            return self._cached("", items, config)
        if not isinstance(items, list) or not key.isdigit():
            return None
        i = int(key)
        variadic = schema.get("variadic_item_index")
        if variadic is None:
            return None  # a fixed tuple: likewise (too many items hide the items' errors)
        if i < variadic:
            return self._cached(i, items[i], config)
        if variadic == len(items) - 1:  # nothing after the variadic part
            return self._cached(variadic, items[variadic], config)
        return None  # an item after the variadic part is placed from the end

    def _field(self, schema: dict[str, Any], config: dict[str, Any] | None, key: str) -> Any:
        keys = self._children.get("keys")
        if keys is None:
            keys = self._children["keys"] = _field_keys(schema, config)
        single, used = keys
        name = single.get(key)
        if name is not None:
            return self._cached(("field", name), schema["fields"][name]["schema"], config)
        if key in used:
            return None  # a field more than one key can fill: the last to come may win
        extra = schema.get("extra_behavior") or (config or {}).get("extra_fields_behavior")
        if extra == "forbid":
            return _FORBIDDEN
        if extra == "allow":
            return self._cached("extra", schema.get("extras_schema"), config)
        return None

    def _tagged(
        self, schema: dict[str, Any], config: dict[str, Any] | None, key: str, parent: Any
    ) -> Any:
        if schema.get("custom_error_type") or not isinstance(parent, dict):
            return None if isinstance(parent, dict) else _NO
        disc = schema.get("discriminator")
        if isinstance(disc, list) and len(disc) == 1 and len(disc[0]) == 1:
            disc = disc[0][0]
        if not isinstance(disc, str) or key == disc:
            return None
        tag = parent.get(disc)
        if not isinstance(tag, (str, int)):
            return None  # not arrived yet (or not a tag): the final validation decides
        try:
            branch = schema["choices"].get(tag)
        except TypeError:
            return None
        if not isinstance(branch, dict):
            return None
        node = self._cached(("tag", tag), branch, config)
        return None if node is None else node.child(key, parent)


# A plain model's frame: its class, blank fields, keys, member nodes and quick fields.
_ModelPlan = tuple[
    type[BaseModel],
    dict[str, None],
    dict[str, str],
    dict[Any, Any],
    dict[Any, tuple[tuple[type, ...], str]],
]


def _scalar_enum(schema: dict[str, Any]) -> bool:
    return all(
        isinstance(getattr(m, "value", None), (str, int, float, bool, type(None)))
        for m in schema.get("members", ())
    )


def _field_keys(
    schema: dict[str, Any], config: dict[str, Any] | None
) -> tuple[dict[str, str], set[Any]]:
    """Keys that alone fill a field (key -> field name), and the first step of every key path."""
    config = config or {}
    by_alias = config.get("validate_by_alias", True)
    by_name = config.get("validate_by_name", config.get("populate_by_name", False))
    single: dict[str, str] = {}
    used: set[Any] = set()
    for name, field in schema.get("fields", {}).items():
        alias = field.get("validation_alias")
        paths: list[list[Any]] = []
        if alias is None:
            paths.append([name])
        else:
            if by_alias:
                if isinstance(alias, str):
                    paths.append([alias])
                elif alias and isinstance(alias[0], list):
                    paths.extend(list(p) for p in alias)  # AliasChoices
                else:
                    paths.append(list(alias))  # AliasPath
            if by_name:
                paths.append([name])
        used.update(p[0] for p in paths if p)
        if len(paths) == 1 and len(paths[0]) == 1 and isinstance(paths[0][0], str):
            single.setdefault(paths[0][0], name)
    return single, used


# -- the root and one stream's validator -----------------------------------------


def _core_config(adapter: TypeAdapter[Any]) -> dict[str, Any] | None:
    """The core config the adapter validates with (a TypeAdapter's own ``config``)."""
    try:
        # SchemaValidator pickles as (schema, config): the config it was built with.
        config = adapter.validator.__reduce__()[1][1]
    except (AttributeError, IndexError, TypeError):
        return None
    return config if isinstance(config, dict) else None


class _Root:
    """What every stream of one operator shares: the adapter, the schema walk, the model."""

    __slots__ = ("adapter", "model", "node")

    def __init__(self, target: Any) -> None:
        adapter = target if isinstance(target, TypeAdapter) else TypeAdapter(target)
        self.adapter: TypeAdapter[Any] = adapter
        schema = dict(adapter.core_schema)
        self.node = _Node(_Schemas(schema), schema, _core_config(adapter))
        tp = getattr(adapter, "_type", None)
        self.model = tp if isinstance(tp, type) and issubclass(tp, BaseModel) else None


# The schema walks of recently used model classes: each walk fills its caches
# (child nodes, stripped validators) as documents meet them, so an operator
# built per request starts warm. Keyed by the class and checked against its
# current core schema (a model_rebuild makes a new walk); bounded, so models
# made on the fly are not all kept alive.
_ROOTS: OrderedDict[type[BaseModel], _Root] = OrderedDict()
_ROOTS_MAX = 64
_ROOTS_LOCK = threading.Lock()


def schema_root(target: Any) -> _Root:
    """The schema walk of ``target`` (a type or a TypeAdapter), shared by every stream.

    A model class's walk is also shared by every operator built for it (see _ROOTS).
    """
    if not (isinstance(target, type) and issubclass(target, BaseModel)):
        return _Root(target)
    schema = getattr(target, "__pydantic_core_schema__", None)
    with _ROOTS_LOCK:
        root = _ROOTS.get(target)
        if root is not None and root.adapter.core_schema is schema:
            _ROOTS.move_to_end(target)
            return root
    root = _Root(target)  # (outside the lock: it may take a while, or raise)
    with _ROOTS_LOCK:
        _ROOTS[target] = root
        while len(_ROOTS) > _ROOTS_MAX:
            _ROOTS.popitem(last=False)
    return root


class _Frame:
    """One open container of the document, as model mode follows it.

    ``node`` is its place in the schema (None: not checked below), ``live``
    the parser's container, ``sink`` the typed partial object its members go
    into (a blank model instance, a list or dict of checked values) and
    ``display`` what its parent shows for it.
    """

    __slots__ = (
        "children",
        "display",
        "fields",
        "fields_set",
        "kind",
        "live",
        "node",
        "quick",
        "sink",
        "sink_dict",
        "step",
    )

    def __init__(
        self,
        node: Any,
        live: Any,
        step: Any,
        kind: str | None = None,
        children: dict[Any, Any] | None = None,
        sink: Any = None,
        fields: dict[str, str] | None = None,
        quick: dict[Any, tuple[tuple[type, ...], str]] | None = None,
        sink_dict: dict[str, Any] | None = None,
        fields_set: set[str] | None = None,
    ) -> None:
        # (all given at once: a frame is made per container of the document)
        self.node = node
        self.live = live
        self.step = step
        self.kind = kind
        # Child nodes by key (a list's or dict's members share one: key None);
        # None when a child depends on the members (a discriminated union).
        self.children = children
        self.sink = sink
        self.display: Any = sink
        self.fields: dict[str, str] = _NOTHING_IN if fields is None else fields
        # A model's: its node's quick fields, and its sink's __dict__ and fields
        # set (set by _Validator._frame for a model, never read otherwise).
        self.quick = quick
        self.sink_dict: dict[str, Any] = _NOTHING_IN if sink_dict is None else sink_dict
        self.fields_set: set[str] = _NO_NAMES if fields_set is None else fields_set


# Shared defaults of a _Frame's fields (never written: a frame gets its own).
_NOTHING_IN: dict[Any, Any] = {}
_NO_NAMES: set[str] = set()


def _blank(cls: type[BaseModel], fields: dict[str, None] | None = None) -> BaseModel:
    """An instance of ``cls`` with every field None, built without validation or user code.

    ``fields``: ``dict.fromkeys`` of its fields, if already made (a copy is cheaper).
    """
    inst = cls.__new__(cls)
    if fields is None:
        # (__pydantic_fields__ is what the model_fields property reads, without its cost)
        fields = dict.fromkeys(getattr(cls, "__pydantic_fields__", None) or cls.model_fields)
    _set(inst, "__dict__", fields.copy())
    _set_fields_set(inst, set())
    _set_extra(inst, None)
    _set_private(inst, None)
    return inst


_set = object.__setattr__


def _slot_setter(name: str) -> Callable[[Any, Any], None]:
    """Set BaseModel's slot ``name`` on an instance: its descriptor's own setter, if a slot."""
    slot = BaseModel.__dict__.get(name)
    if isinstance(slot, MemberDescriptorType):
        setter: Callable[[Any, Any], None] = slot.__set__
        return setter
    return lambda inst, value: _set(inst, name, value)  # pragma: no cover - not a slot


# (a slot's setter takes ~half the time of object.__setattr__ with its name)
_set_fields_set = _slot_setter("__pydantic_fields_set__")
_set_extra = _slot_setter("__pydantic_extra__")
_set_private = _slot_setter("__pydantic_private__")


def _blank_root(cls: type[BaseModel], root: Any) -> BaseModel:
    inst = cls.__new__(cls)
    object.__setattr__(inst, "__dict__", {"root": root})
    object.__setattr__(inst, "__pydantic_fields_set__", {"root"})
    return inst


class _Validator:
    """Follow the parser's events with a stack of frames: check leaves, build typed partials.

    Each event is handled in O(1) plus the size of the value it completes, so
    a whole document costs O(n) whatever its depth: a complete scalar is
    checked against its own sub-schema; a container is checked whole only
    where no typed partial object follows it (a union, a tuple, a set — see
    the module doc), once, when it closes. The root is validated in full by
    the target's own validator at the end (:meth:`final`).
    """

    __slots__ = ("_open_str", "_root", "_stack", "_top")

    def __init__(self, root: _Root) -> None:
        self._root = root
        self._stack: list[_Frame] = []
        self._top: Any = None  # the root's typed partial
        # The string growing in the top frame: (frame, step, shown), and for a
        # model's field (sink's __dict__, field name).
        self._open_str: tuple[Any, ...] | None = None

    # -- events ------------------------------------------------------------------
    def events(self, events: list[Any], offset: int, doc: Any) -> list[Any]:
        """Handle the parser's events of one chunk; return the final value(s) completed.

        The parser runs with ``steps=True``: an event's ``path`` is its step.
        """
        out: list[Any] = []
        n = len(events)
        i = 0
        while i < n:
            # (the parser names places by their step: see JSONParser's steps)
            op, step, value = events[i]
            i += 1
            if op == "done" and step is not None and self._stack:
                # The common case, inlined: a member complete (or a container
                # closing). Same steps as below: _child, _check, _place.
                stack = self._stack
                top = stack[-1]
                if value is top.live:
                    stack.pop()
                    if top.kind is None:  # (see _close: nothing to do otherwise)
                        self._close(top, doc, offset)
                    continue
                quick = top.quick
                if quick is not None:
                    # A model's plain scalar field (learnt below): what the
                    # steps below do for it, without looking anything up again.
                    hit = quick.get(step)
                    if hit is not None and type(value) in hit[0]:
                        self._open_str = None
                        field = hit[1]
                        top.sink_dict[field] = value
                        top.fields_set.add(field)
                        continue
                node = top.node
                if node is not None:
                    cache = top.children
                    key = None if top.kind in ("list", "dict") else step
                    if cache is not None and key in cache:
                        node = cache[key]
                    else:
                        node = self._child(top, step)
                self._open_str = None
                fast = False
                if node is None:
                    shown = None
                elif type(node) is _Node and type(value) in node.fast():
                    shown = value
                    fast = True
                else:
                    shown = self._check(node, value, step, doc, offset)
                if top.kind == "model":
                    name = top.fields.get(step)
                    if name is not None:
                        top.sink_dict[name] = shown
                        top.fields_set.add(name)
                        if fast and quick is not None:
                            # (the node depends on the step alone: see _Frame.children)
                            quick[step] = (node.fast(), name)
                else:
                    self._place(top, step, shown)
                continue
            if op == "set" and step is not None and type(value) is not str:
                # The other common case: a container that streams in (not set
                # and done at once, as below), below the root.
                stack = self._stack
                if stack and not (i < n and events[i][2] is value and events[i][0] == "done"):
                    top = stack[-1]
                    cache = top.children
                    if top.kind == "list" and cache is not None and None in cache:
                        node = cache[None]  # (an item of a list: _child's common case)
                    else:
                        node = self._child(top, step)
                    stack.append(self._frame(node, value, step, doc, offset))
                    continue
            if op == "append":
                continue
            # A container set and done at once (opened and closed within one
            # chunk); a value complete at once comes as one "done" (the next
            # event may be the first member's, at the same step: not this one).
            whole = op == "set" and i < n and events[i][2] is value and events[i][0] == "done"
            if whole:
                i += 1
                op = "done"
            if step is None:  # the root
                if op == "done":
                    self._stack.clear()
                    self._open_str = None
                    out.append(self.final(value, offset))
                elif isinstance(value, (dict, list)):
                    self._stack = [self._frame(self._root.node, value, None, doc, offset)]
                    self._top = self._stack[0].display
                continue
            stack = self._stack
            if not stack:
                continue
            top = stack[-1]
            if op == "done" and not whole and type(value) in (dict, list) and value is top.live:
                self._close(stack.pop(), doc, offset)
                continue
            node = self._child(top, step)
            if op == "set":
                if isinstance(value, str):  # a string that streams in
                    shown = node is not None and node is not _FORBIDDEN and _shows_str(node)
                    self._open_str = (top, step, shown)
                    self._place(top, step, value if shown else None)
                else:  # a container that streams in
                    stack.append(self._frame(node, value, step, doc, offset))
                continue
            self._open_str = None
            self._place(top, step, self._check(node, value, step, doc, offset))
        return out

    def _child(self, frame: _Frame, step: Any) -> Any:
        node = frame.node
        if node is None:
            return None
        cache = frame.children
        if cache is not None:
            key = None if frame.kind in ("list", "dict") else step
            if key in cache:
                return cache[key]
        child = node.child(str(step), frame.live)
        if child is _NO:
            child = None
        if cache is not None:
            cache[key] = child
        return child

    def _check(self, node: Any, value: Any, step: Any, doc: Any, offset: int) -> Any:
        """Check a complete value; return what the partial shows for it (None if unsure)."""
        if node is None:
            return None
        if isinstance(node, _Node) and type(value) in node.fast():
            return value
        try:
            text = _dumps(value)
        except RecursionError:
            return None  # deeper than json.dumps goes: the final validation decides
        try:
            result = node.check(value, text)
        except _EarlyError as exc:
            steps = [f.step for f in self._stack if f.step is not None]
            if step is not None:
                steps.append(step)
            errors = [{**e, "loc": (*steps, *e["loc"])} for e in exc.errors]
            raise _error(errors, doc, offset) from None
        return result if _exact(node) else None

    def _frame(self, node: Any, live: Any, step: Any, doc: Any, offset: int) -> _Frame:
        stack = self._stack
        if type(node) is _Node and type(live) is dict:
            plan = node.model_plan
            if plan is None:
                plan = node.plan_model()
            if plan:
                # The common case, a plain model's object: the steps below for
                # it, with what they look up made once per node (see plan_model).
                cls, blank, fields, members, quick = plan
                inst = cls.__new__(cls)  # (what _blank does, inline)
                sink_dict = blank.copy()
                fields_set: set[str] = set()
                _set(inst, "__dict__", sink_dict)
                _set_fields_set(inst, fields_set)
                _set_extra(inst, None)
                _set_private(inst, None)
                frame = _Frame(
                    node, live, step, "model", members, inst, fields, quick, sink_dict, fields_set
                )
                if stack:
                    up = stack[-1]
                    sink = up.sink
                    if up.kind == "list" and step == len(sink):
                        sink.append(inst)  # (an item of a list: _place's common case)
                    else:
                        self._place(up, step, inst)
                return frame
        frame = _Frame(node, live, step)
        if node is _FORBIDDEN:
            self._check(node, type(live)(), step, doc, offset)  # raises: extra key
        parent = stack[-1] if stack else None
        if isinstance(node, _Node):
            kind: str | None
            kind, classes, fields = node.shape()
            display: Any
            if kind == "scalar" or ((kind == "list") != (type(live) is list) and kind in _TYPED):
                # A container where the schema takes none (or the other kind):
                # validate_json rejects it here, whatever its members.
                self._check(node, type(live)(), step, doc, offset)
                kind = None
            if kind in _TYPED:
                frame.kind = kind
                frame.children = node.members
                if kind == "model":
                    cls = classes[-1][0]
                    blanks = node.blank
                    if blanks is None:
                        # (__pydantic_fields__ is what model_fields reads, without its cost)
                        fields_of = getattr(cls, "__pydantic_fields__", None) or cls.model_fields
                        blanks = node.blank = dict.fromkeys(fields_of)
                    frame.sink = display = _blank(cls, blanks)
                    frame.quick = node.quick
                    frame.sink_dict = display.__dict__
                    frame.fields_set = display.__pydantic_fields_set__
                else:
                    frame.sink = display = [] if kind == "list" else {}
                frame.fields = fields
            elif kind == "any":
                display = live
            else:
                display = None
            for cls, is_root in reversed(classes):
                if is_root and display is not None:
                    display = _blank_root(cls, display)
            frame.display = display
        if parent is not None:
            self._place(parent, step, frame.display)
        return frame

    def _close(self, frame: _Frame, doc: Any, offset: int) -> None:
        if frame.kind is None and frame.node is not None and self._stack:
            # Not followed member by member (a union, a tuple, ...): checked whole, once.
            shown = self._check(frame.node, frame.live, frame.step, doc, offset)
            self._place(self._stack[-1], frame.step, shown)

    @staticmethod
    def _place(frame: _Frame, step: Any, value: Any) -> None:
        kind = frame.kind
        if kind == "model":
            name = frame.fields.get(step)
            if name is not None:
                frame.sink_dict[name] = value
                frame.fields_set.add(name)
        elif kind == "list":
            sink = frame.sink
            if step == len(sink):
                sink.append(value)
            elif step < len(sink):
                sink[step] = value
        elif kind == "dict":
            frame.sink[step] = value
        elif kind == "typed-dict":
            name = frame.fields.get(step)
            if name is not None:
                frame.sink[name] = value

    # -- results -----------------------------------------------------------------
    def final(self, value: Any, offset: int) -> Any:
        """Validate the complete root value with the target's own validator; return the result."""
        self._top = None
        adapter = self._root.adapter
        try:
            # JSON mode, as model_validate_json of the text (see the module doc).
            # Re-serialising is exact: the value came from JSON (floats round-trip,
            # big ints stay exact, a lone surrogate stays an escape).
            try:
                text = _dumps(value)
            except RecursionError:
                # Nested deeper than json.dumps can go (the parser is iterative):
                # pydantic's own depth limit applies in Python mode as in JSON mode.
                return adapter.validate_python(value)
            return adapter.validate_json(text)
        except ValidationError as exc:
            raise _error([dict(e) for e in exc.errors()], value, offset) from exc

    def partial(self, value: Any, growing: tuple[Any, Any, Any] | None = None) -> Any:
        """The typed partial result to show (see :func:`streamops.parse_json`).

        Models at every level are instances (blank fields are None), lists and
        dicts hold checked values; a string field shows its text so far
        (``growing``: where the parser holds it, see ``JSONParser.open_string``);
        any other value is shown once complete and checked (None until then).
        """
        if growing is not None and self._stack:
            cont, key, step = growing
            top = self._stack[-1]
            if cont is top.live:
                opened = self._open_str
                if opened is None or opened[0] is not top or opened[1] != step:
                    node = self._child(top, step)
                    opened = self._open_str = (top, step, _shows_str(node))
                    if opened[2] and top.kind == "model":
                        name = top.fields.get(step)
                        if name is not None:
                            top.fields_set.add(name)
                            # (each later chunk of it: one assignment, below)
                            opened = self._open_str = (top, step, True, top.sink_dict, name)
                if len(opened) == 5:
                    opened[3][opened[4]] = cont[key]
                elif opened[2]:
                    self._place(top, step, cont[key])
        if self._top is None and not self._stack:
            # A scalar root (a string still growing): shown only where a plain
            # str is (never a SecretStr's raw text), inside its RootModel(s).
            kind, classes, _ = self._root.node.shape()
            if kind != "str" or not isinstance(value, str):
                return None
            for cls, _is_root in reversed(classes):
                value = _blank_root(cls, value)
            return value
        return self._top


_TYPED = frozenset(("model", "typed-dict", "list", "dict"))

# json.dumps's text for what validate_json reads back, made faster: no check for
# circular references (a value parsed from JSON has none), no spaces. Still
# ASCII-only (a lone surrogate stays an escape) and RecursionError when too deep.
_dumps = json.JSONEncoder(check_circular=False, separators=(",", ":")).encode


def _shows_str(node: Any) -> bool:
    """True if the partial may show a growing string for ``node`` (a plain ``str``)."""
    return isinstance(node, _Node) and node.shape()[0] == "str"


def _exact(node: Any) -> bool:
    """True if ``node``'s stripped check returns what the real validation would."""
    if isinstance(node, _AnyOf):
        return all(_exact(n) for n in node.nodes)
    return isinstance(node, _Node) and node.exact()


def _error(errors: list[dict[str, Any]], doc: Any, offset: int) -> JSONValidationError:
    first = errors[0] if errors else None
    path = error_pointer(first["loc"], doc, first["type"]) if first else ""
    message = f"invalid value at {path or '(root)'} (offset {offset}): " + "; ".join(
        f"{error_pointer(e['loc'], doc, e['type']) or '(root)'}: {e['msg']}" for e in errors[:3]
    )
    return JSONValidationError(message, path=path, errors=errors, offset=offset)
