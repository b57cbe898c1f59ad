"""Route's rep API against a real worker (Tansu + Redis): schemathesis from /openapi.json, keys, limits."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import schemathesis
import yaml
from hypothesis import HealthCheck, settings
from schemathesis import checks

from services.devstack.broker import EmbeddedBroker
from services.devstack.processes import free_port
from services.route.app import RouteService, create_app
from services.route.openapi import build
from services.route.settings import RouteSettings
from services.runtime.api_keys import hash_api_key
from services.runtime.topics import ensure_pipeline_topics
from tests.eventually import stopped
from tests.integration.test_route_service import running

pytestmark = pytest.mark.integration

OLD_KEY = "old-route-key"
NEW_KEY = "new-route-key"  # configured only as its hash, as an operator rotating keys would
MAX_BODY = 1024
FUZZ_REP = "zed"  # generated rep ids are nearly all unknown; this one gets the generated bodies too
RULES: dict[str, Any] = {
    "teams": [
        {"name": "emea", "working_hours": None, "reps": [{"id": "anna", "capacity": 5}, {"id": "ben"}]},
        {"name": "queue", "working_hours": None, "reps": [{"id": "sdr"}, {"id": FUZZ_REP}]},
    ],
    "rules": [],
    "fallback_team": "queue",
    "sla": {"tiers": [{"name": "hot", "minutes": 60}], "default_tier": "hot"},
}

schema = schemathesis.openapi.from_dict(build(MAX_BODY))


def route_settings(broker: EmbeddedBroker, redis_url: str, rules: Path, api_keys: str) -> RouteSettings:
    return RouteSettings(
        broker_url=broker.url,
        redis_url=redis_url,
        topic_suffix=f".ro{uuid.uuid4().hex[:8]}",
        web_port=free_port(),
        rules_file=rules,
        redis_prefix=f"test:{uuid.uuid4().hex}:",
        api_keys=api_keys,
        max_body_bytes=MAX_BODY,
    )


def wait_until_serving(url: str, within: float = 20) -> None:
    import requests

    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url} did not answer within {within}s")


@pytest.fixture(scope="module")
def rules(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("route-openapi") / "routing.yaml"
    path.write_text(yaml.safe_dump(RULES))
    return path


@pytest.fixture(scope="module")
def base_url(broker: EmbeddedBroker, redis_url: str, rules: Path) -> Iterator[str]:
    """A route worker in its own thread and loop, as schemathesis calls it synchronously."""
    config = route_settings(broker, redis_url, rules, f"{OLD_KEY},{hash_api_key(NEW_KEY)}")
    loop = asyncio.new_event_loop()
    holder: list[RouteService] = []
    started = threading.Event()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(ensure_pipeline_topics(config))
        service = create_app(config)  # faust binds the loop it is created on
        holder.append(service)
        loop.run_until_complete(service.app.start())
        started.set()
        loop.run_forever()

    async def stop() -> None:
        await stopped(holder[0])
        await holder[0].close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert started.wait(60), "route did not start"
    url = f"http://127.0.0.1:{config.web_port}"
    wait_until_serving(url)
    yield url
    asyncio.run_coroutine_threadsafe(stop(), loop).result(30)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)


@schema.parametrize()
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
def test_rep_api_conforms_to_its_openapi_document(case: schemathesis.Case[Any], base_url: str) -> None:
    def call_and_validate() -> None:
        case.call_and_validate(
            base_url=base_url,
            headers={"X-API-Key": OLD_KEY},
            checks=[
                checks.not_a_server_error,
                checks.status_code_conformance,
                checks.response_schema_conformance,
            ],
        )

    call_and_validate()
    if case.path_parameters and "rep_id" in case.path_parameters:
        case.path_parameters["rep_id"] = FUZZ_REP
        call_and_validate()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def call(
    http: aiohttp.ClientSession, method: str, url: str, key: str | None = None, **options: Any
) -> tuple[int, Any]:
    headers = {"X-API-Key": key} if key is not None else {}
    async with http.request(method, url, headers=headers, **options) as response:
        return response.status, await response.json()


@pytest.mark.parametrize(("method", "path"), [("GET", "/reps"), ("GET", "/reps/anna"), ("PUT", "/reps/anna")])
async def test_missing_or_wrong_key_is_refused(
    http: aiohttp.ClientSession, base_url: str, method: str, path: str
) -> None:
    body: dict[str, Any] = {"json": {"available": False}} if method == "PUT" else {}
    status, answer = await call(http, method, base_url + path, **body)
    assert (status, answer["error"]) == (401, "missing_api_key")
    assert "X-API-Key" in answer["message"]
    for wrong in ("", "nope", OLD_KEY.upper(), hash_api_key(OLD_KEY)):
        status, answer = await call(http, method, base_url + path, wrong, **body)
        assert status == 401, wrong
        assert answer["error"] in {"missing_api_key", "invalid_api_key"}
    _, anna = await call(http, "GET", f"{base_url}/reps/anna", OLD_KEY)
    assert anna["available_now"] is True, "a refused PUT must change nothing"


async def test_both_keys_of_a_rotation_work(http: aiohttp.ClientSession, base_url: str) -> None:
    status, answer = await call(http, "PUT", f"{base_url}/reps/ben", NEW_KEY, json={"capacity": 3})
    assert status == 200, answer
    assert answer["capacity"] == 3 and answer["team"] == "emea"
    status, listing = await call(http, "GET", f"{base_url}/reps", OLD_KEY)
    assert status == 200
    assert {r["rep_id"]: r["capacity"] for r in listing["reps"]}["ben"] == 3


async def test_oversized_body_is_refused(http: aiohttp.ClientSession, base_url: str) -> None:
    padded = b'{"available": false' + b" " * MAX_BODY + b"}"
    status, answer = await call(http, "PUT", f"{base_url}/reps/sdr", OLD_KEY, data=padded)
    assert (status, answer["error"]) == (413, "body_too_large")
    assert str(MAX_BODY) in answer["message"]

    async def chunked() -> AsyncIterator[bytes]:  # no Content-Length: the limit is counted while reading
        for _ in range(8):
            yield b" " * 256

    status, answer = await call(http, "PUT", f"{base_url}/reps/sdr", OLD_KEY, data=chunked())
    assert status == 413
    _, sdr = await call(http, "GET", f"{base_url}/reps/sdr", OLD_KEY)
    assert sdr["available_now"] is True


async def test_invalid_body_names_the_field_and_unknown_rep_is_404(
    http: aiohttp.ClientSession, base_url: str
) -> None:
    status, answer = await call(http, "PUT", f"{base_url}/reps/anna", OLD_KEY, json={"capacity": -1})
    assert (status, answer["error"]) == (422, "invalid_body")
    assert (
        answer["fields"][0]["field"] == "capacity"
        and "greater than or equal to 0" in answer["fields"][0]["reason"]
    )
    status, answer = await call(
        http, "PUT", f"{base_url}/reps/anna", OLD_KEY, json={"out_of_office_until": "2030-01-01T00:00:00"}
    )
    assert status == 422 and answer["fields"][0]["field"] == "out_of_office_until"
    status, answer = await call(http, "PUT", f"{base_url}/reps/nobody", OLD_KEY, json={"available": False})
    assert (status, answer["error"]) == (404, "unknown_rep")
    status, answer = await call(http, "GET", f"{base_url}/reps/nobody", OLD_KEY)
    assert status == 404


async def test_openapi_and_health_need_no_key(http: aiohttp.ClientSession, base_url: str) -> None:
    status, document = await call(http, "GET", f"{base_url}/openapi.json")
    assert status == 200 and document == build(MAX_BODY)
    for path in ("/healthz", "/metrics"):
        async with http.get(base_url + path) as response:
            assert response.status == 200, path


async def test_without_keys_the_api_is_closed(broker: EmbeddedBroker, redis_url: str, rules: Path) -> None:
    config = route_settings(broker, redis_url, rules, "")
    assert config.api_key_hashes == frozenset()
    async with running(config):
        url = f"http://127.0.0.1:{config.web_port}"
        async with aiohttp.ClientSession() as http:
            for _ in range(100):
                try:
                    async with http.get(f"{url}/healthz") as response:
                        if response.status == 200:
                            break
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.1)
            status, answer = await call(
                http, "PUT", f"{url}/reps/anna", "anything", json={"available": False}
            )
            assert (status, answer["error"]) == (503, "api_keys_not_configured")
            assert "ROUTE_API_KEYS" in answer["message"]
            status, _ = await call(http, "GET", f"{url}/reps")
            assert status == 503
