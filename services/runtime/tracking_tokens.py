"""Signed e-mail tracking tokens: nurture's mailer signs them, capture verifies them. Pure.

A token is `<payload>.<signature>`, both base64url without padding. The payload is compact JSON
naming the kind (open, click, unsubscribe), the lead, the message (the nurture command id) with its
sequence, step and template, when it was issued and, for a click, the target URL. The signature is
HMAC-SHA256 over a domain tag and the payload: it stops anyone forging opens or clicks for other
leads, or using capture as an open redirect. No e-mail address or name goes into a token, as links
end up in proxy logs and browser histories. Both sides must share the secret
(`NURTURE_TRACKING_SECRET` and `CAPTURE_TRACKING_SECRET`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from enum import StrEnum
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

# A different use of the same secret can never produce a valid tracking signature.
_DOMAIN = b"leadpipe-tracking-v1."
# Longer than any real link needs; bounds the work an attacker's token costs.
MAX_TOKEN_CHARS = 4096
NAME_MAX = 128
"""Longest sequence name or template id a link carries (nurture's rules are held to it)."""
_SHAPE = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")


class TokenKind(StrEnum):
    OPEN = "o"
    CLICK = "c"
    UNSUBSCRIBE = "u"


class TokenError(ValueError):
    """Why a token was refused: `malformed` or `bad_signature` (str(exc) is the reason)."""


class TrackingClaim(BaseModel):
    """What a token vouches for; short aliases keep the links short."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True, strict=True)

    kind: TokenKind = Field(alias="k")
    lead_id: str = Field(alias="l", min_length=1, max_length=128)
    message_id: str = Field(alias="m", min_length=1, max_length=128, description="The nurture command id.")
    sequence: str = Field(alias="q", max_length=NAME_MAX)
    step: int = Field(alias="n", ge=0)
    template_id: str = Field(alias="t", max_length=NAME_MAX)
    issued_at: int = Field(alias="i", ge=0, description="Unix seconds; capture refuses to count old links.")
    url: str | None = Field(None, alias="u", max_length=2048, description="A click's target.")

    @field_validator("kind", mode="before")
    @classmethod
    def _kind_from_text(cls, value: object) -> object:
        # strict mode takes no plain string for an enum; the payload is JSON text.
        return TokenKind(value) if isinstance(value, str) and value in TokenKind._value2member_map_ else value

    @field_validator("url")
    @classmethod
    def _web_url(cls, value: str | None) -> str | None:
        if value is not None:
            parts = urlsplit(value)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError("a click target must be an http(s) URL with a host")
        return value

    @model_validator(mode="after")
    def _url_only_for_clicks(self) -> TrackingClaim:
        if (self.kind is TokenKind.CLICK) != (self.url is not None):
            raise ValueError("a click carries its target URL, and only a click does")
        return self

    def is_expired(self, now: float, max_age_seconds: float) -> bool:
        return now - self.issued_at > max_age_seconds


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class TrackingTokens:
    """Signs and verifies tokens with one shared secret."""

    def __init__(self, secret: bytes) -> None:
        if not secret:
            raise ValueError("the tracking secret must not be empty")
        self._secret = secret

    def _signature(self, payload: bytes) -> bytes:
        return hmac.new(self._secret, _DOMAIN + payload, hashlib.sha256).digest()

    def sign(self, claim: TrackingClaim) -> str:
        payload = claim.model_dump_json(by_alias=True, exclude_none=True).encode()
        return f"{_b64(payload)}.{_b64(self._signature(payload))}"

    def verify(self, token: str) -> TrackingClaim:
        """The claim of an untampered token; the signature is checked (in constant time) before parsing."""
        if len(token) > MAX_TOKEN_CHARS or not _SHAPE.fullmatch(token):
            raise TokenError("malformed")
        payload_text, signature_text = token.split(".")
        try:
            payload, signature = _unb64(payload_text), _unb64(signature_text)
        except ValueError as exc:  # binascii.Error: a length no base64 text has
            raise TokenError("malformed") from exc
        if not hmac.compare_digest(signature, self._signature(payload)):
            raise TokenError("bad_signature")
        try:
            return TrackingClaim.model_validate_json(payload)
        except ValidationError as exc:
            raise TokenError("malformed") from exc
