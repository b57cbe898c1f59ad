"""Privacy records on `privacy.requests`: erasure, consent, and their completion."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import Field

from schemas.base import LeadEvent


class PrivacyRequestKind(StrEnum):
    ERASE = "erase"
    CONSENT_GIVEN = "consent_given"
    CONSENT_CONFIRMED = "consent_confirmed"
    CONSENT_WITHDRAWN = "consent_withdrawn"
    ERASURE_COMPLETED = "erasure_completed"


class PrivacyRecord(LeadEvent):
    kind: PrivacyRequestKind
    requested_by: str | None = Field(None, examples=["linkedin", "admin", "data-subject"])
    reason: str | None = None
    consent_text_version: str | None = Field(None, description="Proof: the consent text agreed to.")
    consent_source: str | None = Field(None, description="Proof: where consent was given.")
    erased: dict[str, int] = Field(
        default_factory=dict, description="With erasure_completed: what each service erased."
    )
    record_type: Literal["privacy"] = "privacy"
