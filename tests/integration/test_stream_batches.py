"""Batched agents on the real broker: effects and state land where they must (services/runtime/batch.py).

- a state written by a batch goes to the changelog partition of the record that changed it (the
  input's partition), though `take_events` collects records in another task;
- a batch's effects are acknowledged before its state is stored, each on the partition Kafka's
  default partitioner gives its key (as the plain aiokafka producer of the input placed it);
- a key can be deleted outside any stream (a timer) with `CaughtUpTable.delete_at`, where faust's
  own `del table[key]` refuses;
- staged changes go to the changelog straight through the producer (`CaughtUpTable.write`), in the
  bytes faust would write: a new worker's table read from the changelog is the same table.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from typing import Any

import faust
import pytest
from aiokafka import AIOKafkaConsumer

from services.devstack.broker import EmbeddedBroker
from services.devstack.processes import free_port
from services.runtime.batch import Batch, StagedTable, processing
from services.runtime.changelog_catchup import CaughtUpTable
from services.runtime.faust_stream import LeadpipeStream
from services.runtime.settings import ServiceSettings
from services.runtime.stream_app import StreamService
from tests.eventually import stopped
from tests.kafka import produce
from tests.tables import TABLE_FORMS

pytestmark = pytest.mark.integration

PARTITIONS = 4
LEADS = 24


async def read_all(bootstrap: str, topic: str, count: int) -> list[tuple[int, bytes, bytes | None]]:
    """(partition, key, value) of the first `count` records of a topic."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    found: list[tuple[int, bytes, bytes | None]] = []
    try:
        async with asyncio.timeout(60):
            while len(found) < count:
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    found += [(r.partition, r.key or b"", r.value) for r in records]
    finally:
        await consumer.stop()
    return found


def stream_service(
    broker: EmbeddedBroker, name: str, suffix: str | None = None, **overrides: Any
) -> StreamService:
    settings = ServiceSettings(
        broker_url=broker.url,
        topic_suffix=suffix or f".{name}{uuid.uuid4().hex[:8]}",
        topic_partitions=PARTITIONS,
        web_port=free_port(),
        broker_session_timeout=6,
        **overrides,
    )
    return StreamService(name, settings)


async def started(service: StreamService) -> None:
    """Start the app and wait until its partitions are assigned."""
    await service.ensure_topics()
    await service.app.start()
    async with asyncio.timeout(60):
        while not service.consuming():  # noqa: ASYNC110 - a readiness flag, no event
            await asyncio.sleep(0.1)


async def test_a_batch_publishes_first_stores_on_the_input_partition_and_a_timer_can_delete(
    broker: EmbeddedBroker,
) -> None:
    service = stream_service(broker, "batches")
    table = service.table("counts", default=None, key_type=bytes, value_type=bytes, partitions=PARTITIONS)
    source, sink = service.topic("leads.interactions"), service.topic("leads.enriched")
    input_partition: dict[bytes, int] = {}
    acknowledged_before_stored: list[bool] = []
    batches = 0

    @service.app.agent(source)
    async def count(stream: faust.StreamT[bytes]) -> None:
        nonlocal batches
        async for events in service.batches(stream):
            batches += 1
            sent: list[asyncio.Future[object]] = []

            def encode(n: int, sent: list[asyncio.Future[object]] = sent) -> bytes:  # as a state is stored
                acknowledged_before_stored.append(all(future.done() for future in sent))
                return str(n).encode()

            states = StagedTable(table, encode=encode, decode=int)
            batch = Batch(service.outbox(), states)
            for event in events:
                key = bytes(event.key or b"")
                input_partition[key] = event.message.partition
                with processing(event):
                    states.set(key, (states.get(key) or 0) + 1, event)
                    sent.append(await batch.outbox.send(sink, key, event.value))  # type: ignore[arg-type]
            await batch.commit()

    try:
        await started(service)
        keys = [f"lead-{i}".encode() for i in range(LEADS)]
        await produce(broker.bootstrap_servers, source.get_topic_name(), [(k, b"{}") for k in keys * 2])
        async with asyncio.timeout(60):
            while sum(int(table.get(k) or 0) for k in keys) < 2 * LEADS:  # noqa: ASYNC110 - polls a table
                await asyncio.sleep(0.1)

        # outside any stream, faust's own delete cannot tell the partition; delete_at can
        victim = keys[0]
        with pytest.raises(TypeError, match="outside of stream"):
            del table[victim]
        table.delete_at(victim, input_partition[victim])
        assert table.get(victim) is None
    finally:
        await stopped(service)

    assert batches >= 1 and len(acknowledged_before_stored) >= LEADS and all(acknowledged_before_stored)
    published = service.metrics.events_out.labels(service.name, sink.get_topic_name())
    assert published._value.get() == 2 * LEADS  # each acknowledged effect counted once
    changelog = table.changelog_topic.get_topic_name()
    records = await read_all(broker.bootstrap_servers, changelog, LEADS + 1)
    assert len({key for _, key, _ in records}) == LEADS
    for partition, key, _ in records:
        assert partition == input_partition[key], (
            f"{key!r} stored on {partition}, read from {input_partition[key]}"
        )
    assert (input_partition[victim], victim, None) in records  # the tombstone, on the key's partition
    effects = await read_all(broker.bootstrap_servers, sink.get_topic_name(), 2 * LEADS)
    assert {(partition, key) for partition, key, _ in effects} == {(input_partition[k], k) for k in keys}


