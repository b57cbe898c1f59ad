"""An index of when each lead's temperature next drops, so the timer never scans every lead."""

from __future__ import annotations

from collections.abc import Mapping

from services.runtime.table_rows import rows_in_slices
from services.runtime.time_index import TimeIndex
from services.score.state import IndexEntry


class DueIndex(TimeIndex):
    """Lead id -> when its temperature next drops."""

    def pop_due(self, now: float, limit: int = 10_000) -> list[str]:
        """Leads due by `now` (each once; they leave the index until set again)."""
        return self.pop_until(now, limit)

    async def rebuild(self, table: Mapping[bytes, bytes | None], digest: str) -> list[bytes]:
        """After recovery or a rebalance: index the leads of `table` (the states this worker holds);
        the keys of those last evaluated under other rules than `digest` (the file changed while the
        worker was down, or another worker had other rules), to evaluate again. A state from before
        the digest was kept names none: it is evaluated again at its next event.

        The rows are read in slices (1M leads held the loop for 23 s in one go) and only their due
        time and digest are parsed; a rebalance meanwhile abandons the pass, with no keys, for the
        next tick's."""
        self.clear()
        self.needs_rebuild = False
        stale: list[bytes] = []
        async for key, raw in rows_in_slices(table, abandoned=lambda: self.needs_rebuild):
            entry = IndexEntry.loads(raw)
            self.set(bytes(key).decode(), entry.next_due)
            if entry.rules is not None and entry.rules != digest:
                stale.append(bytes(key))
        return [] if self.needs_rebuild else stale
