"""One real service over a backlog of realistic records: its rate, its CPU, and what it published.

The clock starts at the first sample in which the worker had consumed input and stops when it had
consumed the whole backlog and its outputs stopped moving (so work a service defers to an internal
topic, like enrich's inbox, counts). Start-up, the group join and table recovery are left out: the
figure is steady-state throughput, comparable with the passthrough lines of the same run.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from bench import profile
from bench.case import BenchContext, CaseResult
from bench.kafka import produce
from bench.prom import sample_sum
from bench.records import Record
from bench.stack import EVENTS_IN, EVENTS_OUT, Probe, Services, Snapshot, watch
from bench.windows import Point, backlog_window, stable_for
from schemas.topics import TopicName
from services.runtime.settings import ServiceSettings
from services.runtime.topics import ensure_pipeline_topics, ensure_topics
from services.score.app import DECAY_TOPIC

SETTLE_SECONDS = 1.5  # outputs unchanged this long after the backlog was consumed: the work is done


def settings_for(ctx: BenchContext, suffix: str) -> ServiceSettings:
    return ServiceSettings(
        broker_url=f"kafka://{ctx.bootstrap_servers}", topic_partitions=ctx.partitions, topic_suffix=suffix
    )


async def prepare_topics(ctx: BenchContext, suffix: str) -> ServiceSettings:
    """The pipeline's topics plus score's decay topic, created before any worker starts.

    Score first writes to its decay topic from a timer. When that topic is younger than its producer's
    metadata, aiokafka starts tracking it alone, drops every other topic from the producer's metadata
    and retries batches already queued for them in a tight loop until the 20-minute request timeout:
    the agent awaiting such an ack stalls (seen in about one score run in three here; see
    docs/performance.md). Creating the topic first, as a deployment that provisions its topics does,
    keeps the benchmark measuring throughput instead of that stall.
    """
    settings = settings_for(ctx, suffix)
    await ensure_pipeline_topics(settings, give_up_after=30)
    await ensure_topics(
        ctx.bootstrap_servers, [settings.topic(DECAY_TOPIC)], ctx.partitions, give_up_after=30
    )
    return settings


def series(snapshots: Sequence[Snapshot], names: Sequence[str]) -> list[Point]:
    """(time, summed counters) per snapshot."""
    return [(s.at, sum(s.counters[n] for n in names)) for s in snapshots]


def backlog_done(
    inputs: list[str], outputs: list[str], total: int, behind: Sequence[tuple[str, str]] = ()
) -> Callable[[list[Snapshot]], bool]:
    """Done when the whole backlog was consumed, each (effect, output) of `behind` has caught up with
    its output, and nothing moved for SETTLE_SECONDS."""

    def done(snapshots: list[Snapshot]) -> bool:
        if series(snapshots[-1:], inputs)[0][1] < total:
            return False
        last = snapshots[-1].counters
        if any(last[effect] < last[output] for effect, output in behind):
            return False
        return all(stable_for(series(snapshots, [o]), SETTLE_SECONDS) for o in [*outputs, *inputs])

    return done


def cpu_between(start: Snapshot, end: Snapshot, keys: Sequence[str] | None = None) -> float:
    keys = list(start.cpu) if keys is None else keys
    return sum(end.cpu[k] - start.cpu[k] for k in keys)


def broker_between(start: Snapshot, end: Snapshot) -> float | None:
    if start.broker_cpu is None or end.broker_cpu is None:
        return None
    return end.broker_cpu - start.broker_cpu


def measured(
    case: str,
    description: str,
    *,
    events: int,
    start: Snapshot,
    end: Snapshot,
    services: Services,
    suffix: str,
    figures: dict[str, str],
    seconds: float | None = None,
    profiles: list[tuple[str, Path]] | None = None,
    **extra: Any,
) -> CaseResult:
    """A case's result between two snapshots: the workers' and the broker's CPU, the suffix and logs
    of the run, and the py-spy summaries when `profiles` were taken. `seconds` when the rate's time
    is not the snapshots' (speed-to-lead counts the background's)."""
    detail: dict[str, Any] = {"suffix": suffix, "logs": str(services.log_dir)}
    if profiles is not None:
        summaries = profile_summaries(profiles)
        figures = {**figures, **{f"py-spy {key}": lines[1] for key, lines in summaries.items()}}
        detail["profiles"] = summaries
    return CaseResult(
        case=case,
        description=description,
        events=events,
        seconds=end.at - start.at if seconds is None else seconds,
        cpu_seconds=cpu_between(start, end),
        broker_cpu_seconds=broker_between(start, end),
        figures=figures,
        extra={**detail, **extra},
    )


def profile_during(ctx: BenchContext, services: Services, case: str) -> list[tuple[str, Path]]:
    """Start py-spy on every worker of the case when `--profile` asks for it; returns (worker, output)."""
    if ctx.profile_seconds <= 0:
        return []
    started = []
    for member in services:
        out = ctx.log_dir / f"{case.replace('.', '-')}-{member.key}.pyspy.txt"
        if member.process is not None and profile.start(
            member.process.pid, ctx.profile_seconds, out, gil=ctx.profile_gil
        ):
            started.append((member.key, out))
    return started


def profile_summaries(profiles: list[tuple[str, Path]]) -> dict[str, list[str]]:
    summaries = {}
    for key, path in profiles:
        if path.exists():
            summaries[key] = profile.summarise(path.read_text()).lines()
    return summaries


@dataclass(frozen=True)
class Held:
    """A worker's resident memory and the keys its tables hold, from its own `/metrics`."""

    resident: float
    keys: float


