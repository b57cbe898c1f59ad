"""Contact fetches of Meta and LinkedIn leads: queued in the real Redis, published on the real broker,
kept across a capture restart, given up on for good answers, held in memory while Redis is away."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from redis.asyncio import Redis

from schemas import Interaction, TopicName
from services import cli
from services.capture.app import create_app
from services.capture.fetch_queue import FetchJob, FetchQueue
from services.capture.requeue import requeue
from services.capture.settings import CaptureSettings
from services.devstack.broker import EmbeddedBroker
from services.devstack.processes import free_port
from services.runtime.topics import ensure_pipeline_topics
from tests.eventually import eventually
from tests.integration.test_capture_webhooks import APP_SECRET, LI_SECRET, meta_body, sign
from tests.kafka import consume_until

pytestmark = pytest.mark.integration

Client = TestClient[object, object]
RESPONSE_URN = "urn:li:leadGenFormResponse:a9a29e52-c0a3-42e3-8af1-2fc83b697003-4"
FORM_URN = "urn:li:versionedLeadGenForm:(urn:li:leadGenForm:7234246,1)"
TOKEN = "li-token"


@dataclass
class StandIn:
    """A local stand-in for the Graph API and LinkedIn's REST API: `status` answers every call
    until `failures` calls have been answered with it, then the lead."""

    url: str = ""
    status: int = 503
    failures: int = 1
    calls: list[str] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    held: asyncio.Event | None = None  # when set to an event, LinkedIn's answer waits for it

    def failing(self, request: web.Request) -> web.Response | None:
        self.calls.append(request.path)
        self.headers.append(dict(request.headers))
        if len([c for c in self.calls if c == request.path]) <= self.failures:
            return web.json_response({"message": "unavailable"}, status=self.status)
        return None


def linkedin_response(request: web.Request) -> dict[str, object]:
    """A form response without the projected form, so capture reads the form as well."""
    return {
        "id": request.match_info["response_id"],
        "submittedAt": 1732181400000,
        "testLead": False,
        "versionedLeadGenFormUrn": FORM_URN,
        "formResponse": {
            "answers": [
                *(
                    {"questionId": i, "answerDetails": {"textQuestionAnswer": {"answer": text}}}
                    for i, text in enumerate(("Jane", "Doe", "jane@gmail.com", "Jane.Doe@Example.com"), 1)
                ),
                {"questionId": 5, "answerDetails": {"multipleChoiceAnswer": {"options": [2]}}},
            ],
            "consentResponses": [{"consentId": 11, "accepted": True}],
        },
    }


LINKEDIN_FORM = {
    "id": 7234246,
    "hiddenFields": [{"name": "campaign", "value": "spring"}],
    "content": {
        "questions": [
            {"questionId": 1, "name": "firstName", "predefinedField": "FIRST_NAME"},
            {"questionId": 2, "name": "lastName", "predefinedField": "LAST_NAME"},
            {"questionId": 3, "name": "email", "predefinedField": "EMAIL"},
            {"questionId": 4, "name": "workEmail", "predefinedField": "WORK_EMAIL"},
            {
                "questionId": 5,
                "name": "Team size",
                "questionDetails": {
                    "multipleChoiceQuestionDetails": {
                        "options": [
                            {"id": 1, "text": {"localized": {"en_US": "1-10"}}},
                            {"id": 2, "text": {"localized": {"en_US": "11-50"}}},
                        ]
                    }
                },
            },
        ]
    },
}


@pytest.fixture
async def stand_in() -> AsyncIterator[StandIn]:
    state = StandIn()

    async def graph_lead(request: web.Request) -> web.Response:
        refused = state.failing(request)
        return refused or web.json_response(
            {"id": request.match_info["leadgen_id"], "field_data": [{"name": "email", "values": ["a@b.de"]}]}
        )

    async def li_response(request: web.Request) -> web.Response:
        refused = state.failing(request)
        if state.held is not None:
            await state.held.wait()
        return refused or web.json_response(linkedin_response(request))

    async def li_form(request: web.Request) -> web.Response:
        state.calls.append(request.path)
        return web.json_response(LINKEDIN_FORM)

    app = web.Application()
    app.router.add_get("/graph/{leadgen_id}", graph_lead)
    app.router.add_get("/rest/leadFormResponses/{response_id}", li_response)
    app.router.add_get("/rest/leadForms/{form_id}", li_form)
    server = TestServer(app)
    await server.start_server()
    state.url = str(server.make_url(""))
    yield state
    await server.close()


def capture_settings(
    broker: EmbeddedBroker, redis_url: str, suffix: str, stand_in: StandIn, **extra: object
) -> CaptureSettings:
    return CaptureSettings(
        broker_url=broker.url,
        redis_url=redis_url,
        topic_suffix=suffix,
        api_keys="k",
        meta_app_secret=APP_SECRET,
        graph_url=f"{stand_in.url}/graph",
        linkedin_client_secret=LI_SECRET,
        linkedin_access_token=TOKEN,
        linkedin_api_url=f"{stand_in.url}/rest",
        contact_fetch_backoff_seconds=0.05,
        contact_fetch_poll_seconds=0.05,
        privacy_consumer=False,
        **extra,  # type: ignore[arg-type]
    )


@pytest.fixture
async def settings(broker: EmbeddedBroker, redis_url: str, suffix: str, stand_in: StandIn) -> CaptureSettings:
    settings = capture_settings(broker, redis_url, suffix, stand_in)
    await ensure_pipeline_topics(settings)
    return settings


async def post_meta(client: Client, leadgen_id: str) -> None:
    body = meta_body(leadgen_id)
    headers = {"X-Hub-Signature-256": "sha256=" + sign(APP_SECRET, body), "Content-Type": "application/json"}
    response = await client.post("/v1/webhooks/meta", data=body, headers=headers)
    assert response.status == 200, await response.text()


async def interactions(broker: EmbeddedBroker, settings: CaptureSettings, types: int) -> list[Interaction]:
    """The topic's interactions once `types` of them are identify events (or after 10 s)."""
    records = await consume_until(
        broker.bootstrap_servers,
        settings.topic(TopicName.INTERACTIONS),
        lambda rs: sum(b'"identify"' in (r.value or b"") for r in rs) >= types,
        within=10,
    )
    return [Interaction.model_validate_json(r.value) for r in records if r.value]


