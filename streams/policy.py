"""The policy file (``LLMTEL_POLICY``): plans, tenants, budgets, rules, prices.

Validated once at start; a bad file fails with the field path and the reason.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from streams.errors import ConfigError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelPriceSpec(_Strict):
    """USD per million tokens; ``cached_input`` defaults to ``input``."""

    input: Decimal = Field(ge=0)
    output: Decimal = Field(ge=0)
    cached_input: Decimal | None = Field(None, ge=0)
    provider: str | None = None
    capabilities: list[str] | None = None

    def as_fields(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


class TenantSpec(_Strict):
    plan: str | None = None


class Policy(_Strict):
    """Everything an operator tunes without a code change."""

    tenants: dict[str, TenantSpec] = Field(default_factory=dict)
    accept_unknown_tenants: bool = Field(
        True, description="false: events of tenants not listed under tenants go to the DLQ"
    )
    prices: dict[str, ModelPriceSpec] = Field(default_factory=dict)

    @field_validator("prices")
    @classmethod
    def _price_digits(cls, prices: dict[str, ModelPriceSpec]) -> dict[str, ModelPriceSpec]:
        for name, spec in prices.items():
            for field, value in spec.as_fields().items():
                if isinstance(value, Decimal) and -value.as_tuple().exponent > 6:  # type: ignore[operator]
                    raise ValueError(f"{name}.{field}: at most 6 decimals")
        return prices

    def allowed_tenants(self) -> frozenset[str] | None:
        """The tenant allow-list, or None when every tenant is accepted."""
        return None if self.accept_unknown_tenants else frozenset(self.tenants)


def load_policy(path: Path | None) -> Policy:
    """Read and validate a policy file; no path means the defaults."""
    if path is None:
        return Policy()
    try:
        raw = yaml.safe_load(Path(path).read_text()) or {}
    except OSError as exc:
        raise ConfigError(f"LLMTEL_POLICY: cannot read {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"LLMTEL_POLICY: {path} is not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"LLMTEL_POLICY: {path} must hold a mapping at the top level")
    try:
        return Policy.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'policy'}: {err['msg']}"
            for err in exc.errors()
        )
        raise ConfigError(f"invalid policy {path}: {problems}") from None
