"""Hand-offs posted to CRM webhooks against the real broker and Redis, with a real HTTP receiver:
signed as published, once per hand-off, retried with back-off, dead-lettered with the reason, and
posted again by `leadpipe requeue-crm`."""

from __future__ import annotations

import asyncio
import copy
import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp
import jsonschema
import pytest
import yaml
from aiohttp import web
from aiokafka import ConsumerRecord
from pydantic import SecretStr

from schemas.base import utcnow
from schemas.dead_letter import DeadLetter
from schemas.handoff import Assignee, Handoff
from schemas.topics import TopicName
from services import cli
from services.devstack.broker import EmbeddedBroker
from services.devstack.processes import free_port
from services.route.app import RouteService, create_app
from services.route.config import ConfigError, SlaTier
from services.route.crm import SIGNATURE_HEADER, verify
from services.route.domain import build_handoff
from services.route.openapi import build
from services.route.requeue import Requeued, requeue
from services.route.settings import RouteSettings
from services.runtime.cancellation import cancel_and_wait
from tests.eventually import eventually
from tests.integration.test_route_crm_queue import job
from tests.integration.test_route_notices import metric
from tests.integration.test_route_service import RULES, record, running, settings_for
from tests.kafka import consume_until, produce
from tests.unit.test_route_domain import make_change

pytestmark = pytest.mark.integration

SECRET = "whsec-test"
NA_SECRET, NA_SECRET_ENV = "whsec-na", "LEADPIPE_TEST_CRM_NA_SECRET"


@dataclass
class Crm:
    """A CRM's webhook endpoint: answers each post with the next of `answers` (the last repeats)."""

    answers: list[tuple[int, dict[str, str], str]] = field(default_factory=lambda: [(200, {}, "")])
    posts: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    hold: set[str] = field(default_factory=set)  # teams whose posts get no answer until `release`
    release: asyncio.Event = field(default_factory=asyncio.Event)

    async def receive(self, request: web.Request) -> web.Response:
        self.posts.append((dict(request.headers), await request.read()))
        if request.query.get("team", "emea") in self.hold:
            await self.release.wait()
        status, headers, text = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        return web.Response(status=status, headers=headers, text=text)

    async def wait_for(self, count: int, within: float = 30) -> list[tuple[dict[str, str], bytes]]:
        async def arrived() -> bool:
            return len(self.posts) >= count

        await eventually(arrived, within=within)
        return self.posts


@pytest.fixture
async def crm() -> AsyncIterator[tuple[Crm, str]]:
    receiver = Crm()
    app = web.Application()
    app.router.add_post("/hooks/leadpipe", receiver.receive)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield receiver, f"http://127.0.0.1:{port}/hooks/leadpipe"
    finally:
        receiver.release.set()
        await runner.cleanup()


def rules_with_webhook(tmp_path: Path, url: str) -> Path:
    """The route tests' teams with an hour's SLA (no reassignments meanwhile): emea and na post to
    `url`, na signing with its own secret; the fallback queue has no webhook."""
    rules: dict[str, Any] = copy.deepcopy(RULES)
    rules["teams"][0]["crm_webhook_url"] = url
    rules["teams"][1] |= {"crm_webhook_url": f"{url}?team=na", "crm_webhook_secret_env": NA_SECRET_ENV}
    rules["sla"]["tiers"][0]["minutes"] = 60
    path = tmp_path / "routing.yaml"
    path.write_text(yaml.safe_dump(rules))
    return path


def crm_settings(
    broker: EmbeddedBroker, redis_url: str, suffix: str, tmp_path: Path, url: str, **changes: Any
) -> RouteSettings:
    """Route posting to `url` with three tries a second or less apart (`changes` on top)."""
    rules = rules_with_webhook(tmp_path, url)
    settings = settings_for(broker, redis_url, suffix, rules, f"test:{uuid.uuid4().hex}:")
    return settings.model_copy(
        update={
            "crm_webhook_secret": (SecretStr(SECRET),),
            "crm_attempts": 3,
            "crm_backoff_seconds": 0.3,
            "crm_backoff_max_seconds": 1.0,
            "crm_timeout_seconds": 2.0,
            "crm_lease_seconds": 5.0,
            "crm_poll_seconds": 0.2,
            "smtp_port": free_port(),  # nobody there; with an hour's SLA no notice is due
            **changes,
        }
    )


@pytest.fixture(autouse=True)
def na_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    """Team na's own signing secret, in the variable its crm_webhook_secret_env names."""
    monkeypatch.setenv(NA_SECRET_ENV, NA_SECRET)


@pytest.fixture
async def route(
    broker: EmbeddedBroker, redis_url: str, suffix: str, tmp_path: Path, crm: tuple[Crm, str]
) -> AsyncIterator[RouteService]:
    async with running(crm_settings(broker, redis_url, suffix, tmp_path, crm[1])) as service:
        yield service


