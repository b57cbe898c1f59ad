"""A capture app on a test server, its topics created, for tests that post to it."""

from __future__ import annotations

from aiohttp.test_utils import TestClient, TestServer

from services.capture.app import create_app
from services.capture.settings import CaptureSettings
from services.runtime.topics import ensure_pipeline_topics

Client = TestClient[object, object]


async def started_client(settings: CaptureSettings) -> Client:
    """A started client of capture under `settings`; the caller closes it."""
    await ensure_pipeline_topics(settings)
    client: Client = TestClient(TestServer(create_app(settings)))
    await client.start_server()
    return client
