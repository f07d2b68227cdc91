"""Exponential backoff with jitter: reconnect loops (database, broker), SMS retries."""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass
class Backoff:
    """Delays that double from `initial` up to `maximum`, each jittered by +-`jitter`."""

    initial: float = 0.5
    maximum: float = 30.0
    factor: float = 2.0
    jitter: float = 0.2
    _attempt: int = field(default=0, init=False)
    _random: random.Random = field(default_factory=random.Random, repr=False)

    def next_delay(self) -> float:
        delay = self.delay(self._attempt)
        self._attempt += 1
        return delay

    def delay(self, attempt: int) -> float:
        """The delay before retry number `attempt` (0: the first), for callers that keep
        the count themselves (the SMS outbox keeps it in its rows)."""
        base = min(self.maximum, self.initial * self.factor**attempt)
        spread = base * self.jitter
        return max(0.0, base + self._random.uniform(-spread, spread))

    def reset(self) -> None:
        self._attempt = 0

    @property
    def attempts(self) -> int:
        return self._attempt
