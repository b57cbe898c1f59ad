"""Speed-to-lead: from a hand-raiser's 202 at capture to its hand-off on leads.handoffs, under load.

The whole stack runs (capture, enrich, score, route, nurture with its mailer off). A load generator
posts the demo traffic at `--rate` events/s in the background while the harness posts `--hand-raisers`
demo requests from good-fit leads, evenly spread over the background's planned duration. Each
latency is the hand-off record's broker timestamp (set when route produced it) minus the moment the
harness read capture's 202. When the pipeline cannot keep up with the background, hand-raisers wait
behind the backlog; the achieved background rate and the lag are reported as they were.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp

from bench.case import BenchContext, CaseResult, OwnInput, register
from bench.cases.pipeline import BATCHED, LoadGenerator, batch_means, batch_probes, cores_busy, per_event_cpu
from bench.kafka import TopicReader
from bench.latency import LatencySummary
from bench.records import good_fit_companies, hand_raiser, hand_raiser_lead_id
from bench.service_run import measured, prepare_topics, profile_during
from bench.stack import API_KEY, EVENTS_IN, EVENTS_OUT, Probe, Services, Snapshot, snapshot
from schemas.handoff import Handoff
from schemas.topics import TopicName
from services.runtime.settings import ServiceSettings


@dataclass
class HandRaisers:
    """Hand-raisers posted and hand-offs seen, by lead id."""

    accepted_at: dict[str, float] = field(default_factory=dict)
    refused: int = 0
    handed_off_at: dict[str, float] = field(default_factory=dict)  # broker timestamp of the hand-off
    seen_at: dict[str, float] = field(default_factory=dict)  # when the harness read it

    def latencies(
        self, accepted_from: float = float("-inf"), accepted_before: float = float("inf")
    ) -> list[float]:
        """Of the hand-raisers handed off, those whose 202 came in [accepted_from, accepted_before)."""
        return [
            latency
            for lead, latency in self.latencies_by_lead().items()
            if accepted_from <= self.accepted_at[lead] < accepted_before
        ]

    def latencies_by_lead(self) -> dict[str, float]:
        """Each hand-raiser handed off, with its latency."""
        return {
            lead: self.handed_off_at[lead] - at
            for lead, at in self.accepted_at.items()
            if lead in self.handed_off_at
        }

    def missing(self) -> int:
        return sum(1 for lead in self.accepted_at if lead not in self.handed_off_at)


# The first hand-raisers after the background starts meet a cold stack: at 500 events/s the first four
# (the first 0.8 s) waited 0.31-0.74 s, every later one at most 0.16 s (docs/performance.md, eighth
# pass). Those of the first seconds are reported apart, so a start-up cost and the steady state each
# show as what they are; the overall figure keeps both.
WARM_UP_SECONDS = 2.0

HopTimes = dict[str, dict[str, float]]  # topic -> lead id -> broker timestamp of its first record
HOP_TOPICS = (TopicName.INTERACTIONS, TopicName.ENRICHED, TopicName.STAGE_CHANGES)


def hop_marks(found: HandRaisers, arrived: HopTimes) -> list[tuple[str, dict[str, float]]]:
    """Each hand-raiser's moments in path order: capture's 202, its first record on every hop's
    topic, its hand-off; a pair of neighbours is one stage's share (capture, enrich, score, route)."""
    return [
        ("capture", found.accepted_at),
        *((t.value, arrived.get(t.value, {})) for t in HOP_TOPICS),
        ("handoffs", found.handed_off_at),
    ]


def hop_latencies(found: HandRaisers, arrived: HopTimes) -> dict[str, LatencySummary]:
    """Each stage's share of speed-to-lead: capture's 202 -> leads.interactions (capture's publish),
    -> leads.enriched (enrich), -> leads.stage-changes (score), -> leads.handoffs (route)."""
    hops: dict[str, LatencySummary] = {}
    for (_, before), (name, after) in itertools.pairwise(hop_marks(found, arrived)):
        seconds = [
            after[lead] - before[lead] for lead in before.keys() & after.keys() & found.accepted_at.keys()
        ]
        if seconds:
            hops[f"-> {name}"] = LatencySummary.of(seconds)
    return hops


