"""End-to-end tests' reporting: each labelled scenario's precision, in the run's summary
(a passing test's printed output is captured and never shown)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

_SCENARIO_LINES = pytest.StashKey[list[str]]()


@pytest.fixture
def report_line(request: pytest.FixtureRequest) -> Callable[[str], None]:
    """Keep a line for the run's summary."""
    return request.config.stash.setdefault(_SCENARIO_LINES, []).append


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    lines = config.stash.get(_SCENARIO_LINES, [])
    if lines:
        terminalreporter.section("labelled scenarios: recall and precision")
        for line in lines:
            terminalreporter.write_line(line)
