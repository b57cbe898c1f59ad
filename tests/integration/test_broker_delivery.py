"""The benchmark's delivery probe against the real broker (bench/cases/broker.py)."""

from __future__ import annotations

import pytest

from bench.case import BenchContext
from bench.cases import broker as delivery
from bench.kafka import TopicReader, create_topics
from services.devstack.broker import EmbeddedBroker


async def test_every_record_is_timed_once_from_send_to_arrival(broker: EmbeddedBroker, suffix: str) -> None:
    topic = f"delivery{suffix}"
    await create_topics(broker.bootstrap_servers, [topic], 4)
    seconds = await delivery.delivery_seconds(broker.bootstrap_servers, topic, 4, fetch_wait_ms=10)
    assert len(seconds) == delivery.SAMPLES
    assert all(0 <= s < 1.0 for s in seconds), (min(seconds), max(seconds))


async def test_growth_measures_the_broker_once_per_stored_batch_count(
    bench_context: BenchContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(delivery, "STORED_BATCHES", (0, 40))
    monkeypatch.setattr(delivery, "GROWTH_WINDOW_SECONDS", 0.5)
    ctx = bench_context
    result = await delivery.BrokerGrowth().run(ctx)
    assert list(result.extra) == ["stored_0", "stored_40"]
    assert result.broker_cpu_seconds is not None and result.broker_cpu_seconds > 0
    assert 0.5 * delivery.GROWTH_RATE <= result.events_per_second <= 1.1 * delivery.GROWTH_RATE
    topic = f"bench.growth{ctx.suffix(result.case)}"
    async with TopicReader(ctx.bootstrap_servers, topic, 2) as reader:
        stored = [r for r in await reader.poll(2.0) if r.partition == 1]
    assert len(stored) >= 40  # the small batches, then the window's records
