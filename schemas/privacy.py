"""Privacy records on `privacy.requests`: erasure, export, consent (with proof), and their answers.

Requests (`erase`, `export`) are keyed by the lead they are about, so each service handles them on the
partition that holds the lead. Every service answers an `erase` with its own `erasure_completed`
record (service name and counts per store, never personal data). Export answers do not travel on
Kafka: a service puts them in Redis under the request's event id until `answer_by`, so no copy of
the lead's data stays in a topic (see docs/privacy.md).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import AwareDatetime, Field

from schemas.base import LeadEvent


class PrivacyRequestKind(StrEnum):
    ERASE = "erase"
    EXPORT = "export"
    CONSENT_GIVEN = "consent_given"
    CONSENT_CONFIRMED = "consent_confirmed"
    CONSENT_WITHDRAWN = "consent_withdrawn"
    ERASURE_COMPLETED = "erasure_completed"


# A consent_given whose consent_source starts so came from a list import (`leadpipe import`): its
# time is the import's, not the person's, so it lifts no unsubscribe (services/nurture/domain.py).
IMPORTED_CONSENT = "import:"


class PrivacyRecord(LeadEvent):
    kind: PrivacyRequestKind
    requested_by: str | None = Field(
        None, examples=["linkedin", "admin", "data-subject", "retention", "cascade"]
    )
    reason: str | None = None
    consent_text_version: str | None = Field(None, description="Proof: the consent text agreed to.")
    consent_source: str | None = Field(
        None,
        description="Proof: where consent was given (the channel; `import:<channel>` for a list import).",
        examples=["web", "import:event", "double_opt_in_link"],
    )
    ip_hash: str | None = Field(
        None,
        max_length=128,
        description="Proof: salted hash of the client address the consent came from (never the address).",
    )
    erased: dict[str, int] = Field(
        default_factory=dict,
        description="With erasure_completed: what the service erased, as counts per store.",
        examples=[{"leads_table": 1, "pending_table": 0}],
    )
    service: str | None = Field(
        None, description="With erasure_completed: the service that erased.", examples=["enrich"]
    )
    in_reply_to: str | None = Field(
        None,
        max_length=128,
        description="With erasure_completed: the event id of the erase request it answers.",
    )
    answer_by: AwareDatetime | None = Field(
        None, description="With export: answers later than this are not read, so services skip them."
    )
    link_expires_at: AwareDatetime | None = Field(
        None,
        description="With consent_confirmed: when the confirming link expired, which tells the link of "
        "the last confirmation mail from an older one.",
    )
    record_type: Literal["privacy"] = "privacy"
