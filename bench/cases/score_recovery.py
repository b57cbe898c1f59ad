"""Score's start-up with N leads already in its changelog: recovery time and memory at 1M leads.

Why a case of its own: `score.state` fills the table through the worker, one scored form fill per
lead, which at a few hundred events a second makes 1M leads an hour of populating. Recovery does not
care how the changelog was written, so this case writes it directly: each lead's state exactly as
score's pure domain computes it for that form fill (`ScoreOracle`), keyed by lead id on the lead's
partition, as the worker's table writes it. Then it starts a worker on it and times `/readyz`, notes
its RSS against an empty worker's, and checks the recovered states are the ones written: a demo
request for a spread of leads must move each the way the domain says from its stored state (iql ->
mql), not from a lost one (raw -> mql).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass

import aiohttp

from bench.case import BenchContext, CaseResult, register
from bench.cases.score_state import (
    EachTableSize,
    ScoreState,
    changelog_catch_ups,
    probe_indexes,
    restored_figure,
)
from bench.kafka import produce
from bench.records import Record, ScoreOracle, one_event_per_lead, record
from bench.service_run import prepare_topics
from bench.stack import Services
from schemas.enriched import EnrichedInteraction
from schemas.topics import TopicName

SCORE_TABLE = "lead-scores"  # services/score/app.py


def changelog_topic(suffix: str) -> str:
    """The score table's changelog, as faust names it: `<app id>-<table>-changelog`."""
    return f"leadpipe-score{suffix}-{SCORE_TABLE}-changelog"


def stored_states(
    events: Iterator[EnrichedInteraction], probes: set[int], kept: list[EnrichedInteraction]
) -> Iterator[Record]:
    """(lead id, state JSON) for each event's lead, as score's table stores it after that event; the
    events at the `probes` indexes are appended to `kept`. The oracle forgets each lead once its
    state is out, so memory stays flat over a million leads."""
    oracle = ScoreOracle.default()
    for index, event in enumerate(events):
        oracle.states.clear()
        oracle.apply(event)
        state = oracle.states[event.lead_id]
        if state is None:
            continue
        if index in probes:
            kept.append(event)
        yield event.lead_id.encode(), state.dumps()


@dataclass(frozen=True)
class ScoreRecovery(EachTableSize):
    name: str = "score.recovery"
    description: str = "score start-up with N leads written to its changelog: /readyz, RSS, states"

    async def one(self, ctx: BenchContext, case: str, leads: int) -> CaseResult:
        suffix = ctx.suffix(case)
        settings = await prepare_topics(ctx, suffix)
        services = Services(ctx, case, suffix)
        score = services.add("score")
        prefix = f"r{ctx.run_id[-7:-2]}"
        kept: list[EnrichedInteraction] = []
        async with aiohttp.ClientSession() as session:
            try:
                score.start()  # creates the changelog topic, and gives an empty worker's RSS
                first_ready = await score.ready(session, within=ctx.case_timeout)
                await asyncio.sleep(3)
                rss_empty = score.rss()
                score.kill9()
                started = time.monotonic()
                written = await produce(
                    ctx.bootstrap_servers,
                    changelog_topic(suffix),
                    stored_states(one_event_per_lead(leads, prefix=prefix), set(probe_indexes(leads)), kept),
                )
                fill_seconds = time.monotonic() - started
                expected, demos = ScoreState.probe_events(kept)
                await produce(
                    ctx.bootstrap_servers, settings.topic(TopicName.ENRICHED), [record(e) for e in demos]
                )
                restarted = time.time()
                score.start()
                ready = await score.ready(session, within=ctx.case_timeout)
                rss_full = score.rss()
                cpu = score.ps().cpu_times()
                correct, first_scored, last_scored = await ScoreState.await_probes(
                    ctx, settings.topic(TopicName.STAGE_CHANGES), expected, restarted
                )
            finally:
                services.stop()
        catch_ups = changelog_catch_ups(score.log_path)
        figures = {
            "changelog written (records; s)": f"{written:,}; {fill_seconds:.0f}",
            "RSS empty / recovered (MB)": f"{rss_empty / 2**20:,.0f} / {rss_full / 2**20:,.0f}",
            "RSS per lead (bytes)": f"{(rss_full - rss_empty) / max(1, written):,.0f}",
            "first start, empty -> /readyz 200 (s)": f"{first_ready:.1f}",
            "start with the changelog -> /readyz 200 (s)": f"{ready:.1f}",
            "recovery rate (changelog records/s to /readyz)": f"{written / max(ready, 1e-9):,.0f}",
            "start -> first / last probed lead scored (s)": f"{first_scored:.1f} / {last_scored:.1f}",
            "probed leads scored from their stored state": f"{correct} of {len(expected)}",
            "changelog catch-ups after recovery": str(catch_ups),
            "changelog read before recovery (records; s; records/s)": restored_figure(score.log_path),
        }
        return CaseResult(
            case,
            f"score starting with {written:,} leads in its changelog",
            events=written,
            seconds=ready,
            cpu_seconds=cpu.user + cpu.system,
            figures=figures,
            extra={
                "suffix": suffix,
                "logs": str(services.log_dir),
                "rss_empty": rss_empty,
                "rss_full": rss_full,
            },
        )


register(ScoreRecovery())
