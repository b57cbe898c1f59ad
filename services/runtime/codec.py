"""Decode topic records with pydantic; what cannot be read becomes a dead letter, never an exception."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, Protocol, TypeVar

from pydantic import TypeAdapter, ValidationError

from schemas.base import TRUSTED_CONTEXT, new_event_id, utcnow
from schemas.dead_letter import DeadLetter, RecordOrigin
from services.runtime.errors import field_problems, summarise

T = TypeVar("T")

MAX_PAYLOAD_CHARS = 64 * 1024


class Located(Protocol):
    """Where a record was read: a faust message or an aiokafka record."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...


def origin_of(record: Located) -> RecordOrigin:
    """Where a dead letter's record was read."""
    return RecordOrigin(
        topic=record.topic, partition=record.partition, offset=record.offset, key=key_text(record.key)
    )


def dead_letter(
    service: str, origin: RecordOrigin, raw: bytes | None, reason: str, detail: str
) -> DeadLetter:
    """The record kept for an operator, keyed like the original, its payload cut to 64 KiB."""
    payload = (raw or b"").decode("utf-8", errors="replace")[:MAX_PAYLOAD_CHARS]
    return DeadLetter(
        event_id=new_event_id(),
        occurred_at=utcnow(),
        lead_id=origin.key,
        service=service,
        origin=origin,
        reason=reason,
        detail=detail,
        payload=payload,
    )


class Decoder(Generic[T]):
    """Decodes raw JSON bytes into ``T`` (a model or an annotated union of models)."""

    def __init__(self, target: Any, service: str, *, trusted: bool = False) -> None:
        """`trusted`: the topic's publisher is a leadpipe service that validated the record's e-mail
        syntax already (capture at the edge), so decoding does not check it again (TRUSTED_CONTEXT)."""
        self._adapter: TypeAdapter[T] = TypeAdapter(target)
        self.service = service
        self._context = TRUSTED_CONTEXT if trusted else None

    def decode(self, raw: bytes | None, origin: RecordOrigin | Callable[[], RecordOrigin]) -> T | DeadLetter:
        """The record, or a dead letter saying why it could not be read. `origin` may be a function
        that builds it: a readable record (nearly all of them) then never pays for one."""
        if not raw:
            return self._dead(origin, raw, "empty_value", "the record has no value")
        try:
            return self._adapter.validate_json(raw, context=self._context)
        except ValidationError as exc:
            problems = field_problems(exc)
            if any(p["reason"].startswith("Invalid JSON") for p in problems):
                return self._dead(origin, raw, "invalid_json", summarise(problems))
            return self._dead(origin, raw, "validation_failed", summarise(problems))

    def _dead(
        self, origin: RecordOrigin | Callable[[], RecordOrigin], raw: bytes | None, reason: str, detail: str
    ) -> DeadLetter:
        if not isinstance(origin, RecordOrigin):
            origin = origin()
        return dead_letter(self.service, origin, raw, reason, detail)


def key_text(key: bytes | str | None) -> str | None:
    if key is None:
        return None
    if isinstance(key, bytes):
        return key.decode("utf-8", errors="replace")
    return key


def encode(record: Any, *, exclude_none: bool = False) -> bytes:
    """JSON bytes of a model, as `model_dump_json` writes them. Straight from pydantic's
    serializer: `model_dump_json` decodes its bytes to text, which `.encode()` then copied back,
    12% of an encode (docs/performance.md, fifteenth pass)."""
    data: bytes = record.__pydantic_serializer__.to_json(record, exclude_none=exclude_none)
    return data