async def test_linkedin_lead_is_published_then_its_answers_from_lead_sync(
    settings: CaptureSettings, broker: EmbeddedBroker, stand_in: StandIn
) -> None:
    body = json.dumps(
        {
            "type": "LEAD_ACTION",
            "leadGenFormResponse": RESPONSE_URN,
            "leadGenForm": FORM_URN,
            "owner": {"sponsoredAccount": "urn:li:sponsoredAccount:123"},
            "leadAction": "CREATED",
            "occuredAt": 1732181400000,
            "leadType": "SPONSORED",
        }
    ).encode()
    async with TestClient(TestServer(create_app(settings))) as client:
        signature = sign(LI_SECRET, body, b"hmacsha256=")
        headers = {"X-LI-Signature": signature}
        response = await client.post("/v1/webhooks/linkedin", data=body, headers=headers)
        assert response.status == 200, await response.text()
        stored = await interactions(broker, settings, 1)

    lead = next(i for i in stored if i.type.value == "ad_lead")
    contact = next(i for i in stored if i.type.value == "identify")
    assert lead.anonymous_id == contact.anonymous_id == f"linkedin:{RESPONSE_URN}"
    assert contact.contact.email == "jane.doe@example.com"  # the work address, normalised
    assert (contact.contact.first_name, contact.contact.last_name) == ("Jane", "Doe")
    assert contact.properties["answers"] == {"EMAIL": "jane@gmail.com", "Team size": "11-50"}
    assert contact.properties["hidden_fields"] == {"campaign": "spring"}
    assert contact.properties["consents"] == {"11": True}
    assert contact.properties["form_id"] == "7234246"
    # the first call failed and was retried; the form was read because the response came without it
    response_path = "/rest/leadFormResponses/a9a29e52-c0a3-42e3-8af1-2fc83b697003-4"
    assert stand_in.calls == [response_path, response_path, "/rest/leadForms/7234246"]
    assert stand_in.headers[0]["Authorization"] == f"Bearer {TOKEN}"
    assert stand_in.headers[0]["X-Restli-Protocol-Version"] == "2.0.0"
    assert stand_in.headers[0]["LinkedIn-Version"] == settings.linkedin_api_version


