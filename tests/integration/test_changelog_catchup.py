"""A table's recovery reaches the changelog's real end, even when the broker under-reports it.

Tansu answers ListOffsets(latest) with the base offset of a partition's last batch + 1, so a
changelog that ends in one multi-record batch looks almost empty to faust. The runtime's own read of
the changelog (services/runtime/changelog_catchup.py) must hand the agents the whole table anyway.
"""

from __future__ import annotations

import asyncio

import faust
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaConnectionError

from services.devstack.broker import EmbeddedBroker
from services.devstack.processes import free_port
from services.runtime.settings import ServiceSettings
from services.runtime.stream_app import StreamService
from services.runtime.topics import ensure_topics
from tests.eventually import stopped
from tests.tables import TABLE_FORMS

pytestmark = pytest.mark.integration

KEYS = 40


async def write_one_batch(
    bootstrap: str, topic: str, records: list[tuple[bytes, bytes | None]], partition: int = 0
) -> None:
    """All records in one produce batch to `partition`: sent without waiting, then flushed together."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=500)
    await producer.start()
    try:
        sent = [await producer.send(topic, key=k, value=v, partition=partition) for k, v in records]
        await producer.flush()
        await asyncio.gather(*sent)
    finally:
        await producer.stop()


async def reported_end(bootstrap: str, topic: str) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        return int((await consumer.end_offsets([tp]))[tp])
    finally:
        await consumer.stop()


@pytest.mark.parametrize(
    ("form", "first_read_fails"), [(form, False) for form in TABLE_FORMS] + [("bytes-keys", True)]
)
async def test_recovery_reads_to_the_real_end_of_an_under_reported_changelog(
    broker: EmbeddedBroker, suffix: str, form: str, first_read_fails: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With `first_read_fails`, the table's own read before faust's recovery breaks: faust's recovery
    restores up to the end the broker reports, and the read after it the rest."""
    settings = ServiceSettings(
        broker_url=broker.url,
        topic_suffix=f"{suffix}-{form}-{first_read_fails}",
        topic_partitions=1,
        web_port=free_port(),
        broker_session_timeout=6,
    )
    service = StreamService("catchup", settings)
    table = service.table("state", default=None, partitions=1, **TABLE_FORMS[form])
    changelog = table.changelog_topic.get_topic_name()
    await ensure_topics(broker.bootstrap_servers, [changelog], 1)

    # what an earlier worker left: KEYS values, one overwritten, one erased (a tombstone)
    records: list[tuple[bytes, bytes | None]] = [(f"k{i}".encode(), f"v{i}".encode()) for i in range(KEYS)]
    records += [(b"k1", b"v1-new"), (b"k0", None)]
    await write_one_batch(broker.bootstrap_servers, changelog, records)
    expected: dict[object, bytes] = {f"k{i}".encode(): f"v{i}".encode() for i in range(2, KEYS)}
    expected[b"k1"] = b"v1-new"
    if form == "str-keys-raw-schema":
        expected = {bytes(key).decode(): value for key, value in expected.items()}  # type: ignore[call-overload]

    seen_when_streams_resume: dict[object, bytes] = {}
    recovered = asyncio.Event()

    async def snapshot() -> None:  # a recovery callback runs after the catch-up, as agents do
        seen_when_streams_resume.update(dict(table.items()))
        recovered.set()

    table.on_recover(snapshot)
    if first_read_fails:
        read = table._read_partitions
        calls = 0

        async def fail_first(partitions: list[int]) -> int:
            nonlocal calls
            calls += 1
            if calls == 1:
                raise KafkaConnectionError("broker gone for the first read")
            return await read(partitions)

        monkeypatch.setattr(table, "_read_partitions", fail_first)

    @service.app.agent(service.topic("leads.interactions"))
    async def idle(stream: faust.StreamT[bytes]) -> None:  # a subscription, so the worker joins
        async for _ in stream:
            pass

    await service.app.start()
    try:
        await asyncio.wait_for(recovered.wait(), timeout=60)
    finally:
        await stopped(service)

    assert seen_when_streams_resume == expected
    if first_read_fails:  # faust stopped at the reported end; the read after it found the rest
        assert table.restored == 0 and table.caught_up > 0
    else:  # the private read restored every record before faust's recovery, which found nothing
        # left (its consistency check passed although the broker under-reports)
        assert (table.restored, table.caught_up) == (len(records), 0)
    print(
        f"\nbroker reported end {await reported_end(broker.bootstrap_servers, changelog)} of {len(records)}"
    )


async def test_a_worker_says_it_consumes_once_its_tables_are_restored_and_its_streams_resumed(
    broker: EmbeddedBroker, suffix: str
) -> None:
    """`consuming` (readyz's consumer_group check) is set when faust ends the rebalance: after the
    tables' reads, faust's recovery and the seek of the stream partitions. faust's own
    `on_rebalance_complete` signal, which set it before, comes ahead of the tables' read after recovery
    (two held fetches, 0.4 s here), so a bench or a probe saw a ready worker that did not consume yet.
    Two tables restore side by side: one whose changelog holds records in two of its four
    partitions, one whose changelog is empty."""
    partitions = 4
    settings = ServiceSettings(
        broker_url=broker.url,
        topic_suffix=f"{suffix}-ready",
        topic_partitions=partitions,
        web_port=free_port(),
        broker_session_timeout=6,
    )
    service = StreamService("ready", settings)
    filled, empty = (
        service.table(name, default=None, partitions=partitions, **TABLE_FORMS["bytes-keys"])
        for name in ("filled", "empty")
    )
    changelogs = [table.changelog_topic.get_topic_name() for table in (filled, empty)]
    await ensure_topics(broker.bootstrap_servers, changelogs, partitions)
    expected: dict[object, bytes] = {}
    for partition in (0, 2):
        records = [(f"p{partition}k{i}".encode(), f"v{i}".encode()) for i in range(KEYS)]
        await write_one_batch(broker.bootstrap_servers, changelogs[0], records, partition)
        expected.update(records)

    @service.app.agent(service.topic("leads.interactions"))
    async def idle(stream: faust.StreamT[bytes]) -> None:  # a subscription, so the worker joins
        async for _ in stream:
            pass

    async def when_ready() -> tuple[bool, bool, dict[object, bytes], dict[object, bytes]]:
        """The worker's state at the first sight of the flag (polled as the worker starts, since
        `app.start()` returns only after the first rebalance)."""
        while not service.consuming():  # noqa: ASYNC110 - polls the flag /readyz reads
            await asyncio.sleep(0.005)
        recovery, consumer = service.app.tables.recovery, service.app.consumer
        return recovery.completed.is_set(), consumer.flow_active, dict(filled.items()), dict(empty.items())

    watch = asyncio.create_task(when_ready())
    await service.app.start()
    try:
        async with asyncio.timeout(60):
            seen = await watch
    finally:
        watch.cancel()
        await stopped(service)

    assert seen == (True, True, expected, {})
