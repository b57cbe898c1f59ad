"""faust's transport as leadpipe mends it: a fetch across a seek is discarded, and a record faust
drops below its read offset is a warning."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import faust
import pytest
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP, Message
from mode import Service

from services.runtime.faust_transport import DropWarningLog
from services.runtime.settings import ServiceSettings
from services.runtime.stream_app import faust_app


def test_a_dropped_record_is_a_warning_without_its_key_or_value(caplog: pytest.LogCaptureFixture) -> None:
    log = DropWarningLog(logging.getLogger("test.consumer"))
    with caplog.at_level(logging.DEBUG, logger="test.consumer"):
        # faust's own line (Consumer._drain_messages), which it logs at its dev level only
        log.dev("DROPPED MESSAGE ROFF %r: k=%r v=%r", 42, b"lead-1", b'{"email": "a@b.example"}')
        log.dev("SEEK %r -> %r", "tp", 7)  # other dev lines stay off unless DEVLOG is set
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.WARNING, "faust dropped the record at offset 42 below its read offset")
    ]


def test_every_service_consumer_uses_it(tmp_path: Path) -> None:
    app = faust_app("t", ServiceSettings(data_dir=str(tmp_path), web_port=6066))
    assert isinstance(app.consumer.log, DropWarningLog)


def test_tables_keep_no_standby_copies(tmp_path: Path) -> None:
    """A memory-store standby holds only what arrived after the last recovery (the store drops the
    rest), and a table promoted from it would start past records it never had."""
    app = faust_app("t", ServiceSettings(data_dir=str(tmp_path), web_port=6066))
    assert app.conf.table_standby_replicas == 0


async def test_a_fetch_that_spans_a_seek_is_discarded_and_sought_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Records a fetch returns after the partitions were sought back would move faust's read offset
    past the records the seek went back for; the consumer drops them and seeks again instead."""
    consumer = faust_app("t", ServiceSettings(data_dir=str(tmp_path), web_port=6066)).consumer
    sought: list[str] = []
    records = {TP("leads.x", 0): ["r41", "r42"]}

    async def perform_seek(self: object) -> None:
        sought.append("committed")

    async def fetch_during_a_rebalance(self: object, **_: object) -> object:
        await consumer.perform_seek()  # the rebalance's seek, while this fetch was in flight
        return records

    async def fetch(self: object, **_: object) -> object:
        return records

    monkeypatch.setattr(faust_aiokafka.Consumer, "perform_seek", perform_seek)
    monkeypatch.setattr(faust_aiokafka.Consumer, "_getmany", fetch_during_a_rebalance)
    assert await consumer._getmany(active_partitions=None, timeout=1.0) == {}
    assert sought == ["committed", "committed"]  # the rebalance's, then ours

    monkeypatch.setattr(faust_aiokafka.Consumer, "_getmany", fetch)
    assert await consumer._getmany(active_partitions=None, timeout=1.0) == records
    assert sought == ["committed", "committed"]


def _messages(tp: TP, offsets: range) -> list[tuple[TP, Message]]:
    return [(tp, Message(tp.topic, tp.partition, n, 0.0, 0, None, b"k", b"v", None, tp=tp)) for n in offsets]


class _Fetches:
    """Stands in for faust's `getmany`: one fetch per call, then nothing and the fetcher stops."""

    def __init__(self, fetcher: Service, *fetches: list[tuple[TP, Message]]) -> None:
        self.fetcher, self.fetches, self.closed = fetcher, list(fetches), 0

    async def getmany(self, timeout: float) -> AsyncIterator[tuple[TP, Message]]:  # noqa: ASYNC109 (faust's)
        if not self.fetches:
            self.fetcher._stopped.set()
            return
        try:
            for item in self.fetches.pop(0):
                yield item
        finally:
            self.closed += 1