async def held(session: aiohttp.ClientSession, services: Services, key: str) -> Held:
    text = await services[key].metrics(session)
    return Held(sample_sum(text, "leadpipe_memory_resident_bytes"), sample_sum(text, "leadpipe_table_keys"))


def memory_figures(key: str, first: Held, last: Held) -> dict[str, str]:
    """What the worker held at the end, and its memory per table key grown since it was ready: the
    operator's view of memory per lead (services/runtime/memory.py)."""
    figures = {f"{key}: resident MB, table keys at the end": f"{last.resident / 1e6:,.0f}, {last.keys:,.0f}"}
    if last.keys > first.keys:
        per_key = (last.resident - first.resident) / (last.keys - first.keys)
        figures[f"{key}: resident bytes per table key since ready"] = f"{per_key:,.0f}"
    return figures


async def produce_all(ctx: BenchContext, sources: dict[str, list[Record]]) -> None:
    for topic, records in sources.items():
        await produce(ctx.bootstrap_servers, topic, records)


@dataclass(frozen=True)
class Effect:
    """A counter in the worker's /metrics (`sample` with `labels`) that counts one effect per record
    the worker publishes on `one_per` (an output topic)."""

    sample: str
    labels: Mapping[str, str]
    one_per: str


@dataclass(frozen=True)
class ServiceWorkload:
    """What one service case feeds and follows: `backlog(n)` gives the records per input topic (one
    topic for most services; nurture reads enriched interactions and stage changes)."""

    service: str
    outputs: tuple[str, ...]  # catalogue or internal topic names, before the run suffix
    backlog: Callable[[int], dict[TopicName, list[Record]]]
    env: Mapping[str, str] = field(default_factory=dict)  # the worker's own settings, beside the bench's
    # Work that leaves the worker other than as records (a post to a webhook), one per record of an
    # output topic, done later: the clock runs until every one is counted.
    effects: Mapping[str, Effect] = field(default_factory=dict)


def one_source(
    topic: TopicName, records: Callable[[int], list[Record]]
) -> Callable[[int], dict[TopicName, list[Record]]]:
    """A backlog on one input topic."""
    return lambda n: {topic: records(n)}


def output_figures(
    workload: ServiceWorkload, backlog: dict[TopicName, list[Record]], keys: list[str], end: Snapshot
) -> dict[str, str]:
    """The records' mean size, what the workers published per input record, each input's backlog."""
    records = [r for topic_records in backlog.values() for r in topic_records]
    figures = {"record bytes (mean)": f"{sum(len(v) for _, v in records) / max(1, len(records)):,.0f}"}
    for output in [*workload.outputs, *workload.effects]:
        produced = sum(end.counters[f"out:{k}:{output}"] for k in keys)
        figures[f"{output} per input"] = f"{produced / max(1, len(records)):.2f}"
    if len(backlog) > 1:
        for name, topic_records in backlog.items():
            figures[f"{name.value} in the backlog"] = f"{len(topic_records):,}"
    return figures


