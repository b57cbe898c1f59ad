"""Route's service layer: domain rules plus the Redis store; returns the records to publish.

Agents and the SLA timer call these methods and only send what comes back. The ordering rules: a new
hand-off's state is stored before it is published (its caller stores `Outcome.states` first, for a
whole batch at once), and marked published after the broker acknowledged it; a replay in between
finds the stored, unpublished hand-off and publishes the same one again.

A breach has no replay to lean on (nothing upstream sends it again), so its records are stored with
its state (`RedisStore.save_breach`) and its clock stays at the claim's lease until the broker
acknowledged them (`Router.published`, which then arms the new deadline): a publish that failed
comes due again within the lease and the same records go out again (`Router.on_due`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

from pydantic import ValidationError
from redis.exceptions import RedisError

from schemas import interaction
from schemas.base import utcnow
from schemas.handoff import Assignee, Handoff, SlaEventKind
from schemas.sales import RepStatusUpdate, SalesActivity
from schemas.stage import StageChange
from services.route import domain
from services.route.config import RoutingConfig, SlaTier
from services.route.store import (
    REMINDED,
    Assignment,
    AssignRequest,
    BreachSave,
    Closed,
    Contact,
    Deadline,
    PendingBreach,
    RedisStore,
    held_of,
)
from services.runtime.errors import field_problems, summarise

log = logging.getLogger(__name__)

Output = domain.Output
# An activity reads the lead again when a breach moved it after the read, this often.
_ACTIVITY_READS = 3


@dataclass
class Outcome:
    """What to publish, and the lead states the caller stores before it publishes them."""

    records: list[Output] = field(default_factory=list)
    first_contact_seconds: float | None = None
    states: list[domain.LeadState] = field(default_factory=list)
    erased: bool = False  # a stage change from before the lead's erasure: dropped, and counted
    # Breaches whose records these are: settled by `Router.published` once the broker acknowledged them.
    breaches: list[PendingBreach] = field(default_factory=list)
    # Why a sales-ready change was left out, unassigned: its hand-off could not carry its contact.
    unusable: str | None = None
    # The deadlines whose reminders these records are: marked reminded once the broker acknowledged them.
    reminded: list[Deadline] = field(default_factory=list)


@dataclass(frozen=True)
class _Plan:
    """What routing decided for one sales-ready change before Redis picks the rep."""

    change: StageChange
    decision: domain.Route
    hid: str
    tier: SlaTier
    due: datetime
    contact: interaction.Contact


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
        sales_ready = [plan for plan in plans if isinstance(plan, _Plan)]
        if not sales_ready:
            return [Outcome(unusable=plan if isinstance(plan, str) else None) for plan in plans]
        statuses = await self.store.statuses()
        requests = [self._request(plan, statuses, now) for plan in sales_ready]
        answers = iter(zip(requests, await self.store.assign_many(requests), strict=True))
        return [
            await self._resolve(plan, *next(answers), now)
            if isinstance(plan, _Plan)
            else Outcome(unusable=plan)
            for plan in plans
        ]

    def _plan(self, change: StageChange, now: datetime) -> _Plan | str:
        """The change's plan; or, when its hand-off could not carry its contact, why: decided before
        any assignment, so that one lead costs the batch nothing (the caller dead-letters it)."""
        try:
            contact = domain.contact_of(change)
        except ValidationError as exc:
            log.warning(
                "stage change %s of lead %s left out: its contact is unusable",
                change.event_id,
                change.lead_id,
            )
            return f"contact unusable: {summarise(field_problems(exc))}"
        decision = domain.route(change, self.config)
        tier = domain.sla_tier(change, self.config.sla)
        due = domain.due_at(now, tier, self.config.team(decision.team))
        hid = domain.handoff_id(change.lead_id, change.event_id)
        return _Plan(change, decision, hid, tier, due, contact)

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
        handoff = domain.build_handoff(
            plan.change, assignee, plan.tier, due=due, now=now, hid=plan.hid, contact=plan.contact
        )
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

    async def published(self, handoffs: list[Handoff], breaches: Sequence[PendingBreach] = ()) -> None:
        """The broker acknowledged these hand-offs: a replay of their stage changes publishes nothing;
        and these breaches' records: they are dropped and each clock is armed at its new deadline, or
        stopped (a kept breach, a contact meanwhile). One round trip, as before for hand-offs alone."""
        await self.store.mark_published([(h.lead_id, h.handoff_id) for h in handoffs], breaches)

    async def on_activity(self, activity: SalesActivity, now: datetime | None = None) -> Outcome:
        """A contact stops the clock once (the `met`), a closing activity frees the rep; each once per
        event id, and only on the hand-off chain open when it occurred (`domain.activity_effect`).

        Either one read the lead before a breach moved it reads it again, and applies to the hand-off
        the breach moved it to: the reassignment continues the chain (same `chain_id`). A chain begun
        anew since the first read (closed, then handed off again) is not the activity's, and gets
        nothing.

        A contact while a breach is under way counts as made after the breach, on the hand-off the
        breach leaves the lead with: the deadline had passed and the breach script has moved the lead
        already (the rotation moved on), so it cannot be undone. Half-way (moved, its state not
        stored yet), the contact is handed to the breach (`RedisStore.contact`), which stores the lead
        as contacted, stops the clock and publishes the one `met`, of the new hand-off, after its own
        records. A kept breach publishes none for a contact during it; a contact after it stops the
        clock it armed again (`domain.plan_breach`) with a `met`, or finds none running. While a
        breach's records wait for the broker, the contact's `met` goes out after them, so the SLA events
        of a lead stay in order; a closing activity publishes them too, as they go with the lead's
        hash."""
        now = now or utcnow()
        chain: str | None = None
        for _ in range(_ACTIVITY_READS):
            state = await self.store.state(activity.lead_id)
            if state is None or (chain is not None and state.chain_id != chain):
                return Outcome()
            chain = state.chain_id
            effect = domain.activity_effect(state, activity, self.config.sla.activity_clock_skew)
            if effect is domain.ActivityEffect.IGNORE:
                return Outcome()
            if effect is domain.ActivityEffect.RELEASE:
                closed = await self.store.close(activity.lead_id, state.handoff.handoff_id, activity.event_id)
                if closed.outcome == "stale":
                    continue
                return self._released(state, activity, closed, now)
            contact = await self.store.contact(state, activity.event_id)
            if contact.outcome != "moved":
                return self._contacted(state, activity, contact, now)
        log.warning("activity on lead %s not stored: its hand-off changed at each read", activity.lead_id)
        return Outcome()

    def _contacted(
        self, state: domain.LeadState, activity: SalesActivity, contact: Contact, now: datetime
    ) -> Outcome:
        pending = contact.pending
        outcome = Outcome(list(pending.records), breaches=[pending]) if pending else Outcome()
        if contact.outcome != "stopped":
            return outcome
        elapsed = (activity.occurred_at - state.handoff.handed_off_at).total_seconds()
        met = domain.sla_event(state.handoff, SlaEventKind.MET, now, breach_count=state.breach_count)
        outcome.records.append(met)
        outcome.first_contact_seconds = max(0.0, elapsed)
        return outcome

    def _released(
        self, state: domain.LeadState, activity: SalesActivity, closed: Closed, now: datetime
    ) -> Outcome:
        if closed.outcome != "released":  # a replay of an activity that closed the lead before
            return Outcome()
        event = domain.release_event(state, activity, now)
        return Outcome([*closed.records, *([event] if event else [])])

    async def on_rep_status(self, update: RepStatusUpdate) -> domain.RepStatus:
        """Merged in Redis in one step (`RedisStore.update_status`): two updates at once keep both."""
        return await self.store.update_status(update.rep_id, domain.status_patch(update))

    async def on_due(self, now: datetime, lease_seconds: float) -> Outcome:
        """Breach every claimed deadline: tell people, reassign or keep; the caller publishes the
        records and settles `Outcome.breaches` (`published`), which arms (or stops) the clock.

        Until then the clock is the claim's lease, so a breach whose publish failed comes due again
        after it, and the claim publishes the records stored with it again (same ids) instead of
        breaching again. A lead that fails is logged and keeps its claim too, even when the breach
        script had moved it already: the script answers a repeat of its own move, so the retry stores
        and publishes it. The others' breaches are still returned to publish. When Redis stops
        answering, the leads not yet handled wait for the lease the same way."""
        outcome = Outcome()
        for lead_id in await self.store.claim_due(now, lease_seconds):
            try:
                held = await self.store.held(lead_id)
                breach = held.pending
                if breach is not None:
                    log.warning(
                        "publishing lead %s's breach again: the broker did not acknowledge it", lead_id
                    )
                elif held.state is None or held.state.contacted:
                    continue
                else:
                    breach = await self._breach(held.state, now)
                if breach is not None:
                    outcome.records += breach.records
                    outcome.breaches.append(breach)
            except (RedisError, OSError) as exc:
                log.warning("SLA check stopped at lead %s: Redis unavailable (%s)", lead_id, exc)
                break
            except Exception:
                log.exception("SLA breach of lead %s failed; retried in %.0f s", lead_id, lease_seconds)
        return outcome

    async def on_reminders(self, now: datetime) -> Outcome:
        """The `due_soon` reminders due now (`domain.check_reminder`); the caller publishes them and,
        once the broker acknowledged them, marks them (`reminded`). A deadline that gets none, or
        not yet, is marked here. Round trips: none while no tier reminds; else one for the deadlines
        within the longest `remind_before` and one for their marks, plus, only when some are new or
        their reminder time came, one to read those leads and one to mark them."""
        horizon = self.config.sla.longest_reminder
        if horizon is None:
            return Outcome()
        deadlines = await self.store.deadlines_within(now, horizon)
        marks = await self.store.reminders.marks(deadlines)
        ripe = [d for d, mark in zip(deadlines, marks, strict=True) if _ripe(mark, now)]
        if not ripe:
            return Outcome()
        raw = await self.store.held_raw([deadline.lead_id for deadline in ripe])
        outcome = Outcome()
        settled: list[tuple[Deadline, datetime | None]] = []
        for deadline, fields in zip(ripe, raw, strict=True):
            try:
                held = held_of(deadline.lead_id, fields)
            except Exception:  # a state no version of route wrote: its breach will say so too
                log.exception("no reminder for lead %s: its state cannot be read", deadline.lead_id)
                settled.append((deadline, None))
                continue
            check = domain.check_reminder(held.state, self.config, now, pending=held.pending is not None)
            if check.event is not None:
                outcome.records.append(check.event)
                outcome.reminded.append(deadline)
            else:
                settled.append((deadline, check.later))
        await self.store.reminders.mark(settled, now)
        return outcome

    async def reminded(self, deadlines: Sequence[Deadline], now: datetime | None = None) -> None:
        """The broker acknowledged these deadlines' reminders: no tick publishes them again."""
        await self.store.reminders.mark([(deadline, None) for deadline in deadlines], now or utcnow())

    async def _breach(self, state: domain.LeadState, now: datetime) -> PendingBreach | None:
        """The breach of `state`'s deadline, stored with its records; None when there is none to
        publish (a contact stopped the clock, or the lead was erased since the breach script ran)."""
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
            return None
        events: list[Output] = list(domain.breach_events(state, plan, now))
        if result.outcome == "kept":  # a contact meanwhile gets no `met`
            kept = replace(state, breach_count=plan.breach_count)
            # The clock runs again while the next breach would escalate to someone new, else it stops.
            rearmed = queued if plan.rearm else None
            return await self.store.save_breach(BreachSave(kept, previous.handoff_id, events, rearmed))
        queue = result.team or team.name
        # A retry of a move made before (the script answers it again) may name a team no group has now.
        due = (
            dues[queue] if queue in dues else domain.due_at(now, tier, domain.team_named(self.config, queue))
        )
        new_state = domain.reassigned(state, plan, result.pick, queue=queue, hid=hid, now=now, due=due)
        handoff = new_state.handoff
        reassigned = domain.sla_event(
            handoff,
            SlaEventKind.REASSIGNED,
            now,
            breach_count=plan.breach_count,
            escalation_level=plan.escalation_level,
            reason=f"from {previous.assignee.rep_id or 'queue'}",
            notify=plan.notify,
        )
        # The `met` of a contact taken while the breach was half-way, if one was (see `on_activity`).
        met = domain.sla_event(handoff, SlaEventKind.MET, now, breach_count=plan.breach_count)
        save = BreachSave(new_state, previous.handoff_id, [*events, handoff, reassigned], due, met=met)
        return await self.store.save_breach(save)


def _ripe(mark: bytes | None, now: datetime) -> bool:
    """A deadline to look at: not seen yet, or its reminder's time (the mark's ms) has come."""
    if mark is None:
        return True
    return mark != REMINDED and int(mark) <= int(now.timestamp() * 1000)
