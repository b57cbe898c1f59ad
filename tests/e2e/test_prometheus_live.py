"""The operations views against one running pipeline: a real Prometheus scraping `leadpipe dev`, and
`leadpipe status`.

Prometheus (Debian's `prometheus` binary) runs with deploy/prometheus/prometheus.yml pointed at the
stack's ports (1 s scrapes) and deploy/prometheus/alerts.yml. Every Grafana panel's query and every
recording rule must then return data through the HTTP API, and every alert must be valid with data
behind each series it compares. Demo traffic supplies most of it; the test drives the rest: a
hand-off contacted by sales (first contact, SQL), one left to breach a 6-second SLA, a nurture mail
to a lead with confirmed consent, an unreadable record (dead letter) and an invalid event.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from schemas import Handoff, PrivacyRecord, PrivacyRequestKind, SalesActivity, SalesActivityKind, TopicName
from services.capture.domain import lead_identity
from services.devstack import status
from services.devstack.processes import free_port
from services.runtime.codec import encode
from tests.dashboards import PROMETHEUS, panel_queries, rule_queries, usage
from tests.e2e.stack import Stack, start_stack
from tests.kafka import consume_until, produce

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
SLA_SECONDS = 6.0
ROUTING: dict[str, Any] = {
    "teams": [
        {
            "name": "dach",
            "lead": "lead-dach@example.com",
            "working_hours": None,
            "reps": [{"id": "anna", "capacity": 50}, {"id": "ben", "capacity": 50}],
        },
        {"name": "queue", "working_hours": None, "reps": [{"id": "sdr", "capacity": 50}]},
    ],
    "rules": [{"name": "dach", "team": "dach", "match": {"countries": ["DE", "AT", "CH"]}}],
    "account_owners": {},
    "fallback_team": "queue",
    "sla": {
        "tiers": [{"name": "hot", "minutes": SLA_SECONDS / 60, "temperatures": ["hot"]}],
        "default_tier": "hot",
        "escalation": ["head-of-sales@example.com"],
    },
}
DATA_WITHIN = 300.0  # seconds for every query to have data, on a busy 2-core machine
# What `_drive` makes happen, seen in the raw series (panels over a window may show 0 for a counter
# Prometheus first saw at 1, so these prove the events arrived).
DRIVEN = {
    "a nurture mail": "sum(leadpipe_nurture_messages_sent_total) > 0",
    "an invalid event": 'sum(leadpipe_capture_events_rejected_total{reason="validation_failed"}) > 0',
    "an unreadable record": 'sum(leadpipe_dead_letters_total{service="enrich"}) > 0',
    "an SLA breach": "sum(leadpipe_route_sla_breaches_total) > 0",
    "a first contact": 'sum(leadpipe_route_lead_response_seconds_count{channel="web"}) > 0',
    "a lead accepted by sales": 'sum(leadpipe_funnel_stage_entries_total{stage="sql", channel="web"}) > 0',
    "a campaign's leads": 'sum(leadpipe_funnel_leads_captured_total{campaign="spring-launch"}) > 0',
}


def _nurture_rules(path: Path) -> None:
    """The shipped sequences with the first welcome mail after 2 s and no quiet hours."""
    rules = yaml.safe_load((ROOT / "config" / "nurture.yaml").read_text())
    rules.pop("quiet_hours", None)
    rules["sequences"]["welcome"]["steps"][0]["delay"] = "PT2S"
    path.write_text(yaml.safe_dump(rules))


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp_path = tmp_path_factory.mktemp("operations")
    routing, nurture = tmp_path / "routing.yaml", tmp_path / "nurture.yaml"
    routing.write_text(yaml.safe_dump(ROUTING))
    _nurture_rules(nurture)
    env = {
        "ROUTE_RULES_FILE": str(routing),
        "ROUTE_SLA_CHECK_INTERVAL": "0.5",
        "NURTURE_RULES_FILE": str(nurture),
        "NURTURE_TICK_SECONDS": "0.5",
    }
    running = start_stack(tmp_path, "--demo-rate", "5", env=env)
    try:
        running.wait_for("leadpipe is ready", within=240)
        yield running
    finally:
        running.kill()


def _service_ports(stack: Stack) -> dict[str, int]:
    return {
        name: int(url.rsplit(":", 1)[1])
        for name, url in status.default_urls(port_base=stack.port_base).items()
    }


def _prometheus_config(stack: Stack, path: Path) -> None:
    """deploy/prometheus/prometheus.yml, its targets moved to the stack's ports and scraped every second."""
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    ports = _service_ports(stack)
    config["global"].update(scrape_interval="1s", scrape_timeout="1s", evaluation_interval="1s")
    config["rule_files"] = [str(PROMETHEUS / name) for name in config["rule_files"]]
    for job in config["scrape_configs"]:
        for group in job["static_configs"]:
            group["targets"] = [f"127.0.0.1:{ports[target.split(':')[0]]}" for target in group["targets"]]
    path.write_text(yaml.safe_dump(config))