def by_thirds(found: HandRaisers, since: float, duration: float) -> str:
    """p50 and max of the hand-raisers accepted in each third of the load: a tail that grows third
    by third points at the broker, whose fetches cost more with every batch it stores
    (docs/performance.md, eleventh pass), not at the services' steady work."""
    parts = []
    for third in range(3):
        latencies = found.latencies(since + duration * third / 3, since + duration * (third + 1) / 3)
        if latencies:
            summary = LatencySummary.of(latencies)
            parts.append(f"{summary.p50:.3f} / {summary.max:.3f} (n={summary.count})")
        else:
            parts.append("none")
    return "; ".join(parts)


async def handed_off(found: HandRaisers, services: Services, *, within: float) -> None:
    """Wait until every accepted hand-raiser was handed off, or `within` seconds; a worker that
    exited ends the run with its log."""
    deadline = time.monotonic() + within
    while found.missing() and time.monotonic() < deadline:
        if services.crashed():
            raise RuntimeError(f"{services.crashed()} exited\n{services.logs()}")
        await asyncio.sleep(0.5)


async def snapshots_at_thirds(
    session: aiohttp.ClientSession,
    ctx: BenchContext,
    services: Services,
    probes: list[Probe],
    *,
    started: float,
    duration: float,
) -> list[Snapshot]:
    """Snapshots a third and two thirds into the load: the cores and batches of each third, beside
    `by_thirds`' latencies, say whether what grows through a run is the services' work or the
    broker's."""
    taken = []
    for third in (1, 2):
        await asyncio.sleep(max(0.0, started + duration * third / 3 - time.time()))
        taken.append(await snapshot(session, ctx, services, probes))
    return taken


def slowest(found: HandRaisers, arrived: HopTimes, since: float, count: int = 5) -> str:
    """The `count` slowest hand-raisers: when each was accepted and where its time went, to tell a
    tail of one moment (a stall of the host or the broker: the slow ones accepted together, the wait
    in whichever hop each was in) from a tail of queueing (spread over the run, in one hop)."""
    marks = [moments for _, moments in hop_marks(found, arrived)]
    ranked = sorted(found.latencies_by_lead().items(), key=lambda item: item[1], reverse=True)[:count]
    rows = []
    for lead, total in ranked:
        hops = [
            f"{1000 * (after[lead] - before[lead]):.0f}" if lead in before and lead in after else "?"
            for before, after in itertools.pairwise(marks)
        ]
        rows.append(f"+{found.accepted_at[lead] - since:.1f}: {1000 * total:.0f} = {' + '.join(hops)}")
    return "; ".join(rows) or "none"


def nth_hand_raiser(ctx: BenchContext, index: int) -> dict[str, Any]:
    """The `index`th demo request the case posts, stamped now."""
    firms = good_fit_companies()
    return hand_raiser(ctx.run_id, index, firms[index % len(firms)], datetime.now(UTC))


async def post_hand_raisers(
    session: aiohttp.ClientSession,
    *,
    url: str,
    ctx: BenchContext,
    start: float,
    duration: float,
    found: HandRaisers,
) -> None:
    count = ctx.hand_raisers
    for index in range(count):
        due = start + (index + 0.5) * duration / count
        await asyncio.sleep(max(0.0, due - time.time()))
        event = nth_hand_raiser(ctx, index)
        async with session.post(f"{url}/v1/events", json=event, headers={"X-API-Key": API_KEY}) as response:
            if response.status == 202:
                found.accepted_at[hand_raiser_lead_id(event)] = time.time()
            else:
                found.refused += 1


