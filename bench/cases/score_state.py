"""Score's table: memory per lead, and recovery of a worker with that many leads in its changelog.

For each size in `--leads` (default `--events`): start the score worker, note its RSS, write one
form fill for each of N leads, and note the RSS once all are scored: (after - before) / N is the
memory a lead costs in the running worker (the faust table holds each state's JSON; Python adds its
overhead). Then `kill -9` the worker, write a demo request for a few old leads, start it again and
time `/readyz` and the moment the first and the last of those leads is scored the way score's pure
domain says (iql -> mql from its stored state, not raw -> mql from a lost one).
"""

from __future__ import annotations

import asyncio
import re
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import aiohttp

from bench.case import BenchContext, CaseResult, OwnInput, register
from bench.kafka import TopicReader, produce
from bench.records import (
    Record,
    ScoreOracle,
    enriched_interaction,
    enriched_stream,
    one_event_per_lead,
    record,
)
from bench.service_run import SETTLE_SECONDS, measured, prepare_topics, series
from bench.stack import EVENTS_IN, Probe, Services, Snapshot, watch
from bench.windows import stable_for
from schemas.enriched import EnrichedInteraction
from schemas.interaction import InteractionType
from schemas.stage import StageChange
from schemas.topics import TopicName

PROBES = 20
Move = tuple[str, str, str]  # (kind, from stage, to stage)
TOTAL_TOLERANCE = 1.0  # engagement decays to evaluation time, so totals differ by a hair between runs


def size_label(count: int) -> str:
    """100000 -> "100k", 1000000 -> "1m", 2500 -> "2.5k"."""
    for unit, scale in (("m", 1_000_000), ("k", 1_000)):
        if count >= scale:
            return f"{count / scale:g}{unit}"
    return str(count)


def probe_indexes(leads: int, probes: int = PROBES) -> list[int]:
    """Leads spread over the whole table (so over every partition), first and last included."""
    if leads <= probes:
        return list(range(leads))
    return sorted({round(i * (leads - 1) / (probes - 1)) for i in range(probes)})


def move(change: StageChange) -> Move:
    return (change.kind.value, change.from_stage, change.to_stage)


def as_expected(seen: dict[Move, float], expected: dict[Move, float]) -> bool:
    """The same moves, each with about the same total score (a lost state shows in both)."""
    return seen.keys() == expected.keys() and all(
        abs(seen[m] - expected[m]) <= TOTAL_TOLERANCE for m in expected
    )


def changelog_catch_ups(log: Path) -> int:
    """Times a worker's tables read past the changelog end the broker reported (CaughtUpTable's log)."""
    return log.read_text(errors="replace").count("past the end the broker reported")


_RESTORED = re.compile(r"restored (\d+) records of \S+ in ([\d.]+) s")


def changelog_reads(log: Path) -> tuple[int, float]:
    """Records a worker's tables restored with their own changelog read before faust's recovery,
    and the seconds those reads took (CaughtUpTable's "restored N records of T in S s" lines)."""
    found = _RESTORED.findall(log.read_text(errors="replace"))
    return sum(int(count) for count, _ in found), sum(float(seconds) for _, seconds in found)


def restored_figure(log: Path) -> str:
    records, seconds = changelog_reads(log)
    return f"{records:,}; {seconds:.1f}; {records / max(seconds, 1e-9):,.0f}" if records else "none"


def state_bytes_after(events: int) -> int:
    """Size of one lead's stored state after `events` events (score keeps up to 512 recent event ids)."""
    oracle = ScoreOracle.default()
    for event in enriched_stream(events, leads=1, prefix="size"):
        oracle.apply(event)
    state = next(iter(oracle.states.values()))
    return len(state.dumps()) if state else 0


@dataclass(frozen=True)
class EachTableSize(OwnInput):
    """A case run once per `--leads` size, as `<name>.<size>`; one size failing does not stop the next."""

    name: str = ""
    description: str = ""

    async def run(self, ctx: BenchContext) -> list[CaseResult]:
        results = []
        for leads in ctx.state_leads:
            case = f"{self.name}.{size_label(leads)}"
            try:
                results.append(await self.one(ctx, case, leads))
            except Exception as exc:
                traceback.print_exc()
                results.append(
                    CaseResult(case, self.description, 0, 0.0, 0.0, error=f"{type(exc).__name__}: {exc}")
                )
        return results

    async def one(self, ctx: BenchContext, case: str, leads: int) -> CaseResult:
        raise NotImplementedError


