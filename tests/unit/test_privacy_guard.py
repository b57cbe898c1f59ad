"""The erasure guard: records from before a lead's erasure are stale, later ones are not."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.privacy.guard import ErasureGuard, blocks, decode_erasure, encode_erasure, guard_key

ERASED = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


@given(st.integers(min_value=-(10**6), max_value=10**6))
def test_stale_exactly_when_it_happened_at_or_before_the_erasure(seconds: int) -> None:
    occurred = ERASED + timedelta(seconds=seconds)
    assert blocks(ERASED.timestamp(), occurred) is (seconds <= 0)
    assert blocks(None, occurred) is False  # never erased: nothing is stale


class Table(dict[bytes, bytes]):
    """The guard's table as a dict, with CaughtUpTable's delete_at recording each tombstone's partition."""

    def __init__(self) -> None:
        super().__init__()
        self.tombstones: list[tuple[bytes, int]] = []

    def delete_at(self, key: bytes, partition: int) -> None:
        del self[key]
        self.tombstones.append((key, partition))


def test_the_key_names_no_lead_and_the_guard_forgets_after_its_period() -> None:
    table = Table()
    dropped: list[int] = []
    guard = ErasureGuard(table, keep=timedelta(days=7), on_drop=lambda: dropped.append(1))
    guard.erased("e-abc123", ERASED, partition=3)
    assert b"e-abc123" not in b"".join(table) and guard_key("e-abc123") in table
    assert guard.blocks("e-abc123", ERASED - timedelta(seconds=1))
    assert not guard.blocks("e-abc123", ERASED + timedelta(seconds=1))
    assert guard.drops("e-abc123", ERASED) and not guard.drops("e-abc123", ERASED + timedelta(seconds=1))
    assert dropped == [1]  # only the dropped record is counted
    assert not guard.blocks("e-other", ERASED - timedelta(days=1))
    assert guard.purge(ERASED + timedelta(days=6)) == 0
    assert guard.purge(ERASED + timedelta(days=8)) == 1
    assert table == {} and not guard.blocks("e-abc123", ERASED - timedelta(seconds=1))
    assert table.tombstones == [(guard_key("e-abc123"), 3)]  # on the partition of the erasure


@given(st.floats(min_value=0, max_value=4e9, allow_nan=False), st.integers(min_value=0, max_value=255))
def test_an_erasure_value_round_trips(at: float, partition: int) -> None:
    moment = datetime.fromtimestamp(at, UTC)
    assert decode_erasure(encode_erasure(moment, partition)) == (moment.timestamp(), partition)


class UnaskedTable(dict[bytes, bytes]):
    """A table that fails when it is read: while it holds nothing, the guard must not ask it."""

    def get(self, key: bytes, default: bytes | None = None) -> bytes | None:  # type: ignore[override]
        raise AssertionError(f"looked up {key!r} in an empty table")


def test_with_no_erasure_held_the_guard_answers_without_a_lookup() -> None:
    table = UnaskedTable()
    guard = ErasureGuard(table, keep=timedelta(days=7))
    assert not guard.drops("e-abc123", ERASED)
    dict.__setitem__(table, guard_key("e-other"), encode_erasure(ERASED, 0))
    with pytest.raises(AssertionError, match="looked up"):  # one erasure held: every record is checked
        guard.drops("e-abc123", ERASED)
