"""Route's pure rules: matching, ownership, availability, SLA deadlines, breaches and activity."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.handoff import Assignee, SlaEventKind
from schemas.sales import SalesActivity, SalesActivityKind
from schemas.stage import StageChange
from services.route import domain
from services.route.config import RoutingConfig, SlaPolicy, SlaTier, Team, WorkingHours, parse_config

# A Wednesday, 10:00 UTC (11:00 in Berlin).
WED = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)

CONFIG: dict[str, Any] = {
    "regions": {"dach": ["DE", "AT", "CH"], "na": ["US", "CA"]},
    "teams": [
        {
            "name": "dach",
            "lead": "lead-dach@example.com",
            "timezone": "Europe/Berlin",
            "working_hours": {"days": ["mon", "tue", "wed", "thu", "fri"], "start": "09:00", "end": "17:00"},
            "reps": [
                {"id": "anna", "weight": 2, "capacity": 3, "timezone": "Europe/Berlin"},
                {"id": "jonas", "weight": 1, "capacity": 3, "timezone": "Europe/Berlin"},
            ],
        },
        {
            "name": "na",
            "timezone": "America/New_York",
            "reps": [{"id": "mia", "timezone": "America/New_York"}],
        },
        {"name": "queue", "working_hours": None, "reps": [{"id": "sdr", "capacity": 100}]},
    ],
    "rules": [
        {"name": "dach-big-software", "team": "dach", "match": {"regions": ["dach"], "min_employees": 200}},
        {"name": "na-hot-ads", "team": "na", "match": {"countries": ["us"], "sources": ["Meta_Ads"]}},
        {"name": "fintech", "team": "na", "match": {"industries": ["FinTech"], "temperatures": ["hot"]}},
        {"name": "smb-range", "team": "dach", "match": {"employee_ranges": ["11-50"], "lifecycle": ["mql"]}},
    ],
    "account_owners": {"Owned.example": "jonas"},
    "fallback_team": "queue",
}


def config(**overrides: Any) -> RoutingConfig:
    return parse_config({**CONFIG, **overrides})


def make_change(
    lead_id: str = "lead-1",
    *,
    event_id: str | None = None,
    temperature: str = "hot",
    lifecycle: str = "mql",
    sales_ready: bool = True,
    country: str | None = "DE",
    employees: int | None = 500,
    employee_range: str | None = None,
    industry: str | None = "Software",
    channel: str | None = "web",
    domain_name: str | None = None,
    email: str | None = "jane@acme.example",
    occurred_at: datetime = WED,
) -> StageChange:
    return StageChange.model_validate(
        {
            "event_id": event_id or f"sc-{lead_id}",
            "occurred_at": occurred_at.isoformat(),
            "lead_id": lead_id,
            "kind": "temperature",
            "from_stage": "warm",
            "to_stage": temperature,
            "temperature": temperature,
            "lifecycle": lifecycle,
            "sales_ready": sales_ready,
            "scores": {"fit": 40, "engagement": 60, "total": 100},
            "reasons": [{"rule": "demo_request", "points": 50}],
            "trigger": {
                "event_id": f"tr-{lead_id}",
                "type": "demo_request",
                "occurred_at": occurred_at.isoformat(),
            },
            "profile": {
                "lead_id": lead_id,
                "email": email,
                "email_kind": "business",
                "first_name": "Jane",
                "last_name": "Doe",
                "phone": "+49301234567",
                "company": "Acme",
                "job_title": "VP Marketing",
                "country": country,
                "firmographics": {
                    "domain": domain_name,
                    "employees": employees,
                    "employee_range": employee_range,
                    "industry": industry,
                },
            },
            "source": {"channel": channel, "utm_campaign": "spring-launch"},
        }
    )


# --- routing ------------------------------------------------------------------------------------


def test_first_matching_rule_wins() -> None:
    assert domain.route(make_change(), config()) == domain.Route("dach", "dach-big-software")


def test_every_criterion_must_hold_and_unknown_data_does_not_match() -> None:
    assert domain.route(make_change(employees=50), config()).team == "queue"
    assert domain.route(make_change(employees=None), config()).team == "queue"
    assert domain.route(make_change(country=None), config()).team == "queue"


def test_country_source_and_case_insensitive_values() -> None:
    change = make_change(country="us", channel="META_ADS", employees=None)
    assert domain.route(change, config()) == domain.Route("na", "na-hot-ads")


def test_industry_and_temperature_rule() -> None:
    hot = make_change(country="FR", industry="fintech")
    assert domain.route(hot, config()).rule == "fintech"
    warm = make_change(country="FR", industry="fintech", temperature="warm")
    assert domain.route(warm, config()).team == "queue"


def test_segment_by_employee_range_and_lifecycle() -> None:
    change = make_change(country="FR", employees=None, employee_range="11-50", industry=None)
    assert domain.route(change, config()).rule == "smb-range"
    pql = make_change(country="FR", employees=None, employee_range="11-50", industry=None, lifecycle="pql")
    assert domain.route(pql, config()).rule == "fallback"


def test_account_owner_beats_rules_by_firmographic_or_email_domain() -> None:
    assert domain.route(make_change(domain_name="owned.example"), config()) == domain.Route(
        "dach", "account_owner", "jonas"
    )
    assert domain.route(make_change(email="boss@OWNED.example"), config()).owner == "jonas"


def test_free_mail_domain_is_not_an_account() -> None:
    change = make_change(email="x@owned.example").model_copy(
        update={
            "profile": make_change(email="x@owned.example").profile.model_copy(update={"email_kind": "free"})
        }
    )
    assert domain.company_domain(change) is None


def test_owner_comes_first_then_team_then_fallback() -> None:
    cfg = config()
    decision = domain.route(make_change(domain_name="owned.example"), cfg)
    groups = domain.groups(decision, cfg, {}, WED)
    assert [(g.team, [c.rep_id for c in g.candidates]) for g in groups] == [
        ("dach", ["jonas"]),
        ("dach", ["anna", "jonas"]),
        ("queue", ["sdr"]),
    ]


def test_unavailable_owner_falls_back_to_the_team_rotation() -> None:
    cfg = config()
    decision = domain.route(make_change(domain_name="owned.example"), cfg)
    groups = domain.groups(decision, cfg, {"jonas": domain.RepStatus(available=False)}, WED)
    assert [g.team for g in groups] == ["dach", "queue"]
    assert [c.rep_id for c in groups[0].candidates] == ["anna"]


# --- availability -------------------------------------------------------------------------------


def test_working_hours_are_in_the_reps_time_zone() -> None:
    cfg = config()
    team = cfg.team("dach")
    anna = team.reps[0]
    ok = domain.RepStatus()
    assert domain.unavailable_reason(anna, team, ok, WED) is None
    # 16:30 UTC is 17:30 in Berlin: after hours.
    assert domain.unavailable_reason(anna, team, ok, WED.replace(hour=16, minute=30)) == "off_hours"
    saturday = WED + timedelta(days=3)
    assert domain.unavailable_reason(anna, team, ok, saturday) == "off_hours"


def test_out_of_office_and_unavailable() -> None:
    cfg = config()
    team = cfg.team("dach")
    anna = team.reps[0]
    away = domain.RepStatus(out_of_office_until=WED + timedelta(hours=1))
    assert domain.unavailable_reason(anna, team, away, WED) == "out_of_office"
    assert domain.unavailable_reason(anna, team, away, WED + timedelta(hours=1)) is None
    off = domain.RepStatus(available=False)
    assert domain.unavailable_reason(anna, team, off, WED) == "unavailable"


def test_configured_absence() -> None:
    cfg = config()
    teams = cfg.model_dump(mode="json")["teams"]
    teams[0]["reps"][0]["out_of_office"] = [{"start": "2026-11-20T00:00:00Z", "end": "2026-11-27T00:00:00Z"}]
    cfg = config(teams=teams)
    team = cfg.team("dach")
    assert domain.unavailable_reason(team.reps[0], team, domain.RepStatus(), WED) == "out_of_office"


def test_a_configured_capacity_gives_way_to_a_run_time_one() -> None:
    capacity = domain.capacity(config().team("dach").reps[0], domain.RepStatus(capacity=7))
    assert capacity == 7


# --- SLA ----------------------------------------------------------------------------------------


def test_hot_tier_is_five_wall_clock_minutes() -> None:
    policy = SlaPolicy()
    tier = domain.sla_tier(make_change(), policy)
    assert tier.name == "hot"
    saturday_night = datetime(2026, 11, 28, 23, 0, tzinfo=UTC)
    assert domain.due_at(saturday_night, tier, config().team("dach")) == saturday_night + timedelta(minutes=5)


def test_mql_tier_counts_four_business_hours() -> None:
    policy = SlaPolicy()
    tier = domain.sla_tier(make_change(temperature="warm"), policy)
    assert tier.name == "mql"
    team = config().team("dach")  # 09:00-17:00 Europe/Berlin, Mon-Fri
    # Wed 11:00 Berlin + 4h = 15:00 Berlin = 14:00 UTC.
    assert domain.due_at(WED, tier, team) == datetime(2026, 11, 25, 14, 0, tzinfo=UTC)
    # Fri 15:00 Berlin: 2h on Friday, 2h on Monday -> Mon 11:00 Berlin = 10:00 UTC.
    friday = datetime(2026, 11, 27, 14, 0, tzinfo=UTC)
    assert domain.due_at(friday, tier, team) == datetime(2026, 11, 30, 10, 0, tzinfo=UTC)
    # Saturday: the clock starts Monday 09:00 Berlin.
    saturday = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
    assert domain.due_at(saturday, tier, team) == datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def test_business_time_across_a_dst_change() -> None:
    hours = WorkingHours(days=("mon", "tue", "wed", "thu", "fri", "sat", "sun"), start="09:00", end="17:00")
    # Europe/Berlin leaves DST on 2026-10-25 (Sunday). Sat 16:00 local + 2h -> Sun 10:00 local (09:00 UTC).
    start = datetime(2026, 10, 24, 14, 0, tzinfo=UTC)
    assert domain.add_business_time(start, 120, hours, "Europe/Berlin") == datetime(
        2026, 10, 25, 9, 0, tzinfo=UTC
    )


def test_unmatched_lead_gets_the_default_tier() -> None:
    policy = SlaPolicy()
    assert domain.sla_tier(make_change(temperature="warm", lifecycle="iql"), policy).name == "mql"
    assert domain.tier_named(policy, "gone").name == "mql"


# --- hand-offs, breaches, activity --------------------------------------------------------------


def handoff(rep: str | None = "anna") -> Any:
    tier = SlaTier(name="hot", minutes=5, temperatures=("hot",))
    hid = domain.handoff_id("lead-1", "sc-lead-1")
    return domain.build_handoff(
        make_change(),
        Assignee(rep_id=rep, team="dach"),
        tier,
        due=WED + timedelta(minutes=5),
        now=WED,
        hid=hid,
    )


def test_handoff_carries_contact_scores_source_trigger_and_sla() -> None:
    made = handoff()
    assert made.handoff_id == made.event_id == domain.handoff_id("lead-1", "sc-lead-1")
    assert made.contact.email == "jane@acme.example"
    assert made.contact.job_title == "VP Marketing"
    assert made.source.utm_campaign == "spring-launch"
    assert made.trigger.type == "demo_request"
    assert made.sla.due_at == WED + timedelta(minutes=5)
    assert made.assignee == Assignee(rep_id="anna", team="dach")


def test_handoff_ids_are_deterministic_and_distinct() -> None:
    assert domain.handoff_id("a", "e") == domain.handoff_id("a", "e")
    assert (
        len({domain.handoff_id("a", "e"), domain.handoff_id("a", "e", 1), domain.handoff_id("b", "e")}) == 3
    )


def test_only_sales_ready_changes_are_handed_off() -> None:
    assert domain.wants_handoff(make_change())
    assert not domain.wants_handoff(make_change(sales_ready=False))


def test_breaches_notify_the_team_lead_then_escalate() -> None:
    team = config().team("dach")
    policy = SlaPolicy(escalation=("head@example.com", "vp@example.com"), max_reassignments=2)
    state = domain.LeadState(handoff=handoff())
    first = domain.plan_breach(state, policy, team)
    assert (first.breach_count, first.escalation_level, first.notify) == (1, 0, ("lead-dach@example.com",))
    assert first.reassign and first.exclude == ("anna",)
    events = domain.breach_events(state, first, WED)
    assert [e.kind for e in events] == [SlaEventKind.BREACHED]
    moved = domain.reassigned(
        state,
        first,
        domain.Pick("dach", "jonas"),
        queue="dach",
        hid="h2",
        now=WED,
        due=WED + timedelta(minutes=5),
    )
    assert moved.handoff.assignee.rep_id == "jonas" and moved.handoff.handoff_id == "h2"
    second = domain.plan_breach(moved, policy, team)
    assert second.escalation_level == 1
    assert second.notify == ("lead-dach@example.com", "head@example.com")
    assert second.exclude == ("anna", "jonas")
    assert [e.kind for e in domain.breach_events(moved, second, WED)] == [
        SlaEventKind.BREACHED,
        SlaEventKind.ESCALATED,
    ]
    third = domain.plan_breach(
        domain.reassigned(moved, second, None, queue="dach", hid="h3", now=WED, due=WED), policy, team
    )
    assert not third.reassign  # max_reassignments=2


def test_breach_without_free_rep_goes_to_the_team_queue() -> None:
    state = domain.LeadState(handoff=handoff())
    plan = domain.plan_breach(state, SlaPolicy(), config().team("dach"))
    moved = domain.reassigned(state, plan, None, queue="dach", hid="h2", now=WED, due=WED)
    assert moved.handoff.assignee == Assignee(rep_id=None, team="dach")


def test_a_team_no_longer_configured_is_the_fallback_team() -> None:
    """A breach of a lead whose team was taken out of the file goes on with the fallback team."""
    cfg = config()
    assert domain.team_named(cfg, "dach") is cfg.team("dach")
    assert domain.team_named(cfg, "gone") is cfg.team("queue")


def activity(kind: SalesActivityKind, reason: str | None = None) -> SalesActivity:
    return SalesActivity(
        event_id=f"act-{kind}", occurred_at=WED, lead_id="lead-1", activity=kind, rep_id="anna", reason=reason
    )


@pytest.mark.parametrize(
    ("kind", "contacted", "effect"),
    [
        (SalesActivityKind.CONTACTED, False, domain.ActivityEffect.SLA_MET),
        (SalesActivityKind.ACCEPTED, False, domain.ActivityEffect.SLA_MET),
        (SalesActivityKind.CONTACTED, True, domain.ActivityEffect.IGNORE),
        (SalesActivityKind.REJECTED, False, domain.ActivityEffect.RELEASE),
        (SalesActivityKind.WON, True, domain.ActivityEffect.RELEASE),
        (SalesActivityKind.LOST, True, domain.ActivityEffect.RELEASE),
        (SalesActivityKind.BANT_UPDATED, False, domain.ActivityEffect.IGNORE),
    ],
)
def test_activity_effects(kind: SalesActivityKind, contacted: bool, effect: domain.ActivityEffect) -> None:
    state = domain.LeadState(handoff=handoff(), contacted=contacted)
    assert domain.activity_effect(state, activity(kind)) == effect


def test_activity_for_an_unknown_lead_is_ignored() -> None:
    assert domain.activity_effect(None, activity(SalesActivityKind.CONTACTED)) == domain.ActivityEffect.IGNORE


def test_rejected_returns_the_lead_with_the_reason() -> None:
    state = domain.LeadState(handoff=handoff(), contacted=True)
    event = domain.release_event(state, activity(SalesActivityKind.REJECTED, "wrong territory"), WED)
    assert event is not None
    assert event.kind == SlaEventKind.CANCELLED and event.reason == "rejected: wrong territory"
    assert domain.release_event(state, activity(SalesActivityKind.WON), WED) is None


def test_team_without_hours_is_always_working() -> None:
    team = Team(name="t", working_hours=None, reps=())
    assert domain.is_working(team.working_hours, "UTC", WED + timedelta(days=3, hours=13))


def test_each_candidate_team_has_its_own_deadline() -> None:
    """dach closed at 18:00 in Berlin: its reps' leads wait for Thursday, the 24/7 queue's do not."""
    cfg = config()
    evening = WED.replace(hour=17)
    tier = SlaTier(name="mql", minutes=240, business_hours=True)
    groups = domain.groups(domain.Route("dach", "rule"), cfg, {}, evening)
    assert [group.team for group in groups] == ["queue"]  # dach's reps are off
    candidates = (domain.Group("dach", ()), *groups)
    assert domain.due_by_team(evening, tier, cfg, candidates) == {
        "dach": datetime(2026, 11, 26, 12, 0, tzinfo=UTC),
        "queue": evening + timedelta(hours=4),
    }


def test_an_activity_from_before_the_chain_began_is_ignored() -> None:
    """A replay of an earlier hand-off's activity must not close or meet the lead's new hand-off."""
    state = domain.LeadState(handoff=handoff())
    earlier = activity(SalesActivityKind.WON).model_copy(update={"occurred_at": WED - timedelta(seconds=1)})
    assert domain.activity_effect(state, earlier) == domain.ActivityEffect.IGNORE
    contact = activity(SalesActivityKind.CONTACTED).model_copy(
        update={"occurred_at": WED - timedelta(days=1)}
    )
    assert domain.activity_effect(state, contact) == domain.ActivityEffect.IGNORE
    assert domain.activity_effect(state, contact, timedelta(minutes=5)) == domain.ActivityEffect.IGNORE


def test_a_contact_dated_by_a_sales_tool_clock_a_little_behind_is_the_new_hand_offs() -> None:
    """A rep calls within seconds of the hand-off; the CRM's clock runs 30 s behind route's."""
    state = domain.LeadState(handoff=handoff())
    call = activity(SalesActivityKind.CONTACTED).model_copy(
        update={"occurred_at": WED - timedelta(seconds=20)}
    )
    skew = SlaPolicy().activity_clock_skew
    assert domain.activity_effect(state, call, skew) == domain.ActivityEffect.SLA_MET
    assert domain.activity_effect(state, call.model_copy(update={"occurred_at": WED - skew * 2}), skew) == (
        domain.ActivityEffect.IGNORE
    )


def test_a_reassignment_continues_the_chain_of_the_first_hand_off() -> None:
    """An activity made during the first hand-off still counts once a breach moved the lead on."""
    state = domain.LeadState(handoff=handoff())
    plan = domain.plan_breach(state, SlaPolicy(), config().team("dach"))
    later = WED + timedelta(minutes=6)
    moved = domain.reassigned(state, plan, None, queue="dach", hid="h2", now=later, due=later)
    assert moved.chain_started_at == WED and moved.chain_id == state.handoff.handoff_id
    during_first = activity(SalesActivityKind.LOST).model_copy(update={"occurred_at": WED})
    assert domain.activity_effect(moved, during_first) == domain.ActivityEffect.RELEASE


def test_a_company_name_longer_than_the_contract_is_shortened_not_refused() -> None:
    change = make_change()
    data = change.model_dump(mode="json")
    data["profile"]["company"] = None
    data["profile"]["firmographics"]["company_name"] = "Acme " + "Holding " * 40
    data["profile"]["job_title"] = "Head of " + "x" * 400
    contact = domain.contact_of(StageChange.model_validate(data))
    assert contact.company is not None and contact.company.startswith("Acme Holding")
    assert len(contact.company) == 256
    assert contact.job_title is not None and contact.job_title.startswith("Head of ")
    assert len(contact.job_title) == 256
    assert contact.email == "jane@acme.example" and contact.first_name == "Jane"


def test_a_kept_breach_rearms_the_clock_while_escalation_steps_remain() -> None:
    """From the second breach on the escalation list is told, one more entry per breach: a breach
    that keeps the lead arms its clock again until the list is used up."""
    team = config().team("dach")
    policy = SlaPolicy(reassign_on_breach=False, escalation=("head@example.com", "vp@example.com"))
    state = domain.LeadState(handoff=handoff())
    plans = []
    for _ in range(4):
        plan = domain.plan_breach(state, policy, team)
        plans.append(plan)
        state = replace(state, breach_count=plan.breach_count)
    assert [(p.breach_count, p.reassign, p.rearm) for p in plans] == [
        (1, False, True),
        (2, False, True),
        (3, False, False),
        (4, False, False),
    ]
    assert plans[2].notify == ("lead-dach@example.com", "head@example.com", "vp@example.com")
    assert not domain.plan_breach(
        domain.LeadState(handoff=handoff()), SlaPolicy(reassign_on_breach=False), team
    ).rearm


# --- reminders before the deadline --------------------------------------------------------------

REMINDING_SLA: dict[str, Any] = {
    "tiers": [
        {"name": "hot", "minutes": 5, "temperatures": ["hot"], "remind_before": "PT2M"},
        {"name": "mql", "minutes": 240, "lifecycle": ["mql"]},
    ],
    "default_tier": "mql",
}
DUE = WED + timedelta(minutes=5)  # handoff()'s deadline
REMIND_AT = DUE - timedelta(minutes=2)


def reminding() -> RoutingConfig:
    return config(sla=REMINDING_SLA)


def test_a_reminder_is_due_from_remind_before_ahead_of_the_deadline_until_it() -> None:
    state = domain.LeadState(handoff=handoff())
    tick = timedelta(microseconds=1)
    assert domain.check_reminder(state, reminding(), REMIND_AT - tick) == domain.ReminderCheck(
        later=REMIND_AT
    )
    for now in (REMIND_AT, DUE - tick):
        event = domain.check_reminder(state, reminding(), now).event
        assert event is not None and event.kind is SlaEventKind.DUE_SOON
        assert event.handoff_id == state.handoff.handoff_id and event.due_at == DUE
        assert event.tier == "hot" and event.assignee == Assignee(rep_id="anna", team="dach")
        assert event.notify == ["anna"]
    assert domain.check_reminder(state, reminding(), DUE) == domain.ReminderCheck()  # the breach's turn


def test_no_reminder_once_contacted_closed_or_breached_nor_for_a_tier_without_one() -> None:
    state = domain.LeadState(handoff=handoff())
    assert (
        domain.check_reminder(replace(state, contacted=True), reminding(), REMIND_AT)
        == domain.ReminderCheck()
    )
    assert domain.check_reminder(None, reminding(), REMIND_AT) == domain.ReminderCheck()
    # A breach waiting for the broker: its deadline passed, the team lead is told of that instead.
    assert domain.check_reminder(state, reminding(), REMIND_AT, pending=True) == domain.ReminderCheck()
    assert domain.check_reminder(state, config(), REMIND_AT) == domain.ReminderCheck()  # no remind_before
    renamed = {
        **REMINDING_SLA,
        "tiers": [{**REMINDING_SLA["tiers"][0], "name": "urgent"}, REMINDING_SLA["tiers"][1]],
    }
    # A tier the file no longer has: the default tier's reminder does not speak for it.
    assert domain.check_reminder(state, config(sla=renamed), REMIND_AT) == domain.ReminderCheck()


def test_a_kept_breach_rearmed_for_escalation_does_not_remind_the_rep_again() -> None:
    """Its clock runs again (a new score in Redis), but the hand-off's own deadline has passed."""
    kept = domain.LeadState(handoff=handoff(), breach_count=1)
    later = DUE + timedelta(minutes=4)  # within the re-armed clock's last two minutes
    assert domain.check_reminder(kept, reminding(), later) == domain.ReminderCheck()


