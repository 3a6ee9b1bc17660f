"""Prices from genai-prices with the snapshot as fallback; provider usage preferred (issue 18)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import streamops as so
from streamops._budget import _pricing
from streamops.testing import FakeStreamingModel


@pytest.fixture
def no_genai_prices(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """As if the pricing extra were not installed."""
    monkeypatch.setattr(_pricing, "_genai_prices", lambda: None)
    _pricing._maintained_price.cache_clear()
    yield
    _pricing._maintained_price.cache_clear()


def test_default_prices_come_from_genai_prices() -> None:
    from genai_prices import Usage, calc_price

    calc = calc_price(Usage(input_tokens=1_000, output_tokens=1_000), model_ref="gpt-4.1")
    price = so.DEFAULT_PRICES.price("gpt-4.1")
    assert price.input_per_million == pytest.approx(float(calc.input_price) * 1000)
    assert price.output_per_million == pytest.approx(float(calc.output_price) * 1000)
    # Models our snapshot never listed, from every provider genai-prices covers.
    assert so.DEFAULT_PRICES.price("gemini-2.5-flash").output_per_million > 0
    assert so.DEFAULT_PRICES.price("claude-opus-4-1").output_per_million > 0


def test_snapshot_is_the_offline_fallback(no_genai_prices: None) -> None:
    assert so.DEFAULT_PRICES.price("gpt-4o") == so.ModelPrice(
        input_per_million=2.5, output_per_million=10.0
    )
    assert so.DEFAULT_PRICES.price("gpt-5-2025-08-07").output_per_million == 10.0
    with pytest.raises(so.PricingError, match=r"no price for model 'llama-x'; known: .*gpt-5"):
        so.DEFAULT_PRICES.price("llama-x")


def test_unknown_everywhere_says_so() -> None:
    with pytest.raises(so.PricingError, match=r"nor does genai-prices"):
        so.DEFAULT_PRICES.price("no-such-model-1")


def test_your_entries_come_first() -> None:
    mine = so.ModelPrice(input_per_million=0, output_per_million=1)
    table = so.DEFAULT_PRICES.merged({"gpt-4o": mine})
    assert table.price("gpt-4o") is mine
    assert table.price("gpt-4.1") == so.DEFAULT_PRICES.price("gpt-4.1")  # still maintained
    own = so.PriceTable(models={"m": mine})  # a table of your own is only yours
    with pytest.raises(so.PricingError, match="known: m"):
        own.price("gpt-4o")


def test_budget_counts_with_the_model_encoding_and_prices() -> None:
    stream = so.budget(max_tokens=50, model="gpt-5")(["Hello world"])
    assert stream.text() == "Hello world"
    usage = stream.report["budget"]
    assert isinstance(usage, so.BudgetUsage)
    assert usage.encoding == "o200k_base"
    assert usage.cost == so.DEFAULT_PRICES.price("gpt-5").cost(completion_tokens=2)
    assert usage.cost_source == "counted"


@pytest.mark.parametrize("fmt", ["openai", "anthropic", "langchain", "gemini"])
def test_provider_usage_is_recorded_and_preferred(fmt: Any) -> None:
    model = FakeStreamingModel("The answer is forty-two, as always.", format=fmt)
    stream = so.budget(max_tokens=100, model="gpt-4o")(model.stream("question"))
    list(stream)
    usage = stream.report["budget"]
    assert isinstance(usage, so.BudgetUsage)
    provider = stream.report["usage"]
    assert isinstance(provider, so.ProviderUsage)
    assert provider.completion_tokens == usage.completion_tokens
    assert usage.provider == provider
    assert usage.usage_mismatch is False
    assert usage.cost_source == "provider"


def test_a_mismatch_is_reported_and_the_provider_count_billed() -> None:
    chunks = [
        {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": "Hi"}}]},
        {
            "object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
        },
        {
            "object": "chat.completion.chunk",
            "choices": [],
            "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
        },
    ]
    price = so.ModelPrice(input_per_million=1_000_000, output_per_million=2_000_000)
    stream = so.budget(max_tokens=100, pricing=price, prompt_tokens=9)(chunks)
    list(stream)
    usage = stream.report["budget"]
    assert isinstance(usage, so.BudgetUsage)
    assert usage.completion_tokens == 1  # our count of "Hi"
    assert usage.provider == so.ProviderUsage(
        prompt_tokens=10, completion_tokens=5, total_tokens=15
    )
    assert usage.usage_mismatch is True
    assert usage.cost == price.cost(prompt_tokens=10, completion_tokens=5)
    assert usage.model_dump()["cost_source"] == "provider"


def test_usage_without_a_budget_is_still_reported() -> None:
    model = FakeStreamingModel("one two", format="anthropic")
    stream = so.redact()(model.stream("x"))
    list(stream)
    assert stream.report.to_dict()["sections"]["usage"]["completion_tokens"] == 2


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("inf.toml", "[models.m]\ninput_per_million = inf\noutput_per_million = 1.0\n"),
        ("inf.json", '{"models": {"m": {"input_per_million": Infinity, "output_per_million": 1}}}'),
        ("huge.json", '{"models": {"m": {"input_per_million": 1e400, "output_per_million": 1}}}'),
        ("str.json", '{"models": {"m": {"input_per_million": "3", "output_per_million": 1}}}'),
        ("bool.json", '{"models": {"m": {"input_per_million": 1, "output_per_million": true}}}'),
        ("deep.json", '{"models": ' + "[" * 100_000 + "]" * 100_000 + "}"),
    ],
)
def test_a_price_file_with_a_price_that_is_not_a_finite_number_is_refused(
    tmp_path: Any, name: str, text: str
) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(so.PricingError, match=name):
        so.PriceTable.from_file(path)


def test_prices_are_finite_numbers() -> None:
    with pytest.raises(ValueError, match="finite"):
        so.ModelPrice(input_per_million=float("inf"), output_per_million=1.0)
    assert so.ModelPrice(input_per_million=3, output_per_million=15).input_per_million == 3.0
    # A cost no token count can reach is no limit (not an OverflowError).
    price = so.ModelPrice(input_per_million=1e-300, output_per_million=1e-300)
    assert list(so.budget(max_cost=1e308, pricing=price)(["a b c"])) == ["a b c"]
