"""What an SLA breach tells people: the notice for a `breached` event on leads.sla, and the reminder
for a `due_soon` one. Pure, like domain.py: the notifier (notifier.py) reads the lead's state and
sends what this returns.

One notice per breach, on its `breached` event: the `escalated` and `reassigned` events of the same
breach carry the same people, and three e-mails for one missed deadline teach people to ignore
them. The notice says what happened since instead, from the lead's state as route stored it before
it published the breach: reassigned to whom, kept, contacted or closed meanwhile.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from schemas.handoff import Assignee, SlaEvent, SlaEventKind
from services.route.config import RoutingConfig
from services.route.domain import LeadState

# Control characters (CR and LF among them) and line or paragraph separators, with the spaces around.
_BREAKS = re.compile(r"[\s\x00-\x1f\x7f-\x9f]+")


def one_line(text: str) -> str:
    """`text` for a header or a line of the notice: what a lead's data may carry (a company name from
    an enrichment provider with a line break in it) would break the header, which EmailMessage then
    refuses, or forge a line of the notice. Each run of them is one space."""
    return _BREAKS.sub(" ", text).strip()


@dataclass(frozen=True)
class Notice:
    message_id: str  # the breach event's id: one notice per breach, however often it is read
    lead_id: str
    to: tuple[str, ...]  # the team lead, or the first address reachable
    cc: tuple[str, ...]  # the escalation chain so far
    unaddressed: tuple[str, ...]  # notify entries without an address (a rep since removed)
    subject: str  # one line (`one_line`)
    text: str


def gives_notice(event: SlaEvent) -> bool:
    """A breach with people to tell (the first event of each breach)."""
    return event.kind is SlaEventKind.BREACHED and bool(event.notify)


def breach_notice(
    event: SlaEvent, state: LeadState | None, config: RoutingConfig, lead_url: str | None = None
) -> Notice | None:
    """The notice for a breach event with people to tell; None for any other event."""
    if not gives_notice(event):
        return None
    addresses, unaddressed = _addresses(event.notify, config)
    zone = _zone(config, event.assignee.team)
    # Personal data only while the lead is open: an erased or closed lead leaves none in route.
    contact = state.handoff.contact if state is not None else None
    who = _person(contact.first_name, contact.last_name, contact.company) if contact else None
    escalated = f", escalated to level {event.escalation_level}" if event.escalation_level else ""
    deadline = f"its {event.tier} SLA deadline, {_at(event.due_at, zone)}"
    missed = (
        f"{_assignee(config, event.assignee)} did not contact this lead before {deadline}."
        if event.assignee.rep_id
        else f"Nobody took this lead from the {event.assignee.team} queue before {deadline}."
    )
    lines = [
        missed,
        "",
        f"Lead:     {who or 'not named'}",
    ]
    if contact is not None:
        lines += _details(contact.job_title, contact.email, contact.phone)
    lines += [
        f"Lead id:  {event.lead_id}",
        f"Breach:   {event.breach_count}{escalated}",
        f"Now:      {_now(event, state, config, zone)}",
    ]
    if lead_url:
        lines.append(f"Open:     {lead_url.replace('{lead_id}', event.lead_id)}")
    lines += ["", "You get this as the team's lead or on the SLA's escalation list (config/routing.yaml)."]
    tag = "SLA escalated" if event.escalation_level else "SLA missed"
    subject = f"[{tag}] {who or event.lead_id}: not contacted within the {event.tier} SLA"
    return _notice(event, addresses, unaddressed, subject, lines)


def is_reminder(event: SlaEvent) -> bool:
    """A reminder before the deadline with someone to remind."""
    return event.kind is SlaEventKind.DUE_SOON and bool(event.notify)


def reminder_stale(event: SlaEvent, state: LeadState | None, now: datetime) -> str | None:
    """Why a reminder must no longer go out, or None: it is read when the mail would go, which an
    SMTP outage may have delayed, and nobody should be urged to contact a lead that was contacted,
    closed or handed on to someone else since, nor by a deadline that has passed (the breach notice
    speaks for it then)."""
    if state is None:
        return "closed"
    if state.handoff.handoff_id != event.handoff_id:
        return "handed on"
    if state.contacted:
        return "contacted"
    if now >= event.due_at:
        return "past its deadline"
    return None


def reminder_notice(
    event: SlaEvent,
    state: LeadState | None,
    config: RoutingConfig,
    now: datetime,
    lead_url: str | None = None,
) -> Notice | None:
    """The reminder for a `due_soon` event with someone to tell, while it is not stale
    (`reminder_stale`); None otherwise."""
    if not is_reminder(event) or state is None or reminder_stale(event, state, now) is not None:
        return None
    addresses, unaddressed = _addresses(event.notify, config)
    zone = _zone(config, event.assignee.team)
    contact = state.handoff.contact
    who = _person(contact.first_name, contact.last_name, contact.company)
    deadline = _at(event.due_at, zone)
    left = _left(event.due_at - now)
    first = (
        f"Please contact this lead by {deadline}, its {event.tier} SLA deadline: {left} left."
        if event.assignee.rep_id
        else f"This lead waits in the {event.assignee.team} queue: someone must contact it by "
        f"{deadline}, its {event.tier} SLA deadline: {left} left."
    )
    lines = [first, "", f"Lead:     {who or 'not named'}"]
    lines += _details(contact.job_title, contact.email, contact.phone)
    lines += [
        f"Deadline: {deadline}",
        f"Left:     {left}",
        f"Lead id:  {event.lead_id}",
    ]
    if lead_url:
        lines.append(f"Open:     {lead_url.replace('{lead_id}', event.lead_id)}")
    lines += [
        "",
        "You get this as the lead's rep (as the team's lead while it waits in the queue): a missed "
        "deadline is reported to the team's lead (remind_before in config/routing.yaml).",
    ]
    subject = f"[SLA due soon] {who or event.lead_id}: contact by {deadline}"
    return _notice(event, addresses, unaddressed, subject, lines)


def _notice(
    event: SlaEvent, addresses: list[str], unaddressed: list[str], subject: str, lines: list[str]
) -> Notice:
    """To the first address, the others in copy; the subject on one line (`one_line`)."""
    return Notice(
        message_id=event.event_id,
        lead_id=event.lead_id,
        to=tuple(addresses[:1]),
        cc=tuple(addresses[1:]),
        unaddressed=tuple(unaddressed),
        subject=one_line(subject),
        text="\n".join(lines) + "\n",
    )


def _addresses(notify: list[str], config: RoutingConfig) -> tuple[list[str], list[str]]:
    """The addresses the notify entries resolve to, each once, and the entries without one."""
    addresses: list[str] = []
    unaddressed: list[str] = []
    for entry in dict.fromkeys(notify):
        address = config.address(entry)
        if address is None:
            unaddressed.append(entry)
        elif address not in addresses:
            addresses.append(address)
    return addresses, unaddressed


def _left(remaining: timedelta) -> str:
    """Time left to the deadline, in whole minutes (rounded down: never more than there is)."""
    minutes = int(remaining.total_seconds() // 60)
    if minutes < 1:
        return "less than a minute"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min"


def _now(event: SlaEvent, state: LeadState | None, config: RoutingConfig, zone: ZoneInfo) -> str:
    """What became of the lead after this breach, as far as route knows when the notice goes."""
    if state is None:
        return "closed since (won, lost, rejected or erased)"
    if state.contacted:
        return "contacted since"
    handoff = state.handoff
    if handoff.handoff_id == event.handoff_id:
        if config.sla.reassign_on_breach and event.breach_count <= config.sla.max_reassignments:
            return f"still with {_assignee(config, handoff.assignee)}"
        return f"stays with {_assignee(config, handoff.assignee)}: no reassignments left"
    due = _at(handoff.sla.due_at, _zone(config, handoff.assignee.team))
    return f"reassigned to {_assignee(config, handoff.assignee)}, due {due}"


def _assignee(config: RoutingConfig, assignee: Assignee) -> str:
    if assignee.rep_id is None:
        return f"the {assignee.team} queue"
    found = config.rep(assignee.rep_id)
    name = found[1].name if found and found[1].name else assignee.rep_id
    return f"{name} ({assignee.team})"


def _person(first: str | None, last: str | None, company: str | None) -> str | None:
    name = one_line(" ".join(part for part in (first, last) if part))
    company = one_line(company) if company else None
    if name and company:
        return f"{name}, {company}"
    return name or company


def _details(title: str | None, email: str | None, phone: str | None) -> list[str]:
    labelled = (("Title:    ", title), ("E-mail:   ", email), ("Phone:    ", phone))
    return [f"{label}{one_line(value)}" for label, value in labelled if value]


def _zone(config: RoutingConfig, team_name: str) -> ZoneInfo:
    """The team's zone: the people told work there (UTC for a team no longer configured)."""
    team = next((team for team in config.teams if team.name == team_name), None)
    return ZoneInfo(team.timezone if team else "UTC")


def _at(moment: datetime, zone: ZoneInfo) -> str:
    return moment.astimezone(zone).strftime(f"%Y-%m-%d %H:%M {zone.key}")