async def follow_handoffs(reader: TopicReader, found: HandRaisers, stop: asyncio.Event) -> None:
    while not stop.is_set():
        for item in await reader.poll(0.1):  # every hand-off: one may be read before its 202 is
            handoff = Handoff.model_validate_json(item.value)
            found.handed_off_at.setdefault(handoff.lead_id, item.timestamp / 1000)
            found.seen_at.setdefault(handoff.lead_id, time.time())


async def hop_arrivals(
    ctx: BenchContext, settings: ServiceSettings, leads: set[str], quiet_seconds: float = 1.0
) -> HopTimes:
    """The broker timestamp of each of `leads`' first record on every topic between capture and
    route, matched by key (the lead id) without decoding the background's records.

    Read once the run is over: a record's broker timestamp is the same whenever it is read, while a
    reader following those topics during the run made the broker list every stored batch of each
    partition it fetched (Tansu's cost grows with them, docs/performance.md, eleventh pass) and took
    CPU from the stack it measured. A topic is read until every lead was found or nothing came for
    `quiet_seconds`."""
    arrived: HopTimes = {}
    for topic in HOP_TOPICS:
        found = arrived.setdefault(topic.value, {})
        async with TopicReader(ctx.bootstrap_servers, settings.topic(topic), ctx.partitions) as reader:
            last_record = time.monotonic()
            while len(found) < len(leads) and time.monotonic() - last_record < quiet_seconds:
                items = await reader.poll(0.2)
                if items:
                    last_record = time.monotonic()
                for item in items:
                    lead = item.key.decode() if item.key else None
                    if lead in leads:
                        found.setdefault(lead, item.timestamp / 1000)
    return arrived


