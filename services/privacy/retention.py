"""Last-activity bookkeeping for the retention sweep: which leads have been quiet too long.

The durable record is a table row per lead (`encode_activity`); the timer asks an in-memory index,
rebuilt from the table only after a rebalance or recovery, so a sweep never scans every lead.
"""

from __future__ import annotations

from services.runtime.time_index import TimeIndex, read_time_row, time_row


def should_record(stored_at: float | None, at: float, resolution: float) -> bool:
    """Store a newer activity time only once per `resolution`: fewer changelog writes, same answer."""
    return stored_at is None or at >= stored_at + resolution


# a lead's last activity as a table value: its time and source partition (a sweep only speaks for
# partitions its worker owns)
encode_activity = time_row
decode_activity = read_time_row


class ActivityIndex(TimeIndex):
    """Lead id -> its last activity time."""

    def touch(self, lead_id: str, at: float) -> None:
        """Record activity at `at`; an older time never replaces a newer one."""
        current = self.get(lead_id)
        if current is None or at > current:
            self.set(lead_id, at)

    def forget(self, lead_id: str) -> None:
        self.set(lead_id, None)

    def pop_inactive(self, cutoff: float, limit: int = 1000) -> list[str]:
        """Leads whose last activity is at or before `cutoff` (each once; they leave the index)."""
        return self.pop_until(cutoff, limit)
