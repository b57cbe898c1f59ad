"""Nurture's due schedule (services/nurture/schedule.py): which leads' steps are due, from a heap
kept as the agent writes the `due` rows, not from reading every row each tick."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from services.nurture.schedule import DueSchedule
from services.runtime.time_index import read_time_row, time_row

RETICK = 30.0


def owned(partition: int) -> bool:
    return partition != 3


def test_a_due_lead_is_announced_again_only_after_the_retick_unless_its_row_changes() -> None:
    schedule = DueSchedule(RETICK)
    schedule.set("a", 100.0, 0)
    schedule.set("b", 200.0, 1)
    assert schedule.pop_due(99.0, owned) == []
    assert schedule.pop_due(150.0, owned) == ["a"]
    assert schedule.pop_due(179.0, owned) == []  # announced at 150: not again before 180
    assert schedule.pop_due(180.0, owned) == ["a"]  # not handled by then: announced again
    schedule.set("a", 500.0, 0)  # handled: its next step is later
    assert schedule.pop_due(400.0, owned) == ["b"]
    schedule.set("b", None)  # handled: nothing more due
    assert schedule.pop_due(1_000.0, owned) == ["a"]
    assert len(schedule) == 1  # "a", kept for its next announcement


async def test_a_lead_on_a_partition_this_worker_does_not_own_is_dropped_until_the_rebuild() -> None:
    schedule = DueSchedule(RETICK)
    schedule.set("moved", 100.0, 3)
    assert schedule.pop_due(200.0, owned) == []
    assert schedule.pop_due(1_000.0, lambda partition: True) == []  # dropped, not re-armed
    schedule.invalidate()
    assert schedule.needs_rebuild
    await schedule.rebuild({b"moved": time_row(100.0, 3), b"gone": None})  # the partition came back
    assert not schedule.needs_rebuild
    assert schedule.pop_due(200.0, lambda partition: True) == ["moved"]


def test_a_due_row_reads_back_as_written() -> None:
    assert read_time_row(time_row(1_765_000_000.123456, 7)) == (1_765_000_000.123456, 7)


@given(
    st.lists(
        st.tuples(st.sampled_from("abcdef"), st.one_of(st.none(), st.floats(0, 1_000)), st.integers(0, 4)),
        max_size=40,
    ),
    st.floats(0, 1_200),
)
def test_the_leads_due_are_those_a_scan_of_the_rows_finds(
    writes: list[tuple[str, float | None, int]], now: float
) -> None:
    """Whatever the agent wrote, in any order, the first tick announces exactly the rows that are
    due on owned partitions, as reading every row would, each once."""
    schedule = DueSchedule(RETICK)
    rows: dict[str, tuple[float, int] | None] = {}
    for lead_id, at, partition in writes:
        schedule.set(lead_id, at, partition)
        rows[lead_id] = None if at is None else (at, partition)
    expected = sorted(
        lead_id for lead_id, row in rows.items() if row is not None and row[0] <= now and owned(row[1])
    )
    assert sorted(schedule.pop_due(now, owned)) == expected
    assert schedule.pop_due(now, owned) == []  # none again within the retick
