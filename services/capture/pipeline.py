"""Accepting one public event: consent record first (with proof), then the interaction."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime

from schemas.interaction import InteractionIn
from schemas.topics import TopicName
from services.capture import consent, domain
from services.capture.ingest import Ingestor, Outcome, Status
from services.capture.settings import CaptureSettings
from services.runtime.codec import encode


async def accept(
    ingestor: Ingestor,
    settings: CaptureSettings,
    event: InteractionIn,
    received_at: datetime,
    sender_id: str | None = None,
    *,
    ip_hash: str | None = None,
    window_seconds: int | None = None,
    client: str | None = None,
) -> Outcome:
    """Publish the consent record before the interaction, so a 503 never leaves consent unrecorded;
    an interaction too large to publish is refused (413) before its consent is."""
    (outcome,) = await accept_many(
        ingestor,
        settings,
        [(event, sender_id)],
        received_at,
        ip_hash=ip_hash,
        window_seconds=window_seconds,
        client=client,
    )
    return outcome


async def accept_many(
    ingestor: Ingestor,
    settings: CaptureSettings,
    events: Sequence[tuple[InteractionIn, str | None]],
    received_at: datetime,
    *,
    ip_hash: str | None = None,
    window_seconds: int | None = None,
    client: str | None = None,
) -> list[Outcome]:
    """`accept` for a batch's events, in order (a sender id of None is derived from the event and
    the API `client` that sent it, `domain.sender_id`, as is the published event id,
    `domain.published_event_id`):
    every consent record first, then every interaction whose consent was recorded, each group
    with one round of claims and publishes (`Ingestor.submit_many`). `window_seconds`: how long the
    sender ids are remembered, when not the dedupe window (`Ingestor.submit`)."""
    started = time.perf_counter()
    interactions = [
        domain.to_interaction(event, received_at=received_at, client=client) for event, _ in events
    ]
    senders = [sender_id or domain.sender_id(event, client) for event, sender_id in events]
    values = [encode(i) for i in interactions]
    outcomes: list[Outcome | None] = [None] * len(events)
    for n, (interaction, value) in enumerate(zip(interactions, values, strict=True)):
        too_large = ingestor.too_large(interaction, value)
        if too_large is not None:
            outcomes[n] = ingestor.refuse_too_large(too_large)
    consents = [
        consent.consent_given(i, ip_hash=ip_hash) if outcomes[n] is None else None
        for n, i in enumerate(interactions)
    ]
    given = [(n, record) for n, record in enumerate(consents) if record is not None]
    consent_outcomes = await ingestor.submit_many(
        settings.topic(TopicName.PRIVACY),
        [(record, f"consent:{senders[n]}" if senders[n] else None) for n, record in given],
        window_seconds=window_seconds,
    )
    for (n, _), outcome in zip(given, consent_outcomes, strict=True):
        if outcome.status in (Status.UNAVAILABLE, Status.IN_FLIGHT, Status.TOO_LARGE):
            outcomes[n] = outcome
    due = [n for n, outcome in enumerate(outcomes) if outcome is None]
    published = await ingestor.submit_many(
        settings.topic(TopicName.INTERACTIONS),
        [(interactions[n], senders[n]) for n in due],
        started=started,
        window_seconds=window_seconds,
        values=[values[n] for n in due],
    )
    for n, outcome in zip(due, published, strict=True):
        outcomes[n] = outcome
    return [outcome for outcome in outcomes if outcome is not None]
