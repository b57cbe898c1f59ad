"""A batch of stream records handled as one unit: effects sent together, state stored after them.

Why: awaiting the broker's acknowledgement of every effect before the next record costs one produce
round trip per record, which capped each service at a few hundred records a second. A batch keeps
the order that makes at-least-once safe, only per batch instead of per record:

1. every record of the batch is handled in order; its effects are handed to the producer at once
   (`Outbox.send`, not awaited one by one) and its state changes are staged (`StagedTable`), so later
   records of the same batch see them;
2. `Batch.commit` waits for the acknowledgement of every effect, then writes the staged state to
   the tables (their changelogs);
3. faust acknowledges the batch's input offsets only after the loop body returns
   (`Stream.take_events`).

A crash before 2 re-processes the batch with no state stored: effects repeat with the same
deterministic ids, which every consumer treats as duplicates. State never records an effect that was
not published.
"""

from __future__ import annotations

import asyncio
import weakref
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import faust
from faust.streams import _current_event  # faust's own marker of the record being processed

from services.runtime.codec import encode
from services.runtime.metrics import CommonMetrics

_MISSING = object()


class processing:  # lower case: used as a context manager, named as one
    """Make `event` faust's current event while its record is handled (`with processing(event):`).

    A table writes each change to the changelog partition of the current event (the input's
    partition, so state and input stay co-partitioned). `take_events` collects records in another
    task, where faust sets it; handling a batch's records one by one sets it here. A class, not a
    generator-based context manager: entered for every record, it costs 2.0 µs against 4.3
    (docs/performance.md, fifteenth pass)."""

    __slots__ = ("_event", "_token")

    def __init__(self, event: faust.EventT[Any]) -> None:
        self._event = event

    def __enter__(self) -> None:
        self._token = _current_event.set(weakref.ref(self._event))

    def __exit__(self, *exc_info: object) -> None:
        _current_event.reset(self._token)


def _same(value: Any) -> Any:
    return value


class StagedTable:
    """A table's changes within one batch: read through, written at commit (None erases the key).

    Staged values stay decoded (`decode` of what the table holds, `encode` back at commit), so a lead
    with several records in one batch is parsed and serialised once, not once per record."""

    def __init__(
        self, table: Any, *, encode: Callable[[Any], Any] = _same, decode: Callable[[Any], Any] = _same
    ) -> None:
        self.table = table
        self._encode, self._decode = encode, decode
        self._staged: dict[Any, tuple[Any, int]] = {}  # key -> (value, changelog partition)

    def get(self, key: Any, decode: Callable[[Any], Any] | None = None) -> Any:
        """The staged value, else the table's decoded (by `decode` in place of the table's own)."""
        staged = self._staged.get(key, _MISSING)
        if staged is not _MISSING:
            return staged[0]  # type: ignore[index]
        raw = self.table.get(key)
        return None if raw is None else (decode or self._decode)(raw)

    def set(self, key: Any, value: Any, event: faust.EventT[Any]) -> None:
        """Stage `value` for `key`; `event` is the record that changed it (its partition is the key's)."""
        self._staged[key] = (value, event.message.partition)

    async def apply(self) -> int:
        """Write the staged changes to the table, each to the changelog partition of the record that
        made it; how many keys were written."""
        for key, (value, partition) in self._staged.items():
            await self.table.write(key, None if value is None else self._encode(value), partition)
        written = len(self._staged)
        self._staged.clear()
        return written


RECORD_OVERHEAD = 1_024  # a record batch's header and the record's own framing, generously


class RecordTooLarge(Exception):
    """An effect larger than the producer sends: raised before it is handed over, so the record that
    caused it can be dead-lettered (`StreamService.run_batches`) instead of the producer's error
    crashing the agent on that record at every restart."""

    def __init__(self, topic: str, size: int, limit: int) -> None:
        super().__init__(f"a record of {size:,} bytes for {topic} exceeds the producer's limit of {limit:,}")
        self.topic, self.size, self.limit = topic, size, limit


class Outbox:
    """Effects of one batch: handed to the producer at once, acknowledged together in `flush`.

    Records go to the app's producer as they are (bytes keys and values, the default partitioner),
    not through faust's `Topic.send`: that wraps each in a `FutureMessage`, a pending message and
    sensor callbacks we do not use: 4% of enrich's CPU (docs/performance.md, seventh pass).
    The producer is looked up at each send: a batch can be made before the app starts, and faust
    creates its producer on first use, bound to the event loop of that moment."""

    def __init__(self, service_name: str, metrics: CommonMetrics, app: faust.App) -> None:
        self._service = service_name
        self._metrics = metrics
        self._app = app
        self._pending: list[tuple[str, Awaitable[Any]]] = []
        self._limit = int(app.conf.producer_max_request_size) - RECORD_OVERHEAD

    async def send(
        self,
        topic: faust.TopicT,
        key: str | bytes | None,
        record: Any,
        headers: Mapping[str, bytes] | None = None,
    ) -> Awaitable[Any]:
        """Hand `record` (a contract model, or bytes as they are) to the producer; its acknowledgement."""
        raw_key = key.encode() if isinstance(key, str) else key
        value = record if isinstance(record, bytes) else encode(record)
        name = topic.get_topic_name()
        producer = self._app.producer
        listed = None if headers is None else list(headers.items())
        size = len(value) + len(raw_key or b"") + sum(len(k) + len(v) for k, v in listed or ())
        if size > self._limit:
            raise RecordTooLarge(name, size, self._limit + RECORD_OVERHEAD)
        pending = await producer.send(name, raw_key, value, partition=None, timestamp=None, headers=listed)
        self._pending.append((name, pending))
        return pending

    def __len__(self) -> int:
        return len(self._pending)

    async def flush(self) -> None:
        """Wait until the broker acknowledged every effect; raises the first failure."""
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        await asyncio.gather(*(future for _, future in pending))
        for topic, count in Counter(topic for topic, _ in pending).items():  # once per topic, not record
            self._metrics.events_out.labels(self._service, topic).inc(count)


class Batch:
    """One batch's outbox and staged tables, committed in the order the module docstring gives."""

    def __init__(self, outbox: Outbox, *tables: StagedTable) -> None:
        self.outbox = outbox
        self.tables = tables

    async def commit(self) -> None:
        await self.outbox.flush()
        for table in self.tables:
            await table.apply()
