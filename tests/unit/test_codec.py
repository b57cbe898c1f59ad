"""The decoder turns anything unreadable into a dead letter with a reason, never an exception."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from schemas import DeadLetter, Interaction, RecordOrigin, SalesRecord
from schemas.sales import RepStatusUpdate, SalesActivity
from services.runtime.codec import MAX_PAYLOAD_CHARS, Decoder, encode

ORIGIN = RecordOrigin(topic="leads.interactions", partition=2, offset=41, key="e-1")
VALID = {
    "event_id": "ev-1",
    "occurred_at": "2026-11-21T09:30:00Z",
    "lead_id": "e-1",
    "type": "page_view",
    "identity": "anonymous",
    "received_at": "2026-11-21T09:30:01Z",
}
decoder: Decoder[Interaction] = Decoder(Interaction, "enrich")


def test_valid_record_decodes() -> None:
    record = decoder.decode(json.dumps(VALID).encode(), ORIGIN)
    assert isinstance(record, Interaction)
    assert record.lead_id == "e-1"


def test_unknown_fields_from_newer_writers_are_ignored() -> None:
    record = decoder.decode(json.dumps({**VALID, "added_in_v2": True}).encode(), ORIGIN)
    assert isinstance(record, Interaction)


def test_invalid_json_is_dead_lettered_with_origin() -> None:
    letter = decoder.decode(b'{"event_id": ', ORIGIN)
    assert isinstance(letter, DeadLetter)
    assert letter.reason == "invalid_json"
    assert letter.origin == ORIGIN
    assert letter.lead_id == "e-1"
    assert letter.service == "enrich"


def test_an_origin_given_as_a_function_is_built_only_for_a_dead_letter() -> None:
    built: list[RecordOrigin] = []

    def origin() -> RecordOrigin:
        built.append(ORIGIN)
        return ORIGIN

    assert isinstance(decoder.decode(json.dumps(VALID).encode(), origin), Interaction)
    assert built == []
    letter = decoder.decode(b"{", origin)
    assert isinstance(letter, DeadLetter)
    assert letter.origin == ORIGIN
    assert built == [ORIGIN]


def test_invalid_field_is_named() -> None:
    letter = decoder.decode(json.dumps({**VALID, "occurred_at": "soon"}).encode(), ORIGIN)
    assert isinstance(letter, DeadLetter)
    assert letter.reason == "validation_failed"
    assert letter.detail.startswith("occurred_at:")


def test_empty_value_is_dead_lettered() -> None:
    for raw in (b"", None):
        letter = decoder.decode(raw, ORIGIN)
        assert isinstance(letter, DeadLetter)
        assert letter.reason == "empty_value"


def test_payload_is_cut() -> None:
    letter = decoder.decode(b"x" * (MAX_PAYLOAD_CHARS * 2), ORIGIN)
    assert isinstance(letter, DeadLetter)
    assert len(letter.payload) == MAX_PAYLOAD_CHARS


def test_union_topics_decode_by_record_type() -> None:
    sales: Decoder[SalesActivity | RepStatusUpdate] = Decoder(SalesRecord, "route")
    rep = sales.decode(
        b'{"record_type": "rep_status", "event_id": "1", "occurred_at": "2026-11-21T09:30:00Z",'
        b' "rep_id": "rep-1", "available": false}',
        ORIGIN,
    )
    assert isinstance(rep, RepStatusUpdate)
    assert rep.available is False
    unknown = sales.decode(b'{"record_type": "gossip"}', ORIGIN)
    assert isinstance(unknown, DeadLetter)
    assert unknown.reason == "validation_failed"


@given(st.binary(max_size=512))
def test_random_bytes_never_raise(raw: bytes) -> None:
    result = decoder.decode(raw, ORIGIN)
    assert isinstance(result, (Interaction, DeadLetter))


@given(
    st.dictionaries(
        st.sampled_from([*list(VALID), "contact", "properties", "source"]),
        st.none()
        | st.booleans()
        | st.integers()
        | st.text(max_size=20)
        | st.lists(st.integers(), max_size=3),
    )
)
def test_near_valid_json_never_raises(overrides: dict[str, object]) -> None:
    result = decoder.decode(json.dumps({**VALID, **overrides}).encode(), ORIGIN)
    assert isinstance(result, (Interaction, DeadLetter))


def test_encode_writes_what_model_dump_json_writes() -> None:
    """Non-ASCII text, a nested model, None values and a datetime, byte for byte."""
    record = decoder.decode(
        json.dumps({**VALID, "contact": {"first_name": "Zoë", "country": None}}).encode(), ORIGIN
    )
    assert isinstance(record, Interaction)
    assert encode(record) == record.model_dump_json().encode()
    assert encode(record, exclude_none=True) == record.model_dump_json(exclude_none=True).encode()
    assert "Zoë".encode() in encode(record)
