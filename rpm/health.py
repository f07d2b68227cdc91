"""What `/readyz` reports: whether the service can do its work right now."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

logger = logging.getLogger(__name__)


@dataclass
class Health:
    """Readiness of each dependency; a change is logged once, not on every probe."""

    # None until the first attempt, so that a dependency down at start-up is logged too.
    _ready: dict[str, bool | None] = field(
        default_factory=lambda: {"database": None, "broker": None}
    )

    def set(self, dependency: str, ready: bool, detail: str = "") -> None:
        if self._ready[dependency] == ready:
            return
        self._ready[dependency] = ready
        if ready:
            logger.info("%s connected", dependency, extra={"dependency": dependency})
        else:
            logger.warning(
                "%s not available%s",
                dependency,
                f": {detail}" if detail else "",
                extra={"dependency": dependency},
            )

    @property
    def ready(self) -> bool:
        return all(self._ready.values())

    def snapshot(self) -> dict[str, bool]:
        return {name: bool(ready) for name, ready in self._ready.items()}
