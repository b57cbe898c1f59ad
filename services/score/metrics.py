"""Score's own metrics, beside the common ones."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# Event time to stage change: milliseconds live, hours or days for a replay or a decay demotion.
STAGE_LATENCY_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30, 60, 300, 3600, 86400, 7 * 86400)
SCORE_BUCKETS = (-50, 0, 10, 20, 40, 60, 80, 100, 120, 150, 200, 300)


@dataclass(frozen=True)
class ScoreMetrics:
    events_scored: Counter
    stage_changes: Counter
    total_score: Histogram
    stage_change_latency: Histogram
    rules_reloads: Counter
    due_leads: Gauge


def score_metrics(registry: CollectorRegistry) -> ScoreMetrics:
    return ScoreMetrics(
        events_scored=Counter(
            "leadpipe_score_events_scored_total",
            "Records applied to lead scores, by record kind and outcome.",
            ["kind", "outcome"],
            registry=registry,
        ),
        stage_changes=Counter(
            "leadpipe_score_stage_changes_total",
            "Stage changes published.",
            ["kind", "from_stage", "to_stage"],
            registry=registry,
        ),
        total_score=Histogram(
            "leadpipe_score_total_score",
            "Total score (fit + engagement) after each scored interaction.",
            buckets=SCORE_BUCKETS,
            registry=registry,
        ),
        stage_change_latency=Histogram(
            "leadpipe_score_event_to_stage_change_seconds",
            "From the triggering event's time to the stage change's publication.",
            buckets=STAGE_LATENCY_BUCKETS,
            registry=registry,
        ),
        rules_reloads=Counter(
            "leadpipe_score_rules_reloads_total", "Rules file reloads.", ["result"], registry=registry
        ),
        due_leads=Gauge(
            "leadpipe_score_due_index_leads", "Leads in this worker's decay index.", registry=registry
        ),
    )
