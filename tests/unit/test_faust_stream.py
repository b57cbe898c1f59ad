"""LeadpipeStream's `take_events` takes what its channel holds in bulk (services/runtime/faust_stream.py)
and keeps faust's stream loop's rules: events from before a rebalance are acknowledged and left out,
the others are tracked until their batch was handled and acknowledged after it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Sequence
from pathlib import Path
from typing import Any

import pytest
from faust.types import TP, EventT
from faust.types.tuples import ConsumerMessage

from services.runtime.faust_stream import LeadpipeStream
from services.runtime.faust_transport import LeadpipeApp
from services.runtime.settings import ServiceSettings
from services.runtime.stream_app import faust_app

TOPIC = "leads.x"


@pytest.fixture
def app(tmp_path: Path) -> LeadpipeApp:
    app = faust_app("t", ServiceSettings(data_dir=str(tmp_path), web_port=6066))
    app.topics._acking_topics.add(TOPIC)  # as an agent's subscription does
    app.flow_control.resume()  # as the end of the first rebalance does
    return app


def put(
    app: LeadpipeApp, stream: LeadpipeStream, offsets: range, generation: int | None = None
) -> list[EventT[Any]]:
    """Events as faust's conductor hands them to the stream's channel: one reference each."""
    tp = TP(TOPIC, 0)
    generation = app.consumer_generation_id if generation is None else generation
    events = []
    for offset in offsets:
        message = ConsumerMessage(
            TOPIC, 0, offset, 0.0, 0, None, b"k", b"v", None, tp=tp, generation_id=generation
        )
        message.incref()
        event = app.create_event(b"k", b"v", None, message)
        stream.channel.queue.put_nowait(event)
        events.append(event)
    return events


def offsets(batch: Sequence[EventT[Any]]) -> list[int]:
    return [event.message.offset for event in batch]


def take(stream: LeadpipeStream, max_: int, within: float) -> AsyncGenerator[Sequence[EventT[Any]], None]:
    batches: AsyncGenerator[Sequence[EventT[Any]], None] = stream.take_events(max_, within=within)
    return batches


async def test_batches_come_in_order_up_to_their_size_and_are_acknowledged_after_their_body(
    app: LeadpipeApp,
) -> None:
    stream = app.stream(app.channel())
    assert isinstance(stream, LeadpipeStream)
    events = put(app, stream, range(250))
    seen: list[list[int]] = []
    batches = take(stream, 100, within=0.05)
    async with asyncio.timeout(10):
        async for batch in batches:
            seen.append(offsets(batch))
            handled = [event.message for event in batch]
            # while its batch is handled, a record is tracked (a rebalance waits for it) and not acked
            assert all(m.tracked and m in app.consumer.unacked and not m.acked for m in handled)
            if sum(map(len, seen)) == 250:
                break
        await batches.aclose()  # acknowledges the last batch, as the agent's next loop would
    assert seen == [list(range(100)), list(range(100, 200)), list(range(200, 250))]
    assert all(event.message.acked for event in events)
    assert not app.consumer.unacked
    assert app.consumer._acked[TP(TOPIC, 0)] == list(range(250))  # what a commit reads


async def test_a_record_from_before_a_rebalance_is_acknowledged_and_left_out(app: LeadpipeApp) -> None:
    stream = app.stream(app.channel())
    stale = put(app, stream, range(3), generation=app.consumer_generation_id - 1)
    put(app, stream, range(3, 6))
    batches = take(stream, 100, within=0.05)
    async with asyncio.timeout(10):
        batch = await anext(batches)
        await batches.aclose()
    assert offsets(batch) == [3, 4, 5]
    assert all(event.message.acked and not event.message.tracked for event in stale)


async def test_records_taken_while_the_flow_is_suspended_are_left_out(app: LeadpipeApp) -> None:
    stream = app.stream(app.channel())
    app.flow_control.suspend()
    suspended = put(app, stream, range(3))
    batches = take(stream, 100, within=0.05)
    first = asyncio.ensure_future(anext(batches))
    async with asyncio.timeout(10):
        while not all(event.message.acked for event in suspended):  # noqa: ASYNC110 - no event to wait on
            await asyncio.sleep(0.01)
        app.flow_control.resume()
        put(app, stream, range(3, 5))
        batch = await first
        await batches.aclose()
    assert offsets(batch) == [3, 4]


@pytest.mark.parametrize("max_", [5, 10], ids=["full batch", "batch the window closed"])
async def test_records_that_come_while_a_batch_is_handled_wait_for_the_next(
    app: LeadpipeApp, max_: int
) -> None:
    """None is added to the batch being handled (its records are acknowledged after it), whether it
    was handed over full or when its window closed."""
    stream = app.stream(app.channel())
    put(app, stream, range(5))
    batches = take(stream, max_, within=0.05)
    async with asyncio.timeout(10):
        first = await anext(batches)
        put(app, stream, range(5, 8))
        await asyncio.sleep(0.1)  # the stream takes them from its channel meanwhile
        assert offsets(first) == [0, 1, 2, 3, 4]
        second = await anext(batches)
        await batches.aclose()
    assert offsets(second) == [5, 6, 7]


async def test_a_stream_with_processors_is_refused(app: LeadpipeApp) -> None:
    """faust's stream loop ran them before the buffer; this one would skip them silently."""
    stream = app.stream(app.channel())
    stream.add_processor(lambda value: value)
    with pytest.raises(RuntimeError, match="does not run stream processors"):
        await anext(take(stream, 5, within=0.05))


async def test_a_channel_ended_on_shutdown_ends_the_take_without_a_crash(app: LeadpipeApp) -> None:
    """faust ends a channel by throwing StopAsyncIteration into its queue on shutdown; its stream
    loop returns on it, so the bulk take does too, instead of logging an error and crashing."""
    stream = app.stream(app.channel())
    put(app, stream, range(2))
    batches = take(stream, 5, within=0.05)
    assert offsets(await anext(batches)) == [0, 1]
    stream.channel.queue._throw(StopAsyncIteration())
    await asyncio.sleep(0.05)  # the drain task takes the error and ends
    assert stream._crash_reason is None
    await batches.aclose()
