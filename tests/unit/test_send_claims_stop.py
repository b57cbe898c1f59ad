"""A worker's stop that comes as a send ends is not lost in `SendClaims.held`.

Nurture's mailer lost its stop there: `held` stopped the claim's renewal with `suppress(
CancelledError)` around the wait, which also swallowed the mailer's own cancel when it came during
that wait; its loop ran on, and the worker's stop waited for it for ever (docs/reliability.md, 17).
No Redis call is made here: the renewal's first call is a third of a lease away.
"""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis

from services.runtime.send_once import SendClaims


async def test_a_cancel_while_the_renewal_stops_cancels_the_sender() -> None:
    claims = SendClaims(Redis(), "test:", sent_ttl=60, claim_ttl=120)
    sent, ran_on = asyncio.Event(), asyncio.Event()

    async def sender() -> None:
        async with claims.held("message-1"):
            sent.set()  # the stop below lands as `held` waits for its renewal to end
        ran_on.set()

    task = asyncio.create_task(sender())
    await sent.wait()
    task.cancel()
    await asyncio.wait({task}, timeout=1)
    assert task.cancelled()
    assert not ran_on.is_set()
