"""The MQTT TLS settings: what `rpm up` refuses at start-up, by name, and the context a
valid set makes."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from rpm.certs import make_certificates
from rpm.config import BrokerTls, SettingsError, load_settings
from tests.unit.test_config import clean_environment

pytestmark = pytest.mark.usefixtures(clean_environment.__name__)


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
