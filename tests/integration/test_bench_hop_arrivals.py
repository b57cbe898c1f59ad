"""The speed-to-lead case's hop times, read once the run is over (bench/cases/speed_to_lead.py)."""

from __future__ import annotations

from aiokafka import AIOKafkaProducer

from bench.case import BenchContext
from bench.cases.speed_to_lead import HOP_TOPICS, hop_arrivals
from bench.kafka import create_topics
from services.runtime.settings import ServiceSettings


async def test_each_lead_gets_its_first_records_broker_time_on_every_hop(
    bench_context: BenchContext, suffix: str
) -> None:
    settings = ServiceSettings(topic_suffix=suffix)
    ctx = bench_context
    topics = [settings.topic(t) for t in HOP_TOPICS]
    await create_topics(ctx.bootstrap_servers, topics, 2)
    producer = AIOKafkaProducer(bootstrap_servers=ctx.bootstrap_servers)
    await producer.start()
    try:
        for hop, topic in enumerate(topics):
            for n in range(50):  # the background, then each hand-raiser twice
                await producer.send_and_wait(topic, b"{}", key=f"background-{n}".encode(), timestamp_ms=n)
            for lead in ("raiser-a", "raiser-b"):
                for repeat in (0, 1):
                    at = 1_000_000 * (hop + 1) + 1_000 * repeat + (lead == "raiser-b")
                    await producer.send_and_wait(topic, b"{}", key=lead.encode(), timestamp_ms=at)
    finally:
        await producer.stop()

    arrived = await hop_arrivals(ctx, settings, {"raiser-a", "raiser-b", "never-posted"}, quiet_seconds=0.5)

    assert set(arrived) == {t.value for t in HOP_TOPICS}
    for hop, topic in enumerate(HOP_TOPICS):  # the first record of each, in seconds; no background lead
        assert arrived[topic.value] == {"raiser-a": 1_000 * (hop + 1), "raiser-b": 1_000 * (hop + 1) + 0.001}
