"""Redis refusing a command about a record (a script failing on its data) against an outage: the
record is dead-lettered and the partition goes on; an outage is still waited out. Real Redis and
the real broker."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import faust
import pytest
from redis.asyncio import Redis

from schemas.dead_letter import DeadLetter
from schemas.topics import TopicName
from services.devstack.broker import EmbeddedBroker
from services.devstack.processes import free_port
from services.runtime.batch import Batch
from services.runtime.redis_retry import RedisRefused, until_redis_answers
from services.runtime.settings import ServiceSettings
from services.runtime.stream_app import StreamService
from services.runtime.topics import ensure_pipeline_topics
from tests.eventually import stopped
from tests.kafka import consume_until, produce

pytestmark = pytest.mark.integration

# Redis's cjson cannot encode a number this large (it reads as infinity): the script fails with
# "Cannot serialise number: must not be NaN or Inf", as route's rep-status script did for a
# capacity of 400 digits.
ENCODE = "return cjson.encode({n = tonumber(ARGV[1])})"


async def test_a_script_error_is_refused_at_once_and_an_outage_waited_out(redis_url: str) -> None:
    redis = Redis.from_url(redis_url)
    try:
        started = time.monotonic()
        with pytest.raises(RedisRefused, match="Cannot serialise number"):
            await until_redis_answers(lambda: redis.eval(ENCODE, 0, "9" * 400), "encode")
        assert time.monotonic() - started < 1  # not retried
        assert await until_redis_answers(lambda: redis.eval(ENCODE, 0, "7"), "encode") == b'{"n":7}'
    finally:
        await redis.aclose()
    gone = Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=0.2)
    waiting = asyncio.ensure_future(until_redis_answers(gone.ping, "ping"))
    await asyncio.sleep(1.5)
    assert not waiting.done()  # still waiting for a Redis that is not there
    waiting.cancel()
    await gone.aclose()


@pytest.fixture
async def counting(broker: EmbeddedBroker, redis_url: str, suffix: str) -> AsyncIterator[StreamService]:
    """A batched service that stores each record's number through a Lua script, then forwards it."""
    settings = ServiceSettings(
        broker_url=broker.url, redis_url=redis_url, topic_suffix=suffix, web_port=free_port()
    )
    await ensure_pipeline_topics(settings)
    service = StreamService("counting", settings)
    redis = Redis.from_url(redis_url)
    sink = service.topic(TopicName.ENRICHED)

    async def handle(batch: Batch, event: faust.EventT[bytes]) -> None:
        number = bytes(event.value).decode()
        await until_redis_answers(lambda: redis.eval(ENCODE, 0, number), "store the number")
        await batch.outbox.send(sink, "k", bytes(event.value))

    @service.app.agent(service.topic(TopicName.INTERACTIONS))
    async def count(stream: faust.StreamT[bytes]) -> None:
        await service.run_batches(stream, lambda: Batch(service.outbox()), handle)

    await service.app.start()
    try:
        yield service
    finally:
        await stopped(service)
        await redis.aclose()


async def test_a_record_redis_refuses_is_dead_lettered_and_the_partition_goes_on(
    counting: StreamService, broker: EmbeddedBroker
) -> None:
    """It was retried as an outage, every 5 s for ever, holding the partition (and faust's
    rebalances and shutdown, which wait for the event in hand)."""
    settings = counting.settings
    records = [(b"k", b"1"), (b"k", ("9" * 400).encode()), (b"k", b"3")]
    await produce(broker.bootstrap_servers, settings.topic(TopicName.INTERACTIONS), records)
    forwarded = await consume_until(
        broker.bootstrap_servers, settings.topic(TopicName.ENRICHED), lambda rs: len(rs) >= 2, within=30
    )
    assert [r.value for r in forwarded] == [b"1", b"3"]
    dead = await consume_until(
        broker.bootstrap_servers, settings.topic(TopicName.DLQ), lambda rs: len(rs) >= 1, within=10
    )
    letter = DeadLetter.model_validate_json(dead[0].value)
    assert (letter.reason, letter.service, letter.origin.offset) == ("redis_refused", "counting", 1)
    assert "store the number: Redis refused it: " in letter.detail and "Cannot serialise" in letter.detail
