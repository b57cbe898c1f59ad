"""Privacy through the real services: capture, enrich, score, route and nurture (with its mailer) as
in-process apps on the real broker and Redis, logging at DEBUG as `LEADPIPE_LOG_LEVEL=DEBUG` sets.

Two people with unique e-mail, names and phone: a hot hand-raiser (handed to sales) and a nurtured
lead who first browsed anonymously, confirmed consent and got a nurture mail. Both are exported,
then erased through `POST /v1/privacy/erase`; the tests then look for their e-mail, names, phone,
anonymous id and lead ids in every Redis key and value of the run, every faust table, every log
record and every /metrics page.
"""

from __future__ import annotations

import asyncio
import csv
import json
import logging
import random
import string
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp.test_utils import TestClient, TestServer
from aiosmtpd.controller import Controller
from redis.asyncio import Redis

from schemas import PrivacyRecord, PrivacyRequestKind, TopicName
from services.capture import consent
from services.capture.app import create_app as create_capture
from services.capture.domain import lead_identity
from services.capture.settings import CaptureSettings
from services.devstack.broker import EmbeddedBroker
from services.devstack.processes import free_port
from services.enrich.agents import INBOX
from services.enrich.app import create_app as create_enrich
from services.enrich.firmographics import DEFAULT_COMPANIES
from services.enrich.settings import EnrichSettings
from services.nurture.app import create_app as create_nurture
from services.nurture.settings import NurtureSettings
from services.route.app import RouteService
from services.route.app import create_app as create_route
from services.route.settings import RouteSettings
from services.runtime import consent_tokens, logs
from services.runtime.stream_app import StreamService
from services.runtime.topics import ensure_pipeline_topics, ensure_topics
from services.score.app import create_app as create_score
from services.score.settings import ScoreSettings
from tests.eventually import stopped
from tests.kafka import consume_until

pytestmark = pytest.mark.integration

ADMIN = {"X-API-Key": "privacy-admin"}
CLIENT = {"X-API-Key": "privacy-client"}
SALT = "pipeline-privacy-salt"
CONSENT_SECRET = "pipeline-consent-secret"
ERASERS = ("capture", "enrich", "score", "route", "nurture")
"""Every service reports its erasure."""

ROUTING: dict[str, Any] = {
    "teams": [
        {"name": "dach", "working_hours": None, "reps": [{"id": "anna", "capacity": 10}]},
        {"name": "queue", "working_hours": None, "reps": [{"id": "sdr", "capacity": 10}]},
    ],
    "rules": [{"name": "dach", "team": "dach", "match": {"countries": ["DE"]}}],
    "account_owners": {},
    "fallback_team": "queue",
    "sla": {"tiers": [{"name": "hot", "minutes": 60, "temperatures": ["hot"]}], "default_tier": "hot"},
}
NURTURE = """
frequency_cap: {max_messages: 10, window: PT1M}
sequences:
  welcome:
    enrol: {stages: [iql], temperatures: [cold, warm]}
    steps:
      - {template_id: welcome-1, delay: 3, after: enrolment}
      - {template_id: welcome-2, delay: P1D}
"""


def _word() -> str:
    return "".join(random.choices(string.ascii_lowercase, k=9)).capitalize()


def _digits() -> str:
    return "".join(random.choices(string.digits, k=8))


def _german_company() -> str:
    with DEFAULT_COMPANIES.open(encoding="utf-8") as handle:
        return next(row["domain"] for row in csv.DictReader(handle) if row["domain"].endswith(".de"))


