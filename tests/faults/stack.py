"""The whole pipeline as processes, with a handle on every piece a fault test breaks.

`leadpipe dev` (tests/e2e/stack.py) runs the services as grandchildren the test cannot address; here
each service worker is a direct child (services/devstack/processes.spawn), so a test can kill -9 one
and start it again with the same environment, add a second worker to a consumer group, restart the
private Redis (with an append-only file, as docker-compose runs it) and freeze the private Tansu
broker. Nothing here is shared with other tests: broker, Redis and SMTP server are the stack's own.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import yaml
from aiosmtpd.controller import Controller

from services.devstack.broker import EmbeddedBroker
from services.devstack.processes import free_port, spawn, stop, wait_for_port
from services.devstack.redis_server import redis_server_binary
from services.devstack.stack import SERVICES
from services.route.crm import SIGNATURE_HEADER, verify
from services.runtime.settings import ServiceSettings
from services.runtime.topics import ensure_pipeline_topics

REPO = Path(__file__).resolve().parents[2]
API_KEY = "fault-key"
CRM_SECRET = "fault-crm-secret"
PARTITIONS = 4
SESSION_TIMEOUT = 6.0

# Reps on call around the clock with room for every lead, and an SLA far beyond any test: the only
# hand-off a lead may get is its first one (a breach would legitimately reassign it). The team's CRM
# webhook (its URL filled in at start) gets every hand-off.
ROUTING: dict[str, Any] = {
    "teams": [
        {
            "name": "inbound",
            "lead": "lead-inbound@example.com",
            "working_hours": None,
            "reps": [{"id": "ada", "capacity": 100000}, {"id": "bo", "capacity": 100000}],
            "crm_webhook_url": None,
        }
    ],
    "rules": [],
    "account_owners": {},
    "fallback_team": "inbound",
    "sla": {"tiers": [{"name": "hot", "minutes": 600, "temperatures": ["hot"]}], "default_tier": "hot"},
}

# Three steps seconds apart, no quiet hours, a cap no test reaches: every nurture lead gets exactly
# three e-mails, and a restart lands in the middle of most sequences.
NURTURE = {
    "frequency_cap": {"max_messages": 50, "window": "PT1M"},
    "sequences": {
        "welcome": {
            "enrol": {"stages": ["iql"], "temperatures": ["cold", "warm"]},
            "steps": [
                {"template_id": "welcome-1", "delay": 2, "after": "enrolment"},
                {"template_id": "welcome-2", "delay": 1},
                {"template_id": "welcome-3", "delay": 1},
            ],
            "exit": {"temperatures": ["hot"]},
        }
    },
}


@dataclass
class Mailbox:
    """The SMTP server nurture's mailer delivers to: (command id, recipient) of every message."""

    received: list[tuple[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    # Seconds each recipient takes to accept, before any data is sent: like a slow remote MTA, it
    # keeps a delivery in flight long enough for a kill -9 to land in the middle of it.
    rcpt_delay: float = 0.0
    holding: int = 0  # recipients being held in that delay right now

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        with self.lock:
            self.holding += 1
        try:
            await asyncio.sleep(self.rcpt_delay)
        finally:
            with self.lock:
                self.holding -= 1
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = message_from_bytes(envelope.content, policy=policy.default)
        command = str(message.get("X-Leadpipe-Command", ""))
        with self.lock:
            self.received.extend((command, rcpt) for rcpt in envelope.rcpt_tos)
        return "250 OK"

    def deliveries(self) -> list[tuple[str, str]]:
        with self.lock:
            return list(self.received)

    async def receiving(self, count: int, within: float = 60.0) -> None:
        """Wait until `count` messages were received in all."""
        deadline = time.monotonic() + within
        while len(self.deliveries()) < count:
            assert time.monotonic() < deadline, f"only {len(self.deliveries())}/{count} e-mails arrived"
            await asyncio.sleep(0.05)

    async def mid_delivery(self, within: float = 60.0) -> None:
        """Wait until a delivery is held at RCPT: the mailer has claimed the command and the server
        has not accepted the mail yet (the case a crash must never lose)."""
        deadline = time.monotonic() + within
        while True:
            with self.lock:
                if self.holding:
                    return
            assert time.monotonic() < deadline, "no delivery in flight"
            await asyncio.sleep(0.01)


@dataclass(frozen=True)
class Posted:
    """One post the CRM took: the hand-off's Idempotency-Key and its lead."""

    delivery: str
    lead_id: str


class CrmReceiver:
    """The team's CRM webhook, in a thread of its own like the mailbox's SMTP server: it checks each
    post's signature as a receiver should and keeps what it took. `delay` holds each post that long
    before answering 200, so a kill -9 can land while route waits for the answer."""

    def __init__(self, secret: str) -> None:
        self.secret = secret
        self.delay = 0.0
        self.refused = 0  # posts without a valid signature (answered 401)
        self.lock = threading.Lock()
        self._holding: list[str] = []  # deliveries held in that delay right now
        self._taken: list[Posted] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}/hooks/handoffs"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                status = receiver.take(self.headers, body)
                with contextlib.suppress(OSError):  # route died waiting: the post was still taken
                    self.send_response(status)
                    self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return

        return Handler

    def take(self, headers: Message, body: bytes) -> int:
        """The status to answer: 200 once the post is kept, 401 to a post not signed with the secret."""
        if not verify(self.secret, headers.get(SIGNATURE_HEADER, ""), body, now=time.time()):
            with self.lock:
                self.refused += 1
            return 401
        posted = Posted(headers.get("Idempotency-Key", ""), str(orjson.loads(body)["lead_id"]))
        with self.lock:
            self._holding.append(posted.delivery)
        try:
            time.sleep(self.delay)
        finally:
            with self.lock:
                self._holding.remove(posted.delivery)
                self._taken.append(posted)
        return 200

    def posts(self) -> list[Posted]:
        with self.lock:
            return list(self._taken)

    def deliveries(self) -> list[tuple[str, str]]:
        """(lead id, hand-off id) of every post taken, a post sent again after a crash as often."""
        return [(posted.lead_id, posted.delivery) for posted in self.posts()]

    def holding(self) -> list[str]:
        """The deliveries whose posts are held now."""
        with self.lock:
            return list(self._holding)

    async def mid_post(self, within: float = 60.0) -> None:
        """Wait until a post is held: route has claimed the delivery and sent it, and has no answer."""
        deadline = time.monotonic() + within
        while not self.holding():
            assert time.monotonic() < deadline, "no CRM post in flight"
            await asyncio.sleep(0.01)

    def start(self) -> None:
        threading.Thread(target=self._server.serve_forever, name="crm-receiver", daemon=True).start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class DurableRedis:
    """redis-server with an append-only file fsynced on every write, restartable on the same port."""

    def __init__(self, directory: Path, port: int, log_dir: Path) -> None:
        self.directory = directory
        self.log_dir = log_dir
        self.port = port
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.starts += 1
        argv = [
            redis_server_binary(),
            *("--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.directory)),
            *("--appendonly", "yes", "--appendfsync", "always", "--save", "", "--daemonize", "no"),
        ]
        self.process = spawn(argv, log_path=self.log_dir / f"redis-run{self.starts}.log")
        wait_for_port("127.0.0.1", self.port, within=15, process=self.process)

    def kill9(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self) -> None:
        if self.process is not None:
            stop(self.process, grace=5)


@dataclass
class Worker:
    """One process of one service (`python -m services.<name>`), restartable with the same environment."""

    service: str
    instance: int
    port: int
    env: dict[str, str]
    log_dir: Path
    process: subprocess.Popen[bytes] | None = None
    runs: int = 0

    @property
    def name(self) -> str:
        return f"{self.service}-{self.instance}"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.log_dir / f"{self.name}-run{self.runs}.log"

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        self.runs += 1
        self.process = spawn(
            [sys.executable, "-m", f"services.{self.service}"], env=self.env, log_path=self.log_path
        )

    def kill9(self) -> None:
        """SIGKILL: no flush, no offset commit, no leave-group."""
        assert self.alive, f"{self.name} is not running\n{self.log()}"
        assert self.process is not None
        self.process.kill()
        self.process.wait()

    def stop(self) -> None:
        if self.process is not None:
            stop(self.process)

    def log(self, chars: int = 4000) -> str:
        path = self.log_path
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    async def ready(self, within: float = 120.0) -> float:
        """Seconds until /readyz answers 200 (for a stream worker: partitions assigned)."""
        started = time.monotonic()
        timeout = aiohttp.ClientTimeout(total=2)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while time.monotonic() - started < within:
                assert self.alive, f"{self.name} exited\n{self.log()}"
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    async with session.get(f"{self.url}/readyz") as response:
                        if response.status == 200:
                            return time.monotonic() - started
                await asyncio.sleep(0.25)
        raise AssertionError(f"{self.name} not ready within {within:.0f}s\n{self.log()}")


class FaultStack:
    """Private broker, durable Redis, SMTP mailbox, CRM webhook and one worker per service."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.broker = EmbeddedBroker(port=free_port(), log_path=root / "broker.log")
        self.redis = DurableRedis(root / "redis", free_port(), root / "logs")
        self.mailbox = Mailbox()
        self.smtp = Controller(self.mailbox, hostname="127.0.0.1", port=free_port())
        self.crm = CrmReceiver(CRM_SECRET)
        self.workers: dict[str, list[Worker]] = {name: [] for name, _, _ in SERVICES}
        self._prefixes = {name: prefix for name, _, prefix in SERVICES}

    @property
    def bootstrap(self) -> str:
        return self.broker.bootstrap_servers

    @property
    def capture_url(self) -> str:
        return self.workers["capture"][0].url

    def worker(self, service: str, instance: int = 0) -> Worker:
        return self.workers[service][instance]

    async def start(self) -> None:
        self.broker.start()
        self.redis.start()
        self.smtp.start()
        self.crm.start()
        teams = [{**team, "crm_webhook_url": self.crm.url} for team in ROUTING["teams"]]
        (self.root / "routing.yaml").write_text(yaml.safe_dump({**ROUTING, "teams": teams}))
        (self.root / "nurture.yaml").write_text(yaml.safe_dump(NURTURE))
        settings = ServiceSettings(broker_url=self.broker.url, topic_partitions=PARTITIONS)
        await ensure_pipeline_topics(settings)
        for name in self.workers:
            self.add_worker(name).start()
        for worker in self.all_workers():
            await worker.ready()

    def all_workers(self) -> list[Worker]:
        return [worker for workers in self.workers.values() for worker in workers]

    def add_worker(self, service: str) -> Worker:
        """A further worker of `service` (same consumer group, its own port and data directory)."""
        instance = len(self.workers[service])
        port = free_port()
        worker = Worker(service, instance, port, self._env(service, instance, port), self.root / "logs")
        self.workers[service].append(worker)
        return worker

    def remove_worker(self, worker: Worker) -> None:
        worker.stop()
        self.workers[worker.service].remove(worker)

    def _env(self, service: str, instance: int, port: int) -> dict[str, str]:
        prefix = self._prefixes[service]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("LEADPIPE_", "REDIS_URL"))}
        env.update(
            {
                "PYTHONPATH": str(REPO),
                "PYTHONUNBUFFERED": "1",
                "LEADPIPE_BROKER_URL": self.broker.url,
                "REDIS_URL": self.redis.url,
                "LEADPIPE_TOPIC_PARTITIONS": str(PARTITIONS),
                "LEADPIPE_BROKER_SESSION_TIMEOUT": str(SESSION_TIMEOUT),
                "LEADPIPE_DATA_DIR": str(self.root / "data" / f"{service}-{instance}"),
                f"{prefix}_WEB_HOST": "127.0.0.1",
                f"{prefix}_WEB_PORT": str(port),
            }
        )
        if service == "capture":
            env |= {
                "CAPTURE_API_KEYS": API_KEY,
                "CAPTURE_PUBLISH_TIMEOUT": "1.5",
                "CAPTURE_RETRY_AFTER_SECONDS": "1",
                "CAPTURE_RATE_LIMIT_PER_MINUTE": "1000000",
            }
        elif service == "route":
            env |= {
                "ROUTE_RULES_FILE": str(self.root / "routing.yaml"),
                "ROUTE_SLA_CHECK_INTERVAL": "1",
                # No breach within any test (SLA of 600 minutes), so no notice; never the dev port 1025.
                "ROUTE_SMTP_HOST": "127.0.0.1",
                "ROUTE_SMTP_PORT": str(self.smtp.port),
                # A post held past the timeout is tried again; a dead worker's claim comes due
                # after the lease.
                "ROUTE_CRM_WEBHOOK_SECRET": CRM_SECRET,
                "ROUTE_CRM_TIMEOUT_SECONDS": "2",
                "ROUTE_CRM_LEASE_SECONDS": "4",
                "ROUTE_CRM_BACKOFF_SECONDS": "0.5",
                "ROUTE_CRM_BACKOFF_MAX_SECONDS": "2",
                "ROUTE_CRM_POLL_SECONDS": "0.25",
            }
        elif service == "nurture":
            env |= {
                "NURTURE_RULES_FILE": str(self.root / "nurture.yaml"),
                "NURTURE_TICK_SECONDS": "0.5",
                "NURTURE_RETICK_SECONDS": "5",
                "NURTURE_SMTP_HOST": "127.0.0.1",
                "NURTURE_SMTP_PORT": str(self.smtp.port),
                "NURTURE_SMTP_RETRY_MAX_SECONDS": "1",
            }
        return env

    async def restart(self, worker: Worker) -> float:
        """Start a stopped or killed worker again; seconds until it is ready."""
        worker.start()
        return await worker.ready()

    async def ensure_running(self) -> None:
        """Bring back anything an earlier (failed) test left dead, so each test starts whole."""
        if self.broker.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.broker.process.pid, signal.SIGCONT)
        if self.redis.process is None or self.redis.process.poll() is not None:
            self.redis.start()
        for worker in self.all_workers():
            if not worker.alive:
                worker.start()
        for worker in self.all_workers():
            try:
                await worker.ready(within=60)
            except AssertionError:  # alive but stuck (e.g. in table recovery): start it afresh
                worker.kill9()
                worker.start()
                await worker.ready()

    @contextlib.contextmanager
    def frozen_broker(self) -> Iterator[None]:
        """SIGSTOP the broker (it keeps its sockets but answers nothing) until the block ends."""
        assert self.broker.process is not None
        os.kill(self.broker.process.pid, signal.SIGSTOP)
        try:
            yield
        finally:
            os.kill(self.broker.process.pid, signal.SIGCONT)

    def close(self) -> None:
        for worker in self.all_workers():
            worker.stop()
        with contextlib.suppress(Exception):
            self.smtp.stop()
        with contextlib.suppress(Exception):
            self.crm.stop()
        self.redis.stop()
        self.broker.stop()
        # Keep the logs (small) for a failed run's post-mortem; drop the data.
        shutil.rmtree(self.root / "data", ignore_errors=True)
        shutil.rmtree(self.root / "redis", ignore_errors=True)
