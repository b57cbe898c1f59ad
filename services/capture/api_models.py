"""Request and answer bodies of capture's HTTP API; /openapi.json is generated from these."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, field_validator

from schemas.interaction import InteractionIn
from services.capture import domain
from services.runtime.problems import FieldProblemOut


class Accepted(BaseModel):
    status: Literal["accepted"] = "accepted"
    event_id: str
    lead_id: str
    identity: str | None = None
    partition: int | None = None
    offset: int | None = None
    duplicate: bool = Field(False, description="True when the sender id was already published.")


class BatchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    events: list[InteractionIn] = Field(max_length=500, description="Up to 500 events.")


class BatchItem(BaseModel):
    index: int
    status: Literal["accepted", "duplicate", "rejected", "unavailable", "in_flight"]
    event_id: str | None = None
    lead_id: str | None = None
    error: str | None = None
    fields: list[FieldProblemOut] | None = None


class BatchOut(BaseModel):
    accepted: int
    refused: int
    results: list[BatchItem]


class WithdrawIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: str | None = Field(None, max_length=320, examples=["jane.doe@example.com"])
    anonymous_id: str | None = Field(None, min_length=1, max_length=128)
    source: str = Field("api", max_length=64, description="Where the withdrawal was made.")
    text_version: str | None = Field(None, max_length=64)

    @field_validator("email")
    @classmethod
    def _email_syntax(cls, value: str | None) -> str | None:
        """Refused as `POST /v1/events` refuses it: a mistyped address was answered "withdrawn" for a
        lead id no address of a lead makes."""
        return checked_email(value)


def checked_email(value: str | None) -> str | None:
    """`value` when the schema's e-mail check takes it (blank is left for the caller: missing)."""
    if value is not None and value.strip():
        problem = domain.email_problem(value)
        if problem is not None:
            raise ValueError(problem)
    return value


class Confirmed(BaseModel):
    status: Literal["confirmed"] = "confirmed"
    lead_id: str


class Withdrawn(BaseModel):
    status: Literal["withdrawn"] = "withdrawn"
    lead_id: str


class WebhookAck(BaseModel):
    status: Literal["ok"] = "ok"
    published: int = 0
    duplicates: int = 0


FormBody = dict[str, JsonValue]
