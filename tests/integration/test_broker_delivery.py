"""The benchmark's delivery probe against the real broker (bench/cases/broker.py)."""

from __future__ import annotations

from bench.cases import broker as delivery
from bench.kafka import create_topics
from services.devstack.broker import EmbeddedBroker


async def test_every_record_is_timed_once_from_send_to_arrival(broker: EmbeddedBroker, suffix: str) -> None:
    topic = f"delivery{suffix}"
    await create_topics(broker.bootstrap_servers, [topic], 4)
    seconds = await delivery.delivery_seconds(broker.bootstrap_servers, topic, 4, fetch_wait_ms=10)
    assert len(seconds) == delivery.SAMPLES
    assert all(0 <= s < 1.0 for s in seconds), (min(seconds), max(seconds))
