from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from rpm.certs import make_certificates
from rpm.config import BrokerAddress, BrokerTls, SettingsError, load_settings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No RPM_* variable and no .env from the developer's machine leaks into these tests."""
    import os

    for name in list(os.environ):
        if name.startswith("RPM_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def test_defaults_need_no_configuration() -> None:
    settings = load_settings()
    assert settings.database.url is None
    assert settings.mqtt.url is None
    assert settings.http.port == 8000
    assert settings.mqtt.embedded_port == 1884
    assert settings.database.retention_days is None


def test_environment_variables_use_area_prefixes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RPM_DATABASE_URL", "postgresql://rpm@db:5432/rpm")
    monkeypatch.setenv("RPM_MQTT_URL", "mqtts://ingest:pw@broker:8883")
    monkeypatch.setenv("RPM_HTTP_PORT", "9000")
    monkeypatch.setenv("RPM_DATABASE_RETENTION_DAYS", "365")
    settings = load_settings()
    assert settings.database.url == "postgresql://rpm@db:5432/rpm"
    assert settings.http.port == 9000
    assert settings.database.retention_days == 365
    assert settings.mqtt.url == "mqtts://ingest:pw@broker:8883"


def test_dotenv_file_is_read(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("RPM_HTTP_PORT=8123\nRPM_LOG_LEVEL=DEBUG\n")
    settings = load_settings()
    assert settings.http.port == 8123
    assert settings.service.log_level == "DEBUG"


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("RPM_HTTP_PORT", "eighty", "RPM_HTTP_PORT='eighty': Input should be a valid integer"),
        ("RPM_HTTP_PORT", "70000", "RPM_HTTP_PORT='70000': Input should be less than or equal"),
        ("RPM_LOG_LEVEL", "LOUD", "RPM_LOG_LEVEL='LOUD': Input should be 'DEBUG', 'INFO'"),
        ("RPM_DATABASE_TIMESCALE", "maybe", "RPM_DATABASE_TIMESCALE='maybe': Input should be"),
        ("RPM_DATABASE_URL", "mysql://x@y/z", "RPM_DATABASE_URL: expected a postgresql:// URL"),
        ("RPM_MQTT_URL", "http://broker", "RPM_MQTT_URL: expected mqtt://"),
        ("RPM_MQTT_URL", "mqtt://broker:99999", "RPM_MQTT_URL: the port is not a number"),
        ("RPM_MQTT_SHARED_GROUP", "a/b", "RPM_MQTT_SHARED_GROUP='a/b': String should match"),
    ],
)
def test_a_bad_value_names_the_variable_and_what_is_expected(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert expected in str(caught.value)


def test_every_bad_variable_is_reported_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RPM_HTTP_PORT", "x")
    monkeypatch.setenv("RPM_DATABASE_POOL_MAX_SIZE", "0")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert "RPM_HTTP_PORT" in str(caught.value)
    assert "RPM_DATABASE_POOL_MAX_SIZE" in str(caught.value)


def test_a_url_with_a_password_is_never_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RPM_DATABASE_URL", "mysql://admin:hunter2@db/rpm")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert "hunter2" not in str(caught.value)


def test_pool_minimum_above_maximum_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RPM_DATABASE_POOL_MIN_SIZE", "20")
    monkeypatch.setenv("RPM_DATABASE_POOL_MAX_SIZE", "5")
    with pytest.raises(SettingsError, match="RPM_DATABASE_POOL_MIN_SIZE: must not exceed"):
        load_settings()


def test_broker_address_from_url() -> None:
    address = BrokerAddress.from_url("mqtts://ingest:p%40ss@broker.example:8884")
    assert address == BrokerAddress("broker.example", 8884, "ingest", "p@ss", tls=BrokerTls())
    assert str(address) == "mqtts://broker.example:8884"
    assert BrokerAddress.from_url("mqtt://localhost").port == 1883
    assert BrokerAddress.from_url("mqtts://localhost").port == 8883


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_certificates(tmp_path_factory.mktemp("certs"), ["broker.example"]).directory


def test_mqtts_verifies_the_broker_against_the_ca_file(
    monkeypatch: pytest.MonkeyPatch, certs: Path
) -> None:
    monkeypatch.setenv("RPM_MQTT_URL", "mqtts://ingest:pw@broker.example")
    monkeypatch.setenv("RPM_MQTT_CA_FILE", str(certs / "ca.crt"))
    broker = load_settings().mqtt.broker()
    assert broker.tls == BrokerTls(certs / "ca.crt")
    context = broker.tls.context()
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    [ca] = context.get_ca_certs()
    assert ca["subject"] == ((("commonName", "rpm private CA"),),)


def test_mqtts_without_a_ca_file_uses_the_system_trust_store(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RPM_MQTT_URL", "mqtts://broker.example")
    assert load_settings().mqtt.broker().tls == BrokerTls(None)


def _refused(monkeypatch: pytest.MonkeyPatch, **variables: str) -> str:
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    return str(caught.value).removeprefix("invalid settings:\n  ")


def test_a_missing_ca_file_is_refused_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    said = _refused(
        monkeypatch, RPM_MQTT_URL="mqtts://broker.example", RPM_MQTT_CA_FILE="/nowhere/ca.crt"
    )
    assert said == "RPM_MQTT_CA_FILE='/nowhere/ca.crt': no such file (or not a file)"


def test_a_ca_file_that_holds_no_certificate_is_refused_by_name(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "ca.crt").write_text("not a certificate\n")
    said = _refused(
        monkeypatch,
        RPM_MQTT_URL="mqtts://broker.example",
        RPM_MQTT_CA_FILE=str(tmp_path / "ca.crt"),
    )
    assert said.startswith(f"RPM_MQTT_CA_FILE: {tmp_path / 'ca.crt'} holds no PEM CA certificate")


def test_tls_files_with_a_plain_url_are_refused(
    monkeypatch: pytest.MonkeyPatch, certs: Path
) -> None:
    ca = str(certs / "ca.crt")
    said = _refused(monkeypatch, RPM_MQTT_URL="mqtt://broker.example", RPM_MQTT_CA_FILE=ca)
    assert said == "RPM_MQTT_CA_FILE: set, but RPM_MQTT_URL is not an mqtts:// URL"
    monkeypatch.delenv("RPM_MQTT_URL")  # the embedded broker is plain MQTT
    assert _refused(monkeypatch) == said


def test_a_client_certificate_needs_its_key(monkeypatch: pytest.MonkeyPatch, certs: Path) -> None:
    monkeypatch.setenv("RPM_MQTT_URL", "mqtts://broker.example")
    said = _refused(monkeypatch, RPM_MQTT_CLIENT_CERT_FILE=str(certs / "server.crt"))
    assert said == "RPM_MQTT_CLIENT_KEY_FILE: needed with RPM_MQTT_CLIENT_CERT_FILE"
    # Not the certificate's own key.
    said = _refused(monkeypatch, RPM_MQTT_CLIENT_KEY_FILE=str(certs / "ca.key"))
    assert said.startswith(
        "RPM_MQTT_CLIENT_CERT_FILE, RPM_MQTT_CLIENT_KEY_FILE: "
        f"{certs / 'server.crt'} and {certs / 'ca.key'} are not a PEM certificate and its"
        " unencrypted key"
    )


def test_a_client_certificate_and_its_key_are_loaded(
    monkeypatch: pytest.MonkeyPatch, certs: Path
) -> None:
    monkeypatch.setenv("RPM_MQTT_URL", "mqtts://broker.example")
    monkeypatch.setenv("RPM_MQTT_CA_FILE", str(certs / "ca.crt"))
    monkeypatch.setenv("RPM_MQTT_CLIENT_CERT_FILE", str(certs / "server.crt"))
    monkeypatch.setenv("RPM_MQTT_CLIENT_KEY_FILE", str(certs / "server.key"))
    tls = load_settings().mqtt.broker().tls
    assert tls == BrokerTls(certs / "ca.crt", certs / "server.crt", certs / "server.key")
