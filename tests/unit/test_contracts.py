"""The event contracts: envelope on every record, clear validation, generated files up to date."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import yaml
from pydantic import ValidationError

from schemas import TOPICS, InteractionIn, TopicName
from schemas.base import LeadEvent
from schemas.generate import ASYNCAPI_FILE, JSONSCHEMA_DIR, expected_files
from schemas.sales import RepStatusUpdate
from services.runtime.errors import field_problems

ENVELOPE = {"schema_version", "event_id", "occurred_at"}


def test_topic_catalogue_names_every_topic_once() -> None:
    assert sorted(spec.name for spec in TOPICS) == sorted(TopicName)
    assert {str(name) for name in TopicName} == {
        "leads.interactions",
        "leads.enriched",
        "leads.stage-changes",
        "leads.handoffs",
        "leads.sla",
        "sales.activity",
        "nurture.outbox",
        "leads.dlq",
        "privacy.requests",
    }


@pytest.mark.parametrize("spec", TOPICS, ids=lambda spec: str(spec.name))
def test_every_message_carries_the_envelope(spec: object) -> None:
    for model in spec.messages:  # type: ignore[attr-defined]
        fields = set(model.model_fields)
        assert fields >= ENVELOPE, model.__name__
        if model is RepStatusUpdate:
            assert "rep_id" in fields  # keyed by rep id, the one non-lead record
        else:
            assert "lead_id" in fields, model.__name__
        for name, field in model.model_fields.items():
            if name in {"schema_version", "event_id", "occurred_at", "lead_id"} and issubclass(
                model, LeadEvent
            ):
                assert field.description, f"{model.__name__}.{name} has no description"


def test_generated_files_are_current() -> None:
    stale = [
        str(path) for path, text in expected_files().items() if not path.exists() or path.read_text() != text
    ]
    extra = sorted({p.name for p in JSONSCHEMA_DIR.glob("*.json")} - {p.name for p in expected_files()})
    assert not stale and not extra, f"run `make schemas`: stale {stale}, extra {extra}"


def test_asyncapi_lists_every_topic_with_publisher_and_subscriber() -> None:
    document = yaml.safe_load(ASYNCAPI_FILE.read_text())
    assert document["asyncapi"].startswith("3.")
    addresses = {channel["address"] for channel in document["channels"].values()}
    assert addresses == {str(name) for name in TopicName}
    for spec in TOPICS:
        actions = {
            (op["action"], op["x-service"])
            for op in document["operations"].values()
            if op["channel"]["$ref"].endswith(str(spec.name).replace(".", "_").replace("-", "_"))
        }
        assert {a for a, _ in actions} == {"send", "receive"}, spec.name
        assert {s for a, s in actions if a == "send"} == set(spec.publishers)


def _event(**overrides: object) -> dict[str, object]:
    base: dict[str, object] = {"type": "page_view", "occurred_at": "2026-11-21T09:30:00+01:00"}
    base.update(overrides)
    return base


def test_public_event_needs_an_identity() -> None:
    with pytest.raises(ValidationError) as info:
        InteractionIn.model_validate(_event())
    assert "anonymous_id or contact.email" in str(info.value)
    assert InteractionIn.model_validate(_event(anonymous_id=" anon-1 ")).anonymous_id == "anon-1"
    with pytest.raises(ValidationError, match=r"anonymous_id or contact\.email"):
        InteractionIn.model_validate(_event(anonymous_id="   "))


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        (_event(anonymous_id="a", type="teleport"), "type"),
        (_event(anonymous_id="a", occurred_at="yesterday"), "occurred_at"),
        (_event(anonymous_id="a", occurred_at="2026-11-21T09:30:00"), "occurred_at"),
        (_event(contact={"email": "not-an-address"}), "contact.email"),
        (_event(anonymous_id="a", colour="blue"), "colour"),
        (_event(anonymous_id="a", consent={"marketing_email": "perhaps"}), "consent.marketing_email"),
    ],
)
def test_invalid_public_events_name_the_field(payload: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError) as info:
        InteractionIn.model_validate(payload)
    assert field in [p["field"] for p in field_problems(info.value)]


def test_a_repeated_address_gets_the_same_answer_each_time() -> None:
    """The syntax check is remembered per address (schemas/interaction.py): a remembered answer must
    be the address's own, for a bad address as for a good one."""
    for _ in range(2):
        with pytest.raises(ValidationError, match=r"not a valid email address: .*@"):
            InteractionIn.model_validate(_event(contact={"email": "jane.example.com"}))
        with pytest.raises(ValidationError, match=r"not a valid email address: .*period"):
            InteractionIn.model_validate(_event(contact={"email": "jane@example..com"}))
        event = InteractionIn.model_validate(_event(contact={"email": "jane@example.com"}))
        assert event.contact is not None and event.contact.email == "jane@example.com"


def test_blank_contact_fields_are_missing_not_empty() -> None:
    event = InteractionIn.model_validate(
        _event(contact={"email": "  jane@example.com ", "first_name": "   ", "company": ""})
    )
    assert event.contact.email == "jane@example.com"
    assert event.contact.first_name is None
    assert event.contact.company is None


def test_occurred_at_keeps_its_offset_and_compares_in_utc() -> None:
    event = InteractionIn.model_validate(_event(anonymous_id="a"))
    assert event.occurred_at == datetime(2026, 11, 21, 8, 30, tzinfo=UTC)