@pytest.fixture(scope="module")
def prometheus(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip(
            "the prometheus binary is not installed (`make tools` installs Debian's prometheus package)"
        )
    tmp_path = tmp_path_factory.mktemp("prometheus")
    config = tmp_path / "prometheus.yml"
    _prometheus_config(stack, config)
    port = free_port()
    log = tmp_path / "prometheus.log"
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and process.poll() is None:
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(f"{url}/-/ready", timeout=2) as answer,
            ):
                if answer.status == 200:
                    break
            time.sleep(0.3)
        else:
            raise AssertionError(f"prometheus did not start:\n{log.read_text()[-3000:]}")
        yield url
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# --- driving the events demo traffic does not make on its own --------------------------------


async def _post(stack: Stack, event: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{stack.capture_url}/v1/events", json=event, headers={"X-API-Key": "dev-key"}
        ) as answer,
    ):
        return answer.status, await answer.json()


def _event(kind: str, email: str, **extra: Any) -> dict[str, Any]:
    return {
        "event_id": uuid.uuid4().hex,
        "type": kind,
        "occurred_at": datetime.now(UTC).isoformat(),
        "contact": {"email": email, "job_title": "VP Sales", "country": "Germany"},
        "source": {"channel": "web", "utm_source": "google", "utm_campaign": "spring-launch"},
        **extra,
    }


async def _handoff_for(stack: Stack, lead_id: str) -> Handoff:
    records = await consume_until(
        stack.bootstrap, TopicName.HANDOFFS, lambda rs: any(r.key == lead_id.encode() for r in rs), within=120
    )
    mine = [r.value for r in records if r.key == lead_id.encode()]
    assert mine, f"no hand-off for {lead_id}"
    return Handoff.model_validate_json(mine[0])


async def _drive(stack: Stack) -> None:
    # Nurture: consent confirmed first, then an information-qualified lead enrols in "welcome".
    email = f"nora.{uuid.uuid4().hex[:6]}@christoph-auch.com"
    nurtured, _ = lead_identity(email, None)
    consent = PrivacyRecord(
        event_id=uuid.uuid4().hex,
        occurred_at=datetime.now(UTC),
        lead_id=nurtured,
        kind=PrivacyRequestKind.CONSENT_CONFIRMED,
    )
    await produce(stack.bootstrap, TopicName.PRIVACY, [(nurtured.encode(), encode(consent))])
    download = _event("content_download", email, consent={"marketing_email": True, "text_version": "2026-01"})
    download["contact"]["job_title"] = "Marketing Manager"
    code, body = await _post(stack, download)
    assert code == 202, body

    # An invalid event (a capture rejection) and an unreadable record (a dead letter in enrich).
    code, body = await _post(stack, {"type": "demo_request", "occurred_at": "yesterday"})
    assert code == 422, body
    await produce(stack.bootstrap, TopicName.INTERACTIONS, [(b"e2e-garbage", b"{not json")])

    # Two hand-raisers: sales accepts one (first contact, SQL); the other breaches its SLA.
    leads = []
    for name in ("marie", "jonas"):
        code, body = await _post(
            stack, _event("demo_request", f"{name}.{uuid.uuid4().hex[:6]}@christoph-auch.com")
        )
        assert code == 202, body
        leads.append(body["lead_id"])
    handoff = await _handoff_for(stack, leads[0])
    accepted = SalesActivity(
        event_id=uuid.uuid4().hex,
        occurred_at=datetime.now(UTC),
        lead_id=leads[0],
        activity=SalesActivityKind.ACCEPTED,
        rep_id=handoff.assignee.rep_id,
    )
    await produce(stack.bootstrap, TopicName.SALES_ACTIVITY, [(leads[0].encode(), encode(accepted))])
    await _handoff_for(stack, leads[1])


