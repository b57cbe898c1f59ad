"""Checks that hold the readers' views of the contracts (`schemas/views/`) to those contracts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import strategies as st
from pydantic import BaseModel

from schemas.enriched import EnrichedInteraction
from schemas.interaction import IdentityKind, Interaction, InteractionType, Source
from schemas.profile import EmailKind, FieldSource, Firmographics, LeadProfile
from schemas.views import read_as

T0 = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)

Views = dict[type[BaseModel], type[BaseModel]]  # view -> the contract it reads


def field_mismatches(view: type[BaseModel], contracts: Views) -> list[str]:
    """Where `view` differs from its contract: a field the contract lacks, or one with another type,
    constraints, requiredness or default. A nested view stands for the contract's nested model."""
    contract = contracts[view]
    wrong = [] if view.model_config == contract.model_config else ["model_config"]
    for name, field in view.model_fields.items():
        theirs = contract.model_fields.get(name)
        if theirs is None:
            wrong.append(f"{name}: not in {contract.__name__}")
            continue
        nested = contracts.get(field.annotation)  # type: ignore[arg-type]
        if (nested or field.annotation) != theirs.annotation:
            wrong.append(f"{name}: type")
        if field.is_required() != theirs.is_required() or field.metadata != theirs.metadata:
            wrong.append(f"{name}: constraints")
        if not field.is_required():
            ours, expected = (f.get_default(call_default_factory=True) for f in (field, theirs))
            if nested is not None:
                view_type: Any = field.annotation
                ours, expected = ours.model_dump(), projected(view_type, expected.model_dump(), contracts)
            if ours != expected:
                wrong.append(f"{name}: default")
    return wrong


def projected(view: type[BaseModel], data: dict[str, Any], contracts: Views) -> dict[str, Any]:
    """`data` (a contract's dump) with only the view's fields, nested views alike."""
    out = {}
    for name, field in view.model_fields.items():
        value = data[name]
        if field.annotation in contracts:
            value = projected(field.annotation, value, contracts)  # type: ignore[arg-type]
        out[name] = value
    return out


def assert_reads_the_same(view: type[BaseModel], record: BaseModel, contracts: Views) -> None:
    """The view decoded from the record's JSON holds the record's values."""
    assert read_as(view, record).model_dump() == projected(view, record.model_dump(), contracts)


# Records to read through the views, with every field a view keeps or drops varied.
texts = st.none() | st.text(max_size=12)
json_values = (
    st.none() | st.booleans() | st.integers() | st.text(max_size=8) | st.lists(st.integers(), max_size=3)
)


@st.composite
def profiles(draw: st.DrawFn, lead_id: str) -> LeadProfile:
    firm = Firmographics(
        company_name=draw(texts),
        domain=draw(texts),
        employee_range=draw(texts),
        employees=draw(st.none() | st.integers(0, 10**6)),
        industry=draw(texts),
        country=draw(texts),
    )
    sources = draw(st.dictionaries(st.sampled_from(["email", "phone", "company"]), st.just(0), max_size=3))
    return LeadProfile(
        lead_id=lead_id,
        email=draw(texts),
        email_kind=draw(st.sampled_from(EmailKind)),
        first_name=draw(texts),
        last_name=draw(texts),
        phone=draw(texts),
        company=draw(texts),
        job_title=draw(texts),
        seniority=draw(texts),
        department=draw(texts),
        country=draw(texts),
        timezone=draw(texts),
        firmographics=firm,
        is_competitor=draw(st.booleans()),
        marketing_consent=draw(st.booleans()),
        anonymous_ids=draw(st.lists(st.text(min_size=1, max_size=6), max_size=2)),
        field_sources={k: FieldSource(source="form_submit", event_id="e", updated_at=T0) for k in sources},
    )


@st.composite
def enriched_interactions(draw: st.DrawFn) -> EnrichedInteraction:
    at = T0 + timedelta(seconds=draw(st.integers(0, 10**6)))
    interaction = Interaction(
        event_id="ev-1",
        occurred_at=at,
        lead_id="e-1",
        type=draw(st.sampled_from(InteractionType)),
        identity=IdentityKind.EMAIL,
        source=draw(st.builds(Source, channel=texts, utm_source=texts, utm_campaign=texts)),
        received_at=at,
        properties=draw(st.dictionaries(st.text(max_size=8), json_values, max_size=4)),
    )
    return EnrichedInteraction(
        event_id=draw(st.sampled_from(["ev-1", "c-1"])),
        occurred_at=at,
        lead_id="e-1",
        interaction=interaction,
        profile=draw(profiles("e-1")),
        completes=draw(st.lists(st.text(min_size=1, max_size=6), max_size=2)),
        replay_of=draw(texts),
    )
