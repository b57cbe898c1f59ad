"""Route's metrics, on the service's registry: speed to lead, SLA outcomes and rep load."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# Speed to lead spans milliseconds (automatic hand-off) to hours (business-hour tiers, queues).
SPEED_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 4 * 3600, 24 * 3600)


@dataclass(frozen=True)
class RouteMetrics:
    handoffs: Counter
    speed_to_lead: Histogram
    first_contact: Histogram
    breaches: Counter
    reassignments: Counter
    open_leads: Gauge


def route_metrics(registry: CollectorRegistry) -> RouteMetrics:
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
        breaches=Counter(
            "leadpipe_route_sla_breaches_total", "SLA deadlines missed.", ["team", "tier"], registry=registry
        ),
        reassignments=Counter(
            "leadpipe_route_reassignments_total", "Leads moved after a breach.", ["team"], registry=registry
        ),
        open_leads=Gauge(
            "leadpipe_route_open_leads", "Open leads held by a team's reps.", ["team"], registry=registry
        ),
    )
