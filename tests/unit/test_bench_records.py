"""The service benchmarks' records are what the pipeline really carries, and they exercise the rules
the cases rely on (hand-raisers are sales-ready, leads are many, records are valid contracts)."""

from __future__ import annotations

import random
from datetime import UTC, datetime

from bench import records
from bench.cases.services import nurture_backlog
from schemas.enriched import EnrichedInteraction
from schemas.interaction import Interaction, InteractionIn, InteractionType
from schemas.stage import StageChange
from schemas.topics import TopicName
from services.enrich import domain as enrich_domain
from services.enrich.config import load_config
from services.enrich.firmographics import DEFAULT_COMPANIES, LocalProvider, load_companies


def test_enriched_stream_spreads_over_many_leads_in_time_order() -> None:
    now = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
    events = records.enriched_stream(500, leads=50, seed=3, now=now)
    assert events == records.enriched_stream(500, leads=50, seed=3, now=now)
    assert len({e.lead_id for e in events}) == 50
    first: dict[str, str] = {}
    for event in events:
        first.setdefault(event.lead_id, event.interaction.type.value)
    assert set(first.values()) == {"form_submit"}
    assert [e.occurred_at for e in events] == sorted(e.occurred_at for e in events)
    key, value = records.record(events[0])
    assert EnrichedInteraction.model_validate_json(value).lead_id == key.decode()


def test_stage_changes_come_from_the_score_domain() -> None:
    """nurture's case reads the enriched stream and the stage changes score emits for it."""
    backlog = nurture_backlog(300)
    enriched = [EnrichedInteraction.model_validate_json(v) for _, v in backlog[TopicName.ENRICHED]]
    changes = [StageChange.model_validate_json(v) for _, v in backlog[TopicName.STAGE_CHANGES]]
    assert len(enriched) == 300
    assert {c.to_stage for c in changes} >= {"iql", "mql"}
    assert {c.lead_id for c in changes} <= {e.lead_id for e in enriched}
    hand_raisers = records.hand_raiser_changes(40)
    assert len(hand_raisers) == 40 and all(c.sales_ready for c in hand_raisers)
    assert StageChange.model_validate_json(records.record(hand_raisers[0])[1]).sales_ready


def test_interactions_are_what_capture_publishes() -> None:
    items = records.interactions(300, seed=5)
    assert len(items) == 300
    assert {i.identity.value for i in items} == {"anonymous", "email"}
    assert all(isinstance(Interaction.model_validate_json(records.record(i)[1]), Interaction) for i in items)


def test_hand_raiser_is_a_valid_public_event_with_a_good_fit_company() -> None:
    firm = records.good_fit_companies()[0]
    assert (firm.employees or 0) >= 500
    event = records.hand_raiser("run1", 3, firm, datetime.now(UTC))
    parsed = InteractionIn.model_validate(event)
    assert parsed.type.value == "demo_request"
    lead = records.hand_raiser_lead_id(event)
    assert lead.startswith("e-") and lead != records.hand_raiser_lead_id(
        records.hand_raiser("run1", 4, firm, datetime.now(UTC))
    )


def test_a_profile_has_the_shape_enrich_gives_a_form_fill() -> None:
    """Score's cost follows its records' size (provenance with a datetime per field, names, phone):
    the bench's profile sets the fields, provenance and anonymous id enrich's pure domain sets for
    the same form fill, with the same derived values."""
    at = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
    for seed in range(20):
        profile = records.profile_for("e-b-0000001", random.Random(seed), records.companies(), at=at)
        fill = records.enriched_interaction(
            profile.lead_id, InteractionType.FORM_SUBMIT, at, profile, event_id="e-b-0000001-1"
        ).interaction
        config = load_config()
        applied = enrich_domain.applied_profile(None, fill.lead_id, fill, config)
        wanted = enrich_domain.lookup_needed(None, fill.lead_id, fill, config, applied)
        provider = LocalProvider(load_companies(DEFAULT_COMPANIES))
        lookup = provider.find(wanted) if wanted else None
        made = (
            enrich_domain.enrich(None, fill.lead_id, fill, lookup, config, applied=applied).records[0].profile
        )

        assert profile.model_dump(exclude={"field_sources"}) == made.model_dump(exclude={"field_sources"})
        assert profile.field_sources == made.field_sources
