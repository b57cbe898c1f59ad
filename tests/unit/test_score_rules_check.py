"""The re-evaluation of a held lead after a rules reload (`domain.apply_rules_check`), and the
agent's pure helpers that queue it (the check record, the partitions a worker still holds)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.stage import StageKind, Temperature
from schemas.views.score import EnrichedView
from services.runtime.partitioner import KafkaPartitioner
from services.score import agents, domain
from services.score.state import LeadState
from tests.unit.test_score_helpers import T0, enriched, rules, vp_profile
from tests.unit.test_score_properties import R, apply_all, histories


def warm_lead() -> LeadState:
    """Fit 65 + a whitepaper's 20 = 85: warm under the shipped rules (warm: 80)."""
    event = enriched("content_download", 0, event_id="wp", properties={"asset_type": "whitepaper"})
    state = domain.apply_interaction(None, event.model_copy(update={"profile": vp_profile()}), R).state
    assert state.temperature == Temperature.WARM
    return state


@settings(max_examples=150)
@given(histories())
def test_unchanged_rules_at_the_evaluation_time_change_nothing(events: list[EnrichedView]) -> None:
    state = apply_all(events)
    assert state.evaluated_at is not None
    update = domain.apply_rules_check(state, domain.from_epoch(state.evaluated_at), R)
    assert update.changes == []
    assert update.state == state


@settings(max_examples=150)
@given(histories(), st.integers(0, 60 * 86400))
def test_unchanged_rules_once_due_decide_as_the_decay_check(events: list[EnrichedView], later: int) -> None:
    """The rules check is the decay check without its gate: where the gate is open they agree."""
    state = apply_all(events)
    at = domain.from_epoch((state.evaluated_at or 0) + later)
    check = domain.apply_rules_check(state, at, R)
    if state.next_due is not None and domain.epoch(at) >= state.next_due:
        decay = domain.apply_decay_check(state, at, R)
        assert check.state == decay.state
        moves = [(c.kind, c.from_stage, c.to_stage) for c in check.changes]
        assert moves == [(c.kind, c.from_stage, c.to_stage) for c in decay.changes]
    again = domain.apply_rules_check(check.state, at, R)  # a replayed check moves nothing more
    assert again.changes == [] and again.state == check.state


def test_a_raised_warm_threshold_cools_a_warm_lead_and_says_why() -> None:
    state = warm_lead()
    stricter = rules(thresholds=R.thresholds.model_copy(update={"warm": 100}))
    at = T0 + timedelta(minutes=5)
    update = domain.apply_rules_check(state, at, stricter)
    assert update.state.temperature == Temperature.COLD and update.state.next_due is None
    assert update.outcome == "checked"
    (change,) = update.changes
    assert (change.kind, change.from_stage, change.to_stage) == (StageKind.TEMPERATURE, "warm", "cold")
    assert change.trigger.type == "rules" and change.trigger.occurred_at == at
    assert change.trigger.event_id == f"rules:{state.lead_id}:{round(at.timestamp() * 1000)}"
    replay = domain.apply_rules_check(state, at, stricter)  # the same record again: the same ids
    assert [c.event_id for c in replay.changes] == [change.event_id]


def test_a_new_half_life_moves_the_due_time_without_a_stage_change() -> None:
    state = warm_lead()
    assert state.next_due is not None and state.evaluated_at is not None
    slower = rules(half_life=R.half_life * 2)
    update = domain.apply_rules_check(state, domain.from_epoch(state.evaluated_at), slower)
    assert update.changes == []
    assert update.state.next_due is not None
    # 85 -> 80 takes twice as long with twice the half-life
    before, after = state.next_due - state.evaluated_at, update.state.next_due - state.evaluated_at
    assert after == pytest.approx(2 * before - domain.DUE_MARGIN, abs=1e-3)


def test_a_rules_check_is_told_from_a_decay_check_by_its_header_alone() -> None:
    """Its value is a decay check's (the time), so a worker on older code reads it as one."""
    assert agents.is_rules_check(agents.RULES_CHECK_HEADERS)
    assert not agents.is_rules_check({}) and not agents.is_rules_check(None)
    assert not agents.is_rules_check({"other": b"rules"})


def test_only_leads_on_partitions_the_worker_holds_are_queued() -> None:
    keys = [f"e-lead-{i}".encode() for i in range(200)]
    place = KafkaPartitioner()
    where = {key: place(key, [0, 1, 2, 3], [0, 1, 2, 3]) for key in keys}
    held = agents.on_partitions(keys, {1, 3}, 4)
    assert held == [key for key in keys if where[key] in {1, 3}]
    assert agents.on_partitions(keys, set(), 4) == []
    assert agents.on_partitions(keys, {0, 1, 2, 3}, 4) == keys
