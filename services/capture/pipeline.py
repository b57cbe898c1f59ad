"""Accepting one public event: consent record first (with proof), then the interaction."""

from __future__ import annotations

import time
from datetime import datetime

from schemas.interaction import InteractionIn
from schemas.topics import TopicName
from services.capture import consent, domain
from services.capture.ingest import Ingestor, Outcome, Status
from services.capture.settings import CaptureSettings


async def accept(
    ingestor: Ingestor,
    settings: CaptureSettings,
    event: InteractionIn,
    received_at: datetime,
    sender_id: str | None = None,
    *,
    ip_hash: str | None = None,
) -> Outcome:
    """Publish the consent record before the interaction, so a 503 never leaves consent unrecorded."""
    started = time.perf_counter()
    interaction = domain.to_interaction(event, received_at=received_at)
    sender_id = sender_id or domain.sender_id(event)
    given = consent.consent_given(interaction, ip_hash=ip_hash)
    if given is not None:
        outcome = await ingestor.submit(
            settings.topic(TopicName.PRIVACY), given, f"consent:{sender_id}" if sender_id else None
        )
        if outcome.status in (Status.UNAVAILABLE, Status.IN_FLIGHT):
            return outcome
    return await ingestor.submit(
        settings.topic(TopicName.INTERACTIONS), interaction, sender_id, started=started
    )
