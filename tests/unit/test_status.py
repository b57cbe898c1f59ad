"""`leadpipe status`'s reading of the Prometheus text format, its rates and its plain-text report."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from services.devstack.status import (
    Report,
    ServiceView,
    default_urls,
    parse_metrics,
    parse_overrides,
    rates,
    render,
    select,
)
from services.route.metrics import route_metrics
from services.runtime.memory import MemoryCollector, TableKeysCollector
from services.runtime.metrics import batch_metrics, common_metrics


def _route_exposition(events: int, dead: int) -> str:
    """Route's real metrics objects, so the report reads the names the service exports."""
    registry = CollectorRegistry()
    common = common_metrics("route", registry)
    route = route_metrics(registry)
    common.events_in.labels("route", "leads.stage-changes").inc(events)
    common.events_out.labels("route", "leads.handoffs").inc(events // 2)
    common.consumer_lag.labels("route", "leads.stage-changes", "0").set(3)
    common.consumer_lag.labels("route", "leads.stage-changes", "1").set(4)
    common.dead_letters.labels("route", "leads.stage-changes", "invalid_json").inc(dead)
    route.open_slas.set(2)
    route.open_leads.labels("dach").set(5)
    route.handoffs.labels("dach", "hot").inc(7)
    route.breaches.labels("dach", "hot").inc(1)
    route.crm_deliveries.labels("dach", "delivered").inc(6)
    route.crm_deliveries.labels("na", "delivered").inc(1)
    route.crm_deliveries.labels("dach", "dead_lettered").inc(1)
    route.crm_waiting.labels("dach").set(2)
    return generate_latest(registry).decode()


def test_parse_and_group_like_sum_by() -> None:
    samples = parse_metrics(_route_exposition(events=10, dead=1))
    assert select(samples, "leadpipe_consumer_lag", "topic") == {("leads.stage-changes",): 7.0}
    assert select(samples, "leadpipe_events_in_total") == {(): 10.0}
    assert select(samples, "leadpipe_route_handoffs_total", "team", "tier") == {("dach", "hot"): 7.0}


def test_rates_are_increases_per_second_and_survive_a_restart() -> None:
    before = parse_metrics(_route_exposition(events=10, dead=1))
    after = parse_metrics(_route_exposition(events=30, dead=1))
    per_second = rates(before, after, 2.0)
    assert select(per_second, "leadpipe_events_in_total") == {(): 10.0}
    assert select(per_second, "leadpipe_dead_letters_total") == {(): 0.0}
    restarted = rates(after, parse_metrics(_route_exposition(events=4, dead=0)), 2.0)
    assert select(restarted, "leadpipe_events_in_total") == {(): 2.0}


def test_url_overrides() -> None:
    urls = default_urls(port_base=9000) | parse_overrides(["route=http://10.0.0.5:8083/"])
    assert urls["capture"] == "http://127.0.0.1:9000"
    assert urls["nurture"] == "http://127.0.0.1:9004"
    assert urls["route"] == "http://10.0.0.5:8083"
    with pytest.raises(ValueError, match="unknown service 'router'"):
        parse_overrides(["router=http://x:1"])
    with pytest.raises(ValueError, match="expected service=http://host:port"):
        parse_overrides(["route:8083"])


def test_report_shows_health_lag_rates_slas_and_dead_letters() -> None:
    before = parse_metrics(_route_exposition(events=10, dead=1))
    after = parse_metrics(_route_exposition(events=30, dead=3))
    route = ServiceView("route", "http://127.0.0.1:8083", up=True, ready=True, samples=after)
    score = ServiceView("score", "http://127.0.0.1:8082", up=True, ready=False, failing=["partitions"])
    capture = ServiceView("capture", "http://127.0.0.1:8080", error="not reachable")
    report = Report(
        datetime(2026, 11, 21, 9, 30, tzinfo=UTC),
        0.0,
        2.0,
        [capture, score, route],
        {"route": rates(before, after, 2.0)},
    )
    text = render(report)
    rows = [line.split() for line in text.splitlines()]
    assert not report.healthy
    assert ["capture", "DOWN", "-", "-", "-", "http://127.0.0.1:8080", "(not", "reachable)"] in rows
    assert [
        "score",
        "up",
        "NOT",
        "READY",
        "-",
        "-",
        "http://127.0.0.1:8082",
        "(failing:",
        "partitions)",
    ] in rows
    assert ["route", "up", "ready", "10", "5", "http://127.0.0.1:8083"] in rows
    assert ["route", "leads.stage-changes", "7"] in rows  # lag, summed over partitions
    assert ["route", "in", "leads.stage-changes", "10"] in rows
    assert ["route", "out", "leads.handoffs", "5"] in rows
    assert "open SLA clocks 2; open leads by team: dach 5" in text
    assert "hand-offs 7; SLA breaches 1" in text
    assert "CRM webhooks: delivered 7; retried 0; dead_lettered 1; waiting 2" in text
    assert ["route", "leads.stage-changes", "invalid_json", "3", "1"] in rows
    # columns line up: every row of the service table starts its url at the same place
    table = text.split("\n\n")[1].splitlines()
    assert len({line.index("http") for line in table[1:]}) == 1, table


def _score_memory_exposition(resident: int, limit: int | None, leads: int) -> str:
    """Score's memory series from the collectors the services register."""
    registry = CollectorRegistry()
    registry.register(MemoryCollector("score", resident=lambda: resident, limit=lambda: limit))
    tables = [("lead-scores", dict.fromkeys(range(leads))), ("erased-leads", {1: 1, 2: 2})]
    registry.register(TableKeysCollector("score", lambda: tables))
    return generate_latest(registry).decode()


def test_report_shows_memory_against_the_limit_and_the_keys_held() -> None:
    score = ServiceView(
        "score",
        "http://127.0.0.1:8082",
        up=True,
        ready=True,
        samples=parse_metrics(_score_memory_exposition(1_700_000_000, 2_000_000_000, 300)),
    )
    no_limit = ServiceView(
        "enrich",
        "http://127.0.0.1:8081",
        up=True,
        ready=True,
        samples=parse_metrics(_score_memory_exposition(50_000_000, None, 0).replace("score", "enrich")),
    )
    down = ServiceView("route", "http://127.0.0.1:8083", error="not reachable")
    report = Report(datetime(2026, 12, 5, 9, 30, tzinfo=UTC), 0.0, 1.0, [score, no_limit, down], {})
    text = render(report)
    section = text.split("\n\nmemory\n")[1].split("\n\n")[0]
    rows = [line.split() for line in section.splitlines()]
    assert rows == [
        ["service", "resident", "MB", "limit", "MB", "used", "table", "keys"],
        ["score", "1,700", "2,000", "85%", "302"],
        ["enrich", "50", "-", "-", "2"],  # no limit known; two erased leads held
    ]


def _batches_exposition(service: str, batches: list[tuple[int, float, float]]) -> str:
    """A service's batch metrics as `run_batches` observes them: (records, handling, commit) each."""
    common = common_metrics(service)
    metrics = batch_metrics(service, common.registry)
    for records, handle, commit in batches:
        metrics.records.observe(records)
        metrics.handling.observe(handle)
        metrics.commit.observe(commit)
    return common.exposition().decode()


def test_report_shows_each_batched_agents_batches_and_how_busy_they_keep_it() -> None:
    first = [(10, 0.01, 0.005)]
    before = parse_metrics(_batches_exposition("enrich", first))
    # four more batches in 0.5 s: 240 records, 300 ms of handling and 100 of committing
    more = [(60, 0.075, 0.025)] * 4
    after = parse_metrics(_batches_exposition("enrich", first + more))
    enrich = ServiceView("enrich", "http://127.0.0.1:8081", up=True, ready=True, samples=after)
    idle = parse_metrics(_batches_exposition("score", first))
    score = ServiceView("score", "http://127.0.0.1:8082", up=True, ready=True, samples=idle)
    none = parse_metrics(_batches_exposition("capture", []))  # the series, never observed
    capture = ServiceView("capture", "http://127.0.0.1:8080", up=True, ready=True, samples=none)
    per_second = {"enrich": rates(before, after, 0.5), "score": rates(idle, idle, 0.5)}
    report = Report(datetime(2026, 12, 7, 9, 30, tzinfo=UTC), 0.0, 0.5, [capture, enrich, score], per_second)
    section = render(report).split("\n\nbatches (")[1].split("\n\n")[0]
    rows = [line.split() for line in section.splitlines()[1:]]
    assert rows == [
        ["service", "batches/s", "records", "handle", "ms", "commit", "ms", "busy"],
        ["enrich", "8", "60", "75.0", "25.0", "80%"],
        ["score", "0", "-", "-", "-", "0%"],  # no batch in the interval; capture none at all
    ]
