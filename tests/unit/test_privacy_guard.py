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


def test_a_value_written_by_the_old_guard_still_guards_and_says_nobody_asked() -> None:
    """A running system holds entries from before the person's erasure was remembered."""
    table = Table()
    table[guard_key("a-old")] = f"{ERASED.timestamp()!r}@2".encode()  # the old code's value, as it wrote it
    guard = ErasureGuard(table, keep=timedelta(days=7))
    assert guard.blocks("a-old", ERASED) and not guard.blocks("a-old", ERASED + timedelta(seconds=1))
    assert guard.erased_by_person_at("a-old") is None
    assert guard.purge(ERASED + timedelta(days=8)) == 1 and table.tombstones == [(guard_key("a-old"), 2)]


def test_the_person_s_erasure_is_remembered_apart_and_outlives_a_later_erasure_that_is_not_theirs() -> None:
    """The cascade that follows a person's erasure erases the lead again; that must not make the guard
    forget that the person asked. Each entry is in the old value format, so a guard of the code
    before this one reads and purges them."""
    table = Table()
    guard = ErasureGuard(table, keep=timedelta(days=7))
    guard.erased("a-abc", ERASED, partition=1, by_person=True)
    assert b"a-abc" not in b"".join(table) and len(table) == 2
    assert all(decode_erasure(value) == (ERASED.timestamp(), 1) for value in table.values())
    later = ERASED + timedelta(seconds=30)
    guard.erased("a-abc", later, partition=1)  # the cascade back from the known lead
    assert guard.erased_at("a-abc") == later.timestamp()
    assert guard.erased_by_person_at("a-abc") == ERASED.timestamp()
    assert guard.blocks("a-abc", ERASED + timedelta(seconds=1))  # still stale: dropped, nothing more
    guard.erased("e-xyz", ERASED, partition=0)
    assert guard.erased_by_person_at("e-xyz") is None
    assert guard.purge(ERASED + timedelta(days=7, seconds=60)) == 3  # the person's and both erasures
    assert table == {} and sorted(p for _, p in table.tombstones) == [0, 1, 1]


@given(st.lists(st.tuples(st.integers(0, 10**6), st.booleans()), min_size=1, max_size=8))
def test_the_guard_holds_the_latest_erasure_and_the_latest_the_person_asked_for(
    erasures: list[tuple[int, bool]],
) -> None:
    guard = ErasureGuard(Table(), keep=timedelta(days=7))
    times = sorted(seconds for seconds, _ in erasures)  # erasures are handled in time order
    for at, (_, by_person) in zip(times, erasures, strict=True):
        guard.erased("a-1", ERASED + timedelta(seconds=at), partition=0, by_person=by_person)
    person = [at for at, (_, by_person) in zip(times, erasures, strict=True) if by_person]
    assert guard.erased_at("a-1") == (ERASED + timedelta(seconds=times[-1])).timestamp()
    expected = (ERASED + timedelta(seconds=person[-1])).timestamp() if person else None
    assert guard.erased_by_person_at("a-1") == expected
