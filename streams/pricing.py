"""Model prices and exact cost arithmetic.

Money is kept as integer pico-USD (1e-12 USD) from parsing to storage: a price of
$0.075 per million tokens is 75,000 pico-USD per token, so every cost the table computes is
an exact integer, and sums never round.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from importlib import resources
from typing import Any, NamedTuple

import yaml

from streams.errors import ConfigError

PICO = 10**12
"""pico-USD per USD."""
PRICE_DECIMALS = 6
"""Digits after the point a price per million tokens may have (keeps per-token prices integral)."""

COST_FROM_EVENT = "event"
COST_FROM_PRICE_TABLE = "price_table"
COST_UNKNOWN_MODEL = "unknown_model"

_DATED_SUFFIX = re.compile(r"(-\d{4}-\d{2}-\d{2}|-\d{8}|-\d{4}|-latest|@[\w.-]+)$")


class ModelPrice(NamedTuple):
    """Prices of one model, in pico-USD per token, and what the model can do."""

    provider: str
    input: int
    cached_input: int
    output: int
    capabilities: frozenset[str]
    retired: bool = False  # still priced, never recommended

    def cost(self, input_tokens: int, cached_input_tokens: int, output_tokens: int) -> int:
        """Exact cost of one call in pico-USD (cached tokens are part of input_tokens)."""
        return (
            (input_tokens - cached_input_tokens) * self.input
            + cached_input_tokens * self.cached_input
            + output_tokens * self.output
        )


def usd_to_pico(amount: Decimal) -> int:
    """USD to pico-USD, rounding half-even below 1e-12 USD (the stored precision)."""
    return int((amount * PICO).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


def pico_to_usd(pico: int) -> Decimal:
    """pico-USD to USD, exactly."""
    return Decimal(pico).scaleb(-12)


def _per_token_pico(value: Any, where: str) -> int:
    try:
        per_million = Decimal(str(value))
    except InvalidOperation:
        raise ConfigError(f"{where}: {value!r} is not a decimal number") from None
    if not per_million.is_finite() or per_million < 0:
        raise ConfigError(f"{where}: must be a finite number >= 0, got {value!r}")
    if -per_million.as_tuple().exponent > PRICE_DECIMALS:  # type: ignore[operator]
        raise ConfigError(f"{where}: at most {PRICE_DECIMALS} decimals, got {value!r}")
    return int(per_million * 10**6)  # USD/1M tokens -> pico-USD/token


def _model_price(name: str, raw: Mapping[str, Any], where: str) -> ModelPrice:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}.{name}: must be a mapping with input, cached_input, output")
    for key in ("input", "output"):
        if key not in raw:
            raise ConfigError(f"{where}.{name}.{key}: required")
    unknown = set(raw) - {"input", "cached_input", "output", "provider", "capabilities", "retired"}
    if unknown:
        raise ConfigError(f"{where}.{name}: unknown fields {sorted(unknown)}")
    input_price = _per_token_pico(raw["input"], f"{where}.{name}.input")
    cached = raw.get("cached_input", raw["input"])
    caps = raw.get("capabilities", [])
    if not isinstance(caps, list) or not all(isinstance(c, str) for c in caps):
        raise ConfigError(f"{where}.{name}.capabilities: must be a list of names")
    return ModelPrice(
        provider=str(raw.get("provider", "")),
        input=input_price,
        cached_input=_per_token_pico(cached, f"{where}.{name}.cached_input"),
        output=_per_token_pico(raw["output"], f"{where}.{name}.output"),
        capabilities=frozenset(caps),
        retired=bool(raw.get("retired", False)),
    )


class PriceTable:
    """Prices per model: the shipped table plus the policy's ``prices`` overrides."""

    def __init__(self, models: Mapping[str, ModelPrice], as_of: str = "") -> None:
        self.models = dict(models)
        self.as_of = as_of
        self._resolved: dict[str, ModelPrice | None] = {}

    @classmethod
    def shipped(cls, overrides: Mapping[str, Mapping[str, Any]] | None = None) -> PriceTable:
        """The table shipped with llmtel, with ``overrides`` (USD per 1M tokens) applied."""
        raw = yaml.safe_load(resources.files("streams").joinpath("prices.yaml").read_text())
        models = {
            name.lower(): _model_price(name, spec, "prices.yaml")
            for name, spec in raw["models"].items()
        }
        for name, spec in (overrides or {}).items():
            base = models.get(name.lower())
            merged = {**base_fields(base), **spec} if base else dict(spec)
            models[name.lower()] = _model_price(name, merged, "policy.prices")
        return cls(models, as_of=str(raw.get("as_of", "")))

    def lookup(self, model: str) -> ModelPrice | None:
        """The price of ``model``; dated or provider-prefixed names fall back to the base name."""
        try:
            return self._resolved[model]
        except KeyError:
            pass
        name = model.lower()
        price = self.models.get(name)
        if price is None and "/" in name:
            name = name.rsplit("/", 1)[1]
            price = self.models.get(name)
        if price is None:
            price = self.models.get(_DATED_SUFFIX.sub("", name))
        if len(self._resolved) < 100_000:  # bounded: model names come from producers
            self._resolved[model] = price
        return price

    def cost(
        self, model: str, input_tokens: int, cached_input_tokens: int, output_tokens: int
    ) -> tuple[int, str]:
        """(pico-USD, source) of a call that carried no cost; unknown models cost 0."""
        price = self.lookup(model)
        if price is None:
            return 0, COST_UNKNOWN_MODEL
        return price.cost(input_tokens, cached_input_tokens, output_tokens), COST_FROM_PRICE_TABLE

    def cheapest_with(self, model: str) -> str | None:
        """The cheapest model with at least the capabilities of ``model``, or None.

        "Cheapest" compares the price of a typical call (3 input tokens per output token).
        """
        current = self.lookup(model)
        if current is None:
            return None
        needed = current.capabilities

        def typical(p: ModelPrice) -> int:
            return 3 * p.input + p.output

        candidates = [
            (typical(p), name)
            for name, p in self.models.items()
            if needed <= p.capabilities and p.provider != "local" and not p.retired
        ]
        if not candidates:
            return None
        price, name = min(candidates)
        return name if price < typical(current) else None


def base_fields(price: ModelPrice) -> dict[str, Any]:
    """A ModelPrice as the YAML fields it came from (USD per 1M tokens)."""
    return {
        "provider": price.provider,
        "input": Decimal(price.input).scaleb(-6),
        "cached_input": Decimal(price.cached_input).scaleb(-6),
        "output": Decimal(price.output).scaleb(-6),
        "capabilities": sorted(price.capabilities),
    }
