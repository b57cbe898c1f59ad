"""Nurture's pure rules, walked through simulated time, plus hypothesis properties."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.enriched import EnrichedInteraction
from schemas.interaction import IdentityKind, Interaction, InteractionType
from schemas.nurture import NurtureCommand
from schemas.privacy import PrivacyRecord, PrivacyRequestKind
from schemas.profile import LeadProfile
from schemas.sales import SalesActivity, SalesActivityKind
from schemas.stage import LifecycleStage, Scores, StageChange, StageKind, Temperature, Trigger
from schemas.views import read_as
from schemas.views.nurture import EnrichedView, StageChangeView
from services.nurture import domain
from services.nurture.domain import ExitReason, LeadState, Outcome, Suppression
from services.nurture.rules import NurtureConfigError, NurtureRules, load_rules

ROOT = Path(__file__).resolve().parents[2]
RULES = load_rules(ROOT / "config" / "nurture.yaml")
LEAD = "e-lead"
# Tuesday 10:00 in Berlin (CET, UTC+1).
T0 = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
_counter = iter(range(10**9))


def _id(prefix: str) -> str:
    return f"{prefix}-{next(_counter)}"


def profile(timezone: str | None = "Europe/Berlin") -> LeadProfile:
    return LeadProfile(
        lead_id=LEAD, email="jo@example.com", first_name="Jo", company="Acme", timezone=timezone
    )


def stage(
    lifecycle: LifecycleStage,
    temperature: Temperature = Temperature.WARM,
    *,
    sales_ready: bool = False,
    tz: str | None = "Europe/Berlin",
) -> StageChange:
    return StageChange(
        event_id=_id("stage"),
        occurred_at=T0,
        lead_id=LEAD,
        kind=StageKind.LIFECYCLE,
        from_stage="raw",
        to_stage=lifecycle.value,
        temperature=temperature,
        lifecycle=lifecycle,
        sales_ready=sales_ready,
        scores=Scores(fit=1, engagement=1, total=2),
        trigger=Trigger(event_id="t", type="form_submit", occurred_at=T0),
        profile=profile(tz),
    )


def privacy(kind: PrivacyRequestKind) -> PrivacyRecord:
    return PrivacyRecord(event_id=_id(kind.value), occurred_at=T0, lead_id=LEAD, kind=kind)


def interaction(kind: InteractionType, **properties: str) -> EnrichedInteraction:
    event_id = _id(kind.value)
    return EnrichedInteraction(
        event_id=event_id,
        occurred_at=T0,
        lead_id=LEAD,
        interaction=Interaction(
            event_id=event_id,
            occurred_at=T0,
            lead_id=LEAD,
            type=kind,
            identity=IdentityKind.EMAIL,
            received_at=T0,
            properties=dict(properties),
        ),
        profile=profile(),
    )


def sales(kind: SalesActivityKind) -> SalesActivity:
    return SalesActivity(event_id=_id("sales"), occurred_at=T0, lead_id=LEAD, activity=kind)


Event = StageChange | PrivacyRecord | EnrichedInteraction | SalesActivity


def apply(state: LeadState, event: Event, rules: NurtureRules, now: datetime) -> Outcome:
    if isinstance(event, StageChange):
        return domain.on_stage_change(state, read_as(StageChangeView, event), rules, now)
    if isinstance(event, PrivacyRecord):
        return domain.on_privacy(state, event, rules, now)
    if isinstance(event, EnrichedInteraction):
        return domain.on_interaction(state, read_as(EnrichedView, event), rules, now)
    return domain.on_sales_activity(state, event, rules, now)


class Sim:
    """A lead and a clock: apply events, advance time in ticks, record everything sent."""

    def __init__(self, rules: NurtureRules = RULES, now: datetime = T0) -> None:
        self.rules, self.now, self.state = rules, now, LeadState(lead_id=LEAD)
        self.sent: list[NurtureCommand] = []
        self.outcomes: list[Outcome] = []
        # confirmation mails: confirmed? said no? withdrawals so far?
        self.asked: list[tuple[NurtureCommand, bool, bool, int]] = []

    def event(self, event: Event) -> Outcome:
        given = self.state.model_dump()
        out = apply(self.state, event, self.rules, self.now)
        assert self.state.model_dump() == given, "the rules changed the state they were given"
        self.state = out.state
        self.outcomes.append(out)
        return out

    def advance(self, by: timedelta, tick: timedelta = timedelta(minutes=1)) -> list[NurtureCommand]:
        """Run the scheduler at every due time (and every `tick`) until now + by."""
        end, before = self.now + by, len(self.sent)
        while self.now < end:
            due = self.state.next_due
            self.now = min(end, max(due, self.now) if due and due <= end else self.now + tick)
            given = self.state.model_dump()
            out = domain.due(self.state, self.rules, self.now)
            assert self.state.model_dump() == given, "the rules changed the state they were given"
            self.state = out.state
            self.outcomes.append(out)
            self.sent.extend(out.commands)
            if due is None or due > end:
                self.now = min(end, self.now + tick)
        return self.sent[before:]

    def exits(self) -> list[tuple[str, ExitReason]]:
        return [e for out in self.outcomes for e in out.exits]

    def suppressed(self) -> list[Suppression]:
        return [reason for out in self.outcomes for _, reason in out.suppressed]


def consented_iql(sim: Sim) -> None:
    sim.event(privacy(PrivacyRequestKind.CONSENT_CONFIRMED))
    sim.event(stage(LifecycleStage.IQL, Temperature.COLD))


# --- walking sequences through time ------------------------------------------------------------


def test_welcome_series_at_configured_delays_within_cap() -> None:
    sim = Sim()
    consented_iql(sim)
    assert sim.state.enrolments["welcome"].due_at == T0 + timedelta(minutes=5)
    sent = sim.advance(timedelta(days=30), tick=timedelta(hours=1))
    assert [c.template_id for c in sent] == [
        "welcome-1-hello",
        "welcome-2-best-content",
        "welcome-3-webinar-invite",
        "welcome-4-case-study",
    ]
    assert sent[0].occurred_at == T0 + timedelta(minutes=5)
    assert sent[1].occurred_at == sent[0].occurred_at + timedelta(days=2)
    assert sent[2].occurred_at == sent[1].occurred_at + timedelta(days=3)
    assert sent[0].recipient == "jo@example.com"
    assert sent[0].personalisation == {"first_name": "Jo", "last_name": None, "company": "Acme"}
    assert sent[0].consent_proof_ref is not None and sent[0].consent_proof_ref.startswith("consent_confirmed")
    assert sent[0].event_id == domain.command_id(LEAD, "welcome", 1, 0)
    assert ("welcome", ExitReason.FINISHED) in sim.exits()
    assert sim.state.next_due is None


def test_lead_that_becomes_hot_leaves_before_the_next_step() -> None:
    sim = Sim()
    consented_iql(sim)
    assert len(sim.advance(timedelta(hours=1))) == 1
    sim.event(stage(LifecycleStage.IQL, Temperature.HOT))
    assert sim.advance(timedelta(days=30), tick=timedelta(hours=6)) == []
    assert sim.exits() == [("welcome", ExitReason.STAGE)]


def test_sales_ready_and_handoff_exit_every_sequence() -> None:
    sim = Sim()
    consented_iql(sim)
    sim.event(stage(LifecycleStage.MQL, Temperature.WARM, sales_ready=True))
    assert ("welcome", ExitReason.SALES_READY) in sim.exits()
    assert "accelerator" not in sim.state.enrolments, "a sales-ready lead is not enrolled"

    other = Sim()
    consented_iql(other)
    other.event(sales(SalesActivityKind.ACCEPTED))
    assert other.exits() == [("welcome", ExitReason.HANDED_OFF)]
    assert other.advance(timedelta(days=10), tick=timedelta(hours=6)) == []


def test_warm_mql_moves_from_welcome_to_accelerator() -> None:
    sim = Sim()
    consented_iql(sim)
    out = sim.event(stage(LifecycleStage.MQL, Temperature.WARM))
    assert out.enrolled == ["accelerator"]
    assert out.exits == [("welcome", ExitReason.SUPERSEDED)]
    sent = sim.advance(timedelta(hours=2))
    assert [c.sequence for c in sent] == ["accelerator"]


def test_recycled_lead_gets_recycle_series_after_rejection() -> None:
    sim = Sim()
    sim.event(privacy(PrivacyRequestKind.CONSENT_CONFIRMED))
    sim.event(stage(LifecycleStage.SQL, Temperature.HOT, sales_ready=True))
    sim.event(sales(SalesActivityKind.REJECTED))
    out = sim.event(stage(LifecycleStage.RECYCLED, Temperature.COLD))
    assert out.enrolled == ["recycle"]
    assert [c.template_id for c in sim.advance(timedelta(days=8), tick=timedelta(hours=6))] == [
        "recycle-1-still-relevant"
    ]


@pytest.mark.parametrize("stage_first", [False, True])
def test_a_lead_sales_rejected_gets_the_recycle_series_only(stage_first: bool) -> None:
    """Sales' rejection and score's recycled stage change reach nurture on two topics, in either
    order. The rejection alone once enrolled a warm MQL in accelerator, by the stage it had with
    sales, and the recycled change then added recycle: a demo offer on top of the recycle series."""
    sim = Sim()
    sim.event(privacy(PrivacyRequestKind.CONSENT_CONFIRMED))
    sim.event(stage(LifecycleStage.MQL, Temperature.WARM, sales_ready=True))
    events = [sales(SalesActivityKind.REJECTED), stage(LifecycleStage.RECYCLED, Temperature.WARM)]
    for event in reversed(events) if stage_first else events:
        sim.event(event)
    assert [name for name, e in sim.state.enrolments.items() if e.active] == ["recycle"]
    sent = sim.advance(timedelta(days=40), tick=timedelta(hours=6))
    assert {c.sequence for c in sent} == {"recycle"}


def test_quiet_hours_defer_to_the_morning_in_the_leads_zone() -> None:
    evening = datetime(2026, 11, 24, 18, 58, tzinfo=UTC)  # 19:58 Berlin; step due 20:03
    sim = Sim(now=evening)
    consented_iql(sim)
    sent = sim.advance(timedelta(hours=14))
    assert len(sent) == 1
    assert sent[0].occurred_at.astimezone(ZoneInfo("Europe/Berlin")).hour == 8
    assert Suppression.QUIET_HOURS in sim.suppressed()

    # The same instant is 11:58 in Los Angeles: no quiet hours there.
    west = Sim(now=evening)
    west.event(privacy(PrivacyRequestKind.CONSENT_CONFIRMED))
    west.event(stage(LifecycleStage.IQL, Temperature.COLD, tz="America/Los_Angeles"))
    assert [c.occurred_at for c in west.advance(timedelta(hours=1))] == [evening + timedelta(minutes=5)]


def test_skip_condition_webinar_attended() -> None:
    sim = Sim()
    consented_iql(sim)
    sim.event(interaction(InteractionType.WEBINAR_ATTENDED))
    sent = sim.advance(timedelta(days=30), tick=timedelta(hours=6))
    assert "welcome-3-webinar-invite" not in [c.template_id for c in sent]
    assert len(sent) == 3
    assert [o.skipped for o in sim.outcomes if o.skipped] == [["welcome"]]


def test_no_confirmed_consent_sends_nothing() -> None:
    sim = Sim()
    sim.event(privacy(PrivacyRequestKind.CONSENT_GIVEN))  # not yet confirmed (double opt-in)
    sim.event(stage(LifecycleStage.IQL))
    assert sim.advance(timedelta(days=30), tick=timedelta(hours=6)) == []
    assert sim.suppressed().count(Suppression.NO_CONSENT) == 4


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        (lambda: privacy(PrivacyRequestKind.CONSENT_WITHDRAWN), ExitReason.CONSENT_WITHDRAWN),
        (lambda: interaction(InteractionType.UNSUBSCRIBE), ExitReason.UNSUBSCRIBED),
        (lambda: interaction(InteractionType.EMAIL_BOUNCE), ExitReason.BOUNCED),
        (lambda: privacy(PrivacyRequestKind.ERASE), ExitReason.ERASED),
    ],
)
def test_saying_no_stops_a_step_that_is_already_due(event: object, reason: ExitReason) -> None:
    sim = Sim()
    consented_iql(sim)
    sim.now += timedelta(hours=1)  # step 1 is overdue, the scheduler has not run yet
    assert sim.state.next_due is not None and sim.state.next_due < sim.now
    out = sim.event(event())  # type: ignore[operator]
    assert out.exits == [("welcome", reason)]
    assert out.stopped
    assert sim.advance(timedelta(days=30), tick=timedelta(hours=6)) == []
    sim.event(stage(LifecycleStage.MQL, Temperature.WARM))
    if reason == ExitReason.CONSENT_WITHDRAWN:  # may re-enrol, but nothing goes out without consent
        assert sim.advance(timedelta(days=30), tick=timedelta(hours=6)) == []
    else:
        assert "accelerator" not in sim.state.enrolments


@pytest.mark.parametrize(
    "event",
    [
        lambda: privacy(PrivacyRequestKind.CONSENT_WITHDRAWN),
        lambda: interaction(InteractionType.UNSUBSCRIBE),
        lambda: interaction(InteractionType.EMAIL_BOUNCE),
        lambda: privacy(PrivacyRequestKind.ERASE),
    ],
)
def test_saying_no_after_the_last_step_was_queued_still_stops_its_delivery(event: object) -> None:
    """The last step ends its enrolment as it is queued; the mailer may not have sent it yet (outbox
    lag, SMTP down). A no then ends no enrolment, and must still withhold it."""
    sim = Sim()
    consented_iql(sim)
    sent = sim.advance(timedelta(days=30), tick=timedelta(hours=1))
    assert sent[-1].template_id == "welcome-4-case-study"
    assert not any(e.active for e in sim.state.enrolments.values())
    out = sim.event(event())  # type: ignore[operator]
    assert out.exits == []
    assert out.stopped


def test_only_a_no_stops_delivery() -> None:
    sim = Sim()
    assert not sim.event(privacy(PrivacyRequestKind.CONSENT_CONFIRMED)).stopped
    assert not sim.event(stage(LifecycleStage.IQL, Temperature.COLD)).stopped
    sim.advance(timedelta(hours=1))
    assert not sim.event(stage(LifecycleStage.IQL, Temperature.HOT)).stopped  # an exit, not a no
    assert not sim.event(sales(SalesActivityKind.ACCEPTED)).stopped
    assert not sim.event(interaction(InteractionType.PAGE_VIEW)).stopped


def test_erasure_keeps_no_personal_data() -> None:
    sim = Sim()
    consented_iql(sim)
    sim.event(privacy(PrivacyRequestKind.ERASE))
    dumped = sim.state.model_dump_json()
    assert "jo@example.com" not in dumped and "Jo" not in dumped and "Acme" not in dumped
    assert sim.state.erased and sim.state.consent_proof is None


def test_duplicate_event_is_ignored() -> None:
    sim = Sim()
    sim.event(privacy(PrivacyRequestKind.CONSENT_CONFIRMED))
    change = stage(LifecycleStage.IQL)
    sim.event(change)
    assert sim.event(change).duplicate


def test_reenrolment_after_cooldown_only() -> None:
    sim = Sim()
    sim.event(privacy(PrivacyRequestKind.CONSENT_CONFIRMED))
    sim.event(stage(LifecycleStage.MQL, Temperature.WARM))
    sim.advance(timedelta(days=10), tick=timedelta(hours=6))
    assert sim.state.enrolments["accelerator"].exit_reason == ExitReason.FINISHED
    assert sim.event(stage(LifecycleStage.MQL, Temperature.WARM)).enrolled == []
    sim.advance(timedelta(days=60), tick=timedelta(days=1))
    assert sim.event(stage(LifecycleStage.MQL, Temperature.WARM)).enrolled == ["accelerator"]
    assert sim.state.enrolments["accelerator"].number == 2
    second = sim.advance(timedelta(hours=2))
    assert second[0].event_id == domain.command_id(LEAD, "accelerator", 2, 0)


def test_frequency_cap_across_sequences_defers() -> None:
    rules = RULES.model_copy(
        update={"frequency_cap": RULES.frequency_cap.model_copy(update={"max_messages": 1})}
    )
    sim = Sim(rules=rules)
    consented_iql(sim)
    sim.advance(timedelta(hours=1))
    sim.event(stage(LifecycleStage.MQL, Temperature.WARM))  # accelerator step 1 due in an hour
    assert sim.advance(timedelta(days=6), tick=timedelta(hours=1)) == []
    assert Suppression.CAP in sim.suppressed()
    later = sim.advance(timedelta(days=2), tick=timedelta(hours=1))
    assert [c.template_id for c in later] == ["accelerator-1-roi-guide"]


def test_quiet_until_handles_windows() -> None:
    quiet = RULES.quiet_hours
    berlin_21h = datetime(2026, 7, 1, 19, 0, tzinfo=UTC)  # CEST
    end = domain.quiet_until(quiet, "Europe/Berlin", berlin_21h)
    assert end == datetime(2026, 7, 2, 6, 0, tzinfo=UTC)
    assert domain.quiet_until(quiet, "Europe/Berlin", datetime(2026, 7, 1, 8, 0, tzinfo=UTC)) is None
    assert domain.quiet_until(quiet, "Not/AZone", berlin_21h) == end  # falls back to the default zone
    assert domain.quiet_until(None, "Europe/Berlin", berlin_21h) is None


def test_rules_errors_name_file_and_key(tmp_path: Path) -> None:
    bad = tmp_path / "nurture.yaml"
    bad.write_text(
        "frequency_cap: {max_messages: 0, window: P1D}\n"
        "sequences:\n  s: {enrol: {segment: {shoe_size: [42]}}, steps: [{template_id: a, delay: P1D}]}\n"
    )
    with pytest.raises(NurtureConfigError) as error:
        load_rules(bad)
    text = str(error.value)
    assert str(bad) in text
    assert "frequency_cap.max_messages" in text
    assert "sequences.s.enrol.segment" in text and "shoe_size" in text
    with pytest.raises(NurtureConfigError, match="not valid YAML"):
        bad.write_text("sequences: [")
        load_rules(bad)


# --- properties ----------------------------------------------------------------------------------

ZONES = ["Europe/Berlin", "America/New_York", "Asia/Tokyo", "Pacific/Auckland", None]
event_kinds = st.one_of(
    st.tuples(
        st.just("stage"),
        st.sampled_from(list(LifecycleStage)),
        st.sampled_from(list(Temperature)),
        st.booleans(),
        st.sampled_from(ZONES),
    ),
    st.tuples(st.just("privacy"), st.sampled_from(list(PrivacyRequestKind))),
    st.tuples(st.just("interaction"), st.sampled_from(list(InteractionType))),
    st.tuples(st.just("sales"), st.sampled_from(list(SalesActivityKind))),
)
# Mostly quiet stretches (a page view), so that sequences run long enough to meet cap and quiet hours.
waits = st.just(("interaction", InteractionType.PAGE_VIEW))
steps = st.lists(
    st.tuples(st.one_of(waits, waits, waits, event_kinds), st.integers(min_value=0, max_value=4 * 24 * 60)),
    min_size=1,
    max_size=25,
)


def build(kind: tuple[object, ...]) -> Event:
    match kind:
        case ("stage", lifecycle, temperature, ready, tz):
            return stage(lifecycle, temperature, sales_ready=ready, tz=tz)  # type: ignore[arg-type]
        case ("privacy", k):
            return privacy(k)  # type: ignore[arg-type]
        case ("interaction", k):
            return interaction(k)  # type: ignore[arg-type]
        case ("sales", k):
            return sales(k)  # type: ignore[arg-type]
    raise AssertionError(kind)


Sent = tuple[NurtureCommand, bool, bool, str | None]


# A tight cap so that properties meet it; quiet hours as shipped.
TIGHT = RULES.model_copy(
    update={
        "frequency_cap": RULES.frequency_cap.model_copy(
            update={"max_messages": 2, "window": timedelta(days=7)}
        )
    }
)


def simulate(script: Iterable[tuple[Event, int]], start: datetime = T0) -> tuple[Sim, list[Sent]]:
    """Run a script; for each send note, from the inputs alone: consent confirmed? said no? time zone."""
    sim = Sim(rules=TIGHT, now=start)
    consent: str | None = None
    said_no = False
    withdrawals = 0
    zone: str | None = None
    log: list[Sent] = []
    for event, minutes in script:
        if isinstance(event, PrivacyRecord):
            if event.kind == PrivacyRequestKind.CONSENT_CONFIRMED and not said_no:
                consent = event.event_id
            elif event.kind in (PrivacyRequestKind.CONSENT_WITHDRAWN, PrivacyRequestKind.ERASE):
                consent = None
                withdrawals += 1
            said_no = said_no or event.kind == PrivacyRequestKind.ERASE
        if isinstance(event, EnrichedInteraction) and event.interaction.type in (
            InteractionType.UNSUBSCRIBE,
            InteractionType.EMAIL_BOUNCE,
        ):
            said_no = True
        if isinstance(event, StageChange | EnrichedInteraction):
            zone = event.profile.timezone or zone
        sim.asked.extend((c, consent is not None, said_no, withdrawals) for c in sim.event(event).commands)
        for command in sim.advance(timedelta(minutes=minutes), tick=timedelta(minutes=30)):
            confirmed = consent is not None and command.consent_proof_ref == consent
            log.append((command, confirmed, said_no, zone))
    return sim, log


@settings(max_examples=150, deadline=None)
@given(steps, st.integers(min_value=0, max_value=24 * 60 - 1))
def test_properties_consent_cap_quiet_hours_ids(
    raw: list[tuple[tuple[object, ...], int]], offset: int
) -> None:
    begin = T0 + timedelta(minutes=offset)
    start: list[tuple[Event, int]] = [
        (privacy(PrivacyRequestKind.CONSENT_CONFIRMED), 0),
        (stage(LifecycleStage.IQL, Temperature.COLD), 0),
    ]
    script = start + [(build(kind), minutes) for kind, minutes in raw]
    sim, log = simulate(script, begin)
    commands = [c for c, _, _, _ in log]
    # Never without confirmed consent; never after unsubscribe, bounce or erasure.
    assert all(with_consent for _, with_consent, _, _ in log)
    assert not any(said_no for _, _, said_no, _ in log)
    # Never over the cap in any window.
    cap = TIGHT.frequency_cap
    times = sorted(c.occurred_at for c in commands)
    for i, t in enumerate(times):
        assert sum(1 for u in times[i:] if u - t < cap.window) <= cap.max_messages
    # Never in quiet hours, in the zone the lead had when it was sent.
    quiet = RULES.quiet_hours
    assert quiet is not None
    for command, _, _, zone in log:
        local = command.occurred_at.astimezone(ZoneInfo(zone or quiet.default_timezone)).time()
        assert quiet.end <= local < quiet.start, f"sent at {local} local time"
    # Deterministic, unique ids: the same step is never sent twice, and a replay yields the same ids.
    ids = [c.event_id for c in commands]
    assert len(ids) == len(set(ids))
    for c in commands:
        number = next(e.number for n, e in sim.state.enrolments.items() if n == c.sequence)
        assert c.event_id in {domain.command_id(LEAD, c.sequence, k, c.step) for k in range(1, number + 1)}
    _, replay = simulate(script, begin)
    assert [c.event_id for c, _, _, _ in replay] == ids
    # Confirmation mails: only while consent is not confirmed, never after a no, one per window
    # (a withdrawal withheld the queued one, so a consent given after it asks again at once).
    assert all(c.purpose == "consent_request" for c, _, _, _ in sim.asked)
    assert not any(confirmed or said_no for _, confirmed, said_no, _ in sim.asked)
    for (a, _, _, before), (b, _, _, after) in pairwise(sim.asked):
        assert b.occurred_at - a.occurred_at >= TIGHT.double_opt_in.resend_after or after > before


# --- double opt-in: the confirmation mail ---------------------------------------------------------


def consent_given(version: str = "v3") -> PrivacyRecord:
    return PrivacyRecord(
        event_id=_id("consent_given"),
        occurred_at=T0,
        lead_id=LEAD,
        kind=PrivacyRequestKind.CONSENT_GIVEN,
        consent_text_version=version,
    )


def confirmations(commands: Iterable[NurtureCommand]) -> list[NurtureCommand]:
    return [c for c in commands if c.purpose == "consent_request"]


def test_a_consent_given_asks_for_confirmation_once_the_address_is_known() -> None:
    sim = Sim()
    given = consent_given()
    assert sim.event(given).commands == []  # no address yet: the mail waits for it
    out = sim.event(stage(LifecycleStage.IQL, Temperature.COLD))
    [mail] = out.commands
    assert mail.purpose == "consent_request" and mail.sequence == domain.CONFIRMATION
    assert mail.template_id == RULES.double_opt_in.template_id
    assert mail.recipient == "jo@example.com" and mail.consent_proof_ref is None
    assert mail.personalisation["consent_text_version"] == "v3"
    assert mail.event_id == domain.command_id(LEAD, domain.CONFIRMATION, 0, 0, given.event_id)
    # Not confirmed yet: the welcome series runs, and sends nothing.
    assert sim.advance(timedelta(days=30), tick=timedelta(hours=6)) == []
    assert Suppression.NO_CONSENT in sim.suppressed()


def test_the_confirmation_goes_at_once_whatever_the_cap_and_quiet_hours() -> None:
    night = datetime(2026, 11, 24, 22, 0, tzinfo=UTC)  # 23:00 in Berlin, inside quiet hours
    sim = Sim(now=night)
    sim.event(stage(LifecycleStage.IQL, Temperature.COLD))
    sim.state = sim.state.model_copy(update={"sent_at": [night] * RULES.frequency_cap.max_messages})
    assert len(confirmations(sim.event(consent_given()).commands)) == 1


def test_a_consent_given_again_soon_mails_no_second_request() -> None:
    sim = Sim()
    sim.event(stage(LifecycleStage.IQL, Temperature.COLD))
    assert len(sim.event(consent_given()).commands) == 1
    sim.now += RULES.double_opt_in.resend_after - timedelta(minutes=1)
    assert sim.event(consent_given()).commands == []  # the form sent twice: the first link still works
    sim.now += timedelta(minutes=2)
    assert len(sim.event(consent_given()).commands) == 1


@pytest.mark.parametrize(
    ("before", "why"),
    [
        (lambda: privacy(PrivacyRequestKind.CONSENT_CONFIRMED), "confirmed already"),
        (lambda: privacy(PrivacyRequestKind.CONSENT_WITHDRAWN), "withdrawn"),
        (lambda: interaction(InteractionType.UNSUBSCRIBE), "unsubscribed"),
        (lambda: interaction(InteractionType.EMAIL_BOUNCE), "address bounced"),
    ],
)
def test_no_confirmation_mail_when(before: object, why: str) -> None:
    sim = Sim()
    sim.event(consent_given())  # pending: the address is not known yet
    sim.event(before())  # type: ignore[operator]
    assert sim.event(stage(LifecycleStage.IQL, Temperature.COLD)).commands == [], why
    if why != "withdrawn":  # a new consent after a withdrawal asks again; the others do not
        assert confirmations(sim.event(consent_given()).commands) == [], why


def test_an_erased_lead_is_not_asked_to_confirm() -> None:
    sim = Sim()
    sim.event(consent_given())
    sim.event(privacy(PrivacyRequestKind.ERASE))
    assert sim.state.consent_pending is None
    assert sim.event(stage(LifecycleStage.IQL, Temperature.COLD)).commands == []


def test_a_replayed_consent_given_is_a_duplicate() -> None:
    sim = Sim()
    sim.event(stage(LifecycleStage.IQL, Temperature.COLD))
    given = consent_given()
    assert len(sim.event(given).commands) == 1
    assert sim.event(given).duplicate


def test_a_consent_given_again_after_a_withdrawal_asks_again_at_once() -> None:
    """The withdrawal withheld the queued confirmation mail (the stop marker): a new consent must
    not wait out `resend_after` for a mail that never went."""
    sim = Sim()
    sim.event(stage(LifecycleStage.IQL, Temperature.COLD))
    assert len(sim.event(consent_given()).commands) == 1
    assert sim.event(privacy(PrivacyRequestKind.CONSENT_WITHDRAWN)).stopped
    sim.now += timedelta(hours=1)
    assert len(confirmations(sim.event(consent_given()).commands)) == 1


# --- signing up again after an unsubscribe --------------------------------------------------------


def test_an_unsubscribed_lead_who_signs_up_again_and_confirms_gets_mail_again() -> None:
    """As HubSpot and Mailchimp do: a consent given after the unsubscribe asks for confirmation, and
    its confirmation lifts the unsubscribe."""
    sim = Sim()
    assert sim.event(interaction(InteractionType.UNSUBSCRIBE)).stopped
    sim.event(stage(LifecycleStage.IQL, Temperature.COLD))
    assert sim.state.enrolments == {}  # unsubscribed: not enrolled
    sim.now += timedelta(hours=1)
    again = consent_given().model_copy(update={"occurred_at": T0 + timedelta(hours=1)})
    [mail] = confirmations(sim.event(again).commands)
    assert mail.recipient == "jo@example.com"
    assert sim.state.unsubscribed  # not until the person confirms
    confirmed = sim.event(privacy(PrivacyRequestKind.CONSENT_CONFIRMED))
    assert confirmed.resubscribed and confirmed.enrolled == ["welcome"]
    assert not sim.state.unsubscribed and sim.state.unsubscribed_at is None
    sent = sim.advance(timedelta(days=1), tick=timedelta(hours=1))
    assert [c.template_id for c in sent] == ["welcome-1-hello"]
    assert sent[0].consent_proof_ref == sim.state.consent_proof


def test_an_old_link_clicked_after_the_unsubscribe_does_not_lift_it() -> None:
    """The confirmation mail from before the unsubscribe is still valid for a week; clicking it is
    no new sign-up, nor is a consent that predates the unsubscribe arriving late."""
    sim = Sim()
    sim.event(stage(LifecycleStage.IQL, Temperature.COLD))
    assert len(confirmations(sim.event(consent_given()).commands)) == 1
    sim.event(privacy(PrivacyRequestKind.CONSENT_CONFIRMED))
    sim.now += timedelta(hours=1)
    sim.event(interaction(InteractionType.UNSUBSCRIBE).model_copy(update={"occurred_at": sim.now}))
    late = consent_given().model_copy(update={"occurred_at": sim.now - timedelta(minutes=5)})
    assert sim.event(late).commands == []
    out = sim.event(privacy(PrivacyRequestKind.CONSENT_CONFIRMED))
    assert not out.resubscribed and sim.state.unsubscribed
    assert sim.advance(timedelta(days=30), tick=timedelta(hours=6)) == []


def unsubscribed_and_asked_again(sim: Sim) -> NurtureCommand:
    """A lead mailed a confirmation (link A) and confirmed, then unsubscribed an hour later, then,
    a day later, signed up again: the confirmation mail of that sign-up (link B)."""
    sim.event(stage(LifecycleStage.IQL, Temperature.COLD))
    sim.event(consent_given())
    sim.now += timedelta(hours=1)
    sim.event(interaction(InteractionType.UNSUBSCRIBE).model_copy(update={"occurred_at": sim.now}))
    sim.now += timedelta(days=1)
    [mail] = confirmations(sim.event(consent_given().model_copy(update={"occurred_at": sim.now})).commands)
    return mail


def confirmed_through(mail_due: datetime) -> PrivacyRecord:
    """A click on the link of a confirmation mail due at `mail_due` (services/nurture/links.py)."""
    expires = int((mail_due + RULES.link_lifetime).timestamp())
    return privacy(PrivacyRequestKind.CONSENT_CONFIRMED).model_copy(
        update={"link_expires_at": datetime.fromtimestamp(expires, UTC)}
    )


def test_only_the_link_of_the_mail_after_the_unsubscribe_lifts_it() -> None:
    """Link A, mailed before the unsubscribe, still works for days; the record says which link."""
    sim = Sim()
    mail = unsubscribed_and_asked_again(sim)
    link_a = confirmed_through(T0)
    assert not sim.event(link_a).resubscribed and sim.state.unsubscribed
    assert sim.advance(timedelta(days=1), tick=timedelta(hours=1)) == []
    link_b = confirmed_through(mail.send_after)
    assert sim.event(link_b).resubscribed and not sim.state.unsubscribed


def test_a_consent_from_a_list_import_lifts_no_unsubscribe() -> None:
    """An import's consent carries the import's time (HubSpot and Mailchimp refuse it too): no
    confirmation mail goes to the person who unsubscribed."""
    sim = Sim()
    sim.event(stage(LifecycleStage.IQL, Temperature.COLD))
    sim.event(interaction(InteractionType.UNSUBSCRIBE))
    sim.now += timedelta(days=30)
    imported = consent_given().model_copy(update={"occurred_at": sim.now, "consent_source": "import:event"})
    assert sim.event(imported).commands == []
    live = consent_given().model_copy(update={"occurred_at": sim.now, "consent_source": "web"})
    assert len(confirmations(sim.event(live).commands)) == 1


@pytest.mark.parametrize("ended_by_it", [True, False])
def test_an_unsubscribe_stored_without_its_time_still_lets_the_person_sign_up_again(
    ended_by_it: bool,
) -> None:
    """Rows stored before `unsubscribed_at` existed: the end of the enrolments the unsubscribe ended
    stands in for it, and without any, a new sign-up counts."""
    sim = Sim()
    sim.event(stage(LifecycleStage.IQL, Temperature.COLD))
    if not ended_by_it:
        sim.state = sim.state.model_copy(update={"enrolments": {}})
    sim.event(interaction(InteractionType.UNSUBSCRIBE))
    sim.state = sim.state.model_copy(update={"unsubscribed_at": None})  # as the old release stored it
    if ended_by_it:
        before = consent_given().model_copy(update={"occurred_at": T0 - timedelta(minutes=1)})
        assert sim.event(before).commands == []
    sim.now += timedelta(hours=1)
    again = consent_given().model_copy(update={"occurred_at": sim.now})
    [mail] = confirmations(sim.event(again).commands)
    assert sim.event(confirmed_through(mail.send_after)).resubscribed


def test_an_unsubscribe_reported_late_does_not_date_the_unsubscribe_back() -> None:
    sim = Sim()
    sim.event(stage(LifecycleStage.IQL, Temperature.COLD))
    sim.event(interaction(InteractionType.UNSUBSCRIBE).model_copy(update={"occurred_at": T0}))
    late = interaction(InteractionType.UNSUBSCRIBE).model_copy(update={"occurred_at": T0 - timedelta(days=2)})
    sim.event(late)
    assert sim.state.unsubscribed_at == T0
    between = consent_given().model_copy(update={"occurred_at": T0 - timedelta(days=1)})
    assert sim.event(between).commands == []


# --- steps wait for the confirmation ---------------------------------------------------------------


def test_a_step_due_before_the_person_confirms_goes_once_they_do() -> None:
    sim = Sim()
    sim.event(consent_given())
    assert len(confirmations(sim.event(stage(LifecycleStage.IQL, Temperature.COLD)).commands)) == 1
    assert sim.advance(timedelta(hours=1)) == []  # welcome's first step was due after 5 minutes
    assert sim.suppressed() == [Suppression.AWAITING_CONFIRMATION]
    assert sim.state.enrolments["welcome"].held_since == T0 + timedelta(minutes=5)
    confirmed = sim.event(privacy(PrivacyRequestKind.CONSENT_CONFIRMED))
    assert confirmed.state.next_due == sim.now
    [hello] = sim.advance(timedelta(minutes=1))
    assert (hello.template_id, hello.occurred_at) == ("welcome-1-hello", T0 + timedelta(hours=1))
    assert hello.consent_proof_ref == sim.state.consent_proof
    assert sim.state.enrolments["welcome"].held_since is None


def test_a_step_waits_no_longer_than_the_confirmation_link_works() -> None:
    sim = Sim()
    sim.event(consent_given())
    sim.event(stage(LifecycleStage.IQL, Temperature.COLD))
    wait = RULES.double_opt_in.resend_after
    assert sim.advance(wait - timedelta(minutes=1)) == []
    assert Suppression.NO_CONSENT not in sim.suppressed()
    assert sim.advance(timedelta(minutes=2)) == []
    assert Suppression.NO_CONSENT in sim.suppressed()  # skipped, as for any lead without consent
    assert sim.state.enrolments["welcome"].next_step >= 1
    assert sim.state.enrolments["welcome"].held_since is None
    sim.event(privacy(PrivacyRequestKind.CONSENT_CONFIRMED))  # too late for that step
    assert all(
        c.template_id != "welcome-1-hello" for c in sim.advance(timedelta(days=30), tick=timedelta(hours=6))
    )


def test_a_step_waits_as_long_as_the_link_works_whatever_resend_after_says() -> None:
    """Asking again after a day (`resend_after: P1D`) leaves the first link working for its week:
    a person who confirms on day two through it still gets the welcome mail."""
    data = yaml.safe_load((ROOT / "config" / "nurture.yaml").read_text())
    data.setdefault("double_opt_in", {})["resend_after"] = "P1D"
    sim = Sim(rules=NurtureRules.model_validate(data))
    sim.event(consent_given())
    sim.event(stage(LifecycleStage.IQL, Temperature.COLD))
    assert sim.advance(timedelta(days=1, hours=3), tick=timedelta(hours=1)) == []  # day two, 13:00 in Berlin
    sim.event(confirmed_through(T0))
    assert [c.template_id for c in sim.advance(timedelta(minutes=1))] == ["welcome-1-hello"]


def test_the_link_lifetime_comes_from_the_setting() -> None:
    short = RULES.with_link_lifetime(timedelta(hours=1))
    assert (short.link_lifetime, RULES.link_lifetime) == (timedelta(hours=1), timedelta(days=7))
    sim = Sim(rules=short)
    sim.event(consent_given())
    sim.event(stage(LifecycleStage.IQL, Temperature.COLD))
    sim.advance(timedelta(hours=2))
    assert Suppression.NO_CONSENT in sim.suppressed()  # the hour's link expired: the step was skipped


def test_a_consent_given_again_once_a_shorter_lived_link_expired_mails_a_new_one() -> None:
    """With links working a day (NURTURE_CONSENT_TOKEN_TTL_SECONDS) and `resend_after` a week, a
    person signing up again on day two got no new link: the first had expired, and they could not
    confirm at all until day seven."""
    sim = Sim(rules=RULES.with_link_lifetime(timedelta(days=1)))
    sim.event(stage(LifecycleStage.IQL, Temperature.COLD))
    assert len(confirmations(sim.event(consent_given()).commands)) == 1
    sim.now += timedelta(hours=23)
    assert confirmations(sim.event(consent_given()).commands) == []  # the first link still works
    sim.now += timedelta(hours=2)
    assert len(confirmations(sim.event(consent_given()).commands)) == 1


@pytest.mark.parametrize("zone", ["Europe", "America", "x" * 300, "../../etc/passwd", "Not/AZone"])
def test_a_profile_time_zone_that_names_no_zone_falls_back_to_the_default(zone: str) -> None:
    """ "Europe" is a directory of the zone database and 300 characters too long a path: ZoneInfo
    raised OSError, which crashed nurture's agent, and every lead's mail on the worker stopped."""
    evening = datetime(2026, 11, 24, 18, 58, tzinfo=UTC)  # 19:58 Berlin: quiet hours from 20:00
    sim = Sim(now=evening)
    sim.event(privacy(PrivacyRequestKind.CONSENT_CONFIRMED))
    sim.event(stage(LifecycleStage.IQL, Temperature.COLD, tz=zone))
    [first] = sim.advance(timedelta(hours=14))
    assert first.occurred_at.astimezone(ZoneInfo("Europe/Berlin")).hour == 8  # Berlin's quiet hours


def _changed_rules(change: dict[str, object]) -> dict[str, object]:
    data: dict[str, object] = yaml.safe_load((ROOT / "config" / "nurture.yaml").read_text())
    welcome = data["sequences"]["welcome"]  # type: ignore[index]
    for key, value in change.items():
        if key == "name":
            data["sequences"] = {value: welcome}
        elif key == "template_id":
            welcome["steps"][0]["template_id"] = value
        elif key == "delay":
            welcome["steps"][0]["delay"] = value
        elif key == "cooldown":
            welcome["reenrolment"] = {"allowed": True, "cooldown": value}
        elif key == "window":
            data["frequency_cap"]["window"] = value  # type: ignore[index]
        elif key == "default_timezone":
            data["quiet_hours"]["default_timezone"] = value  # type: ignore[index]
    return data


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"name": "w" * 129}, "at most 128 characters"),
        ({"template_id": "t" * 129}, "at most 128 characters"),
        ({"delay": 10**12}, "less than or equal to 3650 days"),
        ({"cooldown": "P20000D"}, "less than or equal to 3650 days"),
        ({"window": 10**12}, "less than or equal to 3650 days"),
        ({"default_timezone": "Europe"}, "unknown time zone 'Europe'"),
    ],
)
def test_rules_a_mail_or_its_date_could_not_carry_are_refused_at_start_up(
    tmp_path: Path, change: dict[str, object], message: str
) -> None:
    """A sequence name or template id over 128 characters was taken, then every mail of it failed
    its signed links, holding the outbox; a duration of 10**12 s overflowed the date it was added
    to; "Europe" as the default zone raised a bare IsADirectoryError."""
    path = tmp_path / "nurture.yaml"
    path.write_text(yaml.safe_dump(_changed_rules(change)))
    with pytest.raises(NurtureConfigError, match=message):
        load_rules(path)


def _at(record: PrivacyRecord, when: datetime) -> PrivacyRecord:
    return record.model_copy(update={"occurred_at": when})


def test_a_confirmation_link_mailed_before_a_withdrawal_does_not_restore_consent() -> None:
    """The link works for a week and capture forgets a repeat after 36 h: posted again after the
    withdrawal (its id gone from `seen`, or not), it restored the consent with the old proof."""
    sim = Sim()
    sim.event(stage(LifecycleStage.IQL, Temperature.COLD))
    [first_mail] = confirmations(sim.event(consent_given()).commands)
    old_link = confirmed_through(first_mail.occurred_at)
    assert sim.event(old_link).commands == [] and sim.state.consent_proof == old_link.event_id
    sim.now += timedelta(hours=1)
    assert sim.event(_at(privacy(PrivacyRequestKind.CONSENT_WITHDRAWN), sim.now)).stopped
    sim.now += timedelta(days=2)
    again = _at(old_link, sim.now).model_copy(update={"event_id": _id("replayed")})
    sim.event(again)
    assert sim.state.consent_proof is None
    assert sim.advance(timedelta(days=30), tick=timedelta(hours=6)) == []
    # Consent given anew is asked for anew, and its own link restores it.
    [new_mail] = confirmations(sim.event(_at(consent_given(), sim.now)).commands)
    new_link = _at(confirmed_through(new_mail.occurred_at), sim.now)
    sim.event(new_link)
    assert sim.state.consent_proof == new_link.event_id


def test_an_unsubscribe_after_signing_up_again_stops_mail_and_an_older_one_does_not() -> None:
    """Capture gave one event id to every unsubscribe through one mail: a lead that signed up again
    and then unsubscribed through the old mail once more stayed subscribed. Now a later unsubscribe
    is its own event; a replay of the first, from before the lead signed up again, changes nothing."""
    sim = Sim()
    sim.event(stage(LifecycleStage.IQL, Temperature.COLD))
    first = interaction(InteractionType.UNSUBSCRIBE).model_copy(update={"occurred_at": T0})
    assert sim.event(first).stopped
    sim.now += timedelta(hours=2)
    [mail] = confirmations(sim.event(_at(consent_given(), sim.now)).commands)
    assert sim.event(_at(confirmed_through(mail.occurred_at), sim.now)).resubscribed
    assert sim.state.resubscribed_at == sim.now
    replayed = first.model_copy(update={"event_id": _id("replayed-unsubscribe")})  # `seen` forgot it
    assert not sim.event(replayed).stopped and not sim.state.unsubscribed
    sim.now += timedelta(days=7)
    later = interaction(InteractionType.UNSUBSCRIBE).model_copy(update={"occurred_at": sim.now})
    assert sim.event(later).stopped and sim.state.unsubscribed
    assert sim.advance(timedelta(days=120), tick=timedelta(hours=6)) == []


def test_a_lead_keeps_its_newest_facts_within_a_bound() -> None:
    """Asset ids are the sender's text: 20,000 downloads made a 942 KB row, and three asset ids of
    400 KB a row over the producer's limit, which no commit of the lead's table could store."""
    sim = Sim()
    for n in range(1000):
        sim.event(interaction(InteractionType.CONTENT_DOWNLOAD, asset_id=f"asset-{n}"))
    sim.event(interaction(InteractionType.CONTENT_DOWNLOAD, asset_id="x" * 400_000))
    facts = sim.state.facts
    assert len(facts) == domain.MAX_FACTS and "content:asset-999" in facts
    assert "content:asset-0" not in facts and all(len(f) <= domain.MAX_FACT_LENGTH for f in facts)
    assert len(sim.state.model_dump_json()) < 20_000