async def test_a_fetch_is_handed_over_under_one_wait_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """faust wrapped each record's hand-over in its own `wait_first` (four tasks created and cancelled
    per record); now a fetch is one, and every record still arrives in order with its read offset."""
    consumer = faust_app("t", ServiceSettings(data_dir=str(tmp_path), web_port=6066)).consumer
    first, second = TP("leads.x", 0), TP("leads.x", 1)
    fetcher = Service()
    fetches = _Fetches(
        fetcher,
        _messages(first, range(150)) + _messages(second, range(40, 190)),
        _messages(first, range(150, 160)),
    )
    handed: list[tuple[int, int]] = []
    waits = 0
    wait_first = consumer.wait_first

    async def counted_wait_first(*coros: object, **kwargs: object) -> object:
        nonlocal waits
        waits += 1
        return await wait_first(*coros, **kwargs)

    async def callback(message: Message) -> None:
        handed.append((message.partition, message.offset))

    monkeypatch.setattr(consumer, "getmany", fetches.getmany)
    monkeypatch.setattr(consumer, "wait_first", counted_wait_first)
    consumer.callback = callback
    await consumer._drain_messages(fetcher)

    assert handed == [(0, n) for n in range(150)] + [(1, n) for n in range(40, 190)] + [
        (0, n) for n in range(150, 160)
    ]
    assert waits == 2
    assert consumer._read_offset[first] == 159 and consumer._read_offset[second] == 189
    assert fetches.closed == 2


async def test_a_rebalance_abandons_the_rest_of_a_fetch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A hand-over blocked (a full buffer, a paused flow) when a rebalance suspends the flow gives up
    the rest of the fetch, as faust's loop does record by record: the read offset stays at the last
    record handed over, so the seek to the committed offsets reads the rest again."""
    consumer = faust_app("t", ServiceSettings(data_dir=str(tmp_path), web_port=6066)).consumer
    tp = TP("leads.x", 0)
    fetcher = Service()
    fetches = _Fetches(fetcher, _messages(tp, range(10, 20)))
    handed: list[int] = []
    blocked = asyncio.Event()

    async def callback(message: Message) -> None:
        if message.offset == 13:
            blocked.set()
            await asyncio.Event().wait()  # never handed over
        handed.append(message.offset)

    async def rebalance() -> None:
        await blocked.wait()
        consumer.suspend_flow.set()

    monkeypatch.setattr(consumer, "getmany", fetches.getmany)
    consumer.callback = callback
    async with asyncio.timeout(10):
        await asyncio.gather(consumer._drain_messages(fetcher), rebalance())

    assert handed == [10, 11, 12]
    assert consumer._read_offset[tp] == 12
    assert fetches.closed == 1


def test_records_become_events_of_the_configured_class(tmp_path: Path) -> None:
    """The event class is read from faust's settings once; each record still becomes its own event."""

    class TracedEvent(faust.Event):  # type: ignore[type-arg]  # generic only in faust's stubs
        pass

    settings = ServiceSettings(data_dir=str(tmp_path), web_port=6066)
    app = faust_app("t", settings, Event=TracedEvent)
    first, second = (Message("leads.x", 0, offset, 0.0, 0, None, b"k", b"v", None) for offset in (1, 2))
    events = [app.create_event(b"k", str(m.offset).encode(), None, m) for m in (first, second)]
    assert [type(e) for e in events] == [TracedEvent, TracedEvent]
    assert [(e.app, e.key, e.value, e.message) for e in events] == [
        (app, b"k", b"1", first),
        (app, b"k", b"2", second),
    ]
    assert type(faust_app("u", settings).create_event(b"k", b"v", None, first)) is faust.Event


async def test_the_producer_buffer_counts_what_waits_to_be_sent(tmp_path: Path) -> None:
    """faust's conductor holds the hand-over while more than `max_messages` records wait in the
    buffer (`wait_until_ebb`): the size it reads must be the buffer's."""
    app = faust_app("t", ServiceSettings(data_dir=str(tmp_path), web_port=6066))
    buffer = app.producer.buffer
    assert buffer.size == 0
    pending = [asyncio.get_running_loop().create_future() for _ in range(3)]
    for fut in pending:
        buffer.put(fut)
    assert buffer.size == 3
    assert await buffer.pending.get() is pending[0]
    assert buffer.size == 2


def test_faust_threaded_producer_is_refused(tmp_path: Path) -> None:
    app = faust_app("t", ServiceSettings(data_dir=str(tmp_path), web_port=6066), producer_threaded=True)
    with pytest.raises(ValueError, match="unthreaded producer only"):
        app.producer  # noqa: B018 (faust builds its producer on first access)