async def hand_off(broker: EmbeddedBroker, route: RouteService, lead: str, country: str = "DE") -> None:
    change = make_change(lead, email=f"{lead}@example.com", country=country, occurred_at=utcnow())
    await produce(broker.bootstrap_servers, route.settings.topic(TopicName.STAGE_CHANGES), [record(change)])


async def published(broker: EmbeddedBroker, route: RouteService, lead: str) -> ConsumerRecord[bytes, bytes]:
    """The lead's hand-off record as route published it on leads.handoffs."""
    records = await consume_until(
        broker.bootstrap_servers,
        route.settings.topic(TopicName.HANDOFFS),
        lambda rs: any(r.key == lead.encode() for r in rs),
    )
    (found,) = [r for r in records if r.key == lead.encode()]
    return found


async def dead_letters(broker: EmbeddedBroker, route: RouteService, count: int) -> list[DeadLetter]:
    records = await consume_until(
        broker.bootstrap_servers, route.settings.topic(TopicName.DLQ), lambda rs: len(rs) >= count
    )
    return [DeadLetter.model_validate_json(r.value) for r in records]


async def test_each_hand_off_is_posted_once_signed_and_as_published(
    route: RouteService, broker: EmbeddedBroker, crm: tuple[Crm, str]
) -> None:
    receiver, _ = crm
    await hand_off(broker, route, "lead-fr", country="FR")  # the fallback queue: no webhook
    await hand_off(broker, route, "lead-us", country="US")  # team na: its own secret
    await hand_off(broker, route, "lead-de")
    posts = {json.loads(body)["lead_id"]: (headers, body) for headers, body in await receiver.wait_for(2)}
    handoff = await published(broker, route, "lead-de")
    await published(broker, route, "lead-fr")
    assert sorted(posts) == ["lead-de", "lead-us"]
    na_headers, na_body = posts["lead-us"]
    assert verify(NA_SECRET, na_headers[SIGNATURE_HEADER], na_body, now=time.time())
    assert not verify(SECRET, na_headers[SIGNATURE_HEADER], na_body, now=time.time())
    headers, body = posts["lead-de"]

    assert body == handoff.value  # what a Kafka subscriber reads, byte for byte
    document = build()  # route's /openapi.json describes the post under `webhooks`
    jsonschema.validate(json.loads(body), {"$ref": "#/components/schemas/Handoff", **document})
    assert {p["name"] for p in document["webhooks"]["handoff"]["post"]["parameters"]} <= set(headers)
    assert verify(SECRET, headers[SIGNATURE_HEADER], body, now=time.time())
    assert headers["Content-Type"] == "application/json"
    handoff_id = json.loads(handoff.value)["handoff_id"]
    assert headers["Idempotency-Key"] == headers["Leadpipe-Delivery"] == handoff_id
    assert headers["Leadpipe-Attempt"] == "1"

    # A replay of leads.handoffs (a rebalance, a restart) queues nothing: the hand-off was delivered.
    assert route.crm is not None
    await route.crm.handle([handoff])
    await asyncio.sleep(1)
    assert len(receiver.posts) == 2
    for outcome in ("queued", "delivered"):
        line = f'leadpipe_route_crm_deliveries_total{{outcome="{outcome}",team="emea"}} '
        assert await metric(route, line) == 1
    assert await metric(route, "leadpipe_route_crm_delivery_seconds_count{", 'team="emea"') == 1

    # The deliveries' consumer and the SLA notices' report their lag side by side.
    async def lags_of(name: str) -> bool:
        url = f"http://127.0.0.1:{route.settings.web_port}/metrics"
        async with aiohttp.ClientSession() as session, session.get(url) as response:
            text = await response.text()
        topic = f'topic="{route.settings.topic(name)}"'
        return any(row.startswith("leadpipe_consumer_lag{") and topic in row for row in text.splitlines())

    for name in (TopicName.HANDOFFS, TopicName.SLA):
        await eventually(partial(lags_of, name), within=20)


async def test_a_failing_crm_is_tried_again_after_a_back_off_and_gets_the_hand_off_once(
    route: RouteService, broker: EmbeddedBroker, crm: tuple[Crm, str]
) -> None:
    receiver, _ = crm
    receiver.answers = [(503, {"Retry-After": "1"}, "maintenance"), (502, {}, ""), (200, {}, "")]
    await hand_off(broker, route, "lead-flaky")
    posts = await receiver.wait_for(3)
    await asyncio.sleep(1)
    assert len(posts) == 3
    assert [headers["Leadpipe-Attempt"] for headers, _ in posts] == ["1", "2", "3"]
    assert len({body for _, body in posts}) == 1
    assert await metric(route, "leadpipe_route_crm_deliveries_total{", 'outcome="retried"') == 2
    assert await metric(route, "leadpipe_route_crm_deliveries_total{", 'outcome="delivered"') == 1
    assert await metric(route, "leadpipe_dead_letters_total{") == 0


