"""A task cancelled while it sends a Redis command stops (services/runtime/redis_client.py), on the
real Redis. With redis-py's own connection, most of these cancels are lost on Python 3.11."""

from __future__ import annotations

import asyncio
import random

import pytest
from redis.asyncio import Redis

from services.runtime.redis_client import redis_client

pytestmark = pytest.mark.integration

TRIES = 100


async def lost_cancels(client: Redis, *, pipelined: bool) -> int:
    """Cancel a loop of commands at random moments; count the cancels it did not stop for."""
    lost = 0
    for _ in range(TRIES):
        stop = asyncio.Event()

        async def commands(stop: asyncio.Event) -> None:
            while not stop.is_set():
                if pipelined:
                    async with client.pipeline(transaction=True) as pipe:
                        pipe.zcard("leadpipe:test:cancel")
                        pipe.get("leadpipe:test:cancel:value")
                        await pipe.execute()
                else:
                    await client.zcard("leadpipe:test:cancel")

        task = asyncio.create_task(commands(stop))
        await asyncio.sleep(random.uniform(0.001, 0.005))
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=0.5)
        if not done:
            lost += 1
            stop.set()
            await asyncio.wait({task}, timeout=2)
    return lost


@pytest.mark.parametrize("pipelined", [False, True])
async def test_a_task_cancelled_while_it_sends_a_command_stops(redis_url: str, pipelined: bool) -> None:
    client = redis_client(redis_url, 0.5)
    try:
        assert await lost_cancels(client, pipelined=pipelined) == 0
        # the connections dropped on the way left the client whole: replies match their commands
        await client.set("leadpipe:test:cancel:value", b"v")
        assert await client.get("leadpipe:test:cancel:value") == b"v"
        assert await client.zcard("leadpipe:test:cancel") == 0
    finally:
        await client.delete("leadpipe:test:cancel:value")
        await client.aclose()
