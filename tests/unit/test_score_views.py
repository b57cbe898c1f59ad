"""Score's view of the enriched interaction (schemas/views/score.py) holds to the contract: the same
fields, types, constraints and defaults, and the same values from any record."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from pydantic import BaseModel

from bench.records import enriched_stream
from schemas.enriched import EnrichedInteraction
from schemas.views.score import CONTRACTS, EnrichedView
from tests.contract_views import assert_reads_the_same, enriched_interactions, field_mismatches


@pytest.mark.parametrize("view", list(CONTRACTS), ids=lambda view: view.__name__)
def test_every_field_of_a_view_is_its_contracts_field(view: type[BaseModel]) -> None:
    assert field_mismatches(view, CONTRACTS) == []


def test_the_bench_records_read_the_same_through_the_view() -> None:
    for event in enriched_stream(300):
        assert_reads_the_same(EnrichedView, event, CONTRACTS)


@given(enriched_interactions())
@settings(max_examples=150)
def test_any_enriched_interaction_reads_the_same_through_its_view(event: EnrichedInteraction) -> None:
    assert_reads_the_same(EnrichedView, event, CONTRACTS)
