"""Score rules by example: fit, caps, stages, BANT, sales moves, decay demotion, reasons."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from schemas.profile import EmailKind, Firmographics, LeadProfile
from schemas.stage import LifecycleStage, StageKind, Temperature
from schemas.views.score import EnrichedView
from services.score import decay, domain
from services.score.rules import ScoringRules
from services.score.state import LeadState
from tests.model_tree import none_values_not_defaulting_to_none
from tests.unit.test_score_helpers import LEAD, T0, enriched, rules, sales, vp_profile

R = rules()
DAY = 86400.0


def run(events: list, state: LeadState | None = None, r: ScoringRules = R) -> tuple[LeadState, list]:
    changes = []
    for event in events:
        if hasattr(event, "interaction"):
            update = domain.apply_interaction(state, event, r)
        else:
            update = domain.apply_sales_activity(state, event, r)
        state = update.state
        changes.extend(update.changes)
    assert state is not None
    return state, changes


def labels(change) -> list[str]:  # type: ignore[no-untyped-def]
    return [f"{r.rule} {r.points:+g}" for r in change.reasons]


def test_fit_points_from_profile() -> None:
    state, _ = run([enriched("page_view", profile=vp_profile())])
    fit, reasons = domain.fit_score(state, R)
    names = {r.rule: r.points for r in reasons}
    assert names == {
        "seniority:vp": 15,
        "department:marketing": 10,
        "company_size": 10,
        "industry:software": 10,
        "territory": 5,
        "email:business": 10,
        "bant:authority": 5,
    }
    assert fit == 65


def test_negative_fit_and_employee_range() -> None:
    profile = LeadProfile(
        lead_id=LEAD,
        email_kind=EmailKind.FREE,
        seniority="student",
        firmographics=Firmographics(employee_range="1,000-5,000"),
    )
    state, _ = run([enriched("page_view", profile=profile)])
    fit, reasons = domain.fit_score(state, R)
    assert {r.rule: r.points for r in reasons} == {
        "seniority:student": -20,
        "email:free": -5,
        "company_size": 15,
    }
    assert fit == -10


def test_page_views_keep_a_lead_cold_and_caps_hold() -> None:
    events = [
        enriched("page_view", i * 60.0, properties={"url": f"/p{i}"}, profile=vp_profile()) for i in range(20)
    ]
    state, changes = run(events)
    assert state.temperature == Temperature.COLD
    assert state.points_by_rule == {"page_view": 10.0}  # cap 5 a day at 2 points
    assert [c.kind for c in changes] == [StageKind.LIFECYCLE]  # raw -> iql only
    assert changes[0].to_stage == "iql"


def test_cap_resets_next_day() -> None:
    events = [enriched("page_view", d * DAY + i, profile=vp_profile()) for d in range(2) for i in range(7)]
    state, _ = run(events)
    assert state.points_by_rule == {"page_view": 20.0}


def test_the_done_when_story() -> None:
    profile = vp_profile()
    state, changes = run(
        [enriched("page_view", i * 60.0, properties={"url": "/blog"}, profile=profile) for i in range(3)]
    )
    assert state.temperature == Temperature.COLD and state.lifecycle == LifecycleStage.IQL
    state, changes = run(
        [
            enriched("content_download", 600, properties={"asset_type": "whitepaper"}, profile=profile),
            enriched("page_view", 700, properties={"url": "https://x.io/pricing"}, profile=profile),
        ],
        state,
    )
    assert state.lifecycle == LifecycleStage.MQL
    assert state.temperature == Temperature.WARM
    mql = next(c for c in changes if c.kind == StageKind.LIFECYCLE)
    assert mql.sales_ready and mql.from_stage == "iql" and mql.to_stage == "mql"
    assert "whitepaper +20" in labels(mql) and "seniority:vp +15" in labels(mql)
    assert mql.bant.authority is True and mql.bant.budget is None

    state, changes = run([enriched("demo_request", 800, profile=profile)], state)
    assert [(c.kind, c.from_stage, c.to_stage) for c in changes] == [(StageKind.TEMPERATURE, "warm", "hot")]
    assert labels(changes[0])[0] == "demo_request +50"
    assert changes[0].trigger.type == "demo_request"
    assert changes[0].bant.need is True

    # quiet: the timer's check before the due time does nothing, at the due time demotes once
    assert state.next_due is not None
    before = domain.apply_decay_check(state, domain.from_epoch(state.next_due - 1), R)
    assert before.changes == [] and before.state == state
    due = domain.apply_decay_check(state, domain.from_epoch(state.next_due), R)
    assert [(c.kind, c.from_stage, c.to_stage) for c in due.changes] == [
        (StageKind.TEMPERATURE, "hot", "warm")
    ]
    assert any(label.startswith("decay -") for label in labels(due.changes[0]))
    assert due.changes[0].trigger.type == "decay"
    fit, _ = domain.fit_score(due.state, R)
    assert fit + domain.engagement_at(due.state, state.next_due, R) < R.thresholds.hot
    again = domain.apply_decay_check(due.state, domain.from_epoch(state.next_due + 1), R)
    assert again.changes == []
    # and later it goes cold
    assert due.state.next_due is not None and due.state.next_due > state.next_due
    cold = domain.apply_decay_check(due.state, domain.from_epoch(due.state.next_due), R)
    assert [c.to_stage for c in cold.changes] == ["cold"]
    assert cold.state.next_due is None


def test_hand_raiser_is_hot_at_once_even_with_a_low_score() -> None:
    profile = LeadProfile(lead_id=LEAD, email="a@b.io", email_kind=EmailKind.BUSINESS)
    state, changes = run([enriched("demo_request", profile=profile)])
    assert state.temperature == Temperature.HOT and state.lifecycle == LifecycleStage.MQL
    assert {(c.kind, c.to_stage) for c in changes} == {
        (StageKind.TEMPERATURE, "hot"),
        (StageKind.LIFECYCLE, "mql"),
    }
    assert all(c.sales_ready for c in changes)
    # hot only while the hand-raise window lasts
    assert state.next_due == pytest.approx(T0.timestamp() + R.hand_raisers.hot_for.total_seconds(), abs=0.01)


def test_hand_raiser_with_unacceptable_fit_is_not_fast_tracked() -> None:
    r = rules(hand_raisers=R.hand_raisers.model_copy(update={"min_fit": 50}))
    profile = LeadProfile(lead_id=LEAD, email="a@gmail.com", email_kind=EmailKind.FREE)
    state, _ = run([enriched("demo_request", profile=profile)], r=r)
    assert state.temperature == Temperature.COLD
    assert state.lifecycle == LifecycleStage.IQL


def test_mql_needs_fit_and_engagement() -> None:
    weak = LeadProfile(lead_id=LEAD, email="x@gmail.com", email_kind=EmailKind.FREE)
    events = [
        enriched("webinar_attended", 0, profile=weak),
        enriched("content_download", 10, properties={"asset_type": "whitepaper"}, profile=weak),
    ]
    state, _ = run(events)
    assert domain.raw_engagement(state) > R.thresholds.mql_engagement
    assert state.lifecycle == LifecycleStage.IQL
    state, _ = run([enriched("page_view", 20, profile=vp_profile())], state)
    assert state.lifecycle == LifecycleStage.MQL


def test_pql_from_trial_and_usage() -> None:
    weak = LeadProfile(lead_id=LEAD, email="x@gmail.com", email_kind=EmailKind.FREE)
    state, _ = run(
        [
            enriched("trial_signup", 0, profile=weak),
            enriched("product_usage", 10, properties={"usage": 4}, profile=weak),
        ]
    )
    assert state.lifecycle == LifecycleStage.IQL
    state, changes = run([enriched("product_usage", 20, properties={"usage": "12"}, profile=weak)], state)
    assert state.lifecycle == LifecycleStage.PQL
    assert changes[-1].sales_ready and changes[-1].reasons[0].rule == "product_qualified"


def test_usage_without_trial_is_not_pql() -> None:
    state, _ = run([enriched("product_usage", 0, properties={"usage": 99}, profile=vp_profile())])
    assert state.lifecycle != LifecycleStage.PQL


def test_competitor_is_disqualified_and_stays_cold() -> None:
    state, changes = run([enriched("demo_request", profile=vp_profile(is_competitor=True))])
    assert state.lifecycle == LifecycleStage.DISQUALIFIED
    assert state.temperature == Temperature.COLD
    assert changes[0].reasons[0].rule == "disqualified:competitor"
    state, changes = run([enriched("demo_request", 60, profile=vp_profile())], state)
    assert state.lifecycle == LifecycleStage.DISQUALIFIED and changes == []


def test_sales_moves_and_recycling() -> None:
    state, _ = run([enriched("demo_request", profile=vp_profile())])
    state, changes = run([sales("accepted", 10)], state)
    assert [(c.from_stage, c.to_stage) for c in changes] == [("mql", "sql")]
    assert not changes[0].sales_ready and changes[0].trigger.type == "sales:accepted"
    state, changes = run([sales("meeting_booked", 20)], state)
    assert state.lifecycle == LifecycleStage.OPPORTUNITY
    # a page view never moves it backwards
    state, changes = run([enriched("page_view", 30, profile=vp_profile())], state)
    assert state.lifecycle == LifecycleStage.OPPORTUNITY
    state, changes = run([sales("lost", 40)], state)
    assert state.lifecycle == LifecycleStage.RECYCLED
    assert state.hand_raised_at is None
    # recycled leads requalify as MQL only with engagement earned after recycling
    state, changes = run([enriched("webinar_attended", 50, profile=vp_profile())], state)
    assert state.lifecycle == LifecycleStage.RECYCLED
    state, changes = run([enriched("webinar_registered", 60, profile=vp_profile())], state)
    assert state.lifecycle == LifecycleStage.MQL
    state, _ = run([sales("won", 60)], state)
    assert state.lifecycle == LifecycleStage.CUSTOMER
    state, changes = run([sales("rejected", 70)], state)
    assert state.lifecycle == LifecycleStage.CUSTOMER and changes == []


def test_rejected_mql_is_recycled() -> None:
    state, _ = run([enriched("demo_request", profile=vp_profile())])
    state, changes = run([sales("rejected", 10)], state)
    assert state.lifecycle == LifecycleStage.RECYCLED
    assert any(c.kind == StageKind.LIFECYCLE and c.to_stage == "recycled" for c in changes)


@pytest.mark.parametrize("release", ["rejected", "lost"])
def test_a_product_qualified_lead_sales_releases_is_recycled_until_it_uses_the_product_more(
    release: str,
) -> None:
    """Without it, the usage sales already saw re-qualified the lead at once: rejected and lost were
    ignored, and a lost opportunity was handed straight back to sales."""
    weak = LeadProfile(lead_id=LEAD, email="x@gmail.com", email_kind=EmailKind.FREE)
    used = [
        enriched("trial_signup", 0, profile=weak),
        enriched("product_usage", 10, properties={"usage": 12}, profile=weak),
    ]
    state, _ = run(used)
    assert state.lifecycle == LifecycleStage.PQL
    if release == "lost":
        state, _ = run([sales("accepted", 20), sales("opportunity_created", 30)], state)
    state, changes = run([sales(release, 40)], state)
    assert state.lifecycle == LifecycleStage.RECYCLED
    assert [(c.to_stage, c.sales_ready) for c in changes if c.kind == StageKind.LIFECYCLE] == [
        ("recycled", False)
    ]
    state, changes = run([enriched("product_usage", 50, properties={"usage": 12}, profile=weak)], state)
    assert state.lifecycle == LifecycleStage.RECYCLED and changes == []  # the same usage again
    state, changes = run([enriched("product_usage", 60, properties={"usage": 13}, profile=weak)], state)
    assert state.lifecycle == LifecycleStage.PQL
    assert changes[-1].sales_ready and changes[-1].reasons[0].rule == "product_qualified"


def test_sales_can_work_a_disqualified_lead() -> None:
    """Sales may accept a lead the rules disqualified (a competitor evaluating, a student buying for
    a company): the rules do not take it back, and sales' own moves go on from there."""
    competitor = vp_profile(is_competitor=True)
    state, _ = run([enriched("demo_request", profile=competitor)])
    assert state.lifecycle == LifecycleStage.DISQUALIFIED
    state, changes = run([sales("accepted", 10)], state)
    assert state.lifecycle == LifecycleStage.SQL
    assert [(c.from_stage, c.to_stage) for c in changes if c.kind == StageKind.LIFECYCLE] == [
        ("disqualified", "sql")
    ]
    state, _ = run([enriched("page_view", 20, profile=competitor)], state)
    assert state.lifecycle == LifecycleStage.SQL
    state, _ = run([sales("meeting_booked", 30)], state)
    assert state.lifecycle == LifecycleStage.OPPORTUNITY
    state, _ = run([sales("lost", 40)], state)  # released: the rules apply again
    assert state.lifecycle == LifecycleStage.DISQUALIFIED


