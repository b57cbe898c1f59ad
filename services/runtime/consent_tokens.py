"""Signed, expiring double opt-in tokens: nurture's mailer puts one in the confirmation mail's link,
capture's confirmation page reads it (services/capture/consent.py). Both hold the same secret
(`NURTURE_CONSENT_SECRET`, `CAPTURE_CONSENT_SECRET`). Pure."""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    """Strict: Python's decoder skips characters outside the alphabet and the unused bits of the last
    one, so many strings would read as one token, each a new confirmation (one could undo a
    withdrawal). Only the one string `_b64` writes is accepted."""
    data = base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
    if _b64(data) != text:
        raise ValueError("not the canonical encoding")
    return data


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
    try:  # a lead id has no "|"; a consent text version may
        lead_id, rest = payload.decode().split("|", 1)
        text_version, expires = rest.rsplit("|", 1)
        claim = ConsentClaim(lead_id, text_version, int(expires))
    except ValueError as exc:
        raise TokenError("malformed") from exc
    if claim.expires < now.timestamp():
        raise TokenError("expired")
    return claim


def token_id(token: str) -> str:
    """A short, stable id of a token, for idempotency keys and event ids (of a token `read_token`
    accepted: there is one string per token)."""
    return hashlib.blake2b(token.encode(), digest_size=12).hexdigest()
