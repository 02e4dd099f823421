"""Process settings from ``LLMTEL_*`` environment variables (policy lives in the YAML file)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from streams.errors import ConfigError


class Settings(BaseSettings):
    """Where llmtel runs and what it talks to. Read once at start; invalid values fail fast."""

    model_config = SettingsConfigDict(env_prefix="LLMTEL_", frozen=True, extra="ignore")

    kafka_bootstrap: str | None = Field(
        None, description="host:port[,host:port]; unset means the embedded broker"
    )
    embedded_kafka_port: int = Field(9092, ge=1, le=65535)
    clickhouse_dsn: str | None = Field(
        None, description="chdb:///dir or http(s)://user:pass@host:8123/db; unset: chDB in data_dir"
    )
    data_dir: Path = Path(".llmtel")
    policy: Path | None = Field(None, description="YAML policy file; unset: built-in defaults")
    web_host: str = "127.0.0.1"
    web_port: int = Field(6066, ge=1, le=65535)
    log_level: str = Field("warning", pattern="^(debug|info|warning|error)$")

    app_id: str = Field("llmtel", min_length=1, description="Kafka consumer group and Faust app id")
    events_topic: str = "llm.events"
    dlq_topic: str = "llm.events.dlq"
    alerts_topic: str = "llm.alerts"
    degrade_topic: str = "llm.degrade"
    partitions: int = Field(8, ge=1, le=1024, description="partitions of topics llmtel creates")

    batch_max: int = Field(10_000, ge=1, description="records per processing batch at most")
    batch_within: float = Field(0.5, gt=0, le=60, description="seconds to wait to fill a batch")
    session_timeout: float = Field(10.0, gt=1, description="Kafka consumer session timeout, s")
    max_record_bytes: int = Field(1_048_576, ge=256, description="larger records go to the DLQ")
    max_event_age_days: float = Field(30.0, gt=0, description="older event times are rejected")
    max_future_seconds: float = Field(
        3600.0, ge=0, description="event times further ahead are rejected"
    )
    events_ttl_days: int = Field(90, ge=1)
    rollups_ttl_days: int = Field(400, ge=1)

    @property
    def bootstrap(self) -> str:
        """The Kafka bootstrap servers in effect."""
        return self.kafka_bootstrap or f"127.0.0.1:{self.embedded_kafka_port}"

    @property
    def dsn(self) -> str:
        """The ClickHouse DSN in effect."""
        if self.clickhouse_dsn:
            return self.clickhouse_dsn
        return f"chdb://{(self.data_dir / 'clickhouse').resolve()}"

    @property
    def embedded_store(self) -> bool:
        return self.dsn.startswith("chdb://")


def load_settings(**overrides: object) -> Settings:
    """Read settings from the environment; raise ConfigError naming the bad variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = "; ".join(
            f"LLMTEL_{'_'.join(str(p) for p in err['loc']).upper()}: {err['msg']}"
            for err in exc.errors()
        )
        raise ConfigError(f"invalid settings: {problems}") from None