def test_bant_from_form_and_sales() -> None:
    props = {"budget_range": "10k-50k", "purchase_timeline": "next year"}
    state, _ = run([enriched("form_submit", properties=props, profile=vp_profile())])
    assert state.bant.budget is True and state.bant.timing is False and state.bant.authority is True
    fit_before, _ = domain.fit_score(state, R)
    state, _ = run([sales("bant_updated", 10, properties={"timing": True, "need": "yes"})], state)
    assert state.bant.timing is True and state.bant.need is True
    fit_after, _ = domain.fit_score(state, R)
    assert fit_after == fit_before + 10


def test_unsubscribe_never_makes_engagement_negative() -> None:
    state, _ = run([enriched("unsubscribe", profile=vp_profile())])
    assert domain.raw_engagement(state) == -20
    assert domain.engagement_at(state, T0.timestamp() + 5, R) == 0


def test_duplicate_event_changes_nothing() -> None:
    event = enriched("demo_request", profile=vp_profile())
    state, _ = run([event])
    update = domain.apply_interaction(state, event, R)
    assert update.duplicate and update.state == state and update.changes == []
    sale = sales("accepted", 5)
    state, _ = run([sale], state)
    again = domain.apply_sales_activity(state, sale, R)
    assert again.duplicate and again.state == state


