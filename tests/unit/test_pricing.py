from decimal import Decimal

import pytest

from streams.errors import ConfigError
from streams.pricing import (
    COST_FROM_PRICE_TABLE,
    COST_UNKNOWN_MODEL,
    PriceTable,
    pico_to_usd,
    usd_to_pico,
)


@pytest.fixture(scope="module")
def prices():
    return PriceTable.shipped()


def test_cost_follows_the_formula_with_cached_tokens_at_the_cached_rate(prices):
    p = prices.lookup("gpt-4o")
    cost, source = prices.cost(
        "gpt-4o", input_tokens=1000, cached_input_tokens=200, output_tokens=500
    )
    expected = (
        (1000 - 200) * Decimal("2.50") + 200 * Decimal("1.25") + 500 * Decimal("10.00")
    ) / 1_000_000
    assert p is not None
    assert pico_to_usd(cost) == expected
    assert source == COST_FROM_PRICE_TABLE


def test_sub_micro_dollar_prices_stay_exact():
    table = PriceTable.shipped({"tiny": {"input": "0.075", "output": "0.000001"}})
    cost, _ = table.cost("tiny", 1, 0, 1)
    assert pico_to_usd(cost) == Decimal("0.075") / 10**6 + Decimal("0.000001") / 10**6


def test_dated_and_prefixed_model_names_use_the_base_price(prices):
    base = prices.lookup("gpt-4o")
    assert prices.lookup("gpt-4o-2024-08-06") == base
    assert prices.lookup("openai/gpt-4o") == base
    assert prices.lookup("GPT-4o") == base
    assert prices.lookup("gpt-4o-mini") != base


def test_unknown_model_costs_zero_and_says_so(prices):
    assert prices.cost("my-own-finetune", 1000, 0, 1000) == (0, COST_UNKNOWN_MODEL)


def test_policy_overrides_and_adds_models():
    table = PriceTable.shipped(
        {"gpt-4o": {"input": "1", "output": "2"}, "house-model": {"input": "0.5", "output": "1"}}
    )
    gpt = table.lookup("gpt-4o")
    assert gpt is not None and gpt.input == 1_000_000 and gpt.output == 2_000_000
    assert table.cost("house-model", 2_000_000, 0, 0)[0] == usd_to_pico(Decimal(1))


def test_prices_with_more_than_six_decimals_are_refused():
    with pytest.raises(ConfigError, match=r"policy.prices.bad.input"):
        PriceTable.shipped({"bad": {"input": "0.0000001", "output": "1"}})


def test_usd_to_pico_rounds_half_even_below_a_pico_dollar():
    assert usd_to_pico(Decimal("0.30000000000000004")) == 300_000_000_000
    assert usd_to_pico(Decimal("0.0000000000015")) == 2
    assert usd_to_pico(Decimal("0.0000000000025")) == 2


def test_shipped_table_is_dated_and_covers_major_providers(prices):
    assert prices.as_of
    providers = {p.provider for p in prices.models.values()}
    assert {"openai", "anthropic", "google", "mistral", "local"} <= providers
    assert all(
        p.input == 0 and p.output == 0 for p in prices.models.values() if p.provider == "local"
    )


def test_cheapest_model_keeps_the_capabilities_of_the_current_one(prices):
    current = prices.lookup("gpt-4o")
    name = prices.cheapest_with("gpt-4o")
    assert name is not None and current is not None
    cheaper = prices.lookup(name)
    assert cheaper is not None
    assert current.capabilities <= cheaper.capabilities
    assert 3 * cheaper.input + cheaper.output < 3 * current.input + current.output


def test_retired_models_are_priced_but_never_recommended(prices):
    retired = {name for name, p in prices.models.items() if p.retired}
    assert "gemini-1.5-flash" in retired and prices.lookup("gemini-1.5-flash").input > 0
    for name in prices.models:
        assert prices.cheapest_with(name) not in retired
