"""Demo traffic is valid public input and covers the pipeline's paths."""

from __future__ import annotations

import itertools
from collections import Counter

from schemas import InteractionIn
from services.devstack.demo import DemoTraffic


def test_demo_events_are_valid_and_varied() -> None:
    events = [InteractionIn.model_validate(e) for e in itertools.islice(DemoTraffic(seed=7), 3000)]
    kinds = Counter(e.type.value for e in events)
    for kind in ("page_view", "form_submit", "ad_lead", "demo_request", "pricing_page_view"):
        assert kinds[kind] > 0, kind
    assert any(e.contact.email for e in events)
    assert any(e.consent.marketing_email for e in events)
    assert len({e.event_id for e in events}) == len(events)


def test_demo_traffic_is_reproducible_with_a_seed() -> None:
    first = [e["type"] for e in itertools.islice(DemoTraffic(seed=3), 200)]
    second = [e["type"] for e in itertools.islice(DemoTraffic(seed=3), 200)]
    assert first == second
