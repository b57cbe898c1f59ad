"""Demo traffic: realistic visitors, form fills, ad leads and hand-raisers, made with faker."""

from __future__ import annotations

import random
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from faker import Faker

CAMPAIGNS = ("spring-launch", "webinar-series", "retargeting", "brand")
CHANNELS = (
    ("web", "google", "cpc"),
    ("web", "linkedin", "social"),
    ("web", "newsletter", "email"),
    ("meta_ads", "facebook", "paid_social"),
    ("google_ads", "google", "cpc"),
    ("web", None, None),
)
PAGES = ("/", "/product", "/blog/lead-scoring", "/customers", "/integrations", "/careers")
TITLES = (
    "VP Marketing",
    "Head of Sales",
    "Marketing Manager",
    "CEO",
    "Software Engineer",
    "Director of Revenue Operations",
    "Student",
    "Chief Marketing Officer",
    "Sales Development Representative",
)
COUNTRIES = ("DE", "AT", "CH", "FR", "GB", "NL", "US", "ES", "IT", "PL")


_NAME_BREAKS = re.compile(r"[\W_]+")


def email_address(first: str, last: str, domain: str) -> str:
    """first.last@domain from the names' words: faker's names carry spaces, hyphens and initials
    with periods ("Hans D."), which would make "hans d..mühle", an address capture refuses."""
    words = [word for word in _NAME_BREAKS.split(f"{first} {last}".lower()) if word]
    return f"{'.'.join(words)}@{domain}"


@dataclass
class Visitor:
    anonymous_id: str
    source: dict[str, Any]
    contact: dict[str, Any] | None = None
    steps: int = 0
    known: bool = False
    history: list[str] = field(default_factory=list)


class DemoTraffic:
    """An endless, seeded stream of public-shape events (dicts ready to POST to /v1/events)."""

    def __init__(self, seed: int | None = None, visitors: int = 40) -> None:
        self.random = random.Random(seed)
        self.faker = Faker(["de_DE", "en_GB", "en_US", "fr_FR"])
        if seed is not None:
            self.faker.seed_instance(seed)
        self.visitors = [self._new_visitor() for _ in range(visitors)]

    def _new_visitor(self) -> Visitor:
        channel, utm_source, utm_medium = self.random.choice(CHANNELS)
        source = {"channel": channel, "utm_source": utm_source, "utm_medium": utm_medium}
        if utm_source:
            source["utm_campaign"] = self.random.choice(CAMPAIGNS)
        return Visitor(
            anonymous_id=f"anon-{uuid.UUID(int=self.random.getrandbits(128)).hex[:16]}", source=source
        )

    def _contact(self) -> dict[str, Any]:
        first, last = self.faker.first_name(), self.faker.last_name()
        domain = self.faker.domain_name()
        return {
            "email": email_address(first, last, domain),
            "first_name": first,
            "last_name": last,
            "company": self.faker.company(),
            "job_title": self.random.choice(TITLES),
            "country": self.random.choice(COUNTRIES),
            "phone": self.faker.phone_number(),
        }

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return self

    def __next__(self) -> dict[str, Any]:
        index = self.random.randrange(len(self.visitors))
        visitor = self.visitors[index]
        event = self._next_for(visitor)
        visitor.steps += 1
        if visitor.steps > self.random.randint(6, 20):
            self.visitors[index] = self._new_visitor()
        return event

    def _next_for(self, visitor: Visitor) -> dict[str, Any]:
        roll = self.random.random()
        if visitor.source["channel"] in ("meta_ads", "google_ads") and not visitor.known:
            visitor.known, visitor.contact = True, self._contact()
            return self._event(visitor, "ad_lead", consent=self.random.random() < 0.6)
        if not visitor.known:
            if roll < 0.75 or visitor.steps < 2:
                page = self.random.choice(PAGES)
                kind = "pricing_page_view" if roll < 0.1 else "page_view"
                return self._event(visitor, kind, properties={"url": f"https://example.com{page}"})
            visitor.known, visitor.contact = True, self._contact()
            kind = self.random.choice(("form_submit", "content_download", "webinar_registered"))
            return self._event(visitor, kind, consent=self.random.random() < 0.7)
        kinds = (
            ("page_view", 0.35),
            ("pricing_page_view", 0.15),
            ("email_open", 0.12),
            ("email_click", 0.08),
            ("content_download", 0.1),
            ("webinar_attended", 0.06),
            ("demo_request", 0.06),
            ("trial_signup", 0.04),
            ("callback_request", 0.02),
            ("unsubscribe", 0.02),
        )
        kind = self.random.choices([k for k, _ in kinds], [w for _, w in kinds])[0]
        return self._event(visitor, kind)

    def _event(
        self,
        visitor: Visitor,
        kind: str,
        *,
        consent: bool | None = None,
        properties: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        event: dict[str, Any] = {
            "event_id": uuid.UUID(int=self.random.getrandbits(128)).hex,
            "type": kind,
            "occurred_at": datetime.now(UTC).isoformat(),
            "anonymous_id": visitor.anonymous_id,
            "source": visitor.source,
            "properties": properties or {},
        }
        if visitor.contact:
            event["contact"] = visitor.contact
        if consent is not None:
            event["consent"] = {"marketing_email": consent, "text_version": "2026-01"}
        return event
