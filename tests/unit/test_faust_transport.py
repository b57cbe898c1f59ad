"""faust's transport as leadpipe mends it: a record faust drops below its read offset is a warning."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

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
