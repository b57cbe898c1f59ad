"""Score's and enrich's own per-record work in one process, with no broker: what each service costs
before any framework does.

`domain.score`: the same steps as score's agent, timed one by one over `enriched_stream(events)`:

- decode: the enriched record's JSON, as score reads it (trusted, through `schemas/views/score.py`);
- load: the lead's stored state parsed back but its profile (`LeadState.loads_without_profile`), as
  a new batch reads its table for an interaction;
- domain: `apply_interaction`;
- state JSON: the new state serialised for the changelog (`LeadState.dumps`);
- stage changes: each change serialised for `leads.stage-changes`.

Why a case of its own: the service cases measure framework and domain together, so a faster domain
hides in their run-to-run spread; this one has none of it (no sockets, no event loop, one core).

`domain.enrich`: enrich's agent path over the demo traffic's interactions (`EnrichRun`).

`domain.score-rebuild`: score's decay index rebuilt from a table of 1M held leads (`DueIndex.rebuild`,
as after a recovery or a rebalance): the seconds in all, and the longest the event loop waited
meanwhile, which is how long the worker answers nothing (no hand-offs, no health probes).
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from bench.case import BenchContext, CaseResult, OwnInput, register
from bench.records import enriched_stream, interactions
from schemas.base import TRUSTED_CONTEXT
from schemas.enriched import AliasRequest, ProfileMerge
from schemas.interaction import Interaction
from schemas.views.score import EnrichedView
from services.enrich import domain as enrich_domain
from services.enrich.config import EnrichConfig
from services.enrich.config import load_config as load_enrich_config
from services.enrich.domain import LeadState as EnrichState
from services.enrich.firmographics import DEFAULT_COMPANIES, LocalProvider, load_companies
from services.runtime.codec import encode
from services.score import domain
from services.score.due import DueIndex
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


def _decode(raw: bytes) -> EnrichedView:
    return EnrichedView.model_validate_json(raw, context=TRUSTED_CONTEXT)


def _encode_all(records: list[Any]) -> list[bytes]:
    return [encode(record) for record in records]


def score_records(raws: list[bytes], stored: dict[str, bytes] | None = None) -> StepClock:
    """Run score's per-record steps over `raws` (enriched interactions as JSON); `stored` is the
    table they read and write (lead id -> state JSON)."""
    rules = load_rules(DEFAULT_RULES_FILE)
    stored = {} if stored is None else stored
    clock = StepClock()
    for raw in raws:
        event = clock.time("decode", _decode, raw)
        before = stored.get(event.lead_id)
        state = None if before is None else clock.time("load", LeadState.loads_without_profile, before)
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
        per_event = _per_event(clock, STEPS, len(raws))
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


ENRICH_STEPS = ("decode", "load", "domain", "state JSON", "records JSON")


@dataclass
class EnrichRun:
    """Enrich's per-record steps in one process: the agent's path for each interaction (its state
    read, the domain, the lookup in the shipped company file), with the inbox records it sends
    (interactions for another lead, alias requests, merges) handled right after, as the worker's
    inbox would."""

    stored: dict[str, bytes] = field(default_factory=dict)  # lead id -> state JSON, the table
    clock: StepClock = field(default_factory=StepClock)
    config: EnrichConfig = field(default_factory=load_enrich_config)
    provider: LocalProvider = field(default_factory=lambda: LocalProvider(load_companies(DEFAULT_COMPANIES)))
    inbox: deque[Any] = field(default_factory=deque)
    records: int = 0

    def load(self, lead_id: str) -> EnrichState | None:
        raw = self.stored.get(lead_id)
        return None if raw is None else self.clock.time("load", EnrichState.model_validate_json, raw)

    def store(self, outcome: enrich_domain.Outcome) -> None:
        self.stored[outcome.state.lead_id] = self.clock.time("state JSON", outcome.state.dumps)
        self.clock.time("records JSON", _encode_all, [*outcome.records, *outcome.aliases])
        self.records += len(outcome.records)
        self.inbox.extend(outcome.aliases)

    def enrich(self, lead_id: str, interaction: Interaction, state: EnrichState | None) -> None:
        self.store(self.clock.time("domain", self._enrich, lead_id, interaction, state))

    def _enrich(
        self, lead_id: str, interaction: Interaction, state: EnrichState | None
    ) -> enrich_domain.Outcome:
        applied = enrich_domain.applied_profile(state, lead_id, interaction, self.config)
        wanted = enrich_domain.lookup_needed(state, lead_id, interaction, self.config, applied)
        lookup = self.provider.find(wanted) if wanted else None
        return enrich_domain.enrich(state, lead_id, interaction, lookup, self.config, applied=applied)

    def interaction(self, raw: bytes) -> None:
        interaction = self.clock.time("decode", _decode_interaction, raw)
        state = self.load(interaction.lead_id)
        target = self.clock.time("domain", enrich_domain.destination, state, interaction)
        if target is None:
            self.enrich(interaction.lead_id, interaction, state)
        else:
            self.inbox.append((target, interaction))
        while self.inbox:
            self.inbox_record(self.inbox.popleft())

    def inbox_record(self, record: Any) -> None:
        if isinstance(record, tuple):
            target, interaction = record
            self.enrich(target, interaction, self.load(target))
        elif isinstance(record, AliasRequest):
            answer = self.clock.time("domain", enrich_domain.alias, self.load(record.lead_id), record)
            self.stored[record.lead_id] = self.clock.time("state JSON", answer.state.dumps)
            if answer.merge is not None:
                self.clock.time("records JSON", encode, answer.merge)
                self.inbox.append(answer.merge)
        elif isinstance(record, ProfileMerge):
            state = self.load(record.lead_id)
            self.store(self.clock.time("domain", enrich_domain.merge, state, record, self.config))


def _decode_interaction(raw: bytes) -> Interaction:
    return Interaction.model_validate_json(raw, context=TRUSTED_CONTEXT)


def _per_event(clock: StepClock, steps: tuple[str, ...], events: int) -> dict[str, float]:
    return {step: 1e6 * clock.seconds[step] / events for step in steps}


@dataclass(frozen=True)
class DomainEnrich(OwnInput):
    name: str = "domain.enrich"
    description: str = "enrich's per-record work in one process, no broker (decode, load, domain, JSON)"

    async def run(self, ctx: BenchContext) -> CaseResult:
        raws = [encode(interaction) for interaction in interactions(ctx.events)]
        warm = EnrichRun()
        for raw in raws[: min(len(raws), 2000)]:  # pydantic's validators, the normalisation caches
            warm.interaction(raw)
        run = EnrichRun()
        cpu_started = time.process_time()
        for raw in raws:
            run.interaction(raw)
        cpu = time.process_time() - cpu_started
        per_event = _per_event(run.clock, ENRICH_STEPS, len(raws))
        return CaseResult(
            case=self.name,
            description=self.description,
            events=len(raws),
            seconds=run.clock.total,
            cpu_seconds=cpu,
            extra={"us_per_event": per_event, "records_per_event": run.records / len(raws)},
            figures={
                "µs per event by step": ", ".join(f"{step} {us:.1f}" for step, us in per_event.items()),
                "leads.enriched per input": f"{run.records / len(raws):.2f}",
            },
        )


register(DomainEnrich())


REBUILD_LEADS = 1_000_000


@dataclass(frozen=True)
class DomainScoreRebuild(OwnInput):
    name: str = "domain.score-rebuild"
    description: str = "score's decay index rebuilt over 1M held leads: seconds, longest hold of the loop"

    async def run(self, ctx: BenchContext) -> CaseResult:
        stored: dict[str, bytes] = {}
        score_records([event.model_dump_json().encode() for event in enriched_stream(ctx.events)], stored)
        states = list(stored.values())  # the bench's states, about 3 KB each, repeated under new keys
        table = {f"rebuild-{n}".encode(): states[n % len(states)] for n in range(REBUILD_LEADS)}
        index = DueIndex()
        waits: list[float] = []
        done = asyncio.Event()

        async def watch() -> None:  # another task of the worker: how long it waits for its turns
            last = time.perf_counter()
            while not done.is_set():
                await asyncio.sleep(0)
                now = time.perf_counter()
                waits.append(now - last)
                last = now

        watcher = asyncio.create_task(watch())
        await asyncio.sleep(0)
        cpu_started, started = time.process_time(), time.perf_counter()
        await index.rebuild(table, load_rules(DEFAULT_RULES_FILE).digest)
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_started
        done.set()
        await watcher
        return CaseResult(
            case=self.name,
            description=self.description,
            events=len(table),
            seconds=seconds,
            cpu_seconds=cpu,
            extra={"longest_wait_s": max(waits), "indexed": len(index)},
            figures={
                "leads; distinct states (avg bytes)": f"{len(table):,}; {len(states):,} "
                f"({sum(map(len, states)) / len(states):,.0f})",
                "longest wait of another task (ms)": f"{1000 * max(waits):.0f}",
            },
        )


register(DomainScoreRebuild())
