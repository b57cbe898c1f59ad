"""Dead letters on `leads.dlq`: records a service could not read, with why and where from."""

from __future__ import annotations

from typing import Literal

from pydantic import AwareDatetime, Field

from schemas.base import Contract


class RecordOrigin(Contract):
    topic: str
    partition: int = Field(ge=0)
    offset: int = Field(ge=0)
    key: str | None = Field(None, description="The record's key, decoded as UTF-8 with replacement.")


class DeadLetter(Contract):
    """Keyed like the original record (its lead id when it had one)."""

    record_type: Literal["dead_letter"] = "dead_letter"
    schema_version: int = Field(1, ge=1)
    event_id: str
    occurred_at: AwareDatetime = Field(description="When the record was dead-lettered.")
    lead_id: str | None = Field(None, description="The original record's key, when it had one.")
    service: str = Field(examples=["score"])
    origin: RecordOrigin
    reason: str = Field(examples=["validation_failed"], description="Short machine-readable reason.")
    detail: str = Field(description="Human-readable explanation, e.g. the field and the problem.")
    payload: str = Field(description="The raw value, UTF-8 with replacement, cut to 64 KiB.")
