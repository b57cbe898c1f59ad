"""A faust table whose recovery reaches the changelog's real end, and never goes back in time.

Why: faust ends recovery at the end offset the broker reports (ListOffsets). Tansu reports the
last batch's base offset + 1, so a changelog ending in a multi-record batch looks shorter than it
is and faust hands the agents a table missing its newest records: a restarted worker forgets what
it knew (found by the score kill -9 test). Worse, records fetched just past that false end still
arrive after recovery and sit in faust's buffer, to be applied later over newer state.

So this table keeps, per changelog partition, the offset its state reflects. It ignores any
changelog record at or below that offset (a late or repeated record can never regress state), and
once faust's recovery is done, while stream partitions are still paused, a private consumer reads
each active changelog partition from there until a fetch comes back empty and applies what it
finds. On a broker with correct offsets that read is empty, so the cost is two empty fetches; a
changelog partition that holds nothing is not fetched at all.

The same private read also does the recovery itself, before faust's: when partitions are assigned,
it reads each active changelog partition to its end and tells faust, through `persisted_offset`,
that nothing is left. faust's recovery moves every record through its consumer thread, conductor
and a queue, about 7,300 records a second on the bench's machine (2.3 minutes for 1M leads); the
private read applies whole fetches (docs/performance.md, sixth pass). The tables' reads run side
by side (`ConcurrentTableManager`); one after the other, with a wait per seek, they held a new enrich
worker for about 6 s before it consumed (ninth pass).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from typing import Any

import faust
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError
from faust.events import Event
from faust.tables import TableManager
from faust.types import TP, Message

log = logging.getLogger(__name__)

EMPTY_FETCHES_AT_END = 2  # a second empty fetch guards against a write still landing on the broker
FETCH_WAIT_MS = 200  # how long Tansu holds a fetch that finds nothing: the end is two of them


class CaughtUpTable(faust.Table):  # type: ignore[type-arg]  # faust tables are generic only in its stubs
    """A faust table that applies each changelog record once, in order, up to the log's real end."""

    bootstrap_servers: str = ""
    restored = 0  # records the private read applied before faust's recovery, over the worker's life
    caught_up = 0  # records applied past the end faust stopped at, over the worker's life

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.schema is not None:
            # faust writes the changelog with serializers from key_type/value_type (json unless
            # bytes) but reads it with the schema's: a raw schema must be used both ways
            self.key_serializer = self.schema.key_serializer or self.key_serializer
            self.value_serializer = self.schema.value_serializer or self.value_serializer
        self._applied_offsets: dict[int, int] = {}
        self._reported_ends: dict[int, int] = {}

    def applied_offsets(self) -> dict[int, int]:
        """Changelog partition -> the last offset this table's state reflects."""
        return self._applied_offsets

    def reported_ends(self) -> dict[int, int]:
        """Changelog partition -> the end offset the broker reported when the private read began."""
        return self._reported_ends

    def persisted_offset(self, tp: TP) -> int | None:
        """Where faust's recovery starts reading: what the private read applied, capped below the end
        the broker reported, so faust finds nothing left and its consistency check (offset at most
        the reported end) holds on a broker that under-reports. None: read from the beginning."""
        applied = self.applied_offsets().get(tp.partition)
        if tp.topic != self.changelog_topic.get_topic_name() or applied is None:
            return None
        reported = self.reported_ends().get(tp.partition)
        return applied if reported is None else min(applied, reported - 1)

    async def on_rebalance(
        self, assigned: set[TP], revoked: set[TP], newly_assigned: set[TP], generation_id: int = 0
    ) -> None:
        """Partitions were assigned: restore the active ones with the private read, before faust's
        recovery asks `persisted_offset` where to start. If the read fails, faust's recovery reads
        on from wherever it stopped: slower, nothing lost."""
        await super().on_rebalance(assigned, revoked, newly_assigned, generation_id)
        topic = self.changelog_topic.get_topic_name()
        actives = self.app.assignor.assigned_actives()
        partitions = sorted(tp.partition for tp in actives if tp.topic == topic)
        if not partitions:
            return
        started = time.monotonic()
        try:
            count = await self._read_partitions(partitions)
        except (KafkaError, OSError, TimeoutError) as exc:
            log.warning("reading %s failed, faust's recovery reads on: %r", topic, exc)
            return
        self.restored += count
        if count:
            seconds = time.monotonic() - started
            log.info(
                "restored %d records of %s in %.1f s (%.0f/s)",
                count,
                topic,
                seconds,
                count / max(seconds, 1e-9),
            )

    def apply_changelog_batch(self, batch: Iterable[Any]) -> None:
        """Apply only records newer than what the state already reflects, in log order."""
        applied = self.applied_offsets()
        fresh = []
        for event in batch:
            partition, offset = event.message.partition, event.message.offset
            if offset > applied.get(partition, -1):
                applied[partition] = offset
                fresh.append(event)
        if fresh:
            super().apply_changelog_batch(fresh)

    async def write(self, key: Any, value: Any, partition: int) -> Any:
        """Set `key` to `value` (None deletes it) and hand the change for changelog `partition` to
        the producer; returns its acknowledgement, or None when a delete found nothing to delete.

        faust's own write (`table[key] = value`) goes through `Topic.send_soon`: a `FutureMessage`,
        the producer buffer's queue and task, `publish_message` and sensor callbacks before the same
        producer call: 11% of enrich's CPU at 1,000 events/s (docs/performance.md, eighth pass). The
        bytes and the partition are the ones faust would send; faust's commit still flushes the
        producer before it commits the input offsets, so a change is on the broker before the
        records that caused it are acknowledged."""
        if value is None:
            if key not in self.data:
                return None
            del self.data[key]
        else:
            self.data[key] = value
        topic: Any = self.changelog_topic  # faust's Topic takes headers; its ChannelT stub does not
        raw_key, headers = topic.prepare_key(key, self.key_serializer, None, None)
        raw_value: bytes | None = None
        if value is not None:
            raw_value, headers = topic.prepare_value(value, self.value_serializer, None, headers)
        name = topic.get_topic_name()
        pending: asyncio.Future[Any] = await self.app.producer.send(  # type: ignore[assignment]
            name, raw_key, raw_value, partition=partition, timestamp=None, headers=headers
        )
        pending.add_done_callback(lambda done: _report_failed_write(name, done))
        return pending

    def delete_at(self, key: Any, partition: int) -> None:
        """Delete `key` outside a stream (a timer): faust takes a change's changelog partition from
        the record being processed, and a timer has none, so the caller names it."""
        self.data.pop(key, None)
        self.send_changelog(partition, key, None, value_serializer="raw")

    async def on_recovery_completed(self, active_tps: set[TP], standby_tps: set[TP]) -> None:
        """faust's recovery is done and streams are paused: read on to the real end first."""
        await self.data.on_recovery_completed(active_tps, standby_tps)
        active = {tp.partition for tp in active_tps}
        applied = self.applied_offsets()
        for partition in list(applied):
            if partition not in active:  # the memory store just dropped this partition's keys
                del applied[partition]
        if active_tps:
            count = await self._read_partitions(sorted(tp.partition for tp in active_tps))
            if count:
                self.caught_up += count
                topic = self.changelog_topic.get_topic_name()
                log.warning(
                    "applied %d changelog records of %s past the end the broker reported", count, topic
                )
        await self.call_recover_callbacks()

    async def _read_partitions(self, partitions: list[int]) -> int:
        """Apply each changelog partition from what this table reflects to its real end; how many
        records were applied. Notes the end the broker reports first (see `persisted_offset`)."""
        topic = self.changelog_topic.get_topic_name()
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap_servers,
            enable_auto_commit=False,
            fetch_max_wait_ms=FETCH_WAIT_MS,
        )
        await consumer.start()
        try:
            applied = self.applied_offsets()
            tps = [TopicPartition(topic, partition) for partition in partitions]
            ends = await consumer.end_offsets(tps)
            starts = await consumer.beginning_offsets(tps)
            for tp in tps:
                self.reported_ends()[tp.partition] = ends[tp]
            # An empty log reports its end at its start (a log holding any record reports more, also
            # on Tansu): nothing to fetch, and no empty fetches to wait for (FETCH_WAIT_MS each).
            unread = [tp for tp in tps if ends[tp] > starts[tp]]
            if not unread:
                return 0
            consumer.assign(unread)
            for tp in unread:
                # a seek to a known offset, not `seek_to_beginning`: that waits for a turn of the
                # consumer's fetch loop per call (0.2 s per partition on an idle broker)
                consumer.seek(tp, applied[tp.partition] + 1 if tp.partition in applied else starts[tp])
            return await self._read_to_end(consumer)
        finally:
            await consumer.stop()

    async def _read_to_end(self, consumer: AIOKafkaConsumer) -> int:
        count = 0
        empty = 0
        schema: Any = self.changelog_topic.schema
        decode = schema.compile(self.app, default_propagate=True)  # `schema.decode` compiles per call
        while empty < EMPTY_FETCHES_AT_END:
            batches = await consumer.getmany(timeout_ms=FETCH_WAIT_MS)
            records = [record for batch in batches.values() for record in batch]
            if not records:
                empty += 1
                continue
            empty = 0
            self.apply_changelog_batch([await self._event(record, decode) for record in records])
            count += len(records)
        return count

    async def _event(self, record: ConsumerRecord[bytes, bytes], decode: Any) -> Any:
        """The faust event `apply_changelog_batch` expects, decoded by the changelog's own schema
        (`decode`: its compiled decoder)."""
        message = Message(
            record.topic,
            record.partition,
            record.offset,
            record.timestamp / 1000.0,
            record.timestamp_type,
            list(record.headers or ()),
            record.key,
            record.value,
            None,
            tp=TP(record.topic, record.partition),
        )
        schema: Any = self.changelog_topic.schema
        if record.value is None:  # a tombstone: the key is decoded, the empty value stays empty
            key = schema.loads_key(self.app, message, loads=self.app.serializers.loads_key)
            return Event(self.app, key, None, message.headers, message)
        return await decode(message)


class ConcurrentTableManager(TableManager):
    """faust's table manager, with the tables' rebalance handlers run side by side.

    faust awaits each table's `on_rebalance` in turn; a `CaughtUpTable` reads its changelog there
    (at least two held fetches of FETCH_WAIT_MS when the log holds anything), so a worker with four
    tables ran four reads one after the other. The rest is faust's `on_rebalance` (0.15), unchanged."""

    async def on_rebalance(
        self, assigned: set[TP], revoked: set[TP], newly_assigned: set[TP], generation_id: int = 0
    ) -> None:
        self._recovery_started.set()  # faust's: no table can be added from here on
        await asyncio.gather(
            *(table.on_rebalance(assigned, revoked, newly_assigned, generation_id) for table in self.values())
        )
        await asyncio.sleep(0)
        await self._update_channels()
        await asyncio.sleep(0)
        await self.recovery.on_rebalance(assigned, revoked, newly_assigned, generation_id)


def _report_failed_write(topic: str, done: Any) -> None:
    """A changelog write the producer gave up on (faust's own callback raises it into the log too)."""
    if not done.cancelled() and done.exception() is not None:
        log.error("changelog write to %s failed: %s", topic, type(done.exception()).__name__)