# --- asking Prometheus ---------------------------------------------------------------------


async def _query(session: aiohttp.ClientSession, url: str, expr: str) -> list[Any]:
    async with session.get(f"{url}/api/v1/query", params={"query": expr}) as answer:
        body = await answer.json()
    assert body["status"] == "success", f"{expr}: {body.get('errorType')}: {body.get('error')}"
    data = body["data"]
    if data["resultType"] in ("vector", "matrix"):
        return list(data["result"])
    return [data["result"]]  # scalar or string: a value, never empty


async def _empty_queries(url: str) -> dict[str, str]:
    """Every query without data yet (where -> expression); invalid queries fail at once."""
    rules = rule_queries()
    empty: dict[str, str] = {}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        for where, expr in DRIVEN.items():
            if not await _query(session, url, expr):
                empty[f"driven: {where}"] = expr
        for query in [*panel_queries(), *rules]:
            result = await _query(session, url, query.expr)
            if query.kind == "alert":
                # the series an alert compares must have data even while the alert does not fire
                for series in sorted(usage(query.expr).series):
                    if not await _query(session, url, series):
                        empty[f"{query.where} (series {series})"] = series
            elif not result:
                empty[query.where] = query.expr
            for series in result:
                missing = query.legend_labels - set(series.get("metric", {}))
                if missing:
                    empty[f"{query.where} (legend needs {sorted(missing)})"] = query.expr
            if query.kind == "record" and not await _query(session, url, query.name):
                empty[f"{query.where} (recorded)"] = query.name
    return empty


async def _rule_health(url: str) -> dict[str, str]:
    async with aiohttp.ClientSession() as session, session.get(f"{url}/api/v1/rules") as answer:
        body = await answer.json()
    return {
        rule["name"]: rule["health"] + (f": {rule['lastError']}" if rule.get("lastError") else "")
        for group in body["data"]["groups"]
        for rule in group["rules"]
    }


async def _targets(url: str) -> dict[str, str]:
    async with aiohttp.ClientSession() as session, session.get(f"{url}/api/v1/targets") as answer:
        body = await answer.json()
    return {t["labels"]["job"]: t["health"] for t in body["data"]["activeTargets"]}


async def test_every_panel_and_rule_has_data_in_a_live_prometheus(stack: Stack, prometheus: str) -> None:
    await _drive(stack)
    deadline = time.monotonic() + DATA_WITHIN
    empty: dict[str, str] = {}
    while time.monotonic() < deadline:
        empty = await _empty_queries(prometheus)
        health = await _rule_health(prometheus)
        if not empty and health and all(value == "ok" for value in health.values()):
            break
        await asyncio.sleep(3)
    report = "\n".join(f"  {where}: {expr}" for where, expr in sorted(empty.items()))
    assert not empty, f"no data after {DATA_WITHIN:.0f}s for:\n{report}"
    assert set(health) == {q.name for q in rule_queries()}
    assert all(value == "ok" for value in health.values()), health
    targets = await _targets(prometheus)
    assert targets == {f"leadpipe-{name}": "up" for name in _service_ports(stack)}, targets


