"""Token prices per model as pydantic models, loadable from JSON or TOML files.

Where prices come from: :data:`DEFAULT_PRICES` asks ``genai-prices`` first (a
maintained, versioned price database that ships its data in the package: no
network; ``pip install 'streamops[pricing]'``) and falls back to the snapshot
below when that package is not installed or does not know the model. A table
you build or load yourself holds only your prices, and a table made with
:meth:`PriceTable.merged` puts your entries before everything else.
"""

from __future__ import annotations

import functools
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

    # Finite numbers only (an infinite price would make every limit infinite), and
    # numbers only: "3" or true in a price file is a mistake, not a price.
    input_per_million: float = Field(ge=0, allow_inf_nan=False, strict=True)
    output_per_million: float = Field(ge=0, allow_inf_nan=False, strict=True)

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
    maintained: bool = False
    """Ask ``genai-prices`` (when installed) for a model :attr:`models` does not list."""
    fallback: PriceTable | None = None
    """The table asked last (the offline snapshot, for :data:`DEFAULT_PRICES`)."""

    def price(self, model: str) -> ModelPrice:
        """Return the price of ``model``.

        Looked up in :attr:`models` (exact name first, then the longest
        prefix), then in ``genai-prices`` when :attr:`maintained`, then in
        :attr:`fallback`. Raises :class:`PricingError` when none knows it.
        """
        found = self.models.get(model)
        if found is not None:
            return found
        prefixes = [name for name in self.models if model.startswith(name)]
        if prefixes:
            return self.models[max(prefixes, key=len)]
        if self.maintained:
            maintained = _maintained_price(model)
            if maintained is not None:
                return maintained
        if self.fallback is not None:
            try:
                return self.fallback.price(model)
            except PricingError:
                pass
        known = ", ".join(sorted({*self.models, *(self.fallback.models if self.fallback else ())}))
        where = " (nor does genai-prices)" if self.maintained and _genai_prices() else ""
        raise PricingError(f"no price for model {model!r}{where}; known: {known or '(none)'}")

    def merged(self, other: PriceTable | dict[str, ModelPrice]) -> PriceTable:
        """Return a table with ``other``'s entries replacing or adding to this one's.

        >>> cheap = DEFAULT_PRICES.merged({"my-model": ModelPrice(input_per_million=0,
        ...                                                       output_per_million=1)})
        >>> cheap.price("my-model").output_per_million
        1.0
        """
        extra = other.models if isinstance(other, PriceTable) else other
        as_of = other.as_of if isinstance(other, PriceTable) else self.as_of
        return PriceTable(
            models={**self.models, **extra},
            as_of=as_of,
            maintained=self.maintained,
            fallback=self.fallback,
        )

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
        except RecursionError:
            raise PricingError(f"price file {file} is nested too deeply") from None
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise PricingError(f"price file {file} is invalid:\n{exc}") from exc
        except RecursionError:
            raise PricingError(f"price file {file} is nested too deeply") from None


def _genai_prices() -> Any:
    """The ``genai_prices`` module, or ``None`` when the ``pricing`` extra is not installed."""
    try:
        import genai_prices
    except ImportError:
        return None
    return genai_prices


@functools.lru_cache(maxsize=256)
def _maintained_price(model: str) -> ModelPrice | None:
    """The base-tier price of ``model`` in genai-prices' bundled data (``None`` if unknown).

    Read through its public ``calc_price``: the price of a thousand tokens each
    way, scaled to a million (a small usage stays in the base tier of tiered
    prices). Only the bundled data is used: streamops never asks it to update
    over the network.
    """
    genai_prices = _genai_prices()
    if genai_prices is None:
        return None
    try:
        calc = genai_prices.calc_price(
            genai_prices.Usage(input_tokens=1000, output_tokens=1000), model_ref=model
        )
    except LookupError:
        return None
    return ModelPrice(
        input_per_million=float(calc.input_price) * 1000,
        output_per_million=float(calc.output_price) * 1000,
    )


def _p(inp: float, out: float) -> ModelPrice:
    return ModelPrice(input_per_million=inp, output_per_million=out)


SNAPSHOT_PRICES = PriceTable(
    as_of="2025-10",
    models={
        "gpt-5-mini": _p(0.25, 2.00),
        "gpt-5": _p(1.25, 10.00),
        "gpt-4.1-mini": _p(0.40, 1.60),
        "gpt-4.1": _p(2.00, 8.00),
        "gpt-4o-mini": _p(0.15, 0.60),
        "gpt-4o": _p(2.50, 10.00),
        "gpt-4-turbo": _p(10.00, 30.00),
        "gpt-4": _p(30.00, 60.00),
        "gpt-3.5-turbo": _p(0.50, 1.50),
        "o3": _p(2.00, 8.00),
        "o4-mini": _p(1.10, 4.40),
        "claude-sonnet-4-5": _p(3.00, 15.00),
        "claude-sonnet-4": _p(3.00, 15.00),
        "claude-opus-4-1": _p(15.00, 75.00),
        "claude-3-5-sonnet": _p(3.00, 15.00),
        "claude-3-5-haiku": _p(0.80, 4.00),
        "claude-3-opus": _p(15.00, 75.00),
        "gemini-2.5-pro": _p(1.25, 10.00),
        "gemini-2.5-flash": _p(0.30, 2.50),
        "gemini-2.0-flash": _p(0.10, 0.40),
    },
)
"""The offline snapshot of list prices in USD (``as_of``): used when genai-prices is absent."""

DEFAULT_PRICES = PriceTable(maintained=True, fallback=SNAPSHOT_PRICES)
"""Prices from genai-prices (the ``pricing`` extra), else :data:`SNAPSHOT_PRICES`.

>>> DEFAULT_PRICES.price("gpt-4o").output_per_million
10.0
"""
