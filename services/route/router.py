"""Route's service layer: domain rules plus the Redis store; returns the records to publish.

Agents and the SLA timer call these methods and only send what comes back. The ordering rules: a new
hand-off's state is stored before it is published (its caller stores `Outcome.states` first, for a
whole batch at once), and marked published after the broker acknowledged it; a replay in between
finds the stored, unpublished hand-off and publishes the same one again.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

from redis.exceptions import RedisError

from schemas.base import utcnow
from schemas.handoff import Assignee, Handoff, SlaEvent, SlaEventKind
from schemas.sales import RepStatusUpdate, SalesActivity
from schemas.stage import StageChange
from services.route import domain
from services.route.config import RoutingConfig, SlaTier
from services.route.store import Assignment, AssignRequest, RedisStore

log = logging.getLogger(__name__)

Output = Handoff | SlaEvent


@dataclass
class Outcome:
    """What to publish, and the lead states the caller stores before it publishes them."""

    records: list[Output] = field(default_factory=list)
    first_contact_seconds: float | None = None
    states: list[domain.LeadState] = field(default_factory=list)
    erased: bool = False  # a stage change from before the lead's erasure: dropped, and counted


@dataclass(frozen=True)
class _Plan:
    """What routing decided for one sales-ready change before Redis picks the rep."""

    change: StageChange
    decision: domain.Route
    hid: str
    tier: SlaTier
    due: datetime


class Router:
    def __init__(self, config: RoutingConfig, store: RedisStore) -> None:
        self.config = config
        self.store = store

    async def on_stage_change(self, change: StageChange, now: datetime | None = None) -> Outcome:
        """A sales-ready lead gets one hand-off and a running SLA clock; replays get nothing new."""
        return (await self.on_stage_changes([change], now))[0]

    async def on_stage_changes(
        self, changes: Sequence[StageChange], now: datetime | None = None
    ) -> list[Outcome]:
        """`on_stage_change` for a batch, in order: the reps' statuses read once and every assignment
        in one round trip to Redis (capacity itself is checked by the assign script, so a status a
        few milliseconds old picks no one wrong)."""
        now = now or utcnow()
        plans = [self._plan(change, now) if domain.wants_handoff(change) else None for change in changes]
        sales_ready = [plan for plan in plans if plan is not None]
        if not sales_ready:
            return [Outcome() for _ in changes]
        statuses = await self.store.statuses()
        requests = [self._request(plan, statuses, now) for plan in sales_ready]
        answers = iter(zip(requests, await self.store.assign_many(requests), strict=True))
        return [
            Outcome() if plan is None else await self._resolve(plan, *next(answers), now) for plan in plans
        ]

    def _plan(self, change: StageChange, now: datetime) -> _Plan:
        decision = domain.route(change, self.config)
        tier = domain.sla_tier(change, self.config.sla)
        due = domain.due_at(now, tier, self.config.team(decision.team))
        hid = domain.handoff_id(change.lead_id, change.event_id)
        return _Plan(change, decision, hid, tier, due)

    def _request(self, plan: _Plan, statuses: dict[str, domain.RepStatus], now: datetime) -> AssignRequest:
        """The assign script's input: the candidate groups, each with the deadline its team's hours give."""
        groups = domain.groups(plan.decision, self.config, statuses, now)
        dues = domain.due_by_team(now, plan.tier, self.config, groups)
        change = plan.change
        return AssignRequest(
            change.lead_id, plan.hid, plan.decision.team, groups, plan.due, dues, change.occurred_at
        )

    async def _resolve(
        self, plan: _Plan, request: AssignRequest, result: Assignment, now: datetime
    ) -> Outcome:
        """The hand-off the assign script's answer calls for, if any."""
        due = request.due_for(result.team)
        if result.outcome == "existing":
            if result.handoff_id != plan.hid or result.published:
                return Outcome()
            # Assigned by this change before, never published (a crash in between): publish the same
            # hand-off, or, when the crash came before its state was stored, the same assignment's.
            state = await self.store.state(plan.change.lead_id)
            if state is not None:
                return Outcome([state.handoff, domain.sla_event(state.handoff, SlaEventKind.STARTED, now)])
            due = result.due or due
        elif result.outcome != "assigned":
            return Outcome(erased=result.outcome == "erased")
        rep_id = result.pick.rep_id if result.pick else None
        assignee = Assignee(rep_id=rep_id, team=result.team or plan.decision.team)
        handoff = domain.build_handoff(plan.change, assignee, plan.tier, due=due, now=now, hid=plan.hid)
        started = domain.sla_event(handoff, SlaEventKind.STARTED, now)
        return Outcome([handoff, started], states=[domain.LeadState(handoff=handoff)])

    async def stored(self, outcomes: Sequence[Outcome]) -> list[Outcome]:
        """Store the outcomes' hand-off states before their records are published (one round trip);
        an outcome whose lead was erased since its hand-off was assigned comes back without records,
        as nothing about the lead may go out (nor its state be written back)."""
        states = [state for outcome in outcomes for state in outcome.states]
        saved = await self.store.save_states(states)
        gone = {state.handoff.handoff_id for state, ok in zip(states, saved, strict=True) if not ok}
        if not gone:
            return list(outcomes)
        for hid in gone:
            log.info("hand-off %s not published: its lead was erased meanwhile", hid)
        return [
            Outcome(erased=True)
            if any(state.handoff.handoff_id in gone for state in outcome.states)
            else outcome
            for outcome in outcomes
        ]

    async def published(self, handoffs: list[Handoff]) -> None:
        """The broker acknowledged these hand-offs: a replay of their stage changes publishes nothing."""
        await self.store.mark_published([(h.lead_id, h.handoff_id) for h in handoffs])

    async def on_activity(self, activity: SalesActivity, now: datetime | None = None) -> Outcome:
        now = now or utcnow()
        state = await self.store.state(activity.lead_id)
        effect = domain.activity_effect(state, activity)
        if state is None or effect is domain.ActivityEffect.IGNORE:
            return Outcome()
        if effect is domain.ActivityEffect.SLA_MET:
            stopped = await self.store.stop_clock(activity.lead_id)
            await self.store.save_state(replace(state, contacted=True))
            if not stopped:
                return Outcome()
            elapsed = (activity.occurred_at - state.handoff.handed_off_at).total_seconds()
            met = domain.sla_event(state.handoff, SlaEventKind.MET, now, breach_count=state.breach_count)
            return Outcome([met], first_contact_seconds=max(0.0, elapsed))
        if not await self.store.release(activity.lead_id, state.handoff.handoff_id):
            return Outcome()
        event = domain.release_event(state, activity, now)
        return Outcome([event] if event else [])

    async def on_rep_status(self, update: RepStatusUpdate) -> domain.RepStatus:
        current = (await self.store.statuses()).get(update.rep_id, domain.RepStatus())
        status = current.updated(update)
        await self.store.set_status(update.rep_id, status)
        return status

    async def on_due(self, now: datetime, lease_seconds: float) -> Outcome:
        """Breach every claimed deadline: tell people, reassign or keep, and re-arm the clock.

        A lead that fails is logged and keeps its claim, so its deadline comes due again after the
        lease, even when the breach script had moved it already: the clock is re-armed only with the
        new state (`RedisStore.save_breach`), and the script answers a repeat of its own move, so the
        retry stores and publishes it. The others' breaches are still returned to publish. When Redis
        stops answering, the leads not yet handled wait for the lease the same way."""
        outcome = Outcome()
        for lead_id in await self.store.claim_due(now, lease_seconds):
            try:
                state = await self.store.state(lead_id)
                if state is None or state.contacted:
                    continue
                outcome.records += await self._breach(state, now)
            except (RedisError, OSError) as exc:
                log.warning("SLA check stopped at lead %s: Redis unavailable (%s)", lead_id, exc)
                break
            except Exception:
                log.exception("SLA breach of lead %s failed; retried in %.0f s", lead_id, lease_seconds)
        return outcome

    async def _breach(self, state: domain.LeadState, now: datetime) -> list[Output]:
        previous = state.handoff
        team = domain.team_named(self.config, previous.assignee.team)
        plan = domain.plan_breach(state, self.config.sla, team)
        decision = domain.Route(team.name, "reassignment")
        statuses = await self.store.statuses()
        candidate_groups = domain.groups(decision, self.config, statuses, now, exclude=plan.exclude)
        tier = domain.tier_named(self.config.sla, previous.sla.tier)
        queued = domain.due_at(now, tier, team)
        dues = domain.due_by_team(now, tier, self.config, candidate_groups)
        hid = domain.handoff_id(previous.lead_id, previous.handoff_id, plan.breach_count)
        result = await self.store.breach(
            previous.lead_id,
            previous.handoff_id,
            hid,
            reassign=plan.reassign,
            team=team.name,
            groups=candidate_groups,
            due=queued,
            dues=dues,
        )
        if result.outcome == "stale":
            return []
        events: list[Output] = list(domain.breach_events(state, plan, now))
        if result.outcome == "kept":
            if not await self.store.save_breach(replace(state, breach_count=plan.breach_count), None):
                return []  # erased since the breach script ran: nothing about the lead goes out
            return events
        queue = result.team or team.name
        # A retry of a move made before (the script answers it again) may name a team no group has now.
        due = (
            dues[queue] if queue in dues else domain.due_at(now, tier, domain.team_named(self.config, queue))
        )
        new_state = domain.reassigned(state, plan, result.pick, queue=queue, hid=hid, now=now, due=due)
        if not await self.store.save_breach(new_state, due):
            return []  # erased since the breach script ran: its reassignment is not published
        events.append(new_state.handoff)
        events.append(
            domain.sla_event(
                new_state.handoff,
                SlaEventKind.REASSIGNED,
                now,
                breach_count=plan.breach_count,
                escalation_level=plan.escalation_level,
                reason=f"from {previous.assignee.rep_id or 'queue'}",
                notify=plan.notify,
            )
        )
        return events
