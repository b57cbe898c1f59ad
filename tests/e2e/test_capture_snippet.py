"""The website snippet in a real headless Chromium, posting cross-origin to a real capture."""

from __future__ import annotations

import shutil
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from schemas import Interaction, TopicName
from services.capture.app import create_app
from services.capture.settings import CaptureSettings
from services.devstack.broker import EmbeddedBroker
from services.devstack.processes import free_port
from services.runtime.topics import ensure_pipeline_topics
from tests.kafka import consume_until

if TYPE_CHECKING:
    from playwright.async_api import Cookie

pytestmark = pytest.mark.e2e

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
KEY = "pk-site"


@dataclass(frozen=True)
class Site:
    url: str  # the website, on http://localhost:<port>
    topic: str


def _page(capture: str, body: str) -> str:
    return (
        "<!doctype html><html><head><title>Acme</title>"
        f'<script src="{capture}/static/leadpipe.js" data-endpoint="{capture}" data-key="{KEY}"></script>'
        f"</head><body>{body}</body></html>"
    )


FORM = """
<form id="demo" data-leadpipe-form method="post" action="/thanks">
  <input name="email"><input name="firstname"><input name="company">
  <input name="password" type="password"><textarea name="message"></textarea>
  <input name="newsletter" type="checkbox">
  <button type="submit">Send</button>
</form>"""


@pytest.fixture
async def site(broker: EmbeddedBroker, redis_url: str, suffix: str) -> AsyncIterator[Site]:
    """Capture on 127.0.0.1, the website on localhost: different origins, so CORS applies."""
    site_port = free_port()
    site_origin = f"http://localhost:{site_port}"
    settings = CaptureSettings(
        broker_url=broker.url,
        redis_url=redis_url,
        topic_suffix=suffix,
        api_keys=KEY,
        cors_origins=site_origin,
    )
    await ensure_pipeline_topics(settings)
    capture = TestServer(create_app(settings), host="127.0.0.1")
    await capture.start_server()
    capture_url = str(capture.make_url("")).rstrip("/")

    async def landing(request: web.Request) -> web.Response:
        return web.Response(text=_page(capture_url, FORM), content_type="text/html")

    async def thanks(request: web.Request) -> web.Response:
        await request.post()
        return web.Response(text=_page(capture_url, "<p>Thanks</p>"), content_type="text/html")

    website = web.Application()
    website.router.add_get("/landing", landing)
    website.router.add_post("/thanks", thanks)
    website.router.add_get("/pricing", landing)
    server = TestServer(website, host="localhost", port=site_port)
    await server.start_server()
    try:
        yield Site(site_origin, settings.topic(TopicName.INTERACTIONS))
    finally:
        await server.close()
        await capture.close()


Cookies = dict[str, "Cookie"]


async def _browse(site: Site, profile: Path) -> tuple[Cookies, Cookies]:
    """Land with UTM parameters, submit the form, then reopen the browser on the same profile."""
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch_persistent_context(
            str(profile), executable_path=CHROMIUM, headless=True, args=FLAGS
        )
        page = await browser.new_page()
        async with page.expect_response(lambda r: r.url.endswith("/v1/events")) as viewed:
            await page.goto(f"{site.url}/landing?utm_source=fair&utm_campaign=spring-26&x=1")
        assert (await viewed.value).status == 202
        await page.fill("input[name=email]", "Ann@Example.com")
        await page.fill("input[name=firstname]", "Ann")
        await page.fill("input[name=company]", "Acme")
        await page.fill("input[name=password]", "hunter2")
        await page.fill("textarea[name=message]", "secret plans")
        await page.check("input[name=newsletter]")
        async with page.expect_navigation():
            await page.click("button[type=submit]")
        await page.wait_for_load_state("networkidle")
        first = {c["name"]: c for c in await browser.cookies(site.url)}
        await browser.close()

        # A new browser on the same profile: the first-party cookie outlived the session.
        browser = await playwright.chromium.launch_persistent_context(
            str(profile), executable_path=CHROMIUM, headless=True, args=FLAGS
        )
        page = await browser.new_page()
        async with page.expect_response(lambda r: r.url.endswith("/v1/events")) as viewed:
            await page.goto(f"{site.url}/pricing")
        assert (await viewed.value).status == 202
        second = {c["name"]: c for c in await browser.cookies(site.url)}
        await browser.close()
    return first, second


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium (make test installs it)")
async def test_snippet_tracks_page_views_with_utm_and_identifies_on_form_submit(
    site: Site, broker: EmbeddedBroker, tmp_path: Path
) -> None:
    cookies, again = await _browse(site, tmp_path / "profile")

    aid = cookies["lp_aid"]["value"]
    assert cookies["lp_aid"]["sameSite"] == "Lax"
    assert cookies["lp_aid"]["expires"] > time.time() + 364 * 24 * 3600  # a year, not the session
    assert again["lp_aid"]["value"] == aid

    records = await consume_until(broker.bootstrap_servers, site.topic, lambda r: len(r) >= 4, within=10)
    events = [Interaction.model_validate_json(r.value) for r in records]
    by_path = {(e.type.value, str(e.properties.get("path", ""))): e for e in events}
    assert len(events) == 4, [(e.type, e.properties) for e in events]
    assert all(e.anonymous_id == aid for e in events)

    landing = by_path[("page_view", "/landing")]
    assert (landing.source.utm_source, landing.source.utm_campaign) == ("fair", "spring-26")
    assert landing.properties["url"] == f"{site.url}/landing?utm_source=fair&utm_campaign=spring-26&x=1"
    assert landing.lead_id.startswith("a-")

    identify = by_path[("identify", "")]
    assert identify.contact.email == "ann@example.com"
    assert (identify.contact.first_name, identify.contact.company) == ("Ann", "Acme")
    assert identify.consent.marketing_email is True
    assert identify.source.utm_campaign == "spring-26"
    assert identify.properties["form"] == "demo"
    sent = b"".join(r.value for r in records)
    assert b"hunter2" not in sent and b"secret plans" not in sent  # only contact fields leave the page

    thanks = by_path[("page_view", "/thanks")]  # a later page in the session keeps the attribution
    assert thanks.source.utm_campaign == "spring-26"
    assert thanks.properties["referrer"] == landing.properties["url"]

    pricing = by_path[("page_view", "/pricing")]  # a new session: no attribution carried over
    assert pricing.source.utm_campaign is None
