"""DSGVO double opt-in: consent records with proof, and signed expiring confirmation tokens. Pure."""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from datetime import UTC, datetime

from schemas.interaction import Interaction
from schemas.privacy import PrivacyRecord, PrivacyRequestKind


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class ConsentClaim:
    lead_id: str
    text_version: str
    expires: int


def make_token(lead_id: str, text_version: str, expires_at: datetime, secret: str) -> str:
    """What the confirmation mail links to: lead, text version and expiry, HMAC-signed."""
    payload = f"{lead_id}|{text_version}|{int(expires_at.timestamp())}".encode()
    signature = hmac.new(secret.encode(), payload, hashlib.sha256).digest()
    return f"{_b64(payload)}.{_b64(signature)}"


class TokenError(ValueError):
    pass


def read_token(token: str, secret: str, now: datetime) -> ConsentClaim:
    try:
        payload_text, signature_text = token.split(".")
        payload, signature = _unb64(payload_text), _unb64(signature_text)
    except ValueError as exc:
        raise TokenError("malformed") from exc
    expected = hmac.new(secret.encode(), payload, hashlib.sha256).digest()
    if not hmac.compare_digest(signature, expected):
        raise TokenError("bad_signature")
    try:
        lead_id, text_version, expires = payload.decode().split("|")
        claim = ConsentClaim(lead_id, text_version, int(expires))
    except ValueError as exc:
        raise TokenError("malformed") from exc
    if claim.expires < now.timestamp():
        raise TokenError("expired")
    return claim


def token_id(token: str) -> str:
    """A short, stable id of a token, for idempotency keys and event ids."""
    return hashlib.blake2b(token.encode(), digest_size=12).hexdigest()


def consent_given(interaction: Interaction) -> PrivacyRecord | None:
    """The pending consent an interaction grants, with its proof; None when it grants none."""
    if interaction.consent.marketing_email is not True:
        return None
    return PrivacyRecord(
        event_id=f"{interaction.event_id}-consent",
        occurred_at=interaction.occurred_at,
        lead_id=interaction.lead_id,
        kind=PrivacyRequestKind.CONSENT_GIVEN,
        requested_by="data-subject",
        reason="pending double opt-in",
        consent_text_version=interaction.consent.text_version or "unversioned",
        consent_source=interaction.source.channel or "web",
    )


def consent_confirmed(claim: ConsentClaim, token: str, now: datetime) -> PrivacyRecord:
    return PrivacyRecord(
        event_id=f"consent-confirmed-{token_id(token)}",
        occurred_at=now.astimezone(UTC),
        lead_id=claim.lead_id,
        kind=PrivacyRequestKind.CONSENT_CONFIRMED,
        requested_by="data-subject",
        consent_text_version=claim.text_version,
        consent_source="double_opt_in_link",
    )


def consent_withdrawn(
    lead_id: str, source: str, now: datetime, event_id: str, text_version: str | None = None
) -> PrivacyRecord:
    return PrivacyRecord(
        event_id=event_id,
        occurred_at=now.astimezone(UTC),
        lead_id=lead_id,
        kind=PrivacyRequestKind.CONSENT_WITHDRAWN,
        requested_by="data-subject",
        consent_text_version=text_version,
        consent_source=source,
    )
