"""faust's aiokafka transport, mended where it loses time or records.

1. The consumer's fetch wait comes from settings. faust creates its worker consumer with
   `fetch_max_wait_ms=1500` and no way to change it. Kafka answers a fetch as soon as data arrives,
   but Tansu holds a fetch over several partitions for the whole wait: with faust's value every hop
   of the pipeline waited about 0.9 s (docs/performance.md). `LEADPIPE_FETCH_MAX_WAIT_MS` applies.
2. A rebalance rewinds every partition to its committed offset, also one with none yet. faust
   drops the records it fetched but had not handed to an agent when a rebalance starts, then asks
   aiokafka to seek to the committed offsets. aiokafka's `seek_to_committed` only seeks where the
   committed offset is above 0, so a partition nothing was committed on kept its fetch position
   and the dropped records were never read again (found by the nurture kill soak: a rejoin of the
   same worker lost 140 of 225 e-mails). `rewind_to_committed` seeks those to where the group would
   start: the `auto_offset_reset` end.
3. A fetch that spans a seek is discarded. On an assignment faust resumes fetching before it seeks
   the partitions to their committed offsets; a fetch in flight then returns records from the old
   positions, which move faust's read offset past the records the seek went back for, and faust
   drops those as already read (found by the nurture kill soak: 36 e-mails lost in one run). The
   consumer counts seeks, discards such a fetch and seeks to the committed offsets again.
4. A record faust still drops below its read offset is a warning, not a silent dev-level line.
5. Fetched records are handed to the agents under one `wait_first` per fetch, not one per record.
   faust's `_drain_messages` wraps each record's hand-over in mode's `wait_first` (so a rebalance or
   a stop can interrupt a hand-over blocked on a full buffer), which creates and cancels four tasks
   per record: 31 µs each, a quarter of a bare faust agent's CPU (docs/performance.md). Wrapping the
   whole fetch keeps what it is for: a rebalance abandons the rest of the fetch, as faust's loop
   does record by record, and the seek to the committed offsets reads it again. The same change as
   a patch for upstream: docs/upstream/.
6. What faust pauses, aiokafka stops fetching. faust pauses a partition only in its own books (it
   stops handing its records on), while aiokafka goes on fetching it: after recovery every worker
   fetched its own tables' changelog partitions (16 of enrich's 28), Tansu held every fetch over
   them, and the first records a worker wrote to each came back and stayed in aiokafka's buffer,
   where aiokafka's prefetch backoff held back every fetch from the broker for 100 ms per partition
   (docs/performance.md, ninth pass). The consumer thread pauses and resumes in aiokafka what faust
   holds paused.
   faust's liveness check (`verify_event_path`, every 7 s) then found no fetch for those partitions
   and, once `stream_processing_timeout` (5 min) had passed since the worker started, logged an
   error for each of them at every check: 1,384-2,752 false alarms per worker with a table in the
   next 20 minutes of `make run` (docs/performance.md, twentieth pass). The check now skips what
   faust holds paused.
7. Two faust settings are read once, not per record. faust's settings object resolves every
   attribute through its own `__getattribute__` and a descriptor: 2.7 µs for `conf.Event`, which
   `App.create_event` reads for every record handed to an agent, and 1.5 µs for
   `conf.producer_threaded`, which the producer buffer reads for every record handed over (the
   conductor's `wait_until_ebb`) and every buffered send. At 1,000 events/s the two were 1-4% of each
   stream worker's samples (docs/performance.md, nineteenth pass). Neither changes once the app is
   built; leadpipe never runs faust's threaded producer (its transport refuses it).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from typing import Any, ClassVar, cast

import aiokafka
import faust
from aiokafka import TopicPartition
from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.transport.producer import ProducerBuffer
from faust.types import TP, Message
from mode import Service, ServiceT
from mode.utils.logging import CompositeLogger


async def rewind_to_committed(
    consumer: aiokafka.AIOKafkaConsumer, auto_offset_reset: str
) -> Mapping[TopicPartition, int | None]:
    """Seek every assigned partition to its committed offset; one without a committed offset (or
    with 0) to the start `auto_offset_reset` names. Returns the committed offsets, as aiokafka does."""
    committed: Mapping[TopicPartition, int | None] = await consumer.seek_to_committed()
    fresh = [tp for tp, offset in committed.items() if not offset]  # aiokafka skipped these
    if fresh:
        if auto_offset_reset == "latest":
            await consumer.seek_to_end(*fresh)
        else:
            await consumer.seek_to_beginning(*fresh)
    return committed


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> aiokafka.AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        wait = getattr(self.app, "fetch_max_wait_ms", None)
        if wait is not None:
            consumer._fetch_max_wait_ms = wait  # read by AIOKafkaConsumer.start() for its fetcher
        return consumer

    async def hold_paused(self, paused: set[TP]) -> None:
        """Pause in aiokafka what faust holds paused (`paused`: faust's own set, read when the thread
        gets to the call) among the assigned partitions, and resume the rest; idempotent, so the
        latest call wins."""
        await self.call_thread(self._hold_paused, self._ensure_consumer(), paused)

    @staticmethod
    async def _hold_paused(consumer: aiokafka.AIOKafkaConsumer, paused: set[TP]) -> None:
        held = {TopicPartition(tp.topic, tp.partition) for tp in frozenset(paused)}
        assigned, fetching_paused = consumer.assignment(), consumer.paused()
        if pause := (held & assigned) - fetching_paused:
            consumer.pause(*pause)
        if resume := fetching_paused - held:
            consumer.resume(*resume)

    async def seek_to_committed(self) -> Mapping[TP, int]:
        reset = self.app.conf.consumer_auto_offset_reset
        # faust's type says int; aiokafka gives None for a partition without a commit, as it always did
        committed: Mapping[TP, int] = await self.call_thread(
            rewind_to_committed, self._ensure_consumer(), reset
        )
        return committed


DROPPED_PREFIX = "DROPPED MESSAGE"  # faust's Consumer._drain_messages, logged at its dev level


class DropWarningLog(CompositeLogger):
    """faust's consumer log, with its dropped-record line raised from dev level (off unless DEVLOG)
    to a warning."""

    def dev(self, message: str, *args: Any, **kwargs: Any) -> None:
        if message.startswith(DROPPED_PREFIX):
            offset = args[0] if args else "?"
            self.warning("faust dropped the record at offset %s below its read offset", offset)
            return
        super().dev(message, *args, **kwargs)


class _Consumer(faust_aiokafka.Consumer):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.log = DropWarningLog(self.logger, formatter=self._format_log)
        self.seeks = 0  # stream seeks so far: a fetch that spans one returns records from before it
        self._holding: set[asyncio.Future[None]] = set()  # pause / resume calls on their way (6.)

    async def perform_seek(self) -> None:
        self.seeks += 1
        await super().perform_seek()

    async def seek(self, partition: TP, offset: int) -> None:
        self.seeks += 1
        await super().seek(partition, offset)

    async def _getmany(self, active_partitions: set[TP] | None, timeout: float) -> Any:  # noqa: ASYNC109 (faust's signature)
        """A fetch during which the stream partitions were sought (a rebalance's seek to the
        committed offsets) may return records from the old positions; handed on, they move faust's
        read offset past the records the seek went back for, which faust then drops. Such a fetch
        is discarded and the partitions sought to the committed offsets again."""
        seeks = self.seeks
        records = await super()._getmany(active_partitions=active_partitions, timeout=timeout)
        if records and self.seeks != seeks:
            count = sum(len(batch) for batch in records.values())
            self.log.warning(
                "discarded %d records fetched across a seek; seeking to the committed offsets", count
            )
            await self.perform_seek()
            return {}
        return records

    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    def pause_partitions(self, tps: Iterable[TP]) -> None:
        super().pause_partitions(tps)
        self._hold_paused()

    def resume_partitions(self, tps: Iterable[TP]) -> None:
        super().resume_partitions(tps)
        self._hold_paused()

    def verify_event_path(self, now: float, tp: TP) -> None:
        """faust's liveness check of a partition, but not of one faust holds paused: aiokafka sends
        no fetch for it (6.), which the check would report as an error every time it runs. faust
        pauses only during a rebalance (when the check does not run) and a table's changelog once
        recovered, so an input partition that stalls is still reported."""
        if tp in self._paused_partitions:
            return
        super().verify_event_path(now, tp)

    def _hold_paused(self) -> None:
        """Have the consumer thread stop fetching what faust now holds paused (6.). The thread reads
        faust's set when it gets to the call, so calls overtaking each other still end in the
        latest state."""
        thread = cast(_ConsumerThread, self._thread)
        if thread._consumer is None:
            return  # not started: the first assignment's recovery pauses and resumes again
        task = asyncio.ensure_future(thread.hold_paused(self._paused_partitions))
        self._holding.add(task)
        task.add_done_callback(self._held)

    def _held(self, task: asyncio.Future[None]) -> None:
        self._holding.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.log.warning("could not pause or resume fetching in aiokafka: %r", task.exception())

    async def _drain_messages(self, fetcher: ServiceT) -> None:
        """faust's fetch loop (Fetcher's background task), with one `wait_first` per fetch (5.)."""
        consumer_should_stop = cast(Service, self)._stopped.is_set
        fetcher_should_stop = cast(Service, fetcher)._stopped.is_set
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                self.diag.set_flag(CONSUMER_FETCHING)
                fetched = self.getmany(timeout=1.0)
                await self.sleep(0)  # faust's: getmany may return at once, again and again
                if not self.should_stop:
                    # the fetch itself stays outside, as in faust: only the hand-over is interrupted
                    first = await anext(fetched, None)
                    if first is not None:
                        await self.wait_first(self._hand_over(first, fetched), self.suspend_flow.wait())
                self.diag.unset_flag(CONSUMER_FETCHING)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                self.log.info("Broker stopped consumer, shutting down...")
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                self.log.info("Consumer shutting down for user cancel.")
                return
            raise
        except Exception as exc:
            self.log.exception("Drain messages raised: %r", exc)
            raise
        finally:
            self.diag.unset_flag(CONSUMER_FETCHING)

    async def _hand_over(self, first: tuple[TP, Message], rest: AsyncIterator[tuple[TP, Message]]) -> None:
        """faust's per-record body of `_drain_messages`: skip what was read, note gaps for acks,
        commit every `commit_every` acks, hand the record to the conductor, move the read offset."""
        callback, read_offset = self.callback, self._read_offset
        acks_enabled_for, commit_every = self.app.topics.acks_enabled_for, self._commit_every
        since_yield = 0
        item: tuple[TP, Message] | None = first
        try:
            while item is not None:
                tp, message = item
                since_yield += 1
                if since_yield > 100:  # faust's: let other tasks run during a long fetch
                    await asyncio.sleep(0)
                    since_yield = 0
                offset, r_offset = message.offset, read_offset[tp]
                if r_offset is None or offset >= r_offset:
                    if offset - (r_offset or 0) > 1 and r_offset and acks_enabled_for(message.topic):
                        await self._add_gap(tp, r_offset + 1, offset)
                    if commit_every is not None and self._n_acked >= commit_every:
                        self._n_acked = 0
                        await self.commit()
                    await callback(message)
                    read_offset[tp] = offset
                else:
                    self.log.dev("DROPPED MESSAGE ROFF %r: k=%r v=%r", offset, message.key, message.value)
                item = await anext(rest, None)
        finally:
            await cast(Any, rest).aclose()


class _ProducerBuffer(ProducerBuffer):
    """faust's buffer of records sent without waiting (table writes), for the unthreaded producer
    alone: faust asks its settings which producer runs on every call (7.)."""

    def put(self, fut: Any) -> None:
        self.pending.put_nowait(fut)

    @property
    def size(self) -> int:
        return self.pending.qsize()


class _Producer(faust_aiokafka.Producer):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.app.conf.producer_threaded:
            raise ValueError("leadpipe's transport runs faust's unthreaded producer only")
        # faust builds its buffer in this constructor; this one has no state of its own to set up
        self.buffer.__class__ = _ProducerBuffer


class _Transport(faust_aiokafka.Transport):
    Consumer: ClassVar[Any] = _Consumer
    Producer: ClassVar[Any] = _Producer


class LeadpipeApp(faust.App):
    """A faust app whose consumer waits at most `fetch_max_wait_ms` for data and rewinds every
    partition on a rebalance (see the module docstring), and that says when it consumes again."""

    fetch_max_wait_ms: int | None = None
    _event_type: Any = None  # faust's `conf.Event`, read at the first record (7.)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.rebalance_ended: list[Callable[[], None]] = []

    def _new_transport(self) -> Any:
        return _Transport(self.conf.broker_consumer, self)

    def create_event(self, key: Any, value: Any, headers: Any, message: Message) -> Any:
        """faust's, with the event class looked up in the settings once (7.)."""
        if self._event_type is None:
            self._event_type = self.conf.Event
        return self._event_type(self, key, value, headers, message)

    def on_rebalance_end(self) -> None:
        """faust calls this once a rebalance's recovery is done, the streams are sought to their
        committed offsets and the flow resumed: from here on the worker consumes. Its
        `on_rebalance_complete` signal comes earlier, before the tables' `on_recovery_completed`
        reads and that seek."""
        super().on_rebalance_end()
        for callback in self.rebalance_ended:
            callback()
