"""TLS and SASL settings reach both Kafka clients; secrets come from the environment or files
and never show in reprs or logs."""

from __future__ import annotations

import logging

import pytest
from pydantic import ValidationError

from streamvae.config import KafkaSettings, ServeSettings, load_settings
from streamvae.errors import ConfigError
from streamvae.stream.confluent import _common
from streamvae.stream.consumer import security_options

SECRET = "s3cr3t-Pa55"


@pytest.fixture
def pem(tmp_path):
    paths = {}
    for name in ("ca", "cert", "key"):
        paths[name] = tmp_path / f"{name}.pem"
        paths[name].write_text("-----BEGIN CERTIFICATE-----\n")
    return paths


def test_sasl_ssl_reaches_both_clients(pem):
    settings = KafkaSettings(
        security_protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-512", sasl_username="svc",
        sasl_password=SECRET, ssl_cafile=str(pem["ca"]), ssl_certfile=str(pem["cert"]),
        ssl_keyfile=str(pem["key"]), ssl_password="keypass", ssl_check_hostname=False,
    )  # fmt: skip
    options = security_options(settings)
    assert options == {
        "security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "svc", "sasl_plain_password": SECRET,
        "ssl_check_hostname": False, "ssl_cafile": str(pem["ca"]),
        "ssl_certfile": str(pem["cert"]), "ssl_keyfile": str(pem["key"]),
        "ssl_password": "keypass", "bootstrap_timeout_ms": 5000,
    }  # fmt: skip
    conf = _common(settings)
    assert conf["sasl.password"] == SECRET and conf["sasl.mechanism"] == "SCRAM-SHA-512"
    assert conf["ssl.ca.location"] == str(pem["ca"])
    assert conf["ssl.key.password"] == "keypass"
    assert conf["ssl.endpoint.identification.algorithm"] == "none"


def test_plaintext_sends_no_tls_or_sasl_options():
    assert security_options(KafkaSettings()) == {
        "security_protocol": "PLAINTEXT", "bootstrap_timeout_ms": 5000,
    }  # fmt: skip
    assert set(_common(KafkaSettings())) == {"bootstrap.servers", "security.protocol"}


def test_the_password_can_come_from_a_mounted_file(tmp_path):
    secret_file = tmp_path / "password"
    secret_file.write_text(SECRET + "\n")
    settings = KafkaSettings(
        security_protocol="SASL_PLAINTEXT", sasl_mechanism="PLAIN", sasl_username="svc",
        sasl_password_file=str(secret_file),
    )  # fmt: skip
    assert security_options(settings)["sasl_plain_password"] == SECRET


def test_the_password_can_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("STREAMVAE_KAFKA__SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("STREAMVAE_KAFKA__SASL_MECHANISM", "PLAIN")
    monkeypatch.setenv("STREAMVAE_KAFKA__SASL_USERNAME", "svc")
    monkeypatch.setenv("STREAMVAE_KAFKA__SASL_PASSWORD", SECRET)
    settings = load_settings(ServeSettings)
    assert settings.kafka.sasl_secret() == SECRET


def test_secrets_never_show_in_reprs_dumps_or_logs(caplog):
    settings = ServeSettings(
        kafka=KafkaSettings(
            security_protocol="SASL_SSL", sasl_mechanism="PLAIN", sasl_username="svc",
            sasl_password=SECRET, ssl_password=SECRET,
        )
    )  # fmt: skip
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("streamvae").info("settings %s %r", settings, settings)
    for text in (repr(settings), str(settings), settings.model_dump_json(), caplog.text):
        assert SECRET not in text


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"security_protocol": "SASL_SSL"}, "needs sasl_mechanism and sasl_username"),
        (
            {"security_protocol": "SASL_SSL", "sasl_mechanism": "PLAIN", "sasl_username": "u"},
            "needs sasl_password",
        ),
        ({"ssl_cafile": "/no/such/ca.pem"}, "ssl_cafile '/no/such/ca.pem' is not a readable file"),
        ({"sasl_mechanism": "GSSAPI"}, "sasl_mechanism"),
    ],
)
def test_incomplete_security_settings_fail_with_the_bad_value(values, message):
    with pytest.raises(ValidationError, match=message):
        KafkaSettings(**values)


def test_a_bad_security_setting_is_one_config_error_line(tmp_path):
    config = tmp_path / "serve.yaml"
    config.write_text("kafka:\n  ssl_cafile: /no/such/ca.pem\n")
    with pytest.raises(ConfigError) as err:
        load_settings(ServeSettings, config)
    assert "/no/such/ca.pem" in str(err.value) and "\n" not in str(err.value)


def test_exactly_once_needs_the_kafka_python_client_and_reads_committed():
    with pytest.raises(ValidationError, match="exactly_once is implemented for kafka.client"):
        KafkaSettings(delivery="exactly_once", client="confluent")
    eos = KafkaSettings(delivery="exactly_once", group_id="fraud")
    assert eos.isolation_level() == "read_committed"
    assert eos.resolved_transactional_id().startswith("streamvae-fraud-")
    assert KafkaSettings().isolation_level() == "read_uncommitted"
