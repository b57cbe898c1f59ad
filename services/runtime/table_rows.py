"""Every row a worker holds, read without holding the event loop.

Why: score, nurture and enrich rebuild an in-memory index from their table after a recovery or a
rebalance. Read in one go, 1M of score's leads held the loop for 23 s: no hand-offs, no answers to
health probes, and a liveness restart that starts the rebuild again (docs/performance.md, 27th pass).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping
from typing import TypeVar

K = TypeVar("K")
V = TypeVar("V")

ROWS_PER_SLICE = 1_000  # about 10 ms of parsing for the largest rows (score's states of 3 KB)


def _never() -> bool:
    return False


async def rows_in_slices(
    table: Mapping[K, V | None],
    *,
    per_slice: int = ROWS_PER_SLICE,
    abandoned: Callable[[], bool] = _never,
) -> AsyncIterator[tuple[K, V]]:
    """The table's rows (empty ones left out), giving the loop a turn after each `per_slice`.

    The agent writes while this reads, so the keys are a snapshot and each value is read when its
    key is reached: a row written meanwhile is read as written, a row deleted meanwhile is skipped,
    and a row added meanwhile was indexed by its writer. A caller indexes each row before it asks
    for the next (no await between), so nothing older overwrites what the agent indexed later.
    `abandoned` is asked at each turn: true once a rebalance made the pass moot (it starts over)."""
    keys = list(table.keys())
    for count, key in enumerate(keys, 1):
        value = table.get(key)
        if value is not None:
            yield key, value
        if count % per_slice == 0:
            await asyncio.sleep(0)
            if abandoned():
                return
