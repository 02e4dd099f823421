"""The policy file (``LLMTEL_POLICY``): plans, tenants, budgets, rules, prices.

Validated once at start; a bad file fails with the field path and the reason. Every section
has documented defaults, so an empty file (or none) is a valid policy.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from schemas.outputs import DegradeMode
from streams.durations import parse_duration
from streams.errors import ConfigError
from streams.rules import DEFAULT_RULES, RuleSpec, configure

Duration = Annotated[float, BeforeValidator(parse_duration)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class ModelPriceSpec(_Strict):
    """USD per million tokens; ``cached_input`` defaults to ``input``."""

    input: Decimal = Field(ge=0)
    output: Decimal = Field(ge=0)
    cached_input: Decimal | None = Field(None, ge=0)
    provider: str | None = None
    capabilities: list[str] | None = None

    def as_fields(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


class PlanSpec(_Strict):
    """A commercial plan: its daily budget and what to do when it is spent."""

    daily_budget_usd: Decimal = Field(gt=0)
    on_exceeded: list[DegradeMode] | None = Field(
        None, description="degrade modes on exceeding the budget; default: budget.on_exceeded"
    )


class TenantSpec(_Strict):
    plan: str | None = None
    tier: str | None = None


class BudgetSpec(_Strict):
    warn_at: float = Field(0.8, gt=0, lt=1)
    on_exceeded: list[DegradeMode] = Field(default_factory=lambda: ["route_cheaper_model"])


class RuleOverride(_Strict):
    """Changes to one built-in rule; unset fields keep the default."""

    threshold: float | None = None
    window: Duration | None = Field(None, gt=0)
    for_: Duration | None = Field(None, alias="for", ge=0)
    severity: Literal["info", "warning", "critical"] | None = None
    min_samples: int | None = Field(None, ge=0)
    hysteresis: float | None = Field(None, ge=0, lt=1)
    enabled: bool | None = None
    degrade: list[DegradeMode] | None = None
    runbook: str | None = None


class MetricsSpec(_Strict):
    """Prometheus labels: per-tenant series can be capped or turned off for large fleets."""

    tenant_labels: bool = True
    max_tenants: int = Field(1000, ge=1)


class TierSpec(_Strict):
    """What a tier promises: SLI targets over the SLO evaluation window."""

    availability: float = Field(gt=0, lt=1)
    p95_latency_ms: float = Field(gt=0)
    json_valid: float = Field(gt=0, le=1)
    groundedness: float = Field(gt=0, le=1)
    cost_p95_usd: float = Field(gt=0)


class MaintenanceWindow(_Strict):
    """A time range left out of the SLIs (for the listed tenants, or all)."""

    start: datetime
    end: datetime
    tenants: list[str] | None = None

    @model_validator(mode="after")
    def _ordered(self) -> MaintenanceWindow:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("start and end need a time zone, e.g. 2026-11-22T02:00:00Z")
        if self.end <= self.start:
            raise ValueError("end must be after start")
        return self


DEFAULT_TIERS = {
    "bronze": TierSpec(
        availability=0.99,
        p95_latency_ms=1800,
        json_valid=0.95,
        groundedness=0.70,
        cost_p95_usd=0.012,
    ),
    "silver": TierSpec(
        availability=0.995,
        p95_latency_ms=1200,
        json_valid=0.97,
        groundedness=0.78,
        cost_p95_usd=0.010,
    ),
    "gold": TierSpec(
        availability=0.999,
        p95_latency_ms=800,
        json_valid=0.99,
        groundedness=0.85,
        cost_p95_usd=0.008,
    ),
}
SLIS = ("availability", "latency", "json_valid", "groundedness", "cost")


class SloSpec(_Strict):
    """Service levels per tier, the SLA watchdog, error budgets and burn-rate alerts."""

    tiers: dict[str, TierSpec] = Field(default_factory=lambda: dict(DEFAULT_TIERS))
    default_tier: str = "bronze"
    plan_tiers: dict[str, str] = Field(
        default_factory=lambda: {"starter": "bronze", "pro": "silver", "enterprise": "gold"}
    )
    interval: Duration = Field(300.0, ge=1, description="how often the SLA watchdog runs")
    evaluation_window: Duration = Field(
        1800.0, gt=0, description="window of the SLIs checked against targets"
    )
    budget_window: Duration = Field(
        30 * 86400.0, gt=0, description="rolling window of the error budget"
    )
    min_samples: int = Field(20, ge=1, description="fewer samples of an SLI: no verdict")
    hysteresis: float = Field(0.1, ge=0, lt=1)
    exclude_provider_errors: bool = Field(
        False, description="provider outages do not count against availability"
    )
    exclude_tenants: list[str] = Field(default_factory=list)
    maintenance: list[MaintenanceWindow] = Field(default_factory=list)
    degrade: dict[str, list[DegradeMode]] = Field(
        default_factory=lambda: {
            "latency": ["route_cheaper_model", "reduce_top_k"],
            "json_valid": ["strict_output"],
            "groundedness": ["safe_answers"],
            "cost": ["route_cheaper_model"],
            "availability": [],
        }
    )

    @model_validator(mode="after")
    def _tiers_exist(self) -> SloSpec:
        names = set(self.tiers)
        pairs = [
            ("default_tier", self.default_tier),
            *((f"plan_tiers.{p}", t) for p, t in self.plan_tiers.items()),
        ]
        for where, tier in pairs:
            if tier not in names:
                raise ValueError(f"{where}: tier {tier!r} is not one of {sorted(names)}")
        unknown = set(self.degrade) - set(SLIS)
        if unknown:
            raise ValueError(f"degrade: unknown SLIs {sorted(unknown)}; known: {', '.join(SLIS)}")
        return self


DEFAULT_PLANS = {
    "starter": PlanSpec(daily_budget_usd=Decimal(5)),
    "pro": PlanSpec(daily_budget_usd=Decimal(50)),
    "enterprise": PlanSpec(daily_budget_usd=Decimal(500)),
}


class Policy(_Strict):
    """Everything an operator tunes without a code change."""

    plans: dict[str, PlanSpec] = Field(default_factory=lambda: dict(DEFAULT_PLANS))
    default_plan: str = "starter"
    tenants: dict[str, TenantSpec] = Field(default_factory=dict)
    accept_unknown_tenants: bool = Field(
        True, description="false: events of tenants not listed under tenants go to the DLQ"
    )
    budget: BudgetSpec = Field(default_factory=BudgetSpec)
    allowed_lateness: Duration = Field(
        300.0, ge=0, description="how late an event may arrive and still count in rule windows"
    )
    rules: dict[str, RuleOverride] = Field(default_factory=dict)
    prices: dict[str, ModelPriceSpec] = Field(default_factory=dict)
    metrics: MetricsSpec = Field(default_factory=MetricsSpec)
    store_content: bool = Field(
        False,
        description="store llm_call prompt/completion (redacted); off: they are dropped at parse",
    )
    max_record_bytes: int | None = Field(None, ge=256, description="caps LLMTEL_MAX_RECORD_BYTES")
    slo: SloSpec = Field(default_factory=SloSpec)

    @field_validator("prices")
    @classmethod
    def _price_digits(cls, prices: dict[str, ModelPriceSpec]) -> dict[str, ModelPriceSpec]:
        for name, spec in prices.items():
            for field, value in spec.as_fields().items():
                if isinstance(value, Decimal) and -value.as_tuple().exponent > 6:  # type: ignore[operator]
                    raise ValueError(f"{name}.{field}: at most 6 decimals")
        return prices

    @field_validator("rules")
    @classmethod
    def _known_rules(cls, rules: dict[str, RuleOverride]) -> dict[str, RuleOverride]:
        unknown = sorted(set(rules) - set(DEFAULT_RULES))
        if unknown:
            raise ValueError(f"unknown rules {unknown}; known: {', '.join(sorted(DEFAULT_RULES))}")
        return rules

    @model_validator(mode="after")
    def _plans_exist(self) -> Policy:
        if self.default_plan not in self.plans:
            raise ValueError(
                f"default_plan {self.default_plan!r} is not one of plans: {sorted(self.plans)}"
            )
        for tenant, spec in self.tenants.items():
            if spec.plan is not None and spec.plan not in self.plans:
                raise ValueError(
                    f"tenants.{tenant}.plan {spec.plan!r} is not one of plans: {sorted(self.plans)}"
                )
            if spec.tier is not None and spec.tier not in self.slo.tiers:
                raise ValueError(
                    f"tenants.{tenant}.tier {spec.tier!r} is not one of slo.tiers: {sorted(self.slo.tiers)}"
                )
        return self

    def tier_of(self, tenant_id: str) -> tuple[str, TierSpec]:
        """The tenant's SLO tier: its own, else its plan's, else the default."""
        spec = self.tenants.get(tenant_id)
        name = spec.tier if spec and spec.tier else None
        if name is None:
            name = self.slo.plan_tiers.get(self.plan_of(tenant_id)[0], self.slo.default_tier)
        return name, self.slo.tiers[name]

    def allowed_tenants(self) -> frozenset[str] | None:
        """The tenant allow-list, or None when every tenant is accepted."""
        return None if self.accept_unknown_tenants else frozenset(self.tenants)

    def plan_of(self, tenant_id: str) -> tuple[str, PlanSpec]:
        spec = self.tenants.get(tenant_id)
        name = spec.plan if spec and spec.plan else self.default_plan
        return name, self.plans[name]

    def exceeded_modes(self, plan: PlanSpec) -> list[str]:
        return list(plan.on_exceeded if plan.on_exceeded is not None else self.budget.on_exceeded)

    def rule_specs(self) -> list[RuleSpec]:
        """The enabled rules: defaults with this policy's changes."""
        specs = []
        for name, default in DEFAULT_RULES.items():
            override = self.rules.get(name)
            spec = default
            if override is not None:
                changes = override.model_dump(exclude_none=True)
                if "degrade" in changes:
                    changes["degrade"] = tuple(changes["degrade"])
                spec = configure(default, **changes)
            if spec.enabled:
                specs.append(spec)
        return specs


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