# --- leadpipe status -----------------------------------------------------------------------


async def test_status_shows_every_service_healthy_with_event_rates(stack: Stack) -> None:
    urls = status.default_urls(port_base=stack.port_base)
    deadline = time.monotonic() + 120
    report = await status.collect(urls, interval=2.0)
    while time.monotonic() < deadline:
        published = sum(
            status.select(report.rates["capture"], "leadpipe_capture_events_published_total").values()
        )
        consumed = sum(status.select(report.rates["enrich"], "leadpipe_events_in_total").values())
        enrich = next(view for view in report.services if view.name == "enrich")
        lag = status.select(enrich.samples, "leadpipe_consumer_lag", "topic")  # every 5 s, once fetched
        if report.healthy and published > 0 and consumed > 0 and lag:
            break
        report = await status.collect(urls, interval=2.0, previous=report)
    assert report.healthy, status.render(report)
    assert published > 0 and consumed > 0, status.render(report)
    assert (str(TopicName.INTERACTIONS),) in lag, status.render(report)

    # The command itself, as a person runs it: plain text, exit code 0 while all are healthy.
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "services.cli", "status", "--port-base", str(stack.port_base)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    rows = [line.split()[:3] for line in done.stdout.splitlines()]
    for name, url in urls.items():
        assert [name, "up", "ready"] in rows and url in done.stdout, done.stdout
    assert ["enrich", "in", "leads.interactions"] in rows, done.stdout
    batches = done.stdout.split("\n\nbatches (")[1].split("\n\n")[0]
    batched = {line.split()[0] for line in batches.splitlines()[2:]}
    assert "enrich" in batched and batched <= {"enrich", "score", "route", "nurture"}, done.stdout


async def test_every_service_froze_its_start_up_heap(stack: Stack) -> None:
    """Once ready, each service's start-up heap is out of the garbage collector's full collections
    (services/runtime/heap.py); the standard collector metrics show the collections that remain."""
    urls = status.default_urls(port_base=stack.port_base)
    deadline = time.monotonic() + 120
    views = await status.snapshot(urls)
    while not all(view.ready for view in views) and time.monotonic() < deadline:
        await asyncio.sleep(2)
        views = await status.snapshot(urls)
    assert all(view.ready for view in views), [(view.name, view.failing, view.error) for view in views]
    assert {view.name for view in views} == set(urls)
    for view in views:
        frozen = status.select(view.samples, "leadpipe_gc_frozen_objects")
        assert frozen.get((), 0) > 10_000, (view.name, frozen)
        full = status.select(view.samples, "leadpipe_gc_collections_total", "service", "generation")
        assert (view.name, "2") in full, (view.name, full)  # labelled wherever Prometheus runs


def test_status_watch_refreshes_until_interrupted(stack: Stack) -> None:
    """--watch prints a report every N seconds until Ctrl-C; --url moves one service (here: in place)."""
    urls = status.default_urls(port_base=stack.port_base)
    watching = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "services.cli",
            "status",
            "--port-base",
            str(stack.port_base),
            "--url",
            f"route={urls['route']}",
            "--watch",
            "1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    guard = threading.Timer(120, watching.kill)  # a hung command must not hang the suite
    guard.start()
    try:
        seen = ""
        assert watching.stdout is not None
        deadline = time.monotonic() + 60
        while seen.count("leadpipe status at") < 2 and time.monotonic() < deadline:
            line = watching.stdout.readline()
            if not line:
                break
            seen += line
        assert seen.count("leadpipe status at") >= 2, seen
    finally:
        watching.send_signal(signal.SIGINT)
        output, _ = watching.communicate(timeout=30)
        guard.cancel()
    assert watching.returncode == 0, seen + output
