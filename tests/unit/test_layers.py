"""The pure core imports no adapter: only the standard library, numpy, pydantic and
other pure modules (STYLE.md, "a pure core inside thin adapters")."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PURE = {
    "rpm.backoff",
    "rpm.devices.model",
    "rpm.devices.checks",
    "rpm.devices.codecs",
    "rpm.devices.tenovi",
    "rpm.devices.identities",
    "rpm.ingest.pipeline",
    "rpm.rules.plan",
    "rpm.rules.templates",
    "rpm.rules.evaluate",
    "rpm.rules.policy",
    "rpm.rules.confirmation",
    "rpm.alerts.feedback",
    "rpm.alerts.lifecycle",
    "rpm.alerts.routing",
    "rpm.auth.access",
    "rpm.auth.tokens",
    "rpm.web.format",
    "rpm.web.charts",
    "rpm.web.plan_form",
    "rpm.program.periods",
    "rpm.program.billing",
    "rpm.program.adherence",
    "rpm.program.huddle",
    "rpm.fhir.observations",
    "rpm.fhir.search",
    "rpm.fhir.bulk",
}
# typing_extensions: pydantic's own dependency, for the TypedDicts it reads before Python 3.12.
ALLOWED_THIRD_PARTY = {"numpy", "pydantic", "pydantic_core", "typing_extensions"}


def _imports(module: str) -> set[str]:
    path = ROOT / (module.replace(".", "/") + ".py")
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize("module", sorted(PURE))
def test_pure_modules_import_nothing_with_io(module: str) -> None:
    for name in _imports(module):
        top = name.split(".")[0]
        if top == "rpm":
            assert name in PURE, f"{module} imports {name}, which is not pure"
        else:
            assert top in sys.stdlib_module_names or top in ALLOWED_THIRD_PARTY, (
                f"{module} imports {name}"
            )
