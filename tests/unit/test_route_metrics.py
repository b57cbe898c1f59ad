"""Route's waiting-time metrics: the team's part (hand-off to contact) and the lead's (event to contact)."""

from __future__ import annotations

from datetime import timedelta

from prometheus_client import CollectorRegistry, generate_latest

from schemas.handoff import SlaEventKind
from schemas.sales import SalesActivityKind
from services.route import domain
from services.route.metrics import route_metrics
from services.route.router import Outcome
from services.runtime.campaigns import parse_campaigns
from tests.unit.test_route_domain import WED, activity, handoff

CAMPAIGNS = parse_campaigns({"channels": ["web"], "campaigns": []})


def test_first_contact_observes_both_waits_by_tier_and_bounded_channel() -> None:
    registry = CollectorRegistry()
    metrics = route_metrics(registry, CAMPAIGNS)
    made = handoff()  # triggered at WED, handed off at WED, channel web
    contact = activity(SalesActivityKind.CONTACTED).model_copy(
        update={"occurred_at": WED + timedelta(minutes=3)}
    )
    met = domain.sla_event(made, SlaEventKind.MET, WED + timedelta(minutes=3))
    metrics.observe_first_contact(
        Outcome([met], first_contact_seconds=150.0), domain.LeadState(made), contact
    )

    def value(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    assert value("leadpipe_route_first_contact_seconds_sum", tier="hot") == 150.0
    assert value("leadpipe_route_lead_response_seconds_sum", tier="hot", channel="web") == 180.0
    assert value("leadpipe_route_lead_response_seconds_bucket", tier="hot", channel="web", le="120.0") == 0
    assert value("leadpipe_route_lead_response_seconds_bucket", tier="hot", channel="web", le="300.0") == 1


def test_no_first_contact_observes_nothing_and_a_lost_state_only_the_teams_wait() -> None:
    registry = CollectorRegistry()
    metrics = route_metrics(registry, CAMPAIGNS)
    contact = activity(SalesActivityKind.CONTACTED)
    metrics.observe_first_contact(Outcome(), None, contact)
    assert registry.get_sample_value("leadpipe_route_first_contact_seconds_count", {"tier": "hot"}) is None
    met = domain.sla_event(handoff(), SlaEventKind.MET, WED)
    metrics.observe_first_contact(Outcome([met], first_contact_seconds=1.0), None, contact)
    assert registry.get_sample_value("leadpipe_route_first_contact_seconds_count", {"tier": "hot"}) == 1
    assert b"lead_response_seconds_count{" not in generate_latest(registry)


def test_configured_teams_and_tiers_start_at_zero() -> None:
    """So Prometheus's increase() sees the first breach as 1, not as a series appearing."""
    registry = CollectorRegistry()
    metrics = route_metrics(registry, CAMPAIGNS)
    assert (
        registry.get_sample_value("leadpipe_route_sla_breaches_total", {"team": "dach", "tier": "hot"})
        is None
    )
    metrics.start_at_zero(["dach"], ["hot", "mql"])
    for tier in ("hot", "mql"):
        labels = {"team": "dach", "tier": tier}
        assert registry.get_sample_value("leadpipe_route_sla_breaches_total", labels) == 0
        assert registry.get_sample_value("leadpipe_route_handoffs_total", labels) == 0
    assert registry.get_sample_value("leadpipe_route_reassignments_total", {"team": "dach"}) == 0


def test_first_contact_takes_the_tier_of_the_met_behind_a_breachs_records() -> None:
    """A contact while a breach waits for the broker publishes the breach's records first."""
    registry = CollectorRegistry()
    metrics = route_metrics(registry, CAMPAIGNS)
    made = handoff()
    moved = made.model_copy(update={"handoff_id": "moved"})
    met = domain.sla_event(moved, SlaEventKind.MET, WED)
    outcome = Outcome(
        [moved, domain.sla_event(moved, SlaEventKind.REASSIGNED, WED), met], first_contact_seconds=2.0
    )
    metrics.observe_first_contact(outcome, domain.LeadState(moved), activity(SalesActivityKind.CONTACTED))
    assert registry.get_sample_value("leadpipe_route_first_contact_seconds_count", {"tier": "hot"}) == 1
    assert (
        registry.get_sample_value("leadpipe_route_first_contact_seconds_count", {"tier": "unknown"}) is None
    )
