"""SLA notices (services/route/notices.py): who is told, once per breach or reminder, and what they read."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.handoff import Assignee, SlaEvent, SlaEventKind
from services.route import domain
from services.route import notices as route_notices
from services.route.config import ConfigError, RoutingConfig, SlaPolicy, parse_config
from services.route.notices import breach_notice
from services.route.notifier import notice_message
from tests.unit.test_route_domain import CONFIG, WED, handoff


def config(**sla: Any) -> RoutingConfig:
    teams = [dict(team) for team in CONFIG["teams"]]
    teams[0] = {
        **teams[0],
        "reps": [
            {"id": "anna", "name": "Anna Berger", "email": "anna@example.com", "timezone": "Europe/Berlin"},
            {"id": "jonas", "name": "Jonas Keller", "timezone": "Europe/Berlin"},
        ],
    }
    policy = {"escalation": ["head@example.com", "anna"], "max_reassignments": 2, **sla}
    return parse_config({**CONFIG, "teams": teams, "sla": policy})


def breach(state: domain.LeadState, cfg: RoutingConfig) -> tuple[SlaEvent, list[SlaEvent]]:
    """The breach events route publishes for `state`, and the first of them (the breached one)."""
    plan = domain.plan_breach(state, cfg.sla, cfg.team(state.handoff.assignee.team))
    events = domain.breach_events(state, plan, WED + timedelta(minutes=5))
    return events[0], events


def test_a_first_breach_tells_the_team_lead_with_the_lead_and_what_happened_since() -> None:
    cfg = config()
    state = domain.LeadState(handoff=handoff())
    event, _ = breach(state, cfg)
    plan = domain.plan_breach(state, cfg.sla, cfg.team("dach"))
    moved = domain.reassigned(
        state,
        plan,
        domain.Pick("dach", "jonas"),
        queue="dach",
        hid="h2",
        now=WED,
        due=WED + timedelta(minutes=10),
    )
    notice = breach_notice(event, moved, cfg, "https://crm.example/leads/{lead_id}")
    assert notice is not None
    assert notice.to == ("lead-dach@example.com",) and notice.cc == () and notice.unaddressed == ()
    assert notice.message_id == event.event_id and notice.lead_id == "lead-1"
    assert notice.subject == "[SLA missed] Jane Doe, Acme: not contacted within the hot SLA"
    lines = notice.text.splitlines()
    # The deadline in the team's zone: 10:05 UTC is 11:05 in Berlin.
    assert lines[0] == (
        "Anna Berger (dach) did not contact this lead before its hot SLA deadline, "
        "2026-11-25 11:05 Europe/Berlin."
    )
    assert "Title:    VP Marketing" in lines and "E-mail:   jane@acme.example" in lines
    assert "Phone:    +49301234567" in lines and "Lead id:  lead-1" in lines
    assert "Breach:   1" in lines
    assert "Now:      reassigned to Jonas Keller (dach), due 2026-11-25 11:10 Europe/Berlin" in lines
    assert "Open:     https://crm.example/leads/lead-1" in lines


def test_an_escalated_breach_copies_the_escalation_list_and_resolves_rep_ids() -> None:
    cfg = config()
    state = domain.LeadState(handoff=handoff(), breach_count=2)  # the third breach: level 2
    event, events = breach(state, cfg)
    assert [e.kind for e in events] == [SlaEventKind.BREACHED, SlaEventKind.ESCALATED]
    notice = breach_notice(event, replace(state, breach_count=3), cfg)
    assert notice is not None
    assert notice.to == ("lead-dach@example.com",)
    assert notice.cc == ("head@example.com", "anna@example.com")  # "anna" is a rep id
    assert notice.subject.startswith("[SLA escalated] ")
    assert "Breach:   3, escalated to level 2" in notice.text
    # max_reassignments=2: the third breach keeps the lead where it is.
    assert "Now:      stays with Anna Berger (dach): no reassignments left" in notice.text
    assert "Open:" not in notice.text


def test_only_the_breached_event_of_a_breach_gives_a_notice() -> None:
    cfg = config()
    state = domain.LeadState(handoff=handoff(), breach_count=1)
    _, events = breach(state, cfg)
    kinds = [e.kind for e in events]
    assert kinds == [SlaEventKind.BREACHED, SlaEventKind.ESCALATED]
    notices = [breach_notice(e, state, cfg) for e in events]
    assert [n is not None for n in notices] == [True, False]
    started = domain.sla_event(handoff(), SlaEventKind.STARTED, WED, notify=["lead-dach@example.com"])
    assert breach_notice(started, state, cfg) is None


def test_a_closed_or_erased_lead_gives_no_personal_data() -> None:
    cfg = config()
    event, _ = breach(domain.LeadState(handoff=handoff()), cfg)
    notice = breach_notice(event, None, cfg)
    assert notice is not None
    assert "Jane" not in notice.text and "jane@" not in notice.text and "+49" not in notice.text
    assert "Lead:     not named" in notice.text
    assert "Now:      closed since (won, lost, rejected or erased)" in notice.text
    assert notice.subject == "[SLA missed] lead-1: not contacted within the hot SLA"


def test_contacted_since_and_a_queued_lead() -> None:
    cfg = config()
    queued = domain.LeadState(handoff=handoff(rep=None))
    event, _ = breach(queued, cfg)
    notice = breach_notice(event, replace(queued, contacted=True), cfg)
    assert notice is not None
    assert notice.text.startswith("Nobody took this lead from the dach queue before its hot SLA deadline")
    assert "Now:      contacted since" in notice.text


def test_entries_without_an_address_are_reported_and_nobody_is_told_twice() -> None:
    cfg = config()
    event = domain.sla_event(
        handoff(),
        SlaEventKind.BREACHED,
        WED,
        breach_count=1,
        notify=["gone-rep", "head@example.com", "anna", "anna@example.com", "head@example.com"],
    )
    notice = breach_notice(event, None, cfg)
    assert notice is not None
    assert notice.unaddressed == ("gone-rep",)
    assert notice.to == ("head@example.com",) and notice.cc == ("anna@example.com",)
    nobody = event.model_copy(update={"notify": ["gone-rep"]})
    unaddressed = breach_notice(nobody, None, cfg)
    assert unaddressed is not None and unaddressed.to == () and unaddressed.unaddressed == ("gone-rep",)


def test_a_team_no_longer_configured_reads_in_utc() -> None:
    cfg = config()
    gone = handoff().model_copy(update={"assignee": Assignee(rep_id="old", team="disbanded")})
    event = domain.sla_event(gone, SlaEventKind.BREACHED, WED, breach_count=1, notify=["x@example.com"])
    notice = breach_notice(event, None, cfg)
    assert notice is not None
    assert notice.text.startswith("old (disbanded) did not contact this lead before its hot SLA deadline, ")
    assert "2026-11-25 10:05 UTC." in notice.text


@given(
    notify=st.lists(
        st.sampled_from(["lead-dach@example.com", "head@example.com", "anna", "jonas", "gone", "x@y.z"]),
        max_size=8,
    ),
    breaches=st.integers(0, 6),
    kind=st.sampled_from(list(SlaEventKind)),
)
def test_every_address_is_told_once_and_only_a_breach_tells(
    notify: list[str], breaches: int, kind: SlaEventKind
) -> None:
    cfg = config()
    event = domain.sla_event(handoff(), kind, WED, breach_count=breaches, notify=notify)
    notice = breach_notice(event, None, cfg)
    if kind is not SlaEventKind.BREACHED or not notify:
        assert notice is None
        return
    assert notice is not None
    told = [*notice.to, *notice.cc]
    assert len(told) == len(set(told))
    expected = {cfg.address(entry) for entry in notify} - {None}
    assert set(told) == expected
    assert len(notice.to) == (1 if expected else 0)
    assert set(notice.unaddressed) == {e for e in notify if cfg.address(e) is None}
    assert notice.message_id == event.event_id


@pytest.mark.parametrize(
    ("lead", "escalation", "problem"),
    [
        ("bob", [], "teams['dach'].lead: 'bob' is neither an e-mail address nor a rep id"),
        ("jonas", [], "teams['dach'].lead: rep 'jonas' is told of SLA breaches but has no email"),
        ("lead@example.com", ["vp@example.com", "nobody"], "sla.escalation[1]: 'nobody' is neither"),
    ],
)
def test_a_notify_entry_nobody_can_be_told_stops_the_service(
    lead: str, escalation: list[str], problem: str
) -> None:
    teams = [dict(team) for team in CONFIG["teams"]]
    teams[0] = {**teams[0], "lead": lead}
    with pytest.raises(ConfigError, match=problem.replace("[", r"\[").replace("]", r"\]")):
        parse_config({**CONFIG, "teams": teams, "sla": {"escalation": escalation}})


def test_a_rep_with_an_email_may_be_a_team_lead() -> None:
    cfg = config()
    teams = [dict(team) for team in CONFIG["teams"]]
    teams[0] = {**teams[0], "lead": "anna", "reps": cfg.model_dump()["teams"][0]["reps"]}
    parsed = parse_config({**CONFIG, "teams": teams, "sla": SlaPolicy().model_dump()})
    assert parsed.address("anna") == "anna@example.com"
    assert parsed.address("someone@example.com") == "someone@example.com"
    assert parsed.address("nobody") is None


def test_line_breaks_and_control_characters_in_lead_data_are_spaces_in_the_notice() -> None:
    """A company name from a provider may carry a line break: no header may, and the body's lines
    must stay the lines the notice writes."""
    cfg = config()
    contact = handoff().contact.model_copy(
        update={"company": "Acme\r\nHoldings\x00\u2028Europe", "job_title": "CEO\nLead id:  forged"}
    )
    state = domain.LeadState(handoff=handoff().model_copy(update={"contact": contact}))
    event, _ = breach(state, cfg)
    notice = breach_notice(event, state, cfg)
    assert notice is not None
    assert notice.subject == "[SLA missed] Jane Doe, Acme Holdings Europe: not contacted within the hot SLA"
    lines = notice.text.splitlines()
    assert "Lead:     Jane Doe, Acme Holdings Europe" in lines and "Title:    CEO Lead id: forged" in lines
    assert [line for line in lines if line.startswith("Lead id:")] == ["Lead id:  lead-1"]
    notice_message(notice, "sla@example.com")  # builds


# --- reminders before the deadline --------------------------------------------------------------

REMIND_AT = WED + timedelta(minutes=3)  # handoff() is due at WED + 5 min


def due_soon(state: domain.LeadState, cfg: RoutingConfig) -> SlaEvent:
    event = domain.due_soon_event(state, cfg, REMIND_AT)
    assert event.kind is SlaEventKind.DUE_SOON
    return event


def test_a_reminder_tells_the_rep_whom_to_contact_by_when_in_the_teams_zone() -> None:
    cfg = config()
    state = domain.LeadState(handoff=handoff())
    event = due_soon(state, cfg)
    now = REMIND_AT + timedelta(seconds=10)  # the notifier sends a little after the timer published
    notice = route_notices.reminder_notice(event, state, cfg, now, "https://crm.example/leads/{lead_id}")
    assert notice is not None
    assert notice.to == ("anna@example.com",) and notice.cc == () and notice.unaddressed == ()
    assert notice.message_id == event.event_id and notice.lead_id == "lead-1"
    assert notice.subject == "[SLA due soon] Jane Doe, Acme: contact by 2026-11-25 11:05 Europe/Berlin"
    lines = notice.text.splitlines()
    assert lines[0] == (
        "Please contact this lead by 2026-11-25 11:05 Europe/Berlin, its hot SLA deadline: 1 min left."
    )
    assert "Lead:     Jane Doe, Acme" in lines and "Title:    VP Marketing" in lines
    assert "E-mail:   jane@acme.example" in lines and "Phone:    +49301234567" in lines
    assert "Deadline: 2026-11-25 11:05 Europe/Berlin" in lines and "Left:     1 min" in lines
    assert "Lead id:  lead-1" in lines and "Open:     https://crm.example/leads/lead-1" in lines
    assert notice_message(notice, "sla@example.com")["To"] == "anna@example.com"
    # Only a reminder gives a reminder, and a reminder gives no breach notice.
    assert breach_notice(event, state, cfg) is None
    started = domain.sla_event(state.handoff, SlaEventKind.STARTED, WED, notify=["anna"])
    assert route_notices.reminder_notice(started, state, cfg, now) is None


def test_a_queued_leads_reminder_goes_to_the_team_lead_and_a_rep_without_email_is_unaddressed() -> None:
    cfg = config()
    queued = domain.LeadState(handoff=handoff(rep=None))
    notice = route_notices.reminder_notice(due_soon(queued, cfg), queued, cfg, REMIND_AT)
    assert notice is not None and notice.to == ("lead-dach@example.com",)
    assert notice.text.startswith("This lead waits in the dach queue: someone must contact it by ")
    assert "Left:     2 min" in notice.text.splitlines()
    jonas = domain.LeadState(handoff=handoff(rep="jonas"))  # no email in the config
    unaddressed = route_notices.reminder_notice(due_soon(jonas, cfg), jonas, cfg, REMIND_AT)
    assert unaddressed is not None and unaddressed.to == () and unaddressed.unaddressed == ("jonas",)


def test_a_reminder_is_stale_once_contacted_closed_handed_on_or_past_its_deadline() -> None:
    cfg = config()
    state = domain.LeadState(handoff=handoff())
    event = due_soon(state, cfg)
    plan = domain.plan_breach(state, cfg.sla, cfg.team("dach"))
    moved = domain.reassigned(
        state,
        plan,
        domain.Pick("dach", "jonas"),
        queue="dach",
        hid="h2",
        now=WED,
        due=WED + timedelta(hours=1),
    )
    stale = {
        "contacted": replace(state, contacted=True),
        "closed": None,
        "handed on": moved,
    }
    for reason, now_state in stale.items():
        assert route_notices.reminder_stale(event, now_state, REMIND_AT) == reason
        assert route_notices.reminder_notice(event, now_state, cfg, REMIND_AT) is None
    assert route_notices.reminder_stale(event, state, event.due_at) == "past its deadline"
    assert route_notices.reminder_notice(event, state, cfg, event.due_at) is None
    assert route_notices.reminder_stale(event, state, event.due_at - timedelta(seconds=1)) is None
    last = route_notices.reminder_notice(event, state, cfg, event.due_at - timedelta(seconds=1))
    assert last is not None and "Left:     less than a minute" in last.text.splitlines()


def test_line_breaks_in_lead_data_are_spaces_in_the_reminder() -> None:
    cfg = config()
    contact = handoff().contact.model_copy(
        update={"company": "Acme\r\nHoldings\u2028Europe", "phone": "+49 30\nLead id:  forged"}
    )
    state = domain.LeadState(handoff=handoff().model_copy(update={"contact": contact}))
    notice = route_notices.reminder_notice(due_soon(state, cfg), state, cfg, REMIND_AT)
    assert notice is not None
    assert notice.subject == (
        "[SLA due soon] Jane Doe, Acme Holdings Europe: contact by 2026-11-25 11:05 Europe/Berlin"
    )
    lines = notice.text.splitlines()
    assert "Lead:     Jane Doe, Acme Holdings Europe" in lines and "Phone:    +49 30 Lead id: forged" in lines
    assert [line for line in lines if line.startswith("Lead id:")] == ["Lead id:  lead-1"]
    assert notice_message(notice, "sla@example.com")["Subject"] == notice.subject  # builds


@pytest.mark.parametrize(
    ("left", "text"),
    [
        (timedelta(seconds=59), "less than a minute"),
        (timedelta(minutes=2, seconds=59), "2 min"),
        (timedelta(minutes=59, seconds=59), "59 min"),
        (timedelta(hours=1, minutes=5), "1 h 05 min"),
        (timedelta(hours=26), "26 h 00 min"),
    ],
)
def test_time_left_is_rounded_down_to_the_minute(left: timedelta, text: str) -> None:
    cfg = config()
    state = domain.LeadState(handoff=handoff())
    event = due_soon(state, cfg)
    notice = route_notices.reminder_notice(event, state, cfg, event.due_at - left)
    assert notice is not None and f"Left:     {text}" in notice.text.splitlines()
