"""Score rules: (state, event, rules) -> (new state, stage changes). No I/O.

Engagement is kept per rule, decayed to the lead's newest event time `engagement_at`. An event at
time te contributes points * 2^-((engagement_at - te) / half_life) whether it arrives in order or
late, so the score does not depend on arrival order. Daily caps keep the earliest `cap` events of
a rule per UTC day, which is also order-independent.
"""

from __future__ import annotations

import bisect
import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache, partial
from typing import Any

from pydantic import JsonValue

from schemas.profile import LeadProfile
from schemas.sales import SalesActivity, SalesActivityKind
from schemas.stage import Bant, LifecycleStage, Reason, Scores, StageChange, StageKind, Temperature, Trigger
from schemas.views.score import EnrichedView, InteractionView
from services.score import decay
from services.score.fit import (
    FitTerm,
    bant_from_properties,
    bant_from_sales,
    disqualifier,
    fit_points,
    fit_terms,
    reasons_of,
)
from services.score.rules import EngagementRule, ScoringRules
from services.score.state import CapSlot, LeadState

L = LifecycleStage
SALES_READY = frozenset({L.MQL, L.PQL})
WITH_SALES = frozenset({L.SQL, L.OPPORTUNITY, L.CUSTOMER})
RANK = {L.RAW: 0, L.IQL: 1, L.RECYCLED: 1, L.MQL: 2, L.PQL: 2, L.SQL: 3, L.OPPORTUNITY: 4, L.CUSTOMER: 5}
DUE_MARGIN = 0.001  # seconds past the computed crossing, so the check sees the score below the line
DAY_SECONDS = 86_400
EPOCH_DAY = date(1970, 1, 1)


@dataclass(frozen=True)
class ScoreUpdate:
    """What applying one record did."""

    state: LeadState
    changes: list[StageChange] = field(default_factory=list)
    duplicate: bool = False
    rule: str | None = None
    outcome: str = "scored"  # scored | capped | stale | unscored | completed | duplicate | checked
    fit: float | None = None  # the fit score the new state was evaluated with (None: not evaluated)


def epoch(moment: datetime) -> float:
    return moment.timestamp()


