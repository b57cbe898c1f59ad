"""Hand-offs posted to a team's CRM webhook: the signature, what an answer means, when to try again.

Why: sales tools that read Kafka follow `leads.handoffs`; many CRMs and automation tools (a HubSpot
or Salesforce flow, Pipedrive, a Zapier hook) take a signed HTTP POST instead. A team's
`crm_webhook_url` gets each of its hand-offs, signed as Stripe signs its webhooks, retried with
capped doubling back-off, and dead-lettered after the last try. These are the pure rules; the
queue is crm_queue.py and the loop crm_delivery.py.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence
from datetime import datetime
from email.utils import parsedate_to_datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from schemas.dead_letter import RecordOrigin
from services.route.config import RoutingConfig
from services.runtime.api_keys import comma_separated
from services.runtime.backoff import retry_delay

SIGNATURE_HEADER = "Leadpipe-Signature"
RETRYABLE_CLIENT_ERRORS = frozenset({408, 425, 429})  # timed out, too early, rate-limited: worth waiting
MAX_DETAIL_CHARS = 300  # of a refusing answer's body, in the job's last error and the dead letter


class Verdict(StrEnum):
    DELIVERED = "delivered"
    RETRY = "retry"
    REFUSED = "refused"  # retrying cannot help: dead-lettered at once


def verdict(status: int) -> Verdict:
    """What an HTTP answer means for a delivery. A redirect is refused: it is not followed (a POST
    replayed elsewhere is a surprise) and the URL in config/routing.yaml should name its target."""
    if 200 <= status < 300:
        return Verdict.DELIVERED
    if status >= 500 or status in RETRYABLE_CLIENT_ERRORS:
        return Verdict.RETRY
    return Verdict.REFUSED


def sign(secrets: Sequence[str], timestamp: int, body: bytes) -> str:
    """`t=<unix seconds>,v1=<hex>`, one `v1` per secret (two while a secret is rotated): HMAC-SHA256
    of `<t>.<body>`. The timestamp is signed so that a receiver can refuse an old request replayed."""
    signed = f"{timestamp}.".encode() + body
    digests = [hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest() for secret in secrets]
    return ",".join([f"t={timestamp}", *(f"v1={digest}" for digest in digests)])


def verify(secret: str, header: str, body: bytes, now: float, tolerance: float = 300) -> bool:
    """What a receiver does: the header carries a `v1` of `secret` over this body, signed within
    `tolerance` seconds of `now`. In leadpipe for its tests and as the reference for receivers."""
    parts = [part.partition("=") for part in header.split(",")]
    stamps = [value for name, _, value in parts if name == "t"]
    if len(stamps) != 1 or not _ascii_digits(stamps[0]) or abs(now - int(stamps[0])) > tolerance:
        return False
    expected = sign([secret], int(stamps[0]), body).rpartition("v1=")[2]
    return any(name == "v1" and hmac.compare_digest(value, expected) for name, _, value in parts)


def _ascii_digits(text: str) -> bool:
    """HTTP's DIGIT: `str.isdigit` also takes '²', which int() and float() refuse, and other scripts'."""
    return text.isascii() and text.isdigit()


def retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds a `Retry-After` header asks for (delta-seconds or an HTTP date), None when absent or
    unreadable."""
    if not value:
        return None
    value = value.strip()
    if _ascii_digits(value):
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, (when - now).total_seconds())


def next_delay(attempts: int, first: float, longest: float, asked: float | None = None) -> float:
    """Seconds before the next try: the back-off, or longer when the receiver asked for it, never
    longer than `longest` (a receiver cannot park a hand-off for a day)."""
    delay = retry_delay(attempts, first, longest)
    return delay if asked is None else min(max(delay, asked), longest)


def team_secrets(
    config: RoutingConfig, default: Sequence[str], environ: Mapping[str, str]
) -> dict[str, tuple[str, ...]]:
    """Each webhook team's signing secrets: from the variable its `crm_webhook_secret_env` names, else
    `default` (ROUTE_CRM_WEBHOOK_SECRET). Raises ValueError naming the team when it has none, so
    route does not start to post hand-offs unsigned."""
    secrets: dict[str, tuple[str, ...]] = {}
    for team in config.teams:
        if not team.crm_webhook_url:
            continue
        name = team.crm_webhook_secret_env
        found = comma_separated(environ.get(name, "")) if name else tuple(default)
        if not found:
            where = f"its crm_webhook_secret_env, {name}," if name else "ROUTE_CRM_WEBHOOK_SECRET"
            raise ValueError(
                f"team {team.name!r} has a crm_webhook_url but {where} is not set: its hand-offs would "
                "go unsigned"
            )
        secrets[team.name] = found
    return secrets


class CrmJob(BaseModel):
    """One hand-off to post. `body` is the record as published on leads.handoffs, so the CRM gets
    what a Kafka subscriber gets, byte for byte; `origin` is where it was read (for the dead letter)."""

    model_config = ConfigDict(frozen=True)

    lead_id: str
    handoff_id: str
    team: str
    origin: RecordOrigin
    body: str
    attempts: int = Field(0, ge=0, description="Posts tried so far.")
    queued_at: float
    handed_off_at: float = Field(0.0, description="Epoch seconds: the hand-off's, for the erasure guard.")
    last_error: str | None = None

    def failed(self, error: str) -> CrmJob:
        return self.model_copy(update={"attempts": self.attempts + 1, "last_error": error[:500]})
