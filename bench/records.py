"""Realistic pipeline records for the service benchmarks, built with the schemas' own models.

Each service is fed what its upstream would really send it: interactions as capture makes them from
the demo traffic, enriched interactions with profiles of the sample companies, and stage changes as
score's pure domain emits them. Timestamps are close to now, so no decay check or SLA falls due
merely because the data is old.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

from phonenumbers import country_code_for_region
from pydantic import JsonValue

from schemas.enriched import EnrichedInteraction
from schemas.interaction import Contact, IdentityKind, Interaction, InteractionIn, InteractionType, Source
from schemas.profile import EmailKind, FieldSource, Firmographics, LeadProfile
from schemas.stage import StageChange
from schemas.views import read_as
from schemas.views.score import EnrichedView
from services.capture import domain as capture_domain
from services.devstack.demo import DemoTraffic
from services.enrich.firmographics import DEFAULT_COMPANIES, load_companies
from services.enrich.normalise import normalise_phone
from services.score import domain as score_domain
from services.score.rules import DEFAULT_RULES_FILE, ScoringRules, load_rules
from services.score.state import LeadState

Record = tuple[bytes, bytes]

# (seniority, department, job title): what enrich derives from titles like the demo's (a unit test
# checks them against enrich's title rules).
ROLES: tuple[tuple[str, str, str], ...] = (
    ("vp", "marketing", "VP Marketing"),
    ("c_level", "marketing", "Chief Marketing Officer"),
    ("director", "sales", "Director of Revenue Operations"),
    ("manager", "marketing", "Marketing Manager"),
    ("director", "sales", "Head of Sales"),
    ("c_level", "executive", "CEO"),
    ("individual_contributor", "engineering", "Software Engineer"),
    ("individual_contributor", "sales", "Sales Development Representative"),
    ("student", "education", "Student"),
)
# What known leads do, weighted like the demo traffic's known visitors.
KINDS: tuple[tuple[InteractionType, float], ...] = (
    (InteractionType.PAGE_VIEW, 0.35),
    (InteractionType.PRICING_PAGE_VIEW, 0.15),
    (InteractionType.EMAIL_OPEN, 0.12),
    (InteractionType.EMAIL_CLICK, 0.08),
    (InteractionType.CONTENT_DOWNLOAD, 0.1),
    (InteractionType.WEBINAR_ATTENDED, 0.06),
    (InteractionType.DEMO_REQUEST, 0.06),
    (InteractionType.TRIAL_SIGNUP, 0.04),
    (InteractionType.CALLBACK_REQUEST, 0.02),
    (InteractionType.UNSUBSCRIBE, 0.02),
)
PAGES = ("/", "/product", "/blog/lead-scoring", "/customers", "/integrations", "/pricing", "/careers")


def record(event: Any) -> Record:
    """(key, value) as every leadpipe producer writes it: lead id key, the model's JSON value."""
    return event.lead_id.encode(), event.model_dump_json().encode()


@cache
def companies() -> tuple[Firmographics, ...]:
    """The shipped company file, read once: the speed-to-lead case asks per hand-raiser."""
    return tuple(sorted(load_companies(DEFAULT_COMPANIES).values(), key=lambda f: f.domain or ""))


@cache
def good_fit_companies() -> tuple[Firmographics, ...]:
    """EMEA companies of 500+ people: route's enterprise rule takes their hand-raisers."""
    emea = {"DE", "AT", "CH", "FR", "GB", "NL", "ES", "IT", "PL", "BE"}
    return tuple(c for c in companies() if (c.employees or 0) >= 500 and c.country in emea)


FIRST_NAMES = ("Jane", "Lukas", "Amélie", "Marta", "Oliver", "Sofia", "Jonas", "Chiara", "Mateo", "Emma")
LAST_NAMES = ("Doe", "Müller", "Dubois", "Rossi", "Smith", "García", "Novak", "Jansen", "Schmidt", "Lefèvre")


