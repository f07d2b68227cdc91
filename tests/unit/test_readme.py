"""The README stays true: every setting listed, its commands real Makefile targets."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from rpm.config import _AREAS

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
MAKEFILE = (ROOT / "Makefile").read_text()

SETTINGS = [
    (str(area.model_config.get("env_prefix", "")) + field).upper()
    for area in _AREAS.values()
    for field in area.model_fields
]


@pytest.mark.parametrize("variable", SETTINGS)
def test_every_setting_is_in_the_readme(variable: str) -> None:
    assert f"| `{variable}` |" in README


def test_the_readme_lists_no_setting_that_does_not_exist() -> None:
    listed = set(re.findall(r"^\| `(RPM_[A-Z0-9_]+)` \|", README, re.MULTILINE))
    test_only = {
        "RPM_TEST_DATABASE_URL",
        "RPM_TEST_MQTT_URL",
        "RPM_TEST_NO_SKIPS",
        "RPM_TEST_INSTALL_PYTHONS",
    }
    assert listed - test_only == set(SETTINGS)


def test_the_readme_commands_are_makefile_targets() -> None:
    targets = set(re.findall(r"^([a-z][a-z-]*):", MAKEFILE, re.MULTILINE))
    commands = set(re.findall(r"^make ([a-z-]+)", README, re.MULTILINE))
    commands |= set(re.findall(r"`make ([a-z-]+)", README))
    assert {"up", "test"} <= commands
    assert commands <= targets
