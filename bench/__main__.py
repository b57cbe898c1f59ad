"""`python -m bench [--events N] [--only raw,service] [--repeat R]`: start a broker, run cases, report."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
import traceback
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

from bench.case import REGISTRY, BenchContext, CaseResult, select
from bench.goals import format_verdicts, judge
from bench.kafka import create_topics, preload
from bench.measure import LOG_DIR
from bench.report import format_figures, format_table, machine, summarise
from services.devstack.broker import EmbeddedBroker
from services.devstack.processes import free_port
from services.devstack.redis_server import EmbeddedRedis

RESULTS_DIR = Path(__file__).parent / "results"
# The passthroughs read at least this many: every service case is compared with raw aiokafka, which
# on a fast host drains 50,000 in half a second, too short to time steadily (42,000-106,000 events/s
# in runs of one session; docs/performance.md, twenty-first pass).
MIN_SHARED_EVENTS = 200_000


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    from bench.cases import load

    load()

    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--events", type=int, default=100_000, help="events per case (default 100000)")
    parser.add_argument("--only", help=f"comma-separated cases or families; known: {','.join(REGISTRY)}")
    parser.add_argument("--repeat", type=int, default=1, help="runs per case; the table shows the median")
    parser.add_argument("--partitions", type=int, default=4, help="partitions of input and sink topics")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds a case may take")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument("--list", action="store_true", help="list the cases and exit")
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("REDIS_URL", ""),
        help="default: REDIS_URL, else a private redis",
    )
    parser.add_argument(
        "--rate",
        type=float,
        default=1000.0,
        help="background events/s of the speed-to-lead case (default 1000)",
    )
    parser.add_argument(
        "--hand-raisers", type=int, default=100, help="hand-raisers the speed-to-lead case times"
    )
    parser.add_argument(
        "--leads",
        default="",
        help="comma-separated table sizes for score.state (default: --events); 1000000 takes about an hour",
    )
    parser.add_argument(
        "--profile", type=float, default=0.0, metavar="SECONDS", help="py-spy each service worker for SECONDS"
    )
    parser.add_argument(
        "--profile-gil",
        action="store_true",
        help="with --profile: sample only the thread holding the interpreter lock (py-spy --gil)",
    )
    return parser.parse_args(argv)


def lead_counts(text: str, default: int) -> tuple[int, ...]:
    """`--leads 100000,1000000` -> (100000, 1000000); empty -> (default,)."""
    counts = tuple(int(part.replace("_", "")) for part in text.split(",") if part.strip())
    if any(c < 1 for c in counts):
        raise ValueError(f"--leads must be positive numbers, not {text!r}")
    return counts or (default,)


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


async def run_cases(ctx: BenchContext, names: list[str], repeat: int) -> list[CaseResult]:
    shared = max(ctx.events, MIN_SHARED_EVENTS)
    if any(getattr(REGISTRY[name], "uses_shared_input", True) for name in names):
        say(f"preloading {shared:,} events into {ctx.input_topic}")
        started = time.perf_counter()
        await create_topics(ctx.bootstrap_servers, [ctx.input_topic], ctx.partitions)
        await preload(ctx.bootstrap_servers, ctx.input_topic, shared)
        say(f"preloaded in {time.perf_counter() - started:.1f}s")
    results: list[CaseResult] = []
    for name in names:
        case = REGISTRY[name]
        missing = case.unavailable()
        for attempt in range(repeat):
            events = shared if getattr(case, "uses_shared_input", True) else ctx.events
            run_ctx = BenchContext(**{**asdict(ctx), "run_id": f"{ctx.run_id}-{attempt}", "events": events})
            say(f"{name} run {attempt + 1} ...")
            outcome: CaseResult | list[CaseResult]
            if missing:
                outcome = CaseResult(name, case.description, 0, 0.0, 0.0, error=f"unavailable: {missing}")
            else:
                try:
                    outcome = await case.run(run_ctx)
                except Exception as exc:
                    traceback.print_exc()
                    outcome = CaseResult(
                        name, case.description, 0, 0.0, 0.0, error=f"{type(exc).__name__}: {exc}"
                    )
            for result in outcome if isinstance(outcome, list) else [outcome]:
                results.append(result)
                say_result(result, attempt)
            if missing:
                break
    return results


def say_result(result: CaseResult, attempt: int) -> None:
    if result.error:
        say(f"{result.case} run {attempt + 1}: {result.error[:2000]}")
        return
    say(
        f"{result.case} run {attempt + 1}: {result.events_per_second:,.0f} events/s, "
        f"{result.cpu_us_per_event:.1f} µs CPU/event"
    )
    for figure, value in result.figures.items():
        say(f"    {figure}: {value}")


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.list:
        for name, case in REGISTRY.items():
            print(f"{name:24} {case.description}")
        return 0
    names = select(REGISTRY, args.only)
    load_start = os.getloadavg()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    run_id = f"{stamp}"
    log_dir = LOG_DIR / run_id
    log_dir.mkdir(parents=True, exist_ok=True)
    work_dir = Path(tempfile.mkdtemp(prefix="leadpipe-bench-"))
    redis = None
    try:
        if not args.redis_url:
            redis = EmbeddedRedis(port=free_port(), log_path=log_dir / "redis.log").start()
        redis_url = args.redis_url or (redis.url if redis else "")
        with EmbeddedBroker(port=free_port(), log_path=log_dir / "broker.log") as broker:
            assert broker.process is not None
            ctx = BenchContext(
                bootstrap_servers=broker.bootstrap_servers,
                events=args.events,
                partitions=args.partitions,
                input_topic=f"bench.input.{run_id}",
                run_id=run_id,
                broker_pid=broker.process.pid,
                case_timeout=args.timeout,
                redis_url=redis_url,
                log_dir=log_dir,
                work_dir=work_dir,
                background_rate=args.rate,
                hand_raisers=args.hand_raisers,
                state_leads=lead_counts(args.leads, args.events),
                profile_seconds=args.profile,
                profile_gil=args.profile_gil,
            )
            results = asyncio.run(run_cases(ctx, names, args.repeat))
    finally:
        if redis is not None:
            redis.stop()
        shutil.rmtree(work_dir, ignore_errors=True)
    summaries = summarise(results)
    table = format_table(summaries)
    figures = format_figures(results)
    verdicts = judge(results)
    print(table)
    if figures:
        print()
        print(figures)
    goals = format_verdicts(verdicts)
    if goals:
        print()
        print(goals)
    document = {
        "started_at": stamp,
        "command": "python -m bench " + " ".join(sys.argv[1:] if argv is None else argv),
        "machine": machine(),
        "events": args.events,
        "partitions": args.partitions,
        "repeat": args.repeat,
        "summary": [asdict(s) for s in summaries],
        "runs": [
            {**asdict(r), "events_per_second": r.events_per_second, "cpu_us_per_event": r.cpu_us_per_event}
            for r in results
        ],
        "table": table,
        "figures": figures,
        "goals": [asdict(v) for v in verdicts],
        "load_average": {"start": load_start, "end": os.getloadavg()},
    }
    args.results_dir.mkdir(parents=True, exist_ok=True)
    out = args.results_dir / f"{stamp}.json"
    out.write_text(json.dumps(document, indent=2) + "\n")
    say(f"results written to {out}")
    return 1 if any(s.error and not s.error.startswith("unavailable") for s in summaries) else 0


if __name__ == "__main__":
    sys.exit(main())
