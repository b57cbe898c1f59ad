"""schemathesis against /openapi.json: generated requests never cause a server error or off-spec answer."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Iterator

import pytest
import schemathesis
from aiohttp import web
from hypothesis import HealthCheck, settings
from schemathesis import checks

from services.capture.app import create_app
from services.capture.openapi import build
from services.capture.settings import CaptureSettings
from services.devstack.broker import EmbeddedBroker
from services.devstack.processes import free_port

pytestmark = pytest.mark.integration

schema = schemathesis.openapi.from_dict(build())


@pytest.fixture(scope="module")
def base_url(broker: EmbeddedBroker, redis_url: str) -> Iterator[str]:
    """Capture on a real port in its own thread and loop, as schemathesis calls it synchronously."""
    port = free_port()
    settings = CaptureSettings(
        broker_url=broker.url,
        redis_url=redis_url,
        topic_suffix=f".st{uuid.uuid4().hex[:8]}",
        api_keys="k",
        google_key="g",
        rate_limit_per_minute=100000,
    )
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(create_app(settings))
    started = threading.Event()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(runner.setup())
        loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", port).start())
        started.set()
        loop.run_forever()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert started.wait(10)
    yield f"http://127.0.0.1:{port}"
    asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_openapi_document(case: schemathesis.Case, base_url: str) -> None:
    case.call_and_validate(
        base_url=base_url,
        headers={"X-API-Key": "k"},
        checks=[
            checks.not_a_server_error,
            checks.status_code_conformance,
            checks.response_schema_conformance,
        ],
    )