async def test_a_fetch_waiting_to_retry_survives_a_capture_restart(
    settings: CaptureSettings, broker: EmbeddedBroker, stand_in: StandIn, redis_url: str
) -> None:
    stand_in.failures = 10**6  # the Graph API is down while the first capture runs
    async with TestClient(TestServer(create_app(settings))) as client:
        await post_meta(client, "555000111")
        deadline = time.monotonic() + 5
        while len(stand_in.calls) < 2 and time.monotonic() < deadline:
            await client.get("/healthz")
    assert len(stand_in.calls) >= 2  # tried and retried, then the process went away

    stand_in.failures = 0  # the Graph API is back; a new capture starts
    async with TestClient(TestServer(create_app(settings))):
        stored = await interactions(broker, settings, 1)
    contacts = [i for i in stored if i.type.value == "identify"]
    assert [c.anonymous_id for c in contacts] == ["meta:555000111"]
    assert contacts[0].contact.email == "a@b.de"
    redis = Redis.from_url(redis_url)
    assert await FetchQueue(redis, namespace=settings.topic_suffix).waiting() == 0
    await redis.aclose()


async def given_up(client: Client, queue: FetchQueue, leadgen_id: str) -> None:
    """Post a Meta lead and wait (up to 5 s) until capture gave its contact fetch up."""
    await post_meta(client, leadgen_id)
    deadline = time.monotonic() + 5
    while not await queue.failed() and time.monotonic() < deadline:
        await client.get("/healthz")


async def test_a_lead_the_platform_does_not_know_is_given_up_at_once_and_kept_for_a_look(
    settings: CaptureSettings, stand_in: StandIn, redis_url: str
) -> None:
    stand_in.status, stand_in.failures = 404, 10**6
    redis = Redis.from_url(redis_url)
    queue = FetchQueue(redis, namespace=settings.topic_suffix)
    async with TestClient(TestServer(create_app(settings))) as client:
        await given_up(client, queue, "666000111")
        metrics = await (await client.get("/metrics")).text()
    (failed,) = await queue.failed()
    assert (failed.id, failed.attempts) == ("meta:666000111", 1)
    assert failed.last_error is not None and "HTTP 404" in failed.last_error
    assert len(stand_in.calls) == 1
    assert await queue.waiting() == 0
    assert 'leadpipe_capture_contact_fetches_total{outcome="gave_up",platform="meta"} 1.0' in metrics
    await redis.aclose()


async def test_with_redis_away_the_fetch_is_retried_in_memory(
    broker: EmbeddedBroker, suffix: str, stand_in: StandIn
) -> None:
    settings = capture_settings(broker, f"redis://127.0.0.1:{free_port()}/0", suffix, stand_in)
    await ensure_pipeline_topics(settings)
    async with TestClient(TestServer(create_app(settings))) as client:
        await post_meta(client, "777000111")
        stored = await interactions(broker, settings, 1)
        metrics = await (await client.get("/metrics")).text()
    assert [i.anonymous_id for i in stored if i.type.value == "identify"] == ["meta:777000111"]
    assert 'leadpipe_capture_contact_fetches_total{outcome="unqueued",platform="meta"} 1.0' in metrics
    assert len(stand_in.calls) == 2  # failed once, retried from memory


async def test_a_claimed_fetch_whose_capture_died_comes_due_after_its_lease(
    redis_url: str, suffix: str
) -> None:
    redis = Redis.from_url(redis_url)
    queue = FetchQueue(redis, namespace=suffix)
    job = FetchJob(platform="meta", ref="1", lead={"leadgen_id": "1"}, queued_at=0.0)
    assert await queue.add(job, now=100.0)
    assert not await queue.add(job.model_copy(update={"queued_at": 1.0}), now=100.0)  # queued already
    assert await queue.claim(now=100.0, lease_seconds=60, limit=10) == [job]
    assert await queue.claim(now=159.0, lease_seconds=60, limit=10) == []  # out of reach while leased
    assert await queue.claim(now=160.0, lease_seconds=60, limit=10) == [job]  # its claimer died
    failed = job.failed("HTTP 503")
    await queue.retry(failed, at=200.0)
    assert await queue.claim(now=199.0, lease_seconds=60, limit=10) == []
    assert await queue.claim(now=200.0, lease_seconds=60, limit=10) == [failed]
    await queue.done(failed)
    assert await queue.waiting() == 0
    assert await queue.claim(now=10_000.0, lease_seconds=60, limit=10) == []
    await redis.aclose()