@dataclass(frozen=True)
class SpeedToLead(OwnInput):
    name: str = "latency.speed_to_lead"
    description: str = (
        "hand-raiser 202 at capture -> hand-off, demo traffic in the background (all 5 services)"
    )

    async def run(self, ctx: BenchContext) -> CaseResult:
        suffix = ctx.suffix(self.name)
        settings = await prepare_topics(ctx, suffix)
        services = Services(ctx, self.name, suffix)
        for name in ("route", "nurture", "score", "enrich", "capture"):
            services.add(name)
        interactions = {"topic": settings.topic(TopicName.INTERACTIONS)}
        probes = [
            Probe("capture.out", "capture", EVENTS_OUT, {"service": "capture", **interactions}),
            Probe("enrich.in", "enrich", EVENTS_IN, interactions),
            Probe("route.out", "route", EVENTS_OUT, {"topic": settings.topic(TopicName.HANDOFFS)}),
            *batch_probes(BATCHED),
        ]
        rate = ctx.background_rate
        load = LoadGenerator(ctx, self.name, services["capture"].url, events=ctx.events, rate=rate)
        found = HandRaisers()
        stop = asyncio.Event()
        thirds: asyncio.Task[list[Snapshot]] | None = None
        async with aiohttp.ClientSession() as session:
            try:
                services.start()
                await services.ready(session)
                async with TopicReader(  # a sales tool following hand-offs, at the services' fetch wait
                    ctx.bootstrap_servers,
                    settings.topic(TopicName.HANDOFFS),
                    ctx.partitions,
                    fetch_max_wait_ms=settings.fetch_max_wait_ms,
                ) as reader:
                    follower = asyncio.create_task(follow_handoffs(reader, found, stop))
                    load.start()
                    started = await load.started_at()
                    first = await snapshot(session, ctx, services, probes)
                    profiles = profile_during(ctx, services, self.name)  # with `--profile` only
                    planned = ctx.events / rate if rate > 0 else 10.0
                    thirds = asyncio.create_task(
                        snapshots_at_thirds(session, ctx, services, probes, started=started, duration=planned)
                    )
                    await post_hand_raisers(
                        session,
                        url=services["capture"].url,
                        ctx=ctx,
                        start=started,
                        duration=planned,
                        found=found,
                    )
                    await load.wait()
                    background_end = await snapshot(session, ctx, services, probes)
                    marks = [first, *await thirds, background_end]
                    outcome = load.result()
                    await handed_off(found, services, within=ctx.case_timeout)
                    last = await snapshot(session, ctx, services, probes)
                    stop.set()
                    with contextlib.suppress(asyncio.CancelledError):
                        await follower
            finally:
                stop.set()
                if thirds is not None:
                    thirds.cancel()
                load.stop()
                services.stop()
        arrived = await hop_arrivals(ctx, settings, set(found.accepted_at))
        latencies = found.latencies()
        if not latencies:
            raise RuntimeError(f"no hand-raiser was handed off ({len(found.accepted_at)} accepted)")
        seen = [found.seen_at[lead] - at for lead, at in found.accepted_at.items() if lead in found.seen_at]
        accepted = int(outcome["accepted"])
        background_seconds = outcome["finished_at"] - outcome["started_at"]
        through = background_end.counters["enrich.in"] - first.counters["enrich.in"]
        warm = started + WARM_UP_SECONDS
        figures = {
            "speed-to-lead p50 / p95 / p99 / max (s)": LatencySummary.of(latencies).text(),
            f"same, accepted after the first {WARM_UP_SECONDS:g} s of load (s)": _text(found.latencies(warm)),
            f"same, accepted in the first {WARM_UP_SECONDS:g} s (s)": _text(
                found.latencies(accepted_before=warm)
            ),
            "same, as read by a consumer (s)": _text(seen),
            "hand-raisers handed off": (
                f"{len(latencies)} of {len(found.accepted_at)} accepted ({found.refused} refused)"
            ),
            "background asked / accepted (events/s)": f"{rate:,.0f} / {outcome['achieved_rate']:,.0f}",
            "background refused / HTTP statuses": f"{outcome['refused']:,} / {outcome['statuses']}",
            "enrich consumed during the background (events/s)": (
                f"{through / max(1e-9, background_seconds):,.0f}"
            ),
            "backlog at capture->enrich when the background ended": (
                f"{background_end.counters['capture.out'] - background_end.counters['enrich.in']:,.0f} events"
            ),
            "CPU µs per background event, until the last hand-off": per_event_cpu(first, last, accepted),
            "cores busy during the background": cores_busy(first, background_end, os.cpu_count() or 1),
            "batches during the background: records / handle ms / commit ms (means) / busy": batch_means(
                first, background_end, BATCHED
            ),
            **{
                f"hop {hop} p50 / p95 / p99 / max (s)": hop_summary.text()
                for hop, hop_summary in hop_latencies(found, arrived).items()
            },
            "p50 / max by third of the load (s)": by_thirds(found, started, planned),
            "cores busy by third of the load": "; ".join(
                cores_busy(before, after, os.cpu_count() or 1) for before, after in itertools.pairwise(marks)
            ),
            "enrich's batches by third of the load: records / handle ms / commit ms / busy": "; ".join(
                batch_means(before, after, ["enrich"]).removeprefix("enrich ")
                for before, after in itertools.pairwise(marks)
            ),
            "slowest: s into the load: ms = capture + enrich + score + route": slowest(
                found, arrived, started
            ),
        }
        return measured(  # CPU until the last hand-off: the backlog is worked off after the background
            self.name,
            self.description,
            events=accepted,
            start=first,
            end=last,
            seconds=background_seconds,
            services=services,
            suffix=suffix,
            figures=figures,
            profiles=profiles,
            latencies=sorted(latencies),
            rate=rate,
            loadgen=outcome,
            counters_at_end=last.counters,
        )


def _text(latencies: list[float]) -> str:
    return LatencySummary.of(latencies).text() if latencies else "none"


register(SpeedToLead())
