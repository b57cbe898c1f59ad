"""Score's own per-record work in one process, with no broker: what the service costs before any
framework does. The same steps as score's agent, timed one by one over `enriched_stream(events)`:

- decode: the enriched record's JSON (trusted, as score reads it);
- load: the lead's stored state parsed back (`LeadState.loads`), as a new batch reads its table;
- domain: `apply_interaction`;
- state JSON: the new state serialised for the changelog (`LeadState.dumps`);
- stage changes: each change serialised for `leads.stage-changes`.

Why a case of its own: the service cases measure framework and domain together, so a faster domain
hides in their run-to-run spread; this one has none of it (no sockets, no event loop, one core).
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from bench.case import BenchContext, CaseResult, OwnInput, register
from bench.records import enriched_stream
from schemas.base import TRUSTED_CONTEXT
from schemas.enriched import EnrichedInteraction
from schemas.stage import StageChange
from services.runtime.codec import encode
from services.score import domain
from services.score.rules import DEFAULT_RULES_FILE, load_rules
from services.score.state import LeadState

T = TypeVar("T")
STEPS = ("decode", "load", "domain", "state JSON", "stage changes")


class StepClock:
    """Seconds spent in each named step, summed over a run."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)

    def time(self, step: str, call: Callable[..., T], *args: Any) -> T:
        started = time.perf_counter()
        result = call(*args)
        self.seconds[step] += time.perf_counter() - started
        return result

    @property
    def total(self) -> float:
        return sum(self.seconds.values())


def _decode(raw: bytes) -> EnrichedInteraction:
    return EnrichedInteraction.model_validate_json(raw, context=TRUSTED_CONTEXT)


def _encode_all(changes: list[StageChange]) -> list[bytes]:
    return [encode(change) for change in changes]


def score_records(raws: list[bytes], stored: dict[str, bytes] | None = None) -> StepClock:
    """Run score's per-record steps over `raws` (enriched interactions as JSON); `stored` is the
    table they read and write (lead id -> state JSON)."""
    rules = load_rules(DEFAULT_RULES_FILE)
    stored = {} if stored is None else stored
    clock = StepClock()
    for raw in raws:
        event = clock.time("decode", _decode, raw)
        before = stored.get(event.lead_id)
        state = None if before is None else clock.time("load", LeadState.loads, before)
        update = clock.time("domain", domain.apply_interaction, state, event, rules)
        stored[event.lead_id] = clock.time("state JSON", update.state.dumps)
        clock.time("stage changes", _encode_all, update.changes)
    return clock


@dataclass(frozen=True)
class DomainScore(OwnInput):
    name: str = "domain.score"
    description: str = "score's per-record work in one process, no broker (decode, load, domain, JSON)"

    async def run(self, ctx: BenchContext) -> CaseResult:
        raws = [event.model_dump_json().encode() for event in enriched_stream(ctx.events)]
        score_records(raws[: min(len(raws), 2000)])  # warm the caches and pydantic's validators
        cpu_started = time.process_time()
        clock = score_records(raws)
        cpu = time.process_time() - cpu_started
        per_event = {step: 1e6 * clock.seconds[step] / len(raws) for step in STEPS}
        breakdown = ", ".join(f"{step} {us:.1f}" for step, us in per_event.items())
        return CaseResult(
            case=self.name,
            description=self.description,
            events=len(raws),
            seconds=clock.total,
            cpu_seconds=cpu,
            extra={"us_per_event": per_event},
            figures={"µs per event by step": breakdown},
        )


register(DomainScore())
