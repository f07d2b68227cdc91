from __future__ import annotations

import random

from rpm.backoff import Backoff


def test_delays_double_up_to_the_maximum_and_reset() -> None:
    backoff = Backoff(initial=1, maximum=8, jitter=0)
    assert [backoff.next_delay() for _ in range(6)] == [1, 2, 4, 8, 8, 8]
    backoff.reset()
    assert backoff.next_delay() == 1


def test_jitter_stays_within_its_spread() -> None:
    backoff = Backoff(initial=10, maximum=10, jitter=0.2, _random=random.Random(7))
    delays = [backoff.next_delay() for _ in range(200)]
    assert all(8 <= d <= 12 for d in delays)
    assert len(set(delays)) > 1
