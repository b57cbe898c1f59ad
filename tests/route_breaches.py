"""What the route breach tests share: their clock, a published hand-off to breach, and record kinds."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from schemas.handoff import Handoff, SlaEvent
from services.route.router import Router
from tests.unit.test_route_domain import make_change

NOW = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)  # a Wednesday: 11:00 in Berlin, dach is open


async def hand_off(router: Router, lead_id: str = "lead-1") -> Handoff:
    """Route `lead_id` to a rep of dach, store its state and mark it published, as the batch does."""
    outcome = await router.on_stage_change(make_change(lead_id, country="DE"), NOW)
    await router.store.save_states(outcome.states)
    handoff = outcome.states[0].handoff
    await router.published([handoff])
    return handoff


def kinds(records: list[Any]) -> list[str]:
    return [r.kind.value if isinstance(r, SlaEvent) else "handoff" for r in records]