def profile_for(
    lead_id: str,
    rng: random.Random,
    firms: Sequence[Firmographics],
    *,
    at: datetime | None = None,
    event_id: str | None = None,
) -> LeadProfile:
    """A lead's profile as enrich makes it from a form fill by an anonymous visitor, at `at` by the
    record `event_id` (the lead's first; default now and `<lead>-1`): a sample company and role, a
    business e-mail, a name and a phone (E.164, with the time zone it gives), the visitor's anonymous
    id, and a provenance entry for every field the form set (enrich's TRACKED fields and the
    firmographics lookup). A unit test checks the shape against enrich's pure domain."""
    firm = rng.choice(firms)
    seniority, department, title = rng.choice(ROLES)
    country = firm.country or "DE"
    phone = normalise_phone(f"+{country_code_for_region(country)} {rng.randrange(10**8, 10**9)}", country)
    at = at or datetime.now(UTC)
    form = FieldSource(
        source=InteractionType.FORM_SUBMIT.value, event_id=event_id or f"{lead_id}-1", updated_at=at
    )
    values = {
        "email": f"{lead_id}@{firm.domain}",
        "first_name": rng.choice(FIRST_NAMES),
        "last_name": rng.choice(LAST_NAMES),
        "phone": phone.e164 if phone else None,
        "company": firm.company_name,
        "job_title": title,
        "country": country,
        "timezone": phone.timezone if phone else None,
    }
    sources = {name: form for name, value in values.items() if value is not None}
    sources["firmographics"] = form.model_copy(update={"source": "firmographics:local"})
    return LeadProfile(
        lead_id=lead_id,
        email_kind=EmailKind.BUSINESS,
        seniority=seniority,
        department=department,
        firmographics=firm,
        anonymous_ids=[f"anon-{rng.getrandbits(64):016x}"],
        field_sources=sources,
        **values,
    )


def _properties(kind: InteractionType, rng: random.Random) -> dict[str, JsonValue]:
    if kind is InteractionType.PAGE_VIEW:
        return {"url": f"https://example.com{rng.choice(PAGES)}"}
    if kind is InteractionType.CONTENT_DOWNLOAD:
        return {"asset_type": rng.choice(("whitepaper", "ebook", "case_study")), "asset_id": "a1"}
    return {}


def enriched_interaction(
    lead_id: str,
    kind: InteractionType,
    at: datetime,
    profile: LeadProfile,
    *,
    event_id: str,
    properties: dict[str, JsonValue] | None = None,
) -> EnrichedInteraction:
    interaction = Interaction(
        event_id=event_id,
        occurred_at=at,
        lead_id=lead_id,
        type=kind,
        identity=IdentityKind.EMAIL,
        anonymous_id=profile.anonymous_ids[0] if profile.anonymous_ids else None,
        contact=Contact(  # as the demo's known visitors send it with every event
            email=profile.email,
            first_name=profile.first_name,
            last_name=profile.last_name,
            phone=profile.phone,
            company=profile.company,
            job_title=profile.job_title,
            country=profile.country,
        ),
        source=Source(channel="web", utm_source="google", utm_medium="cpc", utm_campaign="spring-launch"),
        properties=properties or {},
        received_at=at,
    )
    return EnrichedInteraction(
        event_id=event_id, occurred_at=at, lead_id=lead_id, interaction=interaction, profile=profile
    )


