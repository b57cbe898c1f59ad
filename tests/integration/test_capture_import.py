"""`leadpipe import` against a real capture (real port, real broker and Redis)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from schemas import Interaction, PrivacyRecord, TopicName
from services.capture.app import create_app
from services.capture.importer import read_rows
from services.capture.settings import CaptureSettings
from services.devstack.broker import EmbeddedBroker
from services.runtime.topics import ensure_pipeline_topics
from tests.cli import run_cli
from tests.kafka import consume_until

pytestmark = pytest.mark.integration

# Semicolons, a BOM, odd headers, a quoted multi-line cell, a blank line, a bad e-mail and a
# row without any identity: the kind of list a trade-fair badge scanner exports.
MESSY = (
    "\ufeffE-Mail;First Name;LASTNAME;Company;Title;Consent;Booth Notes\n"
    "ann@example.com;Ann;Lee;Acme;CTO;yes;wants a demo\n"
    'BOB@Example.com ;Bob;Roe;Globex;;no;"line one\nline two"\n'
    "\n"
    "not-an-email;Carl;Doe;Initech;;;\n"
    ";Dana;Poe;Hooli;;;no card\n"
    "eve@example.com;Eve;;;;;\n"
)


@pytest.fixture
async def capture(broker: EmbeddedBroker, redis_url: str, suffix: str) -> AsyncIterator[tuple[str, str]]:
    settings = CaptureSettings(broker_url=broker.url, redis_url=redis_url, topic_suffix=suffix, api_keys="k")
    await ensure_pipeline_topics(settings)
    server = TestServer(create_app(settings), host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("/")).rstrip("/"), settings.topic(TopicName.INTERACTIONS)
    finally:
        await server.close()


async def test_import_publishes_good_rows_reports_bad_ones_and_is_idempotent(
    capture: tuple[str, str], broker: EmbeddedBroker, tmp_path: Path, suffix: str
) -> None:
    url, topic = capture
    leads = tmp_path / "leads.csv"
    leads.write_text(MESSY, encoding="utf-8")
    argv = ("import", str(leads), "--source", "event", "--campaign", "fair-2026", "--url", url)

    code, out, err = await run_cli(*argv, "--api-key", "k")

    assert code == 1, out + err
    assert "3 published, 0 already imported, 2 refused" in out
    assert "line 6: contact.email: " in out and "not a valid email address" in out
    assert "line 7: (body): " in out and "needs either anonymous_id or contact.email" in out
    assert "sent 5/5 rows" in err  # not a TTY: plain counts
    records = await consume_until(broker.bootstrap_servers, topic, lambda r: len(r) >= 3, within=5)
    events = sorted((Interaction.model_validate_json(r.value) for r in records), key=lambda e: e.event_id)
    assert len(events) == 3
    by_email = {e.contact.email: e for e in events}
    assert set(by_email) == {"ann@example.com", "bob@example.com", "eve@example.com"}
    ann = by_email["ann@example.com"]
    assert ann.type == "event_badge_scan"
    assert (ann.contact.first_name, ann.contact.last_name, ann.contact.company) == ("Ann", "Lee", "Acme")
    assert ann.contact.job_title == "CTO"
    assert ann.consent.marketing_email is True
    assert (ann.source.channel, ann.source.utm_campaign) == ("event", "fair-2026")
    assert ann.properties["booth_notes"] == "wants a demo"
    assert by_email["bob@example.com"].properties["booth_notes"] == "line one\nline two"
    assert by_email["bob@example.com"].consent.marketing_email is False
    assert sorted(r.key for r in records) == sorted(e.lead_id.encode() for e in events)

    again, out, _ = await run_cli(*argv, "--api-key", "k")

    assert again == 1
    assert "0 published, 3 already imported, 2 refused" in out
    await asyncio.sleep(0.5)
    after = await consume_until(broker.bootstrap_servers, topic, lambda r: len(r) > 3, within=1.5)
    assert len(after) == 3
    privacy_topic = f"{TopicName.PRIVACY.value}{suffix}"
    privacy = await consume_until(broker.bootstrap_servers, privacy_topic, lambda r: len(r) > 1, within=1.5)
    [given] = [PrivacyRecord.model_validate_json(r.value) for r in privacy]
    # recorded as imported: nurture lets no imported consent lift an unsubscribe
    assert (given.lead_id, given.consent_source) == (ann.lead_id, "import:event")


async def test_clean_import_exits_zero_and_wrong_key_exits_two(
    capture: tuple[str, str], tmp_path: Path
) -> None:
    url, _ = capture
    leads = tmp_path / "clean.csv"
    leads.write_text("email,firstname\nzoe@example.com,Zoe\n", encoding="utf-8")
    base = ("import", str(leads), "--campaign", "partner-q1", "--url", url)
    assert (await run_cli(*base, "--api-key", "k"))[0] == 0
    code, _, err = await run_cli(*base, "--api-key", "wrong")
    assert code == 2
    # capture's problem, not "capture answered 403: None" (the import read a `detail` it never sends)
    assert "import stopped: capture answered 403 invalid_api_key: " in err and "None" not in err


async def test_rows_over_captures_body_limit_together_go_in_smaller_requests(
    broker: EmbeddedBroker, redis_url: str, suffix: str, tmp_path: Path
) -> None:
    """A hundred rows of 2 KB over a 64 KiB body limit answered 413 and stopped the whole import,
    though each row alone was taken. Now the rows go in halves until they fit; a row too large on its
    own is refused with its line, and the rest are published."""
    settings = CaptureSettings(
        broker_url=broker.url,
        redis_url=redis_url,
        topic_suffix=f"{suffix}-wide",
        api_keys="k",
        max_body_bytes=64 * 1024,
    )
    await ensure_pipeline_topics(settings)
    leads = tmp_path / "wide.csv"
    rows = [f"wide{i}@example.com,{'n' * 2000}" for i in range(150)]
    rows.insert(40, f"huge@example.com,{'h' * 70_000}")  # line 42
    leads.write_text("email,notes\n" + "\n".join(rows) + "\n", encoding="utf-8")
    server = TestServer(create_app(settings), host="127.0.0.1")
    await server.start_server()
    try:
        url = str(server.make_url("/")).rstrip("/")
        argv = ("import", str(leads), "--url", url, "--api-key", "k", "--campaign", "wide")
        code, out, _ = await run_cli(*argv)
    finally:
        await server.close()

    assert code == 1
    assert out.splitlines()[0] == "150 published, 0 already imported, 1 refused, 0 failed (of 151 rows)"
    assert out.splitlines()[1].startswith(
        "line 42: too large for one request: capture answered 413 body_too_large"
    )
    records = await consume_until(
        broker.bootstrap_servers, settings.topic(TopicName.INTERACTIONS), lambda r: len(r) >= 150, within=20
    )
    emails = {Interaction.model_validate_json(r.value).contact.email for r in records}
    assert emails == {f"wide{i}@example.com" for i in range(150)}


async def test_an_answer_that_is_not_capture_s_stops_the_import_with_exit_two(tmp_path: Path) -> None:
    """A proxy's 502 page made the import end in a JSONDecodeError traceback with exit 1, the code
    that says rows were refused."""

    async def bad_gateway(_: web.Request) -> web.Response:
        return web.Response(
            status=502, text="<html><body>Bad Gateway</body></html>", content_type="text/html"
        )

    app = web.Application()
    app.router.add_post("/v1/events:batch", bad_gateway)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    leads = tmp_path / "one.csv"
    leads.write_text("email\nzoe@example.com\n", encoding="utf-8")
    try:
        url = str(server.make_url("/")).rstrip("/")
        code, _, err = await run_cli("import", str(leads), "--url", url, "--api-key", "k", "--campaign", "c")
    finally:
        await server.close()
    assert code == 2
    assert "import stopped: capture answered 502 without JSON: '<html><body>Bad Gateway" in err


def test_rows_keep_their_file_line_numbers() -> None:
    rows, refused = read_rows('a,b\n1,2\n\n"x\ny",3\n4,5,6\n7,8\n')
    assert [(r.line, r.values) for r in rows] == [
        (2, {"a": "1", "b": "2"}),
        (4, {"a": "x\ny", "b": "3"}),
        (7, {"a": "7", "b": "8"}),
    ]
    assert [r.line for r in refused] == [6]