def completion_of(partial: EnrichedView, profile: LeadProfile) -> EnrichedView:
    """The record enrich publishes when a late lookup completes `partial` (a new id, the same interaction)."""
    return partial.model_copy(
        update={"event_id": f"c-{partial.event_id}", "completes": [partial.event_id], "profile": profile}
    )


def test_a_completion_brings_the_profile_without_counting_the_interaction_again() -> None:
    """enrich re-emits a partial record's interaction once a late firmographics lookup answers."""
    partial = enriched(
        "content_download",
        properties={"asset_type": "whitepaper"},
        profile=vp_profile(firmographics=Firmographics()),
    )
    state, _ = run([partial])
    update = domain.apply_interaction(state, completion_of(partial, vp_profile()), R)
    assert update.outcome == "completed" and update.rule is None
    assert update.state.points_by_rule == state.points_by_rule
    assert update.state.engagement_by_rule == state.engagement_by_rule
    assert update.state.profile == vp_profile()
    assert update.fit == domain.fit_of(update.state, R) > domain.fit_of(state, R)
    # and once more (a redelivery) changes nothing
    assert domain.apply_interaction(update.state, completion_of(partial, vp_profile()), R).duplicate


def test_a_completed_profile_can_fast_track_a_hand_raiser() -> None:
    """A demo request whose company was unknown until the late lookup answered is handed to sales then."""
    r = rules(hand_raisers=R.hand_raisers.model_copy(update={"min_fit": 30}))
    partial = enriched("demo_request", profile=vp_profile(firmographics=Firmographics(), seniority=None))
    state, _ = run([partial], r=r)
    assert state.lifecycle != LifecycleStage.MQL and state.hand_raised_at is None
    update = domain.apply_interaction(state, completion_of(partial, vp_profile()), r)
    assert update.state.lifecycle == LifecycleStage.MQL and update.state.temperature == Temperature.HOT
    assert {(c.kind, c.to_stage) for c in update.changes} >= {(StageKind.LIFECYCLE, "mql")}
    assert update.state.points_by_rule == state.points_by_rule


