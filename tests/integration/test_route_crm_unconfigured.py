"""CRM deliveries queued for a team whose webhook was since removed from the config (real broker,
Redis and HTTP receiver): a restart dead-letters them with the reason, counts them, and keeps them
for `leadpipe requeue-crm`, instead of leaving them queued where no loop claims them."""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import SecretStr
from redis.asyncio import Redis

from schemas.dead_letter import DeadLetter
from schemas.topics import TopicName
from services.devstack.broker import EmbeddedBroker
from services.route.crm_queue import CrmQueue
from services.route.requeue import requeue
from services.route.settings import RouteSettings
from tests.eventually import eventually
from tests.integration.test_route_crm import crm_settings
from tests.integration.test_route_crm_queue import job
from tests.integration.test_route_notices import metric
from tests.integration.test_route_service import RULES, running
from tests.kafka import consume_until

pytestmark = pytest.mark.integration

URL = "http://127.0.0.1:9/hooks/leadpipe"


def without_na_webhook(tmp_path: Path, url: str | None) -> Path:
    """The route tests' teams: emea posts to `url` (no team has a webhook when None), na no longer."""
    rules: dict[str, Any] = copy.deepcopy(RULES)
    if url is not None:
        rules["teams"][0]["crm_webhook_url"] = url
    path = tmp_path / "routing-now.yaml"
    path.write_text(yaml.safe_dump(rules))
    return path


@pytest.fixture(params=["emea still posts", "no webhook left"])
def settings(
    request: pytest.FixtureRequest, broker: EmbeddedBroker, redis_url: str, suffix: str, tmp_path: Path
) -> RouteSettings:
    """Route's settings once team na's webhook was removed (no hand-off is made: nothing is posted)."""
    before = crm_settings(broker, redis_url, suffix, tmp_path, URL)  # when na still had one
    rules = without_na_webhook(tmp_path, URL if request.param == "emea still posts" else None)
    return before.model_copy(update={"rules_file": rules, "crm_webhook_secret": (SecretStr("s"),)})


async def test_deliveries_of_a_removed_webhook_are_dead_lettered_at_start_and_can_be_requeued(
    settings: RouteSettings, broker: EmbeddedBroker, redis: Redis
) -> None:
    queue = CrmQueue(redis, settings.redis_prefix, done_ttl=60)
    waiting, retrying = job("lead-na-1", "1" * 32, team="na"), job("lead-na-2", "2" * 32, team="na")
    await queue.add(waiting)
    await queue.add(retrying)
    await queue.retry(retrying.failed("HTTP 503"), at=time.time() + 3600)  # waiting for its next try

    async with running(settings) as route:

        async def none_left() -> bool:
            return await queue.waiting("na") == 0

        await eventually(none_left, within=15)
        records = await consume_until(
            broker.bootstrap_servers, settings.topic(TopicName.DLQ), lambda rs: len(rs) >= 2, within=15
        )
        letters = [DeadLetter.model_validate_json(r.value) for r in records]
        assert {letter.lead_id for letter in letters} == {"lead-na-1", "lead-na-2"}
        for letter in letters:
            assert (letter.service, letter.reason) == ("route", "crm_webhook_unconfigured")
            assert "the CRM webhook of team na is no longer configured" in letter.detail
            assert "leadpipe requeue-crm --team na" in letter.detail
        given_up = {j.handoff_id: j for j in await queue.failed()}
        assert set(given_up) == {"1" * 32, "2" * 32}
        assert given_up["2" * 32].attempts == 2
        assert given_up["2" * 32].last_error == "the CRM webhook of team na is no longer configured"
        counted = 'leadpipe_route_crm_deliveries_total{outcome="dead_lettered",team="na"}'
        assert await metric(route, counted) == 2

    # While na has no webhook, the command keeps them (queued, they would wait where no loop claims them)
    kept = await requeue(settings, team=None)
    assert (kept.moved, kept.kept) == ([], {"na": 2})
    # Once na's webhook is back, it queues them again with a full set of tries.
    rules: dict[str, Any] = yaml.safe_load(settings.rules_file.read_text())
    next(team for team in rules["teams"] if team["name"] == "na")["crm_webhook_url"] = URL
    settings.rules_file.write_text(yaml.safe_dump(rules))
    requeued = await requeue(settings, team="na")
    moved = requeued.moved
    assert requeued.kept == {}
    assert sorted(j.handoff_id for j in moved) == ["1" * 32, "2" * 32]
    assert all(j.attempts == 0 for j in moved)
    assert await queue.waiting("na") == 2
