"""The HTTP load generator: POSTs the demo traffic to capture's batch endpoint at a rate, or flat out.

Run as its own process (`python -m bench.workers.loadgen`) so its CPU is not the harness's. Open
loop: batch k is due at start + k * batch / rate; when capture answers slower than that, at most
`concurrency` batches are in flight and the achieved rate falls below the asked one, which the
result file reports as it is.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp

from bench.records import public_events
from bench.report import percentile

BATCH_PATH = "/v1/events:batch"


def due_offset(index: int, batch: int, rate: float) -> float:
    """Seconds after the start when batch `index` is due (0 for all when the rate is unlimited)."""
    return index * batch / rate if rate > 0 else 0.0


def chunks(items: Sequence[Any], size: int) -> list[list[Any]]:
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


async def run(args: argparse.Namespace) -> dict[str, Any]:
    batches = chunks(public_events(args.events, seed=args.seed), args.batch)
    url = args.url.rstrip("/") + BATCH_PATH
    statuses: Counter[str] = Counter()
    accepted = refused = 0
    latencies: list[float] = []
    timeline: Counter[int] = Counter()  # accepted events per whole second after the start
    slots = asyncio.Semaphore(args.concurrency)
    headers = {"X-API-Key": args.api_key, "Content-Type": "application/json"}
    start_file = Path(args.out).with_suffix(".started")
    connector = aiohttp.TCPConnector(limit=args.concurrency)
    async with aiohttp.ClientSession(headers=headers, connector=connector) as session:
        started = time.time()
        clock = time.monotonic()
        cpu_started = time.process_time()
        start_file.write_text(repr(started))

        async def post(chunk: list[dict[str, Any]]) -> None:
            nonlocal accepted, refused
            sent = time.monotonic()
            try:
                async with session.post(url, data=json.dumps({"events": chunk})) as response:
                    body = await response.json(content_type=None)
                    statuses[str(response.status)] += 1
                    if response.status == 200:
                        ok = int(body.get("accepted", 0))
                        accepted += ok
                        refused += len(chunk) - ok
                        timeline[int(time.monotonic() - clock)] += ok
                    else:
                        refused += len(chunk)
            except (aiohttp.ClientError, TimeoutError) as exc:
                statuses[type(exc).__name__] += 1
                refused += len(chunk)
            finally:
                latencies.append(time.monotonic() - sent)
                slots.release()

        tasks = []
        for index, chunk in enumerate(batches):
            delay = clock + due_offset(index, args.batch, args.rate) - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            await slots.acquire()
            tasks.append(asyncio.create_task(post(chunk)))
        await asyncio.gather(*tasks)
        finished = time.time()
        cpu = time.process_time() - cpu_started
    seconds = max(finished - started, 1e-9)
    return {
        "started_at": started,
        "finished_at": finished,
        "events": args.events,
        "batch": args.batch,
        "asked_rate": args.rate,
        "accepted": accepted,
        "refused": refused,
        "achieved_rate": accepted / seconds,
        "cpu_seconds": cpu,
        "statuses": dict(statuses),
        "request_p50_ms": 1000 * percentile(latencies, 50) if latencies else None,
        "request_p99_ms": 1000 * percentile(latencies, 99) if latencies else None,
        "accepted_per_second": [timeline[s] for s in range(int(seconds) + 1)],
    }


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="POST demo traffic to capture (started by python -m bench)")
    parser.add_argument("--url", required=True, help="capture's base URL")
    parser.add_argument("--api-key", required=True)
    parser.add_argument("--events", type=int, required=True)
    parser.add_argument("--rate", type=float, default=0.0, help="events/s; 0 = as fast as capture answers")
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=4, help="batches in flight at most")
    parser.add_argument("--seed", type=int, default=21)
    parser.add_argument("--out", required=True, help="where to write the result (JSON)")
    return parser.parse_args(argv)


def main() -> None:
    args = parse()
    result = asyncio.run(run(args))
    Path(args.out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
