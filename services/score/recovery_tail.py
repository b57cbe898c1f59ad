"""Apply changelog records that faust reads just after it declared the table recovered.

Why: Tansu answers ListOffsets(latest) with the last batch's base offset + 1, so when a changelog
partition ends in a batch of several records faust believes the log ends early, finishes recovery
and drops the tail it then still reads (found by tests/integration/test_score_recovery.py: a lead
recovered as IQL although its MQL state was in the changelog). Those late records arrive from the
fetch already in flight, right after recovery; we apply them unless the agent wrote that lead since
(then the agent's state is newer). On a broker with correct offsets this never triggers.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

GRACE_SECONDS = 30.0  # late records come from fetches in flight at recovery's end, within moments


class RecoveryTail:
    def __init__(self, app: Any, on_applied: Callable[[], None]) -> None:
        self.app = app
        self.table: Any = None  # the faust table, set once it exists (it takes our callback)
        self.on_applied = on_applied
        self.written: set[bytes] = set()
        self.ended_at: float | None = None
        self.applied = 0

    def rebalanced(self) -> None:
        """A new assignment: recovery starts over, and so does the record of the agent's writes."""
        self.written.clear()
        self.ended_at = None

    def recovered(self) -> None:
        self.ended_at = time.monotonic()

    def _open(self) -> bool:
        return self.ended_at is None or time.monotonic() - self.ended_at < GRACE_SECONDS

    def wrote(self, key: bytes) -> None:
        """The agent stored (or erased) this lead: a late changelog record for it is older."""
        if self._open():
            self.written.add(key)
        elif self.written:
            self.written.clear()

    async def on_changelog_event(self, event: Any) -> None:
        """faust calls this for every changelog record it reads; during recovery it applies them."""
        if self.app.in_recovery:
            return
        key = event.key
        if key is None or bytes(key) in self.written:
            return
        if not self._open():
            log.warning(
                "ignored a changelog record read long after recovery (partition %s)", event.message.tp
            )
            return
        self.table.apply_changelog_batch([event])
        self.applied += 1
        self.on_applied()
        log.warning(
            "applied changelog %s@%d read after recovery ended (broker under-reported the log end)",
            event.message.tp,
            event.message.offset,
        )