def enriched_stream(
    count: int, *, leads: int | None = None, seed: int = 11, now: datetime | None = None, prefix: str = "b"
) -> list[EnrichedInteraction]:
    """`count` enriched interactions over `leads` leads (default count/10), interleaved at random.

    Each lead's events keep their time order; a lead's first event is a form fill (how it became
    known), the rest follow the demo traffic's mix, so stage changes happen at a realistic rate.
    """
    rng = random.Random(seed)
    leads = max(1, leads if leads is not None else count // 10)
    firms = companies()
    start = (now or datetime.now(UTC)) - timedelta(hours=2)
    step = timedelta(hours=2) / max(count, 1)
    # lead i's first record is record i (below): its form fill set the profile's fields
    profiles = [profile_for(f"e-{prefix}-{i:07d}", rng, firms, at=start + i * step) for i in range(leads)]
    per_lead = [0] * leads
    kinds, weights = [k for k, _ in KINDS], [w for _, w in KINDS]
    out: list[EnrichedInteraction] = []
    for n in range(count):
        i = n if n < leads else rng.randrange(leads)  # every lead appears at least once
        profile = profiles[i]
        kind = InteractionType.FORM_SUBMIT if per_lead[i] == 0 else rng.choices(kinds, weights)[0]
        per_lead[i] += 1
        out.append(
            enriched_interaction(
                profile.lead_id,
                kind,
                start + n * step,
                profile,
                event_id=f"{profile.lead_id}-{per_lead[i]}",
                properties=_properties(kind, rng),
            )
        )
    return out


def one_event_per_lead(leads: int, *, seed: int = 13, prefix: str = "m") -> Iterator[EnrichedInteraction]:
    """A form fill for each of `leads` leads: the state table grows by one row per record."""
    rng = random.Random(seed)
    firms = companies()
    at = datetime.now(UTC) - timedelta(minutes=30)
    for i in range(leads):
        profile = profile_for(f"e-{prefix}-{i:07d}", rng, firms, at=at)
        yield enriched_interaction(
            profile.lead_id, InteractionType.FORM_SUBMIT, at, profile, event_id=f"{profile.lead_id}-1"
        )


@dataclass
class ScoreOracle:
    """score's pure domain run in the harness: what the worker must emit, and the states it holds."""

    rules: ScoringRules
    states: dict[str, LeadState | None]

    @classmethod
    def default(cls) -> ScoreOracle:
        return cls(load_rules(DEFAULT_RULES_FILE), {})

    def apply(self, event: EnrichedInteraction) -> list[StageChange]:
        update = score_domain.apply_interaction(
            self.states.get(event.lead_id), read_as(EnrichedView, event), self.rules
        )
        self.states[event.lead_id] = update.state
        return list(update.changes)


def stage_changes(events: Sequence[EnrichedInteraction]) -> list[StageChange]:
    """Every stage change score emits for these events, in order."""
    oracle = ScoreOracle.default()
    return [change for event in events for change in oracle.apply(event)]


def hand_raiser_changes(count: int, *, seed: int = 17, prefix: str = "h") -> list[StageChange]:
    """`count` sales-ready stage changes, as score emits them for good-fit leads asking for a demo."""
    rng = random.Random(seed)
    firms = good_fit_companies()
    at = datetime.now(UTC) - timedelta(minutes=10)
    oracle = ScoreOracle.default()
    out: list[StageChange] = []
    i = 0
    while len(out) < count:
        lead_id = f"e-{prefix}-{i:07d}"
        profile = profile_for(lead_id, rng, firms, at=at, event_id=f"{lead_id}-demo")
        demo = enriched_interaction(
            lead_id, InteractionType.DEMO_REQUEST, at, profile, event_id=f"{lead_id}-demo"
        )
        out.extend(c for c in oracle.apply(demo) if c.sales_ready)
        i += 1
    return out[:count]


def public_events(count: int, *, seed: int = 21) -> list[dict[str, Any]]:
    """The demo traffic's public events (what websites and forms POST to capture)."""
    traffic = DemoTraffic(seed=seed)
    return [next(traffic) for _ in range(count)]


def interactions(count: int, *, seed: int = 21) -> list[Interaction]:
    """What capture publishes on leads.interactions for the demo traffic (same derivation as capture)."""
    received = datetime.now(UTC)
    rng = random.Random(seed)
    out = []
    for event in public_events(count, seed=seed):
        parsed = InteractionIn.model_validate(event)
        out.append(
            capture_domain.to_interaction(
                parsed, received_at=received, make_event_id=lambda: uuid.UUID(int=rng.getrandbits(128)).hex
            )
        )
    return out


def hand_raiser(run_id: str, index: int, firm: Firmographics, now: datetime) -> dict[str, Any]:
    """A public demo request from a VP of marketing at a good-fit company: score hands it off."""
    return {
        "event_id": f"hr-{run_id}-{index}",
        "type": "demo_request",
        "occurred_at": now.isoformat(),
        "contact": {
            "email": f"hr-{index}-{run_id}@{firm.domain}".lower(),
            "first_name": "Bench",
            "last_name": f"Raiser{index}",
            "company": firm.company_name,
            "job_title": "VP Marketing",
            "country": firm.country,
        },
        "source": {"channel": "web", "utm_source": "google", "utm_medium": "cpc", "utm_campaign": "bench"},
        "consent": {"marketing_email": True, "text_version": "2026-01"},
    }


def hand_raiser_lead_id(event: dict[str, Any]) -> str:
    """The lead id capture derives for a hand-raiser (from its e-mail)."""
    lead_id, _ = capture_domain.lead_identity(event["contact"]["email"], None)
    return lead_id
