"""The pipeline as processes: HTTP in to leads.enriched, and leads.interactions to hand-offs.

Only the services on the measured path run (on a 2-core machine every extra worker takes CPU from
them); `latency.speed_to_lead` runs all five.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from bench.case import BenchContext, CaseResult, OwnInput, register
from bench.kafka import produce
from bench.records import interactions, record
from bench.service_run import (
    SETTLE_SECONDS,
    measured,
    prepare_topics,
    profile_during,
    series,
)
from bench.stack import API_KEY, EVENTS_IN, EVENTS_OUT, Probe, Services, Snapshot, watch
from bench.windows import last_change, stable_for
from schemas.topics import TopicName
from services.devstack.processes import spawn, stop, tail


def stages_done(chain: list[tuple[str, str]], total: int, first: str) -> Callable[[list[Snapshot]], bool]:
    """Done when `first` consumed `total`, each (consumed, upstream published) pair caught up, and all
    counters stood still for a moment."""

    def done(snapshots: list[Snapshot]) -> bool:
        last = snapshots[-1].counters
        if last[first] < total or any(last[down] < last[up] for down, up in chain):
            return False
        return all(stable_for(series(snapshots, [name]), SETTLE_SECONDS) for name in last)

    return done


def finished_at(snapshots: list[Snapshot], name: str) -> float:
    """When the counter reached its final value."""
    return snapshots[last_change(series(snapshots, [name]))].at


def per_event_cpu(start: Snapshot, end: Snapshot, events: int) -> str:
    return ", ".join(f"{key} {1e6 * (end.cpu[key] - start.cpu[key]) / max(1, events):.0f}" for key in end.cpu)


def cores_busy(start: Snapshot, end: Snapshot, cores: int) -> str:
    """The cores the workers and the broker kept busy between two snapshots, against the machine's:
    whether a run that fell behind had the CPU to keep up at all (a capacity limit, not a wait)."""
    wall = max(1e-9, end.at - start.at)
    workers = sum(end.cpu[key] - start.cpu[key] for key in end.cpu) / wall
    text = f"workers {workers:.2f}"
    if start.broker_cpu is not None and end.broker_cpu is not None:
        broker = (end.broker_cpu - start.broker_cpu) / wall
        text += f" + broker {broker:.2f} = {workers + broker:.2f}"
    return f"{text} of {cores}"


BATCHED = ["enrich", "score", "route"]  # the batched agents from leads.interactions to hand-offs
BATCH_SAMPLES = {  # probe suffix -> (sample, labels) of services/runtime/metrics.py's batch metrics
    "batches": ("leadpipe_batch_records_count", {}),
    "batch.records": ("leadpipe_batch_records_sum", {}),
    "batch.handle": ("leadpipe_batch_seconds_sum", {"phase": "handle"}),
    "batch.commit": ("leadpipe_batch_seconds_sum", {"phase": "commit"}),
}


def batch_probes(services: list[str]) -> list[Probe]:
    """Probes of each service's batches: how many, their records, their handling and commit time."""
    return [
        Probe(f"{name}.{suffix}", name, sample, labels)
        for name in services
        for suffix, (sample, labels) in BATCH_SAMPLES.items()
    ]


def batch_means(start: Snapshot, end: Snapshot, services: list[str]) -> str:
    """Per service between two snapshots: mean records per batch, mean handling and commit ms, and
    the share of the wall clock spent on batches (`leadpipe:batch_busy:ratio` of the alert rules)."""

    def delta(key: str) -> float:
        return end.counters[key] - start.counters[key]

    wall = max(1e-9, end.at - start.at)
    parts = []
    for name in services:
        batches = max(1.0, delta(f"{name}.batches"))
        records = delta(f"{name}.batch.records") / batches
        handle, commit = (delta(f"{name}.batch.{phase}") for phase in ("handle", "commit"))
        busy = (handle + commit) / wall
        parts.append(
            f"{name} {records:.0f} / {1e3 * handle / batches:.1f} / {1e3 * commit / batches:.1f} / {busy:.0%}"
        )
    return ", ".join(parts)


