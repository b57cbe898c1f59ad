"""Route's pure rules: which team, which rep, which SLA, and what a breach or an activity means.

No I/O here. The rotation is modelled in memory by `Rotation`; the Redis store runs the same
algorithm in one Lua script so several workers agree (tests check both give the same picks).

Fair rotation is start-time fair queueing (stride scheduling): every rep has a virtual time `vft`;
the eligible rep with the lowest one, clamped up to the team's virtual clock, gets the lead and
moves on by `stride = SCALE // weight` (ties: smaller next finish, i.e. the heavier rep, then
config order). The clock is the start of the last pick, the lowest start among eligible reps, so
the clamp puts a rep who returns from leave, or joins, level with the others instead of far behind:
no flood of "catch-up" leads.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

from annotated_types import MaxLen
from pydantic import ValidationError

from schemas.handoff import Assignee, Handoff, SlaEvent, SlaEventKind, SlaTerms
from schemas.interaction import Contact
from schemas.sales import RepStatusUpdate, SalesActivity, SalesActivityKind
from schemas.stage import StageChange
from services.route.config import Match, Rep, RoutingConfig, SlaPolicy, SlaTier, Team, WorkingHours

SCALE = 720_720_000
"""Divisible by every weight 1..16, so common weights share exactly; integers keep Lua and Python equal."""


def stride(weight: int) -> int:
    return SCALE // weight


# --- availability -------------------------------------------------------------------------------


@dataclass(frozen=True)
class RepStatus:
    """What sales tools changed at run time; None leaves the configured value."""

    available: bool | None = None
    capacity: int | None = None
    out_of_office_until: datetime | None = None


def status_patch(update: RepStatusUpdate) -> dict[str, Any]:
    """The fields `update` names, as JSON values, for the store to merge into the rep's status in one
    step (two updates at once must not lose either's field): fields it names replace the stored ones,
    an explicit null included (back to the configured value, or no absence); fields it leaves out
    keep theirs, as in a JSON merge patch."""
    named = update.model_fields_set
    patch: dict[str, Any] = {}
    if "available" in named:
        patch["available"] = update.available
    if "capacity" in named:
        patch["capacity"] = update.capacity
    if "out_of_office_until" in named:
        until = update.out_of_office_until
        patch["out_of_office_until"] = until.isoformat() if until is not None else None
    return patch


class Unavailable(StrEnum):
    UNAVAILABLE = "unavailable"
    OUT_OF_OFFICE = "out_of_office"
    OFF_HOURS = "off_hours"


def is_working(hours: WorkingHours | None, zone: str, now: datetime) -> bool:
    if hours is None:
        return True
    local = now.astimezone(ZoneInfo(zone))
    return local.weekday() in hours.weekdays and hours.start <= local.time() < hours.end


def unavailable_reason(rep: Rep, team: Team, status: RepStatus, now: datetime) -> Unavailable | None:
    """Why the rep cannot take a lead now (capacity is checked atomically at pick time)."""
    available = status.available if status.available is not None else rep.available
    if not available:
        return Unavailable.UNAVAILABLE
    if status.out_of_office_until is not None and now < status.out_of_office_until:
        return Unavailable.OUT_OF_OFFICE
    if any(absence.start <= now < absence.end for absence in rep.out_of_office):
        return Unavailable.OUT_OF_OFFICE
    hours = rep.working_hours if rep.working_hours is not None else team.working_hours
    if not is_working(hours, rep.timezone, now):
        return Unavailable.OFF_HOURS
    return None


def capacity(rep: Rep, status: RepStatus) -> int:
    return status.capacity if status.capacity is not None else rep.capacity


@dataclass(frozen=True)
class Candidate:
    rep_id: str
    stride: int
    capacity: int


@dataclass(frozen=True)
class Group:
    """Reps of one team that may take the lead, tried in order after the groups before it."""

    team: str
    candidates: tuple[Candidate, ...]


def eligible(
    team: Team,
    statuses: dict[str, RepStatus],
    now: datetime,
    exclude: Iterable[str] = (),
    only: str | None = None,
) -> Group:
    skip = set(exclude)
    chosen = tuple(
        Candidate(rep.id, stride(rep.weight), capacity(rep, statuses.get(rep.id, RepStatus())))
        for rep in team.reps
        if rep.id not in skip
        and (only is None or rep.id == only)
        and unavailable_reason(rep, team, statuses.get(rep.id, RepStatus()), now) is None
    )
    return Group(team.name, chosen)


# --- matching -----------------------------------------------------------------------------------


def company_domain(change: StageChange) -> str | None:
    profile = change.profile
    if profile.firmographics.domain:
        return profile.firmographics.domain.lower()
    if profile.email and "@" in profile.email and profile.email_kind == "business":
        return profile.email.rsplit("@", 1)[1].lower()
    return None


def _country(change: StageChange) -> str | None:
    country = change.profile.country or change.profile.firmographics.country
    return country.upper() if country else None


def matches(match: Match, change: StageChange, regions: dict[str, tuple[str, ...]]) -> bool:
    """True when every criterion the rule sets holds; unknown data never matches a set criterion."""
    firmo = change.profile.firmographics
    country = _country(change)
    checks: list[bool] = []
    if match.countries:
        checks.append(country in match.countries)
    if match.regions:
        checks.append(any(country in regions.get(region, ()) for region in match.regions))
    if match.employee_ranges:
        checks.append((firmo.employee_range or "").lower() in match.employee_ranges)
    if match.min_employees is not None:
        checks.append(firmo.employees is not None and firmo.employees >= match.min_employees)
    if match.max_employees is not None:
        checks.append(firmo.employees is not None and firmo.employees <= match.max_employees)
    if match.industries:
        checks.append((firmo.industry or "").lower() in match.industries)
    if match.sources:
        checks.append((change.source.channel or "").lower() in match.sources)
    if match.lifecycle:
        checks.append(change.lifecycle in match.lifecycle)
    if match.temperatures:
        checks.append(change.temperature in match.temperatures)
    return all(checks)


@dataclass(frozen=True)
class Route:
    team: str
    rule: str
    owner: str | None = None


def route(change: StageChange, config: RoutingConfig) -> Route:
    """Account owner first, then the first matching rule, then the fallback queue."""
    domain = company_domain(change)
    owner = config.account_owners.get(domain) if domain else None
    if owner is not None:
        found = config.rep(owner)
        if found is not None:
            return Route(found[0].name, "account_owner", owner)
    for rule in config.rules:
        if matches(rule.match, change, config.regions):
            return Route(rule.team, rule.name)
    return Route(config.fallback_team, "fallback")


def groups(
    decision: Route,
    config: RoutingConfig,
    statuses: dict[str, RepStatus],
    now: datetime,
    exclude: Iterable[str] = (),
) -> tuple[Group, ...]:
    """Candidate groups in order: the account owner alone, the team's rotation, the fallback team."""
    exclude = tuple(exclude)
    team = config.team(decision.team)
    result: list[Group] = []
    if decision.owner is not None and decision.owner not in exclude:
        result.append(eligible(team, statuses, now, exclude, only=decision.owner))
    result.append(eligible(team, statuses, now, exclude))
    if config.fallback_team != team.name:
        result.append(eligible(config.team(config.fallback_team), statuses, now, exclude))
    return tuple(group for group in result if group.candidates)


# --- rotation -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pick:
    team: str
    rep_id: str


@dataclass
class Rotation:
    """The rotation and load state; `RedisStore` keeps the same in Redis and must agree with this."""

    load: dict[str, int] = field(default_factory=dict)
    vft: dict[str, dict[str, int]] = field(default_factory=dict)
    clock: dict[str, int] = field(default_factory=dict)

    def pick(self, candidate_groups: Sequence[Group]) -> Pick | None:
        """Lowest clamped start among reps under capacity; ties go to the heavier, then the earlier rep."""
        for group in candidate_groups:
            team_vft = self.vft.setdefault(group.team, {})
            clock = self.clock.get(group.team, 0)
            best: tuple[int, Candidate] | None = None
            for candidate in group.candidates:
                if self.load.get(candidate.rep_id, 0) >= candidate.capacity:
                    continue
                start = max(team_vft.get(candidate.rep_id, 0), clock)
                if best is None or (start, start + candidate.stride) < (best[0], best[0] + best[1].stride):
                    best = (start, candidate)
            if best is not None:
                start, chosen = best
                self.clock[group.team] = start
                team_vft[chosen.rep_id] = start + chosen.stride
                self.load[chosen.rep_id] = self.load.get(chosen.rep_id, 0) + 1
                return Pick(group.team, chosen.rep_id)
        return None

    def release(self, rep_id: str) -> None:
        self.load[rep_id] = max(0, self.load.get(rep_id, 0) - 1)


# --- SLA ----------------------------------------------------------------------------------------


def sla_tier(change: StageChange, policy: SlaPolicy) -> SlaTier:
    for tier in policy.tiers:
        if tier.temperatures and change.temperature not in tier.temperatures:
            continue
        if tier.lifecycle and change.lifecycle not in tier.lifecycle:
            continue
        return tier
    return next(tier for tier in policy.tiers if tier.name == policy.default_tier)


def tier_named(policy: SlaPolicy, name: str) -> SlaTier:
    """The tier a hand-off was made under, or the default when the config no longer has it."""
    for tier in policy.tiers:
        if tier.name == name:
            return tier
    return next(tier for tier in policy.tiers if tier.name == policy.default_tier)


def team_named(config: RoutingConfig, name: str) -> Team:
    """The team a hand-off was given to, or the fallback team when the config no longer has it."""
    for team in config.teams:
        if team.name == name:
            return team
    return config.team(config.fallback_team)


def add_business_time(start: datetime, minutes: float, hours: WorkingHours | None, zone: str) -> datetime:
    """`start` plus `minutes` counted only inside the working hours (in `zone`)."""
    remaining = timedelta(minutes=minutes)
    if hours is None:
        return start + remaining
    tz = ZoneInfo(zone)
    cursor = start.astimezone(UTC)
    day: date = start.astimezone(tz).date()
    for _ in range(366 * 10):
        if day.weekday() in hours.weekdays:
            opens = datetime.combine(day, hours.start, tzinfo=tz).astimezone(UTC)
            closes = datetime.combine(day, hours.end, tzinfo=tz).astimezone(UTC)
            begin = max(cursor, opens)
            if begin < closes:
                if remaining <= closes - begin:
                    return begin + remaining
                remaining -= closes - begin
        day += timedelta(days=1)
    raise ValueError("SLA does not fit in ten years of working hours")


def due_at(start: datetime, tier: SlaTier, team: Team) -> datetime:
    """The contact deadline of a lead given to `team` at `start`: business hours are that team's."""
    hours = team.working_hours if tier.business_hours else None
    return add_business_time(start, tier.minutes, hours, team.timezone)


def due_by_team(
    start: datetime, tier: SlaTier, config: RoutingConfig, candidate_groups: Iterable[Group]
) -> dict[str, datetime]:
    """Each candidate group's deadline, since which team the lead lands in is only known at pick time."""
    teams = dict.fromkeys(group.team for group in candidate_groups)
    return {name: due_at(start, tier, team_named(config, name)) for name in teams}


# --- hand-offs ----------------------------------------------------------------------------------

Output = Handoff | SlaEvent
"""What route publishes: hand-offs to leads.handoffs, SLA events to leads.sla."""


def handoff_id(lead_id: str, trigger_event_id: str, attempt: int = 0) -> str:
    """Deterministic, so a replayed stage change maps to the hand-off it already made."""
    return hashlib.sha256(f"{lead_id}|{trigger_event_id}|{attempt}".encode()).hexdigest()[:32]


def _max_lengths() -> dict[str, int]:
    """The contract's limit per Contact field (the profile and firmographics have none)."""
    return {
        name: rule.max_length
        for name, info in Contact.model_fields.items()
        for rule in info.metadata
        if isinstance(rule, MaxLen)
    }


_CONTACT_LIMITS = _max_lengths()


def _fitted(name: str, value: str | None) -> str | None:
    """A text longer than its Contact field allows, cut to its start (a company name a provider gave
    in full is still the company); an e-mail address is not cut, as a cut one is another address."""
    limit = _CONTACT_LIMITS.get(name)
    if name == "email" or limit is None or not isinstance(value, str):
        return value
    value = value.strip()
    return value[:limit].rstrip() if len(value) > limit else value


def contact_of(change: StageChange) -> Contact:
    """The hand-off's contact; an e-mail address it cannot carry is left out (enrich's firmographics
    have no length limits, the contract has). Raises ValidationError only for a value of the wrong
    type, which no decoded stage change has (`Router` leaves such a lead out, unassigned)."""
    profile = change.profile
    fields = {
        "email": profile.email,
        "first_name": profile.first_name,
        "last_name": profile.last_name,
        "phone": profile.phone,
        "company": profile.company or profile.firmographics.company_name,
        "job_title": profile.job_title,
        "country": profile.country or profile.firmographics.country,
    }
    fields = {name: _fitted(name, value) for name, value in fields.items()}
    try:
        return Contact.model_validate(fields)
    except ValidationError:
        return Contact.model_validate({**fields, "email": None})


def build_handoff(
    change: StageChange,
    assignee: Assignee,
    tier: SlaTier,
    *,
    due: datetime,
    now: datetime,
    hid: str,
    contact: Contact | None = None,
) -> Handoff:
    """`contact`: `contact_of(change)`, when the caller built it already."""
    return Handoff(
        event_id=hid,
        occurred_at=now,
        lead_id=change.lead_id,
        handoff_id=hid,
        assignee=assignee,
        stage=change.lifecycle,
        temperature=change.temperature,
        scores=change.scores,
        reasons=change.reasons,
        contact=contact if contact is not None else contact_of(change),
        source=change.source,
        trigger=change.trigger,
        handed_off_at=now,
        sla=SlaTerms(tier=tier.name, due_at=due),
    )


def sla_event(
    handoff: Handoff,
    kind: SlaEventKind,
    now: datetime,
    *,
    breach_count: int = 0,
    escalation_level: int = 0,
    reason: str | None = None,
    notify: Sequence[str] = (),
) -> SlaEvent:
    eid = hashlib.sha256(f"{handoff.handoff_id}|{kind}|{breach_count}".encode()).hexdigest()[:32]
    return SlaEvent(
        event_id=eid,
        occurred_at=now,
        lead_id=handoff.lead_id,
        kind=kind,
        handoff_id=handoff.handoff_id,
        assignee=handoff.assignee,
        tier=handoff.sla.tier,
        due_at=handoff.sla.due_at,
        breach_count=breach_count,
        escalation_level=escalation_level,
        reason=reason,
        notify=list(notify),
    )


# --- the lead's routing state and what happens to it ---------------------------------------------


@dataclass(frozen=True)
class LeadState:
    """One lead's open hand-off, as the store keeps it.

    A breach's reassignment continues the chain its first hand-off began (`chain_id`, handed off at
    `chain_started_at`): a sales activity belongs to the chain open when it occurred, so one made
    during the first hand-off still counts after a breach moved the lead, and a replay of an earlier
    chain's activity does not touch a later one. Both default to the hand-off's own."""

    handoff: Handoff
    breach_count: int = 0
    contacted: bool = False
    previous_reps: tuple[str, ...] = ()
    chain_id: str | None = None
    chain_started_at: datetime | None = None

    def __post_init__(self) -> None:
        if self.chain_id is None:
            object.__setattr__(self, "chain_id", self.handoff.handoff_id)
        if self.chain_started_at is None:
            object.__setattr__(self, "chain_started_at", self.handoff.handed_off_at)

    @property
    def rep_id(self) -> str | None:
        return self.handoff.assignee.rep_id


def wants_handoff(change: StageChange) -> bool:
    return change.sales_ready


@dataclass(frozen=True)
class BreachPlan:
    breach_count: int
    escalation_level: int
    notify: tuple[str, ...]
    reassign: bool
    exclude: tuple[str, ...]
    rearm: bool = False  # kept, and the next breach would tell someone new: the clock runs again


def plan_breach(state: LeadState, policy: SlaPolicy, team: Team) -> BreachPlan:
    """A breach tells the team lead; each further one escalates a level and copies one more entry of
    the escalation list; reassign while allowed. A breach that keeps the lead arms its clock again
    (the tier's minutes from the breach) while the list has someone left for the next breach to tell,
    and stops it once the list is used up: an uncontacted lead is not breached forever."""
    count = state.breach_count + 1
    level = count - 1
    notify = tuple(n for n in (team.lead, *policy.escalation[:level]) if n)
    exclude = tuple(dict.fromkeys((*state.previous_reps, *([state.rep_id] if state.rep_id else []))))
    reassign = policy.reassign_on_breach and count <= policy.max_reassignments
    rearm = not reassign and count <= len(policy.escalation)
    return BreachPlan(count, level, notify, reassign, exclude, rearm)


def breach_events(state: LeadState, plan: BreachPlan, now: datetime) -> list[SlaEvent]:
    events = [
        sla_event(
            state.handoff,
            SlaEventKind.BREACHED,
            now,
            breach_count=plan.breach_count,
            escalation_level=plan.escalation_level,
            reason="no contact before the deadline",
            notify=plan.notify,
        )
    ]
    if plan.escalation_level > 0:
        events.append(
            sla_event(
                state.handoff,
                SlaEventKind.ESCALATED,
                now,
                breach_count=plan.breach_count,
                escalation_level=plan.escalation_level,
                reason=f"breach {plan.breach_count}",
                notify=plan.notify,
            )
        )
    return events


def reassigned(
    state: LeadState,
    plan: BreachPlan,
    pick: Pick | None,
    *,
    queue: str,
    hid: str,
    now: datetime,
    due: datetime,
) -> LeadState:
    """The lead's new hand-off after a breach: the next rep, or the `queue` team's queue when none is
    free (the assignee's team, or the fallback team once the config no longer has that one)."""
    previous = state.handoff
    assignee = Assignee(rep_id=pick.rep_id if pick else None, team=pick.team if pick else queue)
    handoff = previous.model_copy(
        update={
            "event_id": hid,
            "occurred_at": now,
            "handoff_id": hid,
            "assignee": assignee,
            "handed_off_at": now,
            "sla": SlaTerms(tier=previous.sla.tier, due_at=due),
        }
    )
    return replace(state, handoff=handoff, breach_count=plan.breach_count, previous_reps=plan.exclude)


CONTACT_KINDS = frozenset(
    {
        SalesActivityKind.CONTACTED,
        SalesActivityKind.ACCEPTED,
        SalesActivityKind.MEETING_BOOKED,
        SalesActivityKind.OPPORTUNITY_CREATED,
    }
)
CLOSING_KINDS = frozenset({SalesActivityKind.REJECTED, SalesActivityKind.WON, SalesActivityKind.LOST})


class ActivityEffect(StrEnum):
    IGNORE = "ignore"
    SLA_MET = "sla_met"
    RELEASE = "release"


def activity_effect(
    state: LeadState | None, activity: SalesActivity, skew: timedelta = timedelta(0)
) -> ActivityEffect:
    """Contact stops the clock once; rejected, won or lost free the rep (rejected recycles the lead).
    Only for the hand-off chain open when the activity occurred: one from before it began is an
    earlier hand-off's (a replay), and must not close or meet this one. `skew`: how far the sales
    tool's clock may run behind route's (`sla.activity_clock_skew`): a contact seconds after the
    hand-off, dated by a slow clock, is this chain's and must not be missed (a false breach)."""
    if state is None:
        return ActivityEffect.IGNORE
    if state.chain_started_at is not None and activity.occurred_at < state.chain_started_at - skew:
        return ActivityEffect.IGNORE
    if activity.activity in CLOSING_KINDS:
        return ActivityEffect.RELEASE
    if activity.activity in CONTACT_KINDS and not state.contacted:
        return ActivityEffect.SLA_MET
    return ActivityEffect.IGNORE


def release_event(state: LeadState, activity: SalesActivity, now: datetime) -> SlaEvent | None:
    """Rejected goes back to the pool with the reason; a running clock is cancelled."""
    if activity.activity != SalesActivityKind.REJECTED and state.contacted:
        return None
    reason = f"{activity.activity.value}: {activity.reason}" if activity.reason else activity.activity.value
    count = state.breach_count
    return sla_event(state.handoff, SlaEventKind.CANCELLED, now, breach_count=count, reason=reason)


# --- reminders before the deadline --------------------------------------------------------------


@dataclass(frozen=True)
class ReminderCheck:
    """What the SLA timer does about one running deadline: publish `event` (its reminder is due), look
    again at `later` (not yet), or neither: this deadline gets no reminder."""

    event: SlaEvent | None = None
    later: datetime | None = None


def reminder_at(handoff: Handoff, policy: SlaPolicy) -> datetime | None:
    """When the hand-off's reminder is due: its tier's `remind_before` ahead of its deadline, in
    wall-clock time; None when the tier has none, or is no longer configured (the deadline was made
    under a tier the file dropped: it is not for another tier's reminder to speak for it)."""
    tier = next((tier for tier in policy.tiers if tier.name == handoff.sla.tier), None)
    if tier is None or tier.remind_before is None:
        return None
    return handoff.sla.due_at - tier.remind_before


def check_reminder(
    state: LeadState | None, config: RoutingConfig, now: datetime, *, pending: bool = False
) -> ReminderCheck:
    """Remind while `reminder_at <= now < due_at` of a hand-off nobody has contacted. Never for a
    closed or erased lead, a contacted one, or one whose breach waits for the broker (`pending`): its
    deadline passed, and the breach tells the team lead. The state's deadline decides, not the clock's
    score in Redis: a claim moves that out by its lease, and a kept breach re-arms it to escalate, not
    to remind the rep again."""
    if state is None or state.contacted or pending:
        return ReminderCheck()
    at = reminder_at(state.handoff, config.sla)
    if at is None or now >= state.handoff.sla.due_at:
        return ReminderCheck()
    if now < at:
        return ReminderCheck(later=at)
    return ReminderCheck(event=due_soon_event(state, config, now))


def due_soon_event(state: LeadState, config: RoutingConfig, now: datetime) -> SlaEvent:
    """The reminder: for the assigned rep, or the team lead while the lead waits in the queue. Its id
    is the hand-off's and the kind's, so two workers, or a retry, publish the same event."""
    handoff = state.handoff
    rep = handoff.assignee.rep_id
    lead = team_named(config, handoff.assignee.team).lead
    notify = [rep] if rep else [lead] if lead else []
    return sla_event(handoff, SlaEventKind.DUE_SOON, now, breach_count=state.breach_count, notify=notify)
