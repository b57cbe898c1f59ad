"""Wait for a condition the system reaches on its own (a record consumed, a mail received)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


async def eventually(check: Callable[[], Awaitable[object] | object], within: float = 60.0) -> None:
    """Until `check()` (awaited when it returns an awaitable) is truthy; fails after `within` s."""
    deadline = time.monotonic() + within
    while True:
        result = check()
        if isinstance(result, Awaitable):
            result = await result
        if result:
            return
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.2)
