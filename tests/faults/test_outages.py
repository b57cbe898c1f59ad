"""Redis restarted and the broker frozen, both under load: services wait and resume, nothing is lost.

The stack's Redis is its own (never the shared one at 6379) and runs as docker-compose runs it, with
an append-only file (fsync on every write here, so a kill -9 loses nothing it acknowledged). The
broker is the stack's own Tansu, frozen with SIGSTOP: its sockets stay open and nothing answers,
like a broker behind a dead network path.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.faults.conftest import Scale, new_run, record
from tests.faults.stack import FaultStack

pytestmark = pytest.mark.e2e


async def test_redis_killed_and_restarted_under_load(stack: FaultStack, scale: Scale) -> None:
    await stack.ensure_running()
    async with new_run(
        stack, scale, f"Redis kill -9, {scale.outage_seconds:.0f}s down x{scale.repeats}"
    ) as run:
        run.start_sending()
        for n in range(1, scale.repeats + 1):
            await run.accepted(n / (scale.repeats + 1))
            stack.redis.kill9()
            await asyncio.sleep(scale.outage_seconds)
            stack.redis.start()
        report = await run.finish()
    record(report)
    dead = [w.name for w in stack.all_workers() if not w.alive]
    assert not dead, f"{dead} died while Redis was away\n" + "\n".join(
        stack.worker(*_split(name)).log() for name in dead
    )
    assert report.ok, report.details()


async def test_frozen_broker_means_503_then_everything_arrives(stack: FaultStack, scale: Scale) -> None:
    await stack.ensure_running()
    label = f"broker frozen (SIGSTOP) {scale.outage_seconds:.0f}s x{scale.repeats}"
    async with new_run(stack, scale, label) as run:
        run.start_sending()
        for n in range(1, scale.repeats + 1):
            await run.accepted(n / (scale.repeats + 1))
            with stack.frozen_broker():
                await asyncio.sleep(scale.outage_seconds)
            resumed = time.monotonic()
            accepted = run.sender.accepted
            await run.sender.reached(min(run.events, accepted + 1))
            run.timings[f"resume {n} to next 202"] = time.monotonic() - resumed
        report = await run.finish()
    record(report)
    assert report.answers["503"] > 0, (
        f"capture never answered 503 while the broker was frozen: {report.answers}"
    )
    dead = [w.name for w in stack.all_workers() if not w.alive]
    assert not dead, f"{dead} died while the broker was frozen"
    assert report.ok, report.details()


def _split(name: str) -> tuple[str, int]:
    service, _, instance = name.rpartition("-")
    return service, int(instance)
