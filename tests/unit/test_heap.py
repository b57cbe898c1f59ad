"""The start-up heap is frozen once, out of the garbage collector's walks (services/runtime/heap.py)."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry, Gauge

from services.runtime.heap import GcCollections, HeapFreezer


class Node:
    """Something a reference cycle can be made of, and a weak reference can watch."""

    peer: Node | None = None


@pytest.fixture
def registry() -> Iterator[CollectorRegistry]:
    """Where a freezer's gauge is read; the test process is unfrozen and collected as usual after."""
    gc.disable()  # no automatic collection between a test's steps
    try:
        yield CollectorRegistry()
    finally:
        gc.unfreeze()
        gc.enable()


def _garbage_cycle() -> weakref.ref[Node]:
    node = Node()
    node.peer = node
    return weakref.ref(node)


def test_the_heap_is_frozen_on_the_first_call_only(registry: CollectorRegistry) -> None:
    freeze = HeapFreezer(Gauge("frozen_objects", "test", registry=registry))
    freeze()
    frozen = gc.get_freeze_count()
    assert frozen > 1000 and freeze.frozen
    assert registry.get_sample_value("frozen_objects") == frozen
    made_later = [[n] for n in range(1000)]  # tracked containers, made while the service runs
    freeze()
    assert gc.get_freeze_count() == frozen  # what the service made since stays collectable
    assert len(made_later) == 1000


def test_garbage_frozen_with_the_heap_stays_and_collect_frees_it_first(registry: CollectorRegistry) -> None:
    gauge = Gauge("frozen_objects", "test", registry=registry)
    kept = _garbage_cycle()
    HeapFreezer(gauge)()
    gc.collect()
    assert kept() is not None  # the bounded cost of freezing without collecting first
    gc.unfreeze()
    gc.collect()
    assert kept() is None

    freed = _garbage_cycle()
    HeapFreezer(gauge, collect=True)()
    assert freed() is None
    later = _garbage_cycle()
    gc.collect()
    assert later() is None  # garbage made after the freeze is collected as before


def test_full_collections_are_counted_under_the_service_s_label() -> None:
    registry = CollectorRegistry()
    registry.register(GcCollections("score"))

    def full() -> float | None:
        return registry.get_sample_value(
            "leadpipe_gc_collections_total", {"service": "score", "generation": "2"}
        )

    before = full()
    assert before is not None
    gc.collect()
    assert full() == before + 1