async def test_an_idle_batched_agent_sleeps_until_a_record_comes(broker: EmbeddedBroker) -> None:
    """faust's `take_events` woke every batch window (5 ms) with nothing to do; LeadpipeStream waits
    for a batch's first record (services/runtime/faust_stream.py) and still delivers every record."""
    service = stream_service(broker, "idle")
    source = service.topic("leads.interactions")
    seen: list[bytes] = []
    waits = 0

    @service.app.agent(source)
    async def collect(stream: faust.StreamT[bytes]) -> None:
        assert isinstance(stream, LeadpipeStream)
        wait_for_stopped = stream.wait_for_stopped

        async def counted(*args: object, **kwargs: object) -> object:
            nonlocal waits
            waits += 1
            return await wait_for_stopped(*args, **kwargs)  # type: ignore[arg-type]

        stream.wait_for_stopped = counted  # type: ignore[method-assign]
        async for events in service.batches(stream):
            seen.extend(bytes(event.key or b"") for event in events)

    async def delivered(count: int) -> None:
        async with asyncio.timeout(60):
            while len(seen) < count:  # noqa: ASYNC110 - polls what the agent collected
                await asyncio.sleep(0.05)

    try:
        await started(service)
        await produce(broker.bootstrap_servers, source.get_topic_name(), [(b"a", b"{}"), (b"b", b"{}")])
        await delivered(2)
        waits = 0
        await asyncio.sleep(1.0)  # idle: faust's take_events would have woken about 200 times
        idle_waits = waits
        await produce(broker.bootstrap_servers, source.get_topic_name(), [(b"c", b"{}")])
        await delivered(3)
    finally:
        await stopped(service)
    assert idle_waits <= 2
    assert sorted(seen) == [b"a", b"b", b"c"]


async def test_a_busy_agent_waits_longer_for_its_batches_and_a_quiet_one_short_again(
    broker: EmbeddedBroker,
) -> None:
    """The batch window follows the agent's load (services/runtime/batch_window.py): an agent whose
    batches keep it busy waits longer for the next one to fill, and after a quiet spell the next
    record waits the shortest again. Every record is still delivered once."""
    service = stream_service(broker, "window", batch_max_records=5)
    source = service.topic("leads.interactions")
    gauge = service.batch_metrics.window
    seen: list[bytes] = []

    @service.app.agent(source)
    async def slow(stream: faust.StreamT[bytes]) -> None:
        async for events in service.batches(stream):
            seen.extend(bytes(event.key or b"") for event in events)
            await asyncio.sleep(0.02)  # handling that keeps the agent busy while records wait

    async def delivered(count: int) -> None:
        async with asyncio.timeout(60):
            while len(seen) < count:  # noqa: ASYNC110 - polls what the agent collected
                await asyncio.sleep(0.02)

    shortest, longest = service.settings.batch_windows
    try:
        await started(service)
        assert gauge._value.get() == shortest
        keys = [b"k%03d" % i for i in range(500)]
        await produce(broker.bootstrap_servers, source.get_topic_name(), [(k, b"{}") for k in keys])
        await delivered(len(keys))
        busy = gauge._value.get()
        await asyncio.sleep(4.0)  # quiet: about four load horizons
        await produce(broker.bootstrap_servers, source.get_topic_name(), [(b"late", b"{}")])
        await delivered(len(keys) + 1)
        await produce(broker.bootstrap_servers, source.get_topic_name(), [(b"later", b"{}")])
        await delivered(len(keys) + 2)
        quiet = gauge._value.get()
    finally:
        await stopped(service)
    assert busy > shortest + 0.5 * (longest - shortest)
    assert quiet < shortest + 0.1 * (longest - shortest)
    assert sorted(seen) == sorted([*keys, b"late", b"later"])