async def run_service(
    ctx: BenchContext,
    *,
    case: str,
    description: str,
    workload: ServiceWorkload,
    workers: int = 1,
    produce_after_ready: bool = False,
) -> CaseResult:
    """Preload, start the worker(s), follow their counters. With `produce_after_ready` (always with
    2+ workers) the backlog is written only after every worker joined, so no rebalance falls inside
    the window, and the clock starts when the backlog is complete."""
    suffix = ctx.suffix(case)
    settings = await prepare_topics(ctx, suffix)
    backlog = await asyncio.to_thread(workload.backlog, ctx.events)
    sources = {settings.topic(topic): records for topic, records in backlog.items()}
    records = [r for topic_records in sources.values() for r in topic_records]
    services = Services(ctx, case, suffix)
    keys = [workload.service] if workers == 1 else [f"{workload.service}-{i + 1}" for i in range(workers)]
    for key in keys:
        services.add(workload.service, label=key if workers > 1 else "", **workload.env)
    probes = [Probe(f"in:{k}:{topic}", k, EVENTS_IN, {"topic": topic}) for k in keys for topic in sources]
    probes += [
        Probe(f"out:{k}:{t}", k, EVENTS_OUT, {"topic": settings.topic(t)})
        for k in keys
        for t in workload.outputs
    ]
    effects = workload.effects.items()
    probes += [Probe(f"out:{k}:{name}", k, e.sample, e.labels) for k in keys for name, e in effects]
    behind = [(f"out:{k}:{name}", f"out:{k}:{e.one_per}") for k in keys for name, e in effects]
    inputs = [p.name for p in probes if p.name.startswith("in:")]
    outputs = [p.name for p in probes if p.name.startswith("out:")]
    not_before = 0.0
    async with aiohttp.ClientSession() as session:
        try:
            preload = workers == 1 and not produce_after_ready
            if preload:
                await produce_all(ctx, sources)
            services.start()
            await services.ready(session)
            at_ready = {key: await held(session, services, key) for key in keys}
            if not preload:
                await asyncio.sleep(2 * settings.broker_session_timeout)  # the last join settles
                await produce_all(ctx, sources)
                not_before = time.time()
            finished = backlog_done(inputs, outputs, len(records), behind)
            profiles: list[tuple[str, Path]] = []

            def done(snapshots: list[Snapshot]) -> bool:
                if not profiles and series(snapshots[-1:], inputs)[0][1] > 0:
                    profiles.extend(profile_during(ctx, services, case))  # once work has begun
                return finished(snapshots)

            snapshots = await watch(session, ctx, services, probes, done, within=ctx.case_timeout)
            memory: dict[str, str] = {}
            for key in keys:
                memory.update(memory_figures(key, at_ready[key], await held(session, services, key)))
        finally:
            services.stop()
    window = backlog_window(
        series(snapshots, inputs), [series(snapshots, [o]) for o in outputs], len(records), not_before
    )
    if window is None:
        raise RuntimeError("the backlog was not consumed")
    start, end = snapshots[window[0]], snapshots[window[1]]
    consumed = series([end], inputs)[0][1] - series([start], inputs)[0][1]
    figures = {**output_figures(workload, backlog, keys, end), **memory}
    if workers > 1:
        shares = [
            sum(end.counters[i] - start.counters[i] for i in inputs if i.startswith(f"in:{k}:")) for k in keys
        ]
        figures["share per worker"] = " / ".join(f"{s / max(1.0, consumed):.0%}" for s in shares)
    return measured(
        case,
        description,
        events=int(consumed),
        start=start,
        end=end,
        services=services,
        suffix=suffix,
        figures=figures,
        profiles=profiles,
        records=len(records),
    )
