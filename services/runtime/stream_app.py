"""The faust app factory and the glue every stream service shares.

A `StreamService` holds one faust app configured from settings, the service's metrics registry,
its health checks and its dead-letter path. Services build one per `create_app(settings)` call;
nothing here is global.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import faust
from aiokafka import ConsumerRecord
from faust.web import Request, Response, View

from schemas.dead_letter import DeadLetter
from schemas.topics import TopicName
from services.runtime.batch import Batch, Outbox, RecordTooLarge, processing
from services.runtime.batch_window import AdaptiveWindow
from services.runtime.changelog_catchup import CaughtUpTable, ConcurrentTableManager
from services.runtime.codec import Decoder, Located, dead_letter, encode, origin_of
from services.runtime.faust_stream import LeadpipeStream
from services.runtime.faust_transport import LeadpipeApp
from services.runtime.health import Flag, Health
from services.runtime.heap import HeapFreezer
from services.runtime.memory import TableKeysCollector
from services.runtime.metrics import (
    METRICS_CONTENT_TYPE,
    BatchMetrics,
    CommonMetrics,
    Labelled,
    batch_metrics,
    common_metrics,
)
from services.runtime.partitioner import KafkaPartitioner
from services.runtime.raw_schema import RawBytesSchema
from services.runtime.redis_retry import RedisRefused
from services.runtime.settings import ServiceSettings
from services.runtime.topics import changelog_topic_configs, ensure_configured_topics, ensure_pipeline_topics

log = logging.getLogger(__name__)

LAG_INTERVAL_SECONDS = 5.0

T = TypeVar("T")
B = TypeVar("B", bound=Batch)


def faust_app(service: str, settings: ServiceSettings, **overrides: Any) -> LeadpipeApp:
    """A faust app with the broker, timeouts and web settings leadpipe runs with everywhere."""
    options: dict[str, Any] = {
        "broker": settings.broker_url,
        "store": "memory://",
        "datadir": f"{settings.data_dir}/{{conf.name}}",
        "autodiscover": False,
        "web_enabled": True,
        "web_bind": settings.web_host,
        "web_host": settings.web_host,
        "web_port": settings.web_port,
        "broker_session_timeout": settings.broker_session_timeout,
        "broker_heartbeat_interval": max(0.5, settings.broker_session_timeout / 6),
        "broker_rebalance_timeout": max(10.0, settings.broker_session_timeout * 2),
        "topic_partitions": settings.topic_partitions,
        "topic_replication_factor": settings.topic_replication_factor,
        "topic_disable_leader": True,
        "producer_acks": -1,
        "producer_max_batch_size": settings.producer_max_batch_bytes,
        "producer_linger": settings.producer_linger_ms / 1000,
        "producer_partitioner": KafkaPartitioner(),  # Kafka's placement, hashed faster
        "consumer_auto_offset_reset": "earliest",
        "table_cleanup_interval": 60.0,
        # No standby copies: the memory store drops every partition but the active ones when a
        # recovery completes, so a standby held only the records after that, and a table promoted
        # from it would start past records it never had (CaughtUpTable reads from what it holds).
        "table_standby_replicas": 0,
        "Stream": LeadpipeStream,  # take_events sleeps while no record comes (faust_stream.py)
        "TableManager": ConcurrentTableManager,  # the tables read their changelogs side by side
    }
    options.update(overrides)
    # faust creates its own data directory but not the parents.
    Path(settings.data_dir).mkdir(parents=True, exist_ok=True)
    app = LeadpipeApp(f"leadpipe-{service}{settings.topic_suffix}", **options)
    app.fetch_max_wait_ms = settings.fetch_max_wait_ms
    return app


def partition_lag(end_offset: int | None, last_committed: int | None) -> int | None:
    """Records after the last committed one (faust tracks the last processed offset, not the next);
    None while the partition's end is not known yet (no fetch answered since the assignment)."""
    if end_offset is None:
        return None
    position = 0 if last_committed is None else last_committed + 1
    return max(0, end_offset - position)


