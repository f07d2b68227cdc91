"""The admin commands (`rpm devices`, `rpm dead-letters`, `rpm integrations`) against the
real PostgreSQL, run as a user would run them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
from cryptography import x509
from cryptography.hazmat.primitives import serialization

RPM = str(Path(sys.executable).with_name("rpm"))


def _rpm(db_url: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RPM_")}
    env["RPM_DATABASE_URL"] = db_url
    command = args if args[0] in {"dead-letters", "integrations"} else ("devices", *args)
    return subprocess.run(
        [RPM, *command], env=env, cwd=tmp_path, capture_output=True, text=True,
        timeout=60, check=False,
    )  # fmt: skip


def _lines(completed: subprocess.CompletedProcess[str]) -> list[dict[str, object]]:
    assert completed.returncode == 0, completed.stderr
    return [json.loads(line) for line in completed.stdout.splitlines()]


def test_register_assign_list_and_history(db_url: str, tmp_path: Path) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        row = conn.execute(
            "INSERT INTO patient (external_ref, given_name, family_name)"
            " VALUES ('P-1', 'Test', 'Patient') RETURNING id"
        ).fetchone()
    assert row is not None
    patient = str(row[0])

    registered = _rpm(db_url, tmp_path, "register", "SC-0001", "--kind", "weight_scale")
    assert registered.returncode == 0, registered.stderr
    assert json.loads(registered.stdout)["kind"] == "weight_scale"

    assigned = _rpm(
        db_url, tmp_path, "assign", "SC-0001", patient, "--at", "2026-11-01T08:00-05:00"
    )
    assert assigned.returncode == 0, assigned.stderr
    assert json.loads(assigned.stdout)["patient_id"] == int(patient)

    listed = _rpm(db_url, tmp_path, "list")
    assert [json.loads(line)["serial"] for line in listed.stdout.splitlines()] == ["SC-0001"]

    unassigned = _rpm(db_url, tmp_path, "unassign", "SC-0001")
    assert json.loads(unassigned.stdout)["patient_id"] is None
    history = [
        json.loads(line)
        for line in _rpm(db_url, tmp_path, "history", "SC-0001").stdout.splitlines()
    ]
    assert len(history) == 1
    assert history[0]["unassigned_at"] is not None


def test_mistakes_are_refused_with_a_reason(db_url: str, tmp_path: Path) -> None:
    assert (
        _rpm(db_url, tmp_path, "register", "BP-1", "--kind", "blood_pressure_cuff").returncode == 0
    )
    again = _rpm(db_url, tmp_path, "register", "BP-1", "--kind", "blood_pressure_cuff")
    assert again.returncode == 1
    assert "already registered" in again.stderr
    nobody = _rpm(db_url, tmp_path, "assign", "BP-1", "999999")
    assert nobody.returncode == 1
    assert "no patient with id 999999" in nobody.stderr
    missing = _rpm(db_url, tmp_path, "deactivate", "NOPE")
    assert "no device with serial 'NOPE'" in missing.stderr
    bad_kind = _rpm(db_url, tmp_path, "register", "X-1", "--kind", "toaster")
    assert bad_kind.returncode == 2


def test_dead_letters_are_listed_shown_and_replayed(db_url: str, tmp_path: Path) -> None:
    measured = datetime.now(UTC) - timedelta(hours=1)
    payload = json.dumps(
        {"kind": "body_weight", "measured_at": measured.isoformat(), "weight": 81.5, "unit": "kg"}
    )
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO rejected_message (received_at, source, topic, device_serial, payload,"
            " reason, detail) VALUES (now(), 'mqtt', 'rpm/v1/devices/SC-9/readings', 'SC-9',"
            " %s, 'unknown_device', 'no device with serial ''SC-9'' is registered')",
            [payload.encode()],
        )
        row = conn.execute(
            "INSERT INTO patient (external_ref, given_name, family_name)"
            " VALUES ('P-9', 'T', 'P') RETURNING id"
        ).fetchone()
    assert row is not None
    [listed] = _lines(_rpm(db_url, tmp_path, "dead-letters", "list", "--reason", "unknown_device"))
    assert listed["device_serial"] == "SC-9"
    [shown] = _lines(_rpm(db_url, tmp_path, "dead-letters", "show", str(listed["id"])))
    assert shown["payload"] == payload

    _rpm(db_url, tmp_path, "register", "SC-9", "--kind", "weight_scale")
    _rpm(db_url, tmp_path, "assign", "SC-9", str(row[0]), "--at", "2026-01-01T00:00:00Z")
    [outcome] = _lines(_rpm(db_url, tmp_path, "dead-letters", "replay", "--device", "SC-9"))
    assert outcome["result"] == "stored 1 reading(s), 0 already stored"
    assert _lines(_rpm(db_url, tmp_path, "dead-letters", "list")) == []

    again = _rpm(db_url, tmp_path, "dead-letters", "replay", str(listed["id"]))
    assert again.returncode == 1
    assert "already replayed" in again.stderr
    neither = _rpm(db_url, tmp_path, "dead-letters", "replay")
    assert neither.returncode == 2


def test_an_integration_secret_is_shown_once_and_can_be_revoked(
    db_url: str, tmp_path: Path
) -> None:
    [created] = _lines(
        _rpm(db_url, tmp_path, "integrations", "create", "clinic-a", "--vendor", "tenovi")
    )
    assert str(created["secret"]).startswith("rpmwh_")
    [listed] = _lines(_rpm(db_url, tmp_path, "integrations", "list"))
    assert "secret" not in listed
    assert listed["revoked_at"] is None
    [revoked] = _lines(_rpm(db_url, tmp_path, "integrations", "revoke", "clinic-a"))
    assert revoked["revoked_at"] is not None

    taken = _rpm(db_url, tmp_path, "integrations", "create", "clinic-a", "--vendor", "tenovi")
    assert taken.returncode == 1
    assert "already exists" in taken.stderr
    badly_named = _rpm(db_url, tmp_path, "integrations", "create", "Clinic A", "--vendor", "tenovi")
    assert "lower-case letters" in badly_named.stderr


def test_tls_make_certs_makes_a_ca_and_a_server_certificate_then_rotates_it(
    tmp_path: Path,
) -> None:
    out = tmp_path / "certs"

    def make_certs(*hosts: str) -> subprocess.CompletedProcess[str]:
        host_options = [option for host in hosts for option in ("--host", host)]
        return subprocess.run(
            [RPM, "tls", "make-certs", *host_options, "--out", str(out)],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip

    made = make_certs("broker.example", "192.0.2.10")
    assert made.returncode == 0, made.stderr
    assert made.stdout.startswith("made a new CA; new server certificate for broker.example,")
    assert "broker (mounted at /mosquitto/certs/): ca.crt, server.crt, server.key" in made.stdout
    assert f"devices and rpm (RPM_MQTT_CA_FILE): {out / 'ca.crt'}" in made.stdout
    modes = {path.name: path.stat().st_mode & 0o777 for path in out.iterdir()}
    assert modes["ca.key"] == modes["server.key"] == 0o600
    assert set(modes) == {"ca.crt", "ca.key", "server.crt", "server.key"}

    ca = x509.load_pem_x509_certificate((out / "ca.crt").read_bytes())
    server = x509.load_pem_x509_certificate((out / "server.crt").read_bytes())
    server.verify_directly_issued_by(ca)
    names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["broker.example"]
    assert [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] == ["192.0.2.10"]
    assert server.public_key().key_size == 2048  # type: ignore[union-attr]
    assert ca.public_key().key_size == 3072  # type: ignore[union-attr]

    # Run again: the same CA (devices keep trusting it), a new server certificate.
    rotated = make_certs("broker.example")
    assert rotated.returncode == 0, rotated.stderr
    assert rotated.stdout.startswith("kept the existing CA;")
    assert (out / "ca.crt").read_bytes() == ca.public_bytes(serialization.Encoding.PEM)
    renewed = x509.load_pem_x509_certificate((out / "server.crt").read_bytes())
    assert renewed.serial_number != server.serial_number
    renewed.verify_directly_issued_by(ca)

    refused = make_certs("not a host")
    assert refused.returncode == 1
    assert refused.stderr == "rpm: 'not a host' is neither a host name nor an IP address\n"


def test_rpm_up_with_a_missing_ca_file_stops_at_once_naming_the_setting(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RPM_")}
    env["RPM_MQTT_URL"] = "mqtts://rpm-ingest:secret@broker.example:8883"
    env["RPM_MQTT_CA_FILE"] = str(tmp_path / "nowhere" / "ca.crt")
    completed = subprocess.run(
        [RPM, "up"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60,
        check=False,
    )  # fmt: skip
    assert completed.returncode == 2
    assert completed.stderr == (
        "rpm: invalid settings:\n"
        f"  RPM_MQTT_CA_FILE='{tmp_path / 'nowhere' / 'ca.crt'}': no such file (or not a file)\n"
    )
