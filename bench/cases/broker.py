"""`broker.delivery`: how long the broker takes to hand a new record to a waiting consumer.

Why: every hop of the pipeline is a consumer waiting on a fetch. Kafka answers a held fetch as soon
as enough data arrived; Tansu was seen answering later, in proportion to the fetch wait, with no
leadpipe code involved (docs/performance.md, tenth pass). This case measures that floor with the
plain clients: one producer writes a record every 10 ms (awaiting each acknowledgement), one
aiokafka consumer (no group, every partition assigned) reads them, and a record's delivery is its
arrival minus its timestamp (set by the producer at send), once per fetch wait in `FETCH_WAITS_MS`
(50 is the services' `LEADPIPE_FETCH_MAX_WAIT_MS`).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import asdict, dataclass

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from bench.case import BenchContext, CaseResult, OwnInput, register
from bench.kafka import create_topics
from bench.latency import LatencySummary

FETCH_WAITS_MS = (50, 10)
SAMPLES = 300
INTERVAL_SECONDS = 0.01


async def delivery_seconds(bootstrap: str, topic: str, partitions: int, fetch_wait_ms: int) -> list[float]:
    """Each record's arrival at a waiting consumer minus its send time, `SAMPLES` records."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, fetch_max_wait_ms=fetch_wait_ms)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
    await consumer.start()
    await producer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_end(*tps)
        await consumer.getmany(timeout_ms=200)  # positions known: the first fetch is held, not a lookup
        seconds: list[float] = []

        async def read() -> None:
            while len(seconds) < SAMPLES:
                batches = await consumer.getmany(timeout_ms=1000)
                arrived = time.time()
                seconds.extend(arrived - r.timestamp / 1000 for rs in batches.values() for r in rs)

        reading = asyncio.create_task(read())
        for n in range(SAMPLES):
            await producer.send_and_wait(topic, b"x" * 500, key=str(n).encode())
            await asyncio.sleep(INTERVAL_SECONDS)
        await asyncio.wait_for(reading, timeout=30)
        return seconds[:SAMPLES]
    finally:
        await producer.stop()
        await consumer.stop()


@dataclass(frozen=True)
class BrokerDelivery(OwnInput):
    name: str = "broker.delivery"
    description: str = "a new record's wait for a plain consumer's held fetch, no leadpipe code"

    async def run(self, ctx: BenchContext) -> CaseResult:
        figures: dict[str, str] = {}
        extra: dict[str, object] = {}
        started = time.perf_counter()
        cpu_started = time.process_time()
        for wait in FETCH_WAITS_MS:
            topic = f"bench.delivery{ctx.suffix(self.name)}-{wait}"
            await create_topics(ctx.bootstrap_servers, [topic], ctx.partitions)
            summary = LatencySummary.of(
                await delivery_seconds(ctx.bootstrap_servers, topic, ctx.partitions, wait)
            )
            figures[f"delivery p50 / p95 / p99 / max (s), fetch wait {wait} ms"] = summary.text()
            extra[f"fetch_wait_{wait}_ms"] = asdict(summary)
        return CaseResult(
            case=self.name,
            description=self.description,
            events=SAMPLES * len(FETCH_WAITS_MS),
            seconds=time.perf_counter() - started,
            cpu_seconds=time.process_time() - cpu_started,
            extra=extra,
            figures=figures,
        )


register(BrokerDelivery())