@dataclass(frozen=True)
class ScoreState(EachTableSize):
    name: str = "score.state"
    description: str = "score table: RSS per lead, then kill -9 and restart with N leads in the changelog"

    async def one(self, ctx: BenchContext, case: str, leads: int) -> CaseResult:
        suffix = ctx.suffix(case)
        settings = await prepare_topics(ctx, suffix)
        source = settings.topic(TopicName.ENRICHED)
        services = Services(ctx, case, suffix)
        score = services.add("score")
        probes = [Probe("in", "score", EVENTS_IN, {"topic": source})]
        chosen = set(probe_indexes(leads))
        kept: dict[int, EnrichedInteraction] = {}

        def records() -> Iterator[Record]:
            for index, event in enumerate(one_event_per_lead(leads, prefix=f"m{ctx.run_id[-7:-2]}")):
                if index in chosen:
                    kept[index] = event
                yield record(event)

        def scored(snapshots: list[Snapshot]) -> bool:
            done = snapshots[-1].counters["in"] >= leads
            return done and stable_for(series(snapshots, ["in"]), SETTLE_SECONDS)

        async with aiohttp.ClientSession() as session:
            try:
                score.start()
                first_ready = await score.ready(session, within=ctx.case_timeout)
                await asyncio.sleep(3)
                rss_empty = score.rss()
                await produce(ctx.bootstrap_servers, source, records())
                snapshots = await watch(session, ctx, services, probes, scored, within=ctx.case_timeout)
                await asyncio.sleep(5)  # offsets committed, changelog flushed
                rss_full = score.rss()
                expected, demos = self.probe_events(list(kept.values()))
                score.kill9()
                await produce(ctx.bootstrap_servers, source, [record(e) for e in demos])
                restarted = time.time()
                score.start()
                ready = await score.ready(session, within=ctx.case_timeout)
                correct, first_scored, last_scored = await self.await_probes(
                    ctx, settings.topic(TopicName.STAGE_CHANGES), expected, restarted
                )
            finally:
                services.stop()
        start = next(s for s in snapshots if s.counters["in"] > 0)
        end = next(s for s in snapshots if s.counters["in"] >= leads)
        catch_ups = changelog_catch_ups(score.log_path)
        oracle = ScoreOracle.default()
        for event in kept.values():
            oracle.apply(event)
        sizes = [len(s.dumps()) for s in oracle.states.values() if s is not None]
        figures = {
            "RSS empty / full (MB)": f"{rss_empty / 2**20:,.0f} / {rss_full / 2**20:,.0f}",
            "RSS per lead (bytes)": f"{(rss_full - rss_empty) / leads:,.0f}",
            "stored state per lead (JSON bytes)": f"{sum(sizes) / max(1, len(sizes)):,.0f}",
            "state after 50 / 600 events of one lead (bytes)": (
                f"{state_bytes_after(50):,} / {state_bytes_after(600):,}"
            ),
            "first start -> /readyz 200 (s)": f"{first_ready:.1f}",
            "restart after kill -9 -> /readyz 200 (s)": f"{ready:.1f}",
            "restart -> first / last old lead scored (s)": f"{first_scored:.1f} / {last_scored:.1f}",
            "old leads scored from their stored state": f"{correct} of {len(expected)}",
            "changelog catch-ups after recovery": str(catch_ups),
            "changelog read before recovery (records; s; records/s)": restored_figure(score.log_path),
        }
        return measured(
            case,
            f"score with {leads:,} leads: populate, RSS, kill -9, restart",
            events=int(end.counters["in"] - start.counters["in"]),
            start=start,
            end=end,
            services=services,
            suffix=suffix,
            figures=figures,
            rss_empty=rss_empty,
            rss_full=rss_full,
        )

    @staticmethod
    def probe_events(
        old: list[EnrichedInteraction],
    ) -> tuple[dict[str, dict[Move, float]], list[EnrichedInteraction]]:
        """A demo request for each probed lead the pure domain says it moves, and those moves."""
        oracle = ScoreOracle.default()
        now = datetime.now(UTC)
        expected: dict[str, dict[Move, float]] = {}
        demos = []
        for event in old:
            oracle.apply(event)
            demo = enriched_interaction(
                event.lead_id,
                InteractionType.DEMO_REQUEST,
                now,
                event.profile,
                event_id=f"{event.lead_id}-demo",
            )
            moves = {move(c): c.scores.total for c in oracle.apply(demo)}
            if moves:  # a poor fit's demo request moves nothing, so it would show nothing
                expected[event.lead_id] = moves
                demos.append(demo)
        return expected, demos

    @staticmethod
    async def await_probes(
        ctx: BenchContext, topic: str, expected: dict[str, dict[Move, float]], restarted: float
    ) -> tuple[int, float, float]:
        """(leads scored as expected, seconds to the first and to the last of them) after the restart."""
        seen: dict[str, dict[Move, float]] = {lead: {} for lead in expected}
        at: dict[str, float] = {}
        deadline = time.monotonic() + ctx.case_timeout
        async with TopicReader(ctx.bootstrap_servers, topic, ctx.partitions) as reader:
            while time.monotonic() < deadline and len(at) < len(expected):
                for item in await reader.poll(0.2):
                    lead = item.key.decode() if item.key else ""
                    if lead not in expected:
                        continue
                    change = StageChange.model_validate_json(item.value)
                    if change.trigger.event_id != f"{lead}-demo":
                        continue
                    seen[lead][move(change)] = change.scores.total
                    if len(seen[lead]) >= len(expected[lead]) and lead not in at:  # right or wrong
                        at[lead] = item.timestamp / 1000 - restarted
        correct = sum(1 for lead in expected if as_expected(seen[lead], expected[lead]))
        if not at:
            raise RuntimeError(f"no old lead was scored after the restart: {seen}")
        return correct, min(at.values()), max(at.values())


register(ScoreState())
