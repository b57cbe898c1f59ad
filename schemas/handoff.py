"""Hand-offs to sales on `leads.handoffs` and SLA events on `leads.sla`."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import AwareDatetime, Field

from schemas.base import Contract, LeadEvent
from schemas.interaction import Contact, Source
from schemas.stage import LifecycleStage, Reason, Scores, Temperature, Trigger


class Assignee(Contract):
    rep_id: str | None = Field(None, description="None while the lead waits in a team's queue.")
    team: str = Field(examples=["emea-enterprise"])


class SlaTerms(Contract):
    tier: str = Field(examples=["hot"])
    due_at: AwareDatetime


class Handoff(LeadEvent):
    handoff_id: str
    assignee: Assignee
    stage: LifecycleStage
    temperature: Temperature
    scores: Scores
    reasons: list[Reason] = Field(default_factory=list)
    contact: Contact
    source: Source = Field(default_factory=Source)
    trigger: Trigger
    handed_off_at: AwareDatetime
    sla: SlaTerms
    record_type: Literal["handoff"] = "handoff"


class SlaEventKind(StrEnum):
    STARTED = "started"
    DUE_SOON = "due_soon"  # the deadline is near and nobody has contacted the lead: its rep is reminded
    MET = "met"
    BREACHED = "breached"
    REASSIGNED = "reassigned"
    ESCALATED = "escalated"
    CANCELLED = "cancelled"


class SlaEvent(LeadEvent):
    kind: SlaEventKind
    handoff_id: str
    assignee: Assignee
    tier: str
    due_at: AwareDatetime
    breach_count: int = Field(0, ge=0)
    escalation_level: int = Field(0, ge=0)
    reason: str | None = None
    notify: list[str] = Field(
        default_factory=list,
        description="Who should be told: the team lead on a breach, more people as it escalates; on"
        " due_soon the assigned rep (the team lead while the lead waits in the team's queue).",
        examples=[["lead-emea@example.com"]],
    )
    record_type: Literal["sla_event"] = "sla_event"
