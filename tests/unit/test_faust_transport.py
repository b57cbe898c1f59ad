"""faust's transport as leadpipe mends it: a fetch across a seek is discarded, and a record faust
drops below its read offset is a warning."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP

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
