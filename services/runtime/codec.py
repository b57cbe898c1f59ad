"""Decode topic records with pydantic; what cannot be read becomes a dead letter, never an exception."""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from pydantic import TypeAdapter, ValidationError

from schemas.base import new_event_id, utcnow
from schemas.dead_letter import DeadLetter, RecordOrigin
from services.runtime.errors import field_problems, summarise

T = TypeVar("T")

MAX_PAYLOAD_CHARS = 64 * 1024


class Decoder(Generic[T]):
    """Decodes raw JSON bytes into ``T`` (a model or an annotated union of models)."""

    def __init__(self, target: Any, service: str) -> None:
        self._adapter: TypeAdapter[T] = TypeAdapter(target)
        self.service = service

    def decode(self, raw: bytes | None, origin: RecordOrigin) -> T | DeadLetter:
        """The record, or a dead letter saying why it could not be read."""
        if not raw:
            return self._dead(origin, raw, "empty_value", "the record has no value")
        try:
            return self._adapter.validate_json(raw)
        except ValidationError as exc:
            problems = field_problems(exc)
            if any(p["reason"].startswith("Invalid JSON") for p in problems):
                return self._dead(origin, raw, "invalid_json", summarise(problems))
            return self._dead(origin, raw, "validation_failed", summarise(problems))

    def _dead(self, origin: RecordOrigin, raw: bytes | None, reason: str, detail: str) -> DeadLetter:
        payload = (raw or b"").decode("utf-8", errors="replace")[:MAX_PAYLOAD_CHARS]
        return DeadLetter(
            event_id=new_event_id(),
            occurred_at=utcnow(),
            lead_id=origin.key,
            service=self.service,
            origin=origin,
            reason=reason,
            detail=detail,
            payload=payload,
        )


def key_text(key: bytes | str | None) -> str | None:
    if key is None:
        return None
    if isinstance(key, bytes):
        return key.decode("utf-8", errors="replace")
    return key


def encode(record: Any) -> bytes:
    """JSON bytes of a contract model."""
    data: bytes = record.model_dump_json().encode()
    return data
