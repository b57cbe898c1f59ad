"""Invariants of the score rules, checked with generated event histories (hypothesis)."""

from __future__ import annotations

import itertools
import random
from collections import defaultdict
from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.views.score import EnrichedView
from services.score import decay, domain
from services.score.state import IndexEntry, LeadState
from tests.unit.test_score_helpers import enriched, rules, vp_profile

R = rules()
H = R.half_life_seconds
TYPES = ["page_view", "email_open", "content_download", "demo_request", "unsubscribe", "webinar_attended"]
SPAN = 10 * 86400  # inside the late-event window, so every event is scored wherever it arrives


@st.composite
def histories(draw: st.DrawFn, max_size: int = 25) -> list[EnrichedView]:
    raw = draw(
        st.lists(
            st.tuples(st.sampled_from(TYPES), st.integers(0, SPAN), st.sampled_from(["/a", "/pricing"])),
            min_size=1,
            max_size=max_size,
        )
    )
    return [
        enriched(t, float(at), event_id=f"ev{i}", properties={"url": url}, profile=vp_profile())
        for i, (t, at, url) in enumerate(raw)
    ]


def apply_all(events: list[EnrichedView]) -> LeadState:
    state: LeadState | None = None
    for event in events:
        state = domain.apply_interaction(state, event, R).state
    assert state is not None
    return state


