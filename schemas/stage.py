"""Stage changes on `leads.stage-changes`: every move of a lead, with its reasons."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import AwareDatetime, Field

from schemas.base import Contract, LeadEvent
from schemas.interaction import Source
from schemas.profile import LeadProfile


class Temperature(StrEnum):
    COLD = "cold"
    WARM = "warm"
    HOT = "hot"


class LifecycleStage(StrEnum):
    RAW = "raw"
    IQL = "iql"
    MQL = "mql"
    PQL = "pql"
    SQL = "sql"
    OPPORTUNITY = "opportunity"
    CUSTOMER = "customer"
    RECYCLED = "recycled"
    DISQUALIFIED = "disqualified"


class StageKind(StrEnum):
    TEMPERATURE = "temperature"
    LIFECYCLE = "lifecycle"


class Scores(Contract):
    fit: float = Field(examples=[35.0])
    engagement: float = Field(examples=[42.5])
    total: float = Field(examples=[77.5])


class Reason(Contract):
    """One rule's contribution, e.g. "demo_request +50"."""

    rule: str = Field(examples=["demo_request"])
    points: float = Field(examples=[50.0])
    detail: str | None = Field(None, examples=["hand-raiser"])


class Bant(Contract):
    """Budget, authority, need, timing: known (not None) and met (True)."""

    budget: bool | None = None
    authority: bool | None = None
    need: bool | None = None
    timing: bool | None = None


class Trigger(Contract):
    """The event that caused the change."""

    event_id: str
    type: str = Field(examples=["demo_request"])
    occurred_at: AwareDatetime


class StageChange(LeadEvent):
    kind: StageKind
    from_stage: str = Field(examples=["warm"])
    to_stage: str = Field(examples=["hot"])
    temperature: Temperature
    lifecycle: LifecycleStage
    sales_ready: bool = Field(False, description="True when the lead should be handed to sales.")
    scores: Scores
    reasons: list[Reason] = Field(default_factory=list, description="Top contributions, largest first.")
    bant: Bant = Field(default_factory=Bant)
    trigger: Trigger
    profile: LeadProfile
    source: Source = Field(default_factory=Source)
    record_type: Literal["stage_change"] = "stage_change"
