"""The reference workload: deterministic ~250-byte JSON events keyed by lead id, and the transform."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import orjson

KINDS = ("page_view", "form_submit", "email_open", "email_click", "demo_request", "pricing_view")
SOURCES = ("web", "ads", "email", "partner")
PAGES = ("/pricing", "/docs/getting-started", "/blog/lead-scoring", "/demo", "/customers", "/careers")


def events(count: int, *, seed: int = 9, leads: int = 10_000) -> Iterator[tuple[bytes, bytes]]:
    """`count` (key, value) pairs, identical for a given seed so runs compare like with like."""
    rng = random.Random(seed)
    start = datetime(2025, 1, 6, 9, 0, tzinfo=UTC)
    for i in range(count):
        lead = f"lead-{rng.randrange(leads):06d}"
        doc = {
            "schema_version": 1,
            "event_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "occurred_at": (start + timedelta(milliseconds=i * 37)).isoformat(),
            "lead_id": lead,
            "kind": rng.choice(KINDS),
            "source": rng.choice(SOURCES),
            "page": f"https://example.com{rng.choice(PAGES)}?utm_campaign=q{rng.randrange(1, 5)}",
            "session": rng.getrandbits(24),
        }
        yield lead.encode(), orjson.dumps(doc)


def transform(value: bytes) -> bytes:
    """The passthrough's work per event: parse, add two fields, serialise (what a light agent does).
    Any leadpipe record will do (every one has a lead id): `raw.enriched` runs it over score's input."""
    doc = orjson.loads(value)
    doc["seen"] = True
    doc["weight"] = len(doc["lead_id"])
    return orjson.dumps(doc)
