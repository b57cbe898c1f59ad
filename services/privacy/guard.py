"""Keep an erased lead erased: records about it that happened before the erasure are dropped.

Why: an interaction published a moment before the erase request, or an enriched record already on
its way to score, arrives after the erasure ran and would recreate the lead's row. A service that
stores lead rows therefore remembers, for `erasure_guard` (config/privacy.yaml), when each lead was
erased, under a digest of the lead id (no lead id or e-mail in the key), and drops records about
the lead that happened before that time. A record that happened later (the person came back) is
handled as usual.

It also remembers, apart, when the person last asked for the lead's erasure (`by_person`), for a
service whose stale records must take more with them than themselves: enrich erases the known lead
that a late identification of an anonymous lead the person had erased names (services/enrich/domain.py,
`identity_follows`). In an entry of its own, in the same value format: the erasure a person asks
for is followed by others of the same lead (the cascade back from the leads it reached) that would
overwrite it in one entry, and the table stays readable both ways: an entry written by the code
before this reads as an erasure nobody asked for, and that code reads and purges the new entries.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any


def _digest(lead_id: str) -> bytes:
    return hashlib.blake2b(lead_id.encode(), digest_size=16).hexdigest().encode()


def guard_key(lead_id: str) -> bytes:
    return b"erased:" + _digest(lead_id)


def person_key(lead_id: str) -> bytes:
    """The entry of the last erasure the person asked for (`ErasureGuard.erased`, `by_person`)."""
    return b"erased-by-person:" + _digest(lead_id)


def blocks(erased_at: float | None, occurred_at: datetime) -> bool:
    """A record is stale when it happened at or before the lead's erasure."""
    return erased_at is not None and occurred_at.timestamp() <= erased_at


def encode_erasure(at: datetime, partition: int) -> bytes:
    """The table's value: when, and on which partition (a timer's purge has no record to take it from)."""
    return f"{at.timestamp()!r}@{partition}".encode()


def decode_erasure(raw: bytes) -> tuple[float, int | None]:
    at, _, partition = raw.decode().partition("@")
    return float(at), int(partition) if partition else None


class ErasureGuard:
    """Erasure times by lead digest, in a changelog-backed table on the lead's partition."""

    def __init__(self, table: Any, keep: timedelta, on_drop: Callable[[], None] = lambda: None) -> None:
        self.table = table  # bytes -> encode_erasure(...)
        self.keep = keep
        self.on_drop = on_drop  # counts a dropped record (the service's privacy metrics)

    def erased(self, lead_id: str, at: datetime, partition: int, *, by_person: bool = False) -> None:
        """Record an erasure; call it while handling the request's record (the table's partition is its).

        `by_person`: the person asked for it (the caller decides what counts); a later erasure that
        is not theirs leaves that remembered."""
        value = encode_erasure(at, partition)
        self.table[guard_key(lead_id)] = value
        if by_person:
            self.table[person_key(lead_id)] = value

    def erased_at(self, lead_id: str) -> float | None:
        """When the lead was erased (epoch seconds), or None. With no erasure held, the usual case,
        it answers without hashing the id and missing the table: asked for every record, those
        cost 5.6 µs against 0.5 for the table's size (docs/performance.md, fifteenth pass)."""
        if len(self.table) == 0:
            return None
        raw = self.table.get(guard_key(lead_id))
        return None if raw is None else decode_erasure(raw)[0]

    def erased_by_person_at(self, lead_id: str) -> float | None:
        """When the person last asked for the lead's erasure (epoch seconds), or None. Asked only of
        stale records, so not on the hot path."""
        raw = self.table.get(person_key(lead_id))
        return None if raw is None else decode_erasure(raw)[0]

    def blocks(self, lead_id: str, occurred_at: datetime) -> bool:
        return blocks(self.erased_at(lead_id), occurred_at)

    def drops(self, lead_id: str, occurred_at: datetime) -> bool:
        """`blocks`, counted: the caller drops the record, or it would recreate the erased lead."""
        if not self.blocks(lead_id, occurred_at):
            return False
        self.on_drop()
        return True

    def purge(self, now: datetime) -> int:
        """Forget erasures older than `keep`: nothing from before them is still in flight.

        Runs in a timer, outside any stream, so each tombstone names its partition (`delete_at`)."""
        cutoff = (now - self.keep).timestamp()
        old = []
        for key, raw in list(self.table.items()):
            if raw is None:
                continue
            at, partition = decode_erasure(raw)
            if at < cutoff and partition is not None:
                old.append((key, partition))
        for key, partition in old:
            self.table.delete_at(key, partition)
        return len(old)