@dataclass(frozen=True)
class StreamPipeline(OwnInput):
    """enrich -> score -> route over a backlog of interactions; the rate is backlog / time to drain."""

    name: str = "pipeline.stream"
    description: str = "leads.interactions (preloaded demo traffic) -> enrich -> score -> route -> hand-offs"

    async def run(self, ctx: BenchContext) -> CaseResult:
        suffix = ctx.suffix(self.name)
        settings = await prepare_topics(ctx, suffix)
        items = await asyncio.to_thread(lambda: [record(i) for i in interactions(ctx.events)])
        await produce(ctx.bootstrap_servers, settings.topic(TopicName.INTERACTIONS), items)

        def topic(name: TopicName) -> dict[str, str]:
            return {"topic": settings.topic(name)}

        probes = [
            Probe("enrich.in", "enrich", EVENTS_IN, topic(TopicName.INTERACTIONS)),
            Probe("enrich.out", "enrich", EVENTS_OUT, topic(TopicName.ENRICHED)),
            Probe("score.in", "score", EVENTS_IN, topic(TopicName.ENRICHED)),
            Probe("score.out", "score", EVENTS_OUT, topic(TopicName.STAGE_CHANGES)),
            Probe("route.in", "route", EVENTS_IN, topic(TopicName.STAGE_CHANGES)),
            Probe("route.out", "route", EVENTS_OUT, topic(TopicName.HANDOFFS)),
        ]
        counted = [*probes, *batch_probes(BATCHED)]
        chain = [("score.in", "enrich.out"), ("route.in", "score.out")]
        profiles: list[tuple[str, Path]] = []
        services = Services(ctx, self.name, suffix)
        for name in ("route", "score", "enrich"):
            services.add(name)
        async with aiohttp.ClientSession() as session:
            try:
                services["route"].start()
                services["score"].start()
                await services["route"].ready(session)
                await services["score"].ready(session)
                services["enrich"].start()  # last, so the clock starts with everything downstream up
                await services["enrich"].ready(session)
                finished = stages_done(chain, len(items), "enrich.in")

                def done(snapshots: list[Snapshot]) -> bool:
                    if not profiles and snapshots[-1].counters["enrich.in"] > 0:
                        profiles.extend(profile_during(ctx, services, self.name))
                    return finished(snapshots)

                snapshots = await watch(session, ctx, services, counted, done, within=ctx.case_timeout)
            finally:
                services.stop()
        start_index = next(i for i, s in enumerate(snapshots) if s.counters["enrich.in"] > 0)
        start = snapshots[start_index]
        end_at = max(finished_at(snapshots, p.name) for p in probes)
        end = next(s for s in snapshots if s.at >= end_at)
        consumed = int(end.counters["enrich.in"] - start.counters["enrich.in"])
        last = snapshots[-1].counters
        to_stage_changes = finished_at(snapshots, "score.out") - start.at  # issue 9's goal ends there
        figures = {
            "events/s to stage changes / to hand-offs": " / ".join(
                f"{consumed / max(1e-9, seconds):,.0f}" for seconds in (to_stage_changes, end.at - start.at)
            ),
            "per input: enriched / stage changes / hand-offs": (
                f"{last['enrich.out'] / len(items):.2f} / {last['score.out'] / len(items):.2f} "
                f"/ {last['route.out'] / len(items):.3f}"
            ),
            "drained after (s): enrich / score / route": " / ".join(
                f"{finished_at(snapshots, n) - start.at:.1f}" for n in ("enrich.in", "score.in", "route.in")
            ),
            "CPU µs per input event": per_event_cpu(start, end, consumed),
            "batches: records / handle ms / commit ms (means) / busy": batch_means(start, end, BATCHED),
        }
        return measured(
            self.name,
            self.description,
            events=consumed,
            start=start,
            end=end,
            services=services,
            suffix=suffix,
            figures=figures,
            profiles=profiles,
            counters=last,
            stage_changes_seconds=to_stage_changes,
        )