def test_a_queued_lead_reminds_the_team_lead_and_the_event_id_is_the_hand_offs() -> None:
    queued = domain.LeadState(handoff=handoff(rep=None))
    event = domain.check_reminder(queued, reminding(), REMIND_AT).event
    assert event is not None and event.notify == ["lead-dach@example.com"]
    again = domain.check_reminder(queued, reminding(), REMIND_AT + timedelta(seconds=30)).event
    assert again is not None and again.event_id == event.event_id  # two workers: one id
    started = domain.sla_event(queued.handoff, SlaEventKind.STARTED, WED)
    assert started.event_id != event.event_id
    teams = [{**team, "lead": None} if team["name"] == "dach" else team for team in CONFIG["teams"]]
    leaderless = config(teams=teams, sla=REMINDING_SLA)
    nobody = domain.check_reminder(queued, leaderless, REMIND_AT).event
    assert nobody is not None and nobody.notify == []


@given(
    offset=st.timedeltas(min_value=timedelta(minutes=-10), max_value=timedelta(minutes=10)),
    remind_seconds=st.integers(1, 5 * 60 - 1),
    contacted=st.booleans(),
    pending=st.booleans(),
    queued=st.booleans(),
)
def test_a_reminder_is_due_exactly_inside_its_window_for_an_uncontacted_hand_off(
    offset: timedelta, remind_seconds: int, contacted: bool, pending: bool, queued: bool
) -> None:
    remind_before = timedelta(seconds=remind_seconds)
    tier = {"name": "hot", "minutes": 5, "remind_before": remind_before.total_seconds()}
    cfg = config(sla={"tiers": [tier], "default_tier": "hot"})
    state = domain.LeadState(handoff=handoff(rep=None if queued else "anna"), contacted=contacted)
    now = DUE + offset
    check = domain.check_reminder(state, cfg, now, pending=pending)
    in_window = DUE - remind_before <= now < DUE
    assert (check.event is not None) == (in_window and not contacted and not pending)
    if not contacted and not pending and now < DUE - remind_before:
        assert check.later == DUE - remind_before  # looked at again then, not every tick
    else:
        assert check.later is None
    if check.event is not None:
        assert check.event.due_at == DUE and check.event.kind is SlaEventKind.DUE_SOON
        assert check.event.notify == (["lead-dach@example.com"] if queued else ["anna"])