@dataclass(frozen=True)
class Person:
    email: str
    first_name: str
    last_name: str
    phone_digits: str
    anonymous_id: str | None = None

    @property
    def lead_id(self) -> str:
        return lead_identity(self.email, None)[0]

    @property
    def anonymous_lead_id(self) -> str | None:
        return lead_identity(None, self.anonymous_id)[0] if self.anonymous_id else None

    @property
    def phone(self) -> str:
        return f"+49 30 {self.phone_digits}"

    def personal_data(self) -> list[str]:
        """What must never be logged: e-mail, names, phone (as given and normalised), online id."""
        found = [self.email, self.first_name, self.last_name, self.phone, f"+4930{self.phone_digits}"]
        return [*found, self.anonymous_id] if self.anonymous_id else found

    def identifiers(self) -> list[str]:
        """Everything that must be gone after erasure: personal data and the lead ids."""
        ids = [self.lead_id, self.anonymous_lead_id]
        return [*self.personal_data(), *(i for i in ids if i)]


class LeakFinder(logging.Handler):
    """Every record any logger emits, checked for personal data as it is formatted."""

    def __init__(self, needles: list[str]) -> None:
        super().__init__(logging.DEBUG)
        self.needles = [n.lower() for n in needles]
        self.records = 0
        self.leaks: list[tuple[str, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records += 1
        try:
            text = record.getMessage()
        except Exception:  # a record whose arguments do not format is still looked at
            text = f"{record.msg!r} {record.args!r}"
        if record.exc_info:
            text += logging.Formatter().formatException(record.exc_info)
        lowered = text.lower()
        if any(needle in lowered for needle in self.needles):
            self.leaks.append((record.name, text[:300]))


class Mailbox:
    def __init__(self) -> None:
        self.recipients: list[str] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.recipients.extend(envelope.rcpt_tos)
        return "250 OK"


@dataclass
class Run:
    """What the module's one pipeline run produced, for the tests to examine."""

    hot: Person
    nurtured: Person
    exports: dict[str, dict[str, Any]] = field(default_factory=dict)
    erase_requests: dict[str, str] = field(default_factory=dict)  # lead id -> request id
    privacy_records: list[PrivacyRecord] = field(default_factory=list)
    erasure_logs: dict[str, dict[str, Any]] = field(default_factory=dict)
    redis_dump: dict[str, str] = field(default_factory=dict)
    tables: dict[str, list[tuple[Any, Any]]] = field(default_factory=dict)
    metrics: dict[str, str] = field(default_factory=dict)
    logs: LeakFinder = field(default_factory=lambda: LeakFinder([]))
    consent_proof: dict[str, Any] | None = None


async def eventually(check: Callable[[], Awaitable[Any]], what: str, within: float = 90.0) -> Any:
    deadline = time.monotonic() + within
    while True:
        result = await check()
        if result:
            return result
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.25)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def dump_redis(redis: Redis, patterns: list[str]) -> dict[str, str]:
    """Every key of this run with its whole value, whatever its type, as text."""
    dump: dict[str, str] = {}
    for pattern in patterns:
        async for raw_key in redis.scan_iter(match=pattern, count=1000):
            key = raw_key.decode() if isinstance(raw_key, bytes) else str(raw_key)
            kind = _text(await redis.type(key))
            value: Any
            if kind == "string":
                value = await redis.get(key)
            elif kind == "hash":
                value = await redis.hgetall(key)
            elif kind == "zset":
                value = await redis.zrange(key, 0, -1, withscores=True)
            elif kind == "set":
                value = await redis.smembers(key)
            elif kind == "list":
                value = await redis.lrange(key, 0, -1)
            else:
                value = kind
            dump[key] = repr(value)
    return dump


@dataclass
class Pipeline:
    """The five services of one run, their SMTP server and a Redis client for looking around."""

    suffix: str
    client: TestClient[Any, Any]
    apps: list[StreamService]
    route: RouteService
    redis: Redis
    smtp: Controller
    mailbox: Mailbox
    broker: EmbeddedBroker
    started: list[StreamService] = field(default_factory=list)

    @classmethod
    def build(cls, broker: EmbeddedBroker, redis_url: str, tmp: Path) -> Pipeline:
        suffix = f".p{uuid.uuid4().hex[:10]}"
        routing = tmp / "routing.yaml"
        routing.write_text(yaml.safe_dump(ROUTING))
        rules = tmp / "nurture.yaml"
        rules.write_text(NURTURE)
        common: dict[str, Any] = {"broker_url": broker.url, "redis_url": redis_url, "topic_suffix": suffix}
        mailbox, smtp_port = Mailbox(), free_port()
        capture = CaptureSettings(
            **common,
            api_keys="privacy-client",
            admin_keys="privacy-admin",
            privacy_salt=SALT,
            consent_secret=CONSENT_SECRET,
            export_timeout=6,
        )
        route = create_route(
            RouteSettings(
                **common,
                web_port=free_port(),
                rules_file=routing,
                redis_prefix=f"leadpipe:route{suffix}:",
                sla_check_interval=0.5,
            )
        )
        nurture = NurtureSettings(
            **common,
            web_port=free_port(),
            rules_file=rules,
            tick_seconds=0.2,
            smtp_port=smtp_port,
            smtp_retry_max_seconds=1,
        )
        apps = [
            create_enrich(EnrichSettings(**common, web_port=free_port())),
            create_score(ScoreSettings(**common, web_port=free_port())),
            route,
            create_nurture(nurture),
        ]
        return cls(
            suffix=suffix,
            client=TestClient(TestServer(create_capture(capture), access_log=None)),
            apps=apps,
            route=route,
            redis=Redis.from_url(redis_url),
            smtp=Controller(mailbox, hostname="127.0.0.1", port=smtp_port),
            mailbox=mailbox,
            broker=broker,
        )

    def app(self, name: str) -> StreamService:
        return next(app for app in self.apps if app.name == name)

    def row(self, service: str, table: str, key: str | None) -> Any:
        assert key is not None
        found: Any = self.app(service).app.tables[table]
        return found.get(key) if found.get(key) is not None else found.get(key.encode())

    async def start(self) -> None:
        settings = self.apps[0].settings
        await ensure_pipeline_topics(settings)
        await ensure_topics(self.broker.bootstrap_servers, [settings.topic(INBOX)], settings.topic_partitions)
        self.smtp.start()
        await self.client.start_server()
        for app in self.apps:
            await app.app.start()
            self.started.append(app)

    async def stop(self) -> None:
        for app in reversed(self.started):
            await stopped(app)
        await self.route.close()
        await self.client.close()
        await self.redis.aclose()
        self.smtp.stop()


@pytest.fixture(scope="module")
async def run(
    broker: EmbeddedBroker, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Run]:
    domain = _german_company()
    hot = Person(f"{_word().lower()}.{_word().lower()}@{domain}", _word(), _word(), _digits())
    nurtured = Person(
        f"{_word().lower()}@example.org", _word(), _word(), _digits(), anonymous_id=f"anon-{uuid.uuid4().hex}"
    )
    finder = LeakFinder([*hot.personal_data(), *nurtured.personal_data()])
    result = Run(hot=hot, nurtured=nurtured, logs=finder)
    root = logging.getLogger()
    watched = [root, *(logging.getLogger(name) for name in (*logs.HOT_PATH_LOGGERS, "aiohttp", "redis"))]
    levels = {logger.name: logger.level for logger in watched}
    root.addHandler(finder)
    logs.configure("DEBUG")  # what every service does with LEADPIPE_LOG_LEVEL=DEBUG
    pipeline = Pipeline.build(broker, redis_url, tmp_path_factory.mktemp("privacy"))
    try:
        await pipeline.start()
        await _live(pipeline, result)
        await _settled(pipeline, result)
        await _export_and_erase(pipeline, result)
        await _erased(pipeline, result)
        await _look_everywhere(pipeline, result)
        yield result
    finally:
        await pipeline.stop()
        root.removeHandler(finder)
        for logger in watched:
            logger.setLevel(levels[logger.name])


async def _live(pipeline: Pipeline, result: Run) -> None:
    """The two people's traffic through capture, as a website and a form would send it."""
    hot, nurtured = result.hot, result.nurtured
    now = datetime.now(UTC)

    async def post(event: dict[str, Any]) -> None:
        answer = await pipeline.client.post("/v1/events", json=event, headers=CLIENT)
        assert answer.status == 202, await answer.text()

    await post(
        {
            "event_id": f"pv-{uuid.uuid4().hex}",
            "type": "page_view",
            "occurred_at": now.isoformat(),
            "anonymous_id": nurtured.anonymous_id,
            "properties": {"url": "/blog/privacy"},
        }
    )

    async def visitor_known() -> bool:
        return pipeline.row("enrich", "enrich-leads", nurtured.anonymous_lead_id) is not None

    await eventually(visitor_known, "the anonymous visitor in enrich")
    await post(
        {
            "event_id": f"dl-{uuid.uuid4().hex}",
            "type": "content_download",
            "occurred_at": (now + timedelta(seconds=1)).isoformat(),
            "anonymous_id": nurtured.anonymous_id,
            "contact": {
                "email": nurtured.email,
                "first_name": nurtured.first_name,
                "last_name": nurtured.last_name,
                "phone": nurtured.phone,
            },
            "consent": {"marketing_email": True, "text_version": "2026-01"},
            "properties": {"asset_id": "privacy-guide"},
        }
    )
    token = consent_tokens.make_token(nurtured.lead_id, "2026-01", now + timedelta(days=1), CONSENT_SECRET)
    assert (await pipeline.client.post("/v1/consent/confirm", data={"token": token})).status == 200
    await post(
        {
            "event_id": f"demo-{uuid.uuid4().hex}",
            "type": "demo_request",
            "occurred_at": now.isoformat(),
            "contact": {
                "email": hot.email,
                "first_name": hot.first_name,
                "last_name": hot.last_name,
                "phone": hot.phone,
                "job_title": "VP Sales",
                "country": "Germany",
            },
            "source": {"channel": "web", "utm_campaign": "privacy"},
        }
    )


async def _settled(pipeline: Pipeline, result: Run) -> None:
    """Wait until every service holds what it will hold about the two people."""
    hot, nurtured = result.hot, result.nurtured
    key = hot.lead_id.encode()
    handoffs = f"{TopicName.HANDOFFS.value}{pipeline.suffix}"
    bootstrap = pipeline.broker.bootstrap_servers
    records = await consume_until(bootstrap, handoffs, lambda rs: any(r.key == key for r in rs), within=90)
    assert any(r.key == key for r in records), "the hot lead was not handed off"
    expected = [
        ("enrich", "enrich-leads", hot.lead_id),
        ("enrich", "enrich-leads", nurtured.lead_id),
        ("score", "lead-scores", hot.lead_id),
        ("score", "lead-scores", nurtured.lead_id),
        ("nurture", "leads", hot.lead_id),
        ("nurture", "leads", nurtured.lead_id),
        ("nurture", "due", nurtured.lead_id),
    ]
    for service, table, lead in expected:

        async def held(s: str = service, t: str = table, k: str = lead) -> bool:
            return pipeline.row(s, t, k) is not None

        await eventually(held, f"{lead} in {service}:{table}")

    async def mailed() -> bool:
        return nurtured.email in pipeline.mailbox.recipients

    await eventually(mailed, "the nurture mail")


async def _export_and_erase(pipeline: Pipeline, result: Run) -> None:
    client = pipeline.client
    for person in (result.nurtured, result.hot):
        answer = await client.post("/v1/privacy/export", json={"email": person.email}, headers=ADMIN)
        assert answer.status == 200, await answer.text()
        result.exports[person.lead_id] = await answer.json()
    subjects = [
        (result.hot, {"email": result.hot.email.upper()}),
        (result.nurtured, {"lead_id": result.nurtured.lead_id}),
    ]
    for person, subject in subjects:
        answer = await client.post("/v1/privacy/erase", json={**subject, "reason": "test"}, headers=ADMIN)
        assert answer.status == 202, await answer.text()
        result.erase_requests[person.lead_id] = (await answer.json())["request_id"]


async def _erased(pipeline: Pipeline, result: Run) -> None:
    """Wait for every service's report for both people and the anonymous visitor, and for score."""
    leads = [result.hot.lead_id, result.nurtured.lead_id, result.nurtured.anonymous_lead_id]
    topic = f"{TopicName.PRIVACY.value}{pipeline.suffix}"

    def decoded(records: list[Any]) -> list[PrivacyRecord]:
        return [PrivacyRecord.model_validate_json(r.value) for r in records if r.value]

    def reported(records: list[Any]) -> bool:
        done = {
            (r.lead_id, r.service) for r in decoded(records) if r.kind is PrivacyRequestKind.ERASURE_COMPLETED
        }
        return all((lead, service) in done for lead in leads for service in ERASERS)

    records = await consume_until(pipeline.broker.bootstrap_servers, topic, reported, within=120)
    result.privacy_records = decoded(records)
    assert reported(records), [(r.kind.value, r.lead_id, r.service) for r in result.privacy_records]
    for lead in leads:

        async def gone(key: str | None = lead) -> bool:
            return pipeline.row("score", "lead-scores", key) is None

        await eventually(gone, f"{lead} erased by score")


async def _look_everywhere(pipeline: Pipeline, result: Run) -> None:
    """Collect every place the people could remain: Redis, faust tables, /metrics, the erasure log."""
    for lead_id, request_id in result.erase_requests.items():

        async def logged(request_id: str = request_id) -> dict[str, Any] | None:
            """The log as capture's consumer has it: it may still be reading the last completion."""
            entry = await pipeline.client.get(f"/v1/privacy/erasures/{request_id}", headers=ADMIN)
            body: dict[str, Any] = await entry.json()
            return body if set(body.get("completed", {})) >= set(ERASERS) else None

        result.erasure_logs[lead_id] = await eventually(
            logged, f"every service in the erasure log of {lead_id}"
        )
    subject = consent.subject_of(result.nurtured.lead_id, SALT)
    proof = await pipeline.redis.get(f"leadpipe:capture{pipeline.suffix}:consent:{subject}")
    result.consent_proof = json.loads(proof) if proof else None
    result.redis_dump = await dump_redis(pipeline.redis, [f"*{pipeline.suffix}*"])
    for app in pipeline.apps:
        for name, table in app.app.tables.items():
            result.tables[f"{app.name}:{name}"] = list(table.items())
    async with aiohttp.ClientSession() as session:
        for app in pipeline.apps:
            async with session.get(f"http://127.0.0.1:{app.settings.web_port}/metrics") as response:
                result.metrics[app.name] = await response.text()
    result.metrics["capture"] = await (await pipeline.client.get("/metrics")).text()


# --- the tests -----------------------------------------------------------------------------------------


def test_export_answers_from_every_service_that_holds_the_lead(run: Run) -> None:
    nurtured = run.exports[run.nurtured.lead_id]
    assert nurtured["lead_id"] == run.nurtured.lead_id
    assert nurtured["missing"] == []
    services = nurtured["services"]
    assert services["enrich"]["lead"]["profile"]["email"] == run.nurtured.email
    assert services["enrich"]["lead"]["merged"] == [run.nurtured.anonymous_lead_id]
    assert services["nurture"]["lead"]["email"] == run.nurtured.email
    assert services["nurture"]["next_step_due"] is not None
    assert services["score"]["lead_score"]["lifecycle"] in {"iql", "mql"}
    assert services["route"]["assignment"] is None  # never handed to sales
    proof = services["capture"]["consent_proof"]
    assert sorted(e["kind"] for e in proof["events"]) == ["consent_confirmed", "consent_given"]
    hot = run.exports[run.hot.lead_id]["services"]
    assert hot["route"]["assignment"]["state"]["handoff"]["lead_id"] == run.hot.lead_id
    assert hot["route"]["sla_deadline_ms"] is not None
    assert hot["enrich"]["lead"]["profile"]["first_name"] == run.hot.first_name


def test_every_service_reports_the_erasure_with_counts(run: Run) -> None:
    reports = [r for r in run.privacy_records if r.kind is PrivacyRequestKind.ERASURE_COMPLETED]
    first: dict[tuple[str | None, str | None], PrivacyRecord] = {}
    for record in reports:
        first.setdefault((record.lead_id, record.service), record)
    hot, nurtured = run.hot.lead_id, run.nurtured.lead_id
    assert first[(hot, "route")].erased == {
        "assignments": 1,
        "sla_deadlines": 1,
        "rep_load": 1,
        "crm_deliveries": 0,
    }
    assert first[(hot, "enrich")].erased["leads_table"] == 1
    assert first[(nurtured, "enrich")].erased["merged_leads"] == 1
    assert first[(nurtured, "nurture")].erased == {"leads_table": 1, "due_table": 1}
    assert first[(hot, "score")].erased == {"scores_table": 1}
    assert first[(nurtured, "capture")].erased["consent_proof_pseudonymised"] == 1
    assert first[(run.nurtured.anonymous_lead_id, "enrich")].erased["leads_table"] == 1
    for lead_id, request_id in run.erase_requests.items():
        assert first[(lead_id, "enrich")].in_reply_to == request_id
        log = run.erasure_logs[lead_id]
        assert set(log["completed"]) >= set(ERASERS), log
        assert "@" not in str(log)
    for record in reports:  # counts only: an erasure report never carries the data it erased
        text = record.model_dump_json().lower()
        assert not any(n.lower() in text for n in (*run.hot.personal_data(), *run.nurtured.personal_data()))


def test_erased_leads_are_nowhere_in_redis_but_the_pseudonymised_consent_proof(run: Run) -> None:
    assert run.redis_dump, "the run left no Redis keys at all: the search would prove nothing"
    assert any(":route" in key for key in run.redis_dump)
    needles = [n.lower() for n in (*run.hot.identifiers(), *run.nurtured.identifiers())]
    found = [
        (key, needle)
        for key, value in run.redis_dump.items()
        for needle in needles
        if needle in key.lower() or needle in value.lower()
    ]
    assert found == []
    proof = run.consent_proof
    assert proof is not None, "the consent proof must be kept"
    assert proof["lead_id"] is None and proof["pseudonymised_at"]
    assert sorted(e["kind"] for e in proof["events"]) == ["consent_confirmed", "consent_given"]


def test_erased_leads_are_nowhere_in_the_faust_tables(run: Run) -> None:
    assert {"enrich:enrich-leads", "score:lead-scores", "nurture:leads", "nurture:due"} <= set(run.tables)
    needles = [n.lower() for n in (*run.hot.identifiers(), *run.nurtured.identifiers())]
    found = [
        (table, needle)
        for table, rows in run.tables.items()
        for key, value in rows
        for needle in needles
        if needle in f"{key!r} {value!r}".lower()
    ]
    assert found == []


def test_no_personal_data_in_metrics(run: Run) -> None:
    assert set(run.metrics) == {"capture", "enrich", "score", "route", "nurture"}
    assert "leadpipe_privacy_requests_total" in run.metrics["enrich"]
    needles = [n.lower() for n in (*run.hot.identifiers(), *run.nurtured.identifiers())]
    found = [(app, n) for app, text in run.metrics.items() for n in needles if n in text.lower()]
    assert found == []


TEST_HARNESS_LOGGERS = frozenset({"mail.log"})
"""The test's own SMTP server (aiosmtpd) logs the recipients it receives; it is not part of leadpipe."""


def test_no_personal_data_in_logs(run: Run) -> None:
    assert run.logs.records > 1000, "too few log records: was logging at DEBUG captured?"
    leaks = [(name, text) for name, text in run.logs.leaks if name not in TEST_HARNESS_LOGGERS]
    assert leaks == []
