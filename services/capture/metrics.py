"""Capture's own metrics, beside the common ones."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from services.runtime.metrics import LATENCY_BUCKETS


@dataclass(frozen=True)
class CaptureMetrics:
    requests: Counter
    published: Counter
    rejected: Counter
    publish_seconds: Histogram
    duplicates: Counter
    dedupe_unavailable: Counter
    rate_limit_unavailable: Counter
    contact_fetches: Counter
    contact_fetches_waiting: Gauge


FETCH_PLATFORMS = ("meta", "linkedin")
FETCH_OUTCOMES = (
    "published",
    "failed",
    "broker_unavailable",
    "gave_up",
    "unqueued",
    "dropped",
    "discarded",
    "set_aside",  # a queued job capture cannot read (`FetchQueue.claim`)
)


def capture_metrics(registry: CollectorRegistry) -> CaptureMetrics:
    metrics = _capture_metrics(registry)
    # every platform and outcome at zero from the start: an alert on given-up fetches has a series
    # to compare before the first one (Prometheus cannot tell "none yet" from "not scraped")
    for platform in FETCH_PLATFORMS:
        for outcome in FETCH_OUTCOMES:
            metrics.contact_fetches.labels(platform, outcome)
    return metrics


def _capture_metrics(registry: CollectorRegistry) -> CaptureMetrics:
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
        duplicates=Counter(
            "leadpipe_capture_duplicates_total",
            "Repeated sender ids acknowledged without publishing.",
            ["record"],
            registry=registry,
        ),
        dedupe_unavailable=Counter(
            "leadpipe_capture_dedupe_unavailable_total",
            "Events published without the idempotency check because Redis did not answer.",
            registry=registry,
        ),
        rate_limit_unavailable=Counter(
            "leadpipe_capture_rate_limit_unavailable_total",
            "Requests let through unchecked because Redis did not answer.",
            registry=registry,
        ),
        contact_fetches=Counter(
            "leadpipe_capture_contact_fetches_total",
            "Ad-platform contact fetches (Meta Graph API, LinkedIn Lead Sync) by outcome: published, "
            "failed (retried later), broker_unavailable, gave_up, unqueued (Redis down: retried in memory), "
            "dropped (the lead was deleted on the platform), discarded (fetched while it was deleted: "
            "not published).",
            ["platform", "outcome"],
            registry=registry,
        ),
        contact_fetches_waiting=Gauge(
            "leadpipe_capture_contact_fetches_waiting",
            "Contact fetches queued in Redis: due now, retrying later, or in flight.",
            registry=registry,
        ),
    )