class StreamService:
    """One faust-based service: app, raw-bytes topics, metrics, health, dead letters."""

    def __init__(
        self, name: str, settings: ServiceSettings, *, batched: bool = True, **app_overrides: Any
    ) -> None:
        """`batched`: the service runs a batched agent (`run_batches`), and exports its series; one
        without (nurture's stand-alone mailer) exports none, rather than a window of 0 and empty
        histograms that a dashboard would draw as an idle agent."""
        self.name = name
        self.settings = settings
        self.metrics: CommonMetrics = common_metrics(name)
        self._events_in = Labelled(self.metrics.events_in)  # per record: (service, topic) -> child
        self._processing = Labelled(self.metrics.processing_seconds)
        self._batch_metrics = batch_metrics(name, self.metrics.registry) if batched else None
        self.health = Health(name)
        self.consuming = Flag()  # set when the first rebalance ended: tables recovered, streams resumed
        self.health.add("consumer_group", self.consuming)
        self.health.add("broker", self._broker_answers)
        self.app = faust_app(name, settings, **app_overrides)
        self.dlq = self.topic(TopicName.DLQ)
        self.tables: list[CaughtUpTable] = []
        self.metrics.registry.register(TableKeysCollector(name, self._table_sizes))
        self.internal_topics: list[str] = []  # the service's own topics, created before it starts
        self.side_lags: dict[tuple[str, int], int] = {}  # plain consumers' lag (side_consumer.py)
        self.app.rebalance_ended.append(self.consuming.set)
        self._install_pages()
        self.app.timer(LAG_INTERVAL_SECONDS)(self._report_lag)

    async def _broker_answers(self) -> bool:
        """Does the broker answer a metadata request now? `consuming` stays set once the first
        rebalance ended: with the broker gone, faust starts no rebalance, and `/readyz` (and so
        `leadpipe status`) went on answering ready while nothing was consumed or published."""
        producer = getattr(self.app.producer, "_producer", None)  # faust's aiokafka producer, once started
        if producer is None:
            return False
        await producer.client.fetch_all_metadata()  # raises when no broker answers (Health: not ready)
        return True

    def topic(self, name: str) -> faust.TopicT:
        """A catalogue topic carrying raw JSON bytes (decoded by pydantic in the agent, not by faust)."""
        return self.raw_topic(self.settings.topic(name))

    def raw_topic(self, *names: str, **options: Any) -> faust.TopicT:
        """Raw-bytes keys and values over topics named in full: with several names, the one input of
        an agent that reads them all (a single writer per lead)."""
        return self.app.topic(
            *names,
            schema=RawBytesSchema(),
            partitions=self.settings.topic_partitions,
            **options,
        )

    def internal_topic(self, name: str) -> faust.TopicT:
        """A raw-bytes topic outside the catalogue that only this service uses (created at start).

        Why created up front: a topic that first appears when a timer writes to it makes aiokafka's
        producer refresh its metadata for that topic alone, and a batch queued for another topic
        can then wait for a leader until the producer times out (found by the score benchmark)."""
        self.internal_topics.append(name)
        # internal: faust declares it at start too, for apps started without run_worker
        return self.raw_topic(name, internal=True)

    async def ensure_topics(self, give_up_after: float = 30.0) -> None:
        """Create the catalogue's topics and the service's own, where missing."""
        await ensure_pipeline_topics(self.settings, give_up_after=give_up_after)
        if self.internal_topics:
            await ensure_configured_topics(self.settings, self.internal_topics, give_up_after=give_up_after)

    def table(self, name: str, **options: Any) -> CaughtUpTable:
        """A changelog-backed table whose recovery reads to the log's real end (see CaughtUpTable)."""
        options.setdefault("extra_topic_configs", changelog_topic_configs(self.settings))
        table = CaughtUpTable(self.app, name=name, beacon=self.app.tables.beacon, **options)
        table.bootstrap_servers = self.settings.bootstrap_servers
        self.app.tables.add(table)
        self.tables.append(table)
        return table

    def reindex_when_rows_move(self, table: CaughtUpTable, reset: Callable[[], None]) -> None:
        """Call `reset` after a rebalance and after `table`'s recovery: the rows this worker holds
        changed, so an in-memory index over them is rebuilt (score's due leads, enrich's last
        activity, nurture's due steps). Attached after the table's catch-up, so it runs after it."""

        async def reindex(*args: Any, **kwargs: Any) -> None:
            reset()

        self.app.on_rebalance_complete.connect(reindex)
        table.on_recover(reindex)

    def _table_sizes(self) -> list[tuple[str, CaughtUpTable]]:
        """Each table by the name the service gave it, for `leadpipe_table_keys` (read at each scrape)."""
        return [(table.name, table) for table in self.tables]

    async def decode(self, decoder: Decoder[T], event: faust.EventT[Any]) -> T | None:
        """Decode one record; unreadable ones go to the dead-letter topic and yield None."""
        result = self._decoded(decoder, event.value, event.message)
        if isinstance(result, DeadLetter):
            await self.dead_letter(result)
            return None
        return result

    async def decode_record(self, decoder: Decoder[T], record: ConsumerRecord[bytes, bytes]) -> T | None:
        """The same for a record of a plain consumer beside the agents (services/runtime/side_consumer.py)."""
        result = self._decoded(decoder, record.value, record)
        if isinstance(result, DeadLetter):
            await self.dead_letter(result)
            return None
        return result

    def _decoded(self, decoder: Decoder[T], value: bytes | None, source: Located) -> T | DeadLetter:
        self._events_in(self.name, source.topic).inc()

        return decoder.decode(value, partial(origin_of, source))

    async def dead_letter(self, letter: DeadLetter) -> None:
        key = letter.lead_id.encode() if letter.lead_id else None
        await self.dlq.send(key=key, value=encode(letter))
        self.metrics.dead_letters.labels(self.name, letter.origin.topic, letter.reason).inc()
        log.warning(
            "dead-lettered %s[%d]@%d: %s",
            letter.origin.topic,
            letter.origin.partition,
            letter.origin.offset,
            letter.reason,
        )

    @property
    def batch_metrics(self) -> BatchMetrics:
        if self._batch_metrics is None:
            raise RuntimeError(f"{self.name} was built with batched=False: it has no batched agent")
        return self._batch_metrics

    def batches(self, stream: faust.StreamT[bytes]) -> AsyncIterator[Sequence[faust.EventT[bytes]]]:
        """The stream in batches (see services/runtime/batch.py): up to `batch_max_records` records,
        or what arrived within the batch window, which follows the agent's load
        (services/runtime/batch_window.py). faust acknowledges a batch after the loop body."""
        shortest, longest = self.settings.batch_windows
        gauge = self.batch_metrics.window
        window = AdaptiveWindow(shortest, longest, report=gauge.set)
        gauge.set(window.seconds)
        batches: AsyncIterator[Sequence[faust.EventT[bytes]]]
        batches = stream.take_events(  # type: ignore[attr-defined]
            self.settings.batch_max_records, within=shortest, window=window
        )
        return batches

    async def run_batches(
        self,
        stream: faust.StreamT[bytes],
        begin: Callable[[], B],
        handle: Callable[[B, faust.EventT[bytes]], Awaitable[None]],
        prepare: Callable[[B, Sequence[faust.EventT[bytes]]], Awaitable[None]] | None = None,
    ) -> None:
        """A batched agent's loop: `begin` a batch, `prepare` it with all its records (what is worth
        awaiting once for the batch rather than record by record), `handle` each record as faust's
        current event (tables write to its partition), then commit it (services/runtime/batch.py).

        An await inside `handle` that really waits lets the producer send what the batch handed it
        so far as a request of its own (docs/performance.md, fourteenth pass): wait in `prepare`.

        Each committed batch is reported: its records (`leadpipe_batch_records`) and the time of
        its two phases (`leadpipe_batch_seconds`): handling, and the commit (effects acknowledged,
        then state stored). A record's effects leave at the commit, so it waits for its batch."""
        batches = self.batches(stream)
        metrics = self.batch_metrics
        async for events in batches:
            began = time.perf_counter()
            batch = begin()
            if prepare is not None:
                await prepare(batch, events)
            for event in events:
                started = time.perf_counter()
                try:
                    with processing(event):
                        await handle(batch, event)
                except RecordTooLarge as exc:  # its other effects stand: they repeat alike if replayed
                    await self.dead_letter(self._too_large(event, exc))
                except RedisRefused as exc:  # the same again on every retry (redis_retry.py)
                    await self.dead_letter(self.refused_letter(event.message, event.value, exc))
                self.observe(event.message.topic, started)
            handled = time.perf_counter()
            await batch.commit()
            metrics.records.observe(len(events))
            metrics.handling.observe(handled - began)
            metrics.commit.observe(time.perf_counter() - handled)

    def refused_letter(self, message: Located, value: bytes | None, exc: RedisRefused) -> DeadLetter:
        """The dead letter of a record Redis refused a command for (`RedisRefused`)."""
        return dead_letter(self.name, origin_of(message), value, "redis_refused", str(exc))

    def _too_large(self, event: faust.EventT[bytes], exc: RecordTooLarge) -> DeadLetter:
        return dead_letter(self.name, origin_of(event.message), event.value, "record_too_large", str(exc))

    def outbox(self) -> Outbox:
        """Effects of one batch, acknowledged together (`Outbox.flush`)."""
        return Outbox(self.name, self.metrics, self.app)

    async def send(self, topic: faust.TopicT, key: str, record: Any) -> None:
        """Publish and wait for the broker's acknowledgement: an effect is durable before state moves on."""
        outbox = self.outbox()
        await outbox.send(topic, key, record)
        await outbox.flush()

    def observe(self, topic: str, started: float) -> None:
        self._processing(self.name, topic).observe(time.perf_counter() - started)

    async def _report_lag(self) -> None:
        """Consumer lag per assigned partition (end offset minus committed position), the agents'
        and the plain consumers' beside them."""
        gauge = self.metrics.consumer_lag
        gauge.clear()
        if not self.app.producer_only:  # else faust's consumer does not run
            consumer = self.app.consumer
            committed_offsets = getattr(consumer, "_committed_offset", {})
            for tp in consumer.assignment():
                lag = partition_lag(consumer.highwater(tp), committed_offsets.get(tp))
                if lag is None:
                    continue
                gauge.labels(self.name, tp.topic, str(tp.partition)).set(lag)
        self.metrics.show_lags(self.name, self.side_lags)

    def _install_pages(self) -> None:
        service = self

        @self.app.page("/healthz")
        async def healthz(view: View, request: Request) -> Response:
            return view.json({"service": service.name, "status": "ok"})

        @self.app.page("/readyz")
        async def readyz(view: View, request: Request) -> Response:
            ready, checks = await service.health.report()
            body = {"service": service.name, "ready": ready, "checks": checks}
            return view.json(body, status=200 if ready else 503)

        @self.app.page("/metrics")
        async def metrics(view: View, request: Request) -> Response:
            # aiohttp refuses a charset inside content_type; Prometheus reads the text format without it.
            content_type = METRICS_CONTENT_TYPE.split(";")[0] + "; version=0.0.4"
            return view.bytes(service.metrics.exposition(), content_type=content_type)


def run_worker(service: StreamService) -> None:
    """Create missing topics, then run the faust worker until SIGINT/SIGTERM."""
    from faust.worker import Worker

    from services.runtime import logs

    logs.configure(service.settings.log_level)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    loop.run_until_complete(service.ensure_topics(give_up_after=60))
    if service.settings.gc_freeze:  # once consuming: tables recovered, streams resumed
        service.app.rebalance_ended.append(HeapFreezer(service.metrics.frozen_objects))
    worker = Worker(service.app, loglevel=service.settings.log_level, loop=loop, quiet=True)
    logs.configure(service.settings.log_level)
    worker.execute_from_commandline()