def close(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-6 * max(1.0, abs(a), abs(b))


@given(histories())
def test_any_state_round_trips_through_its_changelog_json(events: list[EnrichedView]) -> None:
    state = apply_all(events)
    assert LeadState.loads(state.dumps()) == state


@given(histories())
def test_a_state_loaded_without_its_profile_is_the_stored_state_but_the_profile(
    events: list[EnrichedView],
) -> None:
    state = apply_all(events)
    without = LeadState.loads_without_profile(state.dumps())
    assert without.profile is None
    assert without.model_copy(update={"profile": state.profile}) == state
    assert without.model_copy(update={"profile": state.profile}).dumps() == state.dumps()  # same JSON


@given(histories())
def test_the_index_rebuild_reads_the_due_time_and_rules_the_state_holds(events: list[EnrichedView]) -> None:
    """The rebuild parses only these two fields (`IndexEntry`), from the same changelog JSON."""
    state = apply_all(events).model_copy(update={"rules": R.digest})
    for stored in (state, state.model_copy(update={"next_due": None, "rules": None})):
        entry = IndexEntry.loads(stored.dumps())
        assert (entry.next_due, entry.rules) == (stored.next_due, stored.rules)


NEXT_PROFILES = {"vp": vp_profile(), "student": vp_profile(seniority="student"), "empty": None}  # None: empty


@given(histories(), st.sampled_from(TYPES), st.integers(0, SPAN), st.sampled_from(sorted(NEXT_PROFILES)))
def test_an_interaction_never_reads_the_stored_profile(
    events: list[EnrichedView], kind: str, at: int, who: str
) -> None:
    """Score loads a state without its profile for an interaction (`loads_without_profile`): the
    update must be the same as from the whole state, whatever profile the new event carries."""
    state = apply_all(events)
    event = enriched(kind, float(at), event_id="next", profile=NEXT_PROFILES[who])
    whole = domain.apply_interaction(state, event, R)
    without = domain.apply_interaction(LeadState.loads_without_profile(state.dumps()), event, R)
    assert (without.state, without.changes, without.outcome, without.fit) == (
        whole.state,
        whole.changes,
        whole.outcome,
        whole.fit,
    )


@given(st.floats(0, 1e6), st.floats(0, 1e7), st.floats(0, 1e7), st.floats(1, 1e7))
def test_decay_is_monotone_and_never_negative(score: float, t1: float, t2: float, half_life: float) -> None:
    early, late = sorted((t1, t2))
    a, b = decay.decayed(score, early, half_life), decay.decayed(score, late, half_life)
    assert 0 <= b <= a <= score


@given(histories(), st.lists(st.integers(0, 400 * 86400), min_size=2, max_size=6))
def test_engagement_cools_monotonically_and_never_goes_negative(
    events: list[EnrichedView], offsets: list[int]
) -> None:
    state = apply_all(events)
    assert state.engagement_at is not None
    values = [domain.engagement_at(state, state.engagement_at + o, R) for o in sorted(offsets)]
    assert all(v >= 0 for v in values)
    assert all(b <= a + 1e-9 for a, b in itertools.pairwise(values))


@settings(max_examples=150)
@given(histories(), st.randoms(use_true_random=False))
def test_any_arrival_order_gives_the_same_score(events: list[EnrichedView], rnd: random.Random) -> None:
    shuffled = list(events)
    rnd.shuffle(shuffled)
    a, b = apply_all(events), apply_all(shuffled)
    assert a.engagement_at == b.engagement_at
    assert close(domain.raw_engagement(a), domain.raw_engagement(b))
    assert a.points_by_rule.keys() == b.points_by_rule.keys()
    assert all(close(a.points_by_rule[k], b.points_by_rule[k]) for k in a.points_by_rule)
    assert a.cap_slots == b.cap_slots


@settings(max_examples=150)
@given(histories())
def test_late_events_contribute_points_decayed_from_their_own_time(events: list[EnrichedView]) -> None:
    """Oracle: per rule and day the earliest `cap` events count, each as points * 2^-((t_max - t)/h)."""
    state = apply_all(events)
    newest = max(e.occurred_at.timestamp() for e in events)
    counted: dict[tuple[str, str], list[tuple[float, str]]] = defaultdict(list)
    expected = 0.0
    for event in events:
        rule = domain.match_rule(event.interaction, R)
        assert rule is not None
        counted[(rule.name, event.occurred_at.strftime("%Y-%m-%d"))].append(
            (event.occurred_at.timestamp(), event.event_id)
        )
    for (name, _), entries in counted.items():
        rule = next(r for r in R.engagement if r.name == name)
        for at, _ in sorted(entries)[: rule.daily_cap or len(entries)]:
            expected += rule.points * 2 ** (-(newest - at) / H)
    assert close(domain.raw_engagement(state), expected)


@settings(max_examples=100)
@given(histories(), st.data())
def test_a_duplicate_never_changes_state(events: list[EnrichedView], data: st.DataObject) -> None:
    state = apply_all(events)
    replay = data.draw(st.sampled_from(events))
    update = domain.apply_interaction(state, replay, R)
    assert update.duplicate
    assert update.state == state
    assert update.changes == []


@settings(max_examples=100)
@given(histories(max_size=40))
def test_caps_hold(events: list[EnrichedView]) -> None:
    state = apply_all(events)
    caps = {r.name: r for r in R.engagement}
    for key, slot in state.cap_slots.items():
        name, day = key.rsplit("|", 1)
        cap = caps[name].daily_cap
        assert cap is not None and len(slot["times"]) <= cap
        assert all(datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d") == day for t in slot["times"])
    days_by_rule: dict[str, set[str]] = defaultdict(set)
    for key in state.cap_slots:
        name, day = key.rsplit("|", 1)
        days_by_rule[name].add(day)
    for name, total in state.points_by_rule.items():
        rule = caps[name]
        assert rule.daily_cap is not None
        assert abs(total) <= abs(rule.points) * rule.daily_cap * len(days_by_rule[name])


@settings(max_examples=100)
@given(histories(), st.integers(0, 60 * 86400))
def test_timer_due_time_is_exactly_when_temperature_drops(events: list[EnrichedView], later: int) -> None:
    state = apply_all(events)
    at = (state.evaluated_at or 0) + later
    update = domain.apply_decay_check(state, domain.from_epoch(at), R)
    fit, _ = domain.fit_score(state, R)
    now_temp = domain.temperature_of(state, fit, at, R)
    if state.next_due is None or at < state.next_due - 0.001:
        assert update.changes == []
        assert now_temp == state.temperature  # never drops before the due time
    else:
        assert update.state.temperature == now_temp
        assert [c.to_stage for c in update.changes] == (
            [now_temp.value] if now_temp != state.temperature else []
        )


@given(
    st.one_of(
        st.floats(-1e9, 4e9, allow_nan=False),
        st.integers(-10_000, 40_000).map(lambda day: day * 86400.0),  # midnights
        st.integers(-10_000, 40_000).map(lambda day: day * 86400.0 - 1e-3),  # just before them
    )
)
def test_the_cached_cap_day_is_the_utc_calendar_day(seconds: float) -> None:
    assert domain._day(seconds) == datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d")


@settings(max_examples=100)
@given(histories())
def test_each_update_carries_the_fit_its_state_was_evaluated_with(events: list[EnrichedView]) -> None:
    state: LeadState | None = None
    for event in events:
        update = domain.apply_interaction(state, event, R)
        assert update.fit == domain.fit_of(update.state, R)
        state = update.state
    replay = domain.apply_interaction(state, events[0], R)
    assert replay.duplicate and replay.fit is None


@given(histories(), st.data())
def test_a_completion_never_counts_its_interaction_again(
    events: list[EnrichedView], data: st.DataObject
) -> None:
    """However late enrich completes a partial record (`completes`), engagement stays as it was."""
    state = apply_all(events)
    partial = data.draw(st.sampled_from(events))
    completion = partial.model_copy(
        update={"event_id": f"c-{partial.event_id}", "completes": [partial.event_id]}
    )
    after = domain.apply_interaction(state, completion, R).state
    assert after.points_by_rule == state.points_by_rule
    assert after.engagement_by_rule == state.engagement_by_rule
    assert after.cap_slots == state.cap_slots and after.engagement_at == state.engagement_at
