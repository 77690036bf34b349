"""Kafka security settings reach every client the project builds; the password is never shown."""

from __future__ import annotations

import datetime
import logging
import ssl
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from faust.auth import SASLCredentials, SSLCredentials
from faust.types.auth import AuthProtocol, SASLMechanism
from pydantic import SecretStr, ValidationError

from processors.app import broker_credentials, create_app
from processors.kafka import admin_client, client_config, producer_config, ssl_context
from processors.settings import KafkaSettings, Settings

PASSWORD = "kafka-sasl-password-7f3e91"
KEY_PASSWORD = "kafka-key-password-2b8c"


@pytest.fixture
def tls_files(tmp_path: Path) -> dict[str, Path]:
    """A self-signed CA certificate and a client key (encrypted) and certificate."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "qi-test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    files = {"ca": tmp_path / "ca.pem", "cert": tmp_path / "client.pem", "key": tmp_path / "k.pem"}
    pem = cert.public_bytes(serialization.Encoding.PEM)
    files["ca"].write_bytes(pem)
    files["cert"].write_bytes(pem)
    files["key"].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(KEY_PASSWORD.encode()),
        )
    )
    return files


def sasl_ssl(monkeypatch: pytest.MonkeyPatch, tls: dict[str, Path]) -> KafkaSettings:
    for name, value in {
        "QI_KAFKA_BOOTSTRAP_SERVERS": "b1.example:9093,b2.example:9093",
        "QI_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "QI_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "QI_KAFKA_SASL_USERNAME": "qi-worker",
        "QI_KAFKA_SASL_PASSWORD": PASSWORD,
        "QI_KAFKA_SSL_CAFILE": str(tls["ca"]),
        "QI_KAFKA_SSL_CERTFILE": str(tls["cert"]),
        "QI_KAFKA_SSL_KEYFILE": str(tls["key"]),
        "QI_KAFKA_SSL_KEY_PASSWORD": KEY_PASSWORD,
    }.items():
        monkeypatch.setenv(name, value)
    return KafkaSettings()


def test_default_is_plaintext_everywhere() -> None:
    kafka = KafkaSettings(bootstrap_servers="127.0.0.1:9092")
    assert client_config(kafka) == {
        "bootstrap.servers": "127.0.0.1:9092",
        "client.id": "queast-integrations",
        "security.protocol": "PLAINTEXT",
    }
    assert ssl_context(kafka) is None
    assert broker_credentials(kafka) is None


def test_sasl_ssl_from_the_environment_maps_to_every_client(
    monkeypatch: pytest.MonkeyPatch, tls_files: dict[str, Path]
) -> None:
    kafka = sasl_ssl(monkeypatch, tls_files)
    expected = {
        "bootstrap.servers": "b1.example:9093,b2.example:9093",
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "qi-worker",
        "sasl.password": PASSWORD,
        "ssl.ca.location": str(tls_files["ca"]),
        "ssl.certificate.location": str(tls_files["cert"]),
        "ssl.key.location": str(tls_files["key"]),
        "ssl.key.password": KEY_PASSWORD,
    }
    assert client_config(kafka).items() >= expected.items()
    produced = producer_config(kafka)
    assert produced.items() >= expected.items()
    assert produced["enable.idempotence"] is True
    admin_client(kafka)  # accepts the settings (no connection is made until used)

    credentials = broker_credentials(kafka)
    assert isinstance(credentials, SASLCredentials)
    assert credentials.protocol is AuthProtocol.SASL_SSL
    assert credentials.mechanism is SASLMechanism.SCRAM_SHA_512
    assert credentials.username == "qi-worker"
    assert credentials.password == PASSWORD
    context = credentials.ssl_context
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode is ssl.CERT_REQUIRED
    assert context.check_hostname
    assert context.get_ca_certs()  # the configured CA is loaded

    app = create_app(Settings(kafka=kafka))
    configured = app.conf.broker_credentials
    assert isinstance(configured, SASLCredentials)
    assert configured.protocol is AuthProtocol.SASL_SSL
    assert configured.username == "qi-worker"


def test_ssl_only_gives_faust_ssl_credentials(tls_files: dict[str, Path]) -> None:
    kafka = KafkaSettings(security_protocol="SSL", ssl_cafile=tls_files["ca"])
    assert client_config(kafka)["ssl.ca.location"] == str(tls_files["ca"])
    assert "sasl.password" not in client_config(kafka)
    credentials = broker_credentials(kafka)
    assert isinstance(credentials, SSLCredentials)
    assert credentials.protocol is AuthProtocol.SSL


def test_sasl_plaintext_has_no_tls() -> None:
    kafka = KafkaSettings(
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="PLAIN",
        sasl_username="u",
        sasl_password=SecretStr(PASSWORD),
    )
    config = client_config(kafka)
    assert config["security.protocol"] == "SASL_PLAINTEXT"
    assert not any(key.startswith("ssl.") for key in config)
    credentials = broker_credentials(kafka)
    assert isinstance(credentials, SASLCredentials)
    assert credentials.protocol is AuthProtocol.SASL_PLAINTEXT


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"QI_KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}, "QI_KAFKA_SASL_MECHANISM, "),
        (
            {
                "QI_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
                "QI_KAFKA_SASL_MECHANISM": "PLAIN",
                "QI_KAFKA_SASL_USERNAME": "u",
            },
            "QI_KAFKA_SASL_PASSWORD required",
        ),
        ({"QI_KAFKA_SASL_PASSWORD": PASSWORD}, "only apply to the SASL_"),
        ({"QI_KAFKA_SSL_CAFILE": "/etc/hostname"}, "only apply to the SSL"),
        (
            {"QI_KAFKA_SECURITY_PROTOCOL": "SSL", "QI_KAFKA_SSL_CAFILE": "/nonexistent/ca.pem"},
            "ssl_cafile",
        ),
        (
            {"QI_KAFKA_SECURITY_PROTOCOL": "SSL", "QI_KAFKA_SSL_CERTFILE": "/etc/hostname"},
            "go together",
        ),
        ({"QI_KAFKA_SECURITY_PROTOCOL": "TLS"}, "security_protocol"),
        (
            {"QI_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "QI_KAFKA_SASL_MECHANISM": "GSSAPI"},
            "sasl_mechanism",
        ),
    ],
)
def test_inconsistent_settings_are_refused_without_the_password(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], message: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError, match=message) as excinfo:
        KafkaSettings()
    assert PASSWORD not in str(excinfo.value)


def test_password_never_shown(
    monkeypatch: pytest.MonkeyPatch,
    tls_files: dict[str, Path],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    kafka = sasl_ssl(monkeypatch, tls_files)
    settings = Settings(kafka=kafka)
    credentials = broker_credentials(kafka)
    for shown in (
        repr(kafka),
        str(kafka),
        repr(settings),
        repr(credentials),
        kafka.model_dump_json(),
    ):
        assert PASSWORD not in shown
        assert KEY_PASSWORD not in shown
    create_app(settings)
    for record in caplog.records:
        rendered = record.getMessage() + repr(vars(record))
        assert PASSWORD not in rendered
        assert KEY_PASSWORD not in rendered