@pytest.fixture
async def unstarted_route(
    broker: EmbeddedBroker, redis_url: str, suffix: str, tmp_path: Path, crm: tuple[Crm, str]
) -> AsyncIterator[RouteService]:
    """A route worker, not started, whose CRM deliveries look for due posts once an hour."""
    service = RouteService(crm_settings(broker, redis_url, suffix, tmp_path, crm[1], crm_poll_seconds=3600))
    yield service
    await service.close()


async def test_a_hand_off_that_a_lost_answer_queued_is_posted_without_waiting_for_the_poll(
    unstarted_route: RouteService, crm: tuple[Crm, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Queueing a fetch whose answer was lost with the connection queued its hand-off already; the
    retry finds it queued, and the team's loop must look now, not at its next poll (an hour here)."""
    receiver, _ = crm
    service = unstarted_route
    delivery = service.crm
    assert delivery is not None
    change = make_change("lead-lost-answer", email="lost@example.com", occurred_at=utcnow())
    tier = SlaTier(name="hot", minutes=60, temperatures=("hot",))
    now = utcnow()
    made = build_handoff(change, Assignee(rep_id="anna", team="emea"), tier, due=now, now=now, hid="c" * 32)
    body = made.model_dump_json().encode()
    topic = service.settings.topic(TopicName.HANDOFFS)
    fetched = ConsumerRecord(topic, 0, 0, 0, 0, made.lead_id.encode(), body, None, 0, len(body), ())
    lost = job(made.lead_id, made.handoff_id).model_copy(update={"body": body.decode()})
    looked = asyncio.Event()
    claim = delivery.queue.claim

    async def claim_and_tell(*args: Any, **kwargs: Any) -> Any:
        claimed = await claim(*args, **kwargs)
        looked.set()
        return claimed

    monkeypatch.setattr(delivery.queue, "claim", claim_and_tell)
    async with aiohttp.ClientSession() as http:
        loop = asyncio.create_task(delivery.deliver_forever(http, "emea"))
        try:
            await asyncio.wait_for(looked.wait(), 10)  # its first look found nothing: it waits
            assert await delivery.queue.add(lost)  # what the try whose answer was lost did
            await delivery.handle([fetched])
            ((_, posted),) = await receiver.wait_for(1, within=10)
            assert posted == body
        finally:
            await cancel_and_wait(loop)


async def test_a_crm_that_hangs_holds_up_its_own_team_s_deliveries_only(
    broker: EmbeddedBroker, redis_url: str, suffix: str, tmp_path: Path, crm: tuple[Crm, str]
) -> None:
    receiver, url = crm
    receiver.hold = {"emea"}  # emea's CRM takes every post and never answers
    settings = crm_settings(
        broker, redis_url, suffix, tmp_path, url, crm_timeout_seconds=30, crm_lease_seconds=60
    )
    async with running(settings) as route:
        for n in range(3):
            await hand_off(broker, route, f"lead-hung-{n}")
        await receiver.wait_for(3)  # all three wait for emea's CRM, for up to 30 s each
        await hand_off(broker, route, "lead-na", country="US")
        posts = await receiver.wait_for(4)
        assert json.loads(posts[3][1])["lead_id"] == "lead-na"
        # na's post went out while emea's three were still waiting for their answers: none has
        # timed out, so none was retried yet.
        emea = 'team="emea"'
        assert await metric(route, 'leadpipe_route_crm_deliveries_total{outcome="retried",', emea) == 0
        assert (
            await metric(route, 'leadpipe_route_crm_deliveries_total{outcome="delivered",', 'team="na"') == 1
        )


async def test_a_refusal_is_dead_lettered_with_the_reason_and_requeue_posts_it_again(
    route: RouteService, broker: EmbeddedBroker, crm: tuple[Crm, str]
) -> None:
    receiver, _ = crm
    receiver.answers = [(400, {}, '{"error": "unknown field lead_id"}')]
    await hand_off(broker, route, "lead-refused")
    await receiver.wait_for(1)
    (letter,) = await dead_letters(broker, route, 1)
    handoff = await published(broker, route, "lead-refused")

    assert (letter.service, letter.reason, letter.lead_id) == ("route", "crm_webhook_refused", "lead-refused")
    assert letter.detail.startswith(f"POST {crm[1]} (team emea) refused after 1 tries: HTTP 400 Bad Request")
    assert "unknown field lead_id" in letter.detail and "leadpipe requeue-crm" in letter.detail
    assert (letter.origin.topic, letter.origin.offset) == (handoff.topic, handoff.offset)
    assert letter.payload.encode() == handoff.value
    await asyncio.sleep(1)
    assert len(receiver.posts) == 1  # not tried again

    receiver.answers = [(200, {}, "")]  # the CRM's mapping is mended
    (moved,) = (await requeue(route.route_settings, team=None)).moved
    assert moved.lead_id == "lead-refused" and moved.last_error and "HTTP 400" in moved.last_error
    posts = await receiver.wait_for(2)
    assert posts[1][1] == handoff.value and posts[1][0]["Leadpipe-Attempt"] == "1"
    assert await requeue(route.route_settings, team=None) == Requeued()


async def test_the_last_failed_try_is_dead_lettered(
    route: RouteService, broker: EmbeddedBroker, crm: tuple[Crm, str]
) -> None:
    receiver, _ = crm
    receiver.answers = [(503, {}, "")]
    await hand_off(broker, route, "lead-down")
    await receiver.wait_for(3)  # ROUTE_CRM_ATTEMPTS
    (letter,) = await dead_letters(broker, route, 1)
    assert letter.reason == "crm_webhook_failed"
    assert "failed after 3 tries: HTTP 503 Service Unavailable" in letter.detail
    await asyncio.sleep(1.5)
    assert len(receiver.posts) == 3
    assert await metric(route, "leadpipe_route_crm_deliveries_total{", 'outcome="dead_lettered"') == 1


async def test_the_requeue_command_reads_route_s_settings_and_says_what_it_did(
    route: RouteService,
    broker: EmbeddedBroker,
    crm: tuple[Crm, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    receiver, _ = crm
    receiver.answers = [(404, {}, "")]
    await hand_off(broker, route, "lead-moved")
    await dead_letters(broker, route, 1)
    monkeypatch.setenv("REDIS_URL", route.settings.redis_url)
    monkeypatch.setenv("ROUTE_REDIS_PREFIX", route.route_settings.redis_prefix)
    monkeypatch.setenv("ROUTE_RULES_FILE", str(route.route_settings.rules_file))
    assert await asyncio.to_thread(cli.main, ["requeue-crm", "--team", "na"]) == 0  # its own loop
    assert capsys.readouterr().out.splitlines() == ["0 CRM deliveries queued again"]
    assert await asyncio.to_thread(cli.main, ["requeue-crm", "--team", "emea"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert (
        out[0].startswith("queued again: hand-off ")
        and "of lead-moved to emea (last error: HTTP 404" in out[0]
    )
    assert out[1] == "1 CRM delivery queued again"


async def test_a_webhook_without_a_secret_stops_route_at_start(
    broker: EmbeddedBroker, redis_url: str, suffix: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(NA_SECRET_ENV)
    rules = rules_with_webhook(tmp_path, "https://crm.example/hook")
    settings = settings_for(broker, redis_url, suffix, rules, "test:unused:")
    with pytest.raises(
        ConfigError, match="team 'emea' has a crm_webhook_url but ROUTE_CRM_WEBHOOK_SECRET is not"
    ):
        create_app(settings)
    with_default = settings.model_copy(update={"crm_webhook_secret": (SecretStr(SECRET),)})
    with pytest.raises(
        ConfigError, match=f"team 'na' .* its crm_webhook_secret_env, {NA_SECRET_ENV}, is not"
    ):
        create_app(with_default)


async def test_crm_ping_posts_a_signed_example_and_says_whether_it_was_taken(
    crm: tuple[Crm, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    receiver, url = crm
    monkeypatch.setenv("ROUTE_RULES_FILE", str(rules_with_webhook(tmp_path, url)))
    monkeypatch.setenv("ROUTE_CRM_WEBHOOK_SECRET", SECRET)

    assert await asyncio.to_thread(cli.main, ["crm-ping", "--team", "na"]) == 0  # its own loop
    ((headers, body),) = receiver.posts
    assert verify(NA_SECRET, headers[SIGNATURE_HEADER], body, now=time.time())  # na's own secret
    assert headers["Leadpipe-Test"] == "true"
    assert Handoff.model_validate_json(body).assignee.team == "na"
    assert "taken (2xx)" in capsys.readouterr().out

    receiver.answers = [(401, {}, "signature mismatch")]
    assert await asyncio.to_thread(cli.main, ["crm-ping", "--team", "emea"]) == 1
    out = capsys.readouterr().out
    assert "HTTP 401 Unauthorized: signature mismatch (route would dead-letter it)" in out
    assert await asyncio.to_thread(cli.main, ["crm-ping", "--team", "queue"]) == 2
    assert "team 'queue' has no crm_webhook_url" in capsys.readouterr().out
    assert len(receiver.posts) == 2
