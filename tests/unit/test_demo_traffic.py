"""Demo traffic is valid public input and covers the pipeline's paths."""

from __future__ import annotations

import itertools
from collections import Counter

from schemas import InteractionIn
from services.devstack.demo import DemoTraffic, email_address


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


def test_an_email_address_is_made_of_the_names_words() -> None:
    """faker's German names include initials with a period ("Hans D."), which made "hansd..mühle":
    the demo traffic's event 48,110 (seed 21) was refused by capture."""
    assert email_address("Hans D.", "Mühle", "mentzel.de") == "hans.d.mühle@mentzel.de"
    assert email_address("Jean-Pierre", "de la Fontaine", "x.fr") == "jean.pierre.de.la.fontaine@x.fr"
    contact = {"email": email_address("Hans D.", "Mühle", "mentzel.de")}
    event = {"type": "form_submit", "event_id": "e-1", "occurred_at": "2026-11-22T08:00:00Z"}
    event["contact"] = contact
    assert InteractionIn.model_validate(event).contact.email == "hans.d.mühle@mentzel.de"
