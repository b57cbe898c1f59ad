"""Publish each record at most once per sender id: claim, publish, then mark or release."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from schemas.base import LeadEvent
from schemas.interaction import Interaction
from services.capture.guard import Claim, ClaimState, Deduplicator
from services.capture.metrics import CaptureMetrics
from services.capture.publisher import (
    Acknowledgement,
    BrokerUnavailable,
    Publisher,
    RecordTooLarge,
    record_size,
)
from services.runtime.codec import encode
from services.runtime.metrics import CommonMetrics, Labelled

log = logging.getLogger(__name__)


class Status(StrEnum):
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    IN_FLIGHT = "in_flight"
    UNAVAILABLE = "unavailable"
    TOO_LARGE = "too_large"


@dataclass(frozen=True)
class Outcome:
    status: Status
    answer: dict[str, object] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status in (Status.ACCEPTED, Status.DUPLICATE)


class Ingestor:
    def __init__(
        self,
        publisher: Publisher,
        dedupe: Deduplicator,
        metrics: CaptureMetrics,
        common: CommonMetrics,
        *,
        max_record_bytes: int,
    ) -> None:
        self._publisher = publisher
        self._max_record_bytes = max_record_bytes
        self._dedupe = dedupe
        self._metrics = metrics
        self._common = common
        # counted per published record: each child looked up once (Labelled)
        self._published_by = Labelled(metrics.published)
        self._events_out = Labelled(common.events_out)

    async def submit(
        self,
        topic: str,
        record: LeadEvent,
        sender_id: str | None,
        *,
        started: float | None = None,
        window_seconds: int | None = None,
    ) -> Outcome:
        """Publish `record` unless `sender_id` was already published within the window (the dedupe
        window, or `window_seconds`)."""
        (outcome,) = await self.submit_many(
            topic, [(record, sender_id)], started=started, window_seconds=window_seconds
        )
        return outcome

    async def submit_many(
        self,
        topic: str,
        records: Sequence[tuple[LeadEvent, str | None]],
        *,
        started: float | None = None,
        window_seconds: int | None = None,
        values: Sequence[bytes] | None = None,
    ) -> list[Outcome]:
        """`submit` for several records, in order: their claims and marks each share one Redis round
        trip (a batch's events cost no Redis round trip of their own) and their publishes one timeout.
        `values`: the records encoded already (`too_large` needed them), so none is encoded twice."""
        started = time.perf_counter() if started is None else started
        claimed = iter(await self._dedupe.claim([sid for _, sid in records if sid]))
        claims = [next(claimed) if sid else None for _, sid in records]
        outcomes: list[Outcome | None] = [
            self._refusal(r, c) for (r, _), c in zip(records, claims, strict=True)
        ]
        due = [i for i, outcome in enumerate(outcomes) if outcome is None]
        handed = [
            (records[i][0].lead_id.encode(), values[i] if values is not None else encode(records[i][0]))
            for i in due
        ]
        acks = await self._publisher.publish_many(topic, handed) if handed else []
        failed: list[Claim] = []
        marks: list[tuple[Claim, dict[str, object]]] = []
        error: BaseException | None = None
        for i, ack in zip(due, acks, strict=True):
            record, claim = records[i][0], claims[i]
            if isinstance(ack, BaseException):
                failed.extend([claim] if claim is not None else [])
                if isinstance(ack, RecordTooLarge):  # never stored, whatever the retries: said at once
                    outcomes[i] = self.refuse_too_large(ack)
                    continue
                if not isinstance(ack, BrokerUnavailable):
                    error = error or ack  # raised once the others are marked or released
                    continue
                self._metrics.rejected.labels("broker_unavailable").inc()
                log.warning("broker unavailable, not accepted: %s", ack)
                outcomes[i] = Outcome(Status.UNAVAILABLE)
                continue
            answer = self._published(topic, record, ack, started)
            if claim is not None and claim.state is ClaimState.NEW:
                marks.append((claim, answer))
            outcomes[i] = Outcome(Status.ACCEPTED, {**answer, "duplicate": False})
        await self._dedupe.release(failed)
        await self._dedupe.complete(marks, window_seconds)
        if error is not None:
            raise error
        return [outcome for outcome in outcomes if outcome is not None]

    def too_large(self, record: LeadEvent, value: bytes) -> RecordTooLarge | None:
        """Why the producer would refuse `record` (encoded as `value`) for its size, or None: asked
        before a record that must go first (an event's consent) is published for one that cannot."""
        size = record_size(record.lead_id.encode(), value)
        return RecordTooLarge(size, self._max_record_bytes) if size > self._max_record_bytes else None

    def refuse_too_large(self, error: RecordTooLarge) -> Outcome:
        """Count a record refused for its size; its answer names the size and the limit."""
        self._metrics.rejected.labels("record_too_large").inc()
        return Outcome(
            Status.TOO_LARGE,
            {"error": "record_too_large", "message": str(error), "size": error.size, "limit": error.limit},
        )

    def _refusal(self, record: LeadEvent, claim: Claim | None) -> Outcome | None:
        """The answer for a record that must not be published again, or None to publish it."""
        if claim is None:
            return None
        if claim.state is ClaimState.DONE:
            self._metrics.duplicates.labels(_kind(record)).inc()
            return Outcome(Status.DUPLICATE, {**(claim.previous or {}), "duplicate": True})
        if claim.state is ClaimState.IN_FLIGHT:
            self._metrics.duplicates.labels(_kind(record)).inc()
            return Outcome(Status.IN_FLIGHT)
        if claim.state is ClaimState.UNAVAILABLE:
            self._metrics.dedupe_unavailable.inc()
        return None

    def _published(
        self, topic: str, record: LeadEvent, ack: Acknowledgement, started: float
    ) -> dict[str, object]:
        """Count a published record; the answer its sender (and a later repeat) gets."""
        answer: dict[str, object] = {
            "status": "accepted",
            "event_id": record.event_id,
            "lead_id": record.lead_id,
            "partition": ack.partition,
            "offset": ack.offset,
        }
        if isinstance(record, Interaction):
            answer["identity"] = record.identity.value
            self._published_by(record.type.value, record.source.channel or "unknown").inc()
        else:
            self._published_by(_kind(record), "privacy").inc()
        self._metrics.publish_seconds.observe(time.perf_counter() - started)
        self._events_out("capture", topic).inc()
        return answer


def _kind(record: LeadEvent) -> str:
    return str(getattr(record, "record_type", "record"))