async def test_a_dropped_fetch_is_gone_wherever_it_was_and_stays_gone(redis_url: str, suffix: str) -> None:
    """Dropped while waiting, while claimed (its try then neither retries nor gives up) and after
    it was given up (so no requeue fetches it)."""
    redis = Redis.from_url(redis_url)
    queue = FetchQueue(redis, namespace=suffix)
    waiting, claimed, given = (
        FetchJob(platform="linkedin", ref=f"urn:li:leadGenFormResponse:{n}", lead={}, queued_at=0.0)
        for n in (1, 2, 3)
    )
    for job in (waiting, claimed, given):
        await queue.add(job, now=100.0)
    assert await queue.drop(waiting.id) == 1
    assert {job.id for job in await queue.claim(now=100.0, lease_seconds=60, limit=10)} == {
        claimed.id,
        given.id,
    }
    await queue.give_up(given.failed("HTTP 404"), now=101.0)
    other = FetchJob(platform="meta", ref="9", lead={}, queued_at=0.0).failed("HTTP 404")
    await queue.add(other, now=100.0)
    await queue.give_up(other, now=102.0)
    assert await queue.drop(claimed.id) == 1
    assert await queue.drop(given.id) == 1
    await queue.retry(claimed.failed("HTTP 503"), at=100.0)  # the try that was running when dropped
    await queue.give_up(claimed.failed("HTTP 404"), now=103.0)
    assert await queue.claim(now=10_000.0, lease_seconds=60, limit=10) == []
    assert [job.id for job in await queue.failed()] == ["meta:9"]  # another lead's is kept
    assert await queue.drop(waiting.id) == 0
    await redis.aclose()


async def test_a_linkedin_lead_deleted_before_its_answers_came_is_never_fetched_again(
    settings: CaptureSettings, broker: EmbeddedBroker, stand_in: StandIn, redis_url: str
) -> None:
    """LinkedIn's DELETED is an erasure request: the fetch still retrying would publish the person's
    answers after it, and enrich would make them a lead again."""
    stand_in.failures = 10**6  # Lead Sync is down when the lead comes

    def note(action: str) -> bytes:
        return json.dumps(
            {"type": "LEAD_ACTION", "leadGenFormResponse": RESPONSE_URN, "leadAction": action}
        ).encode()

    redis = Redis.from_url(redis_url)
    queue = FetchQueue(redis, namespace=settings.topic_suffix)
    async with TestClient(TestServer(create_app(settings))) as client:
        for action in ("CREATED", "DELETED"):
            body = note(action)
            headers = {"X-LI-Signature": sign(LI_SECRET, body, b"hmacsha256=")}
            response = await client.post("/v1/webhooks/linkedin", data=body, headers=headers)
            assert response.status == 200, await response.text()
            if action == "CREATED":
                deadline = time.monotonic() + 5
                while not stand_in.calls and time.monotonic() < deadline:
                    await client.get("/healthz")
                assert stand_in.calls  # tried once and waiting to retry
        stand_in.failures = 0  # Lead Sync is back: a fetch still queued would now publish
        tried = len(stand_in.calls)
        await asyncio.sleep(0.5)  # ten polls and backoffs
        metrics = await (await client.get("/metrics")).text()
    assert len(stand_in.calls) == tried
    assert await queue.waiting() == 0 and await queue.failed() == []
    assert 'leadpipe_capture_contact_fetches_total{outcome="dropped",platform="linkedin"} 1.0' in metrics
    privacy = await consume_until(
        broker.bootstrap_servers, settings.topic(TopicName.PRIVACY), lambda rs: len(rs) >= 1, within=5
    )
    assert [b'"erase"' in (r.value or b"") for r in privacy] == [True]
    await redis.aclose()


