"""Last-activity bookkeeping for the retention sweep: which leads have been quiet too long.

The durable record is a table row per lead (`encode_activity`); the timer asks an in-memory index,
rebuilt from the table only after a rebalance or recovery, so a sweep never scans every lead.
"""

from __future__ import annotations

import heapq


def should_record(stored_at: float | None, at: float, resolution: float) -> bool:
    """Store a newer activity time only once per `resolution`: fewer changelog writes, same answer."""
    return stored_at is None or at >= stored_at + resolution


def encode_activity(at: float, partition: int) -> bytes:
    """Time and source partition: a sweep only speaks for partitions its worker owns."""
    return f"{at!r}|{partition}".encode()


def decode_activity(raw: bytes) -> tuple[float, int]:
    at, _, partition = raw.partition(b"|")
    return float(at), int(partition or b"0")


class ActivityIndex:
    """A min-heap of (last activity, lead) with lazy deletion; `latest` holds each lead's time."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, str]] = []
        self._latest: dict[str, float] = {}
        self.needs_rebuild = True

    def __len__(self) -> int:
        return len(self._latest)

    def __contains__(self, lead_id: object) -> bool:
        return lead_id in self._latest

    def touch(self, lead_id: str, at: float) -> None:
        """Record activity at `at`; an older time never replaces a newer one."""
        current = self._latest.get(lead_id)
        if current is not None and current >= at:
            return
        self._latest[lead_id] = at
        heapq.heappush(self._heap, (at, lead_id))

    def forget(self, lead_id: str) -> None:
        self._latest.pop(lead_id, None)

    def pop_inactive(self, cutoff: float, limit: int = 1000) -> list[str]:
        """Leads whose last activity is at or before `cutoff` (each once; they leave the index)."""
        quiet: list[str] = []
        while self._heap and self._heap[0][0] <= cutoff and len(quiet) < limit:
            at, lead_id = heapq.heappop(self._heap)
            if self._latest.get(lead_id) == at:
                del self._latest[lead_id]
                quiet.append(lead_id)
        if len(self._heap) > 4 * len(self._latest) + 1024:  # drop stale entries now and then
            self._heap = [(at, lead) for lead, at in self._latest.items()]
            heapq.heapify(self._heap)
        return quiet

    def clear(self) -> None:
        self._heap.clear()
        self._latest.clear()
        self.needs_rebuild = True
