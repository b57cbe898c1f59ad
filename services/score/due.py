"""An index of when each lead's temperature next drops, so the timer never scans every lead."""

from __future__ import annotations

from services.runtime.time_index import TimeIndex


class DueIndex(TimeIndex):
    """Lead id -> when its temperature next drops."""

    def pop_due(self, now: float, limit: int = 10_000) -> list[str]:
        """Leads due by `now` (each once; they leave the index until set again)."""
        return self.pop_until(now, limit)
