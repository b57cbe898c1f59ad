"""Which keys are due by a time, without scanning them all: a min-heap with lazy deletion.

Why: score's decay timer and enrich's retention sweep each ask "who is due now?" every tick over
every lead a worker holds; a heap answers in O(due · log n) instead of a scan.
"""

from __future__ import annotations

import heapq


def time_row(at: float, partition: int) -> bytes:
    """A table value behind a time index: the key's time and the source partition its records are
    on (a timer speaks only for partitions its worker owns)."""
    return f"{at!r}|{partition}".encode()


def read_time_row(raw: bytes) -> tuple[float, int]:
    at, _, partition = raw.partition(b"|")
    return float(at), int(partition or b"0")


class TimeIndex:
    """A min-heap of (time, key); `_latest` holds each key's current time, older heap entries are stale."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, str]] = []
        self._latest: dict[str, float] = {}
        self.needs_rebuild = True

    def __len__(self) -> int:
        return len(self._latest)

    def __contains__(self, key: object) -> bool:
        return key in self._latest

    def get(self, key: str) -> float | None:
        return self._latest.get(key)

    def set(self, key: str, at: float | None) -> None:
        """Index `key` at `at`; None removes it."""
        if at is None:
            self._latest.pop(key, None)
            return
        if self._latest.get(key) == at:
            return
        self._latest[key] = at
        heapq.heappush(self._heap, (at, key))

    def pop_until(self, now: float, limit: int) -> list[str]:
        """Keys due at or before `now` (each once; they leave the index until set again)."""
        due: list[str] = []
        while self._heap and self._heap[0][0] <= now and len(due) < limit:
            at, key = heapq.heappop(self._heap)
            if self._latest.get(key) == at:
                del self._latest[key]
                due.append(key)
        if len(self._heap) > 4 * len(self._latest) + 1024:  # drop stale entries now and then
            self._heap = [(at, key) for key, at in self._latest.items()]
            heapq.heapify(self._heap)
        return due

    def clear(self) -> None:
        self._heap.clear()
        self._latest.clear()
        self.needs_rebuild = True
