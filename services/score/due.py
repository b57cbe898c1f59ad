"""An index of when each lead's temperature next drops, so the timer never scans every lead."""

from __future__ import annotations

import heapq


class DueIndex:
    """A min-heap of (due, lead) with lazy deletion; `latest` holds each lead's current due time."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, str]] = []
        self._latest: dict[str, float] = {}
        self.needs_rebuild = True

    def __len__(self) -> int:
        return len(self._latest)

    def set(self, lead_id: str, due: float | None) -> None:
        if due is None:
            self._latest.pop(lead_id, None)
            return
        if self._latest.get(lead_id) == due:
            return
        self._latest[lead_id] = due
        heapq.heappush(self._heap, (due, lead_id))

    def pop_due(self, now: float, limit: int = 10_000) -> list[str]:
        """Leads due by `now` (each once; they leave the index until set again)."""
        due: list[str] = []
        while self._heap and self._heap[0][0] <= now and len(due) < limit:
            at, lead_id = heapq.heappop(self._heap)
            if self._latest.get(lead_id) == at:
                del self._latest[lead_id]
                due.append(lead_id)
        if len(self._heap) > 4 * len(self._latest) + 1024:  # drop stale entries now and then
            self._heap = [(at, lead) for lead, at in self._latest.items()]
            heapq.heapify(self._heap)
        return due

    def clear(self) -> None:
        self._heap.clear()
        self._latest.clear()
        self.needs_rebuild = True
