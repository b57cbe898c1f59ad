"""Measure a passthrough worker as a child process: rate from records reaching its sink, CPU by psutil.

The clock starts when the first transformed record reaches the sink, so process start-up and the
consumer-group join (about 3 s on Tansu) are left out: the figures are the steady-state rate over a
preloaded backlog. CPU is the child's own user+system time over the same interval (its children
included), plus the broker's, so a case that is fast only by burning more CPU shows it.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil  # type: ignore[import-untyped,unused-ignore]

from bench.case import BenchContext, CaseResult
from bench.kafka import SinkCounter, create_topics
from services.devstack.processes import spawn, stop, tail

POLL_SECONDS = 0.02
LOG_DIR = Path(__file__).parent / "results" / "logs"


@dataclass(frozen=True)
class Sample:
    at: float
    count: int
    cpu: float
    broker_cpu: float | None


def cpu_seconds(process: psutil.Process | None) -> float | None:
    if process is None:
        return None
    try:
        t = process.cpu_times()
    except psutil.Error:
        return None
    return float(t.user + t.system + t.children_user + t.children_system)


def worker_argv(
    module: str,
    ctx: BenchContext,
    sink: str,
    group: str,
    options: dict[str, Any],
    *,
    source: str | None = None,
) -> list[str]:
    """The command line every passthrough worker module understands (see `bench.worker_args`)."""
    return [
        sys.executable,
        "-m",
        module,
        "--bootstrap",
        ctx.bootstrap_servers,
        "--source",
        source or ctx.input_topic,
        "--sink",
        sink,
        "--group",
        group,
        "--partitions",
        str(ctx.partitions),
        "--options",
        json.dumps(options),
    ]


async def measure_passthrough(
    ctx: BenchContext,
    *,
    case: str,
    description: str,
    module: str,
    options: dict[str, Any] | None = None,
    within: float | None = None,
    source: str | None = None,
) -> CaseResult:
    """Run `python -m module` over the preloaded input (or `source`, holding `ctx.events` records of
    the case's own) until all events reached its own sink topic."""
    options = options or {}
    within = ctx.case_timeout if within is None else within
    slug = case.replace(".", "-")
    sink = f"bench.{slug}.{ctx.run_id}"
    group = f"bench-{slug}-{ctx.run_id}"
    await create_topics(ctx.bootstrap_servers, [sink], ctx.partitions)
    log_path = LOG_DIR / ctx.run_id / f"{slug}.log"
    argv = worker_argv(module, ctx, sink, group, options, source=source)
    child = spawn(argv, log_path=log_path)
    worker = psutil.Process(child.pid)
    broker = psutil.Process(ctx.broker_pid) if ctx.broker_pid else None
    try:
        first, last = await _watch(ctx, sink, exited=child.poll, worker=worker, broker=broker, within=within)
    except (RuntimeError, TimeoutError) as exc:
        raise RuntimeError(f"{exc}; worker log {log_path}:\n{tail(log_path)}") from exc
    finally:
        await asyncio.to_thread(stop, child, grace=10)
    broker_cpu = None
    if first.broker_cpu is not None and last.broker_cpu is not None:
        broker_cpu = last.broker_cpu - first.broker_cpu
    return CaseResult(
        case=case,
        description=description,
        events=last.count - first.count,
        seconds=last.at - first.at,
        cpu_seconds=last.cpu - first.cpu,
        broker_cpu_seconds=broker_cpu,
        extra={"options": options, "sink_records": last.count, "log": str(log_path)},
    )


async def _watch(
    ctx: BenchContext,
    sink: str,
    *,
    exited: Any,
    worker: psutil.Process,
    broker: psutil.Process | None,
    within: float,
) -> tuple[Sample, Sample]:
    async with SinkCounter(ctx.bootstrap_servers, sink, ctx.partitions) as counter:
        deadline = time.monotonic() + within
        first: Sample | None = None
        while True:
            if exited() is not None:
                raise RuntimeError("worker exited before finishing")
            count = await counter.count(POLL_SECONDS)
            at = time.perf_counter()
            if count > 0 and (first is None or count >= ctx.events):
                sample = Sample(at, count, cpu_seconds(worker) or 0.0, cpu_seconds(broker))
                if first is None:
                    first = sample
                if count >= ctx.events:
                    return first, sample
            if time.monotonic() > deadline:
                raise TimeoutError(f"{count}/{ctx.events} events after {within:.0f}s")
