"""Process settings from ``LLMTEL_*`` environment variables (policy lives in the YAML file)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, model_validator
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
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "PLAIN"
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: Path | None = Field(None, description="CA bundle to verify the brokers")
    kafka_ssl_certfile: Path | None = Field(None, description="client certificate (mutual TLS)")
    kafka_ssl_keyfile: Path | None = None
    clickhouse_ca_cert: Path | None = Field(
        None, description="CA bundle for an https ClickHouse DSN"
    )
    clickhouse_verify: bool = Field(
        True, description="false: do not verify the server's certificate"
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
    batch_max_bytes: int = Field(
        8_388_608, ge=1024, description="bytes of record values per batch at most"
    )
    session_timeout: float = Field(10.0, gt=1, description="Kafka consumer session timeout, s")
    max_record_bytes: int = Field(1_048_576, ge=256, description="larger records go to the DLQ")
    max_event_age_days: float = Field(30.0, gt=0, description="older event times are rejected")
    max_future_seconds: float = Field(
        3600.0, ge=0, description="event times further ahead are rejected"
    )
    dedup_window_seconds: float = Field(
        3600.0, ge=0, description="resent event_ids are dropped within this much event time"
    )
    dedup_max_ids: int = Field(
        200_000, ge=0, description="event_ids remembered per partition for resends"
    )
    events_ttl_days: int = Field(90, ge=1)
    rollups_ttl_days: int = Field(400, ge=1)

    @model_validator(mode="after")
    def _security_complete(self) -> Settings:
        if self.kafka_security_protocol.startswith("SASL") and not (
            self.kafka_sasl_username and self.kafka_sasl_password
        ):
            raise ValueError(
                "kafka_security_protocol SASL_* needs LLMTEL_KAFKA_SASL_USERNAME and LLMTEL_KAFKA_SASL_PASSWORD"
            )
        for name in ("kafka_ssl_cafile", "kafka_ssl_certfile", "kafka_ssl_keyfile"):
            path = getattr(self, name)
            if path is not None and not path.is_file():
                raise ValueError(f"{name}: {path} is not a file")
        return self

    def kafka_client_config(self) -> dict[str, Any]:
        """Security settings for confluent-kafka clients (CLI, SDK): librdkafka's names."""
        config: dict[str, Any] = {"security.protocol": self.kafka_security_protocol}
        if self.kafka_security_protocol.startswith("SASL"):
            config["sasl.mechanism"] = self.kafka_sasl_mechanism
            config["sasl.username"] = self.kafka_sasl_username
            config["sasl.password"] = self.kafka_sasl_password.get_secret_value()  # type: ignore[union-attr]
        for name, key in (
            ("kafka_ssl_cafile", "ssl.ca.location"),
            ("kafka_ssl_certfile", "ssl.certificate.location"),
            ("kafka_ssl_keyfile", "ssl.key.location"),
        ):
            if getattr(self, name) is not None:
                config[key] = str(getattr(self, name))
        return config

    def _ssl_context(self) -> Any:
        """The TLS context of the worker's aiokafka clients, or None without TLS."""
        import ssl

        if not self.kafka_security_protocol.endswith("SSL"):
            return None
        context = ssl.create_default_context(
            cafile=str(self.kafka_ssl_cafile) if self.kafka_ssl_cafile else None
        )
        if self.kafka_ssl_certfile:
            context.load_cert_chain(
                str(self.kafka_ssl_certfile),
                str(self.kafka_ssl_keyfile) if self.kafka_ssl_keyfile else None,
            )
        return context

    def aiokafka_config(self) -> dict[str, Any]:
        """The same settings for the worker's own aiokafka consumer and producer."""
        config: dict[str, Any] = {"security_protocol": self.kafka_security_protocol}
        context = self._ssl_context()
        if context is not None:
            config["ssl_context"] = context
        if self.kafka_security_protocol.startswith("SASL"):
            config["sasl_mechanism"] = self.kafka_sasl_mechanism
            config["sasl_plain_username"] = self.kafka_sasl_username
            config["sasl_plain_password"] = self.kafka_sasl_password.get_secret_value()  # type: ignore[union-attr]
        return config

    def faust_credentials(self) -> Any:
        """The same settings for the worker's Faust clients (Faust credentials), or None."""
        import faust

        protocol = self.kafka_security_protocol
        context = self._ssl_context()
        if protocol.startswith("SASL"):
            return faust.SASLCredentials(
                username=self.kafka_sasl_username,
                password=self.kafka_sasl_password.get_secret_value(),  # type: ignore[union-attr]
                mechanism=self.kafka_sasl_mechanism,
                ssl_context=context,
            )
        if protocol == "SSL":
            return faust.SSLCredentials(context)
        return None

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

    def clickhouse_tls(self) -> dict[str, Any]:
        """TLS options for an https ClickHouse DSN."""
        options: dict[str, Any] = {}
        if self.clickhouse_ca_cert is not None:
            options["ca_cert"] = str(self.clickhouse_ca_cert)
        if not self.clickhouse_verify:
            options["verify"] = False
        return options if self.dsn.startswith(("https://", "clickhouses://")) else {}

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
