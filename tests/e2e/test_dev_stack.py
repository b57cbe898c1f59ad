"""`leadpipe dev` as a user runs it: ready, accepting events, demo traffic flowing, clean stop."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from schemas import Interaction, TopicName
from tests.e2e.stack import Stack, processes_mentioning, start_stack
from tests.eventually import eventually
from tests.kafka import consume_until

pytestmark = pytest.mark.e2e

EVENT = {
    "type": "demo_request",
    "occurred_at": "2026-11-21T09:30:00Z",
    "contact": {"email": "e2e.lead@example.com", "job_title": "VP Sales"},
}


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    running = start_stack(tmp_path, "--demo-rate", "20")
    try:
        running.wait_for("leadpipe is ready", within=180)
        yield running
    finally:
        running.kill()


async def test_dev_stack_accepts_events_shows_demo_traffic_and_stops_cleanly(stack: Stack) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{stack.capture_url}/readyz") as ready:
            assert ready.status == 200
        async with session.post(
            f"{stack.capture_url}/v1/events", json=EVENT, headers={"X-API-Key": "dev-key"}
        ) as answer:
            assert answer.status == 202
            lead_id = (await answer.json())["lead_id"]

    records = await consume_until(
        stack.bootstrap, TopicName.INTERACTIONS, lambda rs: any(r.key == lead_id.encode() for r in rs)
    )
    mine = [Interaction.model_validate_json(r.value) for r in records if r.key == lead_id.encode()]
    assert [m.contact.email for m in mine] == ["e2e.lead@example.com"]

    await asyncio.to_thread(stack.wait_for, "| interactions", 30)
    demo = await consume_until(stack.bootstrap, TopicName.INTERACTIONS, lambda rs: len(rs) > 10)
    assert len(demo) > 10, "demo traffic should be flowing"

    # Route posts the demo's hand-offs to the stack's CRM webhook, which checks their signatures.
    crm_log = stack.output.parent / "state" / "logs" / "crm.log"
    await eventually(lambda: crm_log.exists() and "signature ok" in crm_log.read_text(), within=120)
    assert "refused" not in crm_log.read_text()

    # Nurture mails the demo's consents a confirmation link; most of the demo's people follow it.
    def confirmed(records: list[Any]) -> bool:
        return any(b"double_opt_in_link" in (r.value or b"") for r in records)

    privacy = await consume_until(stack.bootstrap, TopicName.PRIVACY, confirmed, within=120)
    assert confirmed(privacy), "no consent confirmed through the mailed link"
    smtp_log = stack.output.parent / "state" / "logs" / "smtp.log"
    assert "consent-confirm" in smtp_log.read_text()

    stack.process.send_signal(signal.SIGINT)
    assert stack.process.wait(60) == 0, stack.text()
    assert "capture stopped" in stack.text()
    assert processes_mentioning(str(stack.broker_port)) == []


def test_killed_supervisor_leaves_no_children(tmp_path: Path) -> None:
    running = start_stack(tmp_path, "--no-demo")
    try:
        running.wait_for("leadpipe is ready", within=180)
        assert processes_mentioning(str(running.broker_port)), "children should be running"
        running.process.kill()
        running.process.wait()
        deadline = time.monotonic() + 20
        while processes_mentioning(str(running.broker_port)) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert processes_mentioning(str(running.broker_port)) == []
    finally:
        running.kill()
