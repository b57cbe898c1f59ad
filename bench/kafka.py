"""Broker chores for the harness: topics, preloading the input, and counting what reached a sink."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Self

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition

from bench.workload import events
from services.runtime.topics import ensure_topics


async def create_topics(bootstrap: str, names: list[str], partitions: int) -> None:
    await ensure_topics(bootstrap, names, partitions, give_up_after=30)


async def preload(bootstrap: str, topic: str, count: int) -> None:
    """Write the workload once; every case reads it with its own consumer group."""
    await produce(bootstrap, topic, events(count))


async def produce(bootstrap: str, topic: str, records: Iterable[tuple[bytes | None, bytes]]) -> int:
    """Write records fast (big batches, acks from all); returns how many were written."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=20, max_batch_size=256 * 1024
    )
    await producer.start()
    written = 0
    try:
        pending: list[asyncio.Future[object]] = []
        for key, value in records:
            pending.append(await producer.send(topic, value=value, key=key))
            written += 1
            if len(pending) >= 5000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return written


class TopicReader:
    """Every record of a topic from the beginning, with no group: new records on each `poll`.

    `fetch_max_wait_ms` is aiokafka's unless given: Kafka answers a held fetch when a record arrives,
    Tansu after about half the wait (docs/performance.md, tenth pass), so on Tansu a reader that
    follows a live topic waits up to half its fetch wait for each new record."""

    def __init__(self, bootstrap: str, topic: str, partitions: int, *, fetch_max_wait_ms: int = 500) -> None:
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            group_id=None,
            enable_auto_commit=False,
            fetch_max_bytes=8 * 1024 * 1024,
            fetch_max_wait_ms=fetch_max_wait_ms,
        )
        self._partitions = [TopicPartition(topic, p) for p in range(partitions)]

    async def __aenter__(self) -> Self:
        await self._consumer.start()
        self._consumer.assign(self._partitions)
        await self._consumer.seek_to_beginning(*self._partitions)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._consumer.stop()

    async def poll(self, wait_seconds: float = 0.05) -> list[ConsumerRecord[bytes, bytes]]:
        batches = await self._consumer.getmany(timeout_ms=int(wait_seconds * 1000), max_records=100_000)
        return [record for records in batches.values() for record in records]


class SinkCounter(TopicReader):
    """How many records reached a topic, by reading it (with no group, from the beginning).

    End offsets would be cheaper, but Tansu reports the base offset of a partition's last batch as
    its end offset, which undercounts by up to a whole batch; the records themselves are the truth.
    """

    def __init__(self, bootstrap: str, topic: str, partitions: int) -> None:
        super().__init__(bootstrap, topic, partitions)
        self._seen = 0

    async def count(self, wait_seconds: float = 0.02) -> int:
        """Records seen so far, after fetching what arrived within `wait_seconds`."""
        self._seen += len(await self.poll(wait_seconds))
        return self._seen
