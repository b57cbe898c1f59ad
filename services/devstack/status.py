"""`leadpipe status`: the running pipeline in a terminal, for people without Grafana.

Asks every service for `/healthz`, `/readyz` and `/metrics`, scrapes the metrics twice a moment
apart to turn counters into rates, and prints health, consumer lag, event rates, the batched agents'
batches, route's open SLA clocks and dead letters as plain text. The exit code says whether every
service is up and ready.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TextIO

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from services.devstack.stack import SERVICES, available_services

Labels = frozenset[tuple[str, str]]
Samples = dict[tuple[str, Labels], float]
REQUEST_TIMEOUT = 3.0
CRM_SHOWN = ("delivered", "retried", "dead_lettered")  # of leadpipe_route_crm_deliveries_total


def default_urls(host: str = "127.0.0.1", port_base: int = 8080) -> dict[str, str]:
    """The dev stack's layout: capture on `port_base`, the others on the following ports."""
    return {name: f"http://{host}:{port_base + default - 8080}" for name, default, _ in available_services()}


def parse_overrides(values: Iterable[str]) -> dict[str, str]:
    """`service=http://host:port` pairs from `--url`; the service must be one of the pipeline's."""
    known = {name for name, _, _ in SERVICES}
    overrides: dict[str, str] = {}
    for value in values:
        name, sep, url = value.partition("=")
        if not sep or not url.startswith(("http://", "https://")):
            raise ValueError(f"--url {value!r}: expected service=http://host:port")
        if name not in known:
            raise ValueError(f"--url {value!r}: unknown service {name!r} (one of {', '.join(sorted(known))})")
        overrides[name] = url.rstrip("/")
    return overrides


def parse_metrics(text: str) -> Samples:
    """Every sample of a Prometheus text exposition, keyed by name and labels."""
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = float(sample.value)
    return samples


def select(samples: Samples, name: str, *by: str) -> dict[tuple[str, ...], float]:
    """Sum of the samples called `name`, grouped by the label names `by` (PromQL's `sum by`)."""
    grouped: dict[tuple[str, ...], float] = defaultdict(float)
    for (sample_name, labels), value in samples.items():
        if sample_name == name:
            as_dict = dict(labels)
            grouped[tuple(as_dict.get(label, "") for label in by)] += value
    return dict(grouped)


def rates(before: Samples, after: Samples, seconds: float) -> Samples:
    """Per-second increase of every sample in `after` (a counter that restarted counts from zero)."""
    result: Samples = {}
    for key, value in after.items():
        previous = before.get(key, 0.0)
        result[key] = (value - previous if value >= previous else value) / seconds
    return result


@dataclass
class ServiceView:
    name: str
    url: str
    up: bool = False
    ready: bool = False
    failing: list[str] = field(default_factory=list)
    error: str | None = None
    samples: Samples = field(default_factory=dict)


@dataclass
class Report:
    at: datetime
    taken: float  # time.monotonic() of the second scrape
    seconds: float
    services: list[ServiceView]
    rates: dict[str, Samples]

    @property
    def healthy(self) -> bool:
        return all(view.up and view.ready for view in self.services)


async def probe(session: aiohttp.ClientSession, name: str, url: str) -> ServiceView:
    view = ServiceView(name, url)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)
    try:
        async with session.get(f"{url}/healthz", timeout=timeout) as response:
            view.up = response.status == 200
        async with session.get(f"{url}/readyz", timeout=timeout) as response:
            view.ready = response.status == 200
            with contextlib.suppress(ValueError, aiohttp.ContentTypeError):
                body = await response.json()
                view.failing = sorted(check for check, ok in body.get("checks", {}).items() if not ok)
        async with session.get(f"{url}/metrics", timeout=timeout) as response:
            view.samples = parse_metrics(await response.text())
    except TimeoutError:
        view.error = f"no answer within {REQUEST_TIMEOUT:.0f}s"
    except aiohttp.ClientConnectorError:
        view.error = "not reachable"
    except aiohttp.ClientError as exc:
        view.error = str(exc) or type(exc).__name__
    except ValueError as exc:  # a body that is not the Prometheus text format
        view.error = f"unreadable /metrics ({exc})"
    return view


async def snapshot(urls: Mapping[str, str]) -> list[ServiceView]:
    async with aiohttp.ClientSession() as session:
        return list(await asyncio.gather(*(probe(session, name, url) for name, url in urls.items())))