def test_recent_event_ids_are_bounded() -> None:
    r = rules(recent_event_ids=16)
    state, _ = run([enriched("email_open", float(i), event_id=f"e{i}") for i in range(40)], r=r)
    assert len(state.recent_event_ids) == 16 and state.recent_event_ids[-1] == "e39"


def test_late_event_is_applied_at_its_own_time() -> None:
    h = R.half_life_seconds
    state, _ = run([enriched("webinar_attended", h, profile=vp_profile())])
    state, _ = run([enriched("demo_request", 0.0, profile=vp_profile())], state)
    assert domain.raw_engagement(state) == pytest.approx(25 + 50 * 0.5)
    assert state.engagement_at == T0.timestamp() + h


def test_event_beyond_the_late_window_is_ignored() -> None:
    state, _ = run([enriched("webinar_attended", 40 * DAY)])
    update = domain.apply_interaction(state, enriched("demo_request", 0.0), R)
    assert update.outcome == "stale"
    assert domain.raw_engagement(update.state) == domain.raw_engagement(state)


def test_stage_change_ids_are_deterministic() -> None:
    a = run([enriched("demo_request", profile=vp_profile())])[1]
    b = run([enriched("demo_request", profile=vp_profile())])[1]
    assert [c.event_id for c in a] == [c.event_id for c in b]
    assert len({c.event_id for c in a}) == len(a)