def from_epoch(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


# --- engagement -------------------------------------------------------------------------------


def match_rule(interaction: InteractionView, rules: ScoringRules) -> EngagementRule | None:
    """The first engagement rule for the interaction's type whose conditions hold."""
    for rule in rules.engagement:
        if rule.type != interaction.type:
            continue
        if all(_text(interaction.properties.get(k)) == v.lower() for k, v in rule.when.items()) and all(
            v.lower() in (_text(interaction.properties.get(k)) or "") for k, v in rule.when_contains.items()
        ):
            return rule
    return None


def _text(value: JsonValue) -> str | None:
    return None if value is None or isinstance(value, dict | list) else str(value).lower()


def raw_engagement(state: LeadState) -> float:
    """Engagement at `engagement_at`, before the floor at zero."""
    return sum(state.engagement_by_rule.values())


def engagement_at(state: LeadState, at: float, rules: ScoringRules) -> float:
    """Engagement decayed to `at`, never below zero (negative points cannot make it negative)."""
    if state.engagement_at is None:
        return 0.0
    value = decay.decayed(raw_engagement(state), at - state.engagement_at, rules.half_life_seconds)
    return max(0.0, value)


def _advanced(state: LeadState, to: float, rules: ScoringRules) -> dict[str, Any]:
    """The fields that decay every rule's contribution to time `to` (none when `to` is not newer).

    Fields, not a new state: the caller copies the state once with every change of its event."""
    if state.engagement_at is not None and to <= state.engagement_at:
        return {}
    f = (
        1.0
        if state.engagement_at is None
        else decay.factor(to - state.engagement_at, rules.half_life_seconds)
    )
    horizon = _day(to - rules.late_event_window.total_seconds())
    # a slot's key ends in its YYYY-MM-DD day, which compares as text
    slots = {k: v for k, v in state.cap_slots.items() if k[-10:] >= horizon}
    return {
        "engagement_at": to,
        "engagement_by_rule": {k: v * f for k, v in state.engagement_by_rule.items()},
        "cap_slots": slots,
        "recycled_engagement": state.recycled_engagement * f,
    }


def _day(seconds: float) -> str:
    """The UTC day of epoch `seconds` as YYYY-MM-DD (a daily cap's slot), rounded to the microsecond
    as `datetime.fromtimestamp` rounds it, so a moment a hair before midnight keeps its day."""
    fraction, whole = math.modf(seconds)
    micros = round(fraction * 1e6)
    carry = 1 if micros >= 1_000_000 else -1 if micros < 0 else 0
    return _day_text((int(whole) + carry) // DAY_SECONDS)


@lru_cache(maxsize=4096)
def _day_text(days: int) -> str:
    """Cached: formatting a date cost more per event than the cap it keys, and events bunch in days."""
    return (EPOCH_DAY + timedelta(days=days)).isoformat()


def _points(
    state: LeadState, rule: EngagementRule, at: float, event_id: str, rules: ScoringRules
) -> tuple[dict[str, Any], str]:
    """The fields one scored event at its own time changes, respecting the rule's daily cap."""
    if state.engagement_at is not None and at < state.engagement_at - rules.late_event_window.total_seconds():
        return {}, "stale"
    update = _advanced(state, at, rules)
    engagement_at = at if state.engagement_at is None else max(at, state.engagement_at)  # as `update` has it
    half_life = rules.half_life_seconds
    delta = rule.points * decay.factor(engagement_at - at, half_life)
    raw = rule.points
    slots = dict(update.get("cap_slots", state.cap_slots))
    if rule.daily_cap is not None:
        key = f"{rule.name}|{_day(at)}"
        slot = slots.get(key)
        entries = [] if slot is None else list(zip(slot["times"], slot["event_ids"], strict=True))
        entry = (at, event_id)
        if len(entries) >= rule.daily_cap:
            if entry >= entries[-1]:
                return update, "capped"
            evicted_at, _ = entries.pop()  # the latest counted event gives its place to an earlier one
            delta -= rule.points * decay.factor(engagement_at - evicted_at, half_life)
            raw = 0.0
        bisect.insort(entries, entry)
        slots[key] = CapSlot(times=tuple(e[0] for e in entries), event_ids=tuple(e[1] for e in entries))
    by_rule = dict(update.get("engagement_by_rule", state.engagement_by_rule))
    by_rule[rule.name] = by_rule.get(rule.name, 0.0) + delta
    points = dict(state.points_by_rule)
    points[rule.name] = points.get(rule.name, 0.0) + raw
    return {**update, "engagement_by_rule": by_rule, "points_by_rule": points, "cap_slots": slots}, "scored"


# --- stages -----------------------------------------------------------------------------------


def fit_score(state: LeadState, rules: ScoringRules) -> tuple[float, list[Reason]]:
    terms = fit_terms(state.profile, state.bant, rules.fit)
    return sum(t[1] for t in terms), reasons_of(terms)


def fit_of(state: LeadState, rules: ScoringRules) -> float:
    """The fit score alone (no reasons built): what every evaluation needs."""
    return fit_points(state.profile, state.bant, rules.fit)


def _hand_raise_active(state: LeadState, at: float, rules: ScoringRules) -> bool:
    return (
        state.hand_raised_at is not None
        and at < state.hand_raised_at + rules.hand_raisers.hot_for.total_seconds()
    )


def temperature_of(
    state: LeadState, fit: float, at: float, rules: ScoringRules, *, lifecycle: LifecycleStage | None = None
) -> Temperature:
    """`lifecycle` stands in for the state's own when the caller has just decided a new one."""
    if (lifecycle or state.lifecycle) == L.DISQUALIFIED:
        return Temperature.COLD
    if _hand_raise_active(state, at, rules):
        return Temperature.HOT
    total = fit + engagement_at(state, at, rules)
    if total >= rules.thresholds.hot:
        return Temperature.HOT
    if total >= rules.thresholds.warm:
        return Temperature.WARM
    return Temperature.COLD


def marketing_lifecycle(
    state: LeadState, fit: float, engagement: float, rules: ScoringRules
) -> tuple[LifecycleStage, str | None]:
    """Forward moves from scores and product usage; disqualification. Returns (stage, rule).

    `engagement` is decayed to the evaluation time (for a recycled lead: earned since recycling).
    A lead sales works (SQL, opportunity, customer) is not disqualified by the rules: sales moved it
    there, over a disqualifier if need be, and sales' rejected or lost moves it back. A lead sales
    released is product-qualified again only by usage above its level when it was recycled: the
    usage sales already saw would hand it straight back."""
    current = state.lifecycle
    reason = disqualifier(state.profile, rules.fit)
    if reason is not None and current not in WITH_SALES and current != L.DISQUALIFIED:
        return L.DISQUALIFIED, f"disqualified:{reason}"
    if current in WITH_SALES or current in (L.DISQUALIFIED, L.PQL):
        return current, None
    if state.trial and state.usage >= rules.product_qualified.min_usage and _new_usage(state):
        return L.PQL, "product_qualified"
    if current == L.MQL:
        return current, None
    if state.hand_raised_at is not None and fit >= rules.hand_raisers.min_fit:
        return L.MQL, "hand_raiser"
    if fit >= rules.thresholds.mql_fit and engagement >= rules.thresholds.mql_engagement:
        return L.MQL, "mql_thresholds"
    if current == L.RAW and state.profile is not None and state.profile.email:
        return L.IQL, "identified"
    return current, None


def _new_usage(state: LeadState) -> bool:
    return state.recycled_usage is None or state.usage > state.recycled_usage


def next_due(
    state: LeadState,
    fit: float,
    rules: ScoringRules,
    *,
    temperature: Temperature | None = None,
    lifecycle: LifecycleStage | None = None,
    evaluated_at: float | None = None,
) -> float | None:
    """When the temperature will next drop without new events (None: it will not).

    The keywords stand in for the state's own stages when the caller has just decided new ones, so
    an evaluation copies the state once instead of once per stage."""
    temperature = temperature or state.temperature
    if temperature == Temperature.COLD or (lifecycle or state.lifecycle) == L.DISQUALIFIED:
        return None
    limit = rules.thresholds.hot if temperature == Temperature.HOT else rules.thresholds.warm
    evaluated = evaluated_at if evaluated_at is not None else state.evaluated_at
    start = state.engagement_at if state.engagement_at is not None else (evaluated or 0.0)
    if fit >= limit:
        crossing = None
    else:
        after = decay.crossing_after(max(0.0, raw_engagement(state)), limit - fit, rules.half_life_seconds)
        crossing = None if after is None else start + after
    if crossing is None:
        return None
    if temperature == Temperature.HOT and state.hand_raised_at is not None:
        crossing = max(crossing, state.hand_raised_at + rules.hand_raisers.hot_for.total_seconds())
    return crossing + DUE_MARGIN


def reasons_at(state: LeadState, at: float, fit_list: list[Reason], rules: ScoringRules) -> list[Reason]:
    """Top contributions by size: fit rules, engagement rules (undecayed), the decay so far and,
    when negative points took engagement below zero, the floor that holds it at zero (named apart,
    so the reasons add up to the score without a "decay" that raised it)."""
    reasons = list(fit_list)
    reasons.extend(Reason(rule=name, points=round(p, 2)) for name, p in state.points_by_rule.items() if p)
    unfloored = 0.0
    if state.engagement_at is not None:
        unfloored = decay.decayed(raw_engagement(state), at - state.engagement_at, rules.half_life_seconds)
    decayed_by = unfloored - sum(state.points_by_rule.values())
    floored_by = engagement_at(state, at, rules) - unfloored
    for name, points in (("decay", decayed_by), ("engagement_floor", floored_by)):
        if round(points, 2) != 0:
            reasons.append(Reason(rule=name, points=round(points, 2)))
    reasons.sort(key=lambda r: (-abs(r.points), r.rule))
    return reasons[: rules.top_reasons]


def change_id(lead_id: str, trigger_id: str, kind: StageKind, to_stage: str) -> str:
    """Deterministic, so a replay after a crash publishes the same event id (consumers dedupe)."""
    return hashlib.sha256(f"{lead_id}|{trigger_id}|{kind.value}|{to_stage}".encode()).hexdigest()[:32]


def _changes(
    old: LeadState,
    new: LeadState,
    trigger: Callable[[], Trigger],
    at: float,
    rules: ScoringRules,
    *,
    rule: str | None,
    terms: list[FitTerm],
) -> list[StageChange]:
    """The stage changes from `old` to `new`, explained; `terms`: the fit terms `new` was evaluated with.
    `trigger` builds the record that caused them, only when a stage moved."""
    moves = []
    if old.temperature != new.temperature:
        moves.append((StageKind.TEMPERATURE, old.temperature.value, new.temperature.value))
    if old.lifecycle != new.lifecycle:
        moves.append((StageKind.LIFECYCLE, old.lifecycle.value, new.lifecycle.value))
    if not moves:  # most events move nothing: no explanation to build
        return []
    cause = trigger()
    fit, fit_list = sum(t[1] for t in terms), reasons_of(terms)
    engagement = engagement_at(new, at, rules)
    scores = Scores(fit=round(fit, 2), engagement=round(engagement, 2), total=round(fit + engagement, 2))
    reasons = reasons_at(new, at, fit_list, rules)
    if rule and rule.startswith(("disqualified:", "product_qualified", "hand_raiser", "sales:")):
        reasons = [Reason(rule=rule, points=0.0, detail="stage rule"), *reasons][: rules.top_reasons]
    bant = Bant(**new.bant.model_dump())
    profile = new.profile or LeadProfile(lead_id=new.lead_id)
    return [
        StageChange(
            event_id=change_id(new.lead_id, cause.event_id, kind, to_stage),
            occurred_at=cause.occurred_at,
            lead_id=new.lead_id,
            kind=kind,
            from_stage=from_stage,
            to_stage=to_stage,
            temperature=new.temperature,
            lifecycle=new.lifecycle,
            sales_ready=new.lifecycle in SALES_READY,
            scores=scores,
            reasons=reasons,
            bant=bant,
            trigger=cause,
            profile=profile,
            source=new.source,
        )
        for kind, from_stage, to_stage in moves
    ]


def _settle(
    old: LeadState,
    state: LeadState,
    trigger: Callable[[], Trigger],
    at: float,
    rules: ScoringRules,
    *,
    rule: str | None,
) -> tuple[LeadState, list[StageChange], float]:
    """Re-evaluate both stages at `at` and report the moves; the new state and its fit score.
    `trigger` is called only when a stage moved: most records move none, and building the model for
    every record cost more than its partial (docs/performance.md, fifteenth pass)."""
    at = max(at, state.evaluated_at or at)
    terms = fit_terms(state.profile, state.bant, rules.fit)
    fit = sum(t[1] for t in terms)
    engagement = engagement_at(state, at, rules)
    if state.lifecycle == L.RECYCLED and state.engagement_at is not None:
        # recycled_engagement decays like the rest, so the difference is what was earned since
        since = raw_engagement(state) - state.recycled_engagement
        engagement = max(0.0, decay.decayed(since, at - state.engagement_at, rules.half_life_seconds))
    lifecycle, stage_rule = marketing_lifecycle(state, fit, engagement, rules)
    temperature = temperature_of(state, fit, at, rules, lifecycle=lifecycle)
    due = next_due(state, fit, rules, temperature=temperature, lifecycle=lifecycle, evaluated_at=at)
    stages = {
        "lifecycle": lifecycle,
        "evaluated_at": at,
        "temperature": temperature,
        "next_due": due,
        "rules": rules.digest,
    }
    state = state.model_copy(update=stages)
    return state, _changes(old, state, trigger, at, rules, rule=stage_rule or rule, terms=terms), fit


def _remembered(state: LeadState, event_id: str, rules: ScoringRules) -> tuple[str, ...]:
    """The lead's recent event ids with `event_id` added (duplicates are recognised by them)."""
    return (*state.recent_event_ids, event_id)[-rules.recent_event_ids :]


def _remember(state: LeadState, event_id: str, rules: ScoringRules) -> LeadState:
    return state.model_copy(update={"recent_event_ids": _remembered(state, event_id, rules)})


# --- entry points -----------------------------------------------------------------------------


def apply_interaction(state: LeadState | None, event: EnrichedView, rules: ScoringRules) -> ScoreUpdate:
    """Decay engagement to the event's time, add its points, report any stage change."""
    old = state or LeadState.new(event.lead_id)
    if event.event_id in old.recent_event_ids:
        return ScoreUpdate(old, duplicate=True, outcome="duplicate")
    interaction = event.interaction
    at = epoch(event.occurred_at)
    update: dict[str, Any] = {
        "recent_event_ids": _remembered(old, event.event_id, rules),
        "profile": event.profile,
        "source": interaction.source if interaction.source.channel else old.source,
        "bant": bant_from_properties(old.bant, interaction.properties, event.profile, rules.fit, at),
    }
    if interaction.type == interaction.type.TRIAL_SIGNUP:
        update["trial"] = True
    usage = _number(interaction.properties.get(rules.product_qualified.usage_property))
    if usage is not None and usage > old.usage:
        update["usage"] = usage
    # A late firmographics lookup's completion repeats an interaction whose points were counted when
    # its partial record came (`EnrichedInteraction.completes` names it): it brings the completed
    # profile, and with it the fit, hand-raise and stages to evaluate again, but no points. A new
    # interaction whose own lookup completes earlier records also lists them, and scores as usual.
    completion = interaction.event_id in event.completes
    rule = None if completion else match_rule(interaction, rules)
    outcome = "completed" if completion else "unscored"
    if rule is not None:  # the points change engagement fields only, which `update` leaves alone
        points, outcome = _points(old, rule, at, event.event_id, rules)
        update.update(points)
    state = old.model_copy(update=update)  # one copy: each costs more than the rule it applies
    raising = interaction.type in rules.hand_raisers.types and outcome != "stale"
    open_to_raise = state.lifecycle not in (L.DISQUALIFIED, *WITH_SALES)
    if raising and open_to_raise and fit_of(state, rules) >= rules.hand_raisers.min_fit:
        raised = max(at, state.hand_raised_at or at)
        need = state.bant.need if state.bant.need is not None else True
        bant = state.bant.model_copy(update={"need": need})
        state = state.model_copy(update={"hand_raised_at": raised, "bant": bant})
    trigger = partial(
        Trigger, event_id=event.event_id, type=interaction.type.value, occurred_at=event.occurred_at
    )
    evaluate_at = max(at, state.engagement_at or at)
    state, changes, fit = _settle(old, state, trigger, evaluate_at, rules, rule=rule.name if rule else None)
    return ScoreUpdate(state, changes, rule=rule.name if rule else None, outcome=outcome, fit=fit)


def _number(value: JsonValue) -> float | None:
    """A finite number, or None: "1e999", "Infinity" or "NaN" must not become the lead's usage, whose
    JSON (null) would not load again and would crash the worker on every replay."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return None
    else:
        return None
    return number if math.isfinite(number) else None


SALES_MOVES: dict[SalesActivityKind, tuple[LifecycleStage, frozenset[LifecycleStage]]] = {
    # activity -> (target, stages it may move from); forward moves only, plus the two recycles
    SalesActivityKind.ACCEPTED: (L.SQL, frozenset({L.RAW, L.IQL, L.MQL, L.PQL, L.RECYCLED, L.DISQUALIFIED})),
    SalesActivityKind.MEETING_BOOKED: (
        L.OPPORTUNITY,
        frozenset({L.RAW, L.IQL, L.MQL, L.PQL, L.SQL, L.RECYCLED, L.DISQUALIFIED}),
    ),
    SalesActivityKind.OPPORTUNITY_CREATED: (
        L.OPPORTUNITY,
        frozenset({L.RAW, L.IQL, L.MQL, L.PQL, L.SQL, L.RECYCLED, L.DISQUALIFIED}),
    ),
    SalesActivityKind.WON: (L.CUSTOMER, frozenset(set(L) - {L.CUSTOMER})),
    SalesActivityKind.REJECTED: (L.RECYCLED, frozenset({L.RAW, L.IQL, L.MQL, L.PQL, L.SQL})),
    SalesActivityKind.LOST: (L.RECYCLED, frozenset({L.MQL, L.PQL, L.SQL, L.OPPORTUNITY})),
}


def apply_sales_activity(state: LeadState | None, event: SalesActivity, rules: ScoringRules) -> ScoreUpdate:
    """Sales moves: accepted -> SQL, meeting/opportunity -> opportunity, won -> customer,
    rejected/lost -> recycled (the only backward moves besides disqualification)."""
    old = state or LeadState.new(event.lead_id)
    if event.event_id in old.recent_event_ids:
        return ScoreUpdate(old, duplicate=True, outcome="duplicate")
    state = _remember(old, event.event_id, rules)
    at = epoch(event.occurred_at)
    rule: str | None = None
    if event.activity == SalesActivityKind.BANT_UPDATED:
        state = state.model_copy(update={"bant": bant_from_sales(state.bant, event.properties, at)})
    move = SALES_MOVES.get(event.activity)
    # Sales' word is taken in the order it was said: an `accepted` reported after a later `rejected`
    # must not take the recycled lead back to SQL.
    in_order = state.sales_moved_at is None or at >= state.sales_moved_at
    if move is not None and state.lifecycle in move[1] and in_order:
        rule = f"sales:{event.activity.value}"
        update: dict[str, object] = {"lifecycle": move[0], "sales_moved_at": at}
        if move[0] == L.RECYCLED:
            update["hand_raised_at"] = None  # a rejected hand-raise no longer keeps the lead hot
            update["recycled_engagement"] = max(0.0, raw_engagement(state))
            update["recycled_usage"] = state.usage
        state = state.model_copy(update=update)
    trigger = partial(
        Trigger, event_id=event.event_id, type=f"sales:{event.activity.value}", occurred_at=event.occurred_at
    )
    state, changes, fit = _settle(old, state, trigger, max(at, state.engagement_at or at), rules, rule=rule)
    return ScoreUpdate(state, changes, rule=rule, outcome="scored" if rule else "unscored", fit=fit)


def apply_decay_check(state: LeadState, at: datetime, rules: ScoringRules) -> ScoreUpdate:
    """The timer's check: has the decayed score crossed a threshold downward by `at`?"""
    when = epoch(at)
    if state.next_due is None or when < state.next_due - DUE_MARGIN / 2:  # datetimes hold microseconds
        return ScoreUpdate(state, outcome="unscored")
    trigger = partial(
        Trigger, event_id=f"decay:{state.lead_id}:{round(when * 1000)}", type="decay", occurred_at=at
    )
    new, changes, fit = _settle(state, state, trigger, when, rules, rule="decay")
    return ScoreUpdate(new, changes, outcome="checked", fit=fit)


def apply_rules_check(state: LeadState, at: datetime, rules: ScoringRules) -> ScoreUpdate:
    """After a rules reload: both stages and the due time evaluated again at `at` under `rules`.

    The decay check without its due gate: new thresholds, points or half-life can move a lead
    whatever its due time. The trigger id is the lead's and the check's time, which the check
    record carries, so a replayed check repeats its stage changes' ids (consumers dedupe)."""
    when = epoch(at)
    trigger = partial(
        Trigger, event_id=f"rules:{state.lead_id}:{round(when * 1000)}", type="rules", occurred_at=at
    )
    new, changes, fit = _settle(state, state, trigger, when, rules, rule="rules")
    return ScoreUpdate(new, changes, outcome="checked", fit=fit)
