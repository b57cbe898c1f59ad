"""Capture's rules: who the lead is, and what record goes on leads.interactions. No I/O."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import datetime, timedelta

from annotated_types import MaxLen
from pydantic import ValidationError

from schemas.base import LeadEvent, new_event_id
from schemas.interaction import Contact, IdentityKind, Interaction, InteractionIn

# The envelope's limit, read from the contract so the two cannot drift apart: the ids capture makes
# (published event ids here, consent record ids in `consent`) fit it.
EVENT_ID_MAX = next(
    limit.max_length for limit in LeadEvent.model_fields["event_id"].metadata if isinstance(limit, MaxLen)
)


def normalise_email(email: str) -> str:
    """Same mailbox, same key: trimmed and lower-cased."""
    return email.strip().lower()


def _digest(text: str) -> str:
    return hashlib.blake2b(text.encode(), digest_size=12).hexdigest()


def lead_identity(email: str | None, anonymous_id: str | None) -> tuple[str, IdentityKind]:
    """A stable, PII-free lead id: from the normalised e-mail when known, else the anonymous id."""
    if email and email.strip():
        return "e-" + _digest(normalise_email(email)), IdentityKind.EMAIL
    if anonymous_id and anonymous_id.strip():
        return "a-" + _digest(anonymous_id.strip()), IdentityKind.ANONYMOUS
    raise ValueError("an event needs either anonymous_id or contact.email")


def published_event_id(event_id: str, client: str | None) -> str:
    """The event id capture publishes for a sender's `event_id`: scoped to the API client that sent
    it, as its idempotency key is (`sender_id`) and as Segment scopes messageId per source. Unscoped,
    two clients' different events with one id reached enrich as one event, which dropped the second
    as a duplicate (its consent record too). `<client>:<event_id>` while it fits the envelope's 128
    characters, else `<client>#<digest of event_id>`: the two forms never collide, and a retry by the
    same client gets the same id. Without a client (no API key) the sender's id is kept as given."""
    if client is None:
        return event_id
    readable = f"{client}:{event_id}"
    if len(readable) <= EVENT_ID_MAX:
        return readable
    return f"{client}#{hashlib.blake2b(event_id.encode(), digest_size=16).hexdigest()}"


def to_interaction(
    event: InteractionIn,
    *,
    received_at: datetime,
    make_event_id: Callable[[], str] = new_event_id,
    client: str | None = None,
) -> Interaction:
    """The record for a public event; `client`: the API client that sent it (`published_event_id`)."""
    lead_id, identity = lead_identity(event.contact.email, event.anonymous_id)
    contact = event.contact
    if contact.email:
        contact = contact.model_copy(update={"email": normalise_email(contact.email)})
    return Interaction(
        event_id=published_event_id(event.event_id, client) if event.event_id else make_event_id(),
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


def clock_ahead_problem(occurred_at: datetime, received_at: datetime, max_ahead: timedelta) -> str | None:
    """Why `occurred_at` is too far after the receive time, or None. A future date would win enrich's
    newest-value-wins over every correct event until then, and move score's clocks ahead; a little
    is a sender's clock running fast. Past dates are fine (an import of old leads)."""
    ahead = occurred_at - received_at
    if ahead <= max_ahead:
        return None
    return (
        f"{duration_text(ahead)} after capture received it;"
        f" a sender's clock may run at most {duration_text(max_ahead)} ahead"
    )


def duration_text(span: timedelta) -> str:
    """`13149 d 3 h`, `1 h`, `45 s`: the two largest units, for people reading a refusal."""
    seconds = int(span.total_seconds())
    parts: list[str] = []
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60), ("s", 1)):
        if seconds >= size or (unit == "s" and not parts):
            parts.append(f"{seconds // size} {unit}")
            seconds %= size
    return " ".join(parts[:2])


def email_problem(address: str) -> str | None:
    """Why `address` is refused where an event's `contact.email` is (the schema's own check), or None:
    every endpoint that takes an address refuses the same ones."""
    try:
        Contact.model_validate({"email": address})
    except ValidationError as exc:
        return str(exc.errors()[0]["msg"]).removeprefix("Value error, ")
    return None


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
