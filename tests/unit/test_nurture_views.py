"""Nurture's views of the contracts it reads (schemas/views/nurture.py) hold to those contracts:
the same fields, types, constraints and defaults, and the same values from any record."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from bench.records import enriched_stream, stage_changes
from schemas.enriched import EnrichedInteraction
from schemas.interaction import Source
from schemas.stage import LifecycleStage, Temperature
from schemas.views.nurture import CONTRACTS, EnrichedView, StageChangeView
from tests.contract_views import (
    assert_reads_the_same,
    enriched_interactions,
    field_mismatches,
    profiles,
    texts,
)
from tests.unit.test_nurture_domain import LEAD, stage


@pytest.mark.parametrize("view", list(CONTRACTS), ids=lambda view: view.__name__)
def test_every_field_of_a_view_is_its_contracts_field(view: type[BaseModel]) -> None:
    assert field_mismatches(view, CONTRACTS) == []


def _same_reading(view: type[BaseModel], record: BaseModel) -> None:
    assert_reads_the_same(view, record, CONTRACTS)


def test_the_bench_records_read_the_same_through_the_views() -> None:
    """Records as enrich and score make them: profiles with provenance, scores, reasons, BANT."""
    events = list(enriched_stream(300))
    changes = stage_changes(events)
    assert changes, "the stream makes stage changes"
    for event in events:
        _same_reading(EnrichedView, event)
    for change in changes:
        _same_reading(StageChangeView, change)


@given(enriched_interactions())
@settings(max_examples=150)
def test_any_enriched_interaction_reads_the_same_through_its_view(event: EnrichedInteraction) -> None:
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
    change = stage(lifecycle, temperature, sales_ready=ready).model_copy(
        update={"profile": data.draw(profiles(LEAD)), "source": source}
    )
    _same_reading(StageChangeView, change)