async def test_each_batch_is_counted_with_its_records_and_the_time_of_its_two_phases(
    broker: EmbeddedBroker,
) -> None:
    """`run_batches` reports every batch: how many records it held (`leadpipe_batch_records`) and
    how long handling them and committing took (`leadpipe_batch_seconds`); the commit's time is the
    wait for the broker's acknowledgement of the batch's effects, held back here."""
    service = stream_service(broker, "batchmetrics", batch_max_records=10)
    source, sink = service.topic("leads.interactions"), service.topic("leads.enriched")
    sizes: list[int] = []
    acknowledgement = 0.05  # added to every commit, as a slow broker would

    class HeldBatch(Batch):
        async def commit(self) -> None:
            sizes.append(len(self.outbox))
            await asyncio.sleep(acknowledgement)
            await super().commit()

    async def forward(batch: HeldBatch, event: faust.EventT[bytes]) -> None:
        await batch.outbox.send(sink, event.key, event.value)

    @service.app.agent(source)
    async def agent(stream: faust.StreamT[bytes]) -> None:
        await service.run_batches(stream, lambda: HeldBatch(service.outbox()), forward)

    def sample(name: str, **labels: str) -> float:
        value = service.metrics.registry.get_sample_value(name, {"service": service.name, **labels})
        return value or 0.0

    keys = [b"m%02d" % i for i in range(40)]
    try:
        await started(service)
        await produce(broker.bootstrap_servers, source.get_topic_name(), [(k, b"{}") for k in keys])
        async with asyncio.timeout(60):
            while sample("leadpipe_batch_records_sum") < len(keys):  # noqa: ASYNC110 - polls a metric
                await asyncio.sleep(0.05)
    finally:
        await stopped(service)
    assert sum(sizes) == len(keys) and max(sizes) <= 10
    assert sample("leadpipe_batch_records_count") == len(sizes)
    assert sample("leadpipe_batch_records_bucket", le="10.0") == len(sizes)
    assert sample("leadpipe_batch_records_bucket", le="1.0") == sizes.count(1)
    for phase in ("handle", "commit"):
        assert sample("leadpipe_batch_seconds_count", phase=phase) == len(sizes)
    assert sample("leadpipe_batch_seconds_sum", phase="commit") >= acknowledgement * len(sizes)
    assert sample("leadpipe_batch_seconds_sum", phase="handle") < acknowledgement * len(sizes)


class StoringAgent:
    """An agent over leads.interactions that stores each record's value under its key through
    batches (a value of b"delete" erases the key); `handle` sends records and waits for them."""

    def __init__(
        self, service: StreamService, table: CaughtUpTable, as_key: Callable[[bytes], object]
    ) -> None:
        self.handled = 0
        self.source = service.topic("leads.interactions")

        @service.app.agent(self.source)
        async def store(stream: faust.StreamT[bytes]) -> None:
            async for events in service.batches(stream):
                states = StagedTable(table)
                batch = Batch(service.outbox(), states)
                for event in events:
                    value = bytes(event.value or b"")
                    states.set(as_key(bytes(event.key or b"")), None if value == b"delete" else value, event)
                await batch.commit()
                self.handled += len(events)

    async def handle(self, bootstrap: str, records: list[tuple[bytes, bytes]]) -> None:
        total = self.handled + len(records)
        await produce(bootstrap, self.source.get_topic_name(), records)
        async with asyncio.timeout(60):
            while self.handled < total:  # noqa: ASYNC110 - polls what the agent handled
                await asyncio.sleep(0.05)


