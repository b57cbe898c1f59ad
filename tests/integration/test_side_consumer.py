"""A plain consumer beside a service's agents (services/runtime/side_consumer.py) ends when its
worker stops, even when its handler's library swallowed the stop. Real broker."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from aiokafka import ConsumerRecord

from services.devstack.broker import EmbeddedBroker
from services.runtime.settings import ServiceSettings
from services.runtime.side_consumer import consume_forever
from services.runtime.topics import ensure_topics
from tests.kafka import produce

pytestmark = pytest.mark.integration


async def test_a_stop_the_handler_swallowed_still_ends_the_consumer(
    broker: EmbeddedBroker, suffix: str
) -> None:
    settings = ServiceSettings(broker_url=broker.url, topic_suffix=suffix, broker_session_timeout=6)
    topic = f"side-consumer{suffix}"
    await ensure_topics(broker.bootstrap_servers, [topic], 1)
    handling, handled = asyncio.Event(), asyncio.Event()

    async def handle(batch: list[ConsumerRecord[bytes, bytes]]) -> None:
        handling.set()
        with contextlib.suppress(asyncio.CancelledError):  # as a library that loses a cancel does
            await asyncio.sleep(2)
        handled.set()

    consuming = asyncio.create_task(consume_forever(settings, topic, f"side-consumer{suffix}", handle))
    try:
        await produce(broker.bootstrap_servers, topic, [(b"lead-1", b"{}")])
        await asyncio.wait_for(handling.wait(), 60)
        consuming.cancel()  # the worker's stop, while the record is being handled
        await asyncio.wait({consuming}, timeout=20)
        assert handled.is_set()  # the handler did swallow it
        assert consuming.cancelled(), "the consumer ran on after its stop"
    finally:
        if not consuming.done():  # without the fix: it would consume for ever; end it for the next tests
            consuming.cancel()
            await asyncio.wait({consuming}, timeout=20)
