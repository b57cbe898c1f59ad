"""Redis clients whose commands pass a task's cancellation on (Python 3.11).

Why: redis-py sends each command under `asyncio.wait_for(send, socket_timeout)`. On Python 3.11,
`wait_for` returns the result when the send completes in the same loop turn as a cancel of the
task awaiting it, and the cancel is lost (CPython gh-86296; 3.12 rewrote `wait_for`). A small
command's send completes at once, so a task cancelled while it sends usually runs on: 132 of 200
cancels of a loop of ZCARDs were lost, with every redis-py from 5.3 to 8.2 and a 0.5 s socket
timeout (0 of 200 without one). A loop ended by cancelling it (capture's contact fetches and privacy
consumer, nurture's claim renewal) could then run for ever and hang its service's shutdown.

The connection class here notices a cancel lost during the send (the task still counts it as
requested) and raises it, after dropping the connection, whose reply would otherwise be read by
the next command.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection


def redis_client(url: str, timeout: float) -> Redis:
    """`Redis.from_url` with `timeout` for connecting and for each reply, cancel-safe."""
    client = Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
    pool = client.connection_pool
    pool.connection_class = cancel_safe(pool.connection_class)  # connections are made on first use
    return client


_MADE: dict[type[AbstractConnection], type[AbstractConnection]] = {}


def cancel_safe(base: type[AbstractConnection]) -> type[AbstractConnection]:
    """`base` (plain, TLS or Unix socket, as the URL chose) raising a cancel its send lost; one
    class per base, made once."""
    if base in _MADE:
        return _MADE[base]

    class CancelSafe(base):  # type: ignore[valid-type,misc]
        async def send_packed_command(
            self, command: bytes | str | Iterable[bytes], check_health: bool = True
        ) -> None:
            task = asyncio.current_task()
            requested = task.cancelling() if task is not None else 0
            await super().send_packed_command(command, check_health)
            if task is not None and task.cancelling() > requested:
                await self.disconnect(nowait=True)
                raise asyncio.CancelledError

    CancelSafe.__name__ = CancelSafe.__qualname__ = f"CancelSafe{base.__name__}"
    _MADE[base] = CancelSafe
    return CancelSafe


def text_of(value: Any) -> str:
    """A Redis answer as text: redis-py returns bytes unless the client decodes responses."""
    return value.decode() if isinstance(value, bytes) else str(value)
