"""Prometheus metrics every service shares, on a registry injected per app (never the global one)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.gc_collector import GCCollector

from services.runtime.heap import GcCollections
from services.runtime.memory import MemoryCollector

# Milliseconds to minutes: processing is fast, a stalled dependency is not.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
# A batch holds one record when idle and up to `LEADPIPE_BATCH_MAX_RECORDS` (500) under load.
BATCH_SIZE_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000)


M = TypeVar("M", Counter, Gauge, Histogram)


@dataclass
class Labelled(Generic[M]):
    """A metric's children by label values, each looked up once. For metrics updated per record:
    `labels()` checks and converts its arguments and takes a lock on every call, about 0.8 µs of a
    counter's 1.1 µs increment (docs/performance.md, fourteenth pass)."""

    metric: M
    _children: dict[tuple[str, ...], M] = field(default_factory=dict)

    def __call__(self, *values: str) -> M:
        child = self._children.get(values)
        if child is None:
            child = self._children[values] = self.metric.labels(*values)
        return child


@dataclass(frozen=True)
class CommonMetrics:
    registry: CollectorRegistry
    events_in: Counter
    events_out: Counter
    dead_letters: Counter
    processing_seconds: Histogram
    consumer_lag: Gauge
    up: Gauge
    frozen_objects: Gauge  # of this service (one label value): services/runtime/heap.py

    def exposition(self) -> bytes:
        data: bytes = generate_latest(self.registry)
        return data

    def show_lags(self, service: str, lags: Mapping[tuple[str, int], int]) -> None:
        """`leadpipe_consumer_lag` of plain consumers (services/runtime/side_consumer.py fills `lags`)."""
        for (topic, partition), lag in lags.items():
            self.consumer_lag.labels(service, topic, str(partition)).set(lag)


def common_metrics(service: str, registry: CollectorRegistry | None = None) -> CommonMetrics:
    registry = registry or CollectorRegistry()
    up = Gauge("leadpipe_service_up", "1 while the service runs.", ["service"], registry=registry)
    up.labels(service).set(1)
    GCCollector(registry=registry)  # python_gc_collections_total{generation}: "2" are the full ones
    registry.register(GcCollections(service))  # the same with the service's label
    registry.register(MemoryCollector(service))  # resident memory against the limit
    frozen = Gauge(
        "leadpipe_gc_frozen_objects",
        "Objects the garbage collector no longer walks: the heap frozen once start-up ended.",
        ["service"],
        registry=registry,
    )
    return CommonMetrics(
        registry=registry,
        events_in=Counter(
            "leadpipe_events_in_total", "Records consumed.", ["service", "topic"], registry=registry
        ),
        events_out=Counter(
            "leadpipe_events_out_total", "Records published.", ["service", "topic"], registry=registry
        ),
        dead_letters=Counter(
            "leadpipe_dead_letters_total",
            "Records sent to leads.dlq.",
            ["service", "topic", "reason"],
            registry=registry,
        ),
        processing_seconds=Histogram(
            "leadpipe_processing_seconds",
            "Time to handle one record.",
            ["service", "topic"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        ),
        consumer_lag=Gauge(
            "leadpipe_consumer_lag",
            "Records not yet processed: end offset minus committed offset.",
            ["service", "topic", "partition"],
            registry=registry,
        ),
        up=up,
        frozen_objects=frozen.labels(service),
    )


@dataclass(frozen=True)
class BatchMetrics:
    """A batched agent's series (services/runtime/stream_app.py), registered only by a service that
    has one: capture and nurture's mailer export none, rather than a window of 0 and empty
    histograms that a dashboard would draw as an idle agent."""

    window: Gauge  # how long the agent waits for a batch to fill: services/runtime/batch_window.py
    records: Histogram  # records per batch, and its two phases' times:
    handling: Histogram  # handling its records (effects handed to the producer) ...
    commit: Histogram  # ... and the commit (their acknowledgement, then state stored)


def batch_metrics(service: str, registry: CollectorRegistry) -> BatchMetrics:
    window = Gauge(
        "leadpipe_batch_window_seconds",
        "How long the batched agent waits for a batch to fill; grows with its load.",
        ["service"],
        registry=registry,
    )
    records = Histogram(
        "leadpipe_batch_records",
        "Records in each batch of the batched agent: they grow with its load before its lag does.",
        ["service"],
        buckets=BATCH_SIZE_BUCKETS,
        registry=registry,
    )
    seconds = Histogram(
        "leadpipe_batch_seconds",
        "Time of each batch by phase: handle (its records) and commit (effects acknowledged, then "
        "state stored). A batch's effects reach the broker together, at its commit.",
        ["service", "phase"],
        buckets=LATENCY_BUCKETS,
        registry=registry,
    )
    return BatchMetrics(
        window=window.labels(service),
        records=records.labels(service),
        handling=seconds.labels(service, "handle"),
        commit=seconds.labels(service, "commit"),
    )


METRICS_CONTENT_TYPE = CONTENT_TYPE_LATEST
