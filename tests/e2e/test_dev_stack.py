"""`leadpipe dev` as a user runs it: ready, accepting events, demo traffic flowing, clean stop."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from schemas import Interaction, TopicName
from services.devstack.processes import free_port
from tests.kafka import consume_until

pytestmark = pytest.mark.e2e

EVENT = {
    "type": "demo_request",
    "occurred_at": "2026-11-21T09:30:00Z",
    "contact": {"email": "e2e.lead@example.com", "job_title": "VP Sales"},
}


@dataclass
class Stack:
    process: subprocess.Popen[str]
    output: Path
    broker_port: int
    port_base: int

    def text(self) -> str:
        return self.output.read_text(errors="replace")

    def wait_for(self, needle: str, within: float) -> None:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if needle in self.text():
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.2)
        raise AssertionError(f"{needle!r} not printed; output:\n{self.text()}")


def _marker_processes(marker: str) -> list[str]:
    """Command lines of live processes mentioning `marker` (a port only this stack uses)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            raw = (entry / "cmdline").read_bytes()
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if marker.encode() in raw or marker.encode() in environ:
            found.append(raw.replace(b"\0", b" ").decode(errors="replace"))
    return found


def _start(tmp_path: Path, *extra: str) -> Stack:
    broker_port, port_base = free_port(), free_port()
    output = tmp_path / "dev.out"
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "services.cli",
            "dev",
            "--broker-port",
            str(broker_port),
            "--port-base",
            str(port_base),
            "--state-dir",
            str(tmp_path / "state"),
            "--demo-rate",
            "20",
            *extra,
        ],
        stdout=output.open("w"),
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    return Stack(process, output, broker_port, port_base)


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    running = _start(tmp_path)
    try:
        running.wait_for("leadpipe is ready", within=120)
        yield running
    finally:
        if running.process.poll() is None:
            running.process.kill()
            running.process.wait()


async def test_dev_stack_accepts_events_shows_demo_traffic_and_stops_cleanly(stack: Stack) -> None:
    base = f"http://127.0.0.1:{stack.port_base}"
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{base}/readyz") as ready:
            assert ready.status == 200
        async with session.post(f"{base}/v1/events", json=EVENT, headers={"X-API-Key": "dev-key"}) as answer:
            assert answer.status == 202
            lead_id = (await answer.json())["lead_id"]

    bootstrap = f"127.0.0.1:{stack.broker_port}"
    records = await consume_until(
        bootstrap,
        TopicName.INTERACTIONS,
        lambda rs: any(r.key == lead_id.encode() for r in rs),
    )
    mine = [Interaction.model_validate_json(r.value) for r in records if r.key == lead_id.encode()]
    assert [m.contact.email for m in mine] == ["e2e.lead@example.com"]

    await asyncio.to_thread(stack.wait_for, "| interactions", 30)
    demo = await consume_until(bootstrap, TopicName.INTERACTIONS, lambda rs: len(rs) > 10)
    assert len(demo) > 10, "demo traffic should be flowing"

    stack.process.send_signal(signal.SIGINT)
    assert stack.process.wait(30) == 0, stack.text()
    assert "capture stopped" in stack.text()
    assert _marker_processes(str(stack.broker_port)) == []


def test_killed_supervisor_leaves_no_children(tmp_path: Path) -> None:
    running = _start(tmp_path, "--no-demo")
    try:
        running.wait_for("leadpipe is ready", within=120)
        assert _marker_processes(str(running.broker_port)), "children should be running"
        running.process.kill()
        running.process.wait()
        deadline = time.monotonic() + 15
        while _marker_processes(str(running.broker_port)) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _marker_processes(str(running.broker_port)) == []
    finally:
        if running.process.poll() is None:
            running.process.kill()
