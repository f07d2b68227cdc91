from __future__ import annotations

from pathlib import Path

import pytest

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
        (
            "RPM_HTTP_TRUSTED_PROXIES",
            "caddy",
            "RPM_HTTP_TRUSTED_PROXIES='caddy': 'caddy' is not an IP address",
        ),
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


def test_trusted_proxies_are_written_out_as_uvicorn_parses_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # uvicorn would take 172.28.0.1/24 (host bits set) for a name and trust nobody by it.
    monkeypatch.setenv("RPM_HTTP_TRUSTED_PROXIES", " 172.28.0.1/24, ::1 ,10.0.0.7")
    assert load_settings().http.trusted_proxies == "172.28.0.0/24,::1,10.0.0.7"
