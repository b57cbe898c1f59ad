"""Raw-bytes topics make a record's event from its key and value as they are, exactly as faust's own
schema does through its serializer registry (services/runtime/raw_schema.py)."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import Any

import faust
import pytest
from faust.types import TP, Message
from hypothesis import given, settings
from hypothesis import strategies as st

from services.runtime.raw_schema import RawBytesSchema
from services.runtime.settings import ServiceSettings
from services.runtime.stream_app import StreamService, faust_app

APP = faust_app("raw-schema", ServiceSettings(data_dir=tempfile.mkdtemp(), web_port=6066))
FAUSTS = faust.Schema(key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")
headers = st.lists(st.tuples(st.text(max_size=5), st.binary(max_size=5)), max_size=3)


def decoded(schema: Any, message: Message) -> tuple[Any, Any, Any, Message]:
    event = asyncio.run(schema.compile(APP)(message, propagate=True))
    return event.key, event.value, event.headers, event.message


@settings(max_examples=200)
@given(key=st.none() | st.binary(max_size=40), value=st.none() | st.binary(max_size=200), headers=headers)
def test_an_event_is_what_fausts_own_schema_makes(
    key: bytes | None, value: bytes | None, headers: Any
) -> None:
    tp = TP("leads.x", 3)
    message = Message(tp.topic, tp.partition, 7, 0.0, 0, headers, key, value, None, tp=tp)
    assert decoded(RawBytesSchema(), message) == decoded(FAUSTS, message)


def test_a_channel_cannot_make_it_decode_anything_but_raw_bytes() -> None:
    with pytest.raises(ValueError, match="raw bytes"):
        RawBytesSchema().update(value_type=str)
    with pytest.raises(ValueError, match="raw bytes"):
        RawBytesSchema().update(value_serializer="json")


def test_every_topic_of_a_stream_service_uses_it(tmp_path: Path) -> None:
    service = StreamService("t", ServiceSettings(data_dir=str(tmp_path), web_port=6066))
    for topic in (service.topic("leads.interactions"), service.internal_topic("t.own"), service.dlq):
        assert isinstance(topic.schema, RawBytesSchema)
        assert (topic.key_type, topic.value_type) == (bytes, bytes)