async def collect(urls: Mapping[str, str], interval: float, previous: Report | None = None) -> Report:
    """Two scrapes `interval` apart (or the previous report's and a new one) make the rates."""
    if previous is None:
        first = {view.name: view.samples for view in await snapshot(urls)}
        first_taken = time.monotonic()
        await asyncio.sleep(interval)
    else:
        first = {view.name: view.samples for view in previous.services}
        first_taken = previous.taken
    views = await snapshot(urls)
    taken = time.monotonic()
    seconds = max(1e-3, taken - first_taken)
    per_service = {view.name: rates(first.get(view.name, {}), view.samples, seconds) for view in views}
    return Report(datetime.now(UTC), taken, seconds, views, per_service)


def _number(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 or value == int(value) else f"{value:.1f}"


def _table(rows: list[list[str]], right: set[int], indent: str = "  ") -> list[str]:
    """Columns as wide as their widest cell; numbers (the `right` columns) right-aligned."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))] if rows else []
    return [
        indent
        + " ".join(
            cell.rjust(widths[i]) if i in right else cell.ljust(widths[i]) for i, cell in enumerate(row)
        ).rstrip()
        for row in rows
    ]


def _rate(view: ServiceView, rate: Samples, metric: str | None) -> str:
    """A service's summed rate of `metric`; "-" when it has none (capture consumes nothing) or is down."""
    if metric is None or not view.samples:
        return "-"
    return _number(sum(select(rate, metric).values()))


def _services(report: Report) -> list[str]:
    rows = [["service", "health", "ready", "in/s", "out/s", "url"]]
    for view in report.services:
        rate = report.rates.get(view.name, {})
        capture = view.name == "capture"
        in_metric = None if capture else "leadpipe_events_in_total"
        out_metric = "leadpipe_capture_events_published_total" if capture else "leadpipe_events_out_total"
        ready = "ready" if view.ready else "NOT READY" if view.up else "-"
        url = view.url
        if view.failing:
            url += f"  (failing: {', '.join(view.failing)})"
        if view.error:
            url += f"  ({view.error})"
        rows.append(
            [
                view.name,
                "up" if view.up else "DOWN",
                ready,
                _rate(view, rate, in_metric),
                _rate(view, rate, out_metric),
                url,
            ]
        )
    return _table(rows, right={3, 4}, indent="")


def _lag(report: Report) -> list[str]:
    rows = [
        [view.name, topic, _number(value)]
        for view in report.services
        for (topic,), value in sorted(select(view.samples, "leadpipe_consumer_lag", "topic").items())
    ]
    return ["consumer lag (records not yet processed)", *(_table(rows, {2}) or ["  (none reported yet)"])]


def _flows(report: Report) -> list[str]:
    rows = []
    for view in report.services:
        rate = report.rates.get(view.name, {})
        for direction, metric in (("in", "leadpipe_events_in_total"), ("out", "leadpipe_events_out_total")):
            for (topic,), value in sorted(select(rate, metric, "topic").items()):
                rows.append([view.name, direction, topic, _number(value)])
    return ["events per second by topic", *(_table(rows, {3}) or ["  (none)"])]


def _route(report: Report) -> list[str]:
    route = next((view for view in report.services if view.name == "route" and view.samples), None)
    if route is None:
        return ["route", "  (no metrics)"]
    open_slas = sum(select(route.samples, "leadpipe_route_sla_open").values())
    teams = select(route.samples, "leadpipe_route_open_leads", "team")
    handoffs = sum(select(route.samples, "leadpipe_route_handoffs_total").values())
    breaches = sum(select(route.samples, "leadpipe_route_sla_breaches_total").values())
    loads = ", ".join(f"{team} {_number(n)}" for (team,), n in sorted(teams.items())) or "none"
    lines = [
        "route",
        f"  open SLA clocks {_number(open_slas)}; open leads by team: {loads}",
        f"  hand-offs {_number(handoffs)}; SLA breaches {_number(breaches)}",
    ]
    crm = select(route.samples, "leadpipe_route_crm_deliveries_total", "outcome")
    if crm:  # a team has a crm_webhook_url
        waiting = sum(select(route.samples, "leadpipe_route_crm_waiting").values())
        counts = "; ".join(f"{outcome} {_number(crm.get((outcome,), 0.0))}" for outcome in CRM_SHOWN)
        lines.append(f"  CRM webhooks: {counts}; waiting {_number(waiting)}")
    return lines


def _dead_letters(report: Report) -> list[str]:
    rows = []
    for view in report.services:
        per_second = select(report.rates.get(view.name, {}), "leadpipe_dead_letters_total", "topic", "reason")
        totals = select(view.samples, "leadpipe_dead_letters_total", "topic", "reason")
        for (topic, reason), total in sorted(totals.items()):
            rows.append(
                [view.name, topic, reason, _number(total), _number(per_second.get((topic, reason), 0.0))]
            )
    return ["dead letters (total, per second)", *(_table(rows, {3, 4}) or ["  none"])]


def _memory(report: Report) -> list[str]:
    """Each worker's resident memory against its limit, and the keys its tables hold: the leads
    enrich, score and nurture keep in memory (services/runtime/memory.py)."""
    rows = [["service", "resident MB", "limit MB", "used", "table keys"]]
    for view in report.services:
        resident = sum(select(view.samples, "leadpipe_memory_resident_bytes").values())
        limit = sum(select(view.samples, "leadpipe_memory_limit_bytes").values())
        if not resident:
            continue
        keys = select(view.samples, "leadpipe_table_keys")
        used = f"{resident / limit:.0%}" if limit else "-"
        held = _number(sum(keys.values())) if keys else "-"
        rows.append([view.name, _number(resident / 1e6), _number(limit / 1e6) if limit else "-", used, held])
    return ["memory", *(_table(rows, {1, 2, 3, 4}) if len(rows) > 1 else ["  (no metrics)"])]


def _batches(report: Report) -> list[str]:
    """Each batched agent's batches over the interval: how many, their records, their handling and
    commit time, and its share of the wall clock on them (alert LeadpipeWorkerBusy above 90%)."""
    rows = [["service", "batches/s", "records", "handle ms", "commit ms", "busy"]]
    for view in report.services:
        rate = report.rates.get(view.name, {})
        if not sum(select(view.samples, "leadpipe_batch_records_count").values()):
            continue  # no batch yet: capture (it has no batched agent) or a service that is down
        batches = sum(select(rate, "leadpipe_batch_records_count").values())
        phases = select(rate, "leadpipe_batch_seconds_sum", "phase")
        handle, commit = phases.get(("handle",), 0.0), phases.get(("commit",), 0.0)
        if batches:
            records = sum(select(rate, "leadpipe_batch_records_sum").values()) / batches
            means = [_number(records), f"{1e3 * handle / batches:.1f}", f"{1e3 * commit / batches:.1f}"]
        else:
            means = ["-", "-", "-"]
        rows.append([view.name, _number(batches), *means, f"{handle + commit:.0%}"])
    lines = _table(rows, {1, 2, 3, 4, 5}) if len(rows) > 1 else ["  (no batch yet)"]
    return ["batches (means over the interval; busy: share of the time spent on them)", *lines]


def render(report: Report) -> str:
    title = f"leadpipe status at {report.at:%Y-%m-%d %H:%M:%S}Z (rates over {report.seconds:.1f}s)"
    sections = [
        [title],
        _services(report),
        _lag(report),
        _flows(report),
        _batches(report),
        _route(report),
        _memory(report),
        _dead_letters(report),
    ]
    return "\n\n".join("\n".join(section) for section in sections) + "\n"


async def watch(urls: Mapping[str, str], interval: float, every: float | None, out: TextIO) -> int:
    """Print one report, or one every `every` seconds until interrupted; 0 when all are healthy."""
    report = await collect(urls, interval)
    while True:
        if every is not None and out.isatty():
            out.write("\x1b[2J\x1b[H")
        out.write(render(report))
        out.flush()
        if every is None:
            return 0 if report.healthy else 1
        await asyncio.sleep(every)
        out.write("\n")
        report = await collect(urls, interval, previous=report)


def run(urls: Mapping[str, str], interval: float = 1.0, every: float | None = None) -> int:
    try:
        return asyncio.run(watch(urls, interval, every, sys.stdout))
    except KeyboardInterrupt:
        return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="where the dev stack runs")
    parser.add_argument("--port-base", type=int, default=8080, help="capture's port; the others follow")
    parser.add_argument(
        "--url",
        action="append",
        default=[],
        metavar="SERVICE=URL",
        help="a service's base URL, e.g. route=http://10.0.0.5:8083 (repeatable)",
    )
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between the two scrapes")
    parser.add_argument("--watch", type=float, default=None, metavar="N", help="refresh every N seconds")


def main(args: argparse.Namespace) -> int:
    """Exit 0 when every service is up and ready, 1 otherwise, 2 for bad arguments."""
    try:
        urls = default_urls(args.host, args.port_base) | parse_overrides(args.url)
    except ValueError as exc:
        print(f"leadpipe status: {exc}", file=sys.stderr)
        return 2
    if args.interval <= 0 or (args.watch is not None and args.watch <= 0):
        print("leadpipe status: --interval and --watch take a positive number of seconds", file=sys.stderr)
        return 2
    return run(urls, args.interval, args.watch)
