"""Publish one record at most once per sender id: claim, publish, then mark or release."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from enum import StrEnum

from schemas.base import LeadEvent
from schemas.interaction import Interaction
from services.capture.guard import ClaimState, Deduplicator
from services.capture.metrics import CaptureMetrics
from services.capture.publisher import BrokerUnavailable, Publisher
from services.runtime.codec import encode
from services.runtime.metrics import CommonMetrics

log = logging.getLogger(__name__)


class Status(StrEnum):
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    IN_FLIGHT = "in_flight"
    UNAVAILABLE = "unavailable"


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
    ) -> None:
        self._publisher = publisher
        self._dedupe = dedupe
        self._metrics = metrics
        self._common = common

    async def submit(
        self, topic: str, record: LeadEvent, sender_id: str | None, *, started: float | None = None
    ) -> Outcome:
        """Publish `record` unless `sender_id` was already published within the window."""
        started = time.perf_counter() if started is None else started
        claim = await self._dedupe.claim(sender_id) if sender_id else None
        if claim is not None:
            if claim.state is ClaimState.DONE:
                self._metrics.duplicates.labels(_kind(record)).inc()
                return Outcome(Status.DUPLICATE, {**(claim.previous or {}), "duplicate": True})
            if claim.state is ClaimState.IN_FLIGHT:
                self._metrics.duplicates.labels(_kind(record)).inc()
                return Outcome(Status.IN_FLIGHT)
            if claim.state is ClaimState.UNAVAILABLE:
                self._metrics.dedupe_unavailable.inc()
        try:
            ack = await self._publisher.publish(topic, record.lead_id.encode(), encode(record))
        except BrokerUnavailable as exc:
            if claim is not None:
                await self._dedupe.release(claim)
            self._metrics.rejected.labels("broker_unavailable").inc()
            log.warning("broker unavailable, not accepted: %s", exc)
            return Outcome(Status.UNAVAILABLE)
        answer: dict[str, object] = {
            "status": "accepted",
            "event_id": record.event_id,
            "lead_id": record.lead_id,
            "partition": ack.partition,
            "offset": ack.offset,
        }
        if isinstance(record, Interaction):
            answer["identity"] = record.identity.value
            self._metrics.published.labels(record.type.value, record.source.channel or "unknown").inc()
        else:
            self._metrics.published.labels(_kind(record), "privacy").inc()
        if claim is not None and claim.state is ClaimState.NEW:
            await self._dedupe.complete(claim, answer)
        self._metrics.publish_seconds.observe(time.perf_counter() - started)
        self._common.events_out.labels("capture", topic).inc()
        return Outcome(Status.ACCEPTED, {**answer, "duplicate": False})


def _kind(record: LeadEvent) -> str:
    return str(getattr(record, "record_type", "record"))
