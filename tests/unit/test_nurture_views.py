"""Nurture's views of the contracts it reads (services/nurture/views.py) hold to those contracts:
the same fields, types, constraints and defaults, and the same values from any record."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from bench.records import enriched_stream, stage_changes
from schemas.enriched import EnrichedInteraction
from schemas.interaction import IdentityKind, Interaction, InteractionType, Source
from schemas.profile import EmailKind, FieldSource, Firmographics, LeadProfile
from schemas.stage import LifecycleStage, Scores, StageChange, StageKind, Temperature, Trigger
from services.nurture.views import CONTRACTS, EnrichedView, StageChangeView
from services.runtime.codec import encode

T0 = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)


@pytest.mark.parametrize("view", list(CONTRACTS), ids=lambda view: view.__name__)
def test_every_field_of_a_view_is_its_contracts_field(view: type[BaseModel]) -> None:
    contract = CONTRACTS[view]
    assert view.model_config == contract.model_config
    for name, field in view.model_fields.items():
        assert name in contract.model_fields, f"{view.__name__}.{name} is not in {contract.__name__}"
        theirs = contract.model_fields[name]
        nested = CONTRACTS.get(field.annotation)  # type: ignore[arg-type]  # a view stands for its contract
        assert (nested or field.annotation) == theirs.annotation, name
        assert field.is_required() == theirs.is_required(), name
        assert field.metadata == theirs.metadata, name
        if not field.is_required():
            ours, expected = (f.get_default(call_default_factory=True) for f in (field, theirs))
            if nested is not None:
                ours, expected = ours.model_dump(), _projected(field.annotation, expected.model_dump())  # type: ignore[arg-type]
            assert ours == expected, name


def _projected(view: type[BaseModel], data: dict[str, Any]) -> dict[str, Any]:
    """`data` (a contract's dump) with only the view's fields, nested views alike."""
    out = {}
    for name, field in view.model_fields.items():
        value = data[name]
        if isinstance(field.annotation, type) and field.annotation in CONTRACTS:
            value = _projected(field.annotation, value)
        out[name] = value
    return out


def _same_reading(view: type[BaseModel], record: BaseModel) -> None:
    seen = view.model_validate_json(encode(record))
    assert seen.model_dump() == _projected(view, record.model_dump())


def test_the_bench_records_read_the_same_through_the_views() -> None:
    """Records as enrich and score make them: profiles with provenance, scores, reasons, BANT."""
    events = list(enriched_stream(300))
    changes = stage_changes(events)
    assert changes, "the stream makes stage changes"
    for event in events:
        _same_reading(EnrichedView, event)
    for change in changes:
        _same_reading(StageChangeView, change)


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


@given(
    st.data(),
    st.sampled_from(InteractionType),
    st.dictionaries(st.text(max_size=8), json_values, max_size=4),
    st.integers(0, 10**6),
)
@settings(max_examples=150)
def test_any_enriched_interaction_reads_the_same_through_its_view(
    data: st.DataObject, kind: InteractionType, properties: dict[str, Any], seconds: int
) -> None:
    at = T0 + timedelta(seconds=seconds)
    interaction = Interaction(
        event_id="ev-1",
        occurred_at=at,
        lead_id="e-1",
        type=kind,
        identity=IdentityKind.EMAIL,
        received_at=at,
        properties=properties,
    )
    event = EnrichedInteraction(
        event_id="ev-1",
        occurred_at=at,
        lead_id="e-1",
        interaction=interaction,
        profile=data.draw(profiles("e-1")),
    )
    _same_reading(EnrichedView, event)


@given(
    st.data(),
    st.sampled_from(LifecycleStage),
    st.sampled_from(Temperature),
    st.booleans(),
    st.builds(Source, channel=texts, utm_source=texts),
)
@settings(max_examples=150)
def test_any_stage_change_reads_the_same_through_its_view(
    data: st.DataObject, lifecycle: LifecycleStage, temperature: Temperature, ready: bool, source: Source
) -> None:
    change = StageChange(
        event_id="sc-1",
        occurred_at=T0,
        lead_id="e-1",
        kind=StageKind.LIFECYCLE,
        from_stage="raw",
        to_stage=lifecycle.value,
        temperature=temperature,
        lifecycle=lifecycle,
        sales_ready=ready,
        scores=Scores(fit=1, engagement=2, total=3),
        trigger=Trigger(event_id="t", type="form_submit", occurred_at=T0),
        profile=data.draw(profiles("e-1")),
        source=source,
    )
    _same_reading(StageChangeView, change)
