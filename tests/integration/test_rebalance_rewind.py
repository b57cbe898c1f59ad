"""A rebalance rewinds every partition to its committed offset, including one with no commit yet.

faust drops the records it fetched but had not handed to an agent when a rebalance starts and asks
aiokafka to seek back to the committed offsets. aiokafka's `seek_to_committed` leaves a partition
without a committed offset where it was, past the dropped records: the nurture kill soak lost 140
e-mails that way. `rewind_to_committed` (services/runtime/faust_transport.py) seeks it back too.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import OffsetAndMetadata

from services.devstack.broker import EmbeddedBroker
from services.runtime.faust_transport import rewind_to_committed
from services.runtime.topics import ensure_topics

pytestmark = pytest.mark.integration

PER_PARTITION = 5


@pytest.fixture
async def read_ahead(broker: EmbeddedBroker, suffix: str) -> AsyncIterator[AIOKafkaConsumer]:
    """A group member that fetched all of two partitions, with offset 3 committed on the first only."""
    topic = f"rewind{suffix}"
    await ensure_topics(broker.bootstrap_servers, [topic], partitions=2)
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap_servers, acks="all")
    await producer.start()
    try:
        for partition in (0, 1):
            for n in range(PER_PARTITION):
                await producer.send_and_wait(topic, f"{partition}-{n}".encode(), partition=partition)
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(
        bootstrap_servers=broker.bootstrap_servers,
        group_id=f"rewind{suffix}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=50,
    )
    await consumer.start()
    try:
        first, second = TopicPartition(topic, 0), TopicPartition(topic, 1)
        consumer.assign([first, second])
        await consumer.commit({first: OffsetAndMetadata(3, "")})
        fetched = 0
        while fetched < 2 * PER_PARTITION - 3:  # the first partition starts at its commit
            batches = await consumer.getmany(timeout_ms=1000)
            fetched += sum(len(records) for records in batches.values())
        assert await consumer.position(first) == await consumer.position(second) == PER_PARTITION
        yield consumer
    finally:
        await consumer.stop()


async def test_aiokafka_alone_leaves_a_partition_without_a_commit_past_what_it_fetched(
    read_ahead: AIOKafkaConsumer,
) -> None:
    """The behaviour the runtime works around: if aiokafka ever changes it, this says so."""
    first, second = sorted(read_ahead.assignment())
    committed = await read_ahead.seek_to_committed()
    assert committed == {first: 3, second: None}
    assert await read_ahead.position(first) == 3
    assert await read_ahead.position(second) == PER_PARTITION  # the fetched records are skipped


async def test_rewind_seeks_a_partition_without_a_commit_back_to_its_start(
    read_ahead: AIOKafkaConsumer,
) -> None:
    first, second = sorted(read_ahead.assignment())
    committed = await rewind_to_committed(read_ahead, "earliest")
    assert committed == {first: 3, second: None}
    assert await read_ahead.position(first) == 3
    assert await read_ahead.position(second) == 0
    replayed: list[bytes] = []
    while len(replayed) < 2 * PER_PARTITION - 3:
        batches = await read_ahead.getmany(timeout_ms=1000)
        replayed += [record.value for records in batches.values() for record in records if record.value]
    expected = [f"0-{n}" for n in range(3, PER_PARTITION)] + [f"1-{n}" for n in range(PER_PARTITION)]
    assert sorted(replayed) == sorted(value.encode() for value in expected)


async def test_rewind_with_latest_reset_seeks_to_the_end(
    broker: EmbeddedBroker, read_ahead: AIOKafkaConsumer
) -> None:
    first, second = sorted(read_ahead.assignment())
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap_servers, acks="all")
    await producer.start()
    try:  # written after the fetch: the end is past the position
        for _ in range(2):
            await producer.send_and_wait(second.topic, b"later", partition=second.partition)
    finally:
        await producer.stop()
    await rewind_to_committed(read_ahead, "latest")
    assert await read_ahead.position(first) == 3
    assert await read_ahead.position(second) == PER_PARTITION + 2
