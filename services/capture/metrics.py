"""Capture's own metrics, beside the common ones."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram

from services.runtime.metrics import LATENCY_BUCKETS


@dataclass(frozen=True)
class CaptureMetrics:
    requests: Counter
    published: Counter
    rejected: Counter
    publish_seconds: Histogram


def capture_metrics(registry: CollectorRegistry) -> CaptureMetrics:
    return CaptureMetrics(
        requests=Counter(
            "leadpipe_capture_requests_total", "HTTP requests.", ["route", "status"], registry=registry
        ),
        published=Counter(
            "leadpipe_capture_events_published_total",
            "Events acknowledged by the broker.",
            ["type", "source"],
            registry=registry,
        ),
        rejected=Counter(
            "leadpipe_capture_events_rejected_total", "Events refused.", ["reason"], registry=registry
        ),
        publish_seconds=Histogram(
            "leadpipe_capture_publish_seconds",
            "Time from request to broker acknowledgement.",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        ),
    )
