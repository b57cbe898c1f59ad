"""`tests.eventually.within`: a step that outlasts its time fails the test, naming what still waits."""

from __future__ import annotations

import asyncio

import pytest

from tests.eventually import within


async def test_a_step_in_time_passes_and_a_held_one_fails_with_the_waiting_tasks(
    capfd: pytest.CaptureFixture[str],
) -> None:
    await within(asyncio.sleep(0.01), 5, "a short step")

    async def held_by_an_agent() -> None:
        await asyncio.Event().wait()  # never set, as an agent that does not end when cancelled

    what = "test_within's held step, on purpose"
    with pytest.raises(pytest.fail.Exception, match=r"on purpose took longer than 0\.1 s") as failed:
        await within(held_by_an_agent(), 0.1, what)
    assert "held_by_an_agent" in str(failed.value)
    # also written at once, for a run the held step then holds before pytest reports the failure
    assert "held_by_an_agent" in capfd.readouterr().err
    for task in asyncio.all_tasks():  # the held step, left behind as a held stop would be
        if task.get_coro().__name__ == "held_by_an_agent":  # type: ignore[union-attr]
            task.cancel()
