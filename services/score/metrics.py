"""Score's own metrics, beside the common ones, and the lead funnel: stage entries and captured leads
by source channel and campaign, and campaign spend for cost per lead.

Score exports the funnel because it decides lifecycle stages, and it exports the spend next to the
counters the cost-per-lead panel divides it by, with the same campaign labels from the same file.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import cached_property

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from schemas.stage import LifecycleStage, StageChange, StageKind
from services.runtime.campaigns import CampaignsConfig, load_campaigns
from services.runtime.metrics import Labelled

# Event time to stage change: milliseconds live, hours or days for a replay or a decay demotion.
STAGE_LATENCY_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30, 60, 300, 3600, 86400, 7 * 86400)
SCORE_BUCKETS = (-50, 0, 10, 20, 40, 60, 80, 100, 120, 150, 200, 300)
RULES_CHECK_OUTCOMES = ("moved", "unchanged", "gone")


@dataclass(frozen=True)
class ScoreMetrics:
    events_scored: Counter
    stage_changes: Counter
    total_score: Histogram
    stage_change_latency: Histogram
    rules_reloads: Counter
    rules_checks: Counter
    due_leads: Gauge
    stage_entries: Counter
    leads_captured: Counter
    campaign_cost: Gauge
    campaigns: CampaignsConfig

    # The children of the counters updated per record, each looked up once (Labelled).
    @cached_property
    def scored(self) -> Labelled[Counter]:
        return Labelled(self.events_scored)

    @cached_property
    def _moves(self) -> Labelled[Counter]:
        return Labelled(self.stage_changes)

    @cached_property
    def _entries(self) -> Labelled[Counter]:
        return Labelled(self.stage_entries)

    @cached_property
    def _captured(self) -> Labelled[Counter]:
        return Labelled(self.leads_captured)

    @cached_property
    def _checks(self) -> Labelled[Counter]:
        return Labelled(self.rules_checks)

    def rules_checked(self, changes: list[StageChange] | None) -> None:
        """Count one lead's re-evaluation after a rules reload: its stage changes, None when the
        lead is gone (erased since the reload)."""
        self._checks("gone" if changes is None else "moved" if changes else "unchanged").inc()

    def observe_stage_change(self, change: StageChange, now: float | None = None) -> None:
        """Count one published stage change: its move, its latency, and the funnel by source."""
        self._moves(change.kind.value, change.from_stage, change.to_stage).inc()
        now = time.time() if now is None else now
        self.stage_change_latency.observe(max(0.0, now - change.trigger.occurred_at.timestamp()))
        if change.kind != StageKind.LIFECYCLE:
            return
        channel = self.campaigns.channel_label(change.source.channel)
        campaign = self.campaigns.campaign_label(change.source.utm_campaign)
        self._entries(change.to_stage, channel, campaign).inc()
        if change.from_stage == LifecycleStage.RAW:
            self._captured(channel, campaign).inc()


def score_metrics(registry: CollectorRegistry, campaigns: CampaignsConfig | None = None) -> ScoreMetrics:
    """`campaigns` defaults to the file LEADPIPE_CAMPAIGNS_FILE names (config/campaigns.yaml)."""
    campaigns = campaigns or load_campaigns()
    campaign_cost = Gauge(
        "leadpipe_campaign_cost",
        "A campaign's spend over its period (config/campaigns.yaml), in its currency.",
        ["campaign", "channel", "currency"],
        registry=registry,
    )
    for campaign in campaigns.campaigns:
        campaign_cost.labels(campaign.id, campaign.channel, campaign.currency).set(campaign.cost)
    rules_checks = Counter(
        "leadpipe_score_rules_checks_total",
        "Leads re-evaluated after the scoring rules changed (a reload, or leads evaluated under other "
        "rules restored), by outcome: moved (a stage changed), unchanged, gone (erased since).",
        ["outcome"],
        registry=registry,
    )
    for outcome in RULES_CHECK_OUTCOMES:  # at zero from the start: rare, and a panel shows them
        rules_checks.labels(outcome)
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
        rules_checks=rules_checks,
        due_leads=Gauge(
            "leadpipe_score_due_index_leads", "Leads in this worker's decay index.", registry=registry
        ),
        stage_entries=Counter(
            "leadpipe_funnel_stage_entries_total",
            "Leads entering a lifecycle stage, by source channel and campaign (unlisted: other).",
            ["stage", "channel", "campaign"],
            registry=registry,
        ),
        leads_captured=Counter(
            "leadpipe_funnel_leads_captured_total",
            "New leads (their first lifecycle move, out of raw), by source channel and campaign.",
            ["channel", "campaign"],
            registry=registry,
        ),
        campaign_cost=campaign_cost,
        campaigns=campaigns,
    )