def test_state_round_trips_as_json() -> None:
    state, _ = run(
        [
            enriched("demo_request", profile=vp_profile()),
            sales("bant_updated", 1, properties={"budget": True}),
        ]
    )
    assert LeadState.loads(state.dumps()) == state


def test_state_fields_that_may_be_none_default_to_none() -> None:
    """`LeadState.dumps` leaves None values out; that loses nothing only while this holds in every
    model the state holds."""
    seen, wrong = none_values_not_defaulting_to_none(LeadState)
    assert seen >= {"LeadState", "LeadProfile", "CapSlot", "BantState", "Source"}
    assert wrong == []


def test_state_json_leaves_out_absent_values() -> None:
    state, _ = run([enriched("page_view")])
    stored = json.loads(state.dumps())
    assert "hand_raised_at" not in stored and "next_due" not in stored
    assert LeadState.loads(state.dumps()) == state


def test_decay_crossing_matches_decay() -> None:
    after = decay.crossing_after(100.0, 25.0, 10.0)
    assert after == pytest.approx(20.0)
    assert decay.crossing_after(10.0, 25.0, 10.0) == 0.0
    assert decay.crossing_after(10.0, 0.0, 10.0) is None


def test_next_due_none_when_fit_alone_keeps_it_warm() -> None:
    profile = vp_profile()
    r = rules(thresholds=R.thresholds.model_copy(update={"warm": 50}))
    state, _ = run([enriched("page_view", profile=profile)], r=r)
    assert state.temperature == Temperature.WARM and state.next_due is None
    later = domain.apply_decay_check(state, T0 + timedelta(days=365), r)
    assert later.changes == []


# --- found by a review (stop 43): each failed before its fix ---------------------------------------


@pytest.mark.parametrize("usage", ["1e999", "Infinity", "-inf", "NaN", 1e308 * 10])
def test_a_usage_that_is_no_finite_number_is_ignored_and_the_state_loads_again(usage: object) -> None:
    """Infinity was stored as usage, written as JSON null, and then crashed the worker on every load."""
    state, _ = run([enriched("trial_signup"), enriched("product_usage", 10, properties={"usage": usage})])
    assert state.usage == 0.0
    assert LeadState.loads(state.dumps()) == state
    assert LeadState.loads_without_profile(state.dumps()).usage == 0.0


def test_a_new_interaction_that_also_completes_earlier_records_scores_its_own_points() -> None:
    """Enrich lists the partial records a new interaction's own lookup completed (`completes`); only
    a re-emission of an interaction already counted (its id among them) goes without points."""
    partial = enriched("page_view", profile=vp_profile(firmographics=Firmographics()))
    state, _ = run([partial])
    live = enriched("demo_request", 10, profile=vp_profile()).model_copy(
        update={"completes": [partial.event_id]}
    )
    update = domain.apply_interaction(state, live, R)
    assert update.outcome == "scored" and update.rule == "demo_request"
    assert update.state.points_by_rule["demo_request"] > 0