async def test_a_fetch_running_when_linkedin_deleted_the_lead_does_not_publish_its_answers(
    settings: CaptureSettings, broker: EmbeddedBroker, stand_in: StandIn, redis_url: str
) -> None:
    """The DELETED came while Lead Sync was answering: the answers the fetch then holds are the
    deleted person's, and published they would make a known lead after the erasure."""
    stand_in.failures, stand_in.held = 0, asyncio.Event()

    def note(action: str) -> bytes:
        return json.dumps(
            {"type": "LEAD_ACTION", "leadGenFormResponse": RESPONSE_URN, "leadAction": action}
        ).encode()

    async def post(client: Client, action: str) -> None:
        body = note(action)
        headers = {"X-LI-Signature": sign(LI_SECRET, body, b"hmacsha256=")}
        response = await client.post("/v1/webhooks/linkedin", data=body, headers=headers)
        assert response.status == 200, await response.text()

    async def settled(client: Client) -> str:
        """/metrics once the fetch came to an outcome, published or not."""
        outcomes = [f'{{outcome="{o}",platform="linkedin"}} 1.0' for o in ("published", "discarded")]

        async def metrics() -> str:
            text = await (await client.get("/metrics")).text()
            return text if any(outcome in text for outcome in outcomes) else ""

        await eventually(metrics, within=5)
        return await metrics()

    redis = Redis.from_url(redis_url)
    queue = FetchQueue(redis, namespace=settings.topic_suffix)
    async with TestClient(TestServer(create_app(settings))) as client:
        await post(client, "CREATED")
        await eventually(lambda: bool(stand_in.calls), within=5)  # the fetch waits for LinkedIn's answer
        await post(client, "DELETED")
        stand_in.held.set()
        metrics = await settled(client)
    stored = await consume_until(
        broker.bootstrap_servers, settings.topic(TopicName.INTERACTIONS), lambda rs: False, within=2
    )
    published = [Interaction.model_validate_json(r.value).type.value for r in stored if r.value]
    assert published == ["ad_lead"]  # the contact's answers were not published
    assert 'leadpipe_capture_contact_fetches_total{outcome="discarded",platform="linkedin"} 1.0' in metrics
    assert 'leadpipe_capture_contact_fetches_total{outcome="published",platform="linkedin"} 0.0' in metrics
    assert await queue.waiting() == 0 and await queue.failed() == []
    await redis.aclose()


async def test_given_up_fetches_are_queued_again_by_the_command_and_then_fetched(
    settings: CaptureSettings, broker: EmbeddedBroker, stand_in: StandIn, redis_url: str
) -> None:
    stand_in.status, stand_in.failures = 404, 10**6  # the form is not shared with the app yet
    redis = Redis.from_url(redis_url)
    queue = FetchQueue(redis, namespace=settings.topic_suffix)
    async with TestClient(TestServer(create_app(settings))) as client:
        await given_up(client, queue, "888000111")
    assert [job.id for job in await queue.failed()] == ["meta:888000111"]

    stand_in.failures = 0  # shared now: the platform answers
    assert await requeue(settings, "linkedin") == []  # another platform's only: nothing moves
    (moved,) = await requeue(settings, "meta")
    assert (moved.id, moved.attempts) == ("meta:888000111", 0)
    assert moved.last_error is not None and "HTTP 404" in moved.last_error  # kept for the record
    assert await queue.failed() == [] and await queue.waiting() == 1
    assert await requeue(settings, None) == []  # a second run finds nothing to move

    async with TestClient(TestServer(create_app(settings))):
        stored = await interactions(broker, settings, 1)
    contacts = [i for i in stored if i.type.value == "identify"]
    assert [c.anonymous_id for c in contacts] == ["meta:888000111"]
    assert await queue.waiting() == 0
    await redis.aclose()


def test_the_requeue_command_reads_capture_s_settings_and_says_what_it_did(
    redis_url: str, suffix: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("LEADPIPE_TOPIC_SUFFIX", suffix)
    job = FetchJob(platform="linkedin", ref="urn:li:leadFormResponse:1", lead={}, queued_at=0.0)

    async def give_up() -> None:
        redis = Redis.from_url(redis_url)
        queue = FetchQueue(redis, namespace=suffix)
        await queue.add(job)
        await queue.give_up(job.failed("HTTP 403: no access"), now=1.0)
        await redis.aclose()

    asyncio.run(give_up())
    assert cli.main(["requeue-fetches", "--platform", "linkedin"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [
        "queued again: linkedin:urn:li:leadFormResponse:1 (last error: HTTP 403: no access)",
        "1 contact fetch(es) queued again",
    ]
    with pytest.raises(SystemExit):
        cli.main(["requeue-fetches", "--platform", "google"])  # Google sends the answers itself
