"""`python -m bench [--events N] [--only raw,faust] [--repeat R]`: start a broker, run cases, report."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import traceback
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

from bench.case import REGISTRY, BenchContext, CaseResult, select
from bench.kafka import create_topics, preload
from bench.measure import LOG_DIR
from bench.report import format_table, machine, summarise
from services.devstack.broker import EmbeddedBroker
from services.devstack.processes import free_port

RESULTS_DIR = Path(__file__).parent / "results"


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
    return parser.parse_args(argv)


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


async def run_cases(ctx: BenchContext, names: list[str], repeat: int) -> list[CaseResult]:
    say(f"preloading {ctx.events:,} events into {ctx.input_topic}")
    started = time.perf_counter()
    await create_topics(ctx.bootstrap_servers, [ctx.input_topic], ctx.partitions)
    await preload(ctx.bootstrap_servers, ctx.input_topic, ctx.events)
    say(f"preloaded in {time.perf_counter() - started:.1f}s")
    results: list[CaseResult] = []
    for name in names:
        case = REGISTRY[name]
        missing = case.unavailable()
        for attempt in range(repeat):
            run_ctx = BenchContext(**{**asdict(ctx), "run_id": f"{ctx.run_id}-{attempt}"})
            if missing:
                result = CaseResult(name, case.description, 0, 0.0, 0.0, error=f"unavailable: {missing}")
            else:
                try:
                    result = await case.run(run_ctx)
                except Exception as exc:
                    traceback.print_exc()
                    result = CaseResult(
                        name, case.description, 0, 0.0, 0.0, error=f"{type(exc).__name__}: {exc}"
                    )
            results.append(result)
            if result.error:
                say(f"{name} run {attempt + 1}: {result.error}")
            else:
                say(
                    f"{name} run {attempt + 1}: {result.events_per_second:,.0f} events/s, "
                    f"{result.cpu_us_per_event:.1f} µs CPU/event"
                )
            if missing:
                break
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.list:
        for name, case in REGISTRY.items():
            print(f"{name:24} {case.description}")
        return 0
    names = select(REGISTRY, args.only)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    run_id = f"{stamp}"
    log_dir = LOG_DIR / run_id
    log_dir.mkdir(parents=True, exist_ok=True)
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
        )
        results = asyncio.run(run_cases(ctx, names, args.repeat))
    summaries = summarise(results)
    table = format_table(summaries)
    print(table)
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
    }
    args.results_dir.mkdir(parents=True, exist_ok=True)
    out = args.results_dir / f"{stamp}.json"
    out.write_text(json.dumps(document, indent=2) + "\n")
    say(f"results written to {out}")
    return 1 if any(s.error and not s.error.startswith("unavailable") for s in summaries) else 0


if __name__ == "__main__":
    sys.exit(main())
