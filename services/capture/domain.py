"""Capture's rules: who the lead is, and what record goes on leads.interactions. No I/O."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import datetime
from functools import lru_cache

from email_validator import EmailNotValidError, validate_email

from schemas.base import new_event_id
from schemas.interaction import IdentityKind, Interaction, InteractionIn


@lru_cache(maxsize=65_536)
def normalise_email(email: str) -> str:
    """Same mailbox, same key: trimmed and lower-cased, in one form where an address has two. An
    internationalised domain is written in Unicode or as its `xn--` (IDNA) labels, and a letter such
    as "ü" composed or as "u" plus a combining mark; email-validator's normal form (Unicode, NFC) makes
    them one address, as enrich normalises it (`services/enrich/normalise.py`). ASCII addresses keep
    the key they always had. Remembered per address, as the schema's syntax check is."""
    text = email.strip()
    try:
        return validate_email(text, check_deliverability=False).normalized.lower()
    except EmailNotValidError:  # a trusted producer's record, not checked by the schema
        return text.lower()


def _digest(text: str) -> str:
    return hashlib.blake2b(text.encode(), digest_size=12).hexdigest()


def lead_identity(email: str | None, anonymous_id: str | None) -> tuple[str, IdentityKind]:
    """A stable, PII-free lead id: from the normalised e-mail when known, else the anonymous id."""
    if email and email.strip():
        return "e-" + _digest(normalise_email(email)), IdentityKind.EMAIL
    if anonymous_id and anonymous_id.strip():
        return "a-" + _digest(anonymous_id.strip()), IdentityKind.ANONYMOUS
    raise ValueError("an event needs either anonymous_id or contact.email")


def to_interaction(
    event: InteractionIn,
    *,
    received_at: datetime,
    make_event_id: Callable[[], str] = new_event_id,
) -> Interaction:
    lead_id, identity = lead_identity(event.contact.email, event.anonymous_id)
    contact = event.contact
    if contact.email:
        contact = contact.model_copy(update={"email": normalise_email(contact.email)})
    return Interaction(
        event_id=event.event_id or make_event_id(),
        occurred_at=event.occurred_at,
        lead_id=lead_id,
        type=event.type,
        identity=identity,
        anonymous_id=event.anonymous_id,
        contact=contact,
        source=event.source,
        consent=event.consent,
        properties=event.properties,
        received_at=received_at,
    )


def sender_id(event: InteractionIn, client: str | None = None) -> str | None:
    """The idempotency key of a `POST /v1/events` event: the sender's own event id, if any, within
    its API client's ids. Two clients may pick the same id for different events: unscoped, the
    second's event was dropped as a repeat and answered with the first's lead id."""
    if not event.event_id:
        return None
    return f"event:{client}:{event.event_id}" if client else f"event:{event.event_id}"


def json_depth(value: object) -> int:
    """Nesting depth of a decoded JSON value (a scalar is 0, `[]` is 1), without recursion: level by
    level, only containers kept: a batch's scalars are most of its values, and putting each on the
    walk's stack made it 5% of capture's CPU (docs/performance.md, eighteenth pass)."""
    depth = 0
    level: list[dict[str, object] | list[object]] = [value] if isinstance(value, dict | list) else []
    while level:
        depth += 1
        below: list[dict[str, object] | list[object]] = []
        for item in level:
            children = item.values() if isinstance(item, dict) else item
            below.extend(child for child in children if isinstance(child, dict | list))
        level = below
    return depth
