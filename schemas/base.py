"""The envelope every record on a lead topic carries."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

# Validation context for records a leadpipe service published: checks done at the edge (e-mail
# syntax, in capture) are not repeated by every consumer. Decoders of untrusted input never pass it.
TRUSTED_CONTEXT = {"trusted": True}


def trusted(context: object) -> bool:
    """Whether a validator runs under TRUSTED_CONTEXT."""
    return isinstance(context, dict) and context.get("trusted") is True


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_event_id() -> str:
    """A random, URL-safe event id; senders may supply their own for idempotency."""
    return uuid.uuid4().hex


class Contract(BaseModel):
    """Base of every contract: unknown fields are ignored so older readers survive newer writers."""

    model_config = ConfigDict(extra="ignore", frozen=True, use_enum_values=False)


class LeadEvent(Contract):
    """Envelope fields: version, idempotency id, event time and the partition key."""

    schema_version: int = Field(1, ge=1, description="Version of this record's contract.", examples=[1])
    event_id: str = Field(
        min_length=1,
        max_length=128,
        description="Unique id of this event; consumers use it to apply each event once.",
        examples=["9f1c2e0a4b7d4f0e8a1b2c3d4e5f6a7b"],
    )
    occurred_at: AwareDatetime = Field(
        description="When the event happened (RFC 3339 with offset).",
        examples=["2026-11-21T09:30:00Z"],
    )
    lead_id: str = Field(
        min_length=1,
        max_length=128,
        description="The lead this record is about; also the record's Kafka key.",
        examples=["e-3b1f0c9d2a7e44f1b6c8d0e2"],
    )
