"""Reading a table's rows in slices (services/runtime/table_rows.py) while its writer goes on."""

from __future__ import annotations

import asyncio

from services.runtime.table_rows import rows_in_slices


async def test_each_row_is_read_as_it_is_when_reached_while_the_writer_goes_on() -> None:
    table: dict[str, int | None] = {f"k{n}": n for n in range(6)}
    table["empty"] = None
    read: list[tuple[str, int]] = []

    async def writer() -> None:  # runs at the reader's first turn, after two rows
        table["k3"] = 30  # written meanwhile: read as written
        del table["k4"]  # deleted meanwhile: skipped
        table["new"] = 99  # added meanwhile: its writer indexes it, the pass does not

    task = asyncio.create_task(writer())
    async for row in rows_in_slices(table, per_slice=2):
        read.append(row)
    await task
    assert read == [("k0", 0), ("k1", 1), ("k2", 2), ("k3", 30), ("k5", 5)]


async def test_other_tasks_run_between_the_slices() -> None:
    table = {n: n for n in range(10)}
    turns: list[int] = []
    read: list[int] = []

    async def other() -> None:
        while True:
            turns.append(len(read))
            await asyncio.sleep(0)

    task = asyncio.create_task(other())
    await asyncio.sleep(0)
    async for key, _ in rows_in_slices(table, per_slice=3):
        read.append(key)
    task.cancel()
    assert read == list(range(10))
    assert [n for n in turns if 0 < n < 10] == [3, 6, 9]


async def test_a_pass_made_moot_by_a_rebalance_stops_at_its_next_turn() -> None:
    table = {n: n for n in range(10)}
    read: list[int] = []
    async for key, _ in rows_in_slices(table, per_slice=4, abandoned=lambda: read[-1] >= 5):
        read.append(key)
    assert read == [0, 1, 2, 3, 4, 5, 6, 7]
