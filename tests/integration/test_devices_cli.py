"""`rpm devices ...` against the real PostgreSQL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psycopg

RPM = str(Path(sys.executable).with_name("rpm"))


def _rpm(db_url: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RPM_")}
    env["RPM_DATABASE_URL"] = db_url
    return subprocess.run(
        [RPM, "devices", *args], env=env, cwd=tmp_path, capture_output=True, text=True,
        timeout=60, check=False,
    )  # fmt: skip


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
