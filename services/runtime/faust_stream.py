"""faust's stream with a `take_events` that sleeps while no record comes.

Why: faust's `take_events(max_, within)` wakes every `within` seconds whether records came or not,
to hand over what its buffer holds. With leadpipe's 5 ms batch window that is 200 wake-ups a second
per agent: about half of an idle worker's CPU (docs/performance.md, sixth pass). This copy of
faust-streaming 0.15's method (BSD-3-Clause) waits for the first record of a batch without a
timeout, then up to `within` for the rest; acks, the buffer's hand-over and the size limit are
faust's, unchanged. A batch's first record now waits the whole window (5 ms) instead of until the
next tick (2.5 ms on average). The same change as a patch for upstream: docs/upstream/.

leadpipe's own addition, not for upstream: with a `window` (services/runtime/batch_window.py) the
wait for the rest of a batch follows the agent's load instead of a fixed `within`; the stream tells
the window how long each batch was handled.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Sequence
from typing import Any, cast

import faust
from faust.streams import _tracks_buffer_agen
from faust.types import ChannelT, EventT
from mode import Seconds, want_seconds
from mode.utils.aiter import aiter
from mode.utils.futures import notify

from services.runtime.batch_window import AdaptiveWindow


class LeadpipeStream(faust.Stream):  # type: ignore[type-arg]  # generic only in faust's stubs
    @_tracks_buffer_agen
    async def take_events(  # noqa: PLR0915  # faust's method, kept close to it for upstream
        self, max_: int, within: Seconds, window: AdaptiveWindow | None = None
    ) -> AsyncGenerator[Sequence[EventT[Any]], None]:
        """Batches of up to `max_` events: each yielded `within` seconds (or `window.seconds`) after
        its first record arrived, or at once when full. Events are acknowledged after the batch's
        loop body."""
        buffer: list[Any] = []
        events: list[EventT[Any]] = []
        buffer_full = asyncio.Event()
        buffer_consumed = asyncio.Event()
        buffer_started = asyncio.Event()  # the change for upstream: set by a batch's first record
        timeout = want_seconds(within) if within else None
        handled_at: float | None = None  # when the loop body of the batch before ended
        buffer_consuming: asyncio.Future[None] | None = None
        channel_it = aiter(self.channel)

        async def add_to_buffer(value: Any) -> Any:
            try:
                nonlocal buffer_consuming
                if buffer_consuming is not None:  # the batch before is being handed over
                    try:
                        await buffer_consuming
                    finally:
                        buffer_consuming = None
                buffer.append(value)
                event = self.current_event
                if event is None:
                    raise RuntimeError("Take buffer found current_event is None")
                events.append(event)
                buffer_started.set()
                if len(buffer) >= max_:
                    buffer_full.set()
                    buffer_consumed.clear()
                    await self.wait(buffer_consumed)  # type: ignore[arg-type]
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.log.exception("Error adding to take buffer: %r", exc)
                await self.crash(exc)
            return value

        stream_enable_acks = self.enable_acks
        self.enable_acks = False  # this method acks, after the batch was handled
        self.add_processor(add_to_buffer)
        self._enable_passive(cast(ChannelT[Any], channel_it))
        try:
            while not self.should_stop:
                if not buffer:
                    await self.wait_for_stopped(buffer_started)  # type: ignore[arg-type]
                    continue
                wait = timeout if window is None else window.seconds
                await self.wait_for_stopped(buffer_full, timeout=wait)  # type: ignore[arg-type]
                buffer_consuming = self.loop.create_future()
                handed_at = time.monotonic()
                try:
                    yield list(events)
                finally:
                    if window is not None:
                        now = time.monotonic()
                        if handled_at is not None:
                            window.observe(now - handed_at, now - handled_at)
                        handled_at = now
                    buffer.clear()
                    buffer_started.clear()
                    for event in events:
                        await self.ack(event)
                    events.clear()
                    notify(buffer_consuming)
                    buffer_full.clear()
                    buffer_consumed.set()
        finally:
            self.enable_acks = stream_enable_acks
            self._processors.remove(add_to_buffer)
