"""Per-record metrics through `Labelled`: the same children, counted as `labels()` counts them."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram

from services.enrich.metrics import enrich_metrics
from services.runtime.campaigns import parse_campaigns
from services.runtime.metrics import Labelled, common_metrics
from services.score.metrics import score_metrics


def test_a_labelled_child_is_the_metrics_own_and_looked_up_once() -> None:
    registry = CollectorRegistry()
    counter = Counter("records", "Records.", ["service", "topic"], registry=registry)
    children = Labelled(counter)
    children("score", "leads.enriched").inc()
    children("score", "leads.enriched").inc(2)
    children("score", "leads.sales").inc()

    assert children("score", "leads.enriched") is counter.labels("score", "leads.enriched")
    assert registry.get_sample_value("records_total", {"service": "score", "topic": "leads.enriched"}) == 3
    assert registry.get_sample_value("records_total", {"service": "score", "topic": "leads.sales"}) == 1


def test_a_labelled_histogram_observes_into_the_exposition() -> None:
    metrics = common_metrics("score")
    Labelled(metrics.processing_seconds)("score", "leads.enriched").observe(0.002)
    labels = {"service": "score", "topic": "leads.enriched"}
    assert metrics.registry.get_sample_value("leadpipe_processing_seconds_count", labels) == 1
    assert b'leadpipe_processing_seconds_bucket{le="0.0025",service="score",topic="leads.enriched"} 1.0' in (
        metrics.exposition()
    )


def test_labels_of_another_metric_type_keep_their_own_children() -> None:
    registry = CollectorRegistry()
    histogram = Histogram("waits", "Waits.", ["tier"], registry=registry)
    assert Labelled(histogram)("hot") is histogram.labels("hot")


def test_the_services_per_record_counters_count_into_their_own_metrics() -> None:
    registry = CollectorRegistry()
    score = score_metrics(registry, parse_campaigns({"channels": ["web"], "campaigns": []}))
    score.scored("interaction", "scored").inc()
    score.scored("interaction", "scored").inc()
    enrich = enrich_metrics(CollectorRegistry())
    enrich.published("complete", "live").inc()
    enrich.provider_outcomes("local", "hit").inc()

    scored = {"kind": "interaction", "outcome": "scored"}
    assert registry.get_sample_value("leadpipe_score_events_scored_total", scored) == 2
    assert score.scored("interaction", "scored") is score.events_scored.labels("interaction", "scored")
    assert enrich.published("complete", "live") is enrich.enriched.labels("complete", "live")
    assert enrich.provider_outcomes("local", "hit") is enrich.provider_requests.labels("local", "hit")


def test_batch_series_come_only_with_a_batched_agent() -> None:
    """capture and nurture's mailer have no batched agent: a window of 0 and empty histograms would
    draw them on the dashboard as idle agents."""
    from services.nurture.mailer import create_mailer_app
    from services.nurture.settings import NurtureSettings
    from services.score.app import create_app
    from services.score.settings import ScoreSettings

    assert b"leadpipe_batch_" not in common_metrics("capture").exposition()
    mailer = create_mailer_app(NurtureSettings())
    assert b"leadpipe_batch_" not in mailer.metrics.exposition()
    with pytest.raises(RuntimeError, match="no batched agent"):
        _ = mailer.batch_metrics

    service = create_app(ScoreSettings())
    service.batch_metrics.records.observe(20)
    exposition = service.metrics.exposition()
    assert b'leadpipe_batch_records_count{service="score"} 1.0' in exposition
    assert b'leadpipe_batch_window_seconds{service="score"}' in exposition
