"""Which brokers the consumer warns about when a shared subscription is configured."""

from __future__ import annotations

import pytest

from rpm.ingest.consumer import loses_shared_subscriptions


@pytest.mark.parametrize(
    ("version", "loses"),
    [
        ("mosquitto version 2.0.11", True),
        ("mosquitto version 1.6.15", True),
        ("mosquitto version 2.0.0", True),
        ("mosquitto version 2.0.12", False),
        ("mosquitto version 2.0.18\n", False),
        ("mosquitto version 2.1.0", False),
        ("mosquitto version 10.0.0", False),
        ("mosquitto version 2.0.11-rc1", True),
        ("VerneMQ 1.13", None),
        ("", None),
    ],
)
def test_mosquitto_before_2_0_12_loses_shared_subscriptions(
    version: str, loses: bool | None
) -> None:
    assert loses_shared_subscriptions(version) is loses
