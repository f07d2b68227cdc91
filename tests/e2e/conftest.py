"""End-to-end tests' reporting: each labelled scenario's precision, in the run's summary
(a passing test's printed output is captured and never shown). The lines travel as the
test report's user properties, so that they reach the summary (tests/conftest.py) from
any process when the suite runs on several cores."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.conftest import SCENARIO_LINE


@pytest.fixture
def report_line(request: pytest.FixtureRequest) -> Callable[[str], None]:
    """Keep a line for the run's summary."""

    def keep(line: str) -> None:
        request.node.user_properties.append((SCENARIO_LINE, line))

    return keep