class LoadGenerator:
    """`python -m bench.workers.loadgen` as a child; its result file says what it achieved."""

    def __init__(self, ctx: BenchContext, case: str, url: str, *, events: int, rate: float) -> None:
        self.out = ctx.log_dir / f"{case.replace('.', '-')}-loadgen.json"
        batch = 100 if rate <= 0 else max(1, min(100, round(rate / 20)))
        self.argv = [
            sys.executable,
            "-m",
            "bench.workers.loadgen",
            "--url",
            url,
            "--api-key",
            API_KEY,
            "--events",
            str(events),
            "--rate",
            str(rate),
            "--batch",
            str(batch),
            "--concurrency",
            "4" if rate <= 0 else "16",
            "--out",
            str(self.out),
        ]
        self.log = ctx.log_dir / f"{case.replace('.', '-')}-loadgen.log"
        self.process: Any = None

    def start(self) -> LoadGenerator:
        self.out.unlink(missing_ok=True)
        self.out.with_suffix(".started").unlink(missing_ok=True)
        self.process = spawn(self.argv, log_path=self.log)
        return self

    async def started_at(self, within: float = 300.0) -> float:
        """When it began to post (it first builds its events)."""
        marker = self.out.with_suffix(".started")
        for _ in range(int(within * 10)):
            if marker.exists() and marker.read_text():
                return float(marker.read_text())
            if self.process.poll() is not None:
                raise RuntimeError(f"load generator exited: {tail(self.log)}")
            await asyncio.sleep(0.1)
        raise TimeoutError("load generator did not start")

    async def wait(self) -> None:
        await asyncio.to_thread(self.process.wait)

    def running(self) -> bool:
        return bool(self.process is not None and self.process.poll() is None)

    def result(self) -> dict[str, Any]:
        if self.process.poll() != 0 or not self.out.exists():
            raise RuntimeError(f"load generator failed: {tail(self.log)}")
        loaded: dict[str, Any] = json.loads(self.out.read_text())
        return loaded

    def stop(self) -> None:
        if self.process is not None:
            stop(self.process, grace=5)


@dataclass(frozen=True)
class HttpPipeline(OwnInput):
    """The demo traffic POSTed flat out to /v1/events:batch, through capture and enrich."""

    name: str = "pipeline.http"
    description: str = (
        "POST /v1/events:batch (100 per batch, 4 in flight) -> capture -> enrich -> leads.enriched"
    )

    async def run(self, ctx: BenchContext) -> CaseResult:
        suffix = ctx.suffix(self.name)
        settings = await prepare_topics(ctx, suffix)
        services = Services(ctx, self.name, suffix)
        services.add("enrich")
        capture = services.add("capture")
        source = {"topic": settings.topic(TopicName.INTERACTIONS)}
        probes = [
            Probe("capture.out", "capture", EVENTS_OUT, {"service": "capture", **source}),
            Probe("enrich.in", "enrich", EVENTS_IN, source),
            Probe("enrich.out", "enrich", EVENTS_OUT, {"topic": settings.topic(TopicName.ENRICHED)}),
        ]
        load = LoadGenerator(ctx, self.name, capture.url, events=ctx.events, rate=0.0)

        profiles: list[tuple[str, Path]] = []

        def done(snapshots: list[Snapshot]) -> bool:
            if not profiles and snapshots[-1].counters["capture.out"] > 0:
                profiles.extend(profile_during(ctx, services, self.name))
            if load.running():
                return False
            return stages_done([("enrich.in", "capture.out")], 1, "capture.out")(snapshots)

        async with aiohttp.ClientSession() as session:
            try:
                services.start()
                await services.ready(session)
                load.start()
                started = await load.started_at()
                snapshots = await watch(session, ctx, services, probes, done, within=ctx.case_timeout)
                outcome = load.result()
            finally:
                load.stop()
                services.stop()
        start = max((s for s in snapshots if s.at <= started), key=lambda s: s.at, default=snapshots[0])
        end_at = max(finished_at(snapshots, p.name) for p in probes)
        end = next(s for s in snapshots if s.at >= end_at)
        accepted = int(outcome["accepted"])
        figures = {
            "capture accepted (events/s)": f"{outcome['achieved_rate']:,.0f}",
            "accepted / refused": f"{accepted:,} / {outcome['refused']:,} (HTTP {outcome['statuses']})",
            "batch request p50 / p99 (ms)": (
                f"{outcome['request_p50_ms']:.0f} / {outcome['request_p99_ms']:.0f}"
            ),
            "enriched per accepted event": f"{end.counters['enrich.out'] / max(1, accepted):.2f}",
            "enrich drained after (s)": f"{finished_at(snapshots, 'enrich.out') - started:.1f}",
            "CPU µs per event": per_event_cpu(start, end, accepted),
            "load generator CPU µs per event": f"{1e6 * outcome['cpu_seconds'] / max(1, accepted):.0f}",
        }
        return measured(
            self.name,
            self.description,
            events=accepted,
            start=start,
            end=end,
            seconds=end.at - started,
            services=services,
            suffix=suffix,
            figures=figures,
            profiles=profiles,
            loadgen=outcome,
        )


register(HttpPipeline())
register(StreamPipeline())
