import asyncio

import aiokafka
import faust
import pytest

from streams.errors import ConfigError
from streams.redact import redact
from streams.settings import load_settings


def test_redaction_removes_emails_keys_tokens_and_secrets():
    text = (
        "mail jane.doe+x@example.co.uk, key sk-proj-abcdefghijklmnop1234 and AKIAABCDEFGHIJKLMNOP, "
        "header Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sigsigsigsig, password=hunter2!"
    )
    out = redact(text)
    for secret in (
        "jane.doe",
        "sk-proj-abcdefghijklmnop1234",
        "AKIAABCDEFGHIJKLMNOP",
        "eyJhbGci",
        "hunter2",
    ):
        assert secret not in out
    assert (
        "[EMAIL]" in out
        and "[API_KEY]" in out
        and "Bearer [REDACTED]" in out
        and "password=[REDACTED]" in out
    )
    assert redact("plain question about invoices") == "plain question about invoices"


def test_sasl_settings_reach_confluent_and_faust_clients(monkeypatch):
    monkeypatch.setenv("LLMTEL_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("LLMTEL_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv("LLMTEL_KAFKA_SASL_USERNAME", "svc")
    monkeypatch.setenv("LLMTEL_KAFKA_SASL_PASSWORD", "p4ss")
    settings = load_settings()
    assert settings.kafka_client_config() == {
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "svc",
        "sasl.password": "p4ss",
    }
    credentials = settings.faust_credentials()
    assert isinstance(credentials, faust.SASLCredentials)
    assert (credentials.username, credentials.password, credentials.mechanism.value) == (
        "svc",
        "p4ss",
        "SCRAM-SHA-512",
    )
    assert credentials.protocol.value == "SASL_SSL"
    config = settings.aiokafka_config()
    assert (config["sasl_mechanism"], config["sasl_plain_username"]) == ("SCRAM-SHA-512", "svc")
    assert config["sasl_plain_password"] == "p4ss" and config["ssl_context"] is not None

    async def build() -> aiokafka.AIOKafkaConsumer:  # aiokafka wants a running loop
        return aiokafka.AIOKafkaConsumer(bootstrap_servers="127.0.0.1:1", **config)

    consumer = asyncio.run(build())  # the worker's own consumer accepts them as they are
    assert consumer._client._sasl_mechanism == "SCRAM-SHA-512"
    assert consumer._client._security_protocol == "SASL_SSL"
    assert "p4ss" not in repr(settings) and "p4ss" not in str(settings.model_dump())


def test_sasl_without_credentials_fails_at_start(monkeypatch):
    monkeypatch.setenv("LLMTEL_KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    with pytest.raises(ConfigError, match="LLMTEL_KAFKA_SASL_USERNAME"):
        load_settings()


def test_tls_files_must_exist(monkeypatch, tmp_path):
    monkeypatch.setenv("LLMTEL_KAFKA_SECURITY_PROTOCOL", "SSL")
    monkeypatch.setenv("LLMTEL_KAFKA_SSL_CAFILE", str(tmp_path / "missing.pem"))
    with pytest.raises(ConfigError, match="kafka_ssl_cafile"):
        load_settings()


def test_clickhouse_tls_options_apply_to_https_only(monkeypatch, tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    monkeypatch.setenv("LLMTEL_CLICKHOUSE_CA_CERT", str(ca))
    monkeypatch.setenv("LLMTEL_CLICKHOUSE_DSN", "https://analyst:pw@ch.example:8443/llmtel")
    assert load_settings().clickhouse_tls() == {"ca_cert": str(ca)}
    monkeypatch.setenv("LLMTEL_CLICKHOUSE_DSN", "http://ch:8123/llmtel")
    assert load_settings().clickhouse_tls() == {}
