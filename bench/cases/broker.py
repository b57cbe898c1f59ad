"""The broker's own costs, measured with the plain clients (no leadpipe code).

`broker.delivery`: how long the broker takes to hand a new record to a waiting consumer.

Why: every hop of the pipeline is a consumer waiting on a fetch. Kafka answers a held fetch as soon
as enough data arrived; Tansu was seen answering later, in proportion to the fetch wait, with no
leadpipe code involved (docs/performance.md, tenth pass). This case measures that floor with the
plain clients: one producer writes a record every 10 ms (awaiting each acknowledgement), one
aiokafka consumer (no group, every partition assigned) reads them, and a record's delivery is its
arrival minus its timestamp (set by the producer at send), once per fetch wait in `FETCH_WAITS_MS`
(50 is the services' `LEADPIPE_FETCH_MAX_WAIT_MS`).

`broker.growth`: what one following consumer costs the broker as a topic's partitions fill with
stored batches. Tansu's CPU per fetched record grew with the batches a partition holds, not with its
records (docs/performance.md, eleventh pass): every produce request adds a batch per partition it
writes, and a pipeline at 1,000 events/s adds hundreds a second. The case writes small batches
(one record per partition per request) up to each count in `STORED_BATCHES`, then has a producer
write `GROWTH_RATE` records/s in bursts while one consumer follows at the services' fetch wait, and
reports the broker's CPU over that window.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass

import psutil  # type: ignore[import-untyped,unused-ignore]
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from bench.case import BenchContext, CaseResult, OwnInput, register
from bench.kafka import create_topics
from bench.latency import LatencySummary
from bench.measure import cpu_seconds

FETCH_WAITS_MS = (50, 10)
SAMPLES = 300
INTERVAL_SECONDS = 0.01
RECORD = b"x" * 500


@asynccontextmanager
async def plain_clients(
    bootstrap: str, topic: str, partitions: int, fetch_wait_ms: int
) -> AsyncIterator[tuple[AIOKafkaProducer, AIOKafkaConsumer, list[TopicPartition]]]:
    """A producer that does not linger and a consumer with no group, assigned every partition of
    `topic` at its end and waiting `fetch_wait_ms` on each fetch."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, fetch_max_wait_ms=fetch_wait_ms)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
    await consumer.start()
    await producer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_end(*tps)
        yield producer, consumer, tps
    finally:
        await producer.stop()
        await consumer.stop()


async def delivery_seconds(bootstrap: str, topic: str, partitions: int, fetch_wait_ms: int) -> list[float]:
    """Each record's arrival at a waiting consumer minus its send time, `SAMPLES` records."""
    async with plain_clients(bootstrap, topic, partitions, fetch_wait_ms) as (producer, consumer, _):
        await consumer.getmany(timeout_ms=200)  # positions known: the first fetch is held, not a lookup
        seconds: list[float] = []

        async def read() -> None:
            while len(seconds) < SAMPLES:
                batches = await consumer.getmany(timeout_ms=1000)
                arrived = time.time()
                seconds.extend(arrived - r.timestamp / 1000 for rs in batches.values() for r in rs)

        reading = asyncio.create_task(read())
        for n in range(SAMPLES):
            await producer.send_and_wait(topic, RECORD, key=str(n).encode())
            await asyncio.sleep(INTERVAL_SECONDS)
        await asyncio.wait_for(reading, timeout=30)
        return seconds[:SAMPLES]


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

STORED_BATCHES = (0, 1_000, 5_000)  # per partition, before each window (20,000 saturated a core)
GROWTH_RATE = 1_000  # records/s while the broker is measured
GROWTH_WINDOW_SECONDS = 5.0
GROWTH_FETCH_WAIT_MS = 50


async def store_small_batches(producer: AIOKafkaProducer, topic: str, partitions: int, count: int) -> None:
    """`count` more batches in each partition: one record per partition per produce request."""
    for _ in range(count):
        sent = [await producer.send(topic, RECORD, partition=p) for p in range(partitions)]
        await asyncio.gather(*sent)


async def follow_and_measure(
    producer: AIOKafkaProducer, consumer: AIOKafkaConsumer, topic: str, broker: psutil.Process
) -> tuple[float, int]:
    """The broker's CPU seconds and the records written while `GROWTH_RATE` records/s (bursts of
    1/100 of it every 10 ms) are written and followed for `GROWTH_WINDOW_SECONDS`."""
    stop = asyncio.Event()

    async def follow() -> None:
        while not stop.is_set():
            await consumer.getmany(timeout_ms=200)

    following = asyncio.create_task(follow())
    before = cpu_seconds(broker) or 0.0
    started, written = time.monotonic(), 0
    while time.monotonic() - started < GROWTH_WINDOW_SECONDS:
        for _ in range(GROWTH_RATE // 100):
            await producer.send(topic, RECORD)
            written += 1
        await asyncio.sleep(0.01)
    await producer.flush()
    after = cpu_seconds(broker) or 0.0
    stop.set()
    await following
    return after - before, written


@dataclass(frozen=True)
class BrokerGrowth(OwnInput):
    name: str = "broker.growth"
    description: str = "the broker's CPU for one following consumer as partitions fill with batches"

    async def run(self, ctx: BenchContext) -> CaseResult:
        if ctx.broker_pid is None:
            raise RuntimeError("broker.growth needs the broker's process (the embedded broker)")
        broker = psutil.Process(ctx.broker_pid)
        topic = f"bench.growth{ctx.suffix(self.name)}"
        await create_topics(ctx.bootstrap_servers, [topic], ctx.partitions)
        figures: dict[str, str] = {}
        extra: dict[str, object] = {}
        cpu, records = 0.0, 0
        clients = plain_clients(ctx.bootstrap_servers, topic, ctx.partitions, GROWTH_FETCH_WAIT_MS)
        async with clients as (producer, consumer, tps):
            stored = 0
            for target in STORED_BATCHES:
                await store_small_batches(producer, topic, ctx.partitions, target - stored)
                stored = target
                await consumer.seek_to_end(*tps)
                broker_seconds, written = await follow_and_measure(producer, consumer, topic, broker)
                share = broker_seconds / GROWTH_WINDOW_SECONDS
                per_record = 1e6 * broker_seconds / written
                figures[f"broker CPU at {GROWTH_RATE:,} records/s, {target:,} batches per partition"] = (
                    f"{share:.0%} of a core, {per_record:,.0f} µs per record"
                )
                extra[f"stored_{target}"] = {"broker_cpu_share": share, "broker_us_per_record": per_record}
                cpu += broker_seconds
                records += written
        return CaseResult(
            case=self.name,
            description=self.description,
            events=records,
            seconds=GROWTH_WINDOW_SECONDS * len(STORED_BATCHES),  # the windows, not the filling
            cpu_seconds=0.0,
            broker_cpu_seconds=cpu,
            extra=extra,
            figures=figures,
        )


register(BrokerGrowth())
