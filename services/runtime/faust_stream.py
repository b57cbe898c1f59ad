"""faust's stream with a `take_events` that sleeps while no record comes.

Why: faust's `take_events(max_, within)` wakes every `within` seconds whether records came or not,
to hand over what its buffer holds. With leadpipe's 5 ms batch window that is 200 wake-ups a second
per agent: about half of an idle worker's CPU (docs/performance.md, sixth pass). This copy of
faust-streaming 0.15's method (BSD-3-Clause) waits for the first record of a batch without a
timeout, then up to `within` for the rest; acks, the buffer's hand-over and the size limit are
faust's, unchanged. A batch's first record now waits the whole window (5 ms) instead of until the
next tick (2.5 ms on average). The same change as a patch for upstream: docs/upstream/.

The batch is also filled straight from the channel's queue, everything it holds at once, instead
of by faust's stream loop, which takes one event per turn of the event loop (an `asyncio.sleep(0)`,
sensor calls, a context variable, each processor awaited) and hands it to a buffering processor:
enrich alone 265-342 -> 249-255 µs CPU per record (docs/performance.md, seventeenth pass). It keeps
the loop's rules: an event from before the last rebalance, or taken while the flow is suspended, is
acknowledged and left out, and the others are tracked as unacknowledged until their batch was
handled, so a rebalance waits for them. Stream processors are not run (leadpipe adds none; a stream
with one is refused). As a patch for upstream (docs/upstream/, `take-bulk`), a stream with
processors takes faust's own path instead.

leadpipe's own addition, not for upstream as it is: with a `window`
(services/runtime/batch_window.py) the wait for the rest of a batch follows the agent's load
instead of a fixed `within`; the stream tells the window how long each batch was handled.
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
        events: list[EventT[Any]] = []  # the batch being filled
        buffer_full = asyncio.Event()
        buffer_consumed = asyncio.Event()
        buffer_started = asyncio.Event()  # the change for upstream: set by a batch's first record
        timeout = want_seconds(within) if within else None
        handled_at: float | None = None  # when the loop body of the batch before ended
        buffer_consuming: asyncio.Future[None] | None = None

        async def add_to_buffer(taken: list[EventT[Any]]) -> None:
            nonlocal buffer_consuming
            if buffer_consuming is not None:  # the batch before is being handed over
                try:
                    await buffer_consuming
                finally:
                    buffer_consuming = None
            for event in taken:
                events.append(event)
                buffer_started.set()
                if len(events) >= max_:
                    buffer_full.set()
                    buffer_consumed.clear()
                    await self.wait(buffer_consumed)  # type: ignore[arg-type]

        async def drain() -> None:
            """leadpipe's, in place of faust's passive stream loop and its `add_to_buffer` processor:
            takes every event the channel's queue holds at once (see `_usable`)."""
            queue = channel.queue
            try:
                while not self.should_stop:
                    taken = [await queue.get()]
                    while not queue.empty():
                        taken.append(queue.get_nowait())
                    usable = await self._usable(taken)
                    if usable:
                        await add_to_buffer(usable)
            except asyncio.CancelledError:
                raise
            except StopAsyncIteration:  # faust ends a channel so on shutdown; its stream loop returns
                return
            except Exception as exc:
                self.log.exception("Error adding to take buffer: %r", exc)
                await self.crash(exc)
            finally:
                self._channel_stop_iteration(channel)

        if self._processors:
            raise RuntimeError(f"{type(self).__name__}.take_events does not run stream processors")
        await self.maybe_start()  # as faust's stream loop does on its first record
        stream_enable_acks = self.enable_acks
        self.enable_acks = False  # this method acks, after the batch was handled
        channel = cast(ChannelT[Any], self.channel)  # faust's stream loop reads this one too
        draining = self.add_future(drain())
        try:
            while not self.should_stop:
                if not events:
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
                    buffer_started.clear()
                    for event in events:
                        await self.ack(event)
                    events.clear()
                    notify(buffer_consuming)
                    buffer_full.clear()
                    buffer_consumed.set()
        finally:
            draining.cancel()
            self.enable_acks = stream_enable_acks

    async def _usable(self, taken: list[Any]) -> list[EventT[Any]]:
        """What faust's stream loop does with each event before its processors, for a batch: an
        event from before the last rebalance (or taken while the flow is suspended) is acknowledged
        and left out, the others are tracked as unacknowledged on acking topics. Each partition's
        inbound time is noted as faust's `on_stream_event_in` sensor would: the consumer's liveness
        check reads it, and without it says every partition with a record in flight "has not started
        processing" once `stream_processing_timeout` passed since the worker started."""
        app = self.app
        consumer = app.consumer
        add_unacked, on_message_in = consumer.unacked.add, self._on_message_in
        acking_topics, generation = app.topics.acking_topics, app.consumer_generation_id
        active = app.flow_control.is_active()
        inbound, now = app.monitor.stream_inbound_time, time.monotonic()
        usable: list[EventT[Any]] = []
        for event in taken:
            if not isinstance(event, EventT):  # faust's loop found no current event for it
                raise RuntimeError(f"take_events found {type(event).__name__} on its channel, not an event")
            message = event.message
            if not active or message.generation_id != generation:
                await self.ack(event)
                continue
            if message.topic in acking_topics and not message.tracked:
                message.tracked = True
                add_unacked(message)
                on_message_in(message.tp, message.offset, message)
            self.events_total += 1
            inbound[message.tp] = now
            usable.append(event)
        return usable
