"""The privacy records services publish: erasure completions, cascaded and retention erase requests.

Ids are deterministic, so a request handled twice (at-least-once delivery) answers with the same id
and readers keep the first answer.
"""

from __future__ import annotations

import hashlib
from datetime import datetime

from schemas.privacy import PrivacyRecord, PrivacyRequestKind


def _digest(*parts: str) -> str:
    return hashlib.blake2b("|".join(parts).encode(), digest_size=16).hexdigest()


def erasure_completed(
    request: PrivacyRecord, service: str, erased: dict[str, int], now: datetime
) -> PrivacyRecord:
    """What `service` erased for `request`: counts per store, never the data."""
    return PrivacyRecord(
        event_id="erased-" + _digest(request.event_id, service),
        occurred_at=now,
        lead_id=request.lead_id,
        kind=PrivacyRequestKind.ERASURE_COMPLETED,
        requested_by=service,
        service=service,
        in_reply_to=request.event_id,
        erased=dict(erased),
    )


def cascaded_erase(
    parent: PrivacyRecord, lead_id: str, now: datetime, reason: str = "merged into an erased lead"
) -> PrivacyRecord:
    """Erase a lead that belongs to an erased one (an anonymous visitor merged into it, or the known
    lead an erased visitor became)."""
    return PrivacyRecord(
        event_id="erase-" + _digest(parent.event_id, lead_id),
        occurred_at=now,
        lead_id=lead_id,
        kind=PrivacyRequestKind.ERASE,
        requested_by="cascade",
        reason=reason,
    )


def identified_erase(cause_event_id: str, lead_id: str, now: datetime) -> PrivacyRecord:
    """Erase the known lead that a record from before the person's erasure of an anonymous lead
    identified as that lead (enrich: `domain.identified_late`); `cause_event_id` is that record's, so
    the same record handled twice asks with the same id."""
    return PrivacyRecord(
        event_id="erase-" + _digest("identified", cause_event_id, lead_id),
        occurred_at=now,
        lead_id=lead_id,
        kind=PrivacyRequestKind.ERASE,
        requested_by="cascade",
        reason="identified by a record from before its anonymous lead's erasure at the person's request",
    )


def retention_erase(lead_id: str, last_activity: float, now: datetime) -> PrivacyRecord:
    """Erase a lead inactive beyond the retention period; the same quiet spell gives the same id."""
    return PrivacyRecord(
        event_id="erase-" + _digest("retention", lead_id, repr(last_activity)),
        occurred_at=now,
        lead_id=lead_id,
        kind=PrivacyRequestKind.ERASE,
        requested_by="retention",
        reason="no activity within the retention period",
    )
