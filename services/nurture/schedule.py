"""Which leads have a nurture step due, without reading every lead's due row on every tick.

Why: the scheduler read the whole `due` table every `tick_seconds` (5 s) to find the few rows that
were due: 0.5-1 µs per row even from a plain dict, so a worker holding a million enrolled leads
spent a tenth to a fifth of a core finding nothing (docs/performance.md, eighteenth pass). The
schedule keeps the rows in a heap (`TimeIndex`), updated as the agent writes them, and rebuilt from
the table after a rebalance or recovery.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from services.runtime.table_rows import rows_in_slices
from services.runtime.time_index import TimeIndex, read_time_row


class DueSchedule:
    """Lead id -> when its next step is due. A lead announced and not handled within `retick_seconds`
    (the tick was lost, or its partition moved away and back) is announced again."""

    def __init__(self, retick_seconds: float) -> None:
        self.retick_seconds = retick_seconds
        self._index = TimeIndex()
        self._partitions: dict[str, int] = {}

    @property
    def needs_rebuild(self) -> bool:
        return self._index.needs_rebuild

    def __len__(self) -> int:
        return len(self._index)

    def invalidate(self) -> None:
        """After a rebalance or a recovery: the rows this worker holds changed; rebuild on the next tick."""
        self._index.clear()
        self._partitions.clear()

    async def rebuild(self, rows: Mapping[bytes, bytes | None]) -> None:
        """Index every `due` row this worker holds (once after a rebalance, not every tick), in
        slices that give the loop turns; a rebalance meanwhile abandons it for the next tick's."""
        self.invalidate()
        self._index.needs_rebuild = False
        async for key, value in rows_in_slices(rows, abandoned=lambda: self.needs_rebuild):
            if value:
                at, partition = read_time_row(value)
                self.set(bytes(key).decode(), at, partition)

    def set(self, lead_id: str, at: float | None, partition: int = 0) -> None:
        """The lead's row as the agent wrote it; None: nothing due."""
        self._index.set(lead_id, at)
        if at is None:
            self._partitions.pop(lead_id, None)
        else:
            self._partitions[lead_id] = partition

    def pop_due(self, now: float, owned: Callable[[int], bool], limit: int = 10_000) -> list[str]:
        """Leads due by `now` on partitions this worker owns, each kept for one more announcement
        `retick_seconds` later unless its row changes by then. A lead on a partition the worker no
        longer owns is dropped: the rebuild after the next rebalance brings it back if it returns."""
        due = []
        for lead_id in self._index.pop_until(now, limit):
            partition = self._partitions[lead_id]
            if owned(partition):
                due.append(lead_id)
                self._index.set(lead_id, now + self.retick_seconds)
            else:
                del self._partitions[lead_id]
        return due
