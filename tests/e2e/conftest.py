"""End-to-end tests' reporting: each labelled scenario's precision, in the run's summary
(a passing test's printed output is captured and never shown). The lines travel as the
test report's user properties, so that they reach the summary from any process when the
suite runs on several cores."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

_SCENARIO_LINE = "labelled scenario"


@pytest.fixture
def report_line(request: pytest.FixtureRequest) -> Callable[[str], None]:
    """Keep a line for the run's summary."""

    def keep(line: str) -> None:
        request.node.user_properties.append((_SCENARIO_LINE, line))

    return keep


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    reports = [
        r for outcome in ("passed", "failed") for r in terminalreporter.stats.get(outcome, [])
    ]
    lines = [
        value
        for report in reports
        if getattr(report, "when", None) == "call"
        for name, value in report.user_properties
        if name == _SCENARIO_LINE
    ]
    if lines:
        terminalreporter.section("labelled scenarios: recall and precision")
        for line in lines:
            terminalreporter.write_line(line)
