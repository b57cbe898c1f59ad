"""services.runtime.cancellation: a worker's stop reaches its loops even when a wait or a library
would lose it."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from services.runtime.cancellation import cancel_and_wait, honour_cancel


async def slow_to_end() -> None:
    """Ends a little after its cancel, as a claim renewal in the middle of a Redis call does."""
    try:
        await asyncio.Event().wait()
    finally:
        await asyncio.sleep(0.05)


async def test_a_cancel_of_the_caller_while_it_waits_for_the_task_is_not_lost() -> None:
    ran_on = asyncio.Event()

    async def caller() -> None:
        child = asyncio.create_task(slow_to_end())
        await asyncio.sleep(0)  # the child has started
        await cancel_and_wait(child)
        ran_on.set()  # `suppress(CancelledError): await child` gets here: the stop is lost

    task = asyncio.create_task(caller())
    await asyncio.sleep(0.01)  # the caller now waits for its child to end
    task.cancel()
    await asyncio.wait({task}, timeout=1)
    assert task.cancelled()
    assert not ran_on.is_set()


async def test_the_task_ends_before_it_returns_and_its_own_error_is_raised() -> None:
    child = asyncio.create_task(slow_to_end())
    await asyncio.sleep(0)
    await cancel_and_wait(child)
    assert child.cancelled()

    async def fails_on_cancel() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            raise ValueError("cleanup failed") from None

    failing = asyncio.create_task(fails_on_cancel())
    await asyncio.sleep(0)
    with pytest.raises(ValueError, match="cleanup failed"):
        await cancel_and_wait(failing)


async def test_a_swallowed_cancel_is_raised_at_the_next_round_and_a_handled_one_is_not() -> None:
    rounds = 0

    async def loop_under_a_library_that_loses_cancels() -> None:
        nonlocal rounds
        for _ in range(40):  # ends in 2 s even if the cancel is lost, so that a failure ends the run
            honour_cancel()
            rounds += 1
            with contextlib.suppress(asyncio.CancelledError):  # as CPython gh-86296's wait_for could
                await asyncio.sleep(0.05)

    task = asyncio.create_task(loop_under_a_library_that_loses_cancels())
    await asyncio.sleep(0.01)
    task.cancel()
    await asyncio.wait({task}, timeout=1)
    assert task.cancelled()
    assert rounds == 1

    async def times_out_then_goes_on() -> str:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.01):  # cancels the task, and takes its cancel back
                await asyncio.sleep(1)
        honour_cancel()
        return "went on"

    assert await asyncio.create_task(times_out_then_goes_on()) == "went on"
