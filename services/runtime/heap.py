"""Keep a worker's start-up heap out of the garbage collector's full collections.

Why: once started, a worker holds about 100,000 objects that live as long as the process (modules,
faust's and aiokafka's services, pydantic's validators). CPython's cyclic collector walked all of
them in every full collection, each time with the event loop stopped for 50-250 ms: 11-14% of
enrich's and score's CPU when each ran alone, about 4% of the services' in the whole stack at 1,000
events/s (docs/performance.md, tenth pass). `gc.freeze()` moves every object alive at
that moment to a permanent generation the collector no longer walks; objects made later are
collected as before, and reference counting still frees a frozen object as soon as nothing refers
to it. The cost: a frozen object that ends up in an unreachable reference cycle stays in memory.
The heap is frozen once, where start-up ends, so that is bounded by what start-up left: 0-1,700
objects in the benchmark's workers (a collection just before the freeze found no more garbage).
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Iterator

from prometheus_client import Gauge
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)


class HeapFreezer:
    """Freezes the heap the first time it is called; later calls do nothing, so a worker that
    rebalances again does not freeze what it made while it ran.

    `collect` first frees start-up's garbage (so it is not kept for good): only where nothing waits
    yet, since a full collection stops the event loop. `gc.freeze()` itself is instant."""

    def __init__(self, frozen_objects: Gauge, *, collect: bool = False) -> None:
        self._gauge = frozen_objects
        self._collect = collect
        self.frozen = False

    def __call__(self) -> None:
        if self.frozen:
            return
        self.frozen = True
        if self._collect:
            gc.collect()
        gc.freeze()
        count = gc.get_freeze_count()
        self._gauge.set(count)
        log.info("froze the start-up heap: %d objects left out of the garbage collector's walks", count)


class GcCollections(Collector):
    """`leadpipe_gc_collections_total{service, generation}`: Python's collections ("2" are the full
    ones that stop the event loop) under the service's own label. The standard
    `python_gc_collections_total` carries none, so a panel grouping it by service had one only where
    the scrape added it (deploy/prometheus/prometheus.yml), not under Kubernetes' pod discovery."""

    def __init__(self, service: str) -> None:
        self._service = service

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(
            "leadpipe_gc_collections",
            "Garbage collections, by generation (2: full collections, which stop the event loop).",
            labels=["service", "generation"],
        )
        for generation, stats in enumerate(gc.get_stats()):
            family.add_metric([self._service, str(generation)], stats["collections"])
        yield family
