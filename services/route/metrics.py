"""Route's metrics, on the service's registry: speed to lead, SLA outcomes and rep load.

Three durations, because a lead waits in two places: `speed_to_lead` is the pipeline's part
(triggering event to hand-off), `first_contact` the team's (hand-off to first contact), and
`lead_response` what the lead experiences (triggering event to first contact), by source channel.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from schemas.handoff import SlaEvent, SlaEventKind
from schemas.sales import SalesActivity
from services.route.domain import LeadState
from services.route.router import Outcome
from services.route.store import RedisStore
from services.runtime.campaigns import CampaignsConfig, load_campaigns

# Speed to lead spans milliseconds (automatic hand-off) to hours (business-hour tiers, queues).
NOTICE_OUTCOMES = ("sent", "duplicate", "unaddressed", "refused", "unbuildable", "stale")
CRM_OUTCOMES = ("queued", "delivered", "retried", "dead_lettered")
SLA_CHECK_FAILURES = ("redis", "error")
SPEED_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 4 * 3600, 24 * 3600)


@dataclass(frozen=True)
class RouteMetrics:
    handoffs: Counter
    speed_to_lead: Histogram
    first_contact: Histogram
    lead_response: Histogram
    breaches: Counter
    reminders: Counter
    reassignments: Counter
    open_leads: Gauge
    open_slas: Gauge
    sla_check_failures: Counter
    notices: Counter
    notice_failures: Counter
    crm_deliveries: Counter
    crm_delivery_seconds: Histogram
    crm_waiting: Gauge
    campaigns: CampaignsConfig

    def observe_first_contact(
        self, outcome: Outcome, state: LeadState | None, activity: SalesActivity
    ) -> None:
        """A rep's first contact stopped the SLA clock: the team's and the lead's waiting times."""
        if outcome.first_contact_seconds is None:
            return
        # The `met`: a breach's records waiting for the broker may go out ahead of it.
        met = next(
            (r for r in outcome.records if isinstance(r, SlaEvent) and r.kind == SlaEventKind.MET), None
        )
        tier = met.tier if met is not None else "unknown"
        self.first_contact.labels(tier).observe(outcome.first_contact_seconds)
        if state is not None:
            handoff = state.handoff
            waited = (activity.occurred_at - handoff.trigger.occurred_at).total_seconds()
            channel = self.campaigns.channel_label(handoff.source.channel)
            self.lead_response.labels(tier, channel).observe(max(0.0, waited))

    async def observe_open_slas(self, store: RedisStore) -> None:
        """Running SLA clocks: hand-offs no rep has contacted yet (the store's `sla` deadlines)."""
        self.open_slas.set(await store.open_clocks())

    def start_at_zero(
        self, teams: Sequence[str], tiers: Sequence[str], crm_teams: Sequence[str] = ()
    ) -> None:
        """Create each configured team's and tier's series at 0: Prometheus's increase() cannot see a
        counter's first appearance, so a first breach would otherwise read as no breach."""
        for outcome in NOTICE_OUTCOMES:
            self.notices.labels(outcome)
        for kind in SLA_CHECK_FAILURES:
            self.sla_check_failures.labels(kind)
        for team in crm_teams:
            self.crm_waiting.labels(team)
            for outcome in CRM_OUTCOMES:
                self.crm_deliveries.labels(team, outcome)
        for team in teams:
            self.reassignments.labels(team)
            self.open_leads.labels(team)
            for tier in tiers:
                self.handoffs.labels(team, tier)
                self.breaches.labels(team, tier)
                self.reminders.labels(team, tier)


def route_metrics(registry: CollectorRegistry, campaigns: CampaignsConfig | None = None) -> RouteMetrics:
    """`campaigns` (which channels are labels) defaults to the file LEADPIPE_CAMPAIGNS_FILE names."""
    return RouteMetrics(
        handoffs=Counter(
            "leadpipe_route_handoffs_total", "Hand-offs made.", ["team", "tier"], registry=registry
        ),
        speed_to_lead=Histogram(
            "leadpipe_route_speed_to_lead_seconds",
            "Triggering event to hand-off.",
            ["tier"],
            buckets=SPEED_BUCKETS,
            registry=registry,
        ),
        first_contact=Histogram(
            "leadpipe_route_first_contact_seconds",
            "Hand-off to the first contact by sales.",
            ["tier"],
            buckets=SPEED_BUCKETS,
            registry=registry,
        ),
        lead_response=Histogram(
            "leadpipe_route_lead_response_seconds",
            "Triggering event to the first contact by sales (speed to lead as the lead sees it).",
            ["tier", "channel"],
            buckets=SPEED_BUCKETS,
            registry=registry,
        ),
        breaches=Counter(
            "leadpipe_route_sla_breaches_total", "SLA deadlines missed.", ["team", "tier"], registry=registry
        ),
        reminders=Counter(
            "leadpipe_route_sla_reminders_total",
            "Reminders (`due_soon`) published before a contact deadline (the tier's remind_before).",
            ["team", "tier"],
            registry=registry,
        ),
        reassignments=Counter(
            "leadpipe_route_reassignments_total", "Leads moved after a breach.", ["team"], registry=registry
        ),
        open_leads=Gauge(
            "leadpipe_route_open_leads", "Open leads held by a team's reps.", ["team"], registry=registry
        ),
        open_slas=Gauge(
            "leadpipe_route_sla_open",
            "Running SLA clocks: handed-off leads not yet contacted.",
            registry=registry,
        ),
        sla_check_failures=Counter(
            "leadpipe_route_sla_check_failures_total",
            "SLA timer ticks that failed: redis (Redis unavailable) or error (anything else, logged with "
            "its traceback); the next tick checks again.",
            ["kind"],
            registry=registry,
        ),
        notices=Counter(
            "leadpipe_route_sla_notices_total",
            "SLA breach notices and due-soon reminders: sent, duplicate (sent before a replay), "
            "unaddressed (no address to use), refused (the SMTP server refused it for good: an address "
            "it rejects; logged, not retried), unbuildable (no valid mail could be made of it, e.g. an "
            "address with a line break; logged), stale (a reminder whose lead was contacted, closed or "
            "handed on since, or whose deadline passed: not sent).",
            ["outcome"],
            registry=registry,
        ),
        notice_failures=Counter(
            "leadpipe_route_sla_notice_failures_total",
            "Attempts to send an SLA notice that the SMTP server did not take (each is retried).",
            registry=registry,
        ),
        crm_deliveries=Counter(
            "leadpipe_route_crm_deliveries_total",
            "Hand-offs to CRM webhooks: queued, delivered, retried (a failed post, tried again), "
            "dead_lettered (refused, or the last try failed).",
            ["team", "outcome"],
            registry=registry,
        ),
        crm_delivery_seconds=Histogram(
            "leadpipe_route_crm_delivery_seconds",
            "Hand-off queued for its CRM webhook to the CRM's 2xx.",
            ["team"],
            buckets=SPEED_BUCKETS,
            registry=registry,
        ),
        crm_waiting=Gauge(
            "leadpipe_route_crm_waiting",
            "A team's CRM deliveries waiting for their first or next try (the queue all workers share).",
            ["team"],
            registry=registry,
        ),
        campaigns=campaigns or load_campaigns(),
    )
