"""Token prices per model as pydantic models, loadable from JSON or TOML files."""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .._core._errors import PricingError

__all__ = ("DEFAULT_PRICES", "ModelPrice", "PriceTable", "PricingError")


class ModelPrice(BaseModel):
    """The price of one model in currency units (e.g. USD) per million tokens.

    >>> p = ModelPrice(input_per_million=2.5, output_per_million=10.0)
    >>> p.cost(prompt_tokens=1000, completion_tokens=500)
    0.0075
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    input_per_million: float = Field(ge=0)
    output_per_million: float = Field(ge=0)

    def cost(self, *, prompt_tokens: int = 0, completion_tokens: int = 0) -> float:
        """Return the price of ``prompt_tokens`` input and ``completion_tokens`` output tokens."""
        return (
            prompt_tokens * self.input_per_million + completion_tokens * self.output_per_million
        ) / 1_000_000


class PriceTable(BaseModel):
    """Prices by model name; a dated model name falls back to its longest known prefix.

    Override entries with :meth:`merged`, or load a whole table with
    :meth:`from_file` (JSON or TOML, shaped like ``{"models": {name: price}}``).

    >>> table = PriceTable(models={"gpt-4o": ModelPrice(input_per_million=2.5,
    ...                                                 output_per_million=10)})
    >>> table.price("gpt-4o-2024-08-06").output_per_million
    10.0
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    models: dict[str, ModelPrice] = Field(default_factory=dict)
    as_of: str | None = None
    """When the prices were copied (tables are snapshots; providers change prices)."""

    def price(self, model: str) -> ModelPrice:
        """Return the price of ``model`` (exact name first, then the longest prefix)."""
        found = self.models.get(model)
        if found is not None:
            return found
        prefixes = [name for name in self.models if model.startswith(name)]
        if prefixes:
            return self.models[max(prefixes, key=len)]
        known = ", ".join(sorted(self.models)) or "(none)"
        raise PricingError(f"no price for model {model!r}; known: {known}")

    def merged(self, other: PriceTable | dict[str, ModelPrice]) -> PriceTable:
        """Return a table with ``other``'s entries replacing or adding to this one's.

        >>> cheap = DEFAULT_PRICES.merged({"my-model": ModelPrice(input_per_million=0,
        ...                                                       output_per_million=1)})
        >>> cheap.price("my-model").output_per_million
        1.0
        """
        extra = other.models if isinstance(other, PriceTable) else other
        as_of = other.as_of if isinstance(other, PriceTable) else self.as_of
        return PriceTable(models={**self.models, **extra}, as_of=as_of)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> PriceTable:
        """Load a table from a ``.json`` or ``.toml`` file.

        A TOML file looks like::

            as_of = "2025-01-01"
            [models."gpt-4o"]
            input_per_million = 2.5
            output_per_million = 10.0
        """
        file = Path(path)
        try:
            raw = file.read_bytes()
        except OSError as exc:
            raise PricingError(f"cannot read price file {file}: {exc}") from exc
        data: Any
        try:
            if file.suffix.lower() == ".toml":
                data = tomllib.loads(raw.decode("utf-8"))
            elif file.suffix.lower() == ".json":
                data = json.loads(raw)
            else:
                raise PricingError(f"price file {file} must end in .json or .toml")
        except (ValueError, tomllib.TOMLDecodeError) as exc:
            if isinstance(exc, PricingError):
                raise
            raise PricingError(f"price file {file} is not valid {file.suffix[1:]}: {exc}") from exc
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise PricingError(f"price file {file} is invalid:\n{exc}") from exc


def _p(inp: float, out: float) -> ModelPrice:
    return ModelPrice(input_per_million=inp, output_per_million=out)


DEFAULT_PRICES = PriceTable(
    as_of="2025-01",
    models={
        "gpt-4o-mini": _p(0.15, 0.60),
        "gpt-4o": _p(2.50, 10.00),
        "gpt-4-turbo": _p(10.00, 30.00),
        "gpt-4": _p(30.00, 60.00),
        "gpt-3.5-turbo": _p(0.50, 1.50),
        "claude-3-5-sonnet": _p(3.00, 15.00),
        "claude-3-5-haiku": _p(0.80, 4.00),
        "claude-3-opus": _p(15.00, 75.00),
    },
)
"""A snapshot of list prices in USD (see ``as_of``); override it with your own prices."""
