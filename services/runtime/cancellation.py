"""Cancelling a task without losing a cancel of the caller's own.

Why: a worker's stop cancels each of its background loops once, then waits for them without a
limit (mode's `Service.stop`). A loop that loses that cancel runs on, and the stop never ends (most
likely what held a CI run in a nurture test's teardown). Nurture's mailer lost its stop in two
ways, both found by a probe that stops it while it delivers (docs/reliability.md, 17):

- `with suppress(CancelledError): await task` after `task.cancel()` also swallows a cancel of the
  caller that arrives while it waits (`SendClaims.held`, as a mail's claim renewal was stopped).
  `cancel_and_wait` raises it.
- A library catches a cancel and goes on: on 3.11 `asyncio.wait_for` loses a cancel that lands as
  the awaited step completes (CPython gh-86296), and aiosmtplib waits for every SMTP reply so, as
  redis-py sent every command (redis_client.py). `Task.cancelling()` still counts the request,
  which `honour_cancel` checks at the top of each round of a loop.
"""

from __future__ import annotations

import asyncio
from typing import Any


async def cancel_and_wait(task: asyncio.Future[Any]) -> None:
    """Cancel `task` and wait until it has ended; a cancel of the caller meanwhile is raised, and an
    error the task ended with (other than its cancellation) too."""
    task.cancel()
    await asyncio.wait({task})
    if not task.cancelled() and (error := task.exception()) is not None:
        raise error


def honour_cancel() -> None:
    """Raise CancelledError when this task was asked to stop and something below swallowed it."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