def test_a_reps_authority_assessment_is_not_undone_by_the_next_page_view() -> None:
    state, _ = run([enriched("page_view", profile=vp_profile())])
    assert state.bant.authority is True  # inferred from the VP's seniority
    state, _ = run([sales("bant_updated", 10, properties={"authority": False})], state)
    state, _ = run([enriched("page_view", 20, profile=vp_profile())], state)
    assert state.bant.authority is False
    state, _ = run([enriched("form_submit", 30, properties={"role": "user"}, profile=vp_profile())])
    state, _ = run([enriched("email_open", 40, profile=vp_profile())], state)
    assert state.bant.authority is False


def test_sales_moves_are_taken_in_the_order_sales_made_them() -> None:
    """An `accepted` reported after a later `rejected` does not take the recycled lead back to SQL."""
    state, _ = run([enriched("demo_request", profile=vp_profile())])
    state, _ = run([sales("rejected", 200)], state)
    state, changes = run([sales("accepted", 100)], state)
    assert state.lifecycle == LifecycleStage.RECYCLED and changes == []
    state, changes = run([sales("accepted", 300)], state)
    assert state.lifecycle == LifecycleStage.SQL


def test_a_disqualifying_country_is_the_company_s_when_the_person_gave_none() -> None:
    """As the territory fit reads it: the person's country, else the company's."""
    fit = R.fit.model_copy(
        update={"disqualify": R.fit.disqualify.model_copy(update={"countries": frozenset({"US"})})}
    )
    r = rules(fit=fit)
    us = vp_profile(
        country=None, firmographics=Firmographics(employees=500, industry="Software", country="US")
    )
    state, _ = run([enriched("page_view", profile=us)], r=r)
    assert state.lifecycle == LifecycleStage.DISQUALIFIED


def test_reasons_add_up_when_negative_points_meet_the_floor_at_zero() -> None:
    """The floor that holds engagement at zero is its own reason; "decay" never raises a score."""
    state, _ = run([enriched("page_view", properties={"url": "/pricing"}, profile=vp_profile())])
    update = domain.apply_interaction(state, enriched("unsubscribe", 60, profile=vp_profile()), R)
    at = update.state.engagement_at
    assert at is not None
    _, fit_reasons = domain.fit_score(update.state, R)
    reasons = domain.reasons_at(update.state, at, fit_reasons, rules(top_reasons=50))
    engagement = {r.rule: r.points for r in reasons if r not in fit_reasons}
    assert engagement == {"unsubscribe": -20, "pricing_page": 15, "engagement_floor": 5}
    assert sum(engagement.values()) == domain.engagement_at(update.state, at, R) == 0


def test_each_evaluation_keeps_the_digest_of_its_rules() -> None:
    """So a worker with other rules knows to evaluate the lead again (DueIndex.rebuild)."""
    state, _ = run([enriched("page_view", profile=vp_profile())])
    assert state.rules == R.digest == rules().digest  # the same content, the same digest
    warmer = rules(thresholds=R.thresholds.model_copy(update={"warm": 70}))
    assert warmer.digest != R.digest
    state, _ = run([enriched("email_open", 10, profile=vp_profile())], state, r=warmer)
    assert state.rules == warmer.digest
    assert LeadState.loads(state.dumps()).rules == warmer.digest


def test_bant_answers_are_taken_in_the_order_they_were_given() -> None:
    """A rep's assessment and a form's answers each win over an older one reported later."""
    state, _ = run([sales("bant_updated", 100, properties={"budget": False, "timing": True})])
    late_form = {"budget_range": "10k-50k", "purchase_timeline": "next year"}
    state, _ = run([enriched("form_submit", 50, properties=late_form, profile=vp_profile())], state)
    assert (state.bant.budget, state.bant.timing) == (False, True)  # the rep's, given later
    state, _ = run([enriched("form_submit", 150, properties=late_form, profile=vp_profile())], state)
    assert (state.bant.budget, state.bant.timing) == (True, False)  # a newer form answer
    state, _ = run([sales("bant_updated", 120, properties={"budget": False})], state)
    assert state.bant.budget is True  # an assessment older than that answer, reported late
    state, _ = run([sales("bant_updated", 200, properties={"budget": "yes"})], state)
    state, _ = run([sales("bant_updated", 180, properties={"budget": "no"})], state)
    assert state.bant.budget is True  # the same value moved the answer's time on to 200
