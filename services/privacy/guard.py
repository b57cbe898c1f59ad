"""Keep an erased lead erased: records about it that happened before the erasure are dropped.

Why: an interaction published a moment before the erase request, or an enriched record already on
its way to score, arrives after the erasure ran and would recreate the lead's row. A service that
stores lead rows therefore remembers, for `erasure_guard` (config/privacy.yaml), when each lead was
erased, under a digest of the lead id (no lead id or e-mail in the key), and drops records about
the lead that happened before that time. A record that happened later (the person came back) is
handled as usual.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from typing import Any


def guard_key(lead_id: str) -> bytes:
    return b"erased:" + hashlib.blake2b(lead_id.encode(), digest_size=16).hexdigest().encode()


def blocks(erased_at: float | None, occurred_at: datetime) -> bool:
    """A record is stale when it happened at or before the lead's erasure."""
    return erased_at is not None and occurred_at.timestamp() <= erased_at


class ErasureGuard:
    """Erasure times by lead digest, in a changelog-backed table on the lead's partition."""

    def __init__(self, table: Any, keep: timedelta) -> None:
        self.table = table  # bytes -> bytes (epoch seconds as text)
        self.keep = keep

    def erased(self, lead_id: str, at: datetime) -> None:
        self.table[guard_key(lead_id)] = repr(at.timestamp()).encode()

    def erased_at(self, lead_id: str) -> float | None:
        raw = self.table.get(guard_key(lead_id))
        return None if raw is None else float(raw)

    def blocks(self, lead_id: str, occurred_at: datetime) -> bool:
        return blocks(self.erased_at(lead_id), occurred_at)

    def purge(self, now: datetime) -> int:
        """Forget erasures older than `keep`: nothing from before them is still in flight."""
        cutoff = (now - self.keep).timestamp()
        old = [key for key, raw in list(self.table.items()) if raw is not None and float(raw) < cutoff]
        for key in old:
            del self.table[key]
        return len(old)