@pytest.mark.parametrize("form", TABLE_FORMS)
async def test_staged_changes_reach_the_changelog_as_a_new_worker_reads_them(
    broker: EmbeddedBroker, form: str
) -> None:
    """Score and nurture key their tables by bytes, enrich by str with a raw schema; in both, values
    written and deleted by batches come back from the changelog unchanged, and deleted keys stay gone."""
    suffix = f".direct{uuid.uuid4().hex[:8]}"
    service = stream_service(broker, "direct", suffix)
    table = service.table("states", default=None, partitions=PARTITIONS, **TABLE_FORMS[form])
    as_key = (lambda raw: raw) if form == "bytes-keys" else bytes.decode
    agent = StoringAgent(service, table, as_key)
    keys = [f"lead-{i}".encode() for i in range(LEADS)]
    gone = keys[:5]
    writes = [(k, b"first " + k) for k in keys] + [(k, b"second " + k) for k in keys]
    deletes = [(k, b"delete") for k in gone] + [(b"never-stored", b"delete")]

    try:
        await started(service)
        await agent.handle(broker.bootstrap_servers, writes)
        await agent.handle(broker.bootstrap_servers, deletes)  # after the writes were stored: tombstones
        await service.app.producer.flush()
        held = dict(table.data.items())
    finally:
        await stopped(service)

    assert held == {as_key(k): b"second " + k for k in keys if k not in gone}
    successor = stream_service(broker, "direct", suffix)  # the same app id, so the same changelog
    restored = successor.table("states", default=None, partitions=PARTITIONS, **TABLE_FORMS[form])
    assert restored.changelog_topic.get_topic_name() == table.changelog_topic.get_topic_name()
    await restored._read_partitions(list(range(PARTITIONS)))
    assert dict(restored.data.items()) == held


async def test_a_worker_does_not_fetch_its_own_changelog(broker: EmbeddedBroker) -> None:
    """faust holds a table's changelog partitions paused once recovered, but only in its own books:
    aiokafka fetched them on, so every worker read back what it wrote to its tables and held its
    first changelog records in aiokafka's buffer (services/runtime/faust_transport.py, 6.). aiokafka
    now pauses them too, and none of their records reaches its buffer."""
    service = stream_service(broker, "ownlog")
    table = service.table("states", default=None, partitions=PARTITIONS, **TABLE_FORMS["bytes-keys"])
    agent = StoringAgent(service, table, lambda raw: raw)
    keys = [f"lead-{i}".encode() for i in range(LEADS)]
    try:
        await started(service)
        for round_ in range(2):  # a second round after the first one's changes could have come back
            await agent.handle(broker.bootstrap_servers, [(k, b"v%d" % round_) for k in keys])
            await asyncio.sleep(0.5)  # several fetches: time for the changes to come back, if they do
        consumer = service.app.consumer._thread._ensure_consumer()  # type: ignore[attr-defined]
        changelog = table.changelog_topic.get_topic_name()
        paused = {(tp.topic, tp.partition) for tp in consumer.paused()}
        buffered = {tp.topic for tp in consumer._fetcher._records}
    finally:
        await stopped(service)

    assert paused == {(changelog, partition) for partition in range(PARTITIONS)}
    assert changelog not in buffered
    assert len(table.data) == LEADS


async def test_faust_liveness_check_finds_a_working_worker_working(
    broker: EmbeddedBroker, caplog: pytest.LogCaptureFixture
) -> None:
    """faust's liveness check (`verify_all_partitions_active`, every 7 s) logs an error for each
    partition with no fetch, or none of its records handled, once `stream_processing_timeout` passed
    since the worker started. On a worker that fetched and handled its records it must say nothing:
    not of the changelog partitions faust holds paused, which aiokafka does not fetch
    (services/runtime/faust_transport.py, 6.), and not of the input partitions whose records the
    bulk take handed on (it notes their inbound time, services/runtime/faust_stream.py). Both were
    reported every 7 s by every worker with a table from five minutes after its start."""
    service = stream_service(broker, "liveness")
    table = service.table("states", default=None, partitions=PARTITIONS, **TABLE_FORMS["bytes-keys"])
    agent = StoringAgent(service, table, lambda raw: raw)
    source = agent.source.get_topic_name()
    try:
        await started(service)
        await agent.handle(broker.bootstrap_servers, [(f"lead-{i}".encode(), b"v") for i in range(LEADS)])
        inbound = {(tp.topic, tp.partition) for tp in service.app.monitor.stream_inbound_time}
        consumer = service.app.consumer
        consumer._thread.time_started -= 3600  # type: ignore[attr-defined]  # started an hour ago
        checked = {(tp.topic, tp.partition) for tp in consumer.assignment()}
        with caplog.at_level(logging.ERROR):
            await consumer.verify_all_partitions_active()
    finally:
        await stopped(service)

    changelog = table.changelog_topic.get_topic_name()
    assert {(changelog, p) for p in range(PARTITIONS)} <= checked  # the check did see them
    assert inbound == {(source, p) for p in range(PARTITIONS)}  # every partition got records
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
