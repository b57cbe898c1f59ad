"""Wait for a condition the system reaches on its own (a record consumed, a mail received), or for
a step that must end in time (an app's start or stop)."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from services.runtime.stream_app import StreamService


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


async def within(step: Awaitable[None], seconds: float, what: str) -> None:
    """Fail when `step` outlasts `seconds`, with every waiting task's chain of awaits. Not
    wait_for: a faust start or stop held by a waiting agent does not end when cancelled, and the
    test would hang until pytest-timeout ends the whole run with the threads' stacks only."""
    done, _ = await asyncio.wait({asyncio.ensure_future(step)}, timeout=seconds)
    if not done:
        stacks = "\n".join(awaiting(task) for task in asyncio.all_tasks())
        report = f"{what} took longer than {seconds} s; the tasks still waiting:\n{stacks}"
        # At once, past pytest's capture: the held step is left running, and a run it then holds
        # until pytest-timeout ends it never prints this test's failure.
        print(report, file=sys.__stderr__, flush=True)
        pytest.fail(report)


def awaiting(task: asyncio.Task[object]) -> str:
    """The task and every coroutine down the chain it awaits, innermost last, with what that one
    waits for. Not `Task.print_stack`: of a suspended task it shows the outermost frame only."""
    lines = [repr(task)]
    awaited: object = task.get_coro()
    while awaited is not None:
        frame = getattr(awaited, "cr_frame", None) or getattr(awaited, "ag_frame", None)
        if frame is None:  # a future, or a generator-based awaitable
            lines.append(f"    awaiting {awaited!r}")
            break
        lines.append(f"  {frame.f_code.co_filename}:{frame.f_lineno} in {frame.f_code.co_name}")
        awaited = getattr(awaited, "cr_await", None) or getattr(awaited, "ag_await", None)
    return "\n".join(lines)


async def stopped(service: StreamService, seconds: float = 60.0) -> None:
    """Stop a service's app; a stop that outlasts `seconds` fails the test and names the tasks that
    held it (a stop in a test's teardown once held a whole CI run until pytest-timeout ended it)."""
    await within(service.app.stop(), seconds, f"{service.name} stopping")
